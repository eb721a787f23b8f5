// mproc/observer.hpp — what a process pool's engine reports about its workers, for whoever
// wants to watch: worker insights (mproc/insights.hpp) are one such observer; a user may add
// others (PoolOptions::observers). Taskflow's ObserverInterface is the model: instrumentation
// is an interface the engine calls, not code inside the engine.
//
//   struct Deaths final : mproc::Observer {
//     std::atomic<int> count{0};
//     void on_worker_died(const mproc::WorkerEvent&) override { ++count; }
//   };
//   auto deaths = std::make_shared<Deaths>();
//   mproc::Pool pool({.processes = 4, .observers = {deaths}});
//
// Calls come from the engine's thread (or from a thread calling the pool's insights(), which
// first delivers what is queued), one at a time, never under the engine's lock, in the order
// the engine saw the events. Events of results a waiting caller collected itself (a lone
// apply or submit) are delivered in bulk, the next time the engine wakes. An observer may
// take its own locks but must not block for long (the engine serves no worker meanwhile) and
// must not call into the pool it watches. Exceptions thrown by an observer are swallowed.
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>
#include <sys/types.h>

namespace mproc {

/// Why a worker process ended.
enum class WorkerExit {
  retired,         // stopped in order: the pool closed, or maxtasksperchild was reached
  recycled,        // its resident memory passed max_memory_per_child after a task (soft limit)
  memory_limit,    // a task hit the hard memory limit (memory_limit): allocation failed or OOM kill
  timed_out,       // killed by the engine: its task ran past its time limit
  terminated,      // killed by terminate()
  initializer_failed,
  crashed,         // any other death: a signal, an unexpected exit
};

/// How the hard memory limit (PoolOptions::memory_limit) is enforced. See docs/guide.md,
/// "Bounding a worker's memory".
enum class MemoryLimitBackend {
  automatic,  // a memory cgroup where the machine lets the pool make one, RLIMIT_DATA otherwise
  cgroup,     // a memory cgroup per worker (v1 or v2); the pool's constructor throws OSError
              // when none can be made (no writable memory cgroup, v2 controller not delegated)
  rlimit,     // RLIMIT_DATA on each worker
};

/// The name of `exit` as the insights table prints it ("memory limit", "crashed", ...).
std::string_view to_string(WorkerExit exit) noexcept;

/// What a worker has measured about itself so far (it updates these after every task, in
/// memory it shares with the engine).
struct WorkerCounters {
  std::chrono::nanoseconds working{0};      // running tasks
  std::chrono::nanoseconds waiting{0};      // blocked waiting for tasks to arrive
  std::chrono::nanoseconds initializer{0};  // running the pool's initializer
  std::uint64_t peak_rss_bytes = 0;         // the process's peak resident set (VmHWM)
};

/// One event about one worker. Which fields mean something depends on the callback.
struct WorkerEvent {
  std::uint64_t worker = 0;  // the worker's number in its pool: 1, 2, ... (replacements get new ones)
  pid_t pid = 0;
  std::chrono::steady_clock::time_point time{};
  /// on_tasks_sent: how many tasks travelled in the batch; on_task_finished: 1.
  std::uint64_t tasks = 0;
  /// on_worker_ready: from start() to the "ready" message, the initializer included;
  /// on_tasks_sent: the engine's time writing the batch to the worker ("feeding" it);
  /// on_task_finished: hand-off (or the previous result) to this result, as the engine saw it.
  std::chrono::nanoseconds duration{0};
  bool ok = true;  // on_task_finished: the task returned (did not throw)
  /// on_worker_died: how it ended, and its exit code (Process::exitcode's convention).
  WorkerExit exit = WorkerExit::retired;
  int exitcode = 0;
  /// on_worker_replaced: the number of the worker this one replaces.
  std::uint64_t replaces = 0;
  /// The worker's own measurements, as of this event (on_worker_ready, on_task_finished,
  /// on_worker_died).
  WorkerCounters counters;
};

/// Override what you need; every callback does nothing by default. See the file comment for
/// the threading rules.
class Observer {
 public:
  virtual ~Observer() = default;
  /// The worker process was started (it now runs the initializer, if any).
  virtual void on_worker_started(const WorkerEvent&) {}
  /// Its initializer has run: it takes tasks from now on.
  virtual void on_worker_ready(const WorkerEvent&) {}
  /// A batch of tasks was handed to it (it starts each once those before it are done).
  /// Tasks queued behind a slow one may be taken back and handed to an idle worker (the
  /// engine's rebalancing, README "Gotchas"): they are then reported sent again, to that
  /// worker, so the sum of `tasks` over these events can exceed the tasks submitted;
  /// on_task_finished reports each task once.
  virtual void on_tasks_sent(const WorkerEvent&) {}
  /// One of its tasks finished (returned or threw).
  virtual void on_task_finished(const WorkerEvent&) {}
  /// It has nothing left to do and waits for work.
  virtual void on_worker_waiting(const WorkerEvent&) {}
  /// It ended (exit, exitcode), whatever the reason.
  virtual void on_worker_died(const WorkerEvent&) {}
  /// A new worker (`worker`) took the place of a dead one (`replaces`).
  virtual void on_worker_replaced(const WorkerEvent&) {}
};

}  // namespace mproc
