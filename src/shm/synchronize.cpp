// The synchronization primitives: robust pthread mutexes and raw futex words in shared
// memory (a memfd per object, detail/shared_region.hpp). docs/architecture.md ("Locks, conditions and barriers") has the protocols.
#include "mproc/synchronize.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <limits>
#include <new>
#include <pthread.h>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>

#include "mproc/error.hpp"
#include "sys/futex.hpp"
#include "sys/robust_mutex.hpp"

namespace mproc {

namespace detail {

// Every state lives in its own shared region (a memfd), written by several processes; the
// fields one process may read while another writes are atomics. Each declares the version of
// its layout (bump it on any change the size does not show: a spawned child of another build
// must refuse the state, see SharedRegion::attach) and the name its memfd shows in /proc.

struct LockState {
  static constexpr std::uint32_t kLayoutVersion = 1;
  static constexpr char kDebugName[] = "mproc-lock";
  pthread_mutex_t mutex;  // robust, process-shared, error-checking (sys/robust_mutex)
  // Recursion depth of an RLock: written only by the holder, under the mutex.
  std::atomic<std::uint32_t> count{0};
  // 1 from the take-over of a dead owner's lock until a holder releases it (owner_died()).
  std::atomic<std::uint32_t> owner_died{0};
  // The futex word every Condition over this lock sleeps on: bumped by notify() and by the
  // take-over of a dead owner. It lives here, not in the ConditionState, so that any
  // take-over (through the Lock, the RLock or the Condition) wakes the sleepers of a
  // notifier killed between publishing its tokens and waking them (see Condition::notify).
  std::atomic<std::uint32_t> condition_seq{0};
};

struct SemaphoreState {
  static constexpr std::uint32_t kLayoutVersion = 1;
  static constexpr char kDebugName[] = "mproc-semaphore";
  std::atomic<std::uint32_t> value{0};    // the futex word
  std::atomic<std::uint32_t> waiters{0};  // threads in (or entering) futex_wait on value
  std::uint32_t bound = 0;                // BoundedSemaphore's initial value
  bool bounded = false;
};

struct EventState {
  static constexpr std::uint32_t kLayoutVersion = 1;
  static constexpr char kDebugName[] = "mproc-event";
  // Bit 0: the flag. Bits 1-31: how many times set() raised it, so a waiter sees that a
  // set() happened even when a clear() followed before it woke up.
  std::atomic<std::uint32_t> word{0};
  std::atomic<std::uint32_t> waiters{0};
};

struct ConditionState {
  static constexpr std::uint32_t kLayoutVersion = 1;
  static constexpr char kDebugName[] = "mproc-condition";
  // Each wait() takes a ticket (under the lock). notify() makes every ticket issued so far
  // eligible (eligible_below = next_ticket) and adds tokens; a waiter may take a token only
  // once its ticket is eligible, i.e. only from a notify() that came after it started
  // waiting. Tickets are 64-bit: they never wrap.
  std::atomic<std::uint64_t> next_ticket{0};     // written under the lock
  std::atomic<std::uint64_t> eligible_below{0};  // written under the lock, read lock-free
  // Wake-up tokens: notify(n) adds up to n, each notified waiter takes one (lock-free).
  std::atomic<std::uint32_t> tokens{0};
  // Waiters registered and not yet given a token. Changed only under the condition's lock;
  // atomic because a waiter killed mid-update must not leave a torn value.
  std::atomic<std::uint32_t> waiting{0};
};

struct BarrierState {
  static constexpr std::uint32_t kLayoutVersion = 1;
  static constexpr char kDebugName[] = "mproc-barrier";
  pthread_mutex_t mutex;  // guards every field but epoch
  // Futex word: bumped at every transition (pass, break, reset) so that waiters sleeping on
  // it wake up whatever the transition.
  std::atomic<std::uint32_t> epoch{0};
  std::uint32_t generation = 0;  // which filling of the barrier this is
  std::uint32_t count = 0;       // parties arrived in this generation
  std::atomic<std::uint32_t> broken{0};
  // 1 while the mutex holder changes fields that must change together (the last arrival
  // running the action and ending the generation, a reset). A holder that dies with it set
  // leaves the state suspect, and the barrier breaks; one that dies elsewhere under the
  // mutex (an arrival after count++, a waiter re-checking) leaves it consistent.
  std::atomic<std::uint32_t> updating{0};
  // Bit (generation % 64) set when that generation ended broken (reset while parties were
  // waiting): a waiter that wakes after the barrier moved on learns how its round ended.
  std::uint64_t broken_ends = 0;
  std::uint32_t parties = 0;
  bool has_timeout = false;
  std::int64_t timeout_ns = 0;
};

// Layout claims: every process that maps a state reads it with this layout, through atomics
// that must work across processes (lock-free, so not a process-local lock table).
static_assert(std::atomic<std::uint32_t>::is_always_lock_free && std::atomic<std::uint64_t>::is_always_lock_free,
              "shared futex words and counters must be lock-free atomics");
static_assert(sizeof(std::atomic<std::uint32_t>) == 4, "a futex word is 32 bits");
static_assert(std::is_standard_layout_v<LockState> && std::is_trivially_destructible_v<LockState>);
static_assert(std::is_standard_layout_v<SemaphoreState> && std::is_trivially_destructible_v<SemaphoreState>);
static_assert(std::is_standard_layout_v<EventState> && std::is_trivially_destructible_v<EventState>);
static_assert(std::is_standard_layout_v<ConditionState> && std::is_trivially_destructible_v<ConditionState>);
static_assert(std::is_standard_layout_v<BarrierState> && std::is_trivially_destructible_v<BarrierState>);
static_assert(sizeof(LockState) <= 4096 && sizeof(BarrierState) <= 4096, "one page per primitive");

// Messages name a state by its memfd name without the "mproc-" prefix ("a lock was sent...").
constexpr std::size_t kNamePrefix = sizeof("mproc-") - 1;

template <class State>
SharedState<State> SharedState<State>::attach(RegionRef& ref) {
  SharedState out;
  out.region_ = SharedRegion::attach(ref, layout(), sizeof(State), SharedRegion::Backing::reserved, State::kDebugName + kNamePrefix);
  out.state_ = std::launder(reinterpret_cast<State*>(out.region_->data()));
  return out;
}

template SharedState<LockState> SharedState<LockState>::attach(RegionRef&);
template SharedState<SemaphoreState> SharedState<SemaphoreState>::attach(RegionRef&);
template SharedState<EventState> SharedState<EventState>::attach(RegionRef&);
template SharedState<ConditionState> SharedState<ConditionState>::attach(RegionRef&);
template SharedState<BarrierState> SharedState<BarrierState>::attach(RegionRef&);

}  // namespace detail

namespace {

using detail::LockState;
using sys::Clock;
using sys::Deadline;

constexpr std::uint32_t kMaxCount = std::numeric_limits<std::int32_t>::max();

// Constructs `State` in a fresh shared region; the handle keeps the region alive.
template <class State>
detail::SharedState<State> make_state() {
  return detail::SharedState<State>::make();
}

void init_mutex(pthread_mutex_t* mutex) {
  if (int rc = sys::robust_mutex_init(mutex); rc < 0) throw OSError(-rc, "pthread_mutex_init");
}

// Take-over of a dead owner's lock: robust_mutex_* already made the mutex consistent; the
// flag tells the new holder (and, if it releases at once, the next one). The owner may have
// died inside Condition::notify() after publishing tokens but before waking the sleepers:
// wake every Condition sleeper now (a spurious wake-up for the others, who sleep again).
int note_owner_death(LockState& state, int rc) noexcept {
  if (rc == sys::kOwnerDied) {
    state.owner_died.store(1, std::memory_order_relaxed);
    state.condition_seq.fetch_add(1, std::memory_order_release);
    sys::futex_wake(state.condition_seq, INT_MAX);
  }
  return rc;
}

// Tries to take the mutex: returns 0 or kOwnerDied (taken), -EDEADLK (the calling thread
// holds it already), -EBUSY / -ETIMEDOUT (not taken), or another -errno.
//
// Why a spin before sleeping: a Lock typically guards a few instructions, and two processes
// on two CPUs hand it back and forth far faster than a futex sleep and wake-up (~7 µs)
// allow. A short bounded spin (a few µs, with pause) catches the release; after it the
// thread sleeps in the kernel, so a long wait costs no CPU.
int take(LockState& state, bool block, const detail::Timeout& timeout) noexcept {
  int rc = sys::robust_mutex_try_lock(&state.mutex);
  if (rc != -EBUSY || !block) return note_owner_death(state, rc);
  if (timeout && *timeout <= std::chrono::nanoseconds::zero()) return -EBUSY;
  constexpr int kSpins = 64;
  for (int spin = 0; spin < kSpins; ++spin) {
    for (int i = 0; i < 1 + spin / 8; ++i) sys::cpu_relax();
    rc = sys::robust_mutex_try_lock(&state.mutex);
    if (rc != -EBUSY) return note_owner_death(state, rc);
  }
  return note_owner_death(state, sys::robust_mutex_lock(&state.mutex, detail::deadline_after(timeout)));
}

[[noreturn]] void throw_os(int rc, const char* what) { throw OSError(-rc, what); }

// True when the calling thread holds the mutex. The error-checking mutex knows its owner: a
// try-lock by the owner reports EDEADLK. A probe that took a free lock gives it back.
bool held_by_caller(LockState& state) {
  int rc = note_owner_death(state, sys::robust_mutex_try_lock(&state.mutex));
  if (rc == -EDEADLK) return true;
  if (rc == 0 || rc == sys::kOwnerDied) sys::robust_mutex_unlock(&state.mutex);
  else if (rc != -EBUSY) throw_os(rc, "pthread_mutex_trylock");
  return false;
}

void unlock(LockState& state) {
  if (int rc = sys::robust_mutex_unlock(&state.mutex); rc < 0) throw_os(rc, "pthread_mutex_unlock");
}

// Blocks until the mutex is ours (the Condition takes its lock back with no timeout).
void take_blocking(LockState& state) {
  int rc = take(state, true, std::nullopt);
  if (rc < 0) throw_os(rc, "pthread_mutex_lock");
}

bool is_taken(int rc, const char* what) {
  if (rc == 0 || rc == sys::kOwnerDied) return true;
  if (rc == -EBUSY || rc == -ETIMEDOUT) return false;
  throw_os(rc, what);
}

// A non-recursive owner asking to wait for itself: Python waits out the timeout (or forever);
// waiting forever is a certain deadlock, so that case throws.
bool wait_for_self(const detail::Timeout& timeout, const char* what) {
  if (!timeout) throw Error(std::string(what) + ": the calling thread already holds this Lock; waiting for it "
                            "would never end (use an RLock to acquire it again)");
  std::this_thread::sleep_until(*detail::deadline_after(timeout));
  return false;
}

}  // namespace

// --- Lock and RLock ---------------------------------------------------------------------

namespace {

// Lock (recursive = false) and RLock (true) share one state and these two functions; the
// Condition calls them for whichever lock it was given.
bool acquire_lock(LockState& state, bool recursive, bool block, const detail::Timeout& timeout) {
  int rc = take(state, block, timeout);
  if (rc == -EDEADLK) {
    if (!recursive) return block && wait_for_self(timeout, "Lock.acquire");
    if (state.count.load(std::memory_order_relaxed) >= kMaxCount) throw Error("RLock.acquire: recursion too deep");
    state.count.fetch_add(1, std::memory_order_relaxed);  // ours already: one level deeper
    return true;
  }
  if (!is_taken(rc, recursive ? "RLock.acquire" : "Lock.acquire")) return false;
  if (recursive) state.count.store(1, std::memory_order_relaxed);  // a dead owner's depth does not carry over
  return true;
}

void release_lock(LockState& state, bool recursive) {
  if (recursive) {
    if (!held_by_caller(state)) throw Error("RLock.release: the calling thread does not hold this RLock");
    // The count and the flag are written before the unlock: once it is released, they are
    // the next holder's.
    std::uint32_t depth = state.count.load(std::memory_order_relaxed);
    if (depth > 1) {
      state.count.store(depth - 1, std::memory_order_relaxed);
      return;
    }
    state.count.store(0, std::memory_order_relaxed);
    state.owner_died.store(0, std::memory_order_relaxed);
    unlock(state);
    return;
  }
  // Only the holder may clear the flag: a non-holder's release must not hide a death from
  // the real holder. In the common case (flag clear) the Lock's release is one load and the
  // unlock, which itself refuses a non-owner (error-checking mutex).
  if (state.owner_died.load(std::memory_order_relaxed) != 0 && held_by_caller(state))
    state.owner_died.store(0, std::memory_order_relaxed);
  int rc = sys::robust_mutex_unlock(&state.mutex);
  if (rc == -EPERM) throw Error("Lock.release: the calling thread does not hold this Lock");
  if (rc < 0) throw_os(rc, "pthread_mutex_unlock");
}

}  // namespace

Lock::Lock() : state_(make_state<LockState>()) { init_mutex(&state_->mutex); }
bool Lock::acquire_for(bool block, detail::Timeout timeout) { return acquire_lock(*state_, false, block, timeout); }
void Lock::release() { release_lock(*state_, false); }
bool Lock::owner_died() const noexcept { return state_->owner_died.load(std::memory_order_relaxed) != 0; }
bool Lock::locked() const noexcept { return sys::robust_mutex_locked(&state_->mutex); }

RLock::RLock() : state_(make_state<LockState>()) { init_mutex(&state_->mutex); }
bool RLock::acquire_for(bool block, detail::Timeout timeout) { return acquire_lock(*state_, true, block, timeout); }
void RLock::release() { release_lock(*state_, true); }
bool RLock::owner_died() const noexcept { return state_->owner_died.load(std::memory_order_relaxed) != 0; }
bool RLock::locked() const noexcept { return sys::robust_mutex_locked(&state_->mutex); }

// --- Semaphore ---------------------------------------------------------------------------

namespace {

bool try_decrement(std::atomic<std::uint32_t>& value) noexcept {
  std::uint32_t current = value.load(std::memory_order_relaxed);
  while (current > 0)
    if (value.compare_exchange_weak(current, current - 1, std::memory_order_acquire, std::memory_order_relaxed))
      return true;
  return false;
}

std::uint32_t checked_count(std::int64_t value, const char* what) {
  if (value < 0 || value > static_cast<std::int64_t>(kMaxCount))
    throw std::invalid_argument(std::string(what) + " must be in [0, 2^31 - 1]");
  return static_cast<std::uint32_t>(value);
}

}  // namespace

Semaphore::Semaphore(std::int64_t value) : Semaphore(value, -1) {}

Semaphore::Semaphore(std::int64_t value, std::int64_t bound) : state_(make_state<detail::SemaphoreState>()) {
  state_->value.store(checked_count(value, "Semaphore value"), std::memory_order_relaxed);
  state_->bounded = bound >= 0;
  state_->bound = state_->bounded ? static_cast<std::uint32_t>(bound) : 0;
}

bool Semaphore::acquire_for(bool block, detail::Timeout timeout) {
  detail::SemaphoreState& state = *state_;
  if (try_decrement(state.value)) return true;
  if (!block) return false;
  const Deadline deadline = detail::deadline_after(timeout);
  for (;;) {
    // Dekker-style with release(): the waiter announces itself, then reads the value; the
    // releaser raises the value, then reads the waiters (all seq_cst). One of them sees the
    // other, and futex_wait re-checks the word atomically, so no wake-up is lost.
    state.waiters.fetch_add(1);
    int rc = state.value.load() == 0 ? sys::futex_wait(state.value, 0, deadline) : 0;
    state.waiters.fetch_sub(1);
    if (try_decrement(state.value)) return true;
    if (rc == -ETIMEDOUT) return false;
  }
}

void Semaphore::release() {
  detail::SemaphoreState& state = *state_;
  std::uint32_t current = state.value.load();
  do {
    // Python's ValueError; mproc's convention maps it to std::invalid_argument.
    if (state.bounded && current >= state.bound)
      throw std::invalid_argument("BoundedSemaphore.release: released too many times");
    if (current >= kMaxCount) throw Error("Semaphore.release: the value would overflow");
  } while (!state.value.compare_exchange_weak(current, current + 1));
  // One wake-up is enough for one unit, unless several wait: then a waiter being killed at
  // this very moment may still be on the futex queue and swallow a targeted wake-up, so all
  // are woken and the value decides who gets the unit. A waiter killed in futex_wait stays
  // counted in `waiters` (it never decrements): later releases then broadcast, harmlessly.
  const std::uint32_t waiters = state.waiters.load();
  if (waiters != 0) sys::futex_wake(state.value, waiters == 1 ? 1 : INT_MAX);
}

std::int64_t Semaphore::get_value() const noexcept { return state_->value.load(std::memory_order_relaxed); }

// --- Event -------------------------------------------------------------------------------

Event::Event() : state_(make_state<detail::EventState>()) {}

void Event::set() {
  detail::EventState& state = *state_;
  std::uint32_t current = state.word.load();
  do {
    if (current & 1u) return;
  } while (!state.word.compare_exchange_weak(current, (current + 2u) | 1u));
  // Every waiter is woken (no count to lose to a waiter being killed at that moment).
  if (state.waiters.load() != 0) sys::futex_wake(state.word, INT_MAX);
}

void Event::clear() noexcept { state_->word.fetch_and(~1u); }

bool Event::is_set() const noexcept { return (state_->word.load(std::memory_order_acquire) & 1u) != 0; }

bool Event::wait_timeout(detail::Timeout timeout) {
  detail::EventState& state = *state_;
  const std::uint32_t seen = state.word.load(std::memory_order_acquire);
  if (seen & 1u) return true;
  const Deadline deadline = detail::deadline_after(timeout);
  for (;;) {
    // Same announce-then-check pairing as the Semaphore. The word changes only through set()
    // while the flag is clear, so any change means a set() happened since `seen`.
    state.waiters.fetch_add(1);
    int rc = sys::futex_wait(state.word, seen, deadline);
    state.waiters.fetch_sub(1);
    if (state.word.load(std::memory_order_acquire) != seen) return true;
    if (rc == -ETIMEDOUT) return false;
  }
}

// --- Condition ---------------------------------------------------------------------------

namespace {

// Releases every level of the lock for a wait; returns what to restore.
std::uint32_t release_all(LockState& lock, bool recursive) {
  std::uint32_t depth = recursive ? lock.count.load(std::memory_order_relaxed) : 0;
  if (recursive) lock.count.store(0, std::memory_order_relaxed);
  lock.owner_died.store(0, std::memory_order_relaxed);
  unlock(lock);
  return depth;
}

void acquire_restore(LockState& lock, bool recursive, std::uint32_t depth) {
  take_blocking(lock);
  if (recursive) lock.count.store(depth, std::memory_order_relaxed);
}

// Takes a token if this waiter's ticket is eligible (a notify() came after it started
// waiting) and one is left. Lock-free: the tokens word is the only thing written.
bool try_take_token(detail::ConditionState& state, std::uint64_t ticket) noexcept {
  return ticket < state.eligible_below.load(std::memory_order_acquire) && try_decrement(state.tokens);
}

// Sleeps until this waiter takes a token or the deadline passes. The sequence word is read
// (acquire) before the token check and futex_wait re-checks it in the kernel: a notify()
// publishes eligibility and tokens before bumping it (release), so either this check sees
// them or the futex_wait returns at once.
bool take_token(std::atomic<std::uint32_t>& seq, detail::ConditionState& state, std::uint64_t ticket,
                const Deadline& deadline) noexcept {
  for (;;) {
    const std::uint32_t seen = seq.load(std::memory_order_acquire);
    if (try_take_token(state, ticket)) return true;
    if (sys::futex_wait(seq, seen, deadline) == -ETIMEDOUT) return false;
  }
}

}  // namespace

Condition::Condition() : Condition(RLock()) {}

Condition::Condition(Lock lock)
    : lock_(std::move(lock.state_)), recursive_(false), state_(make_state<detail::ConditionState>()) {}

Condition::Condition(RLock lock)
    : lock_(std::move(lock.state_)), recursive_(true), state_(make_state<detail::ConditionState>()) {}

bool Condition::acquire_for(bool block, detail::Timeout timeout) {
  return acquire_lock(*lock_, recursive_, block, timeout);
}

void Condition::release() { release_lock(*lock_, recursive_); }

bool Condition::wait_until_notified(detail::Timeout timeout) {
  LockState& lock = *lock_;
  detail::ConditionState& state = *state_;
  if (!held_by_caller(lock)) throw Error("Condition.wait: the calling thread does not hold the lock");
  const Deadline deadline = detail::deadline_after(timeout);
  // Registered under the lock, so a notify() that takes the lock after our release counts
  // us and makes our ticket eligible, and one that came before cannot give us its token.
  // Invariant (no deaths): waiters not yet returned = waiting + tokens, and tokens <= the
  // eligible ones among them; every step below keeps both.
  const std::uint64_t ticket = state.next_ticket.load(std::memory_order_relaxed);
  state.next_ticket.store(ticket + 1, std::memory_order_relaxed);
  state.waiting.fetch_add(1, std::memory_order_relaxed);
  const std::uint32_t depth = release_all(lock, recursive_);
  bool notified = take_token(lock.condition_seq, state, ticket, deadline);
  acquire_restore(lock, recursive_, depth);
  if (!notified) {
    // Timed out. Under the lock again: a notify() may have counted us meanwhile and left a
    // token; take it (we were notified, as Python reports), or deregister.
    notified = try_take_token(state, ticket);
    if (!notified && state.waiting.load(std::memory_order_relaxed) > 0)
      state.waiting.fetch_sub(1, std::memory_order_relaxed);
  }
  return notified;
}

void Condition::notify(std::size_t n) {
  LockState& lock = *lock_;
  detail::ConditionState& state = *state_;
  if (!held_by_caller(lock)) throw Error("Condition.notify: the calling thread does not hold the lock");
  const std::uint32_t waiting = state.waiting.load(std::memory_order_relaxed);
  const auto woken = static_cast<std::uint32_t>(std::min<std::size_t>(n, waiting));
  if (woken == 0) return;
  // The order matters if this process is killed part-way (the next holder of the lock then
  // finishes the job by waking everyone, see note_owner_death): eligibility first, then the
  // tokens, then the count. A death between two steps leaves extra tokens (a spurious
  // wake-up later), never a registered waiter that no notify can reach.
  state.eligible_below.store(state.next_ticket.load(std::memory_order_relaxed), std::memory_order_release);
  state.tokens.fetch_add(woken, std::memory_order_release);
  state.waiting.store(waiting - woken, std::memory_order_relaxed);
  lock.condition_seq.fetch_add(1, std::memory_order_release);
  // Every sleeper is woken, not `woken` of them: the tokens are not addressed to particular
  // waiters, and a waiter being killed at this moment may still be on the futex queue and
  // would swallow a targeted wake-up. The tokens and tickets decide who returns, so at most
  // `woken` waiters do; the others sleep again.
  sys::futex_wake(lock.condition_seq, INT_MAX);
}

void Condition::notify_all() { notify(std::numeric_limits<std::size_t>::max()); }

namespace detail {
ConditionCounts condition_counts(const Condition& condition) noexcept {
  return {condition.state_->waiting.load(std::memory_order_relaxed),
          condition.state_->tokens.load(std::memory_order_relaxed)};
}
}  // namespace detail

// --- Barrier -----------------------------------------------------------------------------

namespace {

using detail::BarrierState;

// While a waiter sleeps unlocked, the party running the action holds the mutex; if it is
// killed there, only a thread blocked on the robust mutex learns it (the kernel hands it
// the lock). So sleepers come back to the mutex at least this often.
constexpr auto kBarrierRecheck = std::chrono::milliseconds(200);

std::uint64_t generation_bit(std::uint32_t generation) noexcept { return std::uint64_t{1} << (generation % 64); }

// Wakes every waiter: the state changed under the lock.
void publish(BarrierState& state) noexcept {
  state.epoch.fetch_add(1, std::memory_order_release);
  sys::futex_wake(state.epoch, INT_MAX);
}

void break_barrier(BarrierState& state) noexcept {
  if (state.broken.load(std::memory_order_relaxed) != 0) return;
  state.broken.store(1, std::memory_order_relaxed);
  publish(state);
}

// Holds the barrier's mutex. A previous holder that died in the middle of an update (in the
// action, or in reset()) leaves the state suspect: the barrier breaks. One that died while
// merely arriving or re-checking left it consistent: nothing breaks, and a party counted
// before it died still counts.
class BarrierGuard {
 public:
  explicit BarrierGuard(BarrierState& state) : state_(state) { lock(); }
  ~BarrierGuard() {
    if (held_) sys::robust_mutex_unlock(&state_.mutex);
  }
  BarrierGuard(const BarrierGuard&) = delete;
  BarrierGuard& operator=(const BarrierGuard&) = delete;

