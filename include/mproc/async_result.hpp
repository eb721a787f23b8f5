// mproc/async_result.hpp — multiprocessing.pool.AsyncResult: the result of a task that
// runs elsewhere.
//
//   mproc::AsyncResult<int> r = pool.apply_async(square, 7);
//   if (r.wait(1s)) std::cout << r.get();   // 49, or rethrows the task's exception
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "mproc/detail/result_state.hpp"
#include "mproc/error.hpp"
#include "mproc/imap_iterator.hpp"

namespace mproc {

/// Python's AsyncResult. Copies share one result. Thread safety: every member may be
/// called from any thread.
template <class R>
class AsyncResult {
 public:
  explicit AsyncResult(std::shared_ptr<detail::ResultState<R>> state) : state_(std::move(state)) {}

  /// Waits for the result and returns it (a copy: get() may be called again), or rethrows
  /// the task's exception: the same type for standard exceptions, RemoteError for others,
  /// WorkerLostError if the worker died, TimeoutError if the task ran out of time.
  R get() const {
    wait();
    return value();
  }
  /// As get(), waiting at most `timeout`. Throws TimeoutError if the result is not ready.
  template <class Rep, class Period>
  R get(std::chrono::duration<Rep, Period> timeout) const {
    if (!wait(timeout)) throw TimeoutError("the result is not ready");
    return value();
  }

  void wait() const { state_->wait_until(std::nullopt); }
  /// Returns true if the result is ready.
  template <class Rep, class Period>
  bool wait(std::chrono::duration<Rep, Period> timeout) const {
    return state_->wait_until(detail::deadline_after(timeout));
  }

  bool ready() const { return state_->done(); }
  /// Whether the task completed without an exception. Throws InvalidStateError if not ready
  /// (Python raises ValueError).
  bool successful() const {
    if (!ready()) throw InvalidStateError("the result is not ready");
    return !state_->error();
  }

 private:
  R value() const {
    if constexpr (std::is_void_v<R>) {
      state_->value();
    } else {
      return state_->value();
    }
  }

  std::shared_ptr<detail::ResultState<R>> state_;
};

/// Per-call options of apply_async / map_async / starmap_async: Python's `callback` and
/// `error_callback` keywords, plus a time limit for this call's task(s):
///
///   pool.apply_async(mproc::CallOptions{.callback = [](const int& r) { ... },
///                                       .error_callback = [](std::exception_ptr e) { ... },
///                                       .timeout = 2s},
///                    square, 7);
///
/// Each callback is called exactly once, on the pool's result thread (never the caller's),
/// before the result becomes ready; it should return quickly. An exception it throws is
/// reported on stderr and otherwise ignored. `timeout` overrides PoolOptions::task_timeout
/// for each task of the call (each chunk of a map).
template <class OnValue = std::nullptr_t, class OnError = std::nullptr_t>
struct CallOptions {
  OnValue callback = nullptr;
  OnError error_callback = nullptr;
  std::optional<std::chrono::nanoseconds> timeout = {};
};

namespace detail {

// The callbacks are called with lvalues, so that every form a C++ user writes for a parameter
// works: `auto`, `const auto&`, `auto&`, `auto&&`, or the type itself.
template <class Options, class R>
void install_callbacks(ResultState<R>& state, Options& callbacks) {
  using OnValue = decltype(callbacks.callback);
  using OnError = decltype(callbacks.error_callback);
  using Stored = typename ResultState<R>::Stored;
  if constexpr (std::is_void_v<R> && std::is_invocable_v<OnValue&>) {
    // A void task's callback may take no argument (Python passes None).
    state.callback = [fn = std::move(callbacks.callback)](const std::monostate&) mutable { fn(); };
  } else if constexpr (!std::is_same_v<OnValue, std::nullptr_t>) {
    static_assert(std::is_invocable_v<OnValue&, const Stored&>,
                  "mproc: CallOptions::callback must take the task's result: [](const R& result) { ... } "
                  "(or auto, const auto&, auto&; no argument for a void task)");
    if constexpr (std::is_invocable_v<OnValue&, const Stored&>)
      state.callback = [fn = std::move(callbacks.callback)](const Stored& value) mutable { fn(value); };
  }
  if constexpr (!std::is_same_v<OnError, std::nullptr_t>) {
    static_assert(std::is_invocable_v<OnError&, std::exception_ptr&>,
                  "mproc: CallOptions::error_callback must take the exception: [](std::exception_ptr error) { ... } "
                  "(or auto, const auto&, auto&)");
    if constexpr (std::is_invocable_v<OnError&, std::exception_ptr&>)
      state.error_callback = [fn = std::move(callbacks.error_callback)](std::exception_ptr error) mutable {
        fn(error);
      };
  }
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

// Collects the chunks of one map in order; completes the map's result when all are in, or
// with the first error.
template <class R>
struct MapCollector {
  std::mutex mutex;
  std::vector<ChunkResult<R>> chunks;
  std::size_t remaining = 0;
  std::shared_ptr<ResultState<MapResult<R>>> state;

  /// A map of nothing: an empty result.
  void complete_empty() { state->set_value({}); }

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

/// The chunks of an eager map (Python's map_async): the items, materialised as Python does to
/// size the chunks, `chunksize` at a time (nullopt: Python's rule for `workers`). Throws
/// std::invalid_argument for chunksize 0.
template <class Item, class Range>
std::vector<std::vector<Item>> split_into_chunks(Range&& items, std::optional<std::size_t> chunksize, int workers) {
  if (chunksize && *chunksize == 0) throw std::invalid_argument("mproc: chunksize must be at least 1");
  std::vector<Item> all;
  for (auto&& item : items) all.push_back(Item(std::forward<decltype(item)>(item)));
  const std::size_t size = chunksize.value_or(default_chunksize(all.size(), workers));
  std::vector<std::vector<Item>> chunks;
  chunks.reserve((all.size() + size - 1) / size);
  for (std::size_t first = 0; first < all.size(); first += size) {
    auto begin = all.begin() + static_cast<std::ptrdiff_t>(first);
    auto end = all.begin() + static_cast<std::ptrdiff_t>(std::min(all.size(), first + size));
    chunks.emplace_back(std::make_move_iterator(begin), std::make_move_iterator(end));
  }
  return chunks;
}

/// The result of an eager map of `count` chunks, with the call's callbacks, and the collector
/// its chunks deliver to. With no chunks, the backend completes it (complete_empty) on its
/// own thread, where callbacks run.
template <class R, class Options>
std::shared_ptr<MapCollector<R>> start_map(Options& callbacks, std::size_t count) {
  auto collector = std::make_shared<MapCollector<R>>();
  collector->state = std::make_shared<ResultState<MapResult<R>>>();
  install_callbacks(*collector->state, callbacks);
  collector->chunks.resize(count);
  collector->remaining = count;
  return collector;
}

}  // namespace detail

}  // namespace mproc
