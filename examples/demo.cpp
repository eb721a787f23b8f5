// demo — two I/O-bound tasks run as two mproc::Processes, timed against running them one
// after the other. The Python original:
//
//   def io_task(name, conn):
//       time.sleep(0.5)                      # waiting on I/O
//       conn.send(f"{name} done in {os.getpid()}")
//   a, b = Pipe()
//   procs = [Process(target=io_task, args=(n, b)) for n in ("fetch", "store")]
//   for p in procs: p.start()
//   for p in procs: print(a.recv())
//   for p in procs: p.join()
#include <mproc/mproc.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kIoWait = std::chrono::milliseconds(500);

// Stands for a task that spends its time waiting on I/O (a download, a disk, a database).
std::string io_task(const std::string& name) {
  std::this_thread::sleep_for(kIoWait);
  return name + " done in process " + std::to_string(::getpid());
}

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

}  // namespace

int main() {
  const std::vector<std::string> tasks = {"fetch", "store"};

  auto start = Clock::now();
  for (const auto& name : tasks) io_task(name);
  double sequential = seconds_since(start);

  start = Clock::now();
  auto [results, results_sender] = mproc::Pipe(/*duplex=*/false);
  std::vector<mproc::Process> processes;
  for (const auto& name : tasks)
    processes.emplace_back([&results_sender](const std::string& task) { results_sender.send(io_task(task)); }, name);
  for (auto& process : processes) process.start();
  for (std::size_t i = 0; i < processes.size(); ++i) std::printf("  %s\n", results.recv<std::string>().c_str());
  for (auto& process : processes) process.join();
  double parallel = seconds_since(start);

  for (const auto& process : processes)
    if (process.exitcode() != 0) {
      std::fprintf(stderr, "demo: %s exited with %d\n", process.name().c_str(), process.exitcode().value_or(-1));
      return 1;
    }
  std::printf("sequential: %.2f s\n", sequential);
  std::printf("two processes: %.2f s (%.1fx faster)\n", parallel, sequential / parallel);
  return 0;
}
