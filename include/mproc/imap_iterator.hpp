// mproc/imap_iterator.hpp — the lazy result of Pool::imap / imap_unordered, ThreadPool's,
// and the executors' map: reads its input chunk by chunk on the consuming thread, keeps a
// bounded number of chunks in flight, and yields results in input or completion order.
// Independent of what runs the chunks: a backend supplies how to stage and submit them.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <cstddef>
#include <exception>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <utility>
#include <vector>

#include "mproc/detail/result_state.hpp"
#include "mproc/error.hpp"

namespace mproc {

template <class R>
class IMapIterator;

namespace detail {

/// Where finished chunks wait for the consumer. Chunks are delivered from the backend's
/// threads; the consumer takes them.
template <class R>
class IMapState {
 public:
  /// Chunk `index` finished with `values`, or failed with `error`.
  void deliver(std::size_t index, std::vector<R> values, std::exception_ptr error) {
    {
      std::lock_guard lock(mutex_);
      finished_.emplace(index, Outcome{std::move(values), std::move(error)});
      arrivals_.push_back(index);
    }
    cv_.notify_all();
  }

 private:
  template <class>
  friend class mproc::IMapIterator;
  struct Outcome {
    std::vector<R> values;
    std::exception_ptr error;
  };
  std::mutex mutex_;
  std::condition_variable cv_;
  std::map<std::size_t, Outcome> finished_;
  std::deque<std::size_t> arrivals_;  // finished chunks in completion order (imap_unordered)
};

/// How an IMapIterator feeds its backend.
struct IMapFeed {
  /// Reads the next chunk of input and stages it as chunk `index` (its results must reach
  /// IMapState::deliver). Returns false at the end of the input; throws what reading threw.
  std::function<bool(std::size_t index)> stage;
  /// Submits every staged chunk, in one batch (one wake-up of the backend for many chunks).
  /// Throws if the backend no longer accepts them (the staged chunks are then dropped).
  /// Made by IMapSource::connected.
  std::function<void()> flush;
  /// Optional: drops the chunks submitted but not started, when the map is abandoned (its
  /// iterator destroyed before the end, or its overall deadline passed) — an executor
  /// map's semantics; a Pool's imap lets them run, as Python's does.
  std::function<void()> abandon;
};

/// The input side of a lazy map: its position in the input and what has been submitted.
/// Shared by the iterator (which reads ahead a window at a time) and the backend, which may
/// read all the rest (drain) when it is joined, as Python finishes a map accepted before
/// close(). Thread safety: feed_more/drain serialize on `mutex`; the atomics may be read
/// without it.
class IMapSource : public std::enable_shared_from_this<IMapSource> {
 public:
  IMapSource() = default;
  IMapSource(const IMapSource&) = delete;
  IMapSource& operator=(const IMapSource&) = delete;

  /// A source over `feed` (whose flush is made here), connected to a backend's stream:
  /// `open_stream(finish, abandon)` opens the stream; the backend calls `finish(true)` to
  /// read the rest of the input when it is joined, `finish(false)` to stop reading it when
  /// it is destroyed, and `abandon` (the feed's, possibly empty) on shutdown(cancel_futures). The flush submits the `staged` jobs through the stream.
  template <class Job, class OpenStream>
  static std::shared_ptr<IMapSource> connected(IMapFeed feed, std::shared_ptr<std::vector<Job>> staged,
                                               OpenStream&& open_stream) {
    auto source = std::make_shared<IMapSource>();
    source->connect(std::move(feed), std::move(staged), std::forward<OpenStream>(open_stream));
    return source;
  }

  /// The iterator is gone before it was used: drop the input (and the backend's stream)
  /// without abandoning what was submitted, as Python lets an unstarted map's calls run.
  /// Waits for a drain in progress, which may still be reading the input.
  void release() {
    std::lock_guard lock(mutex_);
    finish_input(nullptr);
  }

  /// Reads and submits up to `room` more chunks. Once the input ends (or fails, or the
  /// backend refuses), the feed is released: with it the backend's stream and the range.
  void feed_more(std::size_t room) {
    std::lock_guard lock(mutex_);
    feed_locked(room);
  }
  /// Reads and submits the whole rest of the input.
  void drain() {
    std::lock_guard lock(mutex_);
    while (!input_done_.load(std::memory_order_relaxed)) feed_locked(kDrainBatch);
  }
  /// The backend is being destroyed: the input is read no further (an endless one would be
  /// read forever); the iterator yields the results of what was submitted, then throws Error.
  void cut() {
    std::lock_guard lock(mutex_);
    finish_input(std::make_exception_ptr(
        Error("mproc: the pool was destroyed before this map's input was read to its end; the results of the "
              "items it had read came first")));
  }
  /// The map was given up: drop what has not started (if the backend can).
  void abandon() {
    std::lock_guard lock(mutex_);
    if (abandon_) abandon_();
    finish_input(nullptr);
  }

  std::size_t submitted() const noexcept { return submitted_.load(std::memory_order_acquire); }
  bool input_done() const noexcept { return input_done_.load(std::memory_order_acquire); }
  /// Requires input_done(): why the input ended early, once (nullptr afterwards).
  std::exception_ptr take_error() {
    std::lock_guard lock(mutex_);
    return std::exchange(error_, nullptr);
  }

