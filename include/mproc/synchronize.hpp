// mproc/synchronize.hpp — Python's multiprocessing synchronization primitives: Lock, RLock,
// Semaphore, BoundedSemaphore, Event, Condition, Barrier.
//
//   mproc::Lock lock;                        // made before the children are forked
//   mproc::Process p([&] { std::lock_guard guard(lock); write_the_log(); });
//   p.start();
//   if (lock.acquire(true, std::chrono::seconds(1))) { ...; lock.release(); }
//
// Sharing: every object is a cheap handle (copies refer to the same primitive, like Python
// references) to state in shared memory (a memfd). It is shared with every child forked
// after its construction — a Process target capturing it, a global made before a Pool
// starts — and with every thread of those processes. Under the spawn and forkserver start
// methods it reaches a child as a Process argument or a pool's initargs
// (mproc::Initializer(init, lock)), by descriptor, as Python pickles it; it cannot be a pool
// task's argument (a compile error) nor be sent through a Pipe or a Queue (SerializationError).
// Each object holds one descriptor (close-on-exec) for its lifetime in each process that has
// it. It never appears in /dev/shm and goes away with the last process that maps it.
//
// Robust to death (what Python's primitives are not):
// - a process or thread that dies holding a Lock or RLock does not deadlock the others: the
//   next acquirer gets the lock, and owner_died() tells it that the data the lock protected
//   may be half updated;
// - a process killed while waiting on a Condition, Event, Semaphore or Barrier blocks no one:
//   notify()/notify_all()/set()/release() never wait for a waiter to acknowledge, and a
//   waiter that was already counted in a Barrier still counts as arrived.
//
// Timeouts: any std::chrono duration; a negative one means "do not wait"; the overloads
// without a timeout wait forever. Every member function is thread-safe unless noted.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "mproc/detail/code_identity.hpp"
#include "mproc/detail/shared_region.hpp"
#include "mproc/detail/timeout.hpp"

namespace mproc {

namespace detail {
struct LockState;
struct SemaphoreState;
struct EventState;
struct ConditionState;
struct BarrierState;
}  // namespace detail

class Condition;

namespace detail {
/// Test introspection of a Condition (CPython's check_invariant): waiters registered and not
/// yet notified, and notifications not yet taken. Both 0 when nobody waits and every notified
/// waiter has returned. A snapshot; not part of the public API.
struct ConditionCounts {
  std::uint32_t waiting;
  std::uint32_t tokens;
};
ConditionCounts condition_counts(const Condition& condition) noexcept;
}  // namespace detail

/// multiprocessing.Lock: a non-recursive mutex shared between processes, robust to its
/// holder's death. Lockable: std::lock_guard, std::unique_lock and std::scoped_lock work.
///
/// Copies share one lock: `mproc::Lock b = a;` (or passing `a` by value to a Process or a
/// function) gives another handle to the same lock, as `b = a` does in Python. Copying never
/// makes a new lock; construct one for that. The same holds for every type in this header.
///
/// Deliberate difference from Python: only the thread that acquired a Lock may release it
/// (Python lets any thread or process release it). Releasing a Lock this thread does not
/// hold throws mproc::Error, as releasing an unlocked one does in Python.
class Lock {
 public:
  /// Marks a handle to shared state (detail::shared_by_descriptor): a Process argument or
  /// initarg under spawn and forkserver reaches the child by descriptor, never a pool task.
  using mproc_shared_by_descriptor = void;
  /// Throws OSError when the shared state cannot be allocated.
  Lock();

  /// Python's acquire(block=True): waits until the lock is free, then takes it; true.
  /// acquire(false) takes it only if it is free now. Throws mproc::Error when the calling
  /// thread already holds it and would wait forever (Python deadlocks).
  bool acquire(bool block = true) { return acquire_for(block, std::nullopt); }
  /// Python's acquire(True, timeout): true when acquired within `timeout`. A thread that
  /// already holds the lock waits out the timeout and gets false, as in Python.
  template <class Rep, class Period>
  bool acquire(bool block, std::chrono::duration<Rep, Period> timeout) {
    return acquire_for(block, detail::to_nanoseconds(timeout));
  }
  /// Throws mproc::Error when the calling thread does not hold the lock.
  void release();

  /// True while the calling thread holds the lock and took it over from an owner that died
  /// holding it (a process killed, a thread exited), until the holder releases it: the data
  /// the lock protects may be inconsistent. Meaningful only to the holder.
  bool owner_died() const noexcept;

