// mproc/detail/engine.hpp — the worker engine behind Pool (and, later, the executors):
// worker processes, dispatch, results, crash and timeout handling. Type-erased: it moves
// encoded arguments and results; the typed façades encode and decode.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "mproc/context.hpp"
#include "mproc/detail/result_state.hpp"
#include "mproc/detail/task.hpp"
#include "mproc/initializer.hpp"
#include "mproc/observer.hpp"

namespace mproc::detail {

struct EngineOptions {
  int processes = 1;
  Initializer initializer;
  std::optional<int> max_tasks_per_child;
  std::optional<std::chrono::nanoseconds> task_timeout;
  std::string worker_name_prefix = "ForkPoolWorker";
  StartMethod start_method = StartMethod::fork;
  /// Told about every worker event, outside the engine's lock (mproc/observer.hpp).
  std::vector<std::shared_ptr<Observer>> observers;
  /// Hard cap on each worker's memory, in bytes (a memory cgroup's limit, or RLIMIT_DATA: see
  /// memory_backend): a task past it fails (MemoryLimitError) and the worker is replaced. 0: none.
  std::uint64_t memory_limit = 0;
  /// How memory_limit is enforced: rlimit or cgroup (apply_watch_options resolves automatic).
  MemoryLimitBackend memory_backend = MemoryLimitBackend::rlimit;
  /// Soft cap on each worker's resident memory, in bytes: a worker above it after a task is
  /// replaced before its next one (billiard's max_memory_per_child). 0: none.
  std::uint64_t max_memory_per_child = 0;
};

/// Called exactly once, on the engine's thread: with the encoded result (error empty), or
/// with the exception the task ended with (payload empty).
using Completion = std::function<void(std::span<const std::byte> payload, std::exception_ptr error)>;

struct TaskSpec {
  CodeRef invoker;  // an Invoker (task.hpp) for the function's signature
  CodeRef function;
  std::vector<std::byte> args;
  std::optional<std::chrono::nanoseconds> timeout;  // overrides the engine's task_timeout
  Completion done;
  /// Optional: the result's state. The engine calls set_running() as it hands the task to a
  /// worker and drops the task if that fails (a cancelled Future).
  std::shared_ptr<StateCore> control;
  /// With a control: a thread waiting for the result may complete it itself (no callbacks
  /// that must run off the caller's thread), which saves a wake-up on a lone task's round trip.
  bool caller_may_complete = false;
  /// Optional, shared by the chunks of one map: once true, chunks not yet handed to a worker
  /// are dropped, completing with CancelledError (an executor map that timed out or was
  /// dropped, or shutdown(cancel_futures=true)).
  std::shared_ptr<std::atomic<bool>> abandoned;
};

class EngineCore;

/// A lazy map's way into the engine (Engine::open_stream). While a stream is open, the
/// engine keeps its workers even after close(), because the map may still submit: Python's
/// Pool finishes an imap accepted before close(). Thread safety: any thread of the owner.
class EngineStream {
 public:
  EngineStream(std::shared_ptr<EngineCore> core, std::uint64_t id) : core_(std::move(core)), id_(id) {}
  /// Closes the stream: the engine may finish once its other work is done.
  ~EngineStream();
  EngineStream(const EngineStream&) = delete;
  EngineStream& operator=(const EngineStream&) = delete;

  /// Queues the stream's tasks. Throws Error once the engine was terminated or joined
  /// (or is gone), BrokenExecutor if the initializer failed.
  void submit(std::vector<TaskSpec> tasks);

 private:
  std::shared_ptr<EngineCore> core_;
  std::uint64_t id_;
};

/// Owns the workers and the thread that serves them. Thread safety: every member may be
/// called from any thread of the process that created the engine; from any other process
/// (a forked worker included) every member throws Error.
class Engine {
 public:
  /// Starts the workers. Throws std::invalid_argument, OSError.
  explicit Engine(EngineOptions options);
  /// Waits for accepted work unless terminate() was called (then kills the workers).
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  /// Queues tasks. Throws Error once closed or terminated, BrokenExecutor if the
  /// initializer failed.
  void submit(TaskSpec task);
  void submit(std::vector<TaskSpec> tasks);

  /// Opens a stream for a lazy map. `drain(true)` reads the rest of the map's input and
  /// submits it through the stream; join() calls it (on the joining thread) so that what a
  /// map accepted before close() is finished, as in Python. The destructor calls
  /// `drain(false)` instead: the input is read no further (it may be endless). `abandon`, if any, gives the map up
  /// (cancel_pending calls it). Throws as submit() does.
  std::shared_ptr<EngineStream> open_stream(std::function<void(bool to_the_end)> drain,
                                            std::function<void()> abandon = {});

  /// Runs `fn` on the engine's thread, in order with completions: how a result that is
  /// complete from the start (an empty map) still calls its callbacks off the caller's
  /// thread. Throws as submit() does.
  void post(std::function<void()> fn);

  /// Cancels every task not yet handed to a worker whose TaskSpec has a control (Python's
  /// shutdown(cancel_futures=True)), and abandons maps; the others stay queued.
  void cancel_pending();

  /// No more tasks; the workers exit once the queued ones are done.
  void close();
  /// Kills the workers now; every unfinished task completes with CancelledError.
  void terminate();
  /// Reads the rest of every open stream's input, then waits until the workers have exited.
  /// Throws Error unless close() or terminate() came first, and when called on the engine's
  /// own thread (from a callback: it would wait for itself).
  void join();

  /// Delivers the observer events queued so far, on this thread (see EngineCore::flush_events).
  void flush_events();

  int processes() const noexcept;
  /// The pids of the current workers (they change as workers are replaced).
  std::vector<int> worker_pids() const;

  /// Throws Error when called from a process other than the one that created the engine
  /// (a task calling into its own pool would otherwise deadlock).
  void check_caller() const;

 private:
  std::shared_ptr<EngineCore> core_;
};

}  // namespace mproc::detail
