// Extreme timeouts at every blocking call: hours::max(), nanoseconds::max() and
// duration<double>(1e300) must wait (an overflow that wraps into the past turned them into
// "now"), zero and negative ones must not block. One table of blocking calls, each run with
// each kind of timeout; all of them go through mproc/detail/timeout.hpp.
//
// A huge timeout is checked in two steps: the call is still waiting after a short moment, then
// the condition it waits for is made true and it must return with success. The short moment
// only has to be long enough for a broken call to return at once; a correct call passes
// however long it is. Nothing else depends on timing.
#include <mproc/mproc.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <gtest/gtest.h>

using namespace std::chrono_literals;

namespace {

using AnyTimeout = std::variant<std::chrono::hours, std::chrono::nanoseconds, std::chrono::milliseconds,
                                std::chrono::duration<double>>;

struct Kind {
  std::string name;
  AnyTimeout timeout;
  bool blocks;  // true: the call must wait for its condition; false: it must return at once
};

const std::vector<Kind>& kinds() {
  static const std::vector<Kind> all = {
      {"HoursMax", std::chrono::hours::max(), true},
      {"NanosecondsMax", std::chrono::nanoseconds::max(), true},
      {"Double1e300", std::chrono::duration<double>(1e300), true},
      {"Zero", std::chrono::milliseconds(0), false},
      {"Negative", std::chrono::milliseconds(-5), false},
      {"HoursMin", std::chrono::hours::min(), false},
  };
  return all;
}

// A blocking call under test. call() returns true when it got what it waited for, false when it
// reported a timeout (false, Empty, Full, TimeoutError, a broken barrier). release() makes the
// awaited condition true; `returned` says whether call() has returned (for calls such as
// Condition::wait, whose condition is a notification that only a waiter can take).
struct Scenario {
  std::function<bool(const AnyTimeout&)> call;
  std::function<void(const std::atomic<bool>& returned)> release;
};

template <class State, class Call, class Release>
Scenario make_scenario(Call call, Release release) {
  auto state = std::make_shared<State>();
  return {[state, call](const AnyTimeout& timeout) {
            return std::visit([&](auto duration) { return call(*state, duration); }, timeout);
          },
          [state, release](const std::atomic<bool>& returned) { release(*state, returned); }};
}

struct Case {
  std::string name;
  std::function<Scenario(const AnyTimeout& timeout)> make;  // the timeout: for constructors that take one
};

// Pool and executor tasks wait for this gate. A global, not an argument: an Event cannot be
// encoded, but a worker forked after it was set reaches the same shared memory through it.
mproc::Event* g_gate = nullptr;
int gated(int x) {
  g_gate->wait();
  return x;
}

// Sets the global gate before a pool forks its workers (so it is the first member of what
// holds both); whoever holds it opens it before the pool is destroyed, which waits for its tasks.
struct Gate {
  mproc::Event event;
  Gate() { g_gate = &event; }
};

template <class Pool>
struct GatedPool {
  Gate gate;
  Pool pool{1};
  ~GatedPool() { gate.event.set(); }
};

struct GatedProcessExecutor {
  Gate gate;
  mproc::ProcessPoolExecutor executor{mproc::ProcessPoolExecutorOptions{.max_workers = 1}};
  mproc::Future<int> future = executor.submit(gated, 7);
  ~GatedProcessExecutor() { gate.event.set(); }
};

struct GatedThreadExecutor {
  mproc::Event gate;
  mproc::ThreadPoolExecutor executor{mproc::ThreadPoolExecutorOptions{.max_workers = 1}};
  mproc::Future<int> future = executor.submit([this] {
    gate.wait();
    return 7;
  });
  ~GatedThreadExecutor() { gate.set(); }
};

struct HeldLock {
  mproc::Lock lock;
  HeldLock() { lock.acquire(); }
};
struct HeldRLock {
  mproc::RLock lock;
  HeldRLock() { lock.acquire(); }
};
struct TakenBoundedSemaphore {
  mproc::BoundedSemaphore semaphore{1};
  TakenBoundedSemaphore() { semaphore.acquire(); }
};
struct HeldCondition {
  mproc::Condition condition;
  HeldCondition() { condition.acquire(); }
};
struct FullQueue {
  mproc::Queue<int> queue{1};
  FullQueue() { queue.put(0); }
};
struct UnfinishedJoinableQueue {
  mproc::JoinableQueue<int> queue;
  UnfinishedJoinableQueue() { queue.put(0); }
};
struct WaitingChild {
  mproc::Event gate;
  mproc::Process child{[this] { gate.wait(); }};
  WaitingChild() { child.start(); }
  ~WaitingChild() {
    gate.set();
    child.join();
  }
};
struct PipePair {
  std::pair<mproc::Connection, mproc::Connection> ends = mproc::Pipe();
};
struct PredicateCondition {
  mproc::Condition condition;
  bool flag = false;
};

// Turns "threw E" into false, for calls that report a timeout by throwing.
template <class E, class F>
bool unless_thrown(F f) {
  try {
    f();
    return true;
  } catch (const E&) {
    return false;
  }
}

std::vector<Case> cases() {
  using Returned = const std::atomic<bool>&;
  return {
      {"QueueGet",
       [](const AnyTimeout&) {
         return make_scenario<mproc::Queue<int>>(
             [](auto& q, auto t) { return unless_thrown<mproc::Empty>([&] { q.get(t); }); },
             [](auto& q, Returned) { q.put(1); });
       }},
      {"QueuePut",
       [](const AnyTimeout&) {
         return make_scenario<FullQueue>(
             [](auto& s, auto t) { return unless_thrown<mproc::Full>([&] { s.queue.put(1, t); }); },
             [](auto& s, Returned) { s.queue.get(); });
       }},
      {"JoinableQueueJoin",
       [](const AnyTimeout&) {
         return make_scenario<UnfinishedJoinableQueue>([](auto& s, auto t) { return s.queue.join(t); },
                                                       [](auto& s, Returned) {
                                                         s.queue.get();
                                                         s.queue.task_done();
                                                       });
       }},
      {"ProcessJoin",
       [](const AnyTimeout&) {
         return make_scenario<WaitingChild>([](auto& s, auto t) { return s.child.join(t); },
                                            [](auto& s, Returned) { s.gate.set(); });
       }},
      {"ConnectionPoll",
       [](const AnyTimeout&) {
         return make_scenario<PipePair>([](auto& s, auto t) { return s.ends.second.poll(t); },
                                        [](auto& s, Returned) { s.ends.first.send(1); });
       }},
      {"ConnectionWait",
       [](const AnyTimeout&) {
         return make_scenario<PipePair>(
             [](auto& s, auto t) {
               mproc::Connection* ready[] = {&s.ends.second};
               return !mproc::wait(std::span<mproc::Connection* const>(ready), t).empty();
             },
             [](auto& s, Returned) { s.ends.first.send(1); });
       }},
      {"LockAcquire",
       [](const AnyTimeout&) {
         return make_scenario<HeldLock>(
             [](auto& s, auto t) {
               const bool taken = s.lock.acquire(true, t);
               if (taken) s.lock.release();
               return taken;
             },
             [](auto& s, Returned) { s.lock.release(); });
       }},
      {"RLockAcquire",
       [](const AnyTimeout&) {
         return make_scenario<HeldRLock>(
             [](auto& s, auto t) {
               const bool taken = s.lock.acquire(true, t);
               if (taken) s.lock.release();
               return taken;
             },
             [](auto& s, Returned) { s.lock.release(); });
       }},
      {"SemaphoreAcquire",
       [](const AnyTimeout&) {
         struct Empty {
           mproc::Semaphore semaphore{0};
         };
         return make_scenario<Empty>([](auto& s, auto t) { return s.semaphore.acquire(true, t); },
                                     [](auto& s, Returned) { s.semaphore.release(); });
       }},
      {"BoundedSemaphoreAcquire",
       [](const AnyTimeout&) {
         return make_scenario<TakenBoundedSemaphore>([](auto& s, auto t) { return s.semaphore.acquire(true, t); },
                                                     [](auto& s, Returned) { s.semaphore.release(); });
       }},
      {"ConditionAcquire",
       [](const AnyTimeout&) {
         return make_scenario<HeldCondition>(
             [](auto& s, auto t) {
               const bool taken = s.condition.acquire(true, t);
               if (taken) s.condition.release();
               return taken;
             },
             [](auto& s, Returned) { s.condition.release(); });
       }},
      {"EventWait",
       [](const AnyTimeout&) {
         return make_scenario<mproc::Event>([](auto& e, auto t) { return e.wait(t); },
                                            [](auto& e, Returned) { e.set(); });
       }},
      {"ConditionWait",
       [](const AnyTimeout&) {
         return make_scenario<mproc::Condition>(
             [](auto& c, auto t) {
               std::lock_guard lock(c);
               return c.wait(t);
             },
             [](auto& c, Returned returned) {
               // A notification reaches only a thread already waiting: notify until it has.
               while (!returned) {
                 {
                   std::lock_guard lock(c);
                   c.notify();
                 }
                 std::this_thread::sleep_for(1ms);
               }
             });
       }},
      {"ConditionWaitFor",
       [](const AnyTimeout&) {
         return make_scenario<PredicateCondition>(
             [](auto& s, auto t) {
               std::lock_guard lock(s.condition);
               return s.condition.wait_for([&] { return s.flag; }, t);
             },
             [](auto& s, Returned) {
               std::lock_guard lock(s.condition);
               s.flag = true;
               s.condition.notify_all();
             });
       }},
      {"BarrierWait",
       [](const AnyTimeout&) {
         struct Pair {
           mproc::Barrier barrier{2};
         };
         return make_scenario<Pair>(
             [](auto& s, auto t) { return unless_thrown<mproc::BrokenBarrierError>([&] { s.barrier.wait(t); }); },
             [](auto& s, Returned) { s.barrier.wait(); });
       }},
      {"BarrierDefaultTimeout",
       [](const AnyTimeout& timeout) {
         // The timeout given to the constructor, which wait() without one uses.
         auto barrier = std::visit(
             [](auto t) { return std::make_shared<mproc::Barrier>(2, std::function<void()>{}, t); }, timeout);
         return Scenario{[barrier](const AnyTimeout&) {
                           return unless_thrown<mproc::BrokenBarrierError>([&] { barrier->wait(); });
                         },
                         [barrier](Returned) { barrier->wait(); }};
       }},
      {"PoolApplyAsyncGet",
       [](const AnyTimeout&) {
         struct S : GatedPool<mproc::Pool> {
           mproc::AsyncResult<int> result = pool.apply_async(gated, 7);
         };
         return make_scenario<S>(
             [](auto& s, auto t) { return unless_thrown<mproc::TimeoutError>([&] { EXPECT_EQ(s.result.get(t), 7); }); },
             [](auto& s, Returned) { s.gate.event.set(); });
       }},
      {"PoolApplyAsyncWait",
       [](const AnyTimeout&) {
         struct S : GatedPool<mproc::Pool> {
           mproc::AsyncResult<int> result = pool.apply_async(gated, 7);
         };
         return make_scenario<S>([](auto& s, auto t) { return s.result.wait(t); },
                                 [](auto& s, Returned) { s.gate.event.set(); });
       }},
      {"PoolMapAsyncGet",
       [](const AnyTimeout&) {
         struct S : GatedPool<mproc::Pool> {
           std::vector<int> items{1, 2};
           mproc::AsyncResult<std::vector<int>> result = pool.map_async(gated, items);
         };
         return make_scenario<S>(
             [](auto& s, auto t) {
               return unless_thrown<mproc::TimeoutError>([&] { EXPECT_EQ(s.result.get(t), (std::vector<int>{1, 2})); });
             },
             [](auto& s, Returned) { s.gate.event.set(); });
       }},
      {"PoolImapNext",
       [](const AnyTimeout&) {
         struct S : GatedPool<mproc::Pool> {
           std::vector<int> items{1, 2};
           mproc::IMapIterator<int> results = pool.imap(gated, items);
         };
         return make_scenario<S>(
             [](auto& s, auto t) {
               return unless_thrown<mproc::TimeoutError>([&] { EXPECT_EQ(s.results.next(t), 1); });
             },
             [](auto& s, Returned) { s.gate.event.set(); });
       }},
      {"ThreadPoolApplyAsyncGet",
       [](const AnyTimeout&) {
         struct S {
           mproc::Event gate;
           mproc::ThreadPool pool{1};
           mproc::AsyncResult<int> result = pool.apply_async([this] {
             gate.wait();
             return 7;
           });
           ~S() { gate.set(); }
         };
         return make_scenario<S>(
             [](auto& s, auto t) { return unless_thrown<mproc::TimeoutError>([&] { EXPECT_EQ(s.result.get(t), 7); }); },
             [](auto& s, Returned) { s.gate.set(); });
       }},
      {"ProcessExecutorResult",
       [](const AnyTimeout&) {
         return make_scenario<GatedProcessExecutor>(
             [](auto& s, auto t) {
               return unless_thrown<mproc::TimeoutError>([&] { EXPECT_EQ(s.future.result(t), 7); });
             },
             [](auto& s, Returned) { s.gate.event.set(); });
       }},
      {"ProcessExecutorException",
       [](const AnyTimeout&) {
         return make_scenario<GatedProcessExecutor>(
             [](auto& s, auto t) {
               return unless_thrown<mproc::TimeoutError>([&] { EXPECT_EQ(s.future.exception(t), nullptr); });
             },
             [](auto& s, Returned) { s.gate.event.set(); });
       }},
      {"ProcessExecutorMap",
       [](const AnyTimeout&) {
         struct S {
           Gate gate;
           mproc::ProcessPoolExecutor executor{mproc::ProcessPoolExecutorOptions{.max_workers = 1}};
           std::vector<int> items{1, 2};
           ~S() { gate.event.set(); }
         };
         return make_scenario<S>(
             [](auto& s, auto t) {
               auto results = s.executor.map(gated, s.items, t);
               return unless_thrown<mproc::TimeoutError>([&] { EXPECT_EQ(results.next(), 1); });
             },
             [](auto& s, Returned) { s.gate.event.set(); });
       }},
      {"ThreadExecutorResult",
       [](const AnyTimeout&) {
         return make_scenario<GatedThreadExecutor>(
             [](auto& s, auto t) {
               return unless_thrown<mproc::TimeoutError>([&] { EXPECT_EQ(s.future.result(t), 7); });
             },
             [](auto& s, Returned) { s.gate.set(); });
       }},
      {"ThreadExecutorMap",
       [](const AnyTimeout&) {
         struct S {
           mproc::Event gate;
           mproc::ThreadPoolExecutor executor{mproc::ThreadPoolExecutorOptions{.max_workers = 1}};
           std::vector<int> items{1, 2};
           ~S() { gate.set(); }
         };
         return make_scenario<S>(
             [](auto& s, auto t) {
               auto results = s.executor.map(
                   [&s](int x) {
                     s.gate.wait();
                     return x;
                   },
                   s.items, t);
               return unless_thrown<mproc::TimeoutError>([&] { EXPECT_EQ(results.next(), 1); });
             },
             [](auto& s, Returned) { s.gate.set(); });
       }},
      {"FuturesWait",
       [](const AnyTimeout&) {
         return make_scenario<GatedProcessExecutor>(
             [](auto& s, auto t) {
               std::vector<mproc::Future<int>> futures{s.future};
               return mproc::wait(futures, t).done.size() == 1;
             },
             [](auto& s, Returned) { s.gate.event.set(); });
       }},
      {"AsCompleted",
       [](const AnyTimeout&) {
         return make_scenario<GatedProcessExecutor>(
             [](auto& s, auto t) {
               std::vector<mproc::Future<int>> futures{s.future};
               return unless_thrown<mproc::TimeoutError>([&] {
                 for (auto& future : mproc::as_completed(futures, t)) EXPECT_EQ(future.result(), 7);
               });
             },
             [](auto& s, Returned) { s.gate.event.set(); });
       }},
  };
}

// Names in failure messages instead of gtest's byte dumps.
void PrintTo(const Case& test_case, std::ostream* out) { *out << test_case.name; }
void PrintTo(const Kind& kind, std::ostream* out) { *out << kind.name; }

class BlockingCallTimeout : public ::testing::TestWithParam<std::tuple<Case, Kind>> {};

TEST_P(BlockingCallTimeout, HugeWaitsZeroAndNegativeDoNot) {
  const auto& [test_case, kind] = GetParam();
  Scenario scenario = test_case.make(kind.timeout);
  std::atomic<bool> returned{false};
  std::packaged_task<bool()> task([&] {
    const bool got = scenario.call(kind.timeout);
    returned = true;
    return got;
  });
  auto outcome = task.get_future();
  std::thread caller(std::move(task));
  if (kind.blocks) {
    // A broken conversion returns at once; a correct call is still waiting after any moment.
    if (outcome.wait_for(200ms) == std::future_status::ready) {
      ADD_FAILURE() << test_case.name << " returned at once with timeout " << kind.name << " (got "
                    << outcome.get() << "): the timeout was taken as 'now'";
    } else {
      scenario.release(returned);
      ASSERT_EQ(outcome.wait_for(30s), std::future_status::ready) << "not released by its condition";
      EXPECT_TRUE(outcome.get()) << test_case.name << " reported a timeout after its condition came true";
    }
  } else {
    // A generous bound: the call must not wait at all, but a loaded machine may be slow.
    if (outcome.wait_for(20s) != std::future_status::ready) {
      ADD_FAILURE() << test_case.name << " blocked with timeout " << kind.name;
      scenario.release(returned);
    }
    EXPECT_FALSE(outcome.get()) << test_case.name << " with timeout " << kind.name << " did not report a timeout";
  }
  caller.join();
}

INSTANTIATE_TEST_SUITE_P(AllBlockingCalls, BlockingCallTimeout,
                         ::testing::Combine(::testing::ValuesIn(cases()), ::testing::ValuesIn(kinds())),
                         [](const ::testing::TestParamInfo<std::tuple<Case, Kind>>& param) {
                           return std::get<0>(param.param).name + "_" + std::get<1>(param.param).name;
                         });

// The module itself: the deadline of each kind of timeout.
TEST(TimeoutModule, DeadlinesOfExtremeTimeouts) {
  using mproc::detail::deadline_after;
  const auto far = std::chrono::steady_clock::now() + std::chrono::hours(24 * 365 * 100);
  for (const Kind& kind : kinds()) {
    const auto deadline = std::visit([](auto t) { return deadline_after(t); }, kind.timeout);
    ASSERT_TRUE(deadline.has_value()) << kind.name;
    if (kind.blocks)
      EXPECT_GT(*deadline, far) << kind.name;
    else
      EXPECT_LE(*deadline, std::chrono::steady_clock::now()) << kind.name;
  }
  EXPECT_FALSE(deadline_after(mproc::detail::Timeout()).has_value());
}

}  // namespace