  /// Python 3.14's locked(): true while any thread of any process holds the lock. A
  /// snapshot (it may change as soon as it returns); never takes the lock, so it does not
  /// disturb a concurrent acquire(false).
  bool locked() const noexcept;

  // Lockable.
  void lock() { acquire(); }
  bool try_lock() { return acquire(false); }
  void unlock() { release(); }

  friend bool operator==(const Lock& a, const Lock& b) noexcept { return a.state_ == b.state_; }

  /// Under spawn and forkserver: the child maps the same state (see the header comment).
  template <class Archive>
  void serialize(Archive& archive) {
    archive(state_);
  }

 private:
  friend struct detail::HandleAccess;
  explicit Lock(detail::UnloadedHandle) noexcept {}
  friend class Condition;
  bool acquire_for(bool block, detail::Timeout timeout);
  detail::SharedState<detail::LockState> state_;
};

/// multiprocessing.RLock: a recursive Lock — the holding thread may acquire it again and
/// must release it as many times. Robust to its holder's death like Lock (the next acquirer
/// starts a fresh recursion count and sees owner_died()). Lockable.
class RLock {
 public:
  /// Marks a handle to shared state (detail::shared_by_descriptor): a Process argument or
  /// initarg under spawn and forkserver reaches the child by descriptor, never a pool task.
  using mproc_shared_by_descriptor = void;
  RLock();

  /// As Lock::acquire; a thread that holds the lock acquires it again at once.
  bool acquire(bool block = true) { return acquire_for(block, std::nullopt); }
  template <class Rep, class Period>
  bool acquire(bool block, std::chrono::duration<Rep, Period> timeout) {
    return acquire_for(block, detail::to_nanoseconds(timeout));
  }
  /// Releases one level. Throws mproc::Error when the calling thread does not hold the lock.
  void release();
  /// As Lock::owner_died().
  bool owner_died() const noexcept;
  /// As Lock::locked(): true while any thread holds it, at any depth.
  bool locked() const noexcept;

  void lock() { acquire(); }
  bool try_lock() { return acquire(false); }
  void unlock() { release(); }

  friend bool operator==(const RLock& a, const RLock& b) noexcept { return a.state_ == b.state_; }

  /// Under spawn and forkserver: the child maps the same state (see the header comment).
  template <class Archive>
  void serialize(Archive& archive) {
    archive(state_);
  }

 private:
  friend struct detail::HandleAccess;
  explicit RLock(detail::UnloadedHandle) noexcept {}
  friend class Condition;
  bool acquire_for(bool block, detail::Timeout timeout);
  detail::SharedState<detail::LockState> state_;
};

/// multiprocessing.Semaphore: a counter that acquire() decrements, waiting while it is zero,
/// and release() increments.
class Semaphore {
 public:
  /// Marks a handle to shared state (detail::shared_by_descriptor): a Process argument or
  /// initarg under spawn and forkserver reaches the child by descriptor, never a pool task.
  using mproc_shared_by_descriptor = void;
  /// Throws std::invalid_argument when `value` is negative or above 2^31 - 1.
  explicit Semaphore(std::int64_t value = 1);

  bool acquire(bool block = true) { return acquire_for(block, std::nullopt); }
  template <class Rep, class Period>
  bool acquire(bool block, std::chrono::duration<Rep, Period> timeout) {
    return acquire_for(block, detail::to_nanoseconds(timeout));
  }
  /// Increments the counter and wakes a waiter. Any thread or process may release.
  /// Throws std::invalid_argument when a BoundedSemaphore would pass its initial value
  /// ("released too many times", Python's ValueError); mproc::Error past 2^31 - 1.
  void release();
  /// The counter's current value (Python's get_value()); a snapshot.
  std::int64_t get_value() const noexcept;

  friend bool operator==(const Semaphore& a, const Semaphore& b) noexcept { return a.state_ == b.state_; }

 /// Under spawn and forkserver: the child maps the same state (see the header comment).
  template <class Archive>
  void serialize(Archive& archive) {
    archive(state_);
  }

 protected:
  Semaphore(std::int64_t value, std::int64_t bound);
  explicit Semaphore(detail::UnloadedHandle) noexcept {}

 private:
  friend struct detail::HandleAccess;
  bool acquire_for(bool block, detail::Timeout timeout);
  detail::SharedState<detail::SemaphoreState> state_;
};

/// multiprocessing.BoundedSemaphore: a Semaphore whose release() throws std::invalid_argument
/// when the counter would pass its initial value.
class BoundedSemaphore : public Semaphore {
 public:
  explicit BoundedSemaphore(std::int64_t value = 1) : Semaphore(value, value) {}