 private:
  static constexpr std::size_t kDrainBatch = 64;

  // Held under the source's lock from the stream's opening on, so that a join on another
  // thread cannot drain a half-connected source.
  template <class Job, class OpenStream>
  void connect(IMapFeed feed, std::shared_ptr<std::vector<Job>> staged, OpenStream&& open_stream) {
    std::lock_guard lock(mutex_);
    auto stream = std::forward<OpenStream>(open_stream)(
        [weak = weak_from_this()](bool to_the_end) {
          if (auto alive = weak.lock()) to_the_end ? alive->drain() : alive->cut();
        },
        feed.abandon);
    feed.flush = [staged, stream] {
      try {
        stream->submit(std::exchange(*staged, {}));
      } catch (...) {
        staged->clear();  // not submitted: the map ends here (feed_locked)
        throw;
      }
    };
    abandon_ = feed.abandon;  // kept past the end of the input: what was submitted may still be dropped
    feed_ = std::move(feed);
  }

  void feed_locked(std::size_t room) {
    if (input_done_.load(std::memory_order_relaxed)) return;
    const std::size_t first = submitted_.load(std::memory_order_relaxed);
    std::size_t staged = 0;
    std::exception_ptr failure;
    bool ended = false;
    while (staged < room) {
      try {
        if (!feed_.stage(first + staged)) {
          ended = true;
          break;
        }
      } catch (...) {
        // The caller's range failed. As in Python, the error is raised where that item's
        // result would have been: after every result before it.
        failure = std::current_exception();
        ended = true;
        break;
      }
      ++staged;
    }
    if (staged > 0) {
      try {
        feed_.flush();
        submitted_.store(first + staged, std::memory_order_release);
      } catch (...) {
        // Not submitted: those chunks' results will never come; the map ends here.
        failure = std::current_exception();
        ended = true;
      }
    }
    if (ended) finish_input(std::move(failure));
  }

  void finish_input(std::exception_ptr failure) {
    if (input_done_.load(std::memory_order_relaxed)) return;
    if (!error_) error_ = std::move(failure);
    input_done_.store(true, std::memory_order_release);
    // Releases the range and the backend's stream (the backend may now finish).
    feed_ = IMapFeed{};
  }

  std::mutex mutex_;
  IMapFeed feed_;
  std::function<void()> abandon_;
  std::exception_ptr error_;
  std::atomic<std::size_t> submitted_{0};
  std::atomic<bool> input_done_{false};
};

/// For an executor map (`enabled`): a flag its chunks share, set by `feed`'s abandon; a
/// chunk that finds it set is dropped instead of run. nullptr for a Pool's imap.
inline std::shared_ptr<std::atomic<bool>> abandon_flag(IMapFeed& feed, bool enabled) {
  if (!enabled) return nullptr;
  auto flag = std::make_shared<std::atomic<bool>>(false);
  feed.abandon = [flag] { flag->store(true, std::memory_order_relaxed); };
  return flag;
}

/// What a chunk of an abandoned map completes with instead of running.
inline std::exception_ptr abandoned_chunk_error() {
  return std::make_exception_ptr(CancelledError("the map was abandoned before this chunk started"));
}

/// Python's default chunksize for `items` over `workers`: about four chunks per worker.
inline std::size_t default_chunksize(std::size_t items, int workers) {
  std::size_t parts = static_cast<std::size_t>(workers) * 4;
  return std::max<std::size_t>(1, (items + parts - 1) / parts);
}

/// Enough chunks in flight to keep every worker busy with some queued ahead, and no more:
/// that bound is what keeps an endless input in bounded memory.
inline std::size_t default_map_window(int workers) { return static_cast<std::size_t>(workers) * 16 + 16; }

/// Reads an input range `chunksize` items at a time, on the thread that calls it. The view
/// and its position are shared by the copies of the returned function.
template <class Item, class Range>
std::function<bool(std::vector<Item>&)> chunk_reader(Range&& items, std::size_t chunksize) {
  using View = decltype(std::views::all(std::forward<Range>(items)));
  struct Source {
    View view;
    std::ranges::iterator_t<View> position;
    explicit Source(View v) : view(std::move(v)), position(std::ranges::begin(view)) {}
  };
  auto source = std::make_shared<Source>(std::views::all(std::forward<Range>(items)));
  return [source, chunksize](std::vector<Item>& chunk) {
    chunk.clear();
    while (chunk.size() < chunksize && source->position != std::ranges::end(source->view)) {
      chunk.push_back(Item(*source->position));
      ++source->position;
    }
    return !chunk.empty();
  };
}

}  // namespace detail

/// Python's IMapIterator. Move-only. Use it in a range-for loop, or call next() /
/// next(timeout). The first window of input is read and submitted when the map is made (as
/// Python starts a map at once); the rest is read on the consuming thread as results are
/// taken — or all at once by the pool's join() / the executor's shutdown(wait), so that a
/// map made before close() still completes. Thread safety: one consumer.
template <class R>
class IMapIterator {
 public:
  using Deadline = std::optional<std::chrono::steady_clock::time_point>;

