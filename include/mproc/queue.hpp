// mproc/queue.hpp — multiprocessing.Queue, JoinableQueue and SimpleQueue.
//
//   mproc::Queue<std::string> q;                        // maxsize <= 0: unbounded, as Python
//   mproc::Process producer([&] { q.put("hello"); });   // children forked later share q
//   producer.start();
//   std::string s = q.get();                            // blocks; q.get(1s) throws Empty
//   producer.join();
//
// A queue is a handle (cheap to copy) to state in shared memory made by the constructor:
// every process forked afterwards — a Process capturing it, a Pool started after it was made
// — uses the same queue. Under spawn and forkserver it reaches a child as a Process argument
// or a pool's initargs (mproc::Initializer(init, queue)), by descriptor, as Python pickles
// it; it cannot be a pool task's argument (a compile error) nor be put in a Queue or sent
// through a Pipe (SerializationError). Each queue holds one descriptor (a memfd,
// close-on-exec) in each process that has it. Values cross as frames of mproc::dumps (mproc/codec.hpp: every
// Serializable type, trivially copyable ones as raw bytes), checksummed, of any size (a few
// bytes to hundreds of MiB).
//
// Promises beyond Python (each tested):
// - A put() that returned is in the queue: there is no feeder thread, the value is in shared
//   memory before put() returns, so the putting process may exit (even _exit) at once.
// - A process killed (SIGKILL) in the middle of put() or get() neither corrupts the queue nor
//   blocks the others: an item half put is not in the queue, an item half got is either still
//   there or gone, never damaged.
// - Many producers and consumers in any processes; items of one producer (thread) come out
//   in the order it put them; every item put is got exactly once.
//
// - A process killed anywhere in put(), get() or task_done() strands no one: a blocked put(),
//   get() or join() notices the change it was not woken for within a fraction of a second
//   (blocked calls sleep in slices of 100 ms and look again after each).
//
// close() is per process, as in Python: it says "this process puts no more". Afterwards
// put() and get() through any handle of this queue *in this process* throw mproc::Error;
// other processes, and children forked later, are unaffected. There is no feeder thread, so
// Python's join_thread() and cancel_join_thread() exist only so that code ports line by line:
// both return at once.
//
// Thread safety: every member may be called concurrently, from any thread of any process.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <type_traits>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/error.hpp"
#include "mproc/detail/shared_region.hpp"
#include "mproc/detail/timeout.hpp"
#include "mproc/frame.hpp"

namespace mproc {

namespace detail {

/// The shared state behind every queue handle of one queue in this process: a mapping of
/// shared memory holding a FIFO of byte entries. Type-erased: the templates below turn values
/// into frames and back. Implemented in src/shm/queue.cpp.
class QueueCore {
 public:
  using Clock = std::chrono::steady_clock;
  using Deadline = detail::Deadline;  // nullopt: wait forever
  /// Writes the entry's `size` bytes at `out` (shared memory). Must not throw.
  using Fill = void (*)(const void* context, std::byte* out) noexcept;
  /// Consumes an entry's bytes (shared memory, valid only during the call). May throw: the
  /// entry is consumed all the same and the exception propagates out of get().
  using Consume = void (*)(void* context, std::span<const std::byte> entry);

  QueueCore(long maxsize, bool joinable);
  /// The queue a start message names (a spawned child's view): see SharedRegion::attach.
  QueueCore(RegionRef& ref, long maxsize, bool joinable);
  ~QueueCore();
  QueueCore(const QueueCore&) = delete;
  QueueCore& operator=(const QueueCore&) = delete;

