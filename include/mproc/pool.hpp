// mproc/pool.hpp — multiprocessing.Pool: a pool of worker processes.
//
//   int square(int x) { return x * x; }
//
//   mproc::Pool pool(4);
//   int nine = pool.apply(square, 3);
//   std::vector<int> squares = pool.map(square, std::vector{1, 2, 3});
//   for (int s : pool.imap(square, std::views::iota(0, 1000))) use(s);
//
// Tasks are plain functions (free, static member, or captureless lambda) with
// serializable arguments and results (mproc/codec.hpp); anything else is a compile error.
// What Python's Pool does not do:
// - a worker that dies (segfault, abort, SIGKILL, OOM killer) fails only the task it was
//   running, with WorkerLostError; the worker is replaced and every other task completes;
// - a task running past its timeout (PoolOptions::task_timeout) is stopped by killing its
//   worker and fails with TimeoutError;
// - imap/imap_unordered read their input lazily, with a bounded number of chunks in flight;
// - terminate() fails every unfinished result with CancelledError instead of leaving it
//   pending forever.
// Destructor: waits for every accepted task (close() + join()), as std::jthread joins,
// unless terminate() was called.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/async_result.hpp"
#include "mproc/codec.hpp"
#include "mproc/detail/engine.hpp"
#include "mproc/detail/task.hpp"
#include "mproc/error.hpp"
#include "mproc/process.hpp"

namespace mproc {

/// Python's Pool(processes, initializer, initargs, maxtasksperchild) keywords. Every member
/// has a default, so designated initializers may name any subset.
struct PoolOptions {
  /// Number of workers; nullopt means cpu_count(). Must be >= 1.
  std::optional<int> processes = {};
  /// Runs once in each worker before its first task (initargs: capture them). Under fork
  /// any callable works. If it throws, the pool is broken: pending and later tasks fail with
  /// BrokenExecutor.
  std::function<void()> initializer = {};
  /// Replace a worker after this many tasks; nullopt: never. Must be >= 1.
  std::optional<int> maxtasksperchild = {};
  /// Per-task time limit; a task running longer is stopped by killing its worker and fails
  /// with TimeoutError. nullopt: no limit. Individual calls may override it.
  std::optional<std::chrono::nanoseconds> task_timeout = {};
};

template <class R>
class IMapIterator;

namespace detail {

template <class R>
Completion complete_into(std::shared_ptr<ResultState<R>> state) {
  return [state = std::move(state)](std::span<const std::byte> payload, std::exception_ptr error) {
    if (error) return state->set_error(std::move(error));
    try {
      if constexpr (std::is_void_v<R>) {
        state->set_value({});
      } else {
        state->set_value(loads<R>(payload));
      }
    } catch (...) {
      state->set_error(std::current_exception());
    }
  };
}

template <class F, class... Args>
std::vector<std::byte> encode_arguments(Args&&... args) {
  using Arguments = ArgumentsOf<F>;
  static_assert(std::is_constructible_v<Arguments, Args&&...>,
                "mproc: the arguments do not match the task function's parameters");
  return dumps(Arguments(std::forward<Args>(args)...));
}

template <class Options, class R>
void install_callbacks(ResultState<R>& state, Options& callbacks) {
  if constexpr (!std::is_same_v<decltype(callbacks.callback), std::nullptr_t>)
    state.callback = std::move(callbacks.callback);
  if constexpr (!std::is_same_v<decltype(callbacks.error_callback), std::nullptr_t>)
    state.error_callback = std::move(callbacks.error_callback);
}

template <class T>
struct IsCallOptions : std::false_type {};
template <class A, class B>
struct IsCallOptions<CallOptions<A, B>> : std::true_type {};

// The result of a map over functions returning R: the vector of results, or nothing.
template <class R>
using MapResult = std::conditional_t<std::is_void_v<R>, void, std::vector<R>>;
template <class R>
using ChunkResult = std::conditional_t<std::is_void_v<R>, std::uint64_t, std::vector<R>>;

}  // namespace detail

/// Python's multiprocessing.Pool. Thread safety: every member may be called from any thread
/// of the process that created the pool; from a worker (a task calling into its own pool)
/// or another process, every member throws Error.
class Pool {
 public:
  /// Throws std::invalid_argument for processes <= 0 or maxtasksperchild <= 0; OSError.
  explicit Pool(int processes) : Pool(PoolOptions{.processes = processes}) {}
  explicit Pool(PoolOptions options = {});
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  /// Runs f(args...) in a worker and waits for its result (rethrowing its exception).
  template <class F, class... Args>
  auto apply(F f, Args&&... args) -> detail::ResultOf<F> {
    return apply_async(f, std::forward<Args>(args)...).get();
  }

