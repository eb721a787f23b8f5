// mproc/detail/mpi_dispatcher.hpp — the backend of mproc::mpi's executors: hands the same
// TaskSpecs the process engine runs (named invoker and function, encoded arguments, a
// Completion) to MPI ranks, and completes them from their answers. The typed façade, the
// futures and the lazy maps (engine_calls.hpp) are the process executor's own.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <mpi.h>

#include "mproc/detail/engine.hpp"

namespace mproc::detail {

class MpiDispatcherCore;

/// Where a dispatcher sends its tasks, and what it does with the ranks when it is done.
struct MpiChannel {
  /// Intra- or intercommunicator: the workers are ranks of its (remote) group.
  MPI_Comm comm = MPI_COMM_NULL;
  std::vector<int> workers;
  /// Tasks go out with this tag, results come back with task_tag + 1 (several executors
  /// may share one communicator: world mode).
  int task_tag = 2;
  enum class End {
    keep,            // the workers serve other executors (world mode)
    stop_and_free,   // tell each worker to stop serving, free the communicator (CommExecutor)
    stop_and_disconnect,  // tell each to stop, MPI_Comm_disconnect (spawned workers)
  };
  End end = End::keep;
};

/// A lazy map's way into the dispatcher (see EngineStream, whose contract it shares).
class MpiStream {
 public:
  MpiStream(std::shared_ptr<MpiDispatcherCore> core, std::uint64_t id) : core_(std::move(core)), id_(id) {}
  ~MpiStream();
  MpiStream(const MpiStream&) = delete;
  MpiStream& operator=(const MpiStream&) = delete;
  /// Queues the map's tasks. Throws BrokenExecutor once the dispatcher is broken.
  void submit(std::vector<TaskSpec> tasks);

 private:
  std::shared_ptr<MpiDispatcherCore> core_;
  std::uint64_t id_;
};

/// Owns one thread that makes every MPI call for its channel. Thread safety: every member
/// may be called from any thread of the process that made it, except join() from a
/// completion callback (it would wait for itself: Error).
class MpiDispatcher {
 public:
  /// Takes the channel over. Throws OSError if the thread cannot start.
  explicit MpiDispatcher(MpiChannel channel);
  /// close() and join(); from the dispatcher's own thread, lets it finish by itself.
  ~MpiDispatcher();
  MpiDispatcher(const MpiDispatcher&) = delete;
  MpiDispatcher& operator=(const MpiDispatcher&) = delete;

  /// Queues tasks. Throws Error once closed, BrokenExecutor once MPI failed.
  void submit(TaskSpec task);
  void submit(std::vector<TaskSpec> tasks);
  /// As Engine::open_stream.
  std::shared_ptr<MpiStream> open_stream(std::function<void(bool to_the_end)> drain,
                                         std::function<void()> abandon = {});
  /// Cancels every queued task with a control and abandons the open maps (Python's
  /// shutdown(cancel_futures=True)); what a worker already holds runs.
  void cancel_pending();
  /// No more tasks; the channel ends once the queued ones are done.
  void close();
  /// Reads the rest of every open map's input, then waits until every task is done and the
  /// channel has ended. Requires close().
  void join();

  int processes() const noexcept;
  /// Throws Error in another process (a forked child) than the one that made it.
  void check_caller() const;

 private:
  std::shared_ptr<MpiDispatcherCore> core_;
};

}  // namespace mproc::detail
