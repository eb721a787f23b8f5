// concurrent.futures: CPython's test_concurrent_futures behaviours (ExecutorTest, WaitTests,
// AsCompletedTests, FutureTests, shutdown and deadlock tests) against both executors, plus
// mproc's promises: a dead worker fails only its future, per-task timeouts, cancel until
// dispatch, lazy map with a bounded window.
#include <mproc/mproc.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <future>
#include <latch>
#include <memory>
#include <mutex>
#include <numeric>
#include <pthread.h>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <unistd.h>
#include <vector>

#include "support/gate.hpp"
#include "support/notice.hpp"
#include "support/leak_check.hpp"
#include "support/start_method.hpp"

using namespace std::chrono_literals;
using mproc::testing::LeakCheckedTest;

namespace {

// ---- tasks (plain functions: they run in worker processes too) ---------------------------

int square(int x) { return x * x; }
int multiply(int a, int b) { return a * b; }
int my_pid(int) { return static_cast<int>(::getpid()); }
void nothing(int) {}
int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
int divide_100_by(int x) {
  if (x == 0) throw std::domain_error("division by zero");
  return 100 / x;
}
int fail_after_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  throw std::invalid_argument("failed on purpose");
}
int crash_with(int how) {
  switch (how) {
    case 0: ::raise(SIGSEGV); break;
    case 1: std::signal(SIGABRT, SIG_DFL); std::abort();
    case 2: ::_exit(3);
    default: ::raise(SIGKILL); break;
  }
  return how;
}

// A gate shared with worker processes and threads, found by name whatever the start
// method (support/gate.hpp): blocked_task() announces that it started, then waits until the
// test opens the gate. Deterministic where "a task that sleeps long enough" would be a guess.
using Gate = mproc::testing::Gate;
Gate* gate = nullptr;

int blocked_task(int value) {
  Gate::announce();
  Gate::pass();
  return value;
}

// ---- the executors under test -------------------------------------------------------------

template <class Executor>
class ExecutorTest : public LeakCheckedTest {
 protected:
  void SetUp() override {
    LeakCheckedTest::SetUp();
    gate_ = std::make_unique<Gate>();
    gate = gate_.get();
  }
  void TearDown() override {
    gate = nullptr;
    gate_.reset();
    LeakCheckedTest::TearDown();
  }
  static std::unique_ptr<Executor> make(int workers) { return std::make_unique<Executor>(workers); }
  static constexpr bool processes = std::is_same_v<Executor, mproc::ProcessPoolExecutor>;

  std::unique_ptr<Gate> gate_;
};

using Executors = ::testing::Types<mproc::ProcessPoolExecutor, mproc::ThreadPoolExecutor>;
class ExecutorNames {
 public:
  template <class T>
  static std::string GetName(int) {
    return std::is_same_v<T, mproc::ProcessPoolExecutor> ? "Process" : "Thread";
  }
};
TYPED_TEST_SUITE(ExecutorTest, Executors, ExecutorNames);

TYPED_TEST(ExecutorTest, SubmitReturnsTheResult) {
  auto executor = this->make(2);
  EXPECT_EQ(executor->submit(multiply, 2, 8).result(), 16);
  EXPECT_EQ(executor->submit(square, 9).result(1s), 81);
  auto done = executor->submit(nothing, 1);
  done.result();
  EXPECT_TRUE(done.done());
  EXPECT_FALSE(done.cancelled());
  EXPECT_EQ(done.exception(), nullptr);
}

TYPED_TEST(ExecutorTest, MapKeepsInputOrderAndIsEmptyForEmptyInput) {
  auto executor = this->make(3);
  std::vector<int> input(50);
  std::iota(input.begin(), input.end(), 0);
  for (std::size_t chunksize : {1u, 4u, 100u}) {
    std::vector<int> results;
    for (int value : executor->map(square, input, std::nullopt, chunksize)) results.push_back(value);
    ASSERT_EQ(results.size(), input.size());
    for (int x : input) EXPECT_EQ(results[static_cast<std::size_t>(x)], x * x);
  }
  EXPECT_FALSE(executor->map(square, std::vector<int>{}).next().has_value());
}

TYPED_TEST(ExecutorTest, MapRaisesTheExceptionAtItsPosition) {
  auto executor = this->make(2);
  auto results = executor->map(divide_100_by, std::vector<int>{1, 2, 0, 5});
  EXPECT_EQ(results.next(), 100);
  EXPECT_EQ(results.next(), 50);
  EXPECT_THROW(results.next(), std::domain_error);
  EXPECT_EQ(results.next(), 20);
  EXPECT_FALSE(results.next().has_value());
}

TYPED_TEST(ExecutorTest, MapTimeoutCountsFromTheCall) {
  auto executor = this->make(2);
  auto results = executor->map(blocked_task, std::vector<int>{1, 2}, 200ms, 1);
  auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(results.next(), mproc::TimeoutError);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 150ms);
  gate->open();
}

TYPED_TEST(ExecutorTest, MapOverAnEndlessRangeIsLazy) {
  auto executor = this->make(2);
  auto results = executor->map(square, std::views::iota(0), std::nullopt, 1, 4);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(results.next(), i * i);
}

TYPED_TEST(ExecutorTest, BadArgumentsAreInvalidArgument) {
  EXPECT_THROW(TypeParam(0), std::invalid_argument);
  EXPECT_THROW(TypeParam(-1), std::invalid_argument);
  auto executor = this->make(1);
  EXPECT_THROW(executor->map(square, std::vector<int>{1}, std::nullopt, 0), std::invalid_argument);
  EXPECT_THROW(executor->map(square, std::vector<int>{1}, std::nullopt, 1, 0), std::invalid_argument);
}

TYPED_TEST(ExecutorTest, SubmitAfterShutdownIsAnError) {
  auto executor = this->make(1);
  executor->shutdown();
  EXPECT_THROW(executor->submit(square, 1), mproc::Error);
  EXPECT_THROW(executor->map(square, std::vector<int>{1}), mproc::Error);
  executor->shutdown();  // again: harmless
}

TYPED_TEST(ExecutorTest, ShutdownWaitsForEverySubmittedTask) {
  auto executor = this->make(2);
  std::vector<mproc::Future<int>> futures;
  for (int i = 0; i < 20; ++i) futures.push_back(executor->submit(sleep_ms, 5));
  executor->shutdown(true);
  for (auto& future : futures) {
    EXPECT_TRUE(future.done());
    EXPECT_EQ(future.result(), 5);
  }
}

TYPED_TEST(ExecutorTest, ShutdownWithoutWaitReturnsAtOnceAndTasksStillFinish) {
  auto executor = this->make(1);
  auto blocked = executor->submit(blocked_task, 7);
  auto queued = executor->submit(square, 3);
  auto start = std::chrono::steady_clock::now();
  executor->shutdown(false);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  gate->open();
  EXPECT_EQ(blocked.result(), 7);
  EXPECT_EQ(queued.result(), 9);
}

