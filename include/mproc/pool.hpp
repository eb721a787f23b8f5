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
// unless terminate() was called or PoolOptions::terminate_on_exit is set (Python's
// `with Pool() as pool:` terminates on exit).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <functional>
#include <initializer_list>
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
#include "mproc/detail/braced_items.hpp"
#include "mproc/detail/engine.hpp"
#include "mproc/detail/engine_calls.hpp"
#include "mproc/imap_iterator.hpp"
#include "mproc/initializer.hpp"
#include "mproc/insights.hpp"
#include "mproc/observer.hpp"
#include "mproc/progress.hpp"
#include "mproc/detail/task.hpp"
#include "mproc/error.hpp"
#include "mproc/process.hpp"

namespace mproc {

/// Python's Pool(processes, initializer, initargs, maxtasksperchild) keywords. Every member
/// has a default, so designated initializers may name any subset.
struct PoolOptions {
  /// Number of workers; nullopt means cpu_count(). Must be >= 1.
  std::optional<int> processes = {};
  /// Runs once in each worker before its first task: `init` or `mproc::Initializer(init,
  /// initargs...)`. Under fork any callable works; under spawn/forkserver a plain function
  /// with serializable initargs. If it throws, the pool is broken: pending and later tasks
  /// fail with BrokenExecutor.
  Initializer initializer = {};
  /// Replace a worker after this many tasks; nullopt: never. Must be >= 1.
  std::optional<int> maxtasksperchild = {};
  /// Per-task time limit; a task running longer is stopped by killing its worker and fails
  /// with TimeoutError. nullopt: no limit. Individual calls may override it.
  std::optional<std::chrono::nanoseconds> task_timeout = {};
  /// The start method of the workers (Python's Pool(context=ctx)); nullopt: the current one.
  std::optional<Context> context = {};
  /// What the destructor does with unfinished work. false (the default): it waits for every
  /// accepted task, as std::jthread joins. true: it calls terminate() — Python's
  /// `with Pool() as pool:`, whose exit stops the workers and abandons what is unfinished
  /// (here: fails it with CancelledError). For a pool whose results were all collected
  /// inside the scope the two behave the same.
  bool terminate_on_exit = false;
  /// Hard cap on each worker's memory, in bytes: a task past it fails with MemoryLimitError
  /// and the worker is replaced. Enforced by a memory cgroup per worker (what it touches;
  /// the kernel OOM-kills the worker) or RLIMIT_DATA (heap and private mappings; the
  /// allocation fails): see memory_limit_backend. nullopt: none. At least 16 MiB, and (under
  /// fork, RLIMIT_DATA) above what a worker inherits. See docs/guide.md, "Seeing and bounding
  /// the work".
  std::optional<std::uint64_t> memory_limit = {};
  /// How memory_limit is enforced. automatic (the default): a memory cgroup per worker where
  /// the machine lets the pool make one (the kernel OOM-kills a worker past it; the task fails
  /// with MemoryLimitError), RLIMIT_DATA otherwise. cgroup: throws OSError from the
  /// constructor where none can be made. insights().memory_limits names the one in force.
  MemoryLimitBackend memory_limit_backend = MemoryLimitBackend::automatic;
  /// Soft cap on each worker's resident memory, in bytes (billiard's max_memory_per_child,
  /// which counts KiB): a worker above it after a task is replaced before its next one; the
  /// task itself completes. nullopt: none.
  std::optional<std::uint64_t> max_memory_per_child = {};
  /// Told about every worker event (mproc/observer.hpp), besides the pool's own insights.
  std::vector<std::shared_ptr<Observer>> observers = {};
};


/// Python's multiprocessing.Pool. Thread safety: every member may be called from any thread
/// of the process that created the pool; from a worker (a task calling into its own pool)
/// or another process, every member throws Error.
class Pool {
 public:
  /// Throws std::invalid_argument for processes <= 0 or maxtasksperchild <= 0; OSError.
  explicit Pool(int processes) : Pool(PoolOptions{.processes = processes}) {}
  explicit Pool(PoolOptions options = {});
  /// close() + join(), or terminate() + join() with PoolOptions::terminate_on_exit.
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
    using R = detail::ResultOf<F>;
    auto state = std::make_shared<detail::ResultState<R>>();
    detail::install_callbacks(*state, callbacks);
    detail::TaskSpec task = detail::call_task(state, f, std::forward<Args>(args)...);
    task.timeout = callbacks.timeout;
    engine_.submit(std::move(task));
    return AsyncResult<R>(std::move(state));
  }