 private:
  friend struct detail::HandleAccess;
  explicit BoundedSemaphore(detail::UnloadedHandle unloaded) noexcept : Semaphore(unloaded) {}
};

/// multiprocessing.Event: a flag that wait() waits for. Copies share one flag (a copy is
/// another handle to the same Event, not a new one).
class Event {
 public:
  /// Marks a handle to shared state (detail::shared_by_descriptor): a Process argument or
  /// initarg under spawn and forkserver reaches the child by descriptor, never a pool task.
  using mproc_shared_by_descriptor = void;
  Event();
  /// Sets the flag and wakes every waiter.
  void set();
  /// Clears the flag.
  void clear() noexcept;
  bool is_set() const noexcept;
  /// Waits until the flag is set; returns true. With a timeout, returns false when it
  /// passed first. A set() followed at once by clear() still ends the waits it overlapped
  /// (they return true), as with Python's threading.Event.
  bool wait() { return wait_timeout(std::nullopt); }
  template <class Rep, class Period>
  bool wait(std::chrono::duration<Rep, Period> timeout) {
    return wait_timeout(detail::to_nanoseconds(timeout));
  }

  friend bool operator==(const Event& a, const Event& b) noexcept { return a.state_ == b.state_; }

  /// Under spawn and forkserver: the child maps the same state (see the header comment).
  template <class Archive>
  void serialize(Archive& archive) {
    archive(state_);
  }

 private:
  friend struct detail::HandleAccess;
  explicit Event(detail::UnloadedHandle) noexcept {}
  bool wait_timeout(detail::Timeout timeout);
  detail::SharedState<detail::EventState> state_;
};

/// multiprocessing.Condition: a condition variable over a Lock or an RLock (by default a new
/// RLock), shared between processes. Lockable (locks its lock).
///
/// notify(n) wakes at most n of the threads/processes that were waiting when it was called —
/// never one that starts waiting afterwards, so a process that calls notify() and then
/// wait() does not take its own notification. notify() never waits for the woken ones
/// (Python's does, and hangs when one of them was killed). A waiter killed inside wait()
/// blocks no one: a notification counted for it goes to another waiter that was waiting at
/// that notify, or, if none is left, ends a wait of a later notify's round early (one
/// spurious wake-up per dead waiter) — use wait_for(predicate), as always with condition
/// variables. A notifier killed inside notify() wakes its waiters through the next process
/// that takes the lock over (owner_died()).
class Condition {
 public:
  /// Marks a handle to shared state (detail::shared_by_descriptor): a Process argument or
  /// initarg under spawn and forkserver reaches the child by descriptor, never a pool task.
  using mproc_shared_by_descriptor = void;
  Condition();
  explicit Condition(Lock lock);
  explicit Condition(RLock lock);

  /// As the lock's acquire/release.
  bool acquire(bool block = true) { return acquire_for(block, std::nullopt); }
  template <class Rep, class Period>
  bool acquire(bool block, std::chrono::duration<Rep, Period> timeout) {
    return acquire_for(block, detail::to_nanoseconds(timeout));
  }
  void release();
  void lock() { acquire(); }
  bool try_lock() { return acquire(false); }
  void unlock() { release(); }

  /// Requires: the calling thread holds the lock (else throws mproc::Error). Releases it
  /// entirely (every level of an RLock), waits for a notify, takes the lock back (at the same
  /// recursion level) and returns true; with a timeout, false if it passed first.
  bool wait() { return wait_until_notified(std::nullopt); }
  template <class Rep, class Period>
  bool wait(std::chrono::duration<Rep, Period> timeout) {
    return wait_until_notified(detail::to_nanoseconds(timeout));
  }

  /// Python's wait_for: waits until predicate() is true (checked with the lock held, first
  /// before any wait) or the timeout passes; returns the predicate's last value.
  template <class Predicate>
  bool wait_for(Predicate predicate) {
    while (!predicate()) wait();
    return true;
  }
  template <class Predicate, class Rep, class Period>
  bool wait_for(Predicate predicate, std::chrono::duration<Rep, Period> timeout) {
    const auto deadline = *detail::deadline_after(timeout);
    bool result = predicate();
    while (!result) {
      auto left = deadline - std::chrono::steady_clock::now();
      if (left <= decltype(left)::zero()) break;
      wait(left);
      result = predicate();
    }
    return result;
  }