TYPED_TEST(ExecutorTest, ShutdownCancelFuturesCancelsWhatHasNotStarted) {
  auto executor = this->make(1);
  auto running = executor->submit(blocked_task, 1);
  ASSERT_TRUE(gate->wait_started());
  std::vector<mproc::Future<int>> queued;
  for (int i = 0; i < 10; ++i) queued.push_back(executor->submit(square, i));
  std::thread opener([&] {
    // shutdown(wait) blocks until the running task ends; let it end once the queue is cancelled.
    while (!queued.back().cancelled() && !queued.back().done()) std::this_thread::sleep_for(1ms);
    gate->open();
  });
  executor->shutdown(true, true);
  opener.join();
  EXPECT_EQ(running.result(), 1);
  int cancelled = 0;
  for (auto& future : queued) {
    ASSERT_TRUE(future.done());
    if (future.cancelled()) {
      ++cancelled;
      EXPECT_THROW(future.result(), mproc::CancelledError);
      EXPECT_THROW(future.exception(), mproc::CancelledError);
    }
  }
  // A process worker may have had a few queued ahead of the running one (already "running").
  EXPECT_GE(cancelled, 5);
}

TYPED_TEST(ExecutorTest, CancelSucceedsOnlyWhilePending) {
  auto executor = this->make(1);
  auto running = executor->submit(blocked_task, 1);
  ASSERT_TRUE(gate->wait_started());
  // Fill what a process worker may take ahead of time, then one that must stay queued.
  std::vector<mproc::Future<int>> fillers;
  for (int i = 0; i < 70; ++i) fillers.push_back(executor->submit(square, i));
  auto pending = executor->submit(square, 5);
  EXPECT_FALSE(running.cancel());
  EXPECT_TRUE(running.running());
  EXPECT_TRUE(pending.cancel());
  EXPECT_TRUE(pending.cancel());  // again: still cancelled
  EXPECT_TRUE(pending.cancelled());
  EXPECT_TRUE(pending.done());
  EXPECT_FALSE(pending.running());
  gate->open();
  EXPECT_EQ(running.result(), 1);
  for (int i = 0; i < 70; ++i) EXPECT_EQ(fillers[static_cast<std::size_t>(i)].result(), i * i);
  EXPECT_THROW(pending.result(1s), mproc::CancelledError);
}

TYPED_TEST(ExecutorTest, ResultAndExceptionTimeOut) {
  auto executor = this->make(1);
  auto blocked = executor->submit(blocked_task, 1);
  EXPECT_THROW(blocked.result(50ms), mproc::TimeoutError);
  EXPECT_THROW(blocked.exception(50ms), mproc::TimeoutError);
  EXPECT_FALSE(blocked.done());
  gate->open();
  EXPECT_EQ(blocked.exception(10s), nullptr);
}

TYPED_TEST(ExecutorTest, ATaskExceptionKeepsItsType) {
  auto executor = this->make(2);
  auto failed = executor->submit(divide_100_by, 0);
  EXPECT_THROW(failed.result(), std::domain_error);
  auto error = failed.exception();
  ASSERT_NE(error, nullptr);
  EXPECT_THROW(std::rethrow_exception(error), std::domain_error);
  EXPECT_EQ(executor->submit(divide_100_by, 4).result(), 25);  // still usable
}

// ---- wait (WaitTests) ---------------------------------------------------------------------

TYPED_TEST(ExecutorTest, WaitFirstCompleted) {
  auto executor = this->make(2);
  auto quick = executor->submit(multiply, 21, 2);
  auto blocked = executor->submit(blocked_task, 0);
  auto [done, not_done] = mproc::wait(std::vector{quick, blocked}, std::nullopt, mproc::FIRST_COMPLETED);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_TRUE(done[0] == quick);
  ASSERT_EQ(not_done.size(), 1u);
  EXPECT_TRUE(not_done[0] == blocked);
  gate->open();
}

TYPED_TEST(ExecutorTest, WaitFirstCompletedWithSomeAlreadyDone) {
  auto executor = this->make(2);
  auto finished = executor->submit(square, 2);
  finished.result();
  auto blocked = executor->submit(blocked_task, 0);
  auto [done, not_done] = mproc::wait(std::vector{finished, blocked}, 5s, mproc::FIRST_COMPLETED);
  EXPECT_EQ(done.size(), 1u);
  EXPECT_EQ(not_done.size(), 1u);
  gate->open();
}

TYPED_TEST(ExecutorTest, WaitFirstException) {
  auto executor = this->make(3);
  auto quick = executor->submit(sleep_ms, 1);
  auto failing = executor->submit(fail_after_ms, 20);
  auto blocked = executor->submit(blocked_task, 0);
  auto [done, not_done] = mproc::wait(std::vector{quick, failing, blocked}, std::nullopt, mproc::FIRST_EXCEPTION);
  EXPECT_EQ(done.size(), 2u);
  ASSERT_EQ(not_done.size(), 1u);
  EXPECT_TRUE(not_done[0] == blocked);
  gate->open();
}

TYPED_TEST(ExecutorTest, WaitFirstExceptionWithOneAlreadyFailed) {
  auto executor = this->make(2);
  auto failed = executor->submit(divide_100_by, 0);
  failed.exception();
  auto blocked = executor->submit(blocked_task, 0);
  auto [done, not_done] = mproc::wait(std::vector{failed, blocked}, std::nullopt, mproc::FIRST_EXCEPTION);
  EXPECT_EQ(done.size(), 1u);
  EXPECT_EQ(not_done.size(), 1u);
  gate->open();
}

TYPED_TEST(ExecutorTest, WaitAllCompletedAndDuplicates) {
  auto executor = this->make(2);
  std::vector<mproc::Future<int>> futures;
  for (int i = 0; i < 10; ++i) futures.push_back(executor->submit(square, i));
  futures.push_back(futures.front());  // CPython issue 20369: a duplicate is one future
  auto [done, not_done] = mproc::wait(futures);
  EXPECT_EQ(done.size(), 10u);
  EXPECT_TRUE(not_done.empty());
}

TYPED_TEST(ExecutorTest, WaitTimesOutWithoutThrowing) {
  auto executor = this->make(2);
  auto finished = executor->submit(square, 3);
  finished.result();
  auto blocked = executor->submit(blocked_task, 0);
  auto start = std::chrono::steady_clock::now();
  auto [done, not_done] = mproc::wait(std::vector{finished, blocked}, 100ms, mproc::ALL_COMPLETED);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 90ms);
  EXPECT_EQ(done.size(), 1u);
  EXPECT_EQ(not_done.size(), 1u);
  gate->open();
}

// ---- as_completed (AsCompletedTests) ------------------------------------------------------

