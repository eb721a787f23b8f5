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
// `write`, invisible); one killed after it left the structure valid. What follows a commit —
// the item count, the unfinished-task count, the wake-up — is described beforehand in a
// journal of absolute values, which the next owner (told by EOWNERDEAD) replays: replaying is
// idempotent. The worst a crash can do is leak one segment.
#include "mproc/queue.hpp"

#include <bit>
#include <cerrno>
#include <climits>
#include <exception>
#include <new>
#include <pthread.h>
#include <unistd.h>

#include "sys/arena.hpp"
#include "sys/futex.hpp"
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
constexpr std::size_t kSegmentHeader = 64;
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

constexpr std::uint64_t align8(std::uint64_t n) { return (n + 7) & ~std::uint64_t{7}; }
constexpr std::uint64_t align_up(std::uint64_t n, std::uint64_t to) { return (n + to - 1) / to * to; }

// The header at the start of every segment. Offsets are from the segment's start.
struct Segment {
  std::uint64_t next;       // the next segment of the FIFO, or of the free list; 0: none
  std::uint64_t size;       // bytes, header included; a power of two
  std::uint64_t read;       // the oldest unread entry; [read, write) are the entries
  std::uint64_t write;      // where the next entry goes
  std::uint64_t committed;  // [0, committed) have their pages committed
};
static_assert(sizeof(Segment) <= kSegmentHeader);

enum class Op : std::uint32_t { none = 0, put = 1, get = 2 };

// What the operation in progress will have done once its commit store is made (see the top).
struct Journal {
  std::uint64_t segment;      // the segment whose write (put) or read (get) is the commit
  std::uint64_t position;     // that field's value before the commit
  std::uint64_t count_after;  // the item count afterwards
  std::uint64_t unfinished_after;
  Op op;  // written last, after the fields above; none between operations
};

// A commit store: everything written before it is visible to whoever sees it, and the
// compiler may not sink earlier stores past it (which a process killed right after would
// otherwise leave unmade).
void publish(std::uint64_t& field, std::uint64_t value) noexcept {
  std::atomic_ref<std::uint64_t>(field).store(value, std::memory_order_release);
}

void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Spins while `word` still holds `seen`, briefly: a peer that is running usually changes it
// within a few microseconds, far cheaper than sleeping on the futex and being woken (a wake-up
// is a syscall for the waker and a context switch for the sleeper). Returns early on a change.
void spin_while_unchanged(const std::atomic<std::uint32_t>& word, std::uint32_t seen) noexcept {
  for (int i = 0; i < 2000; ++i) {
    if (word.load(std::memory_order_relaxed) != seen) return;
    cpu_relax();
  }
}

[[noreturn]] void throw_os(int negative_errno, const char* what) { throw OSError(-negative_errno, what); }

}  // namespace

// The control block, at offset 0 of the mapping. Fields without std::atomic are guarded by
// `mutex`; each futex word has a cache line of its own, with the count of processes asleep
// on it (so a put or get makes a wake-up syscall only when someone sleeps).
struct QueueCore::Shared {
  pthread_mutex_t mutex;
  std::uint64_t head;        // the oldest segment of the FIFO (never 0)
  std::uint64_t tail;        // the segment entries are appended to (never 0)
  std::uint64_t count;       // items in the queue
  std::uint64_t unfinished;  // JoinableQueue: items put and not yet task_done()
  std::uint64_t bump;        // the arena's first never-used byte
  std::uint64_t retained;    // bytes of drained segments that keep their pages
  std::uint64_t free_list[kClasses];
  Journal journal;

  alignas(64) std::atomic<std::uint32_t> items_seq;  // bumped by every put
  std::atomic<std::uint32_t> getters_asleep;
  alignas(64) std::atomic<std::uint32_t> space_seq;  // bumped by every get of a bounded queue
  std::atomic<std::uint32_t> putters_asleep;
  alignas(64) std::atomic<std::uint32_t> tasks_seq;  // bumped when unfinished drops to 0
  std::atomic<std::uint32_t> joiners_asleep;
};

