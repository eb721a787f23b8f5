// mproc/process_pool_executor.hpp — concurrent.futures.ProcessPoolExecutor, on the same
// engine as mproc::Pool (one engine, two façades).
//
//   int square(int x) { return x * x; }
//
//   mproc::ProcessPoolExecutor executor({.max_workers = 4});
//   mproc::Future<int> f = executor.submit(square, 7);
//   int fortynine = f.result();
//   for (int s : executor.map(square, std::views::iota(0, 100))) use(s);
//
// Tasks are plain functions with serializable arguments and results, as for Pool.
// Where it differs from Python's, deliberately:
// - A worker that dies fails only the future it was running (WorkerLostError) and is
//   replaced; Python marks the whole executor broken (BrokenProcessPool) and fails every
//   pending future. Losing one task to a crash should not cost the other thousands.
// - A per-task time limit (task_timeout) stops a runaway task by killing its worker.
// - map() is lazy with a bounded window (Python 3.14's buffersize) by default.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <ranges>
#include <utility>
#include <vector>

#include "mproc/detail/braced_items.hpp"
#include "mproc/detail/engine.hpp"
#include "mproc/initializer.hpp"
#include "mproc/insights.hpp"
#include "mproc/observer.hpp"
#include "mproc/progress.hpp"
#include "mproc/detail/engine_calls.hpp"
#include "mproc/detail/result_state.hpp"
#include "mproc/future.hpp"
#include "mproc/imap_iterator.hpp"

namespace mproc {

/// Python's ProcessPoolExecutor(max_workers, initializer, initargs, max_tasks_per_child)
/// keywords, plus mproc's task_timeout. Every member has a default.
struct ProcessPoolExecutorOptions {
  /// Number of worker processes; nullopt means cpu_count(). Must be >= 1.
  std::optional<int> max_workers = {};
  /// Runs once in each worker before its first task: `init` or `mproc::Initializer(init,
  /// initargs...)` (under spawn/forkserver a plain function with serializable initargs). If
  /// it throws, the executor is broken: pending futures fail and submit() throws
  /// BrokenExecutor.
  Initializer initializer = {};
  /// Replace a worker after this many tasks; nullopt: never. Must be >= 1.
  std::optional<int> max_tasks_per_child = {};
  /// Per-task time limit: a task running longer is stopped by killing its worker; its future
  /// fails with TimeoutError. nullopt: no limit.
  std::optional<std::chrono::nanoseconds> task_timeout = {};
  /// The start method of the workers (Python's mp_context); nullopt: the current one.
  std::optional<Context> mp_context = {};
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

/// Thread safety: every member may be called from any thread of the process that created
/// the executor; from one of its own tasks (another process) every member throws Error.
class ProcessPoolExecutor {
 public:
  /// Starts the workers. Throws std::invalid_argument for max_workers <= 0 or
  /// max_tasks_per_child <= 0; OSError.
  explicit ProcessPoolExecutor(ProcessPoolExecutorOptions options = {});
  explicit ProcessPoolExecutor(int max_workers) : ProcessPoolExecutor(ProcessPoolExecutorOptions{.max_workers = max_workers}) {}
  /// shutdown(wait = true): waits for every submitted task.
  ~ProcessPoolExecutor();
  ProcessPoolExecutor(const ProcessPoolExecutor&) = delete;
  ProcessPoolExecutor& operator=(const ProcessPoolExecutor&) = delete;

  /// Schedules f(args...) on a worker. Throws Error after shutdown(), BrokenExecutor if a
  /// worker's initializer failed.
  template <class F, class... Args>
  Future<detail::ResultOf<F>> submit(F f, Args&&... args) {
    using R = detail::ResultOf<F>;
    auto state = std::make_shared<detail::ResultState<R>>();
    detail::TaskSpec task = detail::call_task(state, f, std::forward<Args>(args)...);
    check_open();
    engine_.submit(std::move(task));
    return Future<R>(std::move(state));
  }

