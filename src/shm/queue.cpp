// The shared-memory FIFO behind mproc::Queue, JoinableQueue and SimpleQueue.
//
// Layout: one sparse shared mapping (sys/arena) per queue. Its first 64 KiB hold the control
// block (Shared, below); the rest is carved into segments, each a power of two of bytes
// (64 KiB and up) with a header followed by entries. The FIFO is a chain of segments from
// `head` to `tail`: producers append entries to the tail segment, chaining a new one when the
// tail is full, consumers read from the head and free a drained segment onto a free list
// (one per size) for reuse. So an unbounded queue grows as far as it must, an item of any size
// gets a segment that fits it, and under steady flow the same few segments cycle — pages that
// are already mapped, no page faults, no syscalls.
//
// Entry: u64 length, then `length` bytes (a frame of mproc/frame.hpp), padded to 8 bytes.
//
// Every change happens under one robust mutex (sys/robust_mutex). Crash safety rests on one
// rule: each operation becomes visible through a single *commit store* (a segment's `write`
// for a put, its `read` for a get, `next`/`tail`/`head` for the chain, a free-list head for
// the allocator), made with release ordering after everything it publishes. A process killed
// before its commit store changed nothing anyone can see (a half-written entry lies beyond
// `write`, invisible); one killed after it left the structure valid. The counts and the
// wake-up around a commit are described beforehand in a journal of absolute values, which the
// next owner (told by EOWNERDEAD) replays — completing a committed operation, or taking back
// the count of a put that did not commit: replaying is idempotent. The worst a crash can do is
// leak one segment.
//
// A process killed after its commit but before its wake-up, or with its count unmade and its
// mutex not yet taken by anyone, would leave sleepers waiting for news that never comes. So
// nobody sleeps for long: blocked calls sleep in slices (kSlice), and after each they look at
// their condition again and repair an end whose owner died (see repair_abandoned_ends).
#include "mproc/queue.hpp"
#include "shm/queue_checkpoints.hpp"

#include <bit>
#include <cerrno>
#include <climits>
#include <exception>
#include <new>
#include <optional>
#include <pthread.h>
#include <unistd.h>

#include "sys/arena.hpp"
#include "sys/futex.hpp"
#include "sys/spawn.hpp"
#include "sys/robust_mutex.hpp"
#include "sys/shm.hpp"

namespace mproc::detail {

namespace {

// Address space reserved per queue: the most an unbounded queue can hold at once. Only pages
// actually used cost memory (see sys/arena).
constexpr std::size_t kArenaSize = std::size_t{64} << 30;
constexpr std::size_t kControlSize = std::size_t{64} << 10;  // the control block's share
constexpr unsigned kMinSegmentShift = 16;                      // segments of 64 KiB and up
constexpr unsigned kClasses = 37 - kMinSegmentShift;           // ... up to the arena's size
constexpr std::size_t kSegmentHeader = 128;
constexpr std::size_t kEntryHeader = sizeof(std::uint64_t);
constexpr std::size_t kPage = 4096;
// Pages are committed this many bytes at a time as a fresh segment fills up.
constexpr std::size_t kCommitChunk = std::size_t{256} << 10;
// Entries up to this size share a segment with at least 3 others (fewer segment switches);
// larger ones get a segment of their own size.
constexpr std::size_t kSharedEntryMax = std::size_t{4} << 20;
// Drained segments keep their pages (ready for reuse, no page faults) up to this total;
// beyond it their pages go back to the kernel.
constexpr std::size_t kRetainBytes = std::size_t{64} << 20;
// The longest a blocked call sleeps before it looks again (see the top). Long enough to cost
// nothing (a few µs of CPU per slice), short enough that a process killed before its wake-up
// delays the others by a fraction of a second only.
constexpr std::chrono::nanoseconds kSlice = std::chrono::milliseconds(100);

constexpr std::uint64_t align8(std::uint64_t n) { return (n + 7) & ~std::uint64_t{7}; }
constexpr std::uint64_t align_up(std::uint64_t n, std::uint64_t to) { return (n + to - 1) / to * to; }

// The header at the start of every segment. Offsets are from the segment's start. `read`
// belongs to consumers, the rest to producers (and the allocator while the segment is free):
// separate cache lines, so a put and a get in flight at once do not pull one line back and forth.
struct Segment {
  std::uint64_t next;       // the next segment of the FIFO, or of the free list; 0: none
  std::uint64_t size;       // bytes, header included; a power of two
  std::uint64_t write;      // where the next entry goes; [read, write) are the entries
  std::uint64_t committed;  // [0, committed) have their pages committed
  alignas(64) std::uint64_t read;  // the oldest unread entry
};
static_assert(sizeof(Segment) <= kSegmentHeader);

enum class Op : std::uint32_t { none = 0, put = 1, get = 2 };

// What the put or get in progress will have done once its commit store is made (see the top).
struct Journal {
  std::uint64_t segment;   // the segment whose write (put) or read (get) is the commit
  std::uint64_t position;  // that field's value before the commit
  std::uint64_t before;    // total_put (put) or total_got (get) before the operation
  Op op;                   // written last; none between operations
};

// One end of the FIFO: producers hold `mutex` to append at `tail`, consumers to take from
// `head`. Two locks, as in Michael & Scott's two-lock queue: a producer and a consumer never
// wait for each other.
struct End {
  pthread_mutex_t mutex;
  std::uint64_t segment;  // tail (producers) or head (consumers); never 0
  Journal journal;
};

// A commit store: everything written before it is visible to whoever sees it, and the
// compiler may not sink earlier stores past it (which a process killed right after would
// otherwise leave unmade).
void publish(std::uint64_t& field, std::uint64_t value) noexcept {
  std::atomic_ref<std::uint64_t>(field).store(value, std::memory_order_release);
}
std::uint64_t observe(std::uint64_t& field) noexcept {
  return std::atomic_ref<std::uint64_t>(field).load(std::memory_order_acquire);
}

// Spins while `word` still holds `seen`, briefly: a peer that is running usually changes it
// within microseconds, far cheaper than sleeping on the futex and being woken (a syscall for
// the waker, a context switch — on this VM a vCPU wake-up of 20 µs — for the sleeper).
// Bounded, so a wait of seconds costs a sleeping process, not a spinning one.
void spin_while_unchanged(const std::atomic<std::uint32_t>& word, std::uint32_t seen) noexcept {
  for (int i = 0; i < 4000; ++i) {
    if (word.load(std::memory_order_relaxed) != seen) return;
    sys::cpu_relax();
  }
}

[[noreturn]] void throw_os(int negative_errno, const char* what) { throw OSError(-negative_errno, what); }

}  // namespace

// The control block, at offset 0 of the mapping. Each group has cache lines of its own.
// Counters are monotonic: items in the queue = total_put - total_got, unfinished tasks =
// total_put - total_done. Each futex word comes with the count of processes asleep on it, so
// a put or get makes a wake-up syscall only when someone sleeps.
struct QueueCore::Shared {
  alignas(64) End producers;
  alignas(64) End consumers;
  alignas(64) pthread_mutex_t allocator;  // guards the four fields below
  std::uint64_t bump;                     // the arena's first never-used byte
  std::uint64_t retained;                 // bytes of free segments that keep their pages
  std::uint64_t free_list[kClasses];

