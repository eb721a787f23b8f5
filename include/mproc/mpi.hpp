// mproc/mpi.hpp — the ProcessPoolExecutor API over MPI ranks (mpi4py.futures for C++):
// library target mproc::mpi, built when CMake finds MPI (Open MPI on Debian).
//
//   int square(int x) { return x * x; }
//
//   int main(int argc, char** argv) {
//     mproc::freeze_support(argc, argv);              // spawn mode: a worker copy serves here
//     mproc::mpi::PoolExecutor executor({.max_workers = 4});
//     mproc::Future<int> f = executor.submit(square, 7);
//     for (int s : executor.map(square, std::views::iota(0, 100), std::nullopt, 10)) use(s);
//   }
//
// Launch models (docs/guide.md, "From one machine to a cluster"):
// - world mode, `mpiexec -n N ./app`: every rank runs main. On rank 0 a PoolExecutor uses
//   ranks 1..N-1 (at most max_workers of them). On the other ranks the first PoolExecutor
//   constructor serves rank 0's executors, this one and any later ones, until rank 0
//   finalises MPI (or exits, when mproc initialised it); then it finalises MPI and ends the
//   process with std::exit(0): it never returns there.
// - spawn mode, the program alone (world size 1, with or without `mpiexec -n 1`): the
//   executor starts max_workers copies of the program with MPI_Comm_spawn; each serves
//   inside mproc::freeze_support(argc, argv), which main must call first, and ends when the
//   executor shuts down.
// - CommExecutor(comm, root): on `root` an executor over the communicator's other ranks;
//   on those the constructor serves until the root shuts down, then returns (`ex` false).
//
// Tasks are plain functions with serializable arguments, named as under the spawn start
// method: every rank runs the same build of the program, at its own addresses, on any host.
// A task's exception is its future's, the standard types and mproc's as themselves, others
// as RemoteError. A rank that dies ends the whole job under Open MPI (no fault tolerance):
// mpiexec reports the rank, its pid and signal, kills every other rank and exits non-zero.
//
// MPI: mproc initialises it (MPI_Init_thread, asking MPI_THREAD_MULTIPLE) on first use if
// the program has not, and finalises it at exit if it did. A program that calls MPI_Finalize
// itself must destroy (or shut down) its executors first: their threads call MPI. Each executor makes its MPI
// calls on one thread of its own; below MPI_THREAD_MULTIPLE mproc serialises all of its MPI
// calls, and below MPI_THREAD_SERIALIZED (a program that initialised MPI itself with less)
// the executors throw Error.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <ranges>
#include <utility>

// MPI's C API only: the deprecated C++ bindings would need their own library (libmpi_cxx),
// which a program built without CMake's MPI::MPI_CXX target does not link.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include "mproc/detail/engine_calls.hpp"
#include "mproc/detail/mpi_dispatcher.hpp"
#include "mproc/detail/result_state.hpp"
#include "mproc/future.hpp"
#include "mproc/imap_iterator.hpp"

namespace mproc::mpi {

/// The MPI thread support level (MPI_THREAD_SINGLE ... MPI_THREAD_MULTIPLE) of this
/// process, initialising MPI as mproc does if nobody has (a level below
/// MPI_THREAD_SERIALIZED is reported here; the executors refuse it). Throws Error once MPI
/// has been finalised.
int thread_level();

/// Whether this process is an MPI rank serving an executor (inside one of its tasks).
bool is_worker() noexcept;

namespace detail {

/// The executor API both executors share. Thread safety: every member may be called from
/// any thread of the process that made the executor.
class Executor {
 public:
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  /// Schedules f(args...) on a worker rank. Throws Error after shutdown() (or on a rank
  /// that is not the executor's root), BrokenExecutor once MPI failed.
  template <class F, class... Args>
  Future<mproc::detail::ResultOf<F>> submit(F f, Args&&... args) {
    using R = mproc::detail::ResultOf<F>;
    auto state = std::make_shared<mproc::detail::ResultState<R>>();
    mproc::detail::TaskSpec task = mproc::detail::call_task(state, f, std::forward<Args>(args)...);
    check_open();
    dispatcher_->submit(std::move(task));
    return Future<R>(std::move(state));
  }