  void lock() {
    int rc = sys::robust_mutex_lock(&state_.mutex, std::nullopt);
    if (rc < 0) throw_os(rc, "pthread_mutex_lock");
    held_ = true;
    if (rc != sys::kOwnerDied) return;
    // count == parties: the last arrival died between counting itself and marking the update.
    if (state_.updating.load(std::memory_order_relaxed) != 0 || state_.count >= state_.parties)
      break_barrier(state_);
    state_.updating.store(0, std::memory_order_relaxed);
  }
  void unlock() noexcept {
    held_ = false;
    sys::robust_mutex_unlock(&state_.mutex);
  }

 private:
  BarrierState& state_;
  bool held_ = false;
};

}  // namespace

Barrier::Barrier(std::int64_t parties, std::function<void()> action)
    : Barrier(parties, std::move(action), detail::Timeout()) {}

Barrier::Barrier(std::int64_t parties, std::function<void()> action, detail::Timeout timeout)
    : state_(make_state<BarrierState>()), action_(std::move(action)) {
  if (parties < 1 || parties > static_cast<std::int64_t>(kMaxCount))
    throw std::invalid_argument("Barrier: parties must be in [1, 2^31 - 1]");
  init_mutex(&state_->mutex);
  state_->parties = static_cast<std::uint32_t>(parties);
  state_->has_timeout = timeout.has_value();
  state_->timeout_ns = timeout ? timeout->count() : 0;
}

std::size_t Barrier::wait_timeout(detail::Timeout timeout) {
  BarrierState& state = *state_;
  if (!timeout && state.has_timeout) timeout = std::chrono::nanoseconds(state.timeout_ns);
  const Deadline deadline = detail::deadline_after(timeout);
  BarrierGuard guard(state);
  if (state.broken.load(std::memory_order_relaxed) != 0) throw BrokenBarrierError("Barrier.wait: the barrier is broken");
  const std::uint32_t generation = state.generation;
  const std::size_t index = state.count++;
  if (state.count == state.parties) {
    // The last arrival runs the action before anyone is released, holding the mutex as
    // Python holds the condition's lock; a throwing action breaks the barrier.
    state.updating.store(1, std::memory_order_relaxed);
    if (action_) {
      try {
        action_();
      } catch (...) {
        break_barrier(state);
        state.updating.store(0, std::memory_order_relaxed);
        throw;
      }
    }
    state.count = 0;
    state.broken_ends &= ~generation_bit(generation);
    ++state.generation;
    publish(state);
    state.updating.store(0, std::memory_order_relaxed);
    return index;
  }
  for (;;) {
    const std::uint32_t epoch = state.epoch.load(std::memory_order_relaxed);
    guard.unlock();
    Clock::time_point recheck = Clock::now() + kBarrierRecheck;
    sys::futex_wait(state.epoch, epoch, deadline ? std::min(*deadline, recheck) : recheck);
    guard.lock();
    if (state.generation != generation) {
      if (state.broken_ends & generation_bit(generation))
        throw BrokenBarrierError("Barrier.wait: the barrier was reset while waiting");
      return index;
    }
    if (state.broken.load(std::memory_order_relaxed) != 0)
      throw BrokenBarrierError("Barrier.wait: the barrier is broken");
    if (deadline && Clock::now() >= *deadline) {
      break_barrier(state);
      throw BrokenBarrierError("Barrier.wait: timed out (the barrier is now broken)");
    }
  }
}

void Barrier::reset() {
  BarrierState& state = *state_;
  BarrierGuard guard(state);
  if (state.count == 0 && state.broken.load(std::memory_order_relaxed) == 0) return;
  // The waiters of this round (if any) end broken; a fresh round starts.
  state.updating.store(1, std::memory_order_relaxed);
  state.broken_ends |= generation_bit(state.generation);
  ++state.generation;
  state.count = 0;
  state.broken.store(0, std::memory_order_relaxed);
  publish(state);
  state.updating.store(0, std::memory_order_relaxed);
}

void Barrier::abort() {
  BarrierGuard guard(*state_);
  break_barrier(*state_);
}

detail::CodeRef Barrier::action_ref() const {
  if (!action_) return {};
  // Only a plain function has a name that a fresh copy of the program can resolve.
  if (const auto* function = action_.target<void (*)()>()) return detail::code_ref(*function);
  throw SerializationError(
      "mproc: a Barrier whose action is not a plain function (a free function or a static member "
      "function, stored as void(*)()) cannot reach a spawned child: the action would not exist there");
}

void Barrier::set_action(const detail::CodeRef& action) {
  if (action == detail::CodeRef{}) {
    action_ = nullptr;
  } else {
    action_ = detail::resolve<void()>(action);
  }
}

std::size_t Barrier::parties() const noexcept { return state_->parties; }

std::size_t Barrier::n_waiting() const {
  BarrierGuard guard(*state_);
  return state_->broken.load(std::memory_order_relaxed) != 0 ? 0 : state_->count;
}

bool Barrier::broken() const noexcept { return state_->broken.load(std::memory_order_relaxed) != 0; }

}  // namespace mproc