  // The `*_asleep` words are Sleepers words (see below), not plain counts.
  alignas(64) std::atomic<std::uint64_t> total_put;
  std::atomic<std::uint32_t> items_seq;  // bumped by every put
  std::atomic<std::uint64_t> getters_asleep;
  alignas(64) std::atomic<std::uint64_t> total_got;
  std::atomic<std::uint32_t> space_seq;  // bumped by every get of a bounded queue
  std::atomic<std::uint64_t> putters_asleep;
  alignas(64) std::atomic<std::uint64_t> total_done;
  std::atomic<std::uint32_t> tasks_seq;  // bumped when the last unfinished task is done
  std::atomic<std::uint64_t> joiners_asleep;
};

namespace {

using Shared = QueueCore::Shared;
static_assert(sizeof(Shared) <= kControlSize);
static_assert(std::is_standard_layout_v<Shared>, "the control block is read by other processes");
static_assert(std::atomic<std::uint64_t>::is_always_lock_free && std::atomic<std::uint32_t>::is_always_lock_free,
              "the control block's counters and futex words must work across processes");
// What a spawned child checks before it maps a queue (SharedRegion::attach): the control
// block's layout and the arena's geometry. Bump the version on any change to the segment or
// entry format that these sizes do not show.
constexpr std::uint32_t kQueueLayoutVersion = 1;
constexpr std::uint64_t kQueueLayout =
    layout_word(type_tag<Shared>(), kQueueLayoutVersion, sizeof(Shared) ^ (kControlSize << 20) ^ (kSegmentHeader << 40));
static_assert(std::is_trivially_destructible_v<Shared>, "the control block is never destroyed: other processes use it");

void set_op(Journal& journal, Op op) noexcept {
  std::atomic_ref<Op>(journal.op).store(op, std::memory_order_release);
}

std::atomic<QueueCheckpointHook> checkpoint_hook{nullptr};

// Relaxed: the hook is installed by the thread that then runs the queue operations.
void checkpoint(QueueCheckpoint point) noexcept {
  if (const QueueCheckpointHook hook = checkpoint_hook.load(std::memory_order_relaxed)) [[unlikely]]
    hook(point);
}

// Whether a Lock may sleep until its deadline for a busy mutex, or only spin briefly.
enum class Wait { yes, no };

// Locks `mutex`, spinning a little first: it is held for the copy of one entry, far less than
// sleeping on it costs (glibc's robust mutexes sleep at the first contention). Returns what
// robust_mutex_lock returns, or -EBUSY when `wait` is no and the spin did not get it.
int acquire(pthread_mutex_t& mutex, const QueueCore::Deadline& deadline, Wait wait) noexcept {
  for (int i = 0; i < 200; ++i) {
    const int rc = sys::robust_mutex_try_lock(&mutex);
    if (rc != -EBUSY) return rc;
    sys::cpu_relax();
  }
  if (wait == Wait::no) return -EBUSY;
  return sys::robust_mutex_lock(&mutex, deadline);
}

// Holds a mutex for a scope. owner_died() tells the caller to repair what the mutex guards.
class Lock {
 public:
  // Locks, or returns with owns() false when the deadline passed first (or, with Wait::no,
  // when the mutex stayed busy through a short spin). Throws OSError.
  Lock(pthread_mutex_t& mutex, const QueueCore::Deadline& deadline, Wait wait = Wait::yes) : mutex_(mutex) {
    const int rc = acquire(mutex, deadline, wait);
    if (rc == -ETIMEDOUT || rc == -EBUSY) return;
    if (rc == -EDEADLK) throw Error("Queue: used re-entrantly (from a value's serialize code)");
    if (rc < 0) throw_os(rc, "Queue: locking a shared mutex");
    owns_ = true;
    owner_died_ = rc == sys::kOwnerDied;
  }
  ~Lock() { unlock(); }
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