  /// Appends one entry of `size` bytes, waiting for room in a bounded queue while `block`,
  /// until `deadline`. Throws Full, mproc::Error after close(), OSError when memory is short.
  /// Waiting includes waiting for another producer's copy to finish: bounded by `deadline`;
  /// without `block`, a bounded queue whose producers' end is busy throws Full at once (as
  /// Python's put(block=False) fails when the semaphore is not free); an unbounded queue
  /// waits for it, so that it never throws Full (as Python).
  void put(std::size_t size, Fill fill, const void* context, bool block, const Deadline& deadline);
  /// Removes the oldest entry and hands it to `consume`, waiting for one while `block`, until
  /// `deadline`. Throws Empty, mproc::Error after close(), or what `consume` threw. Waiting for
  /// another consumer (which may be decoding a huge item) is bounded by `deadline`; without
  /// `block`, a busy consumers' end throws Empty at once, as Python's get(block=False).
  void get(Consume consume, void* context, bool block, const Deadline& deadline);

  /// Items in the queue: never negative, and never more than maxsize for a bounded queue.
  /// May count an item a few nanoseconds before it can be got (a put in flight) or after it
  /// was got (a get in flight), or until the next operation on that end when the process
  /// doing it died there.
  std::size_t qsize();
  long maxsize() const noexcept { return maxsize_; }
  bool joinable() const noexcept { return joinable_; }
  /// What crosses into a spawned child for this queue (export_fd: only in a start message).
  RegionRef region_ref() const noexcept { return region_->ref(); }
  void close() noexcept;
  bool closed() const noexcept;
  void task_done();
  bool join(const Deadline& deadline);

  /// Processes counted asleep on each wake-up word, as a waker reads them (for tests: a
  /// count that stays above zero makes every put or get pay a wake-up syscall).
  struct Sleepers {
    std::uint32_t getters, putters, joiners;
  };
  Sleepers sleepers() const noexcept;

  struct Shared;  // the layout in shared memory (src/shm/queue.cpp)

 private:
  void check_open(const char* operation) const;

  long maxsize_;
  bool joinable_;
  Shared* shared_;                 // start of the mapping
  std::byte* base_;                // == shared_, as bytes: segments are offsets from it
  std::shared_ptr<SharedRegion> region_;  // this process's view of the queue, and its memfd
  // The pid of the process that called close(), 0 if none: a child forked after close() has
  // another pid, so its queue is open, as Python reopens a queue in a forked child.
  std::atomic<int> closed_by_{0};
};

/// A scratch buffer per thread for encoding frames, so a put allocates nothing once warm.
std::vector<std::byte>& encode_scratch() noexcept;
/// Gives a scratch buffer grown by a huge value back to the allocator.
void trim_encode_scratch(std::vector<std::byte>& scratch) noexcept;

/// What Queue, JoinableQueue and SimpleQueue share: encoding into entries and back.
template <class T>
class QueueBase {
 public:
  using value_type = T;

 protected:
  QueueBase(long maxsize, bool joinable) : core_(std::make_shared<QueueCore>(maxsize, joinable)) {}
  explicit QueueBase(UnloadedHandle) noexcept {}

 public:
  /// Marks a handle to shared state (detail::shared_by_descriptor): a Process argument or
  /// initarg under spawn and forkserver reaches the child by descriptor, never a pool task.
  using mproc_shared_by_descriptor = void;

  /// Under spawn and forkserver: the child maps the same queue, with its maxsize and kind.
  template <class Archive>
  void save(Archive& archive) const {
    archive(static_cast<std::int64_t>(core_->maxsize()), core_->joinable(), core_->region_ref());
  }
  template <class Archive>
  void load(Archive& archive) {
    std::int64_t maxsize = 0;
    bool joinable = false;
    RegionRef ref;
    archive(maxsize, joinable, ref);
    core_ = std::make_shared<QueueCore>(ref, static_cast<long>(maxsize), joinable);
  }

 protected:

  void put_value(const T& value, bool block, const QueueCore::Deadline& deadline) {
    using U = std::remove_cv_t<T>;
    if constexpr (requires { requires Codec<U>::raw; }) {
      // The raw fast path: the value's bytes go straight into shared memory, the frame header
      // (with its checksum) is computed in place — no intermediate buffer.
      core_->put(wire::kHeaderSize + sizeof(U), &fill_raw, std::addressof(value), block, deadline);
    } else {
      std::vector<std::byte>& frame = encode_scratch();
      // Encoding runs before anything is locked or written: a value whose serialize code
      // throws leaves the queue as it was (CPython's test_queue_feeder_donot_stop_onexc).
      struct Trim {
        std::vector<std::byte>& frame;
        ~Trim() { trim_encode_scratch(frame); }
      } trim{frame};
      wire::encode_frame(value, frame);
      core_->put(frame.size(), &fill_copy, &frame, block, deadline);
    }
  }

  T get_value(bool block, const QueueCore::Deadline& deadline) {
    std::optional<T> value;
    core_->get(&consume, &value, block, deadline);
    return std::move(*value);
  }

  std::shared_ptr<QueueCore> core_;

 private:
  static void fill_raw(const void* context, std::byte* out) noexcept {
    std::memcpy(out + wire::kHeaderSize, context, sizeof(T));
    wire::write_header(out, wire::FrameKind::value, type_tag<std::remove_cv_t<T>>(),
                       std::span<const std::byte>(out + wire::kHeaderSize, sizeof(T)));
  }
  static void fill_copy(const void* context, std::byte* out) noexcept {
    const auto& frame = *static_cast<const std::vector<std::byte>*>(context);
    std::memcpy(out, frame.data(), frame.size());
  }
  static void consume(void* context, std::span<const std::byte> entry) {
    // Checks both checksums and the type tag, then decodes straight out of shared memory.
    static_cast<std::optional<T>*>(context)->emplace(wire::decode_frame<T>(entry));
  }
};

}  // namespace detail

/// multiprocessing.Queue(maxsize): a FIFO shared by processes.
///
/// Example: see the top of this header.
/// Requires: T Serializable (mproc/codec.hpp); a static_assert names the culprit otherwise.
template <class T>
class Queue : public detail::QueueBase<T> {
 public:
  /// Effects: makes the queue's shared memory. maxsize <= 0: unbounded (put never waits for room).
  /// Throws: OSError if the shared mapping cannot be made.
  explicit Queue(long maxsize = 0) : detail::QueueBase<T>(maxsize, false) {}

  /// Puts `value`, waiting for room in a bounded queue. Throws: mproc::Error after close();
  /// OSError(ENOMEM) when memory is short; what encoding `value` throws.
  void put(const T& value) { this->put_value(value, true, std::nullopt); }
  /// Waits at most `timeout` — for room, and for another producer's copy in progress — then
  /// throws Full.
  template <class Rep, class Period>
  void put(const T& value, std::chrono::duration<Rep, Period> timeout) {
    this->put_value(value, true, detail::deadline_after(timeout));
  }
  /// Python's put(obj, block): put(value, false) is put_nowait(value).
  void put(const T& value, bool block) { this->put_value(value, block, std::nullopt); }
  /// Python's put(obj, block, timeout); the timeout applies only when block is true.
  template <class Rep, class Period>
  void put(const T& value, bool block, std::chrono::duration<Rep, Period> timeout) {
    this->put_value(value, block, block ? detail::deadline_after(timeout) : std::nullopt);
  }
  /// Puts without waiting: throws Full when a bounded queue is full, or when another producer
  /// is busy putting into it (as Python's put(block=False) when its semaphore is taken). An
  /// unbounded queue is never Full: it waits for another producer's copy in progress.
  void put_nowait(const T& value) { this->put_value(value, false, std::nullopt); }

  /// Removes and returns the oldest item, waiting for one. Throws: mproc::Error after
  /// close(); SerializationError when the entry was corrupted in memory (it is consumed).
  T get() { return this->get_value(true, std::nullopt); }
  /// Waits at most `timeout` — for an item, and for another consumer's get in progress (it
  /// may be decoding a huge item) — then throws Empty.
  template <class Rep, class Period>
  T get(std::chrono::duration<Rep, Period> timeout) {
    return this->get_value(true, detail::deadline_after(timeout));
  }
  /// Python's get(block): get(false) is get_nowait().
  T get(bool block) { return this->get_value(block, std::nullopt); }
  template <class Rep, class Period>
  T get(bool block, std::chrono::duration<Rep, Period> timeout) {
    return this->get_value(block, block ? detail::deadline_after(timeout) : std::nullopt);
  }
  /// Returns the oldest item without waiting: throws Empty when there is none, or when another
  /// consumer is busy getting one (as Python's get(block=False) when its lock is taken).
  T get_nowait() { return this->get_value(false, std::nullopt); }