  /// Runs f(args...) in a worker. The first argument may be mproc::CallOptions{...}.
  template <class F, class... Args>
    requires(!detail::IsCallOptions<F>::value)
  auto apply_async(F f, Args&&... args) -> AsyncResult<detail::ResultOf<F>> {
    return apply_async(CallOptions{}, f, std::forward<Args>(args)...);
  }

  template <class A, class B, class F, class... Args>
  auto apply_async(CallOptions<A, B> callbacks, F f, Args&&... args) -> AsyncResult<detail::ResultOf<F>> {
    detail::require_plain_function<F>();
    using R = detail::ResultOf<F>;
    auto state = std::make_shared<detail::ResultState<R>>();
    detail::install_callbacks(*state, callbacks);
    detail::TaskSpec task;
    task.invoker = &detail::invoke_call<detail::FunctionPointer<F>>;
    task.function = detail::code_ref(+f);
    task.args = detail::encode_arguments<F>(std::forward<Args>(args)...);
    task.timeout = callbacks.timeout;
    task.done = detail::complete_into<R>(state);
    engine_.submit(std::move(task));
    return AsyncResult<R>(std::move(state));
  }

  /// f applied to every item, results in input order. chunksize: nullopt uses Python's
  /// rule (about four chunks per worker). Throws std::invalid_argument for chunksize 0, and
  /// the first failing chunk's exception.
  /// Serialized chunks are submitted as results come back, a bounded number at a time, so
  /// a huge input never sits in memory twice.
  template <class F, std::ranges::input_range Range>
  auto map(F f, Range&& items, std::optional<std::size_t> chunksize = std::nullopt)
      -> detail::MapResult<detail::ResultOf<F>> {
    using R = detail::ResultOf<F>;
    if constexpr (std::is_void_v<R> || !std::ranges::sized_range<Range>) {
      return map_async(f, std::forward<Range>(items), chunksize).get();
    } else {
      if (chunksize && *chunksize == 0) throw std::invalid_argument("mproc: chunksize must be at least 1");
      std::size_t total = static_cast<std::size_t>(std::ranges::size(items));
      std::vector<R> results;
      results.reserve(total);
      auto lazy = imap(f, std::forward<Range>(items), chunksize.value_or(default_chunksize(total)));
      while (auto value = lazy.next()) results.push_back(std::move(*value));
      return results;
    }
  }

  template <class F, std::ranges::input_range Range>
  auto map_async(F f, Range&& items, std::optional<std::size_t> chunksize = std::nullopt)
      -> AsyncResult<detail::MapResult<detail::ResultOf<F>>> {
    return map_async_impl<false>(CallOptions{}, f, std::forward<Range>(items), chunksize);
  }
  template <class A, class B, class F, std::ranges::input_range Range>
  auto map_async(CallOptions<A, B> callbacks, F f, Range&& items, std::optional<std::size_t> chunksize = std::nullopt)
      -> AsyncResult<detail::MapResult<detail::ResultOf<F>>> {
    return map_async_impl<false>(std::move(callbacks), f, std::forward<Range>(items), chunksize);
  }

  /// As map, each item a tuple of arguments: f(std::get<0>(item), std::get<1>(item), ...).
  template <class F, std::ranges::input_range Range>
  auto starmap(F f, Range&& items, std::optional<std::size_t> chunksize = std::nullopt)
      -> detail::MapResult<detail::ResultOf<F>> {
    return starmap_async(f, std::forward<Range>(items), chunksize).get();
  }
  template <class F, std::ranges::input_range Range>
  auto starmap_async(F f, Range&& items, std::optional<std::size_t> chunksize = std::nullopt)
      -> AsyncResult<detail::MapResult<detail::ResultOf<F>>> {
    return map_async_impl<true>(CallOptions{}, f, std::forward<Range>(items), chunksize);
  }
  template <class A, class B, class F, std::ranges::input_range Range>
  auto starmap_async(CallOptions<A, B> callbacks, F f, Range&& items,
                     std::optional<std::size_t> chunksize = std::nullopt)
      -> AsyncResult<detail::MapResult<detail::ResultOf<F>>> {
    return map_async_impl<true>(std::move(callbacks), f, std::forward<Range>(items), chunksize);
  }

