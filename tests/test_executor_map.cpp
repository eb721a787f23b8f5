// ProcessPoolExecutor::map's life against shutdown, timeouts and abandonment, as CPython's
// test_concurrent_futures has it: a map is started by the call, finished by shutdown(wait),
// and its calls not yet started are cancelled when it times out or is dropped mid-way.
#include <mproc/mproc.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <numeric>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <thread>
#include <vector>

#include "support/gate.hpp"
#include "support/leak_check.hpp"

using namespace std::chrono_literals;
using mproc::testing::LeakCheckedTest;

namespace {

// The workers find the test's gate by name, whatever the start method (support/gate.hpp):
// each call announces there that it started, and the test counts.
int counted_sleep_ms(int ms) {
  mproc::testing::Gate::announce();
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
// Counts the call, then waits until the test opens the gate.
int counted_gated(int x) {
  mproc::testing::Gate::announce();
  mproc::testing::Gate::pass();
  return x;
}
int absolute(int x) { return x < 0 ? -x : x; }

class ExecutorMap : public LeakCheckedTest {
 protected:
  void SetUp() override {
    LeakCheckedTest::SetUp();
    gate_.emplace();
  }
  void TearDown() override {
    gate_.reset();
    LeakCheckedTest::TearDown();
  }
  // How many calls have started so far.
  int started() {
    started_ += gate_->take_started();
    return started_;
  }
  std::optional<mproc::testing::Gate> gate_;  // for the process executors
  int started_ = 0;
  mproc::Event event_;  // for the thread executors
};

TEST_F(ExecutorMap, SubmitsWithoutIteration) {
  // CPython's test_map_submits_without_iteration.
  mproc::ProcessPoolExecutor executor(2);
  (void)executor.map(counted_sleep_ms, std::vector<int>(10, 1));
  executor.shutdown(true);
  EXPECT_EQ(started(), 10);
}

TEST_F(ExecutorMap, ShutdownWithoutWaitThenIterate) {
  // CPython's test_shutdown_no_wait: the results were computed, and remain readable.
  mproc::ProcessPoolExecutor executor(5);
  std::vector<int> input(10);
  std::iota(input.begin(), input.end(), -5);
  auto results = executor.map(absolute, input);
  executor.shutdown(false);
  for (int x : input) EXPECT_EQ(results.next(), absolute(x));
  EXPECT_EQ(results.next(), std::nullopt);
}

TEST_F(ExecutorMap, ShutdownWaitFinishesAMapLongerThanItsWindow) {
  // Python submits a whole map at the call; mproc submits a window and reads the rest as
  // results are consumed — or all of it when the executor shuts down and waits.
  mproc::ProcessPoolExecutor executor(2);
  std::vector<int> input(3000);
  std::iota(input.begin(), input.end(), -1500);
  auto results = executor.map(absolute, input, std::nullopt, 1, 8);
  executor.shutdown(true);
  for (int x : input) ASSERT_EQ(results.next(), absolute(x));
  EXPECT_EQ(results.next(), std::nullopt);
}

TEST_F(ExecutorMap, ATimeoutCancelsTheCallsNotStarted) {
  // CPython's test_map_timeout / test_executor_map_current_future_cancel.
  mproc::ProcessPoolExecutor executor(2);
  auto results = executor.map(counted_gated, std::vector<int>(20, 0), 100ms);
  EXPECT_THROW(results.next(), mproc::TimeoutError);  // the calls wait for the gate
  gate_->open();
  executor.shutdown(true);
  EXPECT_LE(started(), 6);  // the two running (and a few at most in hand-off), not twenty
}

TEST_F(ExecutorMap, DroppingAStartedMapCancelsTheRest) {
  mproc::ProcessPoolExecutor executor(2);
  {
    auto results = executor.map(counted_sleep_ms, std::vector<int>(20, 200));
    EXPECT_EQ(results.next(), 200);
  }
  executor.shutdown(true);
  EXPECT_LE(started(), 8);
}

TEST_F(ExecutorMap, CancelFuturesStopsReadingAnEndlessInput) {
  // shutdown(cancel_futures=true) abandons the map: its input is not drained (an endless one
  // would never end), and what is left of it completes without hanging.
  mproc::ProcessPoolExecutor executor(1);
  auto results = executor.map(counted_sleep_ms, std::views::iota(0) | std::views::transform([](int) { return 20; }),
                              std::nullopt, 1, 2);
  EXPECT_EQ(results.next(), 20);
  executor.shutdown(true, true);
  int values = 0, cancelled = 0;
  for (;;) {
    try {
      if (!results.next(10s)) break;
      ++values;
    } catch (const mproc::CancelledError&) {
      ++cancelled;
    }
  }
  EXPECT_LE(values + cancelled, 4);
}

TEST_F(ExecutorMap, ContextManagerShape) {
  // CPython's test_context_manager_shutdown.
  std::vector<int> results;
  {
    mproc::ProcessPoolExecutor executor(5);
    std::vector<int> input(10);
    std::iota(input.begin(), input.end(), -5);
    for (int value : executor.map(absolute, input)) results.push_back(value);
  }
  EXPECT_EQ(results, (std::vector<int>{5, 4, 3, 2, 1, 0, 1, 2, 3, 4}));
}

// ---- the same life on threads ----------------------------------------------------------------

TEST_F(ExecutorMap, ThreadsSubmitWithoutIteration) {
  // CPython's test_map_submits_without_iteration, as written (a ThreadPoolExecutor).
  std::mutex mutex;
  std::vector<int> finished;
  {
    mproc::ThreadPoolExecutor executor(2);
    (void)executor.map(
        [&](int n) {
          std::lock_guard guard(mutex);
          finished.push_back(n);
          return n;
        },
        std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
    executor.shutdown(true);
  }
  std::sort(finished.begin(), finished.end());
  EXPECT_EQ(finished, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
}

TEST_F(ExecutorMap, ThreadsShutdownWaitFinishesAMapLongerThanItsWindow) {
  mproc::ThreadPoolExecutor executor(2);
  std::vector<int> input(3000);
  std::iota(input.begin(), input.end(), -1500);
  auto results = executor.map(absolute, input, std::nullopt, 1, 8);
  executor.shutdown(true);
  for (int x : input) ASSERT_EQ(results.next(), absolute(x));
  EXPECT_EQ(results.next(), std::nullopt);
}

TEST_F(ExecutorMap, ThreadsATimeoutCancelsTheCallsNotStarted) {
  std::atomic<int> started{0};
  mproc::ThreadPoolExecutor executor(2);
  auto results = executor.map(
      [&](int x) {
        ++started;
        event_.wait(10s);
        return x;
      },
      std::vector<int>(20, 0), 100ms);
  EXPECT_THROW(results.next(), mproc::TimeoutError);  // the calls wait for the gate
  event_.set();
  executor.shutdown(true);
  EXPECT_LE(started.load(), 4);
}

TEST_F(ExecutorMap, ThreadsCancelFuturesStopsReadingAnEndlessInput) {
  mproc::ThreadPoolExecutor executor(1);
  auto results = executor.map(
      [](int) {
        std::this_thread::sleep_for(20ms);
        return 20;
      },
      std::views::iota(0), std::nullopt, 1, 2);
  EXPECT_EQ(results.next(), 20);
  executor.shutdown(true, true);
  int left = 0;
  for (;;) {
    try {
      if (!results.next(10s)) break;
      ++left;
    } catch (const mproc::CancelledError&) {
      ++left;
    }
  }
  EXPECT_LE(left, 4);
}

TEST_F(ExecutorMap, ThreadPoolImapAcceptedBeforeCloseFinishes) {
  mproc::ThreadPool pool(2);
  std::vector<int> input(2000);
  std::iota(input.begin(), input.end(), 0);
  auto results = pool.imap([](int x) { return x * 2; }, input);
  pool.close();
  EXPECT_THROW(pool.imap([](int x) { return x; }, input), mproc::Error);
  pool.join();  // reads the rest of the input first
  for (int x : input) ASSERT_EQ(results.next(), 2 * x);
  EXPECT_EQ(results.next(), std::nullopt);
}

}  // namespace