namespace {

using Shared = QueueCore::Shared;
static_assert(sizeof(Shared) <= kControlSize);
static_assert(std::is_trivially_destructible_v<Shared>, "the control block is never destroyed: other processes use it");

// The operations on the structure in shared memory, all called with the mutex held.
class Fifo {
 public:
  Fifo(Shared& shared, std::byte* base, std::size_t arena_size) noexcept
      : s_(shared), base_(base), arena_size_(arena_size) {}

  Segment& segment(std::uint64_t offset) noexcept { return *reinterpret_cast<Segment*>(base_ + offset); }
  std::byte* at(std::uint64_t segment_offset, std::uint64_t position) noexcept {
    return base_ + segment_offset + position;
  }

  // A fresh segment holding at least `need` bytes of entries. Throws OSError(ENOMEM).
  std::uint64_t allocate(std::uint64_t need) {
    const std::uint64_t wanted = kSegmentHeader + (need <= kSharedEntryMax ? 4 * need : need);
    const std::uint64_t size = std::max(std::bit_ceil(wanted), std::uint64_t{1} << kMinSegmentShift);
    const unsigned cls = static_cast<unsigned>(std::countr_zero(size)) - kMinSegmentShift;
    if (cls >= kClasses) throw OSError(ENOMEM, "Queue.put: item too large");
    std::uint64_t offset = s_.free_list[cls];
    if (offset != 0) {
      Segment& seg = segment(offset);
      publish(s_.free_list[cls], seg.next);  // commit: from here the segment is ours
      if (seg.committed > kPage) s_.retained -= seg.size;
    } else {
      offset = s_.bump;
      if (offset + size > arena_size_) throw OSError(ENOMEM, "Queue.put: the queue's storage is exhausted");
      if (int rc = sys::commit_shared(base_ + offset, std::min<std::uint64_t>(size, kCommitChunk)); rc < 0)
        throw_os(rc, "Queue.put: committing shared memory");
      publish(s_.bump, offset + size);  // commit
      segment(offset).committed = std::min<std::uint64_t>(size, kCommitChunk);
    }
    Segment& seg = segment(offset);
    seg.next = 0;
    seg.size = size;
    seg.read = kSegmentHeader;
    seg.write = kSegmentHeader;
    return offset;
  }

  // Puts a drained segment (already unlinked from the FIFO) on its free list.
  void release(std::uint64_t offset) noexcept {
    Segment& seg = segment(offset);
    if (seg.committed > kPage) {
      if (s_.retained + seg.size > kRetainBytes) {
        // Keep the header's page: it holds the free-list link. Failure only costs memory.
        (void)sys::release_shared(base_ + offset + kPage, seg.size - kPage);
        seg.committed = kPage;
      } else {
        s_.retained += seg.size;
      }
    }
    const unsigned cls = static_cast<unsigned>(std::countr_zero(seg.size)) - kMinSegmentShift;
    seg.next = s_.free_list[cls];
    publish(s_.free_list[cls], offset);
  }

  // Appends one entry of `size` bytes. Throws OSError(ENOMEM) before changing anything.
  void append(std::uint64_t size, QueueCore::Fill fill, const void* context, bool joinable) {
    const std::uint64_t need = kEntryHeader + align8(size);
    std::uint64_t tail = s_.tail;
    if (segment(tail).write + need > segment(tail).size) {
      const std::uint64_t fresh = allocate(need);
      // Two commits; a process killed between them leaves tail one short of the chain's end,
      // which repair() walks to.
      publish(segment(tail).next, fresh);
      publish(s_.tail, fresh);
      tail = fresh;
    }
    Segment& seg = segment(tail);
    const std::uint64_t end = seg.write + need;
    if (end > seg.committed) {
      const std::uint64_t upto = std::min(seg.size, align_up(end, kCommitChunk));
      if (int rc = sys::commit_shared(at(tail, seg.committed), upto - seg.committed); rc < 0)
        throw_os(rc, "Queue.put: committing shared memory");
      seg.committed = upto;
    }
    std::byte* entry = at(tail, seg.write);
    std::memcpy(entry, &size, sizeof size);
    fill(context, entry + kEntryHeader);
    begin(Op::put, tail, seg.write, s_.count + 1, s_.unfinished + (joinable ? 1 : 0));
    publish(seg.write, end);  // commit: the item is in the queue
    finish_put();
  }

