// mproc/thread_pool.hpp — multiprocessing.pool.ThreadPool: the Pool API on threads of this
// process. Any callable works (captures included); nothing is serialized; a task's exception
// reaches get() as the original exception object.
//
//   mproc::ThreadPool pool(8);
//   auto sizes = pool.map([&](const std::string& url) { return fetch(url).size(); }, urls);
//
// Differences from mproc::Pool, all because a thread cannot be stopped from outside: there
// is no per-task timeout (CallOptions::timeout is rejected), and terminate() fails the
// queued tasks with CancelledError but lets the running ones finish.
#pragma once

#include <cstddef>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/async_result.hpp"
#include "mproc/detail/braced_items.hpp"
#include "mproc/detail/thread_workers.hpp"
#include "mproc/error.hpp"
#include "mproc/imap_iterator.hpp"
#include "mproc/progress.hpp"
#include "mproc/thread_pool_executor.hpp"

namespace mproc {

/// Python's ThreadPool(processes, initializer, initargs) keywords.
struct ThreadPoolOptions {
  /// Number of threads; nullopt means cpu_count(). Must be >= 1.
  std::optional<int> processes = {};
  /// Runs once in each thread before its first task; if it throws, the pool is broken.
  std::function<void()> initializer = {};
};

namespace detail {

// What calling f on one item of a map gives: f(item), or f(args...) for a starmap tuple.
template <bool Star, class F, class Item>
decltype(auto) call_item(F& f, Item&& item) {
  if constexpr (Star) {
    return std::apply(f, std::forward<Item>(item));
  } else {
    return f(std::forward<Item>(item));
  }
}
template <bool Star, class F, class Item>
using ItemResult = decltype(call_item<Star>(std::declval<F&>(), std::declval<Item>()));

}  // namespace detail

/// Thread safety: every member may be called from any thread; join() not from one of the
/// pool's own tasks (Error: it would wait for itself).
class ThreadPool {
 public:
  /// Throws std::invalid_argument for processes <= 0.
  explicit ThreadPool(int processes) : ThreadPool(ThreadPoolOptions{.processes = processes}) {}
  explicit ThreadPool(ThreadPoolOptions options = {});
  /// Waits for every accepted task (close() + join()); after terminate(), for the running ones.
  /// May run in one of the pool's own tasks or callbacks (one holding the last shared_ptr to
  /// it): it then waits for the other threads, and the current one finishes the queue after.
  ~ThreadPool() = default;
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  template <class F, class... Args>
  auto apply(F&& f, Args&&... args) {
    return apply_async(std::forward<F>(f), std::forward<Args>(args)...).get();
  }

  /// Runs f(args...) (arguments copied or moved now) on a thread. The first argument may be
  /// mproc::CallOptions{...} (callbacks; a timeout is rejected with std::invalid_argument).
  template <class F, class... Args>
    requires(!detail::IsCallOptions<std::decay_t<F>>::value)
  auto apply_async(F&& f, Args&&... args) {
    return apply_async(CallOptions{}, std::forward<F>(f), std::forward<Args>(args)...);
  }
  template <class A, class B, class F, class... Args>
  auto apply_async(CallOptions<A, B> callbacks, F&& f, Args&&... args) {
    reject_timeout(callbacks);
    auto call = detail::bind_call(std::forward<F>(f), std::forward<Args>(args)...);
    using R = decltype(call());
    auto state = std::make_shared<detail::ResultState<R>>();
    detail::install_callbacks(*state, callbacks);
    workers_.submit(std::make_unique<detail::StateJob<R, decltype(call)>>(state, std::move(call)));
    return AsyncResult<R>(std::move(state));
  }