  /// Lazy, ordered map: reads `items` only as results are consumed, with a bounded number
  /// of chunks in flight, so an endless range runs in bounded memory. `items` is stored by
  /// reference if it is an lvalue: it must outlive the iteration. Results of void functions
  /// are not available: use map.
  template <class F, std::ranges::input_range Range>
  auto imap(F f, Range&& items, std::size_t chunksize = 1) -> IMapIterator<detail::ResultOf<F>> {
    return imap_impl(f, std::forward<Range>(items), chunksize, true);
  }
  /// As imap, yielding results in completion order.
  template <class F, std::ranges::input_range Range>
  auto imap_unordered(F f, Range&& items, std::size_t chunksize = 1) -> IMapIterator<detail::ResultOf<F>> {
    return imap_impl(f, std::forward<Range>(items), chunksize, false);
  }

  /// No more tasks; workers exit when the accepted ones are done.
  void close() { engine_.close(); }
  /// Stops the workers now; every unfinished result fails with CancelledError.
  void terminate() { engine_.terminate(); }
  /// Waits for the workers to exit. Throws Error unless close() or terminate() came first.
  void join() { engine_.join(); }

  /// Number of workers.
  int processes() const noexcept { return engine_.processes(); }
  /// The pids of the current workers.
  std::vector<int> worker_pids() const { return engine_.worker_pids(); }

 private:
  template <class R>
  friend class IMapIterator;

  template <bool Star, class Options, class F, class Range>
  auto map_async_impl(Options callbacks, F f, Range&& items, std::optional<std::size_t> chunksize)
      -> AsyncResult<detail::MapResult<detail::ResultOf<F>>>;

  template <class F, class Range>
  auto imap_impl(F f, Range&& items, std::size_t chunksize, bool ordered) -> IMapIterator<detail::ResultOf<F>>;

  std::size_t default_chunksize(std::size_t items) const {
    // Python: divmod(len(iterable), len(self._pool) * 4), rounded up; at least 1.
    std::size_t parts = static_cast<std::size_t>(processes()) * 4;
    return std::max<std::size_t>(1, (items + parts - 1) / parts);
  }

  detail::Engine engine_;
};

// ---- map ------------------------------------------------------------------------------------

namespace detail {

// Collects the chunks of one map in order; completes the map's result when all are in, or
// with the first error.
template <class R>
struct MapCollector {
  std::mutex mutex;
  std::vector<ChunkResult<R>> chunks;
  std::size_t remaining = 0;
  std::shared_ptr<ResultState<MapResult<R>>> state;