TYPED_TEST(ExecutorTest, AsCompletedYieldsEachFutureOnceInCompletionOrder) {
  auto executor = this->make(2);
  auto blocked = executor->submit(blocked_task, 1);
  ASSERT_TRUE(gate->wait_started());
  auto quick = executor->submit(square, 4);
  std::vector<mproc::Future<int>> futures{blocked, quick, quick};
  std::vector<int> order;
  bool opened = false;
  for (auto& future : mproc::as_completed(futures)) {
    order.push_back(future.result());
    if (!opened) {
      gate->open();
      opened = true;
    }
  }
  EXPECT_EQ(order, (std::vector<int>{16, 1}));
}

TYPED_TEST(ExecutorTest, AsCompletedTimesOutNamingTheUnfinished) {
  auto executor = this->make(2);
  std::vector<mproc::Future<int>> futures{executor->submit(square, 1), executor->submit(square, 2),
                                          executor->submit(blocked_task, 0), executor->submit(blocked_task, 0)};
  futures[0].result();
  futures[1].result();
  int yielded = 0;
  try {
    for (auto& future : mproc::as_completed(futures, 100ms)) {
      EXPECT_TRUE(future.done());
      ++yielded;
    }
    ADD_FAILURE() << "as_completed did not time out";
  } catch (const mproc::TimeoutError& error) {
    EXPECT_STREQ(error.what(), "2 (of 4) futures unfinished");
  }
  EXPECT_EQ(yielded, 2);
  gate->open();
}


// ---- futures in fixed states, as CPython's module-level PENDING_FUTURE, ... -----------------

// A future no executor owns, driven by hand (CPython's create_future(state=...)): mixing
// them with an executor's futures gives wait / as_completed inputs in every state.
mproc::Future<int> cancelled_future() {
  mproc::Future<int> future(std::make_shared<mproc::detail::ResultState<int>>());
  future.cancel();
  return future;
}
mproc::Future<int> failed_future() {
  auto state = std::make_shared<mproc::detail::ResultState<int>>();
  state->set_running();
  state->set_error(std::make_exception_ptr(std::system_error(EIO, std::generic_category(), "failed on purpose")));
  return mproc::Future<int>(state);
}
mproc::Future<int> successful_future() {
  auto state = std::make_shared<mproc::detail::ResultState<int>>();
  state->set_running();
  state->set_value(42);
  return mproc::Future<int>(state);
}

using mproc::testing::Notice;

// ---- huge timeouts (audit item 1) ---------------------------------------------------------

TYPED_TEST(ExecutorTest, HugeTimeoutsWaitInsteadOfOverflowing) {
  auto executor = this->make(1);
  EXPECT_EQ(executor->submit(sleep_ms, 1).result(std::chrono::hours::max()), 1);
  EXPECT_EQ(executor->submit(sleep_ms, 1).result(std::chrono::seconds::max()), 1);
  EXPECT_EQ(executor->submit(sleep_ms, 1).result(std::chrono::duration<double>(1e300)), 1);
  EXPECT_EQ(executor->submit(sleep_ms, 1).exception(std::chrono::hours::max()), nullptr);
  std::vector futures{executor->submit(sleep_ms, 1), executor->submit(sleep_ms, 2)};
  EXPECT_EQ(mproc::wait(futures, std::chrono::hours::max()).done.size(), 2u);
  int yielded = 0;
  for (auto& future : mproc::as_completed(std::vector{executor->submit(sleep_ms, 1)}, std::chrono::seconds::max())) {
    EXPECT_EQ(future.result(), 1);
    ++yielded;
  }
  EXPECT_EQ(yielded, 1);
}

// ---- shutdown from two threads (audit item 2) -----------------------------------------------

TYPED_TEST(ExecutorTest, ConcurrentShutdownsBothWaitForTheTasks) {
  auto executor = this->make(2);
  std::vector<mproc::Future<int>> futures{executor->submit(blocked_task, 1), executor->submit(blocked_task, 2)};
  ASSERT_TRUE(gate->wait_started(2));
  futures.push_back(executor->submit(square, 3));
  Notice returned;
  std::atomic<int> all_done_on_return{0};
  auto shut_down = [&] {
    executor->shutdown(true);
    bool all_done = true;
    for (auto& future : futures) all_done = all_done && future.done();
    if (all_done) ++all_done_on_return;
    returned.post();
  };
  std::thread first(shut_down);
  std::thread second(shut_down);
  // Neither may return while the tasks are blocked. (A correct shutdown never posts here,
  // so this wait always runs its full length; it only gives a buggy one time to show.)
  EXPECT_FALSE(returned.wait(300ms)) << "shutdown(true) returned while tasks were still running";
  gate->open();
  first.join();
  second.join();
  EXPECT_EQ(all_done_on_return, 2);
}

// ---- wait / as_completed over mixed states (audit item 8) -------------------------------------

TYPED_TEST(ExecutorTest, WaitAllCompletedWithCancelledFailedAndSuccessful) {
  auto executor = this->make(2);
  std::vector futures{successful_future(), cancelled_future(), failed_future(), executor->submit(square, 2),
                      executor->submit(sleep_ms, 20)};
  auto [done, not_done] = mproc::wait(futures, std::nullopt, mproc::ALL_COMPLETED);
  EXPECT_EQ(done.size(), 5u);
  EXPECT_TRUE(not_done.empty());
}

TYPED_TEST(ExecutorTest, WaitFirstExceptionSomeAlreadyComplete) {
  auto executor = this->make(2);
  auto failing = executor->submit(divide_100_by, 0);
  auto blocked = executor->submit(blocked_task, 0);
  auto successful = successful_future(), cancelled = cancelled_future();
  auto [done, not_done] =
      mproc::wait(std::vector{successful, cancelled, failing, blocked}, std::nullopt, mproc::FIRST_EXCEPTION);
  ASSERT_EQ(done.size(), 3u);
  EXPECT_TRUE(done[0] == successful);
  EXPECT_TRUE(done[1] == cancelled);
  EXPECT_TRUE(done[2] == failing);
  ASSERT_EQ(not_done.size(), 1u);
  EXPECT_TRUE(not_done[0] == blocked);
  gate->open();
}

TYPED_TEST(ExecutorTest, WaitFirstExceptionWhenAnExceptionIsAlreadyDone) {
  auto executor = this->make(1);
  auto blocked = executor->submit(blocked_task, 0);
  auto failed = failed_future();
  auto [done, not_done] = mproc::wait(std::vector{failed, blocked}, std::nullopt, mproc::FIRST_EXCEPTION);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_TRUE(done[0] == failed);
  ASSERT_EQ(not_done.size(), 1u);
  gate->open();
}