  /// f applied to every item, results in input order. chunksize: nullopt uses Python's
  /// rule (about four chunks per worker). Throws std::invalid_argument for chunksize 0, and
  /// the first failing chunk's exception.
  /// Serialized chunks are submitted as results come back, a bounded number at a time, so
  /// a huge input never sits in memory twice.
  /// With `progress`, a progress bar (mproc/progress.hpp) counts the items as they finish;
  /// every map, starmap and imap form takes one, last.
  template <class F, std::ranges::input_range Range>
  auto map(F f, Range&& items, std::optional<std::size_t> chunksize = std::nullopt,
           std::optional<Progress> progress = std::nullopt) -> detail::MapResult<detail::ResultOf<F>> {
    return map_impl<false>(f, std::forward<Range>(items), chunksize, progress);
  }
  template <class F, std::ranges::input_range Range>
  auto map(F f, Range&& items, Progress progress) -> detail::MapResult<detail::ResultOf<F>> {
    return map_impl<false>(f, std::forward<Range>(items), std::nullopt, std::move(progress));
  }

  /// A braced list of items, as Python's pool.map(f, [a, b]): pool.map(f, {1, 2, 3}); each
  /// element is the function's parameter type, so pool.starmap(g, {{"a", 1}, {"b", 2}})
  /// works too. The list is copied (it dies at the end of the call's full expression).
  template <class F>
  auto map(F f, std::initializer_list<detail::BracedItemOf<F, false>> items,
           std::optional<std::size_t> chunksize = std::nullopt) -> detail::MapResult<detail::ResultOf<F>> {
    return map(f, std::vector<detail::BracedItemOf<F, false>>(items), chunksize);
  }

  template <class F, std::ranges::input_range Range>
  auto map_async(F f, Range&& items, std::optional<std::size_t> chunksize = std::nullopt,
                 std::optional<Progress> progress = std::nullopt)
      -> AsyncResult<detail::MapResult<detail::ResultOf<F>>> {
    return map_async_impl<false>(CallOptions{}, f, std::forward<Range>(items), chunksize, progress);
  }
  template <class F>
  auto map_async(F f, std::initializer_list<detail::BracedItemOf<F, false>> items,
                 std::optional<std::size_t> chunksize = std::nullopt)
      -> AsyncResult<detail::MapResult<detail::ResultOf<F>>> {
    return map_async(f, std::vector<detail::BracedItemOf<F, false>>(items), chunksize);
  }
  template <class A, class B, class F, std::ranges::input_range Range>
  auto map_async(CallOptions<A, B> callbacks, F f, Range&& items, std::optional<std::size_t> chunksize = std::nullopt,
                 std::optional<Progress> progress = std::nullopt)
      -> AsyncResult<detail::MapResult<detail::ResultOf<F>>> {
    return map_async_impl<false>(std::move(callbacks), f, std::forward<Range>(items), chunksize, progress);
  }

  /// As map, each item a tuple of arguments: f(std::get<0>(item), std::get<1>(item), ...).
  template <class F, std::ranges::input_range Range>
  auto starmap(F f, Range&& items, std::optional<std::size_t> chunksize = std::nullopt,
               std::optional<Progress> progress = std::nullopt) -> detail::MapResult<detail::ResultOf<F>> {
    return map_impl<true>(f, std::forward<Range>(items), chunksize, progress);
  }
  template <class F>
  auto starmap(F f, std::initializer_list<detail::BracedItemOf<F, true>> items,
               std::optional<std::size_t> chunksize = std::nullopt) -> detail::MapResult<detail::ResultOf<F>> {
    return starmap(f, std::vector<detail::BracedItemOf<F, true>>(items), chunksize);
  }
  template <class F, std::ranges::input_range Range>
  auto starmap(F f, Range&& items, Progress progress) -> detail::MapResult<detail::ResultOf<F>> {
    return map_impl<true>(f, std::forward<Range>(items), std::nullopt, std::move(progress));
  }
  template <class F, std::ranges::input_range Range>
  auto starmap_async(F f, Range&& items, std::optional<std::size_t> chunksize = std::nullopt,
                     std::optional<Progress> progress = std::nullopt)
      -> AsyncResult<detail::MapResult<detail::ResultOf<F>>> {
    return map_async_impl<true>(CallOptions{}, f, std::forward<Range>(items), chunksize, progress);
  }
  template <class F>
  auto starmap_async(F f, std::initializer_list<detail::BracedItemOf<F, true>> items,
                     std::optional<std::size_t> chunksize = std::nullopt)
      -> AsyncResult<detail::MapResult<detail::ResultOf<F>>> {
    return starmap_async(f, std::vector<detail::BracedItemOf<F, true>>(items), chunksize);
  }
  template <class A, class B, class F, std::ranges::input_range Range>
  auto starmap_async(CallOptions<A, B> callbacks, F f, Range&& items,
                     std::optional<std::size_t> chunksize = std::nullopt,
                     std::optional<Progress> progress = std::nullopt)
      -> AsyncResult<detail::MapResult<detail::ResultOf<F>>> {
    return map_async_impl<true>(std::move(callbacks), f, std::forward<Range>(items), chunksize, progress);
  }