  bool owns() const noexcept { return owns_; }
  bool owner_died() const noexcept { return owner_died_; }
  void unlock() noexcept {
    if (owns_) (void)sys::robust_mutex_unlock(&mutex_);
    owns_ = false;
  }

 private:
  pthread_mutex_t& mutex_;
  bool owns_ = false;
  bool owner_died_ = false;
};

// The wake-up protocol (an event count). A sleeper counts itself in `asleep`, *then* reads
// the word, re-checks its condition under the mutex and sleeps while the word still holds
// what it read; it un-counts itself when it wakes (or when the re-check made sleeping
// unnecessary). A waker changes the word, then wakes everyone if `asleep` is not zero.
// Sequentially consistent on both sides (count then read; change then load the count): a
// waker that saw no sleeper changed the word before the sleeper read it, so the sleeper's
// futex wait returns at once. Wakers never un-count live sleepers: a waker zeroing the count
// would also erase a sleeper whose condition it did not satisfy (an item the consumer had
// already taken in its previous get, visible before the word moved on) — a lost wake-up.
// Everyone is woken, not one: a sleeper woken and then killed before it acted would
// otherwise swallow the wake-up its peers needed.
//
// A sleeper killed while counted must not stay counted, or every later put or get would pay a
// futex_wake syscall forever. So a count is tagged with a time slice (kSlice on the
// system-wide monotonic clock), and a sleeper sleeps no later than the end of the slice it
// read on the clock before counting itself, which is never after the end of the tag it is
// counted under. A count whose slice has ended is stale: every sleeper in it has passed its
// futex deadline, so it sleeps no longer (it will look at its condition before sleeping again,
// and count itself anew first). Stale counts may be dropped by anyone: the next sleeper
// replaces them; a waker whose wake-up found nobody in the kernel clears them. The word: the
// slice's number (mod 2^32) in the high half, the count in the low half; 0 whenever the count
// is 0, so a waker's fast path is still one load compared with zero.
namespace sleepers {

constexpr std::uint64_t kCountMask = 0xffff'ffff;

std::uint64_t current_slice() noexcept {
  return static_cast<std::uint64_t>(QueueCore::Clock::now().time_since_epoch() / kSlice);
}
std::uint32_t tag_of(std::uint64_t word) noexcept { return static_cast<std::uint32_t>(word >> 32); }
// Whether slice tag `a` comes before `b`, modulo 2^32 (13 years of 100 ms slices).
bool before(std::uint32_t a, std::uint32_t b) noexcept { return static_cast<std::int32_t>(a - b) < 0; }

// Where a sleeper stands: it sleeps no later than the end of `slice` (its own clock reading),
// and is counted under `tag` — its slice, or a later one if others counted there since it read
// the clock (the count then outlives its sleep a little: harmless).
struct Counted {
  std::uint64_t slice;
  std::uint32_t tag;
};

// Counts the caller asleep.
Counted count(std::atomic<std::uint64_t>& asleep) noexcept {
  const std::uint64_t slice = current_slice();
  const auto tag = static_cast<std::uint32_t>(slice);
  std::uint64_t word = asleep.load(std::memory_order_seq_cst);
  for (;;) {
    Counted counted{slice, tag};
    std::uint64_t next = std::uint64_t{tag} << 32 | 1;  // none yet, or a stale count: those sleepers are awake
    if (word != 0 && !before(tag_of(word), tag)) {
      counted.tag = tag_of(word);
      next = word + 1;
    }
    if (asleep.compare_exchange_weak(word, next, std::memory_order_seq_cst)) return counted;
  }
}

// Un-counts a sleeper counted under `tag`, unless its count was dropped as stale meanwhile.
void uncount(std::atomic<std::uint64_t>& asleep, std::uint32_t tag) noexcept {
  std::uint64_t word = asleep.load(std::memory_order_seq_cst);
  while (word != 0 && tag_of(word) == tag) {
    const std::uint64_t next = (word & kCountMask) == 1 ? 0 : word - 1;
    if (asleep.compare_exchange_weak(word, next, std::memory_order_seq_cst)) return;
  }
}

// The count in `word` as a number of processes (tests).
std::uint32_t number(const std::atomic<std::uint64_t>& asleep) noexcept {
  return static_cast<std::uint32_t>(asleep.load(std::memory_order_seq_cst) & kCountMask);
}

}  // namespace sleepers

void wake_sleepers(std::atomic<std::uint32_t>& word, std::atomic<std::uint64_t>& asleep) noexcept {
  const std::uint64_t counted = asleep.load(std::memory_order_seq_cst);
  if (counted == 0) [[likely]] return;
  if (sys::futex_wake(word, INT_MAX) > 0) return;
  // Nobody was in the kernel: the count may be a dead sleeper's. Drop it if its slice ended
  // (read the clock after the count: every sleeper in it had passed its deadline by then).
  // A failed exchange means a live sleeper changed the count: leave it to the next waker.
  if (sleepers::before(sleepers::tag_of(counted), static_cast<std::uint32_t>(sleepers::current_slice()))) {
    std::uint64_t expected = counted;
    (void)asleep.compare_exchange_strong(expected, 0, std::memory_order_seq_cst);
  }
}

// What Waiter::wait tells its caller.
enum class Woke {
  again,        // look at the condition again (and call wait() again if still false)
  slice_ended,  // as `again`, after a whole slice asleep: also repair_abandoned_ends()
  timed_out,    // the deadline passed: one last look, then give up
};

// How a blocking call waits for `word` to move on: first a short spin, then it counts itself
// asleep and has the caller re-check, then it sleeps until woken or the end of its slice.
class Waiter {
 public:
  Waiter(std::atomic<std::uint32_t>& word, std::atomic<std::uint64_t>& asleep, const QueueCore::Deadline& deadline)
      : word_(word), asleep_(asleep), deadline_(deadline) {}
  // The re-check after counting found the condition true (or threw): un-count.
  ~Waiter() {
    if (stage_ == Stage::sleep) sleepers::uncount(asleep_, counted_.tag);
  }
  Waiter(const Waiter&) = delete;
  Waiter& operator=(const Waiter&) = delete;

