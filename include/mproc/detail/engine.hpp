// mproc/detail/engine.hpp — the worker engine behind Pool (and, later, the executors):
// worker processes, dispatch, results, crash and timeout handling. Type-erased: it moves
// encoded arguments and results; the typed façades encode and decode.
#pragma once

#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "mproc/detail/result_state.hpp"
#include "mproc/detail/task.hpp"

namespace mproc::detail {

struct EngineOptions {
  int processes = 1;
  std::function<void()> initializer;
  std::optional<int> max_tasks_per_child;
  std::optional<std::chrono::nanoseconds> task_timeout;
  std::string worker_name_prefix = "ForkPoolWorker";
};

/// Called exactly once, on the engine's thread: with the encoded result (error empty), or
/// with the exception the task ended with (payload empty).
using Completion = std::function<void(std::span<const std::byte> payload, std::exception_ptr error)>;

struct TaskSpec {
  Invoker invoker = nullptr;
  CodeRef function = 0;
  std::vector<std::byte> args;
  std::optional<std::chrono::nanoseconds> timeout;  // overrides the engine's task_timeout
  Completion done;
  /// Optional: the result's state, when it can be cancelled (a Future). The engine calls
  /// set_running() as it hands the task to a worker and drops the task if that fails.
  std::shared_ptr<StateCore> control;
};

class EngineCore;

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

  /// Cancels every task not yet handed to a worker whose TaskSpec has a control (Python's
  /// shutdown(cancel_futures=True)); the others stay queued.
  void cancel_pending();

  /// No more tasks; the workers exit once the queued ones are done.
  void close();
  /// Kills the workers now; every unfinished task completes with CancelledError.
  void terminate();
  /// Waits until the workers have exited. Throws Error unless close() or terminate() came first.
  void join();

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