  void deliver(std::size_t index, ChunkResult<R> chunk) {
    {
      std::lock_guard lock(mutex);
      chunks[index] = std::move(chunk);
      if (--remaining > 0) return;
    }
    if constexpr (std::is_void_v<R>) {
      state->set_value({});
    } else {
      std::vector<R> all;
      std::size_t total = 0;
      for (auto& part : chunks) total += part.size();
      all.reserve(total);
      for (auto& part : chunks) std::move(part.begin(), part.end(), std::back_inserter(all));
      state->set_value(std::move(all));
    }
  }
};

template <class F, bool Star>
using ItemOf = std::conditional_t<Star, ArgumentsOf<F>, std::tuple_element_t<0, ArgumentsOf<F>>>;

}  // namespace detail

template <bool Star, class Options, class F, class Range>
auto Pool::map_async_impl(Options callbacks, F f, Range&& items, std::optional<std::size_t> chunksize)
    -> AsyncResult<detail::MapResult<detail::ResultOf<F>>> {
  detail::require_plain_function<F>();
  using R = detail::ResultOf<F>;
  using Item = detail::ItemOf<F, Star>;
  if (chunksize && *chunksize == 0) throw std::invalid_argument("mproc: chunksize must be at least 1");
  engine_.check_caller();
  // Python's map materialises its input to size the chunks; so do we (only the items).
  std::vector<Item> all;
  for (auto&& item : items) all.push_back(Item(std::forward<decltype(item)>(item)));
  std::size_t size = chunksize.value_or(default_chunksize(all.size()));

  auto state = std::make_shared<detail::ResultState<detail::MapResult<R>>>();
  detail::install_callbacks(*state, callbacks);
  std::size_t count = (all.size() + size - 1) / size;
  if (count == 0) {
    state->set_value({});
    return AsyncResult<detail::MapResult<R>>(std::move(state));
  }
  auto collector = std::make_shared<detail::MapCollector<R>>();
  collector->chunks.resize(count);
  collector->remaining = count;
  collector->state = state;

  std::vector<detail::TaskSpec> tasks;
  tasks.reserve(count);
  for (std::size_t index = 0; index < count; ++index) {
    auto first = all.begin() + static_cast<std::ptrdiff_t>(index * size);
    auto last = all.begin() + static_cast<std::ptrdiff_t>(std::min(all.size(), (index + 1) * size));
    detail::TaskSpec task;
    task.invoker = &detail::invoke_chunk<detail::FunctionPointer<F>, Star>;
    task.function = detail::code_ref(+f);
    task.args = dumps(std::vector<Item>(std::make_move_iterator(first), std::make_move_iterator(last)));
    task.timeout = callbacks.timeout;
    task.done = [collector, index](std::span<const std::byte> payload, std::exception_ptr error) {
      if (error) return collector->state->set_error(std::move(error));
      try {
        collector->deliver(index, loads<detail::ChunkResult<R>>(payload));
      } catch (...) {
        collector->state->set_error(std::current_exception());
      }
    };
    tasks.push_back(std::move(task));
  }
  engine_.submit(std::move(tasks));
  return AsyncResult<detail::MapResult<R>>(std::move(state));
}

// ---- imap -----------------------------------------------------------------------------------

namespace detail {

template <class R>
struct IMapState {
  std::mutex mutex;
  std::condition_variable cv;
  // Finished chunks by index: their results, or their exception.
  std::map<std::size_t, std::pair<std::vector<R>, std::exception_ptr>> finished;
};

}  // namespace detail

/// Python's IMapIterator: the lazy result of imap / imap_unordered. Move-only. Use it in a
/// range-for loop, or call next() / next(timeout). Reads input on the calling thread.
template <class R>
class IMapIterator {
 public:
  /// The next result, or nullopt when all are consumed. Rethrows the exception of the
  /// chunk the result belongs to (iteration may continue after it), and any exception
  /// reading the input range threw.
  std::optional<R> next() { return next_until(std::nullopt); }
  /// As next(); throws TimeoutError if no result arrives within `timeout`.
  template <class Rep, class Period>
  std::optional<R> next(std::chrono::duration<Rep, Period> timeout) {
    return next_until(std::chrono::steady_clock::now() +
                      std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout));
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

  // Internal: made by Pool::imap.
  IMapIterator(Pool& pool, std::function<bool(std::vector<std::byte>&)> next_chunk, detail::Invoker invoker,
               detail::CodeRef function, bool ordered, std::size_t max_in_flight)
      : pool_(&pool),
        next_chunk_(std::move(next_chunk)),
        invoker_(invoker),
        function_(function),
        ordered_(ordered),
        max_in_flight_(max_in_flight),
        state_(std::make_shared<detail::IMapState<R>>()) {}

 private:
  using Deadline = std::optional<std::chrono::steady_clock::time_point>;

