// guide_io_bound_tasks — the tutorial claim "Pool waits while a task does I/O and schedules
// no other task; Process suspends the one doing I/O and runs another", measured
// (docs/guide.md, "Tutorial claims, measured").
//
// Eight tasks that each wait (a sleep stands for the I/O) for 1, 10 or 100 ms, run three
// ways: one Process per task, all started at once; a Pool of 2 workers (the core count
// here); a Pool of 8. A pool worker blocked in a task's I/O takes no other task, so Pool(2)
// needs four rounds; the eight processes wait side by side, as do the eight workers of Pool(8).
#include <mproc/mproc.hpp>

#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "guide.hpp"

namespace {

constexpr int kTasks = 8;

int io_task(int milliseconds) {
  std::this_thread::sleep_for(std::chrono::milliseconds(milliseconds));
  return milliseconds;
}

double processes(int milliseconds) {
  auto start = guide::Clock::now();
  std::vector<mproc::Process> all;
  for (int i = 0; i < kTasks; ++i) all.emplace_back(io_task, milliseconds);
  for (auto& p : all) p.start();
  for (auto& p : all) p.join();
  return guide::seconds_since(start);
}

// The pool is made before the clock starts: this is the tasks' time, not the pool's start-up
// (guide_two_io_tasks splits the two).
double pool(int workers, int milliseconds) {
  mproc::Pool pool(workers);
  auto start = guide::Clock::now();
  pool.map(io_task, std::vector<int>(kTasks, milliseconds), 1);
  return guide::seconds_since(start);
}

}  // namespace

int main() {
  for (int milliseconds : {1, 10, 100}) {
    const double by_processes = processes(milliseconds);
    const double by_pool2 = pool(2, milliseconds);
    const double by_pool8 = pool(8, milliseconds);
    std::printf("8 I/O tasks of %3d ms: 8 Processes %.1f ms, Pool(2) %.1f ms, Pool(8) %.1f ms\n", milliseconds,
                by_processes * 1e3, by_pool2 * 1e3, by_pool8 * 1e3);
  }
  return 0;
}