  // The oldest entry's bytes, or an empty span when the queue is empty. Frees drained
  // segments on the way. Throws SerializationError when the entry's length is corrupt.
  std::span<const std::byte> front() {
    for (;;) {
      Segment& seg = segment(s_.head);
      if (seg.read < seg.write) {
        std::uint64_t length;
        std::memcpy(&length, at(s_.head, seg.read), sizeof length);
        if (seg.write - seg.read < kEntryHeader || length > seg.write - seg.read - kEntryHeader) {
          // Only a stray write into the shared memory can get here; drop the segment's rest
          // rather than read out of bounds forever.
          begin(Op::get, s_.head, seg.read, s_.count == 0 ? 0 : s_.count - 1, s_.unfinished);
          publish(seg.read, seg.write);
          finish_get();
          throw SerializationError("Queue.get: corrupted entry length in shared memory");
        }
        return {at(s_.head, seg.read + kEntryHeader), static_cast<std::size_t>(length)};
      }
      if (seg.next == 0) return {};
      const std::uint64_t drained = s_.head;
      publish(s_.head, seg.next);  // commit; a crash before release() leaks the segment only
      release(drained);
    }
  }

  // Removes the entry front() returned.
  void pop(std::span<const std::byte> entry) noexcept {
    Segment& seg = segment(s_.head);
    begin(Op::get, s_.head, seg.read, s_.count - 1, s_.unfinished);
    publish(seg.read, seg.read + kEntryHeader + align8(entry.size()));  // commit: consumed
    finish_get();
  }

  // After EOWNERDEAD: completes what the dead owner committed (see the top of the file).
  void repair() noexcept {
    while (segment(s_.tail).next != 0) publish(s_.tail, segment(s_.tail).next);
    const Journal& j = s_.journal;
    if (j.op == Op::put && segment(j.segment).write != j.position) finish_put();
    if (j.op == Op::get && segment(j.segment).read != j.position) finish_get();
    set_op(Op::none);
  }

 private:
  void begin(Op op, std::uint64_t seg, std::uint64_t position, std::uint64_t count_after,
             std::uint64_t unfinished_after) noexcept {
    s_.journal.segment = seg;
    s_.journal.position = position;
    s_.journal.count_after = count_after;
    s_.journal.unfinished_after = unfinished_after;
    set_op(op);
  }
  void set_op(Op op) noexcept {
    std::atomic_ref<Op>(s_.journal.op).store(op, std::memory_order_release);
  }
  // Idempotent: absolute values from the journal.
  void finish_put() noexcept {
    s_.count = s_.journal.count_after;
    s_.unfinished = s_.journal.unfinished_after;
    s_.items_seq.fetch_add(1, std::memory_order_release);
    set_op(Op::none);
  }
  void finish_get() noexcept {
    s_.count = s_.journal.count_after;
    s_.space_seq.fetch_add(1, std::memory_order_release);
    set_op(Op::none);
  }

