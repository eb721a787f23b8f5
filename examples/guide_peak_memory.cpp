// guide_peak_memory — the tutorial claims "Process keeps all tasks in memory; Pool keeps only
// the running ones" and "use Pool when tasks are many and memory-heavy", measured
// (docs/guide.md, "Tutorial claims, measured").
//
// 16 tasks, each allocating and writing 16 MiB, holding it 50 ms, returning a checksum. Run
// as 16 Processes started at once, as 16 Processes started two at a time, and on a Pool(2).
// A sampling thread adds up the private memory (smaps_rollup: Private_Clean + Private_Dirty)
// of the children alive at each moment; the peak is printed.
#include <mproc/mproc.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>
#include <sys/types.h>

namespace {

constexpr int kTasks = 16;
constexpr std::size_t kTaskBytes = 16u << 20;

std::uint64_t heavy_task(int seed) {
  std::vector<unsigned char> buffer(kTaskBytes);
  std::memset(buffer.data(), seed + 1, buffer.size());   // every page written: really in memory
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < buffer.size(); i += 4096) sum += buffer[i];
  return sum;
}

// Private memory of one process in bytes (0 once it is gone).
std::size_t private_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
  std::string key;
  std::size_t kib = 0, total = 0;
  while (in >> key) {
    if (key == "Private_Clean:" || key == "Private_Dirty:") {
      in >> kib;
      total += kib;
    }
  }
  return total * 1024;
}

// Samples the summed private memory of the pids `pids()` returns until stopped.
class PeakSampler {
 public:
  template <class Pids>
  explicit PeakSampler(Pids pids)
      : thread_([this, pids] {
          while (!stop_.load()) {
            std::size_t sum = 0;
            for (pid_t pid : pids()) sum += private_bytes(pid);
            peak_ = std::max(peak_.load(), sum);
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
          }
        }) {}
  double stop_mib() {
    stop_ = true;
    thread_.join();
    return static_cast<double>(peak_.load()) / (1 << 20);
  }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<std::size_t> peak_{0};
  std::thread thread_;
};

// The pids of the running children (the sampler reads them while main starts them).
std::mutex pids_mutex;
std::vector<pid_t> child_pids;
std::vector<pid_t> current_pids() {
  std::lock_guard guard(pids_mutex);
  return child_pids;
}

double processes(int at_once) {
  {
    std::lock_guard guard(pids_mutex);
    child_pids.clear();
  }
  PeakSampler sampler(current_pids);
  for (int first = 0; first < kTasks; first += at_once) {
    std::vector<mproc::Process> wave;
    for (int i = first; i < std::min(first + at_once, kTasks); ++i) wave.emplace_back(heavy_task, i);
    for (auto& p : wave) {
      p.start();
      std::lock_guard guard(pids_mutex);
      child_pids.push_back(p.pid());
    }
    for (auto& p : wave) p.join();
  }
  return sampler.stop_mib();
}

double pool() {
  mproc::Pool pool(2);
  const std::vector<int> pids = pool.worker_pids();
  const std::vector<pid_t> workers(pids.begin(), pids.end());
  PeakSampler sampler([workers] { return workers; });
  std::vector<int> seeds(kTasks);
  for (int i = 0; i < kTasks; ++i) seeds[static_cast<std::size_t>(i)] = i;
  pool.map(heavy_task, seeds, 1);
  return sampler.stop_mib();
}

}  // namespace

int main() {
  const double all_at_once = processes(kTasks);
  const double two_at_once = processes(2);
  const double by_pool = pool();
  std::printf("16 tasks x 16 MiB, peak private memory of the children: 16 Processes at once %.0f MiB, "
              "Processes 2 at a time %.0f MiB, Pool(2) %.0f MiB\n",
              all_at_once, two_at_once, by_pool);
  return 0;
}
