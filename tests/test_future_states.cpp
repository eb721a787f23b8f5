// mproc::Future driven by hand: CPython's FutureTests state matrix (test_concurrent_futures
// test_future.py), plus WaitTests / AsCompletedTests shapes over futures in known states.
//
// A Future is a view of a detail::ResultState; a test makes the state itself and moves it
// through set_running / set_value / set_error / cancel, as an executor's worker would. No
// executor, no timing: every state is reached deterministically.
#include <mproc/mproc.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <latch>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "support/notice.hpp"

using namespace std::chrono_literals;

namespace {

using State = mproc::detail::ResultState<int>;

// ---- futures in each of CPython's module-level states --------------------------------------

struct Driven {
  std::shared_ptr<State> state = std::make_shared<State>();
  mproc::Future<int> future{state};
};

Driven pending() { return {}; }
Driven running() {
  Driven d;
  EXPECT_TRUE(d.state->set_running());
  return d;
}
Driven cancelled() {
  Driven d;
  EXPECT_TRUE(d.future.cancel());
  return d;
}
// CPython's EXCEPTION_FUTURE holds an OSError.
Driven failed() {
  Driven d;
  EXPECT_TRUE(d.state->set_running());
  d.state->set_error(std::make_exception_ptr(std::system_error(EIO, std::generic_category(), "failed on purpose")));
  return d;
}
Driven successful(int value = 42) {
  Driven d;
  EXPECT_TRUE(d.state->set_running());
  d.state->set_value(value);
  return d;
}

// Runs `body` on a new thread; the returned handle joins it (so a failing assertion in the
// test body does not leave the thread running past the objects it uses).
class Background {
 public:
  template <class Fn>
  explicit Background(Fn body) : thread_(std::move(body)) {}
  ~Background() {
    if (thread_.joinable()) thread_.join();
  }
  void join() { thread_.join(); }