  // Called with the caller's condition false, `seen` read before checking it.
  Woke wait(std::uint32_t seen) noexcept {
    switch (stage_) {
      case Stage::spin:
        spin_while_unchanged(word_, seen);
        stage_ = Stage::count;
        return Woke::again;
      case Stage::count:
        counted_ = sleepers::count(asleep_);
        stage_ = Stage::sleep;
        return Woke::again;  // re-check with the count in place before sleeping
      case Stage::sleep: {
        const auto slice_end = QueueCore::Clock::time_point(std::chrono::duration_cast<QueueCore::Clock::duration>(
            kSlice * static_cast<std::int64_t>(counted_.slice + 1)));
        const bool deadline_first = deadline_ && *deadline_ <= slice_end;
        const int rc = sys::futex_wait(word_, seen, deadline_first ? deadline_ : QueueCore::Deadline(slice_end));
        sleepers::uncount(asleep_, counted_.tag);
        if (rc != -ETIMEDOUT) {
          // Woken: spin again before the next sleep (the waker is likely busy producing).
          stage_ = Stage::spin;
          return Woke::again;
        }
        if (deadline_first) {
          stage_ = Stage::spin;
          return Woke::timed_out;
        }
        // Nothing happened for a while: no point spinning, count again straight away.
        stage_ = Stage::count;
        return Woke::slice_ended;
      }
    }
    return Woke::again;
  }

 private:
  enum class Stage { spin, count, sleep };
  std::atomic<std::uint32_t>& word_;
  std::atomic<std::uint64_t>& asleep_;
  const QueueCore::Deadline& deadline_;
  Stage stage_ = Stage::spin;
  sleepers::Counted counted_{};  // where this waiter is counted (Stage::sleep)
};

// The operations on the structure in shared memory. Each says which mutex it needs.
class Fifo {
 public:
  Fifo(Shared& shared, std::byte* base, std::size_t arena_size) noexcept
      : s_(shared), base_(base), arena_size_(arena_size) {}

  Segment& segment(std::uint64_t offset) noexcept { return *reinterpret_cast<Segment*>(base_ + offset); }
  std::byte* at(std::uint64_t segment_offset, std::uint64_t position) noexcept {
    return base_ + segment_offset + position;
  }

