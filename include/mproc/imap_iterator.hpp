// mproc/imap_iterator.hpp — the lazy result of Pool::imap / imap_unordered, ThreadPool's,
// and the executors' map: reads its input chunk by chunk on the consuming thread, keeps a
// bounded number of chunks in flight, and yields results in input or completion order.
// Independent of what runs the chunks: a backend supplies how to stage and submit them.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
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
};

/// How an IMapIterator feeds its backend.
struct IMapFeed {
  /// Reads the next chunk of input and stages it as chunk `index` (its results must reach
  /// IMapState::deliver). Returns false at the end of the input; throws what reading threw.
  std::function<bool(std::size_t index)> stage;
  /// Submits every staged chunk, in one batch (one wake-up of the backend for many chunks).
  std::function<void()> flush;
};

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
/// next(timeout). Reads its input on the calling thread. Thread safety: one consumer.
template <class R>
class IMapIterator {
 public:
  using Deadline = std::optional<std::chrono::steady_clock::time_point>;

  /// Internal: made by the pools and executors. At most `max_in_flight` chunks are submitted
  /// and not yet consumed. `deadline`, if any, bounds every wait (an executor's map timeout).
  IMapIterator(std::shared_ptr<detail::IMapState<R>> state, detail::IMapFeed feed, bool ordered,
               std::size_t max_in_flight, Deadline deadline = std::nullopt)
      : state_(std::move(state)),
        feed_(std::move(feed)),
        ordered_(ordered),
        max_in_flight_(max_in_flight),
        deadline_(deadline) {}
  IMapIterator(IMapIterator&&) noexcept = default;
  IMapIterator& operator=(IMapIterator&&) noexcept = default;

  /// The next result, or nullopt when all are consumed. Rethrows the exception of the
  /// chunk the result belongs to (iteration may continue after it), and any exception
  /// reading the input range threw, in its position. Throws TimeoutError past the
  /// iterator's own deadline, if it has one.
  std::optional<R> next() { return next_until(deadline_); }
  /// As next(); throws TimeoutError if no result arrives within `timeout`.
  template <class Rep, class Period>
  std::optional<R> next(std::chrono::duration<Rep, Period> timeout) {
    Deadline until = std::chrono::steady_clock::now() + std::chrono::ceil<std::chrono::steady_clock::duration>(timeout);
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
  // Stages chunks until the in-flight bound is reached or the input ends, then submits them
  // together.
  void top_up() {
    if (!can_top_up()) return;
    const std::size_t room = max_in_flight_ - outstanding();
    std::size_t staged = 0;
    while (staged < room) {
      try {
        if (!feed_.stage(submitted_ + staged)) {
          input_done_ = true;
          break;
        }
      } catch (...) {
        // The caller's range failed. As in Python, the error is raised where that item's
        // result would have been: after every result before it.
        input_done_ = true;
        input_error_ = std::current_exception();
        break;
      }
      ++staged;
    }
    if (staged == 0) return;
    feed_.flush();
    submitted_ += staged;
  }

  std::optional<R> next_until(Deadline deadline) {
    for (;;) {
      if (position_ < current_.size()) return std::move(current_[position_++]);
      top_up();
      if (input_done_ && consumed_ == submitted_) {
        if (input_error_) std::rethrow_exception(std::exchange(input_error_, nullptr));
        return std::nullopt;
      }
      std::unique_lock lock(state_->mutex_);
      auto& finished = state_->finished_;
      auto available = [&] { return ordered_ ? finished.count(consumed_) > 0 : !finished.empty(); };
      // Keep the workers fed while we wait: wake up when a chunk finishes to top up.
      while (!available()) {
        auto ready = [&] { return available() || can_top_up(); };
        if (deadline) {
          if (!state_->cv_.wait_until(lock, *deadline, ready)) throw TimeoutError("imap: no result within the timeout");
        } else {
          state_->cv_.wait(lock, ready);
        }
        if (!available()) {
          lock.unlock();
          top_up();
          lock.lock();
        }
      }
      auto it = ordered_ ? finished.find(consumed_) : finished.begin();
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
  std::size_t outstanding() const { return submitted_ - consumed_; }
  // Refill once half the window has drained: fewer, larger submissions (each one wakes the
  // backend) while the workers still have work queued.
  bool can_top_up() const { return !input_done_ && outstanding() <= max_in_flight_ / 2; }

  std::shared_ptr<detail::IMapState<R>> state_;
  detail::IMapFeed feed_;
  bool ordered_;
  std::size_t max_in_flight_;
  Deadline deadline_;
  bool input_done_ = false;
  std::exception_ptr input_error_;
  std::size_t submitted_ = 0;
  std::size_t consumed_ = 0;
  std::vector<R> current_;
  std::size_t position_ = 0;
};

}  // namespace mproc