  /// Lazy, ordered map, as ProcessPoolExecutor::map: `chunksize` items per message, at most
  /// `buffersize` chunks submitted and not yet consumed (default: enough to keep every
  /// worker busy). Throws std::invalid_argument for chunksize 0 or buffersize 0.
  template <class F, std::ranges::input_range Range>
  IMapIterator<mproc::detail::ResultOf<F>> map(F f, Range&& items,
                                               std::optional<std::chrono::nanoseconds> timeout = std::nullopt,
                                               std::size_t chunksize = 1,
                                               std::optional<std::size_t> buffersize = std::nullopt) {
    if (buffersize && *buffersize == 0) throw std::invalid_argument("mproc: buffersize must be at least 1");
    check_open();
    return mproc::detail::engine_imap<false>(*dispatcher_, f, std::forward<Range>(items), chunksize, true,
                                             buffersize.value_or(mproc::detail::default_map_window(max_workers())),
                                             mproc::detail::deadline_after(timeout), /*cancel_on_abandon=*/true);
  }
  template <class F, std::ranges::input_range Range, class Rep, class Period>
  IMapIterator<mproc::detail::ResultOf<F>> map(F f, Range&& items, std::chrono::duration<Rep, Period> timeout,
                                               std::size_t chunksize = 1,
                                               std::optional<std::size_t> buffersize = std::nullopt) {
    return map(std::move(f), std::forward<Range>(items), std::optional(mproc::detail::to_nanoseconds(timeout)),
               chunksize, buffersize);
  }

  /// Python's shutdown: no more submissions; with `cancel_futures`, futures not yet handed
  /// to a rank are cancelled; with `wait`, returns once every remaining task is done (and,
  /// in spawn mode, the spawned copies have ended). Can be called more than once.
  void shutdown(bool wait = true, bool cancel_futures = false);

  /// The number of worker ranks (0 on a rank that is not the executor's root).
  int max_workers() const noexcept { return dispatcher_ ? dispatcher_->processes() : 0; }

 protected:
  Executor() = default;
  /// shutdown(wait = true).
  ~Executor();
  void check_open() const;

  std::unique_ptr<mproc::detail::MpiDispatcher> dispatcher_;
  std::atomic<bool> shut_down_{false};
};

}  // namespace detail

/// mpi4py's MPIPoolExecutor keywords. Every member has a default.
struct PoolExecutorOptions {
  /// World mode: use at most this many of ranks 1..N-1 (nullopt: all). Spawn mode: the
  /// number of copies to spawn (nullopt: the MPI universe size minus one, at least 1).
  /// Must be >= 1.
  std::optional<int> max_workers = {};
};

/// mpi4py's MPIPoolExecutor (see the header comment for the two launch models).
class PoolExecutor : public detail::Executor {
 public:
  /// Rank 0 or a program alone: starts the executor. Any other rank: serves, never returns.
  /// Throws std::invalid_argument for max_workers <= 0; ProcessError when MPI_Comm_spawn
  /// fails (the message says why: no slots, the program not found...); Error when MPI's
  /// thread support is too low, or inside a task on a worker rank.
  explicit PoolExecutor(PoolExecutorOptions options = {});
  explicit PoolExecutor(int max_workers) : PoolExecutor(PoolExecutorOptions{.max_workers = max_workers}) {}
  ~PoolExecutor() = default;
};

/// mpi4py's MPICommExecutor: collective over `comm` (every rank must construct it).
class CommExecutor : public detail::Executor {
 public:
  /// On `root`: an executor over the other ranks of `comm` (an intracommunicator of at
  /// least two ranks). Elsewhere: serves the root's tasks until it shuts down, then returns
  /// an executor that is false. Throws std::invalid_argument for a bad root or comm.
  explicit CommExecutor(MPI_Comm comm = MPI_COMM_WORLD, int root = 0);
  ~CommExecutor() = default;
  /// True on the root.
  explicit operator bool() const noexcept { return dispatcher_ != nullptr; }
};

}  // namespace mproc::mpi
