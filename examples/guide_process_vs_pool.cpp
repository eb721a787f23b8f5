// guide_process_vs_pool — one Process per task, or a Pool? Starting a process costs a fork,
// an exit and a wait (a few hundred microseconds), a Pool pays that once per worker and then
// a message round trip per task. With a few long tasks both cost the same; with many short
// ones the process-per-task version spends its time starting processes.
// (docs/guide.md, "Process or Pool")
//
// Both versions run two tasks at a time (two workers) and return each result to the parent;
// the Pool's time includes starting and stopping its workers.
#include <mproc/mproc.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <vector>

#include "guide.hpp"

namespace {

constexpr std::size_t kWorkers = 2;

// Runs guide::burn(steps) for every input in a Process of its own, kWorkers at a time; each
// child sends its result back through a pipe. Returns the sum of the results.
std::uint64_t process_per_task(const std::vector<std::uint64_t>& inputs) {
  auto [receiver, sender] = mproc::Pipe(/*duplex=*/false);
  std::uint64_t sum = 0;
  for (std::size_t first = 0; first < inputs.size(); first += kWorkers) {
    std::vector<mproc::Process> wave;
    for (std::size_t i = first; i < std::min(first + kWorkers, inputs.size()); ++i)
      wave.emplace_back([&sender](std::uint64_t steps) { sender.send(guide::burn(steps)); }, inputs[i]);
    for (auto& process : wave) process.start();
    for (std::size_t i = 0; i < wave.size(); ++i) sum += receiver.recv<std::uint64_t>();
    for (auto& process : wave) process.join();
  }
  return sum;
}

// The same work on a Pool created (and shut down) for it.
std::uint64_t pool_map(const std::vector<std::uint64_t>& inputs) {
  mproc::Pool pool(static_cast<int>(kWorkers));
  std::vector<std::uint64_t> results = pool.map(guide::burn, inputs);
  return std::accumulate(results.begin(), results.end(), std::uint64_t{0});
}

// Prints both timings for one set of tasks; false if their results differ.
bool compare(const char* label, const std::vector<std::uint64_t>& inputs) {
  auto start = guide::Clock::now();
  const std::uint64_t by_processes = process_per_task(inputs);
  const double processes = guide::seconds_since(start);
  start = guide::Clock::now();
  const std::uint64_t by_pool = pool_map(inputs);
  const double pool = guide::seconds_since(start);
  std::printf("%s: Process per task: %.3f s, Pool: %.3f s\n", label, processes, pool);
  return by_processes == by_pool;
}

}  // namespace

int main() {
  const std::vector<std::uint64_t> few(2, guide::burn_steps_for(0.3));  // two tasks of ~0.3 s
  const std::vector<std::uint64_t> many(1000, 100);                     // 1,000 tasks of under 1 µs
  const bool same = compare("few tasks (2 x 0.3 s)", few) && compare("many tasks (1000 tiny)", many);
  return same ? 0 : 1;
}