 private:
  std::thread thread_;
};

// Signals, from a waiting thread, that it is about to block. The waiter may not be inside
// the wait yet when the flag is seen: the tests are correct either way, and usually exercise
// the blocked path.
using Announce = mproc::testing::Notice;

// ---- status queries in every state ---------------------------------------------------------

TEST(FutureStates, DoneRunningCancelled) {
  struct Row {
    const char* name;
    Driven driven;
    bool done, running, cancelled;
  };
  Row rows[] = {{"pending", pending(), false, false, false},   {"running", running(), false, true, false},
                {"cancelled", cancelled(), true, false, true}, {"failed", failed(), true, false, false},
                {"successful", successful(), true, false, false}};
  for (auto& row : rows) {
    SCOPED_TRACE(row.name);
    EXPECT_EQ(row.driven.future.done(), row.done);
    EXPECT_EQ(row.driven.future.running(), row.running);
    EXPECT_EQ(row.driven.future.cancelled(), row.cancelled);
  }
}

TEST(FutureStates, CancelSucceedsOnlyWhilePendingOrCancelled) {
  auto p = pending();
  EXPECT_TRUE(p.future.cancel());
  EXPECT_TRUE(p.future.cancelled());
  EXPECT_TRUE(p.future.done());
  EXPECT_FALSE(p.state->set_running()) << "a cancelled task must not run";

  auto r = running();
  EXPECT_FALSE(r.future.cancel());
  EXPECT_TRUE(r.future.running());
  EXPECT_FALSE(r.future.cancelled());

  auto c = cancelled();
  EXPECT_TRUE(c.future.cancel());  // again: still cancelled
  EXPECT_TRUE(c.future.cancelled());

  auto f = failed();
  EXPECT_FALSE(f.future.cancel());
  EXPECT_FALSE(f.future.cancelled());

  auto s = successful();
  EXPECT_FALSE(s.future.cancel());
  EXPECT_FALSE(s.future.cancelled());
}

TEST(FutureStates, ResultWithZeroTimeout) {
  EXPECT_THROW(pending().future.result(0s), mproc::TimeoutError);
  EXPECT_THROW(running().future.result(0s), mproc::TimeoutError);
  EXPECT_THROW(cancelled().future.result(0s), mproc::CancelledError);
  EXPECT_THROW(failed().future.result(0s), std::system_error);
  EXPECT_EQ(successful().future.result(0s), 42);
  // A negative timeout is "do not wait", as in Python.
  EXPECT_THROW(pending().future.result(-1s), mproc::TimeoutError);
  EXPECT_EQ(successful().future.result(-1s), 42);
}

TEST(FutureStates, ExceptionWithZeroTimeout) {
  EXPECT_THROW(pending().future.exception(0s), mproc::TimeoutError);
  EXPECT_THROW(running().future.exception(0s), mproc::TimeoutError);
  EXPECT_THROW(cancelled().future.exception(0s), mproc::CancelledError);
  auto error = failed().future.exception(0s);
  ASSERT_NE(error, nullptr);
  EXPECT_THROW(std::rethrow_exception(error), std::system_error);
  EXPECT_EQ(successful().future.exception(0s), nullptr);
}

TEST(FutureStates, HugeTimeoutsDoNotOverflow) {
  // Python's result(timeout=1e300) waits; so must ours, for any duration type.
  auto s = successful();
  EXPECT_EQ(s.future.result(std::chrono::hours::max()), 42);
  EXPECT_EQ(s.future.result(std::chrono::seconds::max()), 42);
  EXPECT_EQ(s.future.result(std::chrono::nanoseconds::max()), 42);
  EXPECT_EQ(s.future.result(std::chrono::duration<double>(1e300)), 42);
  EXPECT_EQ(s.future.exception(std::chrono::hours::max()), nullptr);
  // The minimum is a past deadline, not an overflow either.
  EXPECT_EQ(s.future.result(std::chrono::hours::min()), 42);
  EXPECT_THROW(pending().future.result(std::chrono::hours::min()), mproc::TimeoutError);
  EXPECT_THROW(pending().future.result(std::chrono::duration<double>(-1e300)), mproc::TimeoutError);
}

TEST(FutureStates, ToNanosecondsClampsEveryDurationType) {
  using mproc::detail::to_nanoseconds;
  using std::chrono::duration;
  using std::chrono::nanoseconds;
  EXPECT_EQ(to_nanoseconds(std::chrono::hours::max()), nanoseconds::max());
  EXPECT_EQ(to_nanoseconds(std::chrono::hours::min()), nanoseconds::min());
  EXPECT_EQ(to_nanoseconds(std::chrono::seconds::max()), nanoseconds::max());
  EXPECT_EQ(to_nanoseconds(nanoseconds::max()), nanoseconds::max());
  EXPECT_EQ(to_nanoseconds(1500ms), nanoseconds(1'500'000'000));
  EXPECT_EQ(to_nanoseconds(-2s), nanoseconds(-2'000'000'000));
  EXPECT_EQ(to_nanoseconds(duration<unsigned long long>(~0ull)), nanoseconds::max());
  EXPECT_EQ(to_nanoseconds(duration<unsigned>(3)), 3s);
  EXPECT_EQ(to_nanoseconds(duration<int, std::ratio<3600>>(2)), 2h);
  EXPECT_EQ(to_nanoseconds(duration<long long, std::pico>(1500)), nanoseconds(2));  // rounded up
  EXPECT_EQ(to_nanoseconds(duration<long long, std::ratio<1, 3>>(3)), 1s);
  EXPECT_EQ(to_nanoseconds(duration<double>(0.25)), 250ms);
  EXPECT_EQ(to_nanoseconds(duration<double>(1e300)), nanoseconds::max());
  EXPECT_EQ(to_nanoseconds(duration<double>(-1e300)), nanoseconds::min());
  EXPECT_EQ(to_nanoseconds(duration<double>(std::numeric_limits<double>::infinity())), nanoseconds::max());
  EXPECT_EQ(to_nanoseconds(duration<double>(std::numeric_limits<double>::quiet_NaN())), nanoseconds::max());
}

TEST(FutureStates, HugeTimeoutsWaitForACompletionFromAnotherThread) {
  // Every wait that takes a timeout, given the largest ones, on a future still running. An
  // overflowing deadline lands in the past (they return at once) or wraps around.
  auto r = running();
  std::vector<mproc::Future<int>> just_r{r.future};
  Announce returned;
  std::atomic<int> right{0};
  auto check = [&](bool ok) {
    right += ok ? 1 : 0;
    returned.post();
  };
  std::vector<std::function<void()>> waits = {
      [&] { check(r.future.result(std::chrono::hours::max()) == 7); },
      [&] { check(r.future.result(std::chrono::seconds::max()) == 7); },
      [&] { check(r.future.result(std::chrono::duration<double>(1e300)) == 7); },
      [&] { check(r.future.exception(std::chrono::hours::max()) == nullptr); },
      [&] { check(mproc::wait(just_r, std::chrono::hours::max()).done.size() == 1); },
      [&] { check(mproc::wait(just_r, std::chrono::seconds::max(), mproc::FIRST_COMPLETED).done.size() == 1); },
      [&] {
        int yielded = 0;
        for (auto& f : mproc::as_completed(just_r, std::chrono::hours::max())) yielded += f.result(0s) == 7 ? 1 : 0;
        check(yielded == 1);
      },
  };
  std::vector<std::thread> threads;
  for (auto& wait : waits)
    threads.emplace_back([&wait] {
      try {
        wait();
      } catch (const mproc::TimeoutError&) {
        ADD_FAILURE() << "TimeoutError from a wait of centuries";
      }
    });
  // None may return before the value is set. (A correct wait never returns here, so this
  // always runs its full 300 ms; it only gives a broken one the time to show.)
  EXPECT_FALSE(returned.wait(300ms)) << "a wait returned before the future was done";
  r.state->set_value(7);
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(right, static_cast<int>(waits.size()));
}

// ---- blocked waits woken from another thread (test_result_with_success / _cancel, ...) ------

TEST(FutureStates, BlockedResultWokenBySetValue) {
  auto r = running();
  Announce waiting;
  int got = 0;
  Background waiter([&] {
    waiting.post();
    got = r.future.result();
  });
  ASSERT_TRUE(waiting.wait());
  r.state->set_value(42);
  waiter.join();
  EXPECT_EQ(got, 42);
}

TEST(FutureStates, BlockedResultWokenByCancel) {
  auto p = pending();
  Announce waiting;
  bool got_cancelled = false;
  Background waiter([&] {
    waiting.post();
    try {
      p.future.result(60s);
    } catch (const mproc::CancelledError&) {
      got_cancelled = true;
    }
  });
  ASSERT_TRUE(waiting.wait());
  EXPECT_TRUE(p.future.cancel());
  waiter.join();
  EXPECT_TRUE(got_cancelled);
}

TEST(FutureStates, BlockedExceptionWokenByCancelAndBySetError) {
  auto p = pending();
  Announce waiting;
  bool got_cancelled = false;
  Background waiter([&] {
    waiting.post();
    try {
      p.future.exception();
    } catch (const mproc::CancelledError&) {
      got_cancelled = true;
    }
  });
  ASSERT_TRUE(waiting.wait());
  p.future.cancel();
  waiter.join();
  EXPECT_TRUE(got_cancelled);

  auto r = running();
  Announce waiting2;
  std::exception_ptr error;
  Background waiter2([&] {
    waiting2.post();
    error = r.future.exception(60s);
  });
  ASSERT_TRUE(waiting2.wait());
  r.state->set_error(std::make_exception_ptr(std::system_error(EIO, std::generic_category())));
  waiter2.join();
  ASSERT_NE(error, nullptr);
  EXPECT_THROW(std::rethrow_exception(error), std::system_error);
}

TEST(FutureStates, OnlyTheFirstOutcomeCounts) {
  // CPython raises InvalidStateError on a second set_result; here the executor is the only
  // writer and a late outcome (a task finishing after cancel, say) is dropped.
  auto s = successful(1);
  s.state->set_value(2);
  s.state->set_error(std::make_exception_ptr(std::runtime_error("late")));
  EXPECT_EQ(s.future.result(), 1);

  auto f = failed();
  f.state->set_value(3);
  EXPECT_THROW(f.future.result(), std::system_error);

  auto c = cancelled();
  c.state->set_value(4);
  EXPECT_TRUE(c.future.cancelled());
  EXPECT_THROW(c.future.result(), mproc::CancelledError);
}

// ---- a value whose move throws (issue 4's audit, item 4) -----------------------------------

struct ThrowsOnMove {
  int value = 5;
  ThrowsOnMove() = default;
  ThrowsOnMove(const ThrowsOnMove&) = default;
  ThrowsOnMove(ThrowsOnMove&&) { throw std::runtime_error("move failed"); }
  ThrowsOnMove& operator=(const ThrowsOnMove&) = default;
};

TEST(FutureStates, AValueThatCannotBeStoredFailsTheFuture) {
  auto state = std::make_shared<mproc::detail::ResultState<ThrowsOnMove>>();
  mproc::Future<ThrowsOnMove> future(state);
  std::exception_ptr reported;
  state->error_callback = [&](std::exception_ptr error) { reported = error; };
  ASSERT_TRUE(state->set_running());
  // The prvalue initializes the parameter in place; storing it needs the throwing move.
  EXPECT_NO_THROW(state->set_value(ThrowsOnMove{}));
  ASSERT_TRUE(future.done()) << "stuck in completing";
  EXPECT_FALSE(future.running());
  EXPECT_THROW(future.result(0s), std::runtime_error);
  EXPECT_NE(reported, nullptr) << "the error callback hears of the failure";
  state->set_error(std::make_exception_ptr(std::logic_error("late")));  // dropped
  EXPECT_THROW(future.result(0s), std::runtime_error);
}

// ---- done callbacks ---------------------------------------------------------------------------

TEST(FutureCallbacks, CalledOnceWithTheResultExceptionOrCancellation) {
  {
    auto r = running();
    int calls = 0, seen = 0;
    r.future.add_done_callback([&](mproc::Future<int> f) {
      ++calls;
      seen = f.result(0s);
    });
    EXPECT_EQ(calls, 0);
    r.state->set_value(5);
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(seen, 5);
  }
  {
    auto r = running();
    int calls = 0;
    std::exception_ptr seen;
    r.future.add_done_callback([&](mproc::Future<int> f) {
      ++calls;
      seen = f.exception(0s);  // called from inside the completion: must not deadlock
    });
    r.state->set_error(std::make_exception_ptr(std::invalid_argument("bad")));
    EXPECT_EQ(calls, 1);
    ASSERT_NE(seen, nullptr);
    EXPECT_THROW(std::rethrow_exception(seen), std::invalid_argument);
  }
  {
    auto p = pending();
    int calls = 0;
    bool was_cancelled = false, exception_threw_cancelled = false;
    p.future.add_done_callback([&](mproc::Future<int> f) {
      ++calls;
      was_cancelled = f.cancelled();
      try {
        f.exception();
      } catch (const mproc::CancelledError&) {
        exception_threw_cancelled = true;
      }
    });
    EXPECT_TRUE(p.future.cancel());
    EXPECT_TRUE(p.future.cancel());  // a second cancel does not call it again
    EXPECT_EQ(calls, 1);
    EXPECT_TRUE(was_cancelled);
    EXPECT_TRUE(exception_threw_cancelled);
  }
}

TEST(FutureCallbacks, AddedToADoneFutureRunsAtOnceExactlyOnce) {
  for (auto make : {&cancelled, &failed}) {
    auto d = make();
    int calls = 0;
    std::thread::id where;
    d.future.add_done_callback([&](mproc::Future<int> f) {
      ++calls;
      where = std::this_thread::get_id();
      EXPECT_TRUE(f.done());
    });
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(where, std::this_thread::get_id());
    d.future.cancel();
    d.state->set_value(1);
    EXPECT_EQ(calls, 1);
  }
  auto s = successful();
  int calls = 0;
  s.future.add_done_callback([&](mproc::Future<int> f) {
    ++calls;
    EXPECT_EQ(f.result(0s), 42);
  });
  s.state->set_value(2);
  EXPECT_EQ(calls, 1);
}

TEST(FutureCallbacks, AThrowingCallbackDoesNotStopTheOthers) {
  for (bool already_done : {false, true}) {
    auto r = running();
    if (already_done) r.state->set_value(3);
    std::vector<int> order;
    r.future.add_done_callback([&](mproc::Future<int>) { order.push_back(1); });
    r.future.add_done_callback([&](mproc::Future<int>) {
      order.push_back(2);
      throw std::runtime_error("a failing callback");  // reported on stderr
    });
    r.future.add_done_callback([&](mproc::Future<int>) {
      order.push_back(3);
      throw 17;  // not even a std::exception
    });
    r.future.add_done_callback([&](mproc::Future<int>) { order.push_back(4); });
    if (!already_done) r.state->set_value(3);
    EXPECT_EQ(order, (std::vector<int>{1, 2, 3, 4})) << "in the order added";
    EXPECT_EQ(r.future.result(), 3);
  }
}

TEST(FutureCallbacks, ACallbackMayAddAnotherCallback) {
  auto r = running();
  int inner_calls = 0;
  r.future.add_done_callback([&](mproc::Future<int> f) {
    f.add_done_callback([&](mproc::Future<int>) { ++inner_calls; });  // done: runs at once
  });
  r.state->set_value(1);
  EXPECT_EQ(inner_calls, 1);
}

TEST(FutureCallbacks, RacingCompletionCallsEachCallbackExactlyOnce) {
  // One thread completes futures (values, errors, cancellations) while another adds
  // callbacks to them: whichever side wins, each callback runs exactly once.
  constexpr int n = 20'000;
  std::vector<Driven> futures(n);
  std::vector<std::atomic<int>> calls(n);
  std::atomic<int> total{0};
  std::latch start(2);
  Background completer([&] {
    start.arrive_and_wait();
    for (int i = 0; i < n; ++i) {
      auto& d = futures[static_cast<std::size_t>(i)];
      switch (i % 3) {
        case 0: d.state->set_running(); d.state->set_value(i); break;
        case 1: d.state->set_running(); d.state->set_error(std::make_exception_ptr(std::runtime_error("x"))); break;
        default: d.future.cancel(); break;
      }
    }
  });
  Background adder([&] {
    start.arrive_and_wait();
    for (int i = 0; i < n; ++i)
      futures[static_cast<std::size_t>(i)].future.add_done_callback([&, i](mproc::Future<int>) {
        ++calls[static_cast<std::size_t>(i)];
        ++total;
      });
  });
  completer.join();
  adder.join();
  EXPECT_EQ(total, n);
  for (int i = 0; i < n; ++i) ASSERT_EQ(calls[static_cast<std::size_t>(i)], 1) << "future " << i;
}

// ---- wait / as_completed over futures in known states ----------------------------------------

std::vector<mproc::Future<int>> futures_of(std::initializer_list<const Driven*> driven) {
  std::vector<mproc::Future<int>> out;
  for (auto* d : driven) out.push_back(d->future);
  return out;
}

TEST(FutureWait, AllCompletedWithMixedStates) {
  auto c = cancelled(), f = failed(), s = successful();
  auto [done, not_done] = mproc::wait(futures_of({&c, &f, &s}), std::nullopt, mproc::ALL_COMPLETED);
  EXPECT_EQ(done.size(), 3u);
  EXPECT_TRUE(not_done.empty());
}

TEST(FutureWait, FirstExceptionWhenOneHasAlreadyFailed) {
  auto s = successful(), f = failed(), p = pending(), r = running();
  auto [done, not_done] = mproc::wait(futures_of({&s, &f, &p, &r}), std::nullopt, mproc::FIRST_EXCEPTION);
  EXPECT_EQ(done.size(), 2u);
  EXPECT_EQ(not_done.size(), 2u);
}

TEST(FutureWait, FirstExceptionIgnoresCancellation) {
  // A cancelled future is done but did not fail: FIRST_EXCEPTION keeps waiting for the rest.
  auto c = cancelled(), r = running();
  auto [done, not_done] = mproc::wait(futures_of({&c, &r}), 50ms, mproc::FIRST_EXCEPTION);
  EXPECT_EQ(done.size(), 1u);
  EXPECT_EQ(not_done.size(), 1u);
}

TEST(FutureWait, DuplicatesAreOneFuture) {
  auto s = successful(), r = running();
  auto [done, not_done] = mproc::wait(futures_of({&s, &s, &r, &r}), 0s, mproc::ALL_COMPLETED);
  EXPECT_EQ(done.size(), 1u);
  EXPECT_EQ(not_done.size(), 1u);
}

TEST(FutureWait, ACancelWakesABlockedWait) {
  for (auto return_when : {mproc::ALL_COMPLETED, mproc::FIRST_COMPLETED}) {
    auto p = pending(), s = successful();
    Announce waiting;
    std::size_t done_count = 0;
    Background waiter([&] {
      waiting.post();
      auto futures = return_when == mproc::ALL_COMPLETED ? futures_of({&p, &s}) : futures_of({&p});
      done_count = mproc::wait(futures, std::nullopt, return_when).done.size();
    });
    ASSERT_TRUE(waiting.wait());
    EXPECT_TRUE(p.future.cancel());
    waiter.join();
    EXPECT_EQ(done_count, return_when == mproc::ALL_COMPLETED ? 2u : 1u);
  }
}

TEST(FutureAsCompleted, MixedStatesNoTimeout) {
  auto c = cancelled(), f = failed(), s = successful(), r = running();
  Background finisher([&] { r.state->set_value(9); });
  std::vector<mproc::Future<int>> yielded;
  for (auto& future : mproc::as_completed(futures_of({&c, &f, &s, &r}))) {
    EXPECT_TRUE(future.done());
    yielded.push_back(future);
  }
  ASSERT_EQ(yielded.size(), 4u);
  // The ones already done come first, in input order.
  EXPECT_TRUE(yielded[0] == c.future);
  EXPECT_TRUE(yielded[1] == f.future);
  EXPECT_TRUE(yielded[2] == s.future);
  EXPECT_TRUE(yielded[3] == r.future);
}

TEST(FutureAsCompleted, ZeroTimeoutOnAllDone) {
  auto c = cancelled(), f = failed(), s = successful();
  int yielded = 0;
  for (auto& future : mproc::as_completed(futures_of({&c, &f, &s}), 0s)) {
    EXPECT_TRUE(future.done());
    ++yielded;
  }
  EXPECT_EQ(yielded, 3);
}

TEST(FutureAsCompleted, ZeroTimeoutWithOnePendingNamesIt) {
  auto c = cancelled(), f = failed(), s = successful(), p = pending();
  int yielded = 0;
  try {
    for (auto& future : mproc::as_completed(futures_of({&c, &f, &s, &p}), 0s)) {
      EXPECT_TRUE(future.done());
      ++yielded;
    }
    ADD_FAILURE() << "no TimeoutError";
  } catch (const mproc::TimeoutError& error) {
    EXPECT_STREQ(error.what(), "1 (of 4) futures unfinished");
  }
  EXPECT_EQ(yielded, 3);
}

TEST(FutureAsCompleted, DuplicatesAreYieldedOnce) {
  auto s = successful(), r = running();
  Background finisher([&] { r.state->set_value(1); });
  int yielded = 0;
  for (auto& future : mproc::as_completed(futures_of({&s, &r, &s, &r, &r}))) {
    (void)future;
    ++yielded;
  }
  EXPECT_EQ(yielded, 2);
}

TEST(FutureAsCompleted, ACancelWakesABlockedIteration) {
  auto s = successful(), p = pending();
  auto futures = futures_of({&s, &p});
  auto completed = mproc::as_completed(futures, 60s);
  auto it = completed.begin();  // the successful one, already done
  EXPECT_TRUE(*it == s.future);
  Background canceller([&] { p.future.cancel(); });
  ++it;  // blocks until the cancel
  ASSERT_FALSE(it == std::default_sentinel);
  EXPECT_TRUE((*it).cancelled());
  ++it;
  EXPECT_TRUE(it == std::default_sentinel);
}

}  // namespace