TYPED_TEST(ExecutorTest, WaitFirstCompletedSomeAlreadyCompleted) {
  auto executor = this->make(1);
  auto blocked = executor->submit(blocked_task, 0);
  auto [done, not_done] =
      mproc::wait(std::vector{cancelled_future(), successful_future(), blocked}, std::nullopt, mproc::FIRST_COMPLETED);
  EXPECT_EQ(done.size(), 2u);
  ASSERT_EQ(not_done.size(), 1u);
  EXPECT_TRUE(not_done[0] == blocked);
  gate->open();
}

TYPED_TEST(ExecutorTest, WaitTimeoutWithMixedStates) {
  auto executor = this->make(1);
  auto blocked = executor->submit(blocked_task, 0);
  auto [done, not_done] = mproc::wait(std::vector{cancelled_future(), failed_future(), successful_future(), blocked},
                                      100ms, mproc::ALL_COMPLETED);
  EXPECT_EQ(done.size(), 3u);
  ASSERT_EQ(not_done.size(), 1u);
  EXPECT_TRUE(not_done[0] == blocked);
  gate->open();
}

TYPED_TEST(ExecutorTest, AsCompletedNoTimeoutWithMixedStates) {
  auto executor = this->make(2);
  std::vector futures{cancelled_future(), failed_future(), successful_future(), executor->submit(square, 3),
                      executor->submit(sleep_ms, 20)};
  std::vector<mproc::Future<int>> yielded;
  for (auto& future : mproc::as_completed(futures)) {
    EXPECT_TRUE(future.done());
    yielded.push_back(future);
  }
  ASSERT_EQ(yielded.size(), 5u);
  for (auto& future : futures) EXPECT_EQ(std::count(yielded.begin(), yielded.end(), future), 1);
}

TYPED_TEST(ExecutorTest, AsCompletedZeroTimeout) {
  auto executor = this->make(1);
  auto finished = executor->submit(square, 5);
  finished.result();
  int yielded = 0;
  for (auto& future : mproc::as_completed(std::vector{cancelled_future(), failed_future(), finished}, 0s)) {
    EXPECT_TRUE(future.done());
    ++yielded;
  }
  EXPECT_EQ(yielded, 3);

  auto blocked = executor->submit(blocked_task, 0);
  yielded = 0;
  try {
    for (auto& future : mproc::as_completed(std::vector{cancelled_future(), failed_future(), finished, blocked}, 0s)) {
      EXPECT_TRUE(future.done());
      ++yielded;
    }
    ADD_FAILURE() << "no TimeoutError";
  } catch (const mproc::TimeoutError& error) {
    EXPECT_STREQ(error.what(), "1 (of 4) futures unfinished");
  }
  EXPECT_EQ(yielded, 3);
  gate->open();
}

TYPED_TEST(ExecutorTest, AsCompletedYieldsADuplicatedFutureOnce) {
  auto executor = this->make(1);
  auto future = executor->submit(sleep_ms, 10);
  int yielded = 0;
  for (auto& f : mproc::as_completed(std::vector{future, future, future})) {
    EXPECT_EQ(f.result(), 10);
    ++yielded;
  }
  EXPECT_EQ(yielded, 1);
}

TYPED_TEST(ExecutorTest, ACancelWakesABlockedWaitAndAsCompleted) {
  auto executor = this->make(1);
  auto running = executor->submit(blocked_task, 0);
  ASSERT_TRUE(gate->wait_started());
  // Fill what a process worker may take ahead of time, then two that must stay queued.
  std::vector<mproc::Future<int>> fillers;
  for (int i = 0; i < 70; ++i) fillers.push_back(executor->submit(square, i));
  auto for_wait = executor->submit(square, 1);
  auto for_as_completed = executor->submit(square, 2);
  std::size_t wait_done = 0;
  std::thread waiter([&] { wait_done = mproc::wait(std::vector{for_wait}, 60s, mproc::ALL_COMPLETED).done.size(); });
  bool yielded_cancelled = false;
  std::thread iterator([&] {
    for (auto& f : mproc::as_completed(std::vector{for_as_completed}, 60s)) yielded_cancelled = f.cancelled();
  });
  EXPECT_TRUE(for_wait.cancel());
  EXPECT_TRUE(for_as_completed.cancel());
  waiter.join();
  iterator.join();
  EXPECT_EQ(wait_done, 1u);
  EXPECT_TRUE(yielded_cancelled);
  gate->open();
}

// ---- executor ports (audit item 9) --------------------------------------------------------------

TYPED_TEST(ExecutorTest, ShutdownWithoutWaitThenTheDestructor) {
  for (bool cancel_futures : {false, true}) {
    auto executor = this->make(1);
    auto blocked = executor->submit(blocked_task, 1);
    ASSERT_TRUE(gate->wait_started());
    auto queued = executor->submit(square, 4);
    executor->shutdown(false, cancel_futures);
    gate->open(1);
    executor.reset();  // waits for the running task (and the queued one, unless cancelled)
    EXPECT_EQ(blocked.result(0s), 1);
    ASSERT_TRUE(queued.done());
    if (!cancel_futures) {
      EXPECT_FALSE(queued.cancelled());
    }
    if (!queued.cancelled()) {
      EXPECT_EQ(queued.result(0s), 16);
    }
  }
}

TYPED_TEST(ExecutorTest, SubmitCancelThenShutdownDoesNotHang) {
  // cpython gh-94440: a future cancelled before a worker took it hung shutdown(wait=True).
  {
    auto executor = this->make(1);
    auto future = executor->submit(square, 1);
    future.cancel();
    executor->shutdown(true);
    EXPECT_TRUE(future.done());
  }
  auto executor = this->make(1);
  auto running = executor->submit(blocked_task, 0);
  ASSERT_TRUE(gate->wait_started());
  std::vector<mproc::Future<int>> fillers;
  for (int i = 0; i < 70; ++i) fillers.push_back(executor->submit(square, i));
  auto pending = executor->submit(square, 1);
  EXPECT_TRUE(pending.cancel());
  gate->open(1);
  executor->shutdown(true);
  EXPECT_TRUE(pending.cancelled());
  for (auto& filler : fillers) EXPECT_TRUE(filler.done());
}

TYPED_TEST(ExecutorTest, DefaultMaxWorkersIsPythons) {
  TypeParam executor;
  if constexpr (TestFixture::processes) {
    EXPECT_EQ(executor.max_workers(), mproc::cpu_count());
  } else {
    EXPECT_EQ(executor.max_workers(), std::min(32, mproc::cpu_count() + 4));
  }
}

// ---- done callbacks (FutureTests) ---------------------------------------------------------

