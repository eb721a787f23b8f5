// mproc/insights.hpp — where a process pool's time went, worker by worker (mpire's
// worker insights): start-up, initializer, tasks done, time working, time waiting for work,
// time the caller's side spent feeding it, peak resident memory, and how each worker ended.
//
//   mproc::Pool pool(4);
//   pool.map(work, items);
//   std::cout << pool.insights();   // a readable table (mpire's print_insights)
//
// Always on: the workers time themselves (two clock reads per task) and publish their figures
// in memory they share with the engine; the engine tells an observer (mproc/observer.hpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mproc/observer.hpp"

namespace mproc {

/// One worker's figures. Times are what the worker measured, as of its last finished task.
struct WorkerInsight {
  std::uint64_t worker = 0;  // its number in the pool (replacements get new numbers)
  pid_t pid = 0;
  std::uint64_t replaces = 0;               // the worker it replaced, 0 for a first one
  std::chrono::nanoseconds startup{0};      // start() to ready, the initializer excluded
  std::chrono::nanoseconds initializer{0};  // running the initializer
  std::uint64_t tasks = 0;                  // tasks finished (a map's chunk is one task)
  std::uint64_t failed = 0;                 // of which threw
  std::chrono::nanoseconds working{0};
  std::chrono::nanoseconds waiting{0};      // blocked waiting for work
  std::chrono::nanoseconds feeding{0};      // the engine writing tasks to it
  std::uint64_t peak_rss_bytes = 0;
  std::optional<WorkerExit> exit;           // nullopt while it lives
  int exitcode = 0;
};

/// A pool's insights: its workers (the live ones and the most recent dead ones) and totals
/// over every worker it has had. Printable with operator<< or table().
struct Insights {
  std::vector<WorkerInsight> workers;
  /// Totals over every worker the pool has had, the dropped old rows included.
  WorkerInsight total;
  /// Workers that ended, by cause.
  std::map<WorkerExit, std::uint64_t> exits;
  /// Which memory limits are in force, in words ("none", "hard: RLIMIT_DATA 256 MiB per
  /// worker", "soft: recycle above 128 MiB resident").
  std::string memory_limits;
  /// Rows of dead workers not kept (a long run with maxtasksperchild has many).
  std::uint64_t dropped_rows = 0;

  /// The table operator<< prints.
  std::string table() const;
};

std::ostream& operator<<(std::ostream& out, const Insights& insights);

namespace detail {

/// The observer behind Pool::insights() and the process executor's. Thread safety: events
/// arrive on the engine's thread; snapshot() may be called from any thread.
class InsightsObserver final : public Observer {
 public:
  explicit InsightsObserver(std::string memory_limits) : memory_limits_(std::move(memory_limits)) {}
  Insights snapshot() const;

  void on_worker_started(const WorkerEvent& event) override;
  void on_worker_ready(const WorkerEvent& event) override;
  void on_tasks_sent(const WorkerEvent& event) override;
  void on_task_finished(const WorkerEvent& event) override;
  void on_worker_died(const WorkerEvent& event) override;
  void on_worker_replaced(const WorkerEvent& event) override;

  /// Dead workers' rows kept for the table; older ones only count in the totals.
  static constexpr std::size_t kDeadRowsKept = 32;

 private:
  WorkerInsight& row(const WorkerEvent& event);  // requires mutex_
  static void take_counters(WorkerInsight& row, const WorkerCounters& counters);

  mutable std::mutex mutex_;
  std::string memory_limits_;
  std::map<std::uint64_t, WorkerInsight> live_;
  std::vector<WorkerInsight> dead_;  // most recent last
  WorkerInsight retired_total_;      // sums over every dead worker
  std::map<WorkerExit, std::uint64_t> exits_;
  std::uint64_t dropped_ = 0;
};

/// The words Insights::memory_limits holds for these limits (0: none), the hard one enforced
/// by `how` ("RLIMIT_DATA", "cgroup v1 memory.limit_in_bytes", "cgroup v2 memory.max").
std::string describe_memory_limits(std::uint64_t hard, std::uint64_t soft, std::string_view how = "RLIMIT_DATA");

}  // namespace detail
}  // namespace mproc
