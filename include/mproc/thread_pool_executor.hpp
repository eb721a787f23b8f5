// mproc/thread_pool_executor.hpp — concurrent.futures.ThreadPoolExecutor: the executor
// interface on threads of this process. Any callable works (captures included); nothing is
// serialized; a task's exception reaches result() as the original exception object.
//
//   mproc::ThreadPoolExecutor executor({.max_workers = 8, .thread_name_prefix = "fetch"});
//   auto page = executor.submit([&](const std::string& url) { return fetch(url); }, url);
//
// Threads start on demand up to max_workers, as in Python. A thread cannot be stopped from
// outside: there is no per-task timeout here (use ProcessPoolExecutor for that).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <ranges>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/detail/braced_items.hpp"
#include "mproc/detail/result_state.hpp"
#include "mproc/detail/thread_workers.hpp"
#include "mproc/future.hpp"
#include "mproc/imap_iterator.hpp"
#include "mproc/progress.hpp"

namespace mproc {

/// Python's ThreadPoolExecutor(max_workers, thread_name_prefix, initializer, initargs).
struct ThreadPoolExecutorOptions {
  /// Most threads; nullopt means min(32, cpu_count() + 4), Python's default. Must be >= 1.
  std::optional<int> max_workers = {};
  /// Runs once in each thread before its first task. If it throws, the executor is broken:
  /// pending futures fail and submit() throws BrokenExecutor.
  std::function<void()> initializer = {};
  /// Threads are named "<prefix>_<n>" (default prefix "ThreadPoolExecutor"), the prefix
  /// shortened to fit Linux's 15 characters so that the index stays: "ThreadPoolE_12".
  std::string thread_name_prefix = {};
};

namespace detail {

/// f(args...) with the arguments decay-copied now, as std::thread and std::async do.
template <class F, class... Args>
auto bind_call(F&& f, Args&&... args) {
  return [f = std::forward<F>(f), arguments = std::make_tuple(std::forward<Args>(args)...)]() mutable {
    return std::apply(f, std::move(arguments));
  };
}

int default_thread_workers();

/// A lazy map of f over `items` on `workers`, chunk by chunk, through a stream of theirs (the
/// map outlives the pool safely; join() finishes it). With `cancel_on_abandon` (executors),
/// chunks not yet started are dropped once the map times out or its started iterator goes.
template <class F, class Range>
auto threads_imap(ThreadWorkers& workers, F f, Range&& items, std::size_t chunksize, bool ordered,
                  std::size_t max_in_flight, Deadline deadline, bool cancel_on_abandon = false,
                  std::shared_ptr<ProgressTracker> progress = nullptr) {
  using Item = std::ranges::range_value_t<Range>;
  using R = std::invoke_result_t<F&, Item>;
  static_assert(!std::is_void_v<R>, "mproc: a lazy map needs a function that returns a value; use map for void functions");
  if (chunksize == 0) throw std::invalid_argument("mproc: chunksize must be at least 1");
  using Chunk = std::vector<R>;
  auto state = std::make_shared<IMapState<R>>();
  auto staged = std::make_shared<std::vector<std::unique_ptr<ThreadJob>>>();
  auto function = std::make_shared<F>(std::move(f));
  IMapFeed feed;
  auto abandoned = abandon_flag(feed, cancel_on_abandon);
  if (progress) {
    // As engine_imap: a map given up ends its bar at once, on the consumer's thread.
    feed.abandon = [abandon = std::move(feed.abandon), progress, cancel_on_abandon] {
      if (abandon) abandon();
      cancel_on_abandon ? progress->cancel() : progress->stop();
    };
  }
  feed.stage = [read = chunk_reader<Item>(std::forward<Range>(items), chunksize), staged, state, function,
                abandoned, progress, items_read = std::size_t{0}](std::size_t index) mutable {
    // An abandoned map reads no further (shutdown(cancel_futures) must not drain its input).
    if (abandoned && abandoned->load(std::memory_order_relaxed)) return false;
    std::vector<Item> chunk;
    if (!read(chunk)) {
      if (progress) progress->set_total(items_read);
      return false;
    }
    items_read += chunk.size();
    // Each chunk's outcome goes to the map's state rather than a future of its own.
    struct ChunkJob final : ThreadJob {
      std::shared_ptr<IMapState<R>> state;
      std::shared_ptr<F> function;
      std::shared_ptr<std::atomic<bool>> abandoned;
      std::shared_ptr<ProgressTracker> progress;
      std::vector<Item> items;
      std::size_t index;
      std::shared_ptr<std::atomic<bool>> abandon_flag() const override { return abandoned; }
      void run() noexcept override {
        if (abandoned && abandoned->load(std::memory_order_relaxed))
          return fail(abandoned_chunk_error());
        Chunk values;
        std::exception_ptr error;
        try {
          values.reserve(items.size());
          for (auto& item : items) values.push_back((*function)(std::move(item)));
        } catch (...) {
          error = std::current_exception();
        }
        progress_chunk_done(progress.get(), values.size(), error);
        state->deliver(index, std::move(values), std::move(error));
      }
      void fail(std::exception_ptr error) noexcept override {
        progress_chunk_done(progress.get(), 0, error);
        state->deliver(index, {}, std::move(error));
      }
    };
    auto job = std::make_unique<ChunkJob>();
    job->state = state;
    job->function = function;
    job->abandoned = abandoned;
    job->progress = progress;
    job->items = std::move(chunk);
    job->index = index;
    staged->push_back(std::move(job));
    return true;
  };
  auto source = IMapSource::connected(std::move(feed), staged,
                  [&](std::function<void(bool)> drain, std::function<void()> abandon) {
                    return workers.open_stream(std::move(drain), std::move(abandon));
                  });
  return IMapIterator<R>(std::move(state), std::move(source), ordered, max_in_flight, deadline);
}

}  // namespace detail

/// Thread safety: every member may be called from any thread; shutdown(wait = true) not from
/// one of the executor's own tasks (Error: it would wait for itself).
class ThreadPoolExecutor {
 public:
  /// Throws std::invalid_argument for max_workers <= 0.
  explicit ThreadPoolExecutor(ThreadPoolExecutorOptions options = {});
  explicit ThreadPoolExecutor(int max_workers) : ThreadPoolExecutor(ThreadPoolExecutorOptions{.max_workers = max_workers}) {}
  /// shutdown(wait = true): waits for every accepted task. May also run in one of the
  /// executor's own tasks or done callbacks (a task holding the last shared_ptr to it): it
  /// then waits for the other threads, and the current one finishes the queue afterwards.
  ~ThreadPoolExecutor();
  ThreadPoolExecutor(const ThreadPoolExecutor&) = delete;
  ThreadPoolExecutor& operator=(const ThreadPoolExecutor&) = delete;