  /// Lazy, ordered map of f over `items`: results are yielded in input order; a task's
  /// exception is rethrown when its result is reached. Items are sent `chunksize` at a time,
  /// with at most `buffersize` chunks submitted and not yet consumed (default: enough to keep
  /// every worker busy), so an endless range runs in bounded memory. `timeout` counts from
  /// this call: reaching for a result after it throws TimeoutError and cancels the calls not
  /// yet started, as does destroying the iterator before its end. The first `buffersize`
  /// chunks are submitted at once; the rest as results are consumed, or all of them by
  /// shutdown(wait = true), so a map made before shutdown completes. `items` is held by
  /// reference if it is an lvalue: it must outlive the iteration.
  /// Throws std::invalid_argument for chunksize 0 or buffersize 0.
  /// With `progress`, a progress bar (mproc/progress.hpp) counts the items as they finish.
  template <class F, std::ranges::input_range Range>
  IMapIterator<detail::ResultOf<F>> map(F f, Range&& items, std::optional<std::chrono::nanoseconds> timeout = std::nullopt,
                                        std::size_t chunksize = 1, std::optional<std::size_t> buffersize = std::nullopt,
                                        std::optional<Progress> progress = std::nullopt) {
    if (buffersize && *buffersize == 0) throw std::invalid_argument("mproc: buffersize must be at least 1");
    check_open();
    const std::optional<std::size_t> total = detail::size_if_known(items);
    return detail::engine_imap<false>(engine_, f, std::forward<Range>(items), chunksize, true,
                                      buffersize.value_or(detail::default_map_window(max_workers())),
                                      detail::deadline_after(timeout), /*cancel_on_abandon=*/true,
                                      detail::make_progress(progress, total));
  }
  /// map(f, items) with a progress bar; the other arguments as above.
  template <class F, std::ranges::input_range Range>
  IMapIterator<detail::ResultOf<F>> map(F f, Range&& items, Progress progress,
                                        std::optional<std::chrono::nanoseconds> timeout = std::nullopt,
                                        std::size_t chunksize = 1) {
    return map(std::move(f), std::forward<Range>(items), timeout, chunksize, std::nullopt, std::move(progress));
  }
  /// As above, with a timeout of any duration type (hours::max() means no limit).
  template <class F, std::ranges::input_range Range, class Rep, class Period>
  IMapIterator<detail::ResultOf<F>> map(F f, Range&& items, std::chrono::duration<Rep, Period> timeout,
                                        std::size_t chunksize = 1, std::optional<std::size_t> buffersize = std::nullopt) {
    return map(std::move(f), std::forward<Range>(items), std::optional(detail::to_nanoseconds(timeout)), chunksize,
               buffersize);
  }
  /// A braced list, as Python's ex.map(f, [a, b]): ex.map(f, {1, 2, 3}); each element is f's
  /// parameter type. The iterator holds a copy.
  template <class F>
  IMapIterator<detail::ResultOf<F>> map(F f, std::initializer_list<detail::BracedItemOf<F, false>> items,
                                        std::optional<std::chrono::nanoseconds> timeout = std::nullopt,
                                        std::size_t chunksize = 1, std::optional<std::size_t> buffersize = std::nullopt) {
    return map(std::move(f), std::vector<detail::BracedItemOf<F, false>>(items), timeout, chunksize, buffersize);
  }

  /// Python's shutdown: no more submissions; with `cancel_futures`, futures not yet handed
  /// to a worker are cancelled; with `wait`, returns once every remaining task is done and
  /// the workers have exited. Can be called more than once.
  void shutdown(bool wait = true, bool cancel_futures = false);

  /// Number of worker processes.
  int max_workers() const noexcept { return engine_.processes(); }
  /// The pids of the current workers (they change as workers are replaced).
  std::vector<int> worker_pids() const { return engine_.worker_pids(); }

  /// Where the workers' time went so far (mpire's worker insights); print it with <<.
  Insights insights() {
    engine_.flush_events();
    return insights_->snapshot();
  }

 private:
  void check_open() const;

  std::shared_ptr<detail::InsightsObserver> insights_;  // before the engine, which it observes
  detail::Engine engine_;
  std::atomic<bool> shut_down_{false};
};

}  // namespace mproc
