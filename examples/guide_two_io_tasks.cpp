// guide_two_io_tasks — the tutorial figure "two I/O tasks: Process 5 ms, Pool 25 ms",
// reproduced, with the Pool's time split into its start-up, the tasks and its shutdown
// (docs/guide.md, "Tutorial claims, measured"; guide_two_io_tasks.py is the same in Python).
//
// Each task writes 4 KiB to a new file, fsyncs nothing, and removes it (the tutorial's I/O is
// as small). Medians of 21 runs, after 5 warm-up runs.
#include <mproc/mproc.hpp>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>
#include <unistd.h>

#include "guide.hpp"

namespace {

int io_task(int index) {
  const std::string path = "/tmp/mproc_guide_io_" + std::to_string(::getpid()) + "_" + std::to_string(index);
  std::FILE* file = std::fopen(path.c_str(), "w");
  if (file == nullptr) return -1;
  static const std::string block(4096, 'x');
  std::fwrite(block.data(), 1, block.size(), file);
  std::fclose(file);
  std::remove(path.c_str());
  return index;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace

int main() {
  std::vector<double> process_total, pool_start, pool_tasks, pool_stop, pool_total;
  for (int run = 0; run < 26; ++run) {
    auto t0 = guide::Clock::now();
    mproc::Process a(io_task, 0), b(io_task, 1);
    a.start();
    b.start();
    a.join();
    b.join();
    const double processes = guide::seconds_since(t0);

    auto t1 = guide::Clock::now();
    double started, tasks;
    {
      mproc::Pool pool(2);
      started = guide::seconds_since(t1);
      auto t2 = guide::Clock::now();
      pool.map(io_task, {0, 1}, 1);
      tasks = guide::seconds_since(t2);
    }  // close + join: the workers exit
    const double total = guide::seconds_since(t1);
    if (run < 5) continue;   // warm-up
    process_total.push_back(processes * 1e3);
    pool_start.push_back(started * 1e3);
    pool_tasks.push_back(tasks * 1e3);
    pool_stop.push_back((total - started - tasks) * 1e3);
    pool_total.push_back(total * 1e3);
  }
  std::printf("two I/O tasks: 2 Processes %.2f ms; Pool(2) %.2f ms = start-up %.2f ms + tasks %.2f ms + "
              "shutdown %.2f ms\n",
              median(process_total), median(pool_total), median(pool_start), median(pool_tasks), median(pool_stop));
  return 0;
}