  Shared& s_;
  std::byte* base_;
  std::size_t arena_size_;
};

// Wakes every sleeper on `word` if any sleeps. All of them, not one: a sleeper woken and then
// killed before it acted would otherwise swallow the wake-up its peers needed.
void wake_sleepers(const std::atomic<std::uint32_t>& word, const std::atomic<std::uint32_t>& asleep) noexcept {
  if (asleep.load(std::memory_order_seq_cst) != 0) (void)sys::futex_wake(word, INT_MAX);
}

// Locks `mutex`, spinning a little first: the mutex is held for a copy of one entry, far less
// than sleeping on it costs (glibc's robust mutexes sleep at the first contention, which at
// millions of items per second would make every other put or get a pair of syscalls).
int acquire(pthread_mutex_t& mutex, const QueueCore::Deadline& deadline) noexcept {
  for (int i = 0; i < 200; ++i) {
    const int rc = sys::robust_mutex_try_lock(&mutex);
    if (rc != -EBUSY) return rc;
    cpu_relax();
  }
  return sys::robust_mutex_lock(&mutex, deadline);
}

// Holds the queue's mutex for a scope; replays a dead owner's journal on the way in.
class QueueLock {
 public:
  // Locks, or returns with owns() false when the deadline passed first. Throws OSError.
  QueueLock(Shared& shared, std::byte* base, std::size_t arena_size, const QueueCore::Deadline& deadline)
      : shared_(shared) {
    const int rc = acquire(shared.mutex, deadline);
    if (rc == -ETIMEDOUT) return;
    if (rc < 0) throw_os(rc, "Queue: locking the shared mutex");
    owns_ = true;
    if (rc == sys::kOwnerDied) {
      Fifo(shared, base, arena_size).repair();
      // The dead process may have been asleep and counted; waking everyone costs nothing
      // here and makes sure nobody waits on a wake-up the dead one would have made.
      (void)sys::futex_wake(shared.items_seq, INT_MAX);
      (void)sys::futex_wake(shared.space_seq, INT_MAX);
      (void)sys::futex_wake(shared.tasks_seq, INT_MAX);
    }
  }
  ~QueueLock() { unlock(); }
  QueueLock(const QueueLock&) = delete;
  QueueLock& operator=(const QueueLock&) = delete;

  bool owns() const noexcept { return owns_; }
  void unlock() noexcept {
    if (owns_) (void)sys::robust_mutex_unlock(&shared_.mutex);
    owns_ = false;
  }

 private:
  Shared& shared_;
  bool owns_ = false;
};

}  // namespace

QueueCore::QueueCore(long maxsize, bool joinable) : maxsize_(maxsize), joinable_(joinable) {
  sys::SharedMapping mapping;
  if (int rc = sys::map_sparse_shared(kArenaSize, mapping); rc < 0) throw_os(rc, "Queue: mmap");
  if (int rc = sys::commit_shared(mapping.get(), kControlSize); rc < 0) throw_os(rc, "Queue: committing shared memory");
  shared_ = new (mapping.get()) Shared{};
  if (int rc = sys::robust_mutex_init(&shared_->mutex); rc < 0) throw_os(rc, "Queue: pthread_mutex_init");
  base_ = static_cast<std::byte*>(mapping.get());
  Fifo fifo(*shared_, base_, kArenaSize);
  shared_->bump = kControlSize;
  shared_->head = shared_->tail = fifo.allocate(0);
  // Only this process's view goes with it; the queue lives on in every process mapping it.
  mapping_ = std::make_unique<sys::SharedMapping>(std::move(mapping));
}

QueueCore::~QueueCore() = default;

void QueueCore::check_open(const char* operation) const {
  if (closed()) throw Error(std::string("Queue.") + operation + ": the queue is closed in this process");
}

void QueueCore::close() noexcept { closed_by_.store(static_cast<int>(::getpid()), std::memory_order_relaxed); }

bool QueueCore::closed() const noexcept {
  // getpid() is a syscall: ask only when some process did close.
  const int by = closed_by_.load(std::memory_order_relaxed);
  return by != 0 && by == static_cast<int>(::getpid());
}