  /// Items in the queue now: between 0 and maxsize, a snapshot that may already count a put
  /// in flight or still count a get in flight; stale as soon as it returns (as Python's).
  std::size_t qsize() { return this->core_->qsize(); }
  bool empty() { return qsize() == 0; }
  /// True when a bounded queue holds maxsize items; always false when unbounded.
  bool full() { return this->core_->maxsize() > 0 && qsize() >= static_cast<std::size_t>(this->core_->maxsize()); }
  /// The maxsize given to the constructor (<= 0: unbounded).
  long maxsize() const noexcept { return this->core_->maxsize(); }

  /// This process puts (and gets) no more: see the header comment. Idempotent, never throws.
  void close() noexcept { this->core_->close(); }

  /// Python's join_thread(): waits for the feeder thread to flush the buffered puts. mproc has
  /// no feeder thread — every put() that returned is already in shared memory — so this
  /// returns at once. May be called before or after close(), from any thread; never throws.
  void join_thread() noexcept {}
  /// Python's cancel_join_thread(): lets the process exit without flushing its buffered puts
  /// (which Python may then lose). Nothing is ever buffered here, so nothing can be lost and
  /// this does nothing. Never throws.
  void cancel_join_thread() noexcept {}

 protected:
  Queue(long maxsize, bool joinable) : detail::QueueBase<T>(maxsize, joinable) {}
  explicit Queue(detail::UnloadedHandle unloaded) noexcept : detail::QueueBase<T>(unloaded) {}

 private:
  friend struct detail::HandleAccess;
};

/// multiprocessing.JoinableQueue: a Queue whose consumers acknowledge each item with
/// task_done(), so that join() can wait until every item put has been processed.
template <class T>
class JoinableQueue : public Queue<T> {
 public:
  explicit JoinableQueue(long maxsize = 0) : Queue<T>(maxsize, true) {}

  /// One item got from the queue has been processed. Throws mproc::Error when called more
  /// times than items were put (Python's ValueError).
  void task_done() { this->core_->task_done(); }
  /// Waits until every item put has had its task_done().
  void join() { this->core_->join(std::nullopt); }
  /// As join(), for at most `timeout`; returns false if items were still unfinished.
  /// (An mproc extension: Python's join() has no timeout.)
  template <class Rep, class Period>
  bool join(std::chrono::duration<Rep, Period> timeout) {
    return this->core_->join(detail::deadline_after(timeout));
  }

 private:
  friend struct detail::HandleAccess;
  explicit JoinableQueue(detail::UnloadedHandle unloaded) noexcept : Queue<T>(unloaded) {}
};

/// multiprocessing.SimpleQueue: an unbounded queue with only put, get, empty and close.
template <class T>
class SimpleQueue : public detail::QueueBase<T> {
 public:
  SimpleQueue() : detail::QueueBase<T>(0, false) {}

  /// Throws: mproc::Error after close(); OSError(ENOMEM) when memory is short.
  void put(const T& value) { this->put_value(value, true, std::nullopt); }
  /// Waits for an item. Throws: mproc::Error after close(); SerializationError (corrupted).
  T get() { return this->get_value(true, std::nullopt); }
  bool empty() { return this->core_->qsize() == 0; }
  void close() noexcept { this->core_->close(); }

 private:
  friend struct detail::HandleAccess;
  explicit SimpleQueue(detail::UnloadedHandle unloaded) noexcept : detail::QueueBase<T>(unloaded) {}
};

}  // namespace mproc