  // A fresh segment holding at least `need` bytes of entries. Takes the allocator mutex.
  // Throws OSError(ENOMEM) having changed nothing (or, at worst, leaked nothing).
  std::uint64_t allocate(std::uint64_t need) {
    const std::uint64_t wanted = kSegmentHeader + (need <= kSharedEntryMax ? 4 * need : need);
    const std::uint64_t size = std::max(std::bit_ceil(wanted), std::uint64_t{1} << kMinSegmentShift);
    const auto cls = static_cast<unsigned>(std::countr_zero(size)) - kMinSegmentShift;
    if (cls >= kClasses) throw OSError(ENOMEM, "Queue.put: item too large");
    // A dead allocator owner needs no repair: each step below is one commit store, so its
    // death can only have leaked a segment.
    Lock lock(s_.allocator, std::nullopt);
    std::uint64_t offset = s_.free_list[cls];
    if (offset != 0) {
      Segment& seg = segment(offset);
      publish(s_.free_list[cls], seg.next);  // commit: from here the segment is ours
      if (seg.committed > kPage) s_.retained -= seg.size;
    } else {
      offset = s_.bump;
      if (offset + size > arena_size_) throw OSError(ENOMEM, "Queue.put: the queue's storage is exhausted");
      const std::uint64_t first = std::min<std::uint64_t>(size, kCommitChunk);
      if (int rc = commit_or_drop_retained(base_ + offset, first, true); rc < 0)
        throw_os(rc, "Queue.put: committing shared memory");
      publish(s_.bump, offset + size);  // commit
      segment(offset).committed = first;
    }
    lock.unlock();
    Segment& seg = segment(offset);
    seg.next = 0;
    seg.size = size;
    seg.read = kSegmentHeader;
    seg.write = kSegmentHeader;
    return offset;
  }

  // Commits pages; when memory is short, first gives back the pages free segments keep for
  // reuse (a cache: under a memory cgroup's limit they would otherwise block every later
  // put of a queue that was once full) and tries again. `allocator_held`: the caller holds
  // the allocator mutex.
  int commit_or_drop_retained(std::byte* address, std::uint64_t size, bool allocator_held) {
    int rc = sys::commit_shared(address, size);
    if (rc != -ENOMEM) return rc;
    std::optional<Lock> lock;
    if (!allocator_held) lock.emplace(s_.allocator, std::nullopt);
    if (s_.retained == 0) return rc;
    for (std::uint64_t head : s_.free_list) {
      for (std::uint64_t offset = head; offset != 0; offset = segment(offset).next) {
        Segment& seg = segment(offset);
        if (seg.committed <= kPage) continue;
        // As in release(): the header's page keeps the link. A death between these two
        // stores leaves `committed` too high, which only means pages faulted in on use.
        (void)sys::release_shared(base_ + offset + kPage, seg.size - kPage);
        seg.committed = kPage;
      }
    }
    s_.retained = 0;
    lock.reset();
    return sys::commit_shared(address, size);
  }

  // Puts a drained segment (already unlinked from the FIFO) on its free list.
  void release(std::uint64_t offset) {
    Segment& seg = segment(offset);
    Lock lock(s_.allocator, std::nullopt);
    if (seg.committed > kPage) {
      if (s_.retained + seg.size > kRetainBytes) {
        // Keep the header's page: it holds the free-list link. Failure only costs memory.
        (void)sys::release_shared(base_ + offset + kPage, seg.size - kPage);
        seg.committed = kPage;
      } else {
        s_.retained += seg.size;
      }
    }
    const auto cls = static_cast<unsigned>(std::countr_zero(seg.size)) - kMinSegmentShift;
    seg.next = s_.free_list[cls];
    publish(s_.free_list[cls], offset);
  }

  // Producers' mutex held. Appends one entry of `size` bytes. Throws OSError(ENOMEM) before
  // anything is visible.
  void append(std::uint64_t size, QueueCore::Fill fill, const void* context) {
    End& end = s_.producers;
    const std::uint64_t need = kEntryHeader + align8(size);
    if (segment(end.segment).write + need > segment(end.segment).size) {
      const std::uint64_t fresh = allocate(need);
      // Two commits; a process killed between them leaves tail one short of the chain's end,
      // which repair_producers() walks to. Consumers follow `next`, so they see it at once
      // (but leave the old tail in place meanwhile: see front()).
      publish(segment(end.segment).next, fresh);
      checkpoint(QueueCheckpoint::segment_linked);
      publish(end.segment, fresh);
    }
    const std::uint64_t tail = end.segment;
    Segment& seg = segment(tail);
    const std::uint64_t stop = seg.write + need;
    if (stop > seg.committed) {
      const std::uint64_t upto = std::min(seg.size, align_up(stop, kCommitChunk));
      if (int rc = commit_or_drop_retained(at(tail, seg.committed), upto - seg.committed, false); rc < 0)
        throw_os(rc, "Queue.put: committing shared memory");
      seg.committed = upto;
    }
    std::byte* entry = at(tail, seg.write);
    std::memcpy(entry, &size, sizeof size);
    fill(context, entry + kEntryHeader);
    const std::uint64_t before = s_.total_put.load(std::memory_order_relaxed);
    begin_op(end.journal, Op::put, tail, seg.write, before);
    // Counted *before* the commit, so that a get is never counted before the put it took:
    // a consumer sees the entry only through the release below, which orders this store
    // before it, and counts its get after that — total_got never passes total_put, and
    // task_done() never finds more tasks done than items put. (Relaxed: the release orders it.)
    s_.total_put.store(before + 1, std::memory_order_relaxed);
    publish(seg.write, stop);  // commit: the item is in the queue
    checkpoint(QueueCheckpoint::put_committed);
    finish_put();
  }