  /// Internal: made by the pools and executors. At most `max_in_flight` chunks are submitted
  /// and not yet consumed. `deadline`, if any, bounds every wait (an executor's map timeout).
  IMapIterator(std::shared_ptr<detail::IMapState<R>> state, std::shared_ptr<detail::IMapSource> source,
               bool ordered, std::size_t max_in_flight, Deadline deadline = std::nullopt)
      : state_(std::move(state)),
        source_(std::move(source)),
        ordered_(ordered),
        max_in_flight_(max_in_flight),
        deadline_(deadline) {
    top_up();
  }
  IMapIterator(IMapIterator&&) noexcept = default;
  IMapIterator& operator=(IMapIterator&&) noexcept = default;
  /// An iterator dropped after it started yielding abandons its map (Python closes the
  /// generator: an executor map's calls not yet started are cancelled). One never used
  /// leaves the submitted calls running, as Python's unstarted generator does.
  ~IMapIterator() {
    if (!source_) return;  // moved from
    if (!started_)
      source_->release();
    else if (!source_->input_done() || consumed_ < source_->submitted())
      source_->abandon();
  }

  /// The next result, or nullopt when all are consumed. Rethrows the exception of the
  /// chunk the result belongs to (iteration may continue after it), and any exception
  /// reading the input range threw, in its position. Throws TimeoutError past the
  /// iterator's own deadline, if it has one.
  std::optional<R> next() { return next_until(deadline_); }
  /// As next(); throws TimeoutError if no result arrives within `timeout`.
  template <class Rep, class Period>
  std::optional<R> next(std::chrono::duration<Rep, Period> timeout) {
    Deadline until = detail::deadline_after(timeout);
    if (deadline_ && *deadline_ < *until) until = deadline_;
    return next_until(until);
  }

  class iterator {
   public:
    using value_type = R;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(IMapIterator* owner) : owner_(owner) { advance(); }
    const R& operator*() const { return *current_; }
    iterator& operator++() {
      advance();
      return *this;
    }
    void operator++(int) { advance(); }
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return !it.current_; }

   private:
    void advance() { current_ = owner_->next(); }
    IMapIterator* owner_ = nullptr;
    std::optional<R> current_;
  };
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }

 private:
  // Reads ahead until the in-flight bound is reached or the input ends, submitting the new
  // chunks together.
  void top_up() {
    if (can_top_up()) source_->feed_more(max_in_flight_ - outstanding());
  }

  std::optional<R> next_until(Deadline deadline) {
    started_ = true;
    for (;;) {
      if (position_ < current_.size()) return std::move(current_[position_++]);
      top_up();
      if (source_->input_done() && consumed_ == source_->submitted()) {
        if (auto error = source_->take_error()) std::rethrow_exception(error);
        return std::nullopt;
      }
      std::unique_lock lock(state_->mutex_);
      auto& finished = state_->finished_;
      auto available = [&] { return ordered_ ? finished.count(consumed_) > 0 : !finished.empty(); };
      // Keep the workers fed while we wait: wake up when a chunk finishes to top up.
      while (!available()) {
        auto ready = [&] { return available() || can_top_up(); };
        if (deadline) {
          if (!state_->cv_.wait_until(lock, *deadline, ready)) {
            lock.unlock();
            // The executor map's own deadline ends the map (Python's iterator is finished
            // then, its pending calls cancelled); next(timeout) may be tried again.
            if (deadline == deadline_) source_->abandon();
            throw TimeoutError("imap: no result within the timeout");
          }
        } else {
          state_->cv_.wait(lock, ready);
        }
        if (!available()) {
          lock.unlock();
          top_up();
          lock.lock();
        }
      }
      auto& arrivals = state_->arrivals_;
      std::size_t index = ordered_ ? consumed_ : arrivals.front();
      arrivals.erase(std::find(arrivals.begin(), arrivals.end(), index));  // near the front
      auto it = finished.find(index);
      auto outcome = std::move(it->second);
      finished.erase(it);
      lock.unlock();
      ++consumed_;
      current_ = std::move(outcome.values);
      position_ = 0;
      if (outcome.error) std::rethrow_exception(outcome.error);
    }
  }

  // Chunks submitted and not yet consumed: running, queued, or finished and waiting for the
  // consumer. Bounding this (not just what runs) is what bounds memory when the consumer is
  // slower than the workers.
  std::size_t outstanding() const { return source_->submitted() - consumed_; }
  // Refill once half the window has drained: fewer, larger submissions (each one wakes the
  // backend) while the workers still have work queued.
  bool can_top_up() const { return !source_->input_done() && outstanding() <= max_in_flight_ / 2; }

  std::shared_ptr<detail::IMapState<R>> state_;
  std::shared_ptr<detail::IMapSource> source_;
  bool ordered_;
  std::size_t max_in_flight_;
  Deadline deadline_;
  std::size_t consumed_ = 0;
  bool started_ = false;
  std::vector<R> current_;
  std::size_t position_ = 0;
};

}  // namespace mproc
