// Synchronization primitives: the behaviours of CPython's _TestLock, _TestSemaphore,
// _TestCondition, _TestEvent and _TestBarrier, across real processes, plus mproc's promise
// that a process killed while holding a lock or while waiting blocks no one.
#include <mproc/mproc.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <csignal>
#include <fstream>
#include <iterator>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "support/leak_check.hpp"

using namespace std::chrono_literals;
using mproc::testing::eventually;
using mproc::testing::LeakCheckedTest;

namespace {

class SynchronizeTest : public LeakCheckedTest {};

// A failed check inside a child: report it and exit non-zero (gtest's EXPECT would only
// print in the child, whose exit code the parent checks).
#define CHILD_CHECK(condition)                                                              \
  do {                                                                                      \
    if (!(condition)) {                                                                     \
      std::fprintf(stderr, "child check failed at line %d: %s\n", __LINE__, #condition);    \
      std::fflush(stderr);                                                                  \
      ::_exit(1);                                                                           \
    }                                                                                       \
  } while (false)

// Starts `n` children running `body(i)`.
template <class Body>
std::vector<mproc::Process> start_children(int n, Body body) {
  std::vector<mproc::Process> children;
  for (int i = 0; i < n; ++i) {
    children.emplace_back([body, i] { body(i); });
    children.back().start();
  }
  return children;
}

void join_all_ok(std::vector<mproc::Process>& children) {
  for (auto& child : children) {
    ASSERT_TRUE(child.join(30s)) << "child " << child.pid() << " still running";
    EXPECT_EQ(child.exitcode(), 0);
  }
}

// True when the task (a /proc/<pid> or /proc/self/task/<tid> directory) is asleep ('S'):
// for a child or thread whose only sleeping point is the wait under test.
bool sleeping(const std::string& proc_dir) {
  std::ifstream stat(proc_dir + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  auto after_name = text.rfind(')');
  return after_name != std::string::npos && after_name + 2 < text.size() && text[after_name + 2] == 'S';
}

bool child_sleeping(const mproc::Process& child) { return sleeping("/proc/" + std::to_string(child.pid())); }

template <class Duration>
auto elapsed_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<Duration>(std::chrono::steady_clock::now() - start);
}

// --- Lock (_TestLock) --------------------------------------------------------------------

TEST_F(SynchronizeTest, LockAcquireReleaseAsPython) {
  mproc::Lock lock;
  EXPECT_TRUE(lock.acquire());
  EXPECT_FALSE(lock.acquire(false));  // held by this thread: non-blocking fails
  lock.release();
  EXPECT_THROW(lock.release(), mproc::Error);  // releasing an unlocked lock
  EXPECT_TRUE(lock.acquire(false));
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(lock.acquire(true, 50ms));  // held by us: waits out the timeout, as Python
  EXPECT_GE(elapsed_since<std::chrono::milliseconds>(start), 45ms);
  EXPECT_THROW(lock.acquire(), mproc::Error);  // would wait forever on itself
  lock.release();
}

TEST_F(SynchronizeTest, LockIsLockable) {
  mproc::Lock lock;
  mproc::RLock rlock;
  {
    std::scoped_lock both(lock, rlock);
    EXPECT_FALSE(lock.try_lock());
  }
  {
    std::unique_lock guard(lock, std::try_to_lock);
    EXPECT_TRUE(guard.owns_lock());
  }
  std::lock_guard guard(lock);
}

TEST_F(SynchronizeTest, LockReleaseByAnotherThreadIsRefused) {
  // Deliberate difference from Python: only the holder releases.
  mproc::Lock lock;
  lock.acquire();
  std::thread other([&] { EXPECT_THROW(lock.release(), mproc::Error); });
  other.join();
  // A child forked while this thread holds the lock does not hold it.
  mproc::Process child([&] {
    CHILD_CHECK(!lock.acquire(false));
    bool refused = false;
    try {
      lock.release();
    } catch (const mproc::Error&) {
      refused = true;
    }
    CHILD_CHECK(refused);
  });
  child.start();
  child.join();
  EXPECT_EQ(child.exitcode(), 0);
  lock.release();
}

TEST_F(SynchronizeTest, LockExcludesAcrossProcesses) {
  mproc::Lock lock;
  mproc::RawValue<std::int64_t> counter(0);
  constexpr int kChildren = 3, kRounds = 20000;
  auto children = start_children(kChildren, [&](int) {
    for (int i = 0; i < kRounds; ++i) {
      std::lock_guard guard(lock);
      // A non-atomic read-modify-write: lost updates if the lock let two in.
      auto v = counter.value();
      counter.value() = v + 1;
    }
  });
  join_all_ok(children);
  EXPECT_EQ(counter.value(), kChildren * kRounds);
}

// The same exclusion check at several process counts (1 child: uncontended handovers only).
class LockAtProcessCount : public LeakCheckedTest, public ::testing::WithParamInterface<int> {};

TEST_P(LockAtProcessCount, RLockAndSemaphoreExclude) {
  const int children_count = GetParam();
  mproc::Value<std::int64_t> counter(0);         // guarded by its RLock
  mproc::Semaphore one_at_a_time(1);
  mproc::RawValue<std::int64_t> inside(0), overlaps(0);
  auto children = start_children(children_count, [&](int) {
    for (int i = 0; i < 2000; ++i) {
      {
        std::lock_guard guard(counter);
        counter.value() = counter.value() + 1;
      }
      one_at_a_time.acquire();
      if (++inside.value() != 1) ++overlaps.value();
      --inside.value();
      one_at_a_time.release();
    }
  });
  join_all_ok(children);
  EXPECT_EQ(counter.value(), 2000 * children_count);
  EXPECT_EQ(overlaps.value(), 0);
}

INSTANTIATE_TEST_SUITE_P(Processes, LockAtProcessCount, ::testing::Values(1, 2, 4, 8));

TEST_F(SynchronizeTest, LockAcquireTimesOutWhileAnotherProcessHoldsIt) {
  mproc::Lock lock;
  mproc::Event held, done;
  mproc::Process holder([&] {
    lock.acquire();
    held.set();
    done.wait();
    lock.release();
  });
  holder.start();
  ASSERT_TRUE(held.wait(10s));
  EXPECT_FALSE(lock.acquire(false));
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(lock.acquire(true, 100ms));
  auto waited = elapsed_since<std::chrono::milliseconds>(start);
  EXPECT_GE(waited, 90ms);
  EXPECT_LT(waited, 5s);
  EXPECT_FALSE(lock.acquire(true, -1s));  // negative: do not wait
  done.set();
  EXPECT_TRUE(lock.acquire(true, 10s));
  EXPECT_FALSE(lock.owner_died());
  lock.release();
  holder.join();
  EXPECT_EQ(holder.exitcode(), 0);
}

// --- RLock -------------------------------------------------------------------------------

TEST_F(SynchronizeTest, RLockIsRecursiveAndOwned) {
  mproc::RLock lock;
  EXPECT_TRUE(lock.acquire());
  EXPECT_TRUE(lock.acquire());
  EXPECT_TRUE(lock.acquire(false));
  lock.release();
  lock.release();
  lock.release();
  EXPECT_THROW(lock.release(), mproc::Error);

  lock.acquire();
  lock.acquire();
  mproc::Process other([&] {
    CHILD_CHECK(!lock.acquire(false));            // two levels held by the parent
    CHILD_CHECK(!lock.acquire(true, 20ms));
    bool refused = false;
    try {
      lock.release();                             // not ours
    } catch (const mproc::Error&) {
      refused = true;
    }
    CHILD_CHECK(refused);
  });
  other.start();
  other.join();
  EXPECT_EQ(other.exitcode(), 0);
  lock.release();
  lock.release();  // now free for another process
  mproc::Process taker([&] {
    CHILD_CHECK(lock.acquire(true, 5s));
    lock.release();
  });
  taker.start();
  taker.join();
  EXPECT_EQ(taker.exitcode(), 0);
}

// --- Robust to death ---------------------------------------------------------------------

TEST_F(SynchronizeTest, LockHolderKilledDoesNotDeadlockTheOthers) {
  mproc::Lock lock;
  mproc::Event held;
  mproc::Process holder([&] {
    lock.acquire();
    held.set();
    ::pause();
  });
  holder.start();
  ASSERT_TRUE(held.wait(10s));
  // Two other processes queue for the lock while its holder is killed: one gets it, learns
  // that the owner died, and hands it on cleanly to the other.
  mproc::Semaphore got(0);
  auto waiters = start_children(2, [&](int) {
    CHILD_CHECK(lock.acquire(true, 20s));
    bool died = lock.owner_died();
    lock.release();
    got.release();
    ::_exit(died ? 3 : 0);
  });
  holder.kill();
  holder.join();
  EXPECT_EQ(holder.exitcode(), -SIGKILL);
  std::multiset<int> codes;
  for (auto& waiter : waiters) {
    ASSERT_TRUE(waiter.join(30s));
    codes.insert(*waiter.exitcode());
  }
  EXPECT_EQ(codes, (std::multiset<int>{0, 3}));  // exactly one saw the death
  EXPECT_TRUE(lock.acquire(false));
  EXPECT_FALSE(lock.owner_died());
  lock.release();
}

TEST_F(SynchronizeTest, RLockHolderKilledAtDepthThreeHandsOverAFreshLock) {
  mproc::RLock lock;
  mproc::Event held;
  mproc::Process holder([&] {
    lock.acquire();
    lock.acquire();
    lock.acquire();
    held.set();
    ::pause();
  });
  holder.start();
  ASSERT_TRUE(held.wait(10s));
  holder.kill();
  holder.join();
  ASSERT_TRUE(lock.acquire(true, 10s));
  EXPECT_TRUE(lock.owner_died());
  lock.release();  // one level: the dead owner's depth did not carry over
  mproc::Process next([&] {
    CHILD_CHECK(lock.acquire(false));
    CHILD_CHECK(!lock.owner_died());
    lock.release();
  });
  next.start();
  next.join();
  EXPECT_EQ(next.exitcode(), 0);
}

TEST_F(SynchronizeTest, ThreadExitingWithTheLockHandsItOver) {
  mproc::Lock lock;
  std::thread([&] { lock.acquire(); }).join();
  ASSERT_TRUE(lock.acquire(true, 5s));
  EXPECT_TRUE(lock.owner_died());
  lock.release();
}

TEST_F(SynchronizeTest, LockedReportsAHolderInAnyProcess) {
  // Python 3.14's Lock.locked() / RLock.locked().
  mproc::Lock lock;
  mproc::RLock rlock;
  EXPECT_FALSE(lock.locked());
  EXPECT_FALSE(rlock.locked());
  lock.acquire();
  rlock.acquire();
  rlock.acquire();
  EXPECT_TRUE(lock.locked());
  EXPECT_TRUE(rlock.locked());
  mproc::Process observer([&] {
    CHILD_CHECK(lock.locked() && rlock.locked());
    CHILD_CHECK(!lock.acquire(false));  // locked() only looked: the lock is still the parent's
  });
  observer.start();
  ASSERT_TRUE(observer.join(10s));
  EXPECT_EQ(observer.exitcode(), 0);
  rlock.release();
  EXPECT_TRUE(rlock.locked());  // one level left
  rlock.release();
  EXPECT_FALSE(rlock.locked());
  lock.release();
  EXPECT_FALSE(lock.locked());

  // Held by another process; free again once that process dies holding it (the kernel
  // clears the owner), and held by whoever takes it over.
  mproc::Event held;
  mproc::Process holder([&] {
    lock.acquire();
    held.set();
    ::pause();
  });
  holder.start();
  ASSERT_TRUE(held.wait(10s));
  EXPECT_TRUE(lock.locked());
  holder.kill();
  holder.join();
  EXPECT_FALSE(lock.locked());
  ASSERT_TRUE(lock.acquire(false));
  EXPECT_TRUE(lock.owner_died());
  EXPECT_TRUE(lock.locked());
  lock.release();
  EXPECT_FALSE(lock.locked());
}

// --- Semaphore (_TestSemaphore) -----------------------------------------------------------

TEST_F(SynchronizeTest, SemaphoreCountsAsPython) {
  mproc::Semaphore sem(2);
  EXPECT_EQ(sem.get_value(), 2);
  EXPECT_TRUE(sem.acquire());
  EXPECT_EQ(sem.get_value(), 1);
  EXPECT_TRUE(sem.acquire());
  EXPECT_EQ(sem.get_value(), 0);
  EXPECT_FALSE(sem.acquire(false));
  EXPECT_EQ(sem.get_value(), 0);
  sem.release();
  EXPECT_EQ(sem.get_value(), 1);
  sem.release();
  EXPECT_EQ(sem.get_value(), 2);
  sem.release();  // an unbounded semaphore may go past its initial value
  EXPECT_EQ(sem.get_value(), 3);
  EXPECT_THROW(mproc::Semaphore(-1), std::invalid_argument);
}

TEST_F(SynchronizeTest, BoundedSemaphoreRefusesOverRelease) {
  mproc::BoundedSemaphore sem(2);
  sem.acquire();
  sem.release();
  EXPECT_THROW(sem.release(), std::invalid_argument);  // Python's ValueError
  EXPECT_EQ(sem.get_value(), 2);
}

TEST_F(SynchronizeTest, SemaphoreTimeouts) {
  mproc::Semaphore sem(0);
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(sem.acquire(false));
  EXPECT_FALSE(sem.acquire(false, 1s));  // non-blocking ignores the timeout, as Python
  EXPECT_LT(elapsed_since<std::chrono::milliseconds>(start), 500ms);
  start = std::chrono::steady_clock::now();
  EXPECT_FALSE(sem.acquire(true, 100ms));
  auto waited = elapsed_since<std::chrono::milliseconds>(start);
  EXPECT_GE(waited, 90ms);
  EXPECT_LT(waited, 5s);
}

TEST_F(SynchronizeTest, SemaphoreHandsOutEachReleaseOnceAcrossProcesses) {
  mproc::Semaphore items(0);
  mproc::RawValue<std::int64_t> taken(0);
  mproc::Lock count_lock;
  constexpr int kChildren = 3, kPerChild = 200;
  auto children = start_children(kChildren, [&](int) {
    for (int i = 0; i < kPerChild; ++i) {
      CHILD_CHECK(items.acquire(true, 20s));
      std::lock_guard guard(count_lock);
      ++taken.value();
    }
  });
  for (int i = 0; i < kChildren * kPerChild; ++i) items.release();
  join_all_ok(children);
  EXPECT_EQ(taken.value(), kChildren * kPerChild);
  EXPECT_EQ(items.get_value(), 0);
}

TEST_F(SynchronizeTest, SemaphoreWaiterKilledBlocksNoOne) {
  mproc::Semaphore sem(0);
  auto children = start_children(3, [&](int) { CHILD_CHECK(sem.acquire(true, 20s)); });
  for (auto& child : children) ASSERT_TRUE(eventually([&] { return child_sleeping(child); }));
  children[0].kill();  // asleep in acquire()
  children[0].join();
  sem.release();
  sem.release();
  for (std::size_t i = 1; i < children.size(); ++i) {
    ASSERT_TRUE(children[i].join(10s));
    EXPECT_EQ(children[i].exitcode(), 0);
  }
  EXPECT_EQ(sem.get_value(), 0);
}

TEST_F(SynchronizeTest, AnyDurationIsATimeout) {
  mproc::Semaphore sem(0);
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(sem.acquire(true, std::chrono::duration<double>(0.05)));  // fractional seconds
  EXPECT_GE(elapsed_since<std::chrono::milliseconds>(start), 45ms);
  sem.release();
  EXPECT_TRUE(sem.acquire(true, std::chrono::hours::max()));  // saturates, no overflow
  mproc::Event event;
  event.set();
  EXPECT_TRUE(event.wait(std::chrono::years::max()));
  mproc::Lock lock;
  EXPECT_TRUE(lock.acquire(true, std::chrono::nanoseconds::max()));
  lock.release();
  EXPECT_TRUE(lock.acquire(true, std::chrono::duration<float, std::milli>(-3.0f)));  // free: taken at once
  lock.release();
}

// --- Event (_TestEvent) -------------------------------------------------------------------

TEST_F(SynchronizeTest, EventAsPython) {
  mproc::Event event;
  EXPECT_FALSE(event.is_set());
  EXPECT_FALSE(event.wait(0s));
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(event.wait(100ms));
  EXPECT_GE(elapsed_since<std::chrono::milliseconds>(start), 90ms);
  event.set();
  EXPECT_TRUE(event.is_set());
  EXPECT_TRUE(event.wait());
  EXPECT_TRUE(event.wait(100ms));
  event.set();  // idempotent
  event.clear();
  EXPECT_FALSE(event.is_set());

  // Set by another process while several wait.
  mproc::Semaphore waiting(0);
  auto children = start_children(3, [&](int) {
    waiting.release();
    CHILD_CHECK(event.wait(20s));
    CHILD_CHECK(event.is_set());
  });
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(waiting.acquire(true, 10s));
  event.set();
  join_all_ok(children);
}

TEST_F(SynchronizeTest, EventSetThenClearStillEndsTheWait) {
  mproc::Event event;
  std::atomic<bool> returned{false};
  std::atomic<pid_t> waiter_tid{0};
  std::thread waiter([&] {
    waiter_tid = ::gettid();
    returned = event.wait(20s);
  });
  // Once the thread sleeps, it is in the futex wait (it has nothing else to sleep on).
  ASSERT_TRUE(eventually([&] { return waiter_tid != 0 && sleeping("/proc/self/task/" + std::to_string(waiter_tid)); }));
  event.set();
  event.clear();
  waiter.join();
  EXPECT_TRUE(returned);
}

TEST_F(SynchronizeTest, EventWaiterKilledBlocksNoOne) {
  mproc::Event event;
  mproc::Semaphore waiting(0);
  auto children = start_children(3, [&](int) {
    waiting.release();
    CHILD_CHECK(event.wait(20s));
  });
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(waiting.acquire(true, 10s));
  children[0].kill();
  children[0].join();
  event.set();
  for (std::size_t i = 1; i < children.size(); ++i) {
    ASSERT_TRUE(children[i].join(10s));
    EXPECT_EQ(children[i].exitcode(), 0);
  }
}

// --- Condition (_TestCondition) ----------------------------------------------------------

// Children that wait on `cond` and count themselves as sleeping, then as woken.
struct ConditionWaiters {
  mproc::Condition cond;
  mproc::RawValue<int> sleeping{0};
  mproc::RawValue<int> woken{0};

  std::vector<mproc::Process> start(int n, std::optional<std::chrono::milliseconds> timeout = std::nullopt) {
    return start_children(n, [this, timeout](int) {
      std::lock_guard guard(cond);
      ++sleeping.value();
      bool notified = timeout ? cond.wait(*timeout) : cond.wait();
      if (notified) ++woken.value();
    });
  }
  int get(mproc::RawValue<int>& counter) {
    std::lock_guard guard(cond);
    return counter.value();
  }
  // Once every child counted itself under the lock and released it (by waiting), all wait.
  bool all_sleeping(int n) {
    return eventually([&] { return get(sleeping) == n; });
  }
  bool woken_becomes(int n) {
    return eventually([&] { return get(woken) == n; });
  }
};

// CPython's check_invariant: with nobody waiting, no waiter is left registered and no
// notification is left over for a later waiter.
void expect_no_sleepers(const mproc::Condition& cond) {
  auto counts = mproc::detail::condition_counts(cond);
  EXPECT_EQ(counts.waiting, 0u);
  EXPECT_EQ(counts.tokens, 0u);
}

TEST_F(SynchronizeTest, ConditionNotifyWakesOneAtATime) {
  ConditionWaiters w;
  auto children = w.start(3);
  ASSERT_TRUE(w.all_sleeping(3));
  EXPECT_EQ(w.get(w.woken), 0);
  for (int n = 1; n <= 3; ++n) {
    {
      std::lock_guard guard(w.cond);
      w.cond.notify();
    }
    ASSERT_TRUE(w.woken_becomes(n));
    std::this_thread::sleep_for(20ms);  // and no more than one per notify
    EXPECT_EQ(w.get(w.woken), n);
  }
  join_all_ok(children);
}

TEST_F(SynchronizeTest, ConditionNotifyNWakesAtMostN) {
  ConditionWaiters w;
  auto children = w.start(5);
  ASSERT_TRUE(w.all_sleeping(5));
  {
    std::lock_guard guard(w.cond);
    w.cond.notify(2);
  }
  ASSERT_TRUE(w.woken_becomes(2));
  std::this_thread::sleep_for(30ms);
  EXPECT_EQ(w.get(w.woken), 2);
  {
    std::lock_guard guard(w.cond);
    w.cond.notify(10);  // more than wait: wakes the 3 left
  }
  ASSERT_TRUE(w.woken_becomes(5));
  join_all_ok(children);
  expect_no_sleepers(w.cond);
  std::lock_guard guard(w.cond);
  w.cond.notify_all();  // nobody waits: no effect, no block
}

TEST_F(SynchronizeTest, ConditionNotifyAllAndTimedOutWaiters) {
  ConditionWaiters w;
  auto timed = w.start(3, 50ms);  // these time out unnotified
  for (auto& child : timed) ASSERT_TRUE(child.join(10s));
  EXPECT_EQ(w.get(w.woken), 0);
  auto children = w.start(3);
  ASSERT_TRUE(w.all_sleeping(6));
  {
    std::lock_guard guard(w.cond);
    w.cond.notify_all();
  }
  ASSERT_TRUE(w.woken_becomes(3));
  join_all_ok(children);
  expect_no_sleepers(w.cond);  // the timed-out waiters deregistered themselves
}

TEST_F(SynchronizeTest, ConditionWaitForHandshakeAsCPython) {
  // CPython's _TestCondition.test_waitfor, 50 times over: the child sets state = 0,
  // notify()s, and at once wait_for()s state == 4 itself. The parent, waiting for state == 0,
  // must get that notification: a notify goes to a waiter that was waiting when it was
  // made, never to the notifier's own later wait. (Python's version has no timeout and would
  // hang; here a stolen notification shows as a parent that sleeps out its 5 s.)
  for (int round = 0; round < 50; ++round) {
    mproc::Condition cond;
    mproc::Value<int> state(-1);
    mproc::Process child([&] {
      std::lock_guard guard(cond);
      state.value() = 0;
      cond.notify();
      bool result = cond.wait_for([&] { return state.value() == 4; }, 20s);
      if (!result || state.value() != 4) ::_exit(1);
    });
    child.start();
    {
      std::lock_guard guard(cond);
      auto start = std::chrono::steady_clock::now();
      bool result = cond.wait_for([&] { return state.value() == 0; }, 5s);
      ASSERT_TRUE(result) << "round " << round;
      ASSERT_EQ(state.value(), 0);
      ASSERT_LT(elapsed_since<std::chrono::milliseconds>(start), 4s)
          << "round " << round << ": the child's notify did not wake the parent";
    }
    for (int i = 0; i < 4; ++i) {
      std::this_thread::sleep_for(2ms);  // CPython's pacing (shorter): lets the child sleep again
      std::lock_guard guard(cond);
      state.value() += 1;
      cond.notify();
    }
    ASSERT_TRUE(child.join(30s));
    ASSERT_EQ(child.exitcode(), 0) << "round " << round;
    expect_no_sleepers(cond);
  }
}

TEST_F(SynchronizeTest, ConditionNotifierThatWaitsDoesNotTakeItsOwnNotification) {
  // W waits; the main process notify()s and then wait()s itself: the notification is W's.
  for (int round = 0; round < 20; ++round) {
    ConditionWaiters w;
    auto children = w.start(1);
    ASSERT_TRUE(w.all_sleeping(1));
    {
      std::unique_lock guard(w.cond);
      w.cond.notify();
      EXPECT_FALSE(w.cond.wait(50ms)) << "round " << round;  // nobody notified after we began
    }
    ASSERT_TRUE(w.woken_becomes(1)) << "round " << round;
    join_all_ok(children);
    expect_no_sleepers(w.cond);
  }
}

TEST_F(SynchronizeTest, ConditionNotifyReachesThreadAndProcessWaitersAsCPython) {
  // CPython's _TestCondition.test_notify: one waiter is a process, one a thread of this
  // process; each notify() wakes exactly one of them; then check_invariant.
  mproc::Condition cond;
  mproc::Semaphore sleeping(0), woken(0);
  auto f = [&] {
    cond.acquire();
    sleeping.release();
    cond.wait(20s);
    woken.release();
    cond.release();
  };
  mproc::Process process(f);
  process.start();
  std::thread thread(f);
  // Each released `sleeping` with the lock held and releases it only by waiting: once the
  // notifier has the lock, both are registered.
  ASSERT_TRUE(sleeping.acquire(true, 10s));
  ASSERT_TRUE(sleeping.acquire(true, 10s));
  auto expect_counts = [&](std::uint32_t waiting) {
    std::lock_guard guard(cond);  // both registered (see above); no token handed out yet
    auto counts = mproc::detail::condition_counts(cond);
    EXPECT_EQ(counts.waiting, waiting);
    EXPECT_EQ(counts.tokens, 0u);
  };
  expect_counts(2);
  EXPECT_EQ(woken.get_value(), 0);
  for (int n = 1; n <= 2; ++n) {
    {
      std::lock_guard guard(cond);
      cond.notify();
    }
    ASSERT_TRUE(eventually([&] { return woken.get_value() >= n; }));
    // Exactly one token per notify, taken by the one it woke: the other still waits.
    expect_counts(static_cast<std::uint32_t>(2 - n));
    EXPECT_EQ(woken.get_value(), n);
  }
  thread.join();
  ASSERT_TRUE(process.join(10s));
  EXPECT_EQ(process.exitcode(), 0);
  expect_no_sleepers(cond);
}

TEST_F(SynchronizeTest, ConditionNotifyAllReachesEveryoneAndLeavesNothing) {
  // Several rounds of waiters (processes and threads) and notify_all from another process:
  // everyone wakes, and nothing is left registered or unclaimed.
  mproc::Condition cond(mproc::Lock{});
  mproc::RawValue<int> sleeping(0), woken(0);
  auto f = [&] {
    std::lock_guard guard(cond);
    ++sleeping.value();
    if (cond.wait(20s)) ++woken.value();
  };
  for (int round = 1; round <= 5; ++round) {
    auto children = start_children(3, [&](int) { f(); });
    std::thread a(f), b(f);
    ASSERT_TRUE(eventually([&] {
      std::lock_guard guard(cond);
      return sleeping.value() == 5 * round;
    }));
    mproc::Process notifier([&] {
      std::lock_guard guard(cond);
      cond.notify_all();
    });
    notifier.start();
    a.join();
    b.join();
    join_all_ok(children);
    ASSERT_TRUE(notifier.join(10s));
    EXPECT_EQ(woken.value(), 5 * round);
    expect_no_sleepers(cond);
  }
}

TEST_F(SynchronizeTest, ConditionWaitTimeoutAndMisuse) {
  mproc::Condition cond(mproc::Lock{});
  EXPECT_THROW(cond.wait(), mproc::Error);    // not holding the lock
  EXPECT_THROW(cond.notify(), mproc::Error);
  std::unique_lock guard(cond);
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(cond.wait(100ms));
  auto waited = elapsed_since<std::chrono::milliseconds>(start);
  EXPECT_GE(waited, 90ms);
  EXPECT_LT(waited, 5s);
  EXPECT_FALSE(cond.try_lock());  // the lock is held again after the wait
}

TEST_F(SynchronizeTest, ConditionWaitRestoresRLockDepth) {
  mproc::RLock lock;
  mproc::Condition cond(lock);
  lock.acquire();
  lock.acquire();
  mproc::Process notifier([&] {
    std::lock_guard guard(cond);  // possible only if wait() released both levels
    cond.notify();
  });
  notifier.start();
  EXPECT_TRUE(cond.wait(20s));
  lock.release();
  lock.release();
  EXPECT_THROW(lock.release(), mproc::Error);  // exactly two levels were restored
  notifier.join();
  EXPECT_EQ(notifier.exitcode(), 0);
}

TEST_F(SynchronizeTest, ConditionWaitFor) {
  mproc::Condition cond;
  mproc::RawValue<int> state(0);
  mproc::Process waiter([&] {
    std::lock_guard guard(cond);
    CHILD_CHECK(cond.wait_for([&] { return state.value() == 4; }));
    CHILD_CHECK(state.value() == 4);
  });
  waiter.start();
  for (int i = 0; i < 4; ++i) {
    std::this_thread::sleep_for(5ms);
    std::lock_guard guard(cond);
    ++state.value();
    cond.notify();
  }
  ASSERT_TRUE(waiter.join(20s));
  EXPECT_EQ(waiter.exitcode(), 0);
}

TEST_F(SynchronizeTest, ConditionWaitForTimeout) {
  mproc::Condition cond;
  mproc::RawValue<int> state(0);
  mproc::Semaphore started(0);
  mproc::Process waiter([&] {
    std::lock_guard guard(cond);
    started.release();
    auto start = std::chrono::steady_clock::now();
    CHILD_CHECK(!cond.wait_for([&] { return state.value() == 4; }, 200ms));  // only 3 come
    auto waited = std::chrono::steady_clock::now() - start;
    CHILD_CHECK(waited >= 190ms && waited < 5s);
  });
  waiter.start();
  ASSERT_TRUE(started.acquire(true, 10s));
  for (int i = 0; i < 3; ++i) {
    std::this_thread::sleep_for(10ms);
    std::lock_guard guard(cond);
    ++state.value();
    cond.notify();
  }
  ASSERT_TRUE(waiter.join(20s));
  EXPECT_EQ(waiter.exitcode(), 0);
  std::lock_guard guard(cond);
  EXPECT_TRUE(cond.wait_for([] { return true; }, 0s));  // true predicate: no wait at all
}

TEST_F(SynchronizeTest, ConditionWaiterKilledDoesNotSwallowANotify) {
  ConditionWaiters w;
  auto children = w.start(2);
  ASSERT_TRUE(w.all_sleeping(2));
  children[0].kill();  // counted as waiting, then killed inside wait()
  children[0].join();
  {
    std::lock_guard guard(w.cond);
    w.cond.notify();  // must reach the live waiter, and must not wait for the dead one
  }
  ASSERT_TRUE(children[1].join(10s));
  EXPECT_EQ(children[1].exitcode(), 0);
  EXPECT_EQ(w.get(w.woken), 1);
}

TEST_F(SynchronizeTest, ConditionNotifierKilledHoldingTheLock) {
  mproc::Lock lock;
  mproc::Condition cond(lock);
  mproc::Event held;
  mproc::Process holder([&] {
    cond.acquire();
    held.set();
    ::pause();
  });
  holder.start();
  ASSERT_TRUE(held.wait(10s));
  holder.kill();
  holder.join();
  ASSERT_TRUE(cond.acquire(true, 10s));
  EXPECT_TRUE(lock.owner_died());
  EXPECT_FALSE(cond.wait(10ms));
  cond.release();
}

// --- Barrier (_TestBarrier) --------------------------------------------------------------

TEST_F(SynchronizeTest, BarrierPassesRepeatedlyWithDistinctIndices) {
  constexpr int kParties = 4, kPasses = 50;
  mproc::Barrier barrier(kParties);
  mproc::RawArray<int> index_counts(kParties);
  mproc::Lock lock;
  auto children = start_children(kParties - 1, [&](int) {
    for (int pass = 0; pass < kPasses; ++pass) {
      std::size_t index = barrier.wait(20s);
      std::lock_guard guard(lock);
      ++index_counts[index];
    }
  });
  for (int pass = 0; pass < kPasses; ++pass) {
    std::size_t index = barrier.wait(20s);
    std::lock_guard guard(lock);
    ++index_counts[index];
  }
  join_all_ok(children);
  for (int count : index_counts) EXPECT_EQ(count, kPasses);  // each index once per pass
  EXPECT_EQ(barrier.parties(), 4u);
  EXPECT_EQ(barrier.n_waiting(), 0u);
  EXPECT_FALSE(barrier.broken());
}

TEST_F(SynchronizeTest, BarrierMixesThreadsAndProcesses) {
  mproc::Barrier barrier(4);
  mproc::RawValue<int> passes(0);
  mproc::Lock lock;
  auto round = [&] {
    for (int pass = 0; pass < 20; ++pass) {
      barrier.wait(20s);
      std::lock_guard guard(lock);
      ++passes.value();
    }
  };
  auto children = start_children(2, [&](int) { round(); });
  std::thread a(round), b(round);
  a.join();
  b.join();
  join_all_ok(children);
  EXPECT_EQ(passes.value(), 80);
}

TEST_F(SynchronizeTest, BarrierActionRunsOnceBeforeRelease) {
  mproc::RawValue<int> actions(0);
  mproc::Barrier barrier(3, [&] { ++actions.value(); });
  auto children = start_children(2, [&](int) {
    for (int pass = 1; pass <= 5; ++pass) {
      barrier.wait(20s);
      CHILD_CHECK(actions.value() >= pass);  // the action ran before this party left
    }
  });
  for (int pass = 1; pass <= 5; ++pass) {
    barrier.wait(20s);
    EXPECT_GE(actions.value(), pass);
  }
  join_all_ok(children);
  EXPECT_EQ(actions.value(), 5);
}

TEST_F(SynchronizeTest, BarrierSingleParty) {
  mproc::Barrier barrier(1);
  EXPECT_EQ(barrier.wait(), 0u);
  EXPECT_EQ(barrier.wait(), 0u);
  EXPECT_THROW(mproc::Barrier(0), std::invalid_argument);
}

TEST_F(SynchronizeTest, BarrierThrowingActionBreaksIt) {
  mproc::Barrier barrier(2, [] { throw std::runtime_error("action failed"); });
  mproc::Process other([&] {
    try {
      barrier.wait(20s);
    } catch (const mproc::BrokenBarrierError&) {
      ::_exit(3);
    } catch (const std::runtime_error&) {
      ::_exit(2);  // this party ran the action
    }
  });
  other.start();
  int mine = 0;
  try {
    barrier.wait(20s);
  } catch (const mproc::BrokenBarrierError&) {
    mine = 3;
  } catch (const std::runtime_error&) {
    mine = 2;
  }
  other.join();
  EXPECT_EQ(std::set<int>({mine, *other.exitcode()}), (std::set<int>{2, 3}));
  EXPECT_TRUE(barrier.broken());
  EXPECT_THROW(barrier.wait(1s), mproc::BrokenBarrierError);
  barrier.reset();
  EXPECT_FALSE(barrier.broken());
}

TEST_F(SynchronizeTest, BarrierTimeoutBreaksItForEveryone) {
  mproc::Barrier barrier(3);
  mproc::Event first_broke;
  mproc::Process patient([&] {
    try {
      barrier.wait(20s);
    } catch (const mproc::BrokenBarrierError&) {
      ::_exit(0);
    }
    ::_exit(1);
  });
  patient.start();
  ASSERT_TRUE(eventually([&] { return barrier.n_waiting() == 1; }));
  auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(barrier.wait(100ms), mproc::BrokenBarrierError);  // the third never comes
  EXPECT_GE(elapsed_since<std::chrono::milliseconds>(start), 90ms);
  ASSERT_TRUE(patient.join(10s));
  EXPECT_EQ(patient.exitcode(), 0);
  EXPECT_TRUE(barrier.broken());
  EXPECT_EQ(barrier.n_waiting(), 0u);
}

TEST_F(SynchronizeTest, BarrierLateArrivalWithinTheTimeoutPasses) {
  // Waiters wake every 200 ms to look for a dead action runner; that must not break a
  // barrier whose last party is merely slow.
  mproc::Barrier barrier(2);
  mproc::Process early([&] { CHILD_CHECK(barrier.wait(20s) == 0); });
  early.start();
  ASSERT_TRUE(eventually([&] { return barrier.n_waiting() == 1; }));
  std::this_thread::sleep_for(450ms);  // a slow party, on purpose: two re-checks pass
  EXPECT_EQ(barrier.wait(20s), 1u);
  ASSERT_TRUE(early.join(10s));
  EXPECT_EQ(early.exitcode(), 0);
  EXPECT_FALSE(barrier.broken());
}

TEST_F(SynchronizeTest, BarrierDefaultTimeout) {
  mproc::Barrier barrier(2, {}, 50ms);
  EXPECT_THROW(barrier.wait(), mproc::BrokenBarrierError);
  EXPECT_TRUE(barrier.broken());
}

TEST_F(SynchronizeTest, BarrierAbortAndReset) {
  mproc::Barrier barrier(3);
  auto children = start_children(2, [&](int) {
    bool broke = false;
    try {
      barrier.wait(20s);
    } catch (const mproc::BrokenBarrierError&) {
      broke = true;
    }
    CHILD_CHECK(broke);
  });
  ASSERT_TRUE(eventually([&] { return barrier.n_waiting() == 2; }));
  barrier.abort();
  join_all_ok(children);
  EXPECT_TRUE(barrier.broken());
  EXPECT_THROW(barrier.wait(1s), mproc::BrokenBarrierError);

  barrier.reset();
  EXPECT_FALSE(barrier.broken());
  // Usable again; and a reset with parties waiting releases them with BrokenBarrierError.
  auto resetted = start_children(2, [&](int) {
    bool broke = false;
    try {
      barrier.wait(20s);
    } catch (const mproc::BrokenBarrierError&) {
      broke = true;
    }
    CHILD_CHECK(broke);
  });
  ASSERT_TRUE(eventually([&] { return barrier.n_waiting() == 2; }));
  barrier.reset();
  join_all_ok(resetted);
  EXPECT_FALSE(barrier.broken());
  auto passing = start_children(2, [&](int) { CHILD_CHECK(barrier.wait(20s) < 3); });
  EXPECT_LT(barrier.wait(20s), 3u);
  join_all_ok(passing);
}

TEST_F(SynchronizeTest, BarrierPartyKilledWhileWaitingStillCounts) {
  mproc::Barrier barrier(3);
  mproc::Process doomed([&] { barrier.wait(); });
  doomed.start();
  ASSERT_TRUE(eventually([&] { return barrier.n_waiting() == 1; }));
  doomed.kill();
  doomed.join();
  mproc::Process other([&] { CHILD_CHECK(barrier.wait(20s) < 3); });
  other.start();
  EXPECT_LT(barrier.wait(20s), 3u);  // the dead party had arrived: the round completes
  ASSERT_TRUE(other.join(10s));
  EXPECT_EQ(other.exitcode(), 0);
}

// CPython's _TestBarrier.multipass: every party appends to results[0], checks that all
// parties finished the previous phase, waits, appends to results[1], checks that all
// appended to results[0], waits — the parties move in lockstep. The lists are counters under
// a plain Lock (CPython's DummyList).
struct LockstepResults {
  mproc::Value<int, mproc::Lock> first{0};
  mproc::Value<int, mproc::Lock> second{0};
};

bool multipass(mproc::Barrier& barrier, LockstepResults& results, int passes) {
  const int m = static_cast<int>(barrier.parties());
  for (int i = 0; i < passes; ++i) {
    {
      std::lock_guard guard(results.first);
      ++results.first.value();
    }
    if (results.second.load() != i * m) return false;
    barrier.wait();
    {
      std::lock_guard guard(results.second);
      ++results.second.value();
    }
    if (results.first.load() != (i + 1) * m) return false;
    barrier.wait();
  }
  return barrier.n_waiting() == 0 && !barrier.broken();
}

class BarrierMultipass : public LeakCheckedTest, public ::testing::WithParamInterface<int> {};

TEST_P(BarrierMultipass, PartiesMoveInLockstep) {
  // CPython's test_barrier (1 pass) and test_barrier_10: N = 5 parties, N - 1 of them
  // processes, plus this one.
  constexpr int kParties = 5;
  const int passes = GetParam();
  mproc::Barrier barrier(kParties, {}, 30s);
  LockstepResults results;
  auto children = start_children(kParties - 1, [&](int) { CHILD_CHECK(multipass(barrier, results, passes)); });
  EXPECT_TRUE(multipass(barrier, results, passes));
  join_all_ok(children);
  EXPECT_EQ(results.first.load(), kParties * passes);
  EXPECT_EQ(results.second.load(), kParties * passes);
}

INSTANTIATE_TEST_SUITE_P(Passes, BarrierMultipass, ::testing::Values(1, 10));

TEST_F(SynchronizeTest, BarrierThousandPassesAsCPython) {
  // CPython's test_thousand: N = 5 processes pass the barrier 1000 times, each sending the
  // pass number through one pipe after every pass; all N numbers of pass i arrive before
  // any of pass i + 1.
  constexpr int kParties = 5, kPasses = 1000;
  mproc::Barrier barrier(kParties, {}, 30s);
  mproc::Lock lock;
  auto [reader, writer] = mproc::Pipe(false);
  auto children = start_children(kParties, [&](int) {
    for (int i = 0; i < kPasses; ++i) {
      barrier.wait();
      std::lock_guard guard(lock);  // one writer at a time on the shared pipe
      writer.send(i);
    }
  });
  writer.close();
  for (int i = 0; i < kPasses; ++i)
    for (int j = 0; j < kParties; ++j) ASSERT_EQ(reader.recv<int>(), i);
  join_all_ok(children);
}

TEST_F(SynchronizeTest, BarrierSurvivesDeathsUnderItsMutexOutsideAnUpdate) {
  // A party killed while waiting still counts, wherever in wait() it dies — also while it
  // holds the barrier's internal mutex to re-check the state. The same take-over path is
  // exercised (more often) by processes killed inside n_waiting(), which holds that mutex
  // too: none of these deaths may break the barrier.
  mproc::Barrier barrier(3);
  mproc::Process doomed([&] { barrier.wait(); });
  doomed.start();
  ASSERT_TRUE(eventually([&] { return barrier.n_waiting() == 1; }));
  doomed.kill();
  doomed.join();
  for (int kill = 0; kill < 20; ++kill) {
    mproc::RawValue<std::uint64_t> probes(0);
    mproc::Process prober([&] {
      for (;;) {
        (void)barrier.n_waiting();  // lock, read, unlock, over and over
        std::atomic_ref(probes.value()).fetch_add(1, std::memory_order_relaxed);
      }
    });
    prober.start();
    ASSERT_TRUE(eventually([&] { return std::atomic_ref(probes.value()).load() > 10000; }));
    prober.kill();  // lands inside the critical section a good share of the time
    prober.join();
    ASSERT_FALSE(barrier.broken()) << "after kill " << kill;
  }
  EXPECT_EQ(barrier.n_waiting(), 1u);  // the dead party is still counted
  mproc::Process other([&] { CHILD_CHECK(barrier.wait(20s) < 3); });
  other.start();
  EXPECT_LT(barrier.wait(20s), 3u);  // the round completes with the dead party
  ASSERT_TRUE(other.join(10s));
  EXPECT_EQ(other.exitcode(), 0);
  EXPECT_FALSE(barrier.broken());
}

TEST_F(SynchronizeTest, BarrierPartyKilledInTheActionBreaksIt) {
  mproc::Event in_action;
  mproc::Barrier barrier(2, [&] {
    in_action.set();
    ::pause();  // the party running the action is killed here
  });
  mproc::Process waiter([&] {
    try {
      barrier.wait();  // no timeout: must still not hang
    } catch (const mproc::BrokenBarrierError&) {
      ::_exit(0);
    }
    ::_exit(1);
  });
  waiter.start();
  ASSERT_TRUE(eventually([&] { return barrier.n_waiting() == 1; }));
  mproc::Process runner([&] { barrier.wait(); });
  runner.start();
  ASSERT_TRUE(in_action.wait(10s));
  runner.kill();
  runner.join();
  ASSERT_TRUE(waiter.join(10s));
  EXPECT_EQ(waiter.exitcode(), 0);
  EXPECT_TRUE(barrier.broken());
}

// --- Sharing through globals made before a Pool starts -----------------------------------

// Made during static initialisation, long before any Pool: every worker forked later shares
// them, as a Python module-level Lock and Value are shared with a fork Pool's workers.
mproc::Lock global_lock;
mproc::Value<std::int64_t> global_counter(0);

// A pool task: a plain function, reaching the shared state through the globals only.
int increment_under_global_lock(int times) {
  for (int i = 0; i < times; ++i) {
    std::lock_guard guard(global_lock);
    const std::int64_t seen = global_counter.value();  // a non-atomic read-modify-write
    global_counter.value() = seen + 1;
  }
  return ::getpid();
}

TEST_F(SynchronizeTest, GlobalsMadeBeforeAPoolAreSharedWithItsWorkers) {
  global_counter.store(0);  // (the test may be repeated)
  std::vector<int> pids;
  {
    mproc::Pool pool(2);
    pids = pool.map(increment_under_global_lock, std::vector<int>(20, 50), 1);
    pool.close();
    pool.join();
  }
  EXPECT_EQ(global_counter.load(), 1000);
  ASSERT_EQ(pids.size(), 20u);
  for (int pid : pids) EXPECT_NE(pid, ::getpid());  // the increments ran in the workers
  EXPECT_FALSE(global_lock.locked());
}

}  // namespace