  // Consumers' mutex held. The oldest entry's bytes, or an empty span when there is none.
  // Frees drained segments on the way. Throws SerializationError on a corrupt length.
  std::span<const std::byte> front() {
    End& end = s_.consumers;
    for (;;) {
      Segment& seg = segment(end.segment);
      // `next` before `write`: a producer sets next only after its last write to this segment,
      // so a segment seen with a successor and no unread entry is drained for good.
      const std::uint64_t next = observe(seg.next);
      const std::uint64_t write = observe(seg.write);
      if (seg.read < write) {
        std::uint64_t length;
        std::memcpy(&length, at(end.segment, seg.read), sizeof length);
        if (write - seg.read < kEntryHeader || length > write - seg.read - kEntryHeader) {
          // Only a stray write into the shared memory gets here: drop the segment's entries
          // rather than read out of bounds (they are lost; the counts stay as they were).
          publish(seg.read, write);
          throw SerializationError("Queue.get: corrupted entry length in shared memory");
        }
        return {at(end.segment, seg.read + kEntryHeader), static_cast<std::size_t>(length)};
      }
      if (next == 0) return {};
      // The producers' tail still here: a producer has linked `next` but not yet moved its
      // tail (or died in between, and the next producer will move it by following this very
      // link). Releasing the segment now would overwrite that link with a free-list one, and
      // the producers' end would walk into the free list. So leave it: nothing can be read
      // past it yet, as a producer commits entries into `next` only after moving the tail.
      // (A consumer that reads seen = items_seq after the wake-up for such an entry sees the
      // moved tail too: the seq_cst bump that follows the move synchronizes with that read.)
      if (observe(s_.producers.segment) == end.segment) return {};
      const std::uint64_t drained = end.segment;
      publish(end.segment, next);  // commit; a crash before release() leaks the segment only
      release(drained);
    }
  }

  // Consumers' mutex held. Removes the entry front() returned.
  void pop(std::span<const std::byte> entry) noexcept {
    End& end = s_.consumers;
    Segment& seg = segment(end.segment);
    begin_op(end.journal, Op::get, end.segment, seg.read, s_.total_got.load(std::memory_order_relaxed));
    publish(seg.read, seg.read + kEntryHeader + align8(entry.size()));  // commit: consumed
    checkpoint(QueueCheckpoint::get_committed);
    finish_get();
  }

  // Producers' mutex held, its previous owner dead: completes what it committed, takes back
  // the count of a put that did not commit.
  void repair_producers() noexcept {
    End& end = s_.producers;
    // Sound because front() never releases the segment the tail is on: its `next` is still
    // the FIFO's link, not a free-list one.
    while (observe(segment(end.segment).next) != 0) publish(end.segment, segment(end.segment).next);
    const Journal& j = end.journal;
    if (j.op == Op::put) {
      const bool committed = observe(segment(j.segment).write) != j.position;
      s_.total_put.store(j.before + (committed ? 1 : 0), std::memory_order_seq_cst);
      if (committed) s_.items_seq.fetch_add(1, std::memory_order_seq_cst);
    }
    set_op(end.journal, Op::none);
  }

  // Consumers' mutex held, its previous owner dead: completes what it committed.
  void repair_consumers() noexcept {
    End& end = s_.consumers;
    const Journal& j = end.journal;
    if (j.op == Op::get && observe(segment(j.segment).read) != j.position) finish_get();
    set_op(end.journal, Op::none);
  }

 private:
  static void begin_op(Journal& journal, Op op, std::uint64_t seg, std::uint64_t position,
                       std::uint64_t before) noexcept {
    journal.segment = seg;
    journal.position = position;
    journal.before = before;
    set_op(journal, op);
  }
  // The count was made before the commit (see append()). A repeated bump of the word only
  // costs a spurious wake-up.
  void finish_put() noexcept {
    s_.items_seq.fetch_add(1, std::memory_order_seq_cst);
    set_op(s_.producers.journal, Op::none);
  }
  // Idempotent (an absolute value from the journal), so repair may run it again.
  void finish_get() noexcept {
    s_.total_got.store(s_.consumers.journal.before + 1, std::memory_order_seq_cst);
    s_.space_seq.fetch_add(1, std::memory_order_seq_cst);
    set_op(s_.consumers.journal, Op::none);
  }

