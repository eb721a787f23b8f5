// guide_threads_vs_processes — threads or processes? In C++ there is no GIL: threads run
// CPU-bound work in parallel just as processes do, and both wait on I/O equally well. So the
// choice is not about speed; processes are for what threads cannot give: a crash stays in
// its worker, and a runaway task can be stopped. (docs/guide.md, "Threads or processes")
#include <mproc/mproc.hpp>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <thread>
#include <vector>

#include "guide.hpp"

using namespace std::chrono_literals;

namespace {

constexpr int kCpuWorkers = 2;
constexpr int kIoWorkers = 8;
constexpr int kIoTasks = 40;

// Stands for a request to a remote service: 50 ms of waiting, no CPU.
int wait_on_io(int i) {
  std::this_thread::sleep_for(50ms);
  return i;
}

// A task with a bug in native code, and one that never returns.
int crash(int) {
  std::raise(SIGSEGV);
  return 0;
}
int run_away(int) {
  for (;;) std::this_thread::sleep_for(1h);
}
int answer(int) { return 42; }

// Seconds to map burn over `items`: serially, or on a pool of either kind.
template <class Pool>
double timed_burn_map(Pool& pool, const std::vector<std::uint64_t>& items) {
  auto start = guide::Clock::now();
  pool.map(guide::burn, items);
  return guide::seconds_since(start);
}

// Seconds for an executor (started and shut down inside) to run kIoTasks I/O-bound tasks.
template <class Executor>
double timed_io(Executor&& executor) {
  auto start = guide::Clock::now();
  std::vector<mproc::Future<int>> futures;
  for (int i = 0; i < kIoTasks; ++i) futures.push_back(executor.submit(wait_on_io, i));
  for (auto& future : futures) future.result();
  executor.shutdown();
  return guide::seconds_since(start);
}

}  // namespace

int main() {
  // CPU-bound: eight tasks of ~0.1 s on two workers.
  const std::vector<std::uint64_t> items(8, guide::burn_steps_for(0.1));
  auto start = guide::Clock::now();
  std::uint64_t sum = 0;  // used below, so the compiler cannot drop the serial run
  for (std::uint64_t steps : items) sum += guide::burn(steps);
  const double serial = guide::seconds_since(start);
  mproc::ThreadPool threads(kCpuWorkers);
  mproc::Pool processes(kCpuWorkers);
  const double on_threads = timed_burn_map(threads, items);
  const double on_processes = timed_burn_map(processes, items);
  std::printf("CPU-bound (8 x 0.1 s): serial %.2f s, ThreadPool(%d) %.2f s, Pool(%d) %.2f s\n", serial, kCpuWorkers,
              on_threads, kCpuWorkers, on_processes);
  if (sum == 0) return 1;

  // I/O-bound: forty 50 ms waits on eight workers, the executor's start and shutdown included.
  const double io_threads = timed_io(mproc::ThreadPoolExecutor(kIoWorkers));
  const double io_processes = timed_io(mproc::ProcessPoolExecutor(kIoWorkers));
  std::printf("I/O-bound (%d x 50 ms, %d workers): ThreadPoolExecutor %.2f s, ProcessPoolExecutor %.2f s\n",
              kIoTasks, kIoWorkers, io_threads, io_processes);

  // What only processes give. In a thread, crash() would kill this program and run_away()
  // would hold its thread forever.
  mproc::ProcessPoolExecutor executor({.max_workers = 2, .task_timeout = 200ms});
  try {
    executor.submit(crash, 0).result();
  } catch (const mproc::WorkerLostError&) {
    std::printf("a crashing task: WorkerLostError; ");
  }
  start = guide::Clock::now();
  try {
    executor.submit(run_away, 0).result();
  } catch (const mproc::TimeoutError&) {
    std::printf("a runaway task: TimeoutError after %.2f s; ", guide::seconds_since(start));
  }
  std::printf("the executor still serves: %d\n", executor.submit(answer, 0).result());
  return 0;
}