  /// Lazy, ordered map: submits a first window of chunks now, then reads `items` as results
  /// are consumed, with a bounded number of chunks in flight, so an endless range runs in
  /// bounded memory. An imap made before close() still completes: join() (and the
  /// destructor) read the rest of its input first, as Python's pool does; its results stay in
  /// the iterator, which may outlive the pool. `items` is stored by reference if it is an
  /// lvalue: it must outlive the iteration. Results of void functions are not available: use
  /// map. Throws Error on a closed pool, std::invalid_argument for chunksize 0.
  template <class F, std::ranges::input_range Range>
  auto imap(F f, Range&& items, std::size_t chunksize = 1, std::optional<Progress> progress = std::nullopt)
      -> IMapIterator<detail::ResultOf<F>> {
    return detail::engine_imap<false>(engine_, f, std::forward<Range>(items), chunksize, true, map_window(), {}, false,
                                      detail::make_progress(progress, detail::size_if_known(items)));
  }
  template <class F, std::ranges::input_range Range>
  auto imap(F f, Range&& items, Progress progress) -> IMapIterator<detail::ResultOf<F>> {
    return imap(f, std::forward<Range>(items), 1, std::move(progress));
  }
  /// As imap, yielding results in completion order.
  template <class F, std::ranges::input_range Range>
  auto imap_unordered(F f, Range&& items, std::size_t chunksize = 1, std::optional<Progress> progress = std::nullopt)
      -> IMapIterator<detail::ResultOf<F>> {
    return detail::engine_imap<false>(engine_, f, std::forward<Range>(items), chunksize, false, map_window(), {},
                                      false, detail::make_progress(progress, detail::size_if_known(items)));
  }
  template <class F, std::ranges::input_range Range>
  auto imap_unordered(F f, Range&& items, Progress progress) -> IMapIterator<detail::ResultOf<F>> {
    return imap_unordered(f, std::forward<Range>(items), 1, std::move(progress));
  }
  /// imap and imap_unordered of a braced list (held by the iterator as a copy).
  template <class F>
  auto imap(F f, std::initializer_list<detail::BracedItemOf<F, false>> items, std::size_t chunksize = 1)
      -> IMapIterator<detail::ResultOf<F>> {
    return imap(f, std::vector<detail::BracedItemOf<F, false>>(items), chunksize);
  }
  template <class F>
  auto imap_unordered(F f, std::initializer_list<detail::BracedItemOf<F, false>> items, std::size_t chunksize = 1)
      -> IMapIterator<detail::ResultOf<F>> {
    return imap_unordered(f, std::vector<detail::BracedItemOf<F, false>>(items), chunksize);
  }

  /// No more tasks; workers exit when the accepted ones (open imaps included) are done.
  void close() { engine_.close(); }
  /// Stops the workers now; every unfinished result fails with CancelledError.
  void terminate() { engine_.terminate(); }
  /// Reads the rest of every open imap's input, then waits for the workers to exit. Throws
  /// Error unless close() or terminate() came first, and from one of the pool's callbacks
  /// (which run on the pool's own thread: it would wait for itself).
  void join() { engine_.join(); }

  /// Number of workers.
  int processes() const noexcept { return engine_.processes(); }
  /// The pids of the current workers.
  std::vector<int> worker_pids() const { return engine_.worker_pids(); }