  Shared& s_;
  std::byte* base_;
  std::size_t arena_size_;
};

// With an end's mutex taken from a dead owner: repairs the end. The wake-ups cost nothing
// (this is rare) and make sure nobody waits on one the dead process owed: getters for its
// item, putters for the room it made, joiners for a count it took back.
void repair_end(Shared& shared, Fifo& fifo, bool producers) noexcept {
  if (producers) {
    fifo.repair_producers();
    (void)sys::futex_wake(shared.items_seq, INT_MAX);
    (void)sys::futex_wake(shared.tasks_seq, INT_MAX);
  } else {
    fifo.repair_consumers();
    (void)sys::futex_wake(shared.space_seq, INT_MAX);
  }
}

// Locks the producers' or consumers' end and repairs it after a dead owner.
class EndLock : public Lock {
 public:
  EndLock(Shared& shared, Fifo& fifo, bool producers, const QueueCore::Deadline& deadline, Wait wait = Wait::yes)
      : Lock(producers ? shared.producers.mutex : shared.consumers.mutex, deadline, wait) {
    if (owner_died()) repair_end(shared, fifo, producers);
  }
};

// Called by a waiter after a whole slice asleep: an owner killed between its commit and its
// count leaves the count unmade until someone takes its mutex — a blocked put() would wait
// for room that a dead consumer made, a join() for a put a dead producer never committed —
// and nobody may ever take it. So take each free mutex for a moment. A busy one is owned by a
// live process (robust mutexes report a dead owner to trylock too), which will finish.
void repair_abandoned_ends(Shared& shared, Fifo& fifo) noexcept {
  for (const bool producers : {true, false}) {
    pthread_mutex_t& mutex = producers ? shared.producers.mutex : shared.consumers.mutex;
    const int rc = sys::robust_mutex_try_lock(&mutex);
    if (rc < 0) continue;
    if (rc == sys::kOwnerDied) repair_end(shared, fifo, producers);
    (void)sys::robust_mutex_unlock(&mutex);
  }
}

}  // namespace

QueueCore::QueueCore(long maxsize, bool joinable) : maxsize_(maxsize), joinable_(joinable) {
  // A memfd sized to the arena, mapped MAP_NORESERVE: address space only, as an anonymous
  // sparse mapping, but one a spawned child can be given (see QueueBase::save).
  region_ = SharedRegion::create(kArenaSize, kQueueLayout, SharedRegion::Backing::sparse, "mproc-queue");
  if (int rc = sys::commit_shared(region_->data(), kControlSize); rc < 0)
    throw_os(rc, "Queue: committing shared memory");
  shared_ = new (region_->data()) Shared{};
  for (pthread_mutex_t* m : {&shared_->producers.mutex, &shared_->consumers.mutex, &shared_->allocator})
    if (int rc = sys::robust_mutex_init(m); rc < 0) throw_os(rc, "Queue: pthread_mutex_init");
  base_ = region_->data();
  shared_->bump = kControlSize;
  shared_->producers.segment = shared_->consumers.segment = Fifo(*shared_, base_, kArenaSize).allocate(0);
}

QueueCore::QueueCore(RegionRef& ref, long maxsize, bool joinable)
    : maxsize_(maxsize),
      joinable_(joinable),
      region_(SharedRegion::attach(ref, kQueueLayout, kArenaSize, SharedRegion::Backing::sparse, "Queue")) {
  // Already initialised by its creator: only this process's view is new.
  shared_ = std::launder(reinterpret_cast<Shared*>(region_->data()));
  base_ = region_->data();
}

QueueCore::~QueueCore() = default;

void set_queue_checkpoint_hook(QueueCheckpointHook hook) noexcept {
  checkpoint_hook.store(hook, std::memory_order_relaxed);
}

void QueueCore::check_open(const char* operation) const {
  if (closed()) throw Error(std::string("Queue.") + operation + ": the queue is closed in this process");
}

void QueueCore::close() noexcept { closed_by_.store(static_cast<int>(sys::current_pid()), std::memory_order_relaxed); }

bool QueueCore::closed() const noexcept {
  const int by = closed_by_.load(std::memory_order_relaxed);
  return by != 0 && by == static_cast<int>(sys::current_pid());
}

void QueueCore::put(std::size_t size, Fill fill, const void* context, bool block, const Deadline& deadline) {
  check_open("put");
  Shared& s = *shared_;
  Fifo fifo(s, base_, kArenaSize);
  Waiter waiter(s.space_seq, s.putters_asleep, deadline);
  // Without `block`, a busy producers' end is Full, as Python's put(block=False) fails on a
  // busy semaphore — but an unbounded queue is never Full, so it waits for the copy in
  // progress (bounded by the other producer's copy, or by its death).
  const Wait wait_for_end = block || maxsize_ <= 0 ? Wait::yes : Wait::no;
  for (;;) {
    EndLock lock(s, fifo, true, deadline, wait_for_end);
    if (!lock.owns()) throw Full();
    // Read before the room check: a get after the check bumps it, so the futex wait below
    // cannot miss that get (it returns at once when the word moved on).
    const std::uint32_t seen = s.space_seq.load(std::memory_order_seq_cst);
    // total_got only grows while we hold the producers' mutex: room seen stays room.
    if (maxsize_ <= 0 || s.total_put.load(std::memory_order_relaxed) - s.total_got.load(std::memory_order_seq_cst) <
                             static_cast<std::uint64_t>(maxsize_)) {
      fifo.append(size, fill, context);
      lock.unlock();
      checkpoint(QueueCheckpoint::put_unlocked);
      wake_sleepers(s.items_seq, s.getters_asleep);
      return;
    }
    if (!block) throw Full();
    lock.unlock();
    switch (waiter.wait(seen)) {
      case Woke::again: break;
      case Woke::slice_ended: repair_abandoned_ends(s, fifo); break;
      case Woke::timed_out: block = false; break;  // one last look, then Full
    }
  }
}

void QueueCore::get(Consume consume, void* context, bool block, const Deadline& deadline) {
  check_open("get");
  Shared& s = *shared_;
  Fifo fifo(s, base_, kArenaSize);
  Waiter waiter(s.items_seq, s.getters_asleep, deadline);
  // Without `block`, a busy consumers' end is Empty, as Python's get(block=False): the owner
  // may be decoding an item of hundreds of MiB.
  const Wait wait_for_end = block ? Wait::yes : Wait::no;
  for (;;) {
    EndLock lock(s, fifo, false, deadline, wait_for_end);
    if (!lock.owns()) throw Empty();
    const std::uint32_t seen = s.items_seq.load(std::memory_order_seq_cst);  // as in put()
    if (const std::span<const std::byte> entry = fifo.front(); entry.data() != nullptr) {
      // Decoded straight out of shared memory, under the consumers' mutex (the space is
      // reused once it is released). A decoding error consumes the entry all the same: it
      // would fail every time.
      std::exception_ptr error;
      try {
        consume(context, entry);
      } catch (...) {
        error = std::current_exception();
      }
      fifo.pop(entry);
      lock.unlock();
      checkpoint(QueueCheckpoint::get_unlocked);
      if (maxsize_ > 0) wake_sleepers(s.space_seq, s.putters_asleep);
      if (error) std::rethrow_exception(error);
      return;
    }
    if (!block) throw Empty();
    lock.unlock();
    switch (waiter.wait(seen)) {
      case Woke::again: break;
      case Woke::slice_ended: repair_abandoned_ends(s, fifo); break;
      case Woke::timed_out: block = false; break;
    }
  }
}

std::size_t QueueCore::qsize() {
  // A snapshot: total_got unchanged across the read of total_put means both held these values
  // at that instant (both only grow). Then the difference is never negative — a get is
  // counted only after the put it took (see Fifo::append) — and never above maxsize — a put is
  // counted only after a room check that read total_got no later than this. Reading each
  // once would not do: a reader preempted between the two reads would see thousands of
  // items put since it read total_got. While the queue flows fast, a few tries may miss;
  // then the difference of the last try is clamped into those bounds.
  Shared& s = *shared_;
  std::uint64_t got = s.total_got.load(std::memory_order_seq_cst);
  std::uint64_t put = 0;
  for (int attempt = 0; attempt < 8; ++attempt) {
    put = s.total_put.load(std::memory_order_seq_cst);
    const std::uint64_t again = s.total_got.load(std::memory_order_seq_cst);
    if (again == got) break;
    got = again;
  }
  std::uint64_t items = put > got ? put - got : 0;
  if (maxsize_ > 0) items = std::min(items, static_cast<std::uint64_t>(maxsize_));
  return static_cast<std::size_t>(items);
}

QueueCore::Sleepers QueueCore::sleepers() const noexcept {
  return {sleepers::number(shared_->getters_asleep), sleepers::number(shared_->putters_asleep),
          sleepers::number(shared_->joiners_asleep)};
}

void QueueCore::task_done() {
  Shared& s = *shared_;
  std::uint64_t done = s.total_done.load(std::memory_order_seq_cst);
  do {
    if (done >= s.total_put.load(std::memory_order_seq_cst))
      throw Error("JoinableQueue.task_done: called more times than items were put");
  } while (!s.total_done.compare_exchange_weak(done, done + 1, std::memory_order_seq_cst));
  // A process killed from here on leaves join() unwoken: it looks again after each slice.
  checkpoint(QueueCheckpoint::task_done_counted);
  if (done + 1 < s.total_put.load(std::memory_order_seq_cst)) return;
  s.tasks_seq.fetch_add(1, std::memory_order_seq_cst);
  wake_sleepers(s.tasks_seq, s.joiners_asleep);
}

bool QueueCore::join(const Deadline& deadline) {
  Shared& s = *shared_;
  Fifo fifo(s, base_, kArenaSize);
  Waiter waiter(s.tasks_seq, s.joiners_asleep, deadline);
  for (;;) {
    const std::uint32_t seen = s.tasks_seq.load(std::memory_order_seq_cst);
    if (s.total_done.load(std::memory_order_seq_cst) >= s.total_put.load(std::memory_order_seq_cst)) return true;
    switch (waiter.wait(seen)) {
      case Woke::again: break;
      // A producer killed between counting its put and committing it holds total_put one
      // too high until its end is repaired.
      case Woke::slice_ended: repair_abandoned_ends(s, fifo); break;
      case Woke::timed_out:
        return s.total_done.load(std::memory_order_seq_cst) >= s.total_put.load(std::memory_order_seq_cst);
    }
  }
}

std::vector<std::byte>& encode_scratch() noexcept {
  thread_local std::vector<std::byte> scratch;
  return scratch;
}

void trim_encode_scratch(std::vector<std::byte>& scratch) noexcept {
  // Keep a warm buffer for the common sizes, but not the memory of one huge item forever.
  if (scratch.capacity() > (std::size_t{64} << 20)) std::vector<std::byte>().swap(scratch);
}

}  // namespace mproc::detail