TYPED_TEST(ExecutorTest, DoneCallbacksRunOnceEvenIfOneThrows) {
  auto executor = this->make(1);
  auto future = executor->submit(blocked_task, 5);
  std::atomic<int> calls{0};
  std::atomic<int> seen{0};
  future.add_done_callback([&](mproc::Future<int>) {
    ++calls;
    throw std::runtime_error("a failing callback");  // reported; the next one still runs
  });
  future.add_done_callback([&](mproc::Future<int> f) {
    ++calls;
    seen = f.result();
  });
  gate->open();
  future.result();
  EXPECT_TRUE(mproc::testing::eventually([&] { return calls == 2; }));
  EXPECT_EQ(seen, 5);
  // Added after completion: called at once, on this thread.
  future.add_done_callback([&](mproc::Future<int>) { ++calls; });
  EXPECT_EQ(calls, 3);
}

TYPED_TEST(ExecutorTest, DoneCallbacksTakeTheFutureInEveryFormAUserWrites) {
  // Generic lambdas, by value or by reference, and the type itself: all are accepted.
  auto executor = this->make(1);
  auto future = executor->submit(square, 6);
  future.result();
  int sum = 0;
  future.add_done_callback([&](auto f) { sum += f.result(); });
  future.add_done_callback([&](auto& f) { sum += f.result(); });
  future.add_done_callback([&](const auto& f) { sum += f.result(); });
  future.add_done_callback([&](auto&& f) { sum += f.result(); });
  future.add_done_callback([&](mproc::Future<int>& f) { sum += f.result(); });
  future.add_done_callback([&](const mproc::Future<int>& f) { sum += f.result(); });
  EXPECT_EQ(sum, 6 * 36);
}

TYPED_TEST(ExecutorTest, DoneCallbackOfACancelledFuture) {
  auto executor = this->make(1);
  auto running = executor->submit(blocked_task, 0);
  ASSERT_TRUE(gate->wait_started());
  std::vector<mproc::Future<int>> fillers;
  for (int i = 0; i < 70; ++i) fillers.push_back(executor->submit(square, i));
  auto pending = executor->submit(square, 1);
  bool was_cancelled = false;
  pending.add_done_callback([&](mproc::Future<int> f) { was_cancelled = f.cancelled(); });
  EXPECT_TRUE(pending.cancel());
  EXPECT_TRUE(was_cancelled);
  gate->open();
}

// ---- initializer --------------------------------------------------------------------------

// Atomic: with threads, every worker's initializer writes it at once.
std::atomic<int> initialized_value = 0;
int read_initialized(int) { return initialized_value.load(); }
void failing_initializer() { throw std::runtime_error("initializer failed on purpose"); }

TYPED_TEST(ExecutorTest, InitializerRunsBeforeTasks) {
  initialized_value = 0;
  TypeParam executor({.max_workers = 2, .initializer = [] { initialized_value = 42; }});
  if constexpr (TestFixture::processes) {
    EXPECT_EQ(initialized_value.load(), 0);  // ran in the workers only
  }
  EXPECT_EQ(executor.submit(read_initialized, 0).result(), 42);
}

TYPED_TEST(ExecutorTest, FailingInitializerBreaksTheExecutor) {
  TypeParam executor({.max_workers = 2, .initializer = failing_initializer});
  // The workers may fail before this submit (it throws) or after (its future fails).
  EXPECT_THROW(executor.submit(square, 1).result(10s), mproc::BrokenExecutor);
  EXPECT_TRUE(mproc::testing::eventually([&] {
    try {
      executor.submit(square, 2).result(10s);
      return false;
    } catch (const mproc::BrokenExecutor&) {
      return true;
    }
  }));
}

// ---- process-specific: crashes, timeouts, worker lifetime ----------------------------------

class ProcessExecutor : public LeakCheckedTest {};

TEST_F(ProcessExecutor, ADeadWorkerFailsOnlyItsFuture) {
  mproc::ProcessPoolExecutor executor(2);
  for (int how = 0; how < 4; ++how) {
    std::vector<mproc::Future<int>> others;
    for (int i = 0; i < 20; ++i) others.push_back(executor.submit(square, i));
    auto crashed = executor.submit(crash_with, how);
    EXPECT_THROW(crashed.result(), mproc::WorkerLostError) << "crash kind " << how;
    for (int i = 0; i < 20; ++i) EXPECT_EQ(others[static_cast<std::size_t>(i)].result(), i * i);
  }
  EXPECT_EQ(executor.submit(square, 12).result(), 144);  // CPython would be broken here
}

TEST_F(ProcessExecutor, AWorkerKilledFromOutside) {
  Gate local;  // made before the executor: its workers inherit it
  gate = &local;
  mproc::ProcessPoolExecutor executor(1);
  auto blocked = executor.submit(blocked_task, 1);
  ASSERT_TRUE(local.wait_started());  // killed before it started, the task would be requeued instead
  auto pids = executor.worker_pids();
  ASSERT_EQ(pids.size(), 1u);
  EXPECT_TRUE(blocked.running());
  ::kill(pids[0], SIGKILL);
  try {
    blocked.result(30s);
    ADD_FAILURE() << "no error";
  } catch (const mproc::WorkerLostError& error) {
    EXPECT_EQ(error.signal(), SIGKILL);
  }
  EXPECT_EQ(executor.submit(square, 3).result(), 9);
  gate = nullptr;
}