  /// Where the workers' time went so far (mpire's worker insights); print it with <<.
  Insights insights() {
    engine_.flush_events();
    return insights_->snapshot();
  }

 private:
  // map and starmap: a sized input with results goes through the lazy window (bounded
  // memory); the rest (void functions, unsized ranges, which Python also materialises to
  // size the chunks) through map_async.
  template <bool Star, class F, class Range>
  auto map_impl(F f, Range&& items, std::optional<std::size_t> chunksize, const std::optional<Progress>& progress)
      -> detail::MapResult<detail::ResultOf<F>> {
    using R = detail::ResultOf<F>;
    if constexpr (std::is_void_v<R> || !std::ranges::sized_range<Range>) {
      return map_async_impl<Star>(CallOptions{}, f, std::forward<Range>(items), chunksize, progress).get();
    } else {
      if (chunksize && *chunksize == 0) throw std::invalid_argument("mproc: chunksize must be at least 1");
      std::size_t total = static_cast<std::size_t>(std::ranges::size(items));
      std::vector<R> results;
      results.reserve(total);
      auto lazy = detail::engine_imap<Star>(engine_, f, std::forward<Range>(items),
                                            chunksize.value_or(default_chunksize(total)), true, map_window(), {},
                                            false, detail::make_progress(progress, total));
      while (auto value = lazy.next()) results.push_back(std::move(*value));
      return results;
    }
  }

  template <bool Star, class Options, class F, class Range>
  auto map_async_impl(Options callbacks, F f, Range&& items, std::optional<std::size_t> chunksize,
                      const std::optional<Progress>& progress)
      -> AsyncResult<detail::MapResult<detail::ResultOf<F>>>;

  std::size_t default_chunksize(std::size_t items) const { return detail::default_chunksize(items, processes()); }
  std::size_t map_window() const { return detail::default_map_window(processes()); }

  bool terminate_on_exit_ = false;  // before engine_: set from the options the engine consumes
  // Before the engine: it observes the engine from its first worker on.
  std::shared_ptr<detail::InsightsObserver> insights_;
  detail::Engine engine_;
};


template <bool Star, class Options, class F, class Range>
auto Pool::map_async_impl(Options callbacks, F f, Range&& items, std::optional<std::size_t> chunksize,
                          const std::optional<Progress>& progress_options)
    -> AsyncResult<detail::MapResult<detail::ResultOf<F>>> {
  detail::require_plain_function<F>();
  using R = detail::ResultOf<F>;
  using Item = detail::ItemOf<F, Star>;
  engine_.check_caller();
  auto chunks = detail::split_into_chunks<Item>(std::forward<Range>(items), chunksize, processes());
  auto collector = detail::start_map<R>(callbacks, chunks.size());
  std::shared_ptr<detail::ProgressTracker> progress;
  if (progress_options) {
    std::size_t total = 0;
    for (const auto& chunk : chunks) total += chunk.size();
    progress = detail::make_progress(progress_options, total);
  }
  // Nothing to run: the result is complete, but its callbacks still run on the pool's
  // thread, never the caller's.
  if (chunks.empty()) engine_.post([collector] { collector->complete_empty(); });
  std::vector<detail::TaskSpec> tasks;
  tasks.reserve(chunks.size());
  for (std::size_t index = 0; index < chunks.size(); ++index) {
    detail::TaskSpec task;
    task.invoker = detail::code_ref(&detail::invoke_chunk<detail::FunctionPointer<F>, Star>);
    task.function = detail::function_ref(f);
    task.args = dumps(chunks[index]);
    task.timeout = callbacks.timeout;
    task.done = [collector, index, progress, items = chunks[index].size()](std::span<const std::byte> payload,
                                                                            std::exception_ptr error) {
      detail::progress_chunk_done(progress.get(), items, error);
      if (error) return collector->state->set_error(std::move(error));
      try {
        collector->deliver(index, loads<detail::ChunkResult<R>>(payload));
      } catch (...) {
        collector->state->set_error(std::current_exception());
      }
    };
    tasks.push_back(std::move(task));
  }
  if (!tasks.empty()) engine_.submit(std::move(tasks));
  return AsyncResult<detail::MapResult<R>>(collector->state);
}

}  // namespace mproc