  /// Requires: the calling thread holds the lock (else throws mproc::Error). Wakes up to `n`
  /// of the waiting threads/processes (none when nobody waits).
  void notify(std::size_t n = 1);
  void notify_all();

  /// Under spawn and forkserver: the child maps the same state (see the header comment).
  template <class Archive>
  void save(Archive& archive) const {
    archive(lock_, recursive_, state_);
  }
  template <class Archive>
  void load(Archive& archive) {
    archive(lock_, recursive_, state_);
  }

 private:
  friend struct detail::HandleAccess;
  explicit Condition(detail::UnloadedHandle) noexcept {}
  friend detail::ConditionCounts detail::condition_counts(const Condition&) noexcept;
  bool acquire_for(bool block, detail::Timeout timeout);
  bool wait_until_notified(detail::Timeout timeout);
  detail::SharedState<detail::LockState> lock_;
  bool recursive_ = false;
  detail::SharedState<detail::ConditionState> state_;
};

/// multiprocessing.Barrier (threading.Barrier's semantics): `parties` threads or processes
/// wait() until all have arrived, then all proceed.
///
/// wait() returns the arrival index, 0 for the first arrival up to parties - 1 for the last,
/// different for each party. The last to arrive runs `action` (if any) before the others are
/// released; if the action throws, the barrier breaks and the exception propagates.
/// A wait that times out breaks the barrier; then every current and later wait() throws
/// BrokenBarrierError until reset().
///
/// Death: a party killed while waiting has arrived — when the others complete the barrier it
/// counts, wherever inside wait() it was killed (asleep, or re-checking the state under the
/// barrier's internal mutex). A party killed before arriving cannot arrive: the others wait
/// until their timeout (then the barrier breaks), so give waits a timeout where parties may
/// die. A party killed while running the action (or inside reset()) breaks the barrier (the
/// others throw BrokenBarrierError).
class Barrier {
 public:
  /// Marks a handle to shared state (detail::shared_by_descriptor): a Process argument or
  /// initarg under spawn and forkserver reaches the child by descriptor, never a pool task.
  using mproc_shared_by_descriptor = void;
  /// Throws std::invalid_argument when parties < 1 (or above 2^31 - 1).
  explicit Barrier(std::int64_t parties, std::function<void()> action = {});
  /// `timeout`: the default for wait() without a timeout (Python's timeout argument).
  template <class Rep, class Period>
  Barrier(std::int64_t parties, std::function<void()> action, std::chrono::duration<Rep, Period> timeout)
      : Barrier(parties, std::move(action), detail::Timeout(detail::to_nanoseconds(timeout))) {}

  /// Waits for every party (or the default timeout); returns the arrival index.
  /// Throws BrokenBarrierError when the barrier is or becomes broken, resets while waiting,
  /// or the timeout passes (which breaks it); rethrows what the action threw.
  std::size_t wait() { return wait_timeout(std::nullopt); }
  template <class Rep, class Period>
  std::size_t wait(std::chrono::duration<Rep, Period> timeout) {
    return wait_timeout(detail::to_nanoseconds(timeout));
  }

  /// Returns the barrier to its empty, unbroken state; current waiters throw BrokenBarrierError.
  void reset();
  /// Breaks the barrier: current and later waits throw BrokenBarrierError until reset().
  void abort();

  std::size_t parties() const noexcept;
  /// How many parties are waiting now (0 while broken).
  std::size_t n_waiting() const;
  bool broken() const noexcept;

  friend bool operator==(const Barrier& a, const Barrier& b) noexcept { return a.state_ == b.state_; }

  /// Under spawn and forkserver: the child maps the same state. The action goes by name, so
  /// it must be a plain function (a `void (*)()` in the std::function); any other action
  /// throws SerializationError, since it cannot run in a fresh copy of the program.
  template <class Archive>
  void save(Archive& archive) const {
    const detail::CodeRef action = action_ref();
    archive(state_, action);
  }
  template <class Archive>
  void load(Archive& archive) {
    detail::CodeRef action;
    archive(state_, action);
    set_action(action);
  }

 private:
  friend struct detail::HandleAccess;
  explicit Barrier(detail::UnloadedHandle) noexcept {}
  detail::CodeRef action_ref() const;  // an empty CodeRef: no action
  void set_action(const detail::CodeRef& action);
  Barrier(std::int64_t parties, std::function<void()> action, detail::Timeout timeout);
  std::size_t wait_timeout(detail::Timeout timeout);
  detail::SharedState<detail::BarrierState> state_;
  std::function<void()> action_;  // runs in the process that arrives last: not shared
};

}  // namespace mproc