TEST_F(ProcessExecutor, TaskTimeoutKillsTheWorker) {
  mproc::ProcessPoolExecutor executor({.max_workers = 1, .task_timeout = 200ms});
  auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(executor.submit(sleep_ms, 60'000).result(), mproc::TimeoutError);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 20s);
  EXPECT_EQ(executor.submit(square, 5).result(), 25);
}

TEST_F(ProcessExecutor, MaxTasksPerChildReplacesTheWorker) {
  mproc::ProcessPoolExecutor executor({.max_workers = 1, .max_tasks_per_child = 3});
  std::set<int> first;
  for (int i = 0; i < 3; ++i) first.insert(executor.submit(my_pid, 0).result());
  EXPECT_EQ(first.size(), 1u);
  EXPECT_NE(executor.submit(my_pid, 0).result(), *first.begin());
  EXPECT_THROW(mproc::ProcessPoolExecutor({.max_workers = 1, .max_tasks_per_child = 0}), std::invalid_argument);
}

TEST_F(ProcessExecutor, MaxTasksPerChildWithEarlyShutdown) {
  mproc::ProcessPoolExecutor executor({.max_workers = 3, .max_tasks_per_child = 1});
  std::vector<mproc::Future<int>> futures;
  for (int i = 0; i < 20; ++i) futures.push_back(executor.submit(square, i));
  executor.shutdown();
  for (int i = 0; i < 20; ++i) EXPECT_EQ(futures[static_cast<std::size_t>(i)].result(), i * i);
}

mproc::ProcessPoolExecutor* nested_executor = nullptr;

int nested_submit(int) {
  // Reaches the executor object copied into this worker: a clear error, not a hang.
  try {
    nested_executor->submit(square, 1);
  } catch (const mproc::Error&) {
    return -1;
  }
  return 1;
}

TEST_F(ProcessExecutor, UsingTheExecutorFromItsOwnTaskIsAnError) {
  MPROC_FORK_ONLY();  // only a fork gives a worker the parent's executor object to misuse
  // max_tasks_per_child = 1: the worker that runs nested_submit is forked after
  // nested_executor is set, so it sees a complete copy of the executor.
  mproc::ProcessPoolExecutor executor({.max_workers = 1, .max_tasks_per_child = 1});
  nested_executor = &executor;
  EXPECT_EQ(executor.submit(square, 1).result(), 1);
  EXPECT_EQ(executor.submit(nested_submit, 0).result(10s), -1);
  nested_executor = nullptr;
}

TEST_F(ProcessExecutor, DestructorWaitsForSubmittedWork) {
  mproc::Future<int> future;
  {
    mproc::ProcessPoolExecutor executor(2);
    future = executor.submit(sleep_ms, 50);
  }
  EXPECT_TRUE(future.done());
  EXPECT_EQ(future.result(), 50);
}

int exit_99(int) { ::_exit(99); }

struct NotStandardError : std::exception {
  const char* what() const noexcept override { return "not a standard exception"; }
};
int raise_not_standard(int) { throw NotStandardError{}; }

// A value whose serialize() throws while saving when asked to: the failure happens while
// encoding, at run time, with a type that is serializable as far as the compiler knows.
struct Poison {
  int value = 0;
  bool fail_to_save = false;
  template <class Archive>
  void serialize(Archive& ar) {
    if constexpr (Archive::is_saving::value) {
      if (fail_to_save) throw std::runtime_error("Poison refuses to be saved");
    }
    ar(value, fail_to_save);
  }
};
int take_poison(Poison p) { return p.value; }
Poison make_poison(int fail) { return Poison{7, fail != 0}; }

TEST_F(ProcessExecutor, WorkerLostErrorCarriesTheExitCode) {
  mproc::ProcessPoolExecutor executor(1);
  try {
    executor.submit(exit_99, 0).result(30s);
    ADD_FAILURE() << "no error";
  } catch (const mproc::WorkerLostError& error) {
    EXPECT_EQ(error.exitcode(), 99);
    EXPECT_FALSE(error.signal().has_value());
    EXPECT_GT(error.pid(), 0);
    EXPECT_NE(error.pid(), ::getpid());
  }
  EXPECT_EQ(executor.submit(square, 4).result(), 16);
}

TEST_F(ProcessExecutor, ANonStandardExceptionArrivesAsRemoteError) {
  mproc::ProcessPoolExecutor executor(1);
  auto pid = executor.submit(my_pid, 0).result();
  auto future = executor.submit(raise_not_standard, 0);
  try {
    future.result();
    ADD_FAILURE() << "no error";
  } catch (const mproc::RemoteError& error) {
    EXPECT_NE(error.type_name().find("NotStandardError"), std::string::npos) << error.type_name();
    EXPECT_EQ(error.message(), "not a standard exception");
    EXPECT_EQ(error.pid(), pid);
  }
  auto error = future.exception();
  ASSERT_NE(error, nullptr);
  EXPECT_THROW(std::rethrow_exception(error), mproc::RemoteError);
}

TEST_F(ProcessExecutor, AnArgumentThatFailsToSerializeMakesSubmitThrow) {
  // The arguments are encoded in submit(), on the caller's thread: the error surfaces there,
  // with the caller's stack, and nothing is queued. (Python, which pickles on a feeder thread,
  // fails the future instead; a C++ caller gains nothing from a future that is born failed.)
  mproc::ProcessPoolExecutor executor(1);
  EXPECT_THROW(executor.submit(take_poison, Poison{1, true}), std::runtime_error);
  EXPECT_EQ(executor.submit(take_poison, Poison{3, false}).result(), 3);
}

TEST_F(ProcessExecutor, AResultThatFailsToSerializeFailsItsFutureOnly) {
  mproc::ProcessPoolExecutor executor(1);
  auto bad = executor.submit(make_poison, 1);
  EXPECT_THROW(bad.result(30s), std::exception);
  EXPECT_NE(bad.exception(), nullptr);
  std::vector<mproc::Future<int>> after;
  for (int i = 0; i < 20; ++i) after.push_back(executor.submit(square, i));
  EXPECT_EQ(after.front().result(30s), 0);
  EXPECT_TRUE(mproc::wait(after, 30s).not_done.empty());
  for (int i = 0; i < 20; ++i) EXPECT_EQ(after[static_cast<std::size_t>(i)].result(0s), i * i);
  EXPECT_EQ(executor.submit(make_poison, 0).result(30s).value, 7);
}

// A caller that collects a direct task's result frees the worker: the tasks held back for it
// (prefetch depth 1: tasks measured as slow) must be dispatched then, not at some later event.
TEST_F(ProcessExecutor, DoneCallbacksNeverRunOnTheThreadWaitingForTheResult) {
  // A lone task's result may be read by the thread waiting in result(); its done callbacks
  // still run on the executor's thread, as Python runs them on its manager thread (a caller
  // holding a lock its callback takes must not deadlock itself).
  mproc::ProcessPoolExecutor executor(1);
  for (int round = 0; round < 20; ++round) {
    const auto caller = std::this_thread::get_id();
    std::atomic<bool> on_caller{false};
    std::atomic<int> calls{0};
    auto future = executor.submit(sleep_ms, 5);
    future.add_done_callback([&](const mproc::Future<int>&) {
      on_caller = std::this_thread::get_id() == caller;
      ++calls;
    });
    EXPECT_EQ(future.result(), 5);
    EXPECT_TRUE(mproc::testing::eventually([&] { return calls.load() == 1; }));
    EXPECT_FALSE(on_caller);
  }
}

TEST_F(ProcessExecutor, ABurstBehindASlowDirectTask) {
  mproc::ProcessPoolExecutor executor(1);
  for (int i = 0; i < 3; ++i) executor.submit(sleep_ms, 5).result();  // measured slow: depth 1
  auto first = executor.submit(sleep_ms, 20);  // handed straight to the idle worker
  std::vector<mproc::Future<int>> after;
  for (int i = 0; i < 20; ++i) after.push_back(executor.submit(square, i));  // held back
  EXPECT_EQ(first.result(), 20);  // collected by this thread
  EXPECT_EQ(after.back().result(30s), 19 * 19);
}

// ---- thread-specific ------------------------------------------------------------------------

class ThreadExecutor : public LeakCheckedTest {};

TEST_F(ThreadExecutor, AcceptsCapturingCallablesAndKeepsTheExceptionObject) {
  mproc::ThreadPoolExecutor executor(2);
  std::string prefix = "item-";
  auto future = executor.submit([&prefix](int i) { return prefix + std::to_string(i); }, 7);
  EXPECT_EQ(future.result(), "item-7");
  struct Custom : std::exception {
    int code = 17;
  };
  auto failing = executor.submit([] { throw Custom{}; });
  try {
    failing.result();
    ADD_FAILURE();
  } catch (const Custom& error) {
    EXPECT_EQ(error.code, 17);  // the original object, not a RemoteError
  }
}

TEST_F(ThreadExecutor, ThreadsStartOnDemandUpToMaxWorkersWithNames) {
  mproc::ThreadPoolExecutor executor({.max_workers = 3, .thread_name_prefix = "mpt"});
  std::mutex mutex;
  std::set<std::string> names;
  std::vector<mproc::Future<void>> futures;
  for (int i = 0; i < 30; ++i)
    futures.push_back(executor.submit([&] {
      char name[16] = {};
      ::pthread_getname_np(::pthread_self(), name, sizeof name);
      std::lock_guard lock(mutex);
      names.insert(name);
    }));
  for (auto& f : futures) f.result();
  EXPECT_GE(names.size(), 1u);
  EXPECT_LE(names.size(), 3u);
  for (auto& name : names) EXPECT_EQ(name.rfind("mpt_", 0), 0u) << name;
}

TEST_F(ThreadExecutor, ShutdownFromATaskIsAnError) {
  mproc::ThreadPoolExecutor executor(1);
  auto future = executor.submit([&] {
    try {
      executor.shutdown(true);
      return 0;
    } catch (const mproc::Error&) {
      return 1;
    }
  });
  EXPECT_EQ(future.result(), 1);
}

TEST_F(ThreadExecutor, DefaultThreadNamesKeepTheirIndex) {
  // Linux allows 15 characters: the prefix is cut, the "_<index>" suffix kept.
  for (std::string prefix : {std::string(), std::string("a_rather_long_thread_name_prefix")}) {
    constexpr int workers = 3;
    mproc::ThreadPoolExecutor executor({.max_workers = workers, .thread_name_prefix = prefix});
    std::latch all_running(workers);  // holds every task until each has its own thread
    std::mutex mutex;
    std::set<std::string> names;
    std::vector<mproc::Future<void>> futures;
    for (int i = 0; i < workers; ++i)
      futures.push_back(executor.submit([&] {
        char name[16] = {};
        ::pthread_getname_np(::pthread_self(), name, sizeof name);
        {
          std::lock_guard lock(mutex);
          names.insert(name);
        }
        all_running.arrive_and_wait();
      }));
    for (auto& f : futures) f.result(30s);
    EXPECT_EQ(names.size(), static_cast<std::size_t>(workers)) << "names are not distinct";
    for (int i = 0; i < workers; ++i) {
      std::string suffix = "_" + std::to_string(i);
      EXPECT_EQ(std::count_if(names.begin(), names.end(),
                              [&](const std::string& name) {
                                return name.size() > suffix.size() &&
                                       name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
                              }),
                1)
          << "no thread named ..." << suffix;
    }
    for (auto& name : names) {
      EXPECT_LE(name.size(), 15u);
      EXPECT_EQ(name.substr(0, 4), prefix.empty() ? "Thre" : prefix.substr(0, 4)) << name;
    }
  }
}

TEST_F(ThreadExecutor, InitializerRunsInEveryWorker) {
  constexpr int workers = 4;
  std::mutex mutex;
  std::set<std::thread::id> initialized;
  int initializer_calls = 0;
  mproc::ThreadPoolExecutor executor({.max_workers = workers, .initializer = [&] {
                                        std::lock_guard lock(mutex);
                                        initialized.insert(std::this_thread::get_id());
                                        ++initializer_calls;
                                      }});
  std::latch all_running(workers);
  std::vector<mproc::Future<bool>> futures;
  for (int i = 0; i < workers; ++i)
    futures.push_back(executor.submit([&] {
      all_running.arrive_and_wait();
      std::lock_guard lock(mutex);
      return initialized.count(std::this_thread::get_id()) == 1;  // ran first, on this thread
    }));
  for (auto& f : futures) EXPECT_TRUE(f.result(30s));
  for (int i = 0; i < 20; ++i) executor.submit([] {}).result(30s);
  executor.shutdown();
  EXPECT_EQ(initializer_calls, workers);
  EXPECT_EQ(initialized.size(), static_cast<std::size_t>(workers));
}

TEST_F(ThreadExecutor, NoStaleReferences) {
  // cpython test_no_stale_references: once a task has run, the executor keeps nothing of it
  // alive, even though its future is gone and never looked at.
  struct Tracked {
    explicit Tracked(std::promise<void>* p) : destroyed(p) {}
    Tracked(const Tracked&) = delete;
    ~Tracked() { destroyed->set_value(); }
    std::promise<void>* destroyed;
  };
  mproc::ThreadPoolExecutor executor(1);
  std::promise<void> destroyed;
  auto was_destroyed = destroyed.get_future();
  auto tracked = std::make_shared<Tracked>(&destroyed);
  std::weak_ptr<Tracked> weak = tracked;
  Notice ran;
  executor.submit([tracked = std::move(tracked), &ran] { ran.post(); });  // future discarded
  ASSERT_TRUE(ran.wait());
  EXPECT_EQ(was_destroyed.wait_for(30s), std::future_status::ready);
  EXPECT_TRUE(weak.expired());
}

// ---- the last reference dropped on the executor's own thread (audit item 3) -------------------

TEST_F(ThreadExecutor, LastReferenceDroppedInsideItsOwnTask) {
  for (int workers : {1, 3}) {
    auto executor = std::make_shared<mproc::ThreadPoolExecutor>(workers);
    Notice release;
    auto future = executor->submit([keep = executor, &release]() mutable {
      EXPECT_TRUE(release.wait());
      keep.reset();  // the executor's destructor runs here, on its own thread
      return 1;
    });
    auto queued = executor->submit([] { return 2; });
    executor.reset();  // the task now holds the last reference
    release.post();
    EXPECT_EQ(future.result(30s), 1);
    EXPECT_EQ(queued.result(30s), 2) << "an accepted task still runs";
  }
}

TEST_F(ThreadExecutor, LastReferenceDroppedInsideADoneCallback) {
  auto executor = std::make_shared<mproc::ThreadPoolExecutor>(2);
  Notice release, called;
  auto future = executor->submit([&release] { return release.wait(); });
  future.add_done_callback([keep = executor, &called](mproc::Future<bool>) mutable {
    keep.reset();  // the callback runs on the worker that completed the future
    called.post();
  });
  executor.reset();
  release.post();
  EXPECT_TRUE(future.result(30s));
  EXPECT_TRUE(called.wait());
}

TEST_F(ThreadExecutor, ThreadPoolLastReferenceDroppedInsideItsOwnTask) {
  auto pool = std::make_shared<mproc::ThreadPool>(2);
  Notice release;
  auto result = pool->apply_async([keep = pool, &release]() mutable {
    EXPECT_TRUE(release.wait());
    keep.reset();
    return 3;
  });
  pool.reset();
  release.post();
  EXPECT_EQ(result.get(30s), 3);
}

// ---- a value whose move throws (audit item 4) -------------------------------------------------

struct ThrowsOnMove {
  int value = 5;
  ThrowsOnMove() = default;
  ThrowsOnMove(const ThrowsOnMove&) = default;
  ThrowsOnMove(ThrowsOnMove&&) { throw std::runtime_error("move failed"); }
  ThrowsOnMove& operator=(const ThrowsOnMove&) = default;
};

TEST_F(ThreadExecutor, AResultThatCannotBeStoredFailsTheFuture) {
  mproc::ThreadPoolExecutor executor(1);
  auto future = executor.submit([] { return ThrowsOnMove{}; });
  EXPECT_THROW(future.result(30s), std::runtime_error);  // not TimeoutError: not stuck
  EXPECT_TRUE(future.done());
  EXPECT_FALSE(future.running());
  mproc::ThreadPool pool(1);
  EXPECT_THROW(pool.apply_async([] { return ThrowsOnMove{}; }).get(30s), std::runtime_error);
}

// ---- shutdown(cancel_futures) after shutdown(wait = false) (audit item 6) ----------------------

// Posts `notice` when the thread that created it exits (a thread_local's destructor).
struct ExitNotifier {
  Notice* notice;
  ~ExitNotifier() { notice->post(); }
};

TEST_F(ThreadExecutor, CancelFuturesAfterShutdownWithoutWaitLeavesNoTaskBehind) {
  Gate local;
  gate = &local;
  Notice worker_exited;
  mproc::ThreadPoolExecutor executor({.max_workers = 1, .initializer = [&] {
                                        thread_local ExitNotifier notifier{&worker_exited};
                                        (void)notifier;
                                      }});
  auto running = executor.submit(blocked_task, 1);
  ASSERT_TRUE(local.wait_started());
  auto victim = executor.submit(square, 2);
  // Runs on the thread that cancels the victim, in the middle of cancelling the queue: lets
  // the worker finish and look at the queue, and waits until it has exited or (correctly)
  // found more work to do first.
  victim.add_done_callback([&](mproc::Future<int>) {
    local.open(1);
    EXPECT_TRUE(worker_exited.wait(30s));
  });
  // Its chunks are queued by the call; cancel_futures cancels them too (Python cancels every
  // pending future of a map), but each still completes: none may be left with nobody to run
  // or fail it.
  auto mapped = executor.map(square, std::vector<int>{3, 4}, std::nullopt, 1);
  EXPECT_THROW(mapped.next(1ms), mproc::TimeoutError);
  executor.shutdown(false);
  executor.shutdown(true, true);
  EXPECT_TRUE(victim.cancelled());
  EXPECT_EQ(running.result(0s), 1);
  EXPECT_THROW(mapped.next(10s), mproc::CancelledError) << "a queued map chunk was dropped";
  EXPECT_THROW(mapped.next(10s), mproc::CancelledError);
  EXPECT_EQ(mapped.next(10s), std::nullopt);
  gate = nullptr;
}

// ---- ThreadPool: the Pool API on threads ----------------------------------------------------

class ThreadPoolTest : public LeakCheckedTest {};

TEST_F(ThreadPoolTest, PoolApiOnThreads) {
  mproc::ThreadPool pool(3);
  int offset = 10;
  EXPECT_EQ(pool.apply([offset](int x) { return x + offset; }, 5), 15);
  std::vector<int> input(100);
  std::iota(input.begin(), input.end(), 0);
  std::vector<int> expected;
  for (int x : input) expected.push_back(x * x);
  EXPECT_EQ(pool.map(square, input), expected);
  EXPECT_EQ(pool.map(square, input, 7), expected);
  EXPECT_TRUE(pool.map(square, std::vector<int>{}).empty());
  std::vector<std::tuple<int, int>> pairs = {{1, 2}, {3, 4}};
  EXPECT_EQ(pool.starmap(multiply, pairs), (std::vector<int>{2, 12}));
  std::vector<int> lazy;
  for (int value : pool.imap(square, input)) lazy.push_back(value);
  EXPECT_EQ(lazy, expected);
  std::multiset<int> unordered;
  for (int value : pool.imap_unordered(square, input, 3)) unordered.insert(value);
  EXPECT_EQ(unordered, std::multiset<int>(expected.begin(), expected.end()));
  std::atomic<int> count{0};
  pool.map([&](int) { ++count; }, input);
  EXPECT_EQ(count, 100);
  EXPECT_THROW(pool.map(square, input, 0), std::invalid_argument);
  EXPECT_THROW(mproc::ThreadPool(0), std::invalid_argument);
}

TEST_F(ThreadPoolTest, AsyncResultsAndCallbacks) {
  mproc::ThreadPool pool(2);
  std::atomic<int> called{0};
  auto result = pool.apply_async(mproc::CallOptions{.callback = [&](const int& v) { called = v; }}, square, 6);
  EXPECT_EQ(result.get(1s), 36);
  EXPECT_EQ(called, 36);
  std::atomic<bool> errored{false};
  auto failed = pool.apply_async(mproc::CallOptions{.error_callback = [&](std::exception_ptr) { errored = true; }},
                                 divide_100_by, 0);
  failed.wait();
  EXPECT_FALSE(failed.successful());
  EXPECT_TRUE(errored);
  EXPECT_THROW(failed.get(), std::domain_error);
  EXPECT_THROW(pool.apply_async(mproc::CallOptions{.timeout = 1s}, square, 1), std::invalid_argument);
  auto mapped = pool.map_async(square, std::vector<int>{1, 2, 3});
  EXPECT_EQ(mapped.get(), (std::vector<int>{1, 4, 9}));
}

TEST_F(ThreadPoolTest, TerminateCancelsQueuedWork) {
  Gate local;
  gate = &local;
  mproc::ThreadPool pool(1);
  auto running = pool.apply_async(blocked_task, 1);
  ASSERT_TRUE(local.wait_started());
  auto queued = pool.apply_async(square, 2);
  pool.terminate();
  EXPECT_THROW(queued.get(), mproc::CancelledError);
  EXPECT_THROW(pool.apply_async(square, 3), mproc::Error);
  local.open();
  EXPECT_EQ(running.get(), 1);
  pool.join();
  gate = nullptr;
}

TEST_F(ThreadPoolTest, JoinBeforeCloseIsAnError) {
  mproc::ThreadPool pool(1);
  EXPECT_THROW(pool.join(), mproc::Error);
  pool.close();
  pool.join();
}

}  // namespace