void QueueCore::put(std::size_t size, Fill fill, const void* context, bool block, const Deadline& deadline) {
  check_open("put");
  Shared& s = *shared_;
  bool spun = false;
  for (;;) {
    QueueLock lock(s, base_, kArenaSize, deadline);
    if (!lock.owns()) throw Full();
    if (maxsize_ <= 0 || s.count < static_cast<std::uint64_t>(maxsize_)) {
      Fifo(s, base_, kArenaSize).append(size, fill, context, joinable_);
      lock.unlock();
      wake_sleepers(s.items_seq, s.getters_asleep);
      return;
    }
    if (!block) throw Full();
    const std::uint32_t seen = s.space_seq.load(std::memory_order_acquire);
    if (!spun) {
      lock.unlock();
      spin_while_unchanged(s.space_seq, seen);
      spun = true;
      continue;
    }
    // Counted before the mutex goes, so a get that frees room after this sees the sleeper.
    s.putters_asleep.fetch_add(1, std::memory_order_seq_cst);
    lock.unlock();
    const int rc = sys::futex_wait(s.space_seq, seen, deadline);
    s.putters_asleep.fetch_sub(1, std::memory_order_relaxed);
    if (rc == -ETIMEDOUT) block = false;  // one last look, then Full
  }
}

void QueueCore::get(Consume consume, void* context, bool block, const Deadline& deadline) {
  check_open("get");
  Shared& s = *shared_;
  bool spun = false;
  for (;;) {
    QueueLock lock(s, base_, kArenaSize, deadline);
    if (!lock.owns()) throw Empty();
    Fifo fifo(s, base_, kArenaSize);
    if (const std::span<const std::byte> entry = fifo.front(); !entry.empty()) {
      // Decoded straight out of shared memory, under the mutex (the space is reused once it
      // goes). A decoding error consumes the entry all the same: it would fail every time.
      std::exception_ptr error;
      try {
        consume(context, entry);
      } catch (...) {
        error = std::current_exception();
      }
      fifo.pop(entry);
      lock.unlock();
      if (maxsize_ > 0) wake_sleepers(s.space_seq, s.putters_asleep);
      if (error) std::rethrow_exception(error);
      return;
    }
    if (!block) throw Empty();
    const std::uint32_t seen = s.items_seq.load(std::memory_order_acquire);
    if (!spun) {
      lock.unlock();
      spin_while_unchanged(s.items_seq, seen);
      spun = true;
      continue;
    }
    s.getters_asleep.fetch_add(1, std::memory_order_seq_cst);
    lock.unlock();
    const int rc = sys::futex_wait(s.items_seq, seen, deadline);
    s.getters_asleep.fetch_sub(1, std::memory_order_relaxed);
    if (rc == -ETIMEDOUT) block = false;
  }
}

std::size_t QueueCore::qsize() {
  QueueLock lock(*shared_, base_, kArenaSize, std::nullopt);
  return static_cast<std::size_t>(shared_->count);
}

void QueueCore::task_done() {
  Shared& s = *shared_;
  QueueLock lock(s, base_, kArenaSize, std::nullopt);
  if (s.unfinished == 0) throw Error("JoinableQueue.task_done: called more times than items were put");
  publish(s.unfinished, s.unfinished - 1);
  if (s.unfinished != 0) return;
  s.tasks_seq.fetch_add(1, std::memory_order_release);
  lock.unlock();
  wake_sleepers(s.tasks_seq, s.joiners_asleep);
}

bool QueueCore::join(const Deadline& deadline) {
  Shared& s = *shared_;
  for (;;) {
    QueueLock lock(s, base_, kArenaSize, deadline);
    if (!lock.owns()) return false;
    if (s.unfinished == 0) return true;
    const std::uint32_t seen = s.tasks_seq.load(std::memory_order_acquire);
    s.joiners_asleep.fetch_add(1, std::memory_order_seq_cst);
    lock.unlock();
    const int rc = sys::futex_wait(s.tasks_seq, seen, deadline);
    s.joiners_asleep.fetch_sub(1, std::memory_order_relaxed);
    if (rc == -ETIMEDOUT) {
      QueueLock last(s, base_, kArenaSize, std::nullopt);
      return s.unfinished == 0;
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