  /// f applied to every item, results in input order (Python's default chunksize when none
  /// is given). Throws std::invalid_argument for chunksize 0, and the first failing chunk's
  /// exception.
  template <class F, std::ranges::input_range Range>
  auto map(F f, Range&& items, std::optional<std::size_t> chunksize = std::nullopt, std::optional<Progress> progress = std::nullopt) {
    return map_async(std::move(f), std::forward<Range>(items), chunksize, std::move(progress)).get();
  }
  /// Every map, starmap and imap form takes a progress bar (mproc/progress.hpp), last.
  template <class F, std::ranges::input_range Range>
  auto map(F f, Range&& items, Progress progress) {
    return map(std::move(f), std::forward<Range>(items), std::nullopt, std::move(progress));
  }
  /// A braced list, as Python's pool.map(f, [a, b]): pool.map(f, {1, 2, 3}); the element
  /// type is f's parameter (f may not be a generic lambda here). The list is copied.
  template <class F>
  auto map(F f, std::initializer_list<detail::BracedItemOf<F, false>> items,
           std::optional<std::size_t> chunksize = std::nullopt) {
    return map(std::move(f), std::vector<detail::BracedItemOf<F, false>>(items), chunksize);
  }
  template <class F, std::ranges::input_range Range>
    requires(!detail::IsCallOptions<F>::value)
  auto map_async(F f, Range&& items, std::optional<std::size_t> chunksize = std::nullopt, std::optional<Progress> progress = std::nullopt) {
    return map_async_impl<false>(CallOptions{}, std::move(f), std::forward<Range>(items), chunksize, progress);
  }
  template <class A, class B, class F, std::ranges::input_range Range>
  auto map_async(CallOptions<A, B> callbacks, F f, Range&& items, std::optional<std::size_t> chunksize = std::nullopt,
                 std::optional<Progress> progress = std::nullopt) {
    return map_async_impl<false>(std::move(callbacks), std::move(f), std::forward<Range>(items), chunksize, progress);
  }

  /// As map, each item a tuple of arguments.
  template <class F, std::ranges::input_range Range>
  auto starmap(F f, Range&& items, std::optional<std::size_t> chunksize = std::nullopt, std::optional<Progress> progress = std::nullopt) {
    return starmap_async(std::move(f), std::forward<Range>(items), chunksize, std::move(progress)).get();
  }
  template <class F, std::ranges::input_range Range>
  auto starmap(F f, Range&& items, Progress progress) {
    return starmap(std::move(f), std::forward<Range>(items), std::nullopt, std::move(progress));
  }
  /// pool.starmap(f, {{"a", 1}, {"b", 2}}): each element is the tuple of f's parameters.
  template <class F>
  auto starmap(F f, std::initializer_list<detail::BracedItemOf<F, true>> items,
               std::optional<std::size_t> chunksize = std::nullopt) {
    return starmap(std::move(f), std::vector<detail::BracedItemOf<F, true>>(items), chunksize);
  }
  template <class F, std::ranges::input_range Range>
    requires(!detail::IsCallOptions<F>::value)
  auto starmap_async(F f, Range&& items, std::optional<std::size_t> chunksize = std::nullopt, std::optional<Progress> progress = std::nullopt) {
    return map_async_impl<true>(CallOptions{}, std::move(f), std::forward<Range>(items), chunksize, progress);
  }
  template <class A, class B, class F, std::ranges::input_range Range>
  auto starmap_async(CallOptions<A, B> callbacks, F f, Range&& items,
                     std::optional<std::size_t> chunksize = std::nullopt, std::optional<Progress> progress = std::nullopt) {
    return map_async_impl<true>(std::move(callbacks), std::move(f), std::forward<Range>(items), chunksize, progress);
  }

  /// Lazy ordered map with a bounded number of chunks in flight (see Pool::imap).
  template <class F, std::ranges::input_range Range>
  auto imap(F f, Range&& items, std::size_t chunksize = 1, std::optional<Progress> progress = std::nullopt) {
    auto tracker = detail::make_progress(progress, detail::size_if_known(items));
    return detail::threads_imap(workers_, std::move(f), std::forward<Range>(items), chunksize, true, map_window(),
                                std::nullopt, false, std::move(tracker));
  }
  template <class F, std::ranges::input_range Range>
  auto imap(F f, Range&& items, Progress progress) {
    return imap(std::move(f), std::forward<Range>(items), 1, std::move(progress));
  }
  /// As imap, in completion order.
  template <class F, std::ranges::input_range Range>
  auto imap_unordered(F f, Range&& items, std::size_t chunksize = 1, std::optional<Progress> progress = std::nullopt) {
    auto tracker = detail::make_progress(progress, detail::size_if_known(items));
    return detail::threads_imap(workers_, std::move(f), std::forward<Range>(items), chunksize, false, map_window(),
                                std::nullopt, false, std::move(tracker));
  }
  template <class F, std::ranges::input_range Range>
  auto imap_unordered(F f, Range&& items, Progress progress) {
    return imap_unordered(std::move(f), std::forward<Range>(items), 1, std::move(progress));
  }
  /// imap and imap_unordered of a braced list (held by the iterator as a copy).
  template <class F>
  auto imap(F f, std::initializer_list<detail::BracedItemOf<F, false>> items, std::size_t chunksize = 1) {
    return imap(std::move(f), std::vector<detail::BracedItemOf<F, false>>(items), chunksize);
  }
  template <class F>
  auto imap_unordered(F f, std::initializer_list<detail::BracedItemOf<F, false>> items, std::size_t chunksize = 1) {
    return imap_unordered(std::move(f), std::vector<detail::BracedItemOf<F, false>>(items), chunksize);
  }