  /// Schedules f(args...) (arguments copied or moved now). Throws Error after shutdown(),
  /// BrokenExecutor after an initializer failed.
  template <class F, class... Args>
  auto submit(F&& f, Args&&... args) {
    auto call = detail::bind_call(std::forward<F>(f), std::forward<Args>(args)...);
    using R = decltype(call());
    auto state = std::make_shared<detail::ResultState<R>>();
    workers_.submit(std::make_unique<detail::StateJob<R, decltype(call)>>(state, std::move(call)));
    return Future<R>(std::move(state));
  }

  /// Lazy, ordered map, as ProcessPoolExecutor::map (`chunksize` items per task, at most
  /// `buffersize` chunks submitted and not yet consumed; `timeout` counts from this call).
  /// With `progress`, a progress bar (mproc/progress.hpp) counts the items as they finish.
  template <class F, std::ranges::input_range Range>
  auto map(F f, Range&& items, std::optional<std::chrono::nanoseconds> timeout = std::nullopt,
           std::size_t chunksize = 1, std::optional<std::size_t> buffersize = std::nullopt,
           std::optional<Progress> progress = std::nullopt) {
    return map_until(std::move(f), std::forward<Range>(items), detail::deadline_after(timeout), chunksize, buffersize,
                     progress ? &*progress : nullptr);
  }
  /// map(f, items) with a progress bar; the other arguments as above.
  template <class F, std::ranges::input_range Range>
  auto map(F f, Range&& items, Progress progress, std::optional<std::chrono::nanoseconds> timeout = std::nullopt,
           std::size_t chunksize = 1) {
    return map_until(std::move(f), std::forward<Range>(items), detail::deadline_after(timeout), chunksize, std::nullopt,
                     &progress);
  }
  /// As above, with a timeout of any duration type (hours::max() means no limit).
  template <class F, std::ranges::input_range Range, class Rep, class Period>
  auto map(F f, Range&& items, std::chrono::duration<Rep, Period> timeout, std::size_t chunksize = 1,
           std::optional<std::size_t> buffersize = std::nullopt) {
    return map_until(std::move(f), std::forward<Range>(items), detail::deadline_after(timeout), chunksize, buffersize,
                     nullptr);
  }
  /// A braced list, as Python's ex.map(f, [a, b]): ex.map(f, {1, 2, 3}); the element type is
  /// f's parameter (f may not be a generic lambda here). The iterator holds a copy.
  template <class F>
  auto map(F f, std::initializer_list<detail::BracedItemOf<F, false>> items,
           std::optional<std::chrono::nanoseconds> timeout = std::nullopt, std::size_t chunksize = 1,
           std::optional<std::size_t> buffersize = std::nullopt) {
    return map(std::move(f), std::vector<detail::BracedItemOf<F, false>>(items), timeout, chunksize, buffersize);
  }

  /// Python's shutdown: no more submissions; with `cancel_futures`, futures not yet picked up
  /// by a thread are cancelled; with `wait`, returns once every thread has finished.
  void shutdown(bool wait = true, bool cancel_futures = false);

  int max_workers() const noexcept { return workers_.max_threads(); }
  /// Each thread's figures so far (mproc/insights.hpp); print them with <<.
  Insights insights() const { return workers_.insights(); }

 private:
  // `progress`: nullptr for none. A pointer, not a defaulted const std::optional<Progress>&:
  // g++ 12 at -O2 under -fsanitize=thread warns (-Wmaybe-uninitialized, a false positive) on
  // destroying such a defaulted temporary.
  template <class F, class Range>
  auto map_until(F f, Range&& items, detail::Deadline deadline, std::size_t chunksize,
                 std::optional<std::size_t> buffersize, const Progress* progress) {
    if (buffersize && *buffersize == 0) throw std::invalid_argument("mproc: buffersize must be at least 1");
    if (workers_.closed()) throw Error("cannot schedule new tasks after shutdown");
    const std::optional<std::size_t> total = detail::size_if_known(items);
    return detail::threads_imap(workers_, std::move(f), std::forward<Range>(items), chunksize, true,
                                buffersize.value_or(detail::default_map_window(max_workers())), deadline,
                                /*cancel_on_abandon=*/true, detail::make_progress(progress, total));
  }

  detail::ThreadWorkers workers_;
};

}  // namespace mproc