  // Submits chunks until the in-flight bound is reached or the input is exhausted, all in
  // one submission: one wake-up of the pool for many chunks.
  void top_up() {
    if (input_done_) return;
    if (!can_top_up()) return;
    const std::size_t room = max_in_flight_ - outstanding();
    std::vector<detail::TaskSpec> tasks;
    while (tasks.size() < room) {
      std::vector<std::byte> args;
      try {
        if (!next_chunk_(args)) {
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
      tasks.push_back(make_task(submitted_ + tasks.size(), std::move(args)));
    }
    if (tasks.empty()) return;
    std::size_t count = tasks.size();
    pool_->engine_.submit(std::move(tasks));
    submitted_ += count;
  }

  detail::TaskSpec make_task(std::size_t index, std::vector<std::byte> args) {
    detail::TaskSpec task;
    task.invoker = invoker_;
    task.function = function_;
    task.args = std::move(args);
    task.done = [state = state_, index](std::span<const std::byte> payload, std::exception_ptr error) {
      std::pair<std::vector<R>, std::exception_ptr> outcome;
      if (error) {
        outcome.second = std::move(error);
      } else {
        try {
          outcome.first = loads<std::vector<R>>(payload);
        } catch (...) {
          outcome.second = std::current_exception();
        }
      }
      {
        std::lock_guard lock(state->mutex);
        state->finished.emplace(index, std::move(outcome));
      }
      state->cv.notify_all();
    };
    return task;
  }

  std::optional<R> next_until(Deadline deadline) {
    for (;;) {
      if (position_ < current_.size()) return std::move(current_[position_++]);
      top_up();
      if (input_done_ && consumed_ == submitted_) {
        if (input_error_) std::rethrow_exception(std::exchange(input_error_, nullptr));
        return std::nullopt;
      }
      std::unique_lock lock(state_->mutex);
      auto available = [&] {
        if (ordered_) return state_->finished.count(consumed_) > 0;
        return !state_->finished.empty();
      };
      // Keep the workers fed while we wait: wake up when a chunk finishes to top up.
      while (!available()) {
        if (deadline) {
          if (!state_->cv.wait_until(lock, *deadline, [&] { return available() || can_top_up(); })) {
            throw TimeoutError("imap: no result within the timeout");
          }
        } else {
          state_->cv.wait(lock, [&] { return available() || can_top_up(); });
        }
        if (!available()) {
          lock.unlock();
          top_up();
          lock.lock();
        }
      }
      auto it = ordered_ ? state_->finished.find(consumed_) : state_->finished.begin();
      auto outcome = std::move(it->second);
      state_->finished.erase(it);
      lock.unlock();
      ++consumed_;
      current_ = std::move(outcome.first);
      position_ = 0;
      if (outcome.second) std::rethrow_exception(outcome.second);
    }
  }

  // Chunks submitted and not yet consumed: running, queued, or finished and waiting for the
  // consumer. Bounding this (not just what runs) is what bounds memory when the consumer is
  // slower than the workers.
  std::size_t outstanding() const { return submitted_ - consumed_; }
  // Refill once half the window has drained: fewer, larger submissions (each one wakes the
  // pool's thread) while the workers still have work queued.
  bool can_top_up() const { return !input_done_ && outstanding() <= max_in_flight_ / 2; }

  Pool* pool_;
  std::function<bool(std::vector<std::byte>&)> next_chunk_;
  detail::Invoker invoker_;
  detail::CodeRef function_;
  bool ordered_;
  std::size_t max_in_flight_;
  std::shared_ptr<detail::IMapState<R>> state_;
  bool input_done_ = false;
  std::exception_ptr input_error_;
  std::size_t submitted_ = 0;
  std::size_t consumed_ = 0;
  std::vector<R> current_;
  std::size_t position_ = 0;
};

template <class F, class Range>
auto Pool::imap_impl(F f, Range&& items, std::size_t chunksize, bool ordered) -> IMapIterator<detail::ResultOf<F>> {
  detail::require_plain_function<F>();
  using R = detail::ResultOf<F>;
  static_assert(!std::is_void_v<R>, "mproc: imap needs a function that returns a value; use map for void functions");
  using Item = detail::ItemOf<F, false>;
  if (chunksize == 0) throw std::invalid_argument("mproc: chunksize must be at least 1");
  engine_.check_caller();
  // The view and its position live in a shared state: the range is read lazily, chunk by
  // chunk, on the thread that consumes the results.
  using View = decltype(std::views::all(std::forward<Range>(items)));
  struct Source {
    View view;
    std::ranges::iterator_t<View> position;
    explicit Source(View v) : view(std::move(v)), position(std::ranges::begin(view)) {}
  };
  auto source = std::make_shared<Source>(std::views::all(std::forward<Range>(items)));
  auto next_chunk = [source, chunksize](std::vector<std::byte>& out) {
    std::vector<Item> chunk;
    while (chunk.size() < chunksize && source->position != std::ranges::end(source->view)) {
      chunk.push_back(Item(*source->position));
      ++source->position;
    }
    if (chunk.empty()) return false;
    out = dumps(chunk);
    return true;
  };
  // Enough chunks in flight to keep every worker busy with some queued ahead, and no more:
  // that bound is what keeps an endless input in bounded memory.
  std::size_t max_in_flight = static_cast<std::size_t>(processes()) * 16 + 16;
  return IMapIterator<R>(*this, std::move(next_chunk), &detail::invoke_chunk<detail::FunctionPointer<F>, false>,
                         detail::code_ref(+f), ordered, max_in_flight);
}

}  // namespace mproc