  /// No more tasks; threads exit when the accepted ones are done.
  void close() { workers_.close(); }
  /// No more tasks; queued ones fail with CancelledError; running ones finish (a thread
  /// cannot be killed).
  void terminate();
  /// Waits for the threads to exit. Throws Error unless close() or terminate() came first,
  /// or when called from one of the pool's tasks.
  void join() { workers_.join(); }

  int processes() const noexcept { return workers_.max_threads(); }
  /// Each thread's figures so far (mproc/insights.hpp); print them with <<.
  Insights insights() const { return workers_.insights(); }

 private:
  template <class Options>
  static void reject_timeout(const Options& callbacks) {
    if (callbacks.timeout)
      throw std::invalid_argument("mproc::ThreadPool: a thread cannot be stopped, so there is no per-task timeout");
  }
  std::size_t map_window() const { return detail::default_map_window(processes()); }
  template <bool Star, class Options, class F, class Range>
  auto map_async_impl(Options callbacks, F f, Range&& items, std::optional<std::size_t> chunksize,
                      const std::optional<Progress>& progress);

  detail::ThreadWorkers workers_;
};

template <bool Star, class Options, class F, class Range>
auto ThreadPool::map_async_impl(Options callbacks, F f, Range&& items, std::optional<std::size_t> chunksize,
                                const std::optional<Progress>& progress_options) {
  using Item = std::ranges::range_value_t<Range>;
  using R = detail::ItemResult<Star, F, Item>;
  reject_timeout(callbacks);
  auto chunks = detail::split_into_chunks<Item>(std::forward<Range>(items), chunksize, processes());
  auto collector = detail::start_map<R>(callbacks, chunks.size());
  auto function = std::make_shared<F>(std::move(f));
  std::shared_ptr<detail::ProgressTracker> progress;
  if (progress_options) {
    std::size_t total = 0;
    for (const auto& chunk : chunks) total += chunk.size();
    progress = detail::make_progress(progress_options, total);
  }

  struct ChunkJob final : detail::ThreadJob {
    std::shared_ptr<detail::MapCollector<R>> collector;
    std::shared_ptr<F> function;
    std::shared_ptr<detail::ProgressTracker> progress;
    std::vector<Item> items;
    std::size_t index = 0;
    void run() noexcept override {
      if (collector->chunks.empty()) return collector->complete_empty();  // the map of nothing
      try {
        detail::ChunkResult<R> results{};
        if constexpr (std::is_void_v<R>) {
          for (auto& item : items) detail::call_item<Star>(*function, std::move(item));
          results = items.size();
        } else {
          results.reserve(items.size());
          for (auto& item : items) results.push_back(detail::call_item<Star>(*function, std::move(item)));
        }
        detail::progress_chunk_done(progress.get(), items.size(), nullptr);
        collector->deliver(index, std::move(results));
      } catch (...) {
        detail::progress_chunk_done(progress.get(), 0, std::current_exception());
        collector->state->set_error(std::current_exception());
      }
    }
    void fail(std::exception_ptr error) noexcept override {
      detail::progress_chunk_done(progress.get(), 0, error);
      collector->state->set_error(std::move(error));
    }
  };
  std::vector<std::unique_ptr<detail::ThreadJob>> jobs;
  jobs.reserve(chunks.size());
  // An empty map still completes (and calls its callbacks) on a pool thread: one job of nothing.
  if (chunks.empty()) {
    auto job = std::make_unique<ChunkJob>();
    job->collector = collector;
    jobs.push_back(std::move(job));
  }
  for (std::size_t index = 0; index < chunks.size(); ++index) {
    auto job = std::make_unique<ChunkJob>();
    job->collector = collector;
    job->function = function;
    job->progress = progress;
    job->items = std::move(chunks[index]);
    job->index = index;
    jobs.push_back(std::move(job));
  }
  workers_.submit(std::move(jobs));
  return AsyncResult<detail::MapResult<R>>(collector->state);
}

}  // namespace mproc
