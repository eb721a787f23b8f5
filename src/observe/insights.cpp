#include "mproc/insights.hpp"

#include <algorithm>
#include <cstdio>
#include <ostream>

namespace mproc {

std::string_view to_string(WorkerExit exit) noexcept {
  switch (exit) {
    case WorkerExit::retired: return "retired";
    case WorkerExit::recycled: return "recycled";
    case WorkerExit::memory_limit: return "memory limit";
    case WorkerExit::timed_out: return "timed out";
    case WorkerExit::terminated: return "terminated";
    case WorkerExit::initializer_failed: return "init failed";
    case WorkerExit::crashed: return "crashed";
  }
  return "unknown";
}

namespace detail {

std::string describe_memory_limits(std::uint64_t hard, std::uint64_t soft, std::string_view how) {
  if (hard == 0 && soft == 0) return "none";
  std::string text;
  if (hard != 0) text += "hard: " + std::string(how) + " " + std::to_string(hard >> 20) + " MiB per worker";
  if (soft != 0) {
    if (!text.empty()) text += "; ";
    text += "soft: recycle above " + std::to_string(soft >> 20) + " MiB resident";
  }
  return text;
}

WorkerInsight& InsightsObserver::row(const WorkerEvent& event) {
  WorkerInsight& insight = live_[event.worker];
  insight.worker = event.worker;
  insight.pid = event.pid;
  return insight;
}

void InsightsObserver::take_counters(WorkerInsight& row, const WorkerCounters& counters) {
  row.working = counters.working;
  row.waiting = counters.waiting;
  row.initializer = counters.initializer;
  if (counters.peak_rss_bytes > row.peak_rss_bytes) row.peak_rss_bytes = counters.peak_rss_bytes;
}

void InsightsObserver::on_worker_started(const WorkerEvent& event) {
  std::lock_guard lock(mutex_);
  row(event);
}

void InsightsObserver::on_worker_ready(const WorkerEvent& event) {
  std::lock_guard lock(mutex_);
  WorkerInsight& insight = row(event);
  take_counters(insight, event.counters);
  insight.startup = event.duration > event.counters.initializer ? event.duration - event.counters.initializer
                                                                : std::chrono::nanoseconds(0);
}

void InsightsObserver::on_tasks_sent(const WorkerEvent& event) {
  std::lock_guard lock(mutex_);
  row(event).feeding += event.duration;
}

void InsightsObserver::on_task_finished(const WorkerEvent& event) {
  std::lock_guard lock(mutex_);
  WorkerInsight& insight = row(event);
  ++insight.tasks;
  if (!event.ok) ++insight.failed;
  take_counters(insight, event.counters);
}

void InsightsObserver::on_worker_replaced(const WorkerEvent& event) {
  std::lock_guard lock(mutex_);
  row(event).replaces = event.replaces;
}

namespace {
void add_into(WorkerInsight& total, const WorkerInsight& row) {
  total.startup += row.startup;
  total.initializer += row.initializer;
  total.tasks += row.tasks;
  total.failed += row.failed;
  total.working += row.working;
  total.waiting += row.waiting;
  total.feeding += row.feeding;
  if (row.peak_rss_bytes > total.peak_rss_bytes) total.peak_rss_bytes = row.peak_rss_bytes;
}
}  // namespace

void InsightsObserver::on_worker_died(const WorkerEvent& event) {
  std::lock_guard lock(mutex_);
  WorkerInsight insight = row(event);
  live_.erase(event.worker);
  take_counters(insight, event.counters);
  insight.exit = event.exit;
  insight.exitcode = event.exitcode;
  ++exits_[event.exit];
  add_into(retired_total_, insight);
  dead_.push_back(std::move(insight));
  if (dead_.size() > kDeadRowsKept) {
    dead_.erase(dead_.begin());
    ++dropped_;
  }
}

Insights InsightsObserver::snapshot() const {
  std::lock_guard lock(mutex_);
  Insights insights;
  insights.memory_limits = memory_limits_;
  insights.exits = exits_;
  insights.dropped_rows = dropped_;
  insights.total = retired_total_;
  insights.workers = dead_;
  for (const auto& [serial, insight] : live_) {
    insights.workers.push_back(insight);
    add_into(insights.total, insight);
  }
  std::sort(insights.workers.begin(), insights.workers.end(),
            [](const WorkerInsight& a, const WorkerInsight& b) { return a.worker < b.worker; });
  return insights;
}

}  // namespace detail

namespace {

std::string seconds(std::chrono::nanoseconds time) {
  char text[32];
  const double s = std::chrono::duration<double>(time).count();
  if (s < 1)
    std::snprintf(text, sizeof text, "%.1f ms", s * 1e3);
  else
    std::snprintf(text, sizeof text, "%.2f s", s);
  return text;
}

std::string mebibytes(std::uint64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return text;
}

std::string line(const WorkerInsight& row, const char* label) {
  char text[256];
  std::string state = row.exit ? std::string(to_string(*row.exit)) : "alive";
  std::snprintf(text, sizeof text, "%-6s %7d %-12s %8s %8s %7llu %6llu %8s %8s %8s %9s\n", label,
                static_cast<int>(row.pid), state.c_str(), seconds(row.startup).c_str(),
                seconds(row.initializer).c_str(), static_cast<unsigned long long>(row.tasks),
                static_cast<unsigned long long>(row.failed), seconds(row.working).c_str(), seconds(row.waiting).c_str(),
                seconds(row.feeding).c_str(), mebibytes(row.peak_rss_bytes).c_str());
  return text;
}

}  // namespace

std::string Insights::table() const {
  std::string out = "worker insights (memory limits: " + memory_limits + ")\n";
  char header[256];
  std::snprintf(header, sizeof header, "%-6s %7s %-12s %8s %8s %7s %6s %8s %8s %8s %9s\n", "worker", "pid",
                "state", "start-up", "init", "tasks", "failed", "working", "waiting", "feeding", "peak RSS");
  out += header;
  for (const auto& row : workers) out += line(row, std::to_string(row.worker).c_str());
  if (dropped_rows > 0) out += "(" + std::to_string(dropped_rows) + " earlier workers not listed)\n";
  WorkerInsight sum = total;
  sum.pid = 0;
  std::string total_line = line(sum, "total");
  // The total has no pid or state of its own.
  total_line.replace(7, 20, std::string(20, ' '));
  out += total_line;
  if (!exits.empty()) {
    out += "workers ended:";
    bool first = true;
    for (const auto& [exit, count] : exits) {
      out += first ? " " : ", ";
      out += std::to_string(count) + " " + std::string(to_string(exit));
      first = false;
    }
    out += "\n";
  }
  const double working = std::chrono::duration<double>(total.working).count();
  const double waiting = std::chrono::duration<double>(total.waiting).count();
  if (working + waiting > 0) {
    char share[96];
    std::snprintf(share, sizeof share, "time working: %.1f%%, waiting for work: %.1f%%\n",
                  100 * working / (working + waiting), 100 * waiting / (working + waiting));
    out += share;
  }
  return out;
}

std::ostream& operator<<(std::ostream& out, const Insights& insights) { return out << insights.table(); }

}  // namespace mproc
