// guide_fork_cost — what starting a process costs as the parent grows. fork() copies the
// parent's page tables (not its pages: those are shared copy-on-write), and the child's exit
// tears its copy down, so Process start + join grows with the memory the parent has touched.
// A bare fork + _exit + waitpid beside it shows that this is the kernel's cost, not mproc's.
// Pool workers are forked when the pool is created: create pools early, while the parent is
// small. (docs/guide.md, "What fork costs")
#include <mproc/mproc.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include "guide.hpp"

namespace {

constexpr std::size_t kMiB = std::size_t{1} << 20;

// The median of `runs` calls of start_and_wait(), in milliseconds.
template <class F>
double median_ms(int runs, F start_and_wait) {
  std::vector<double> times;
  for (int i = 0; i < runs; ++i) {
    auto start = guide::Clock::now();
    start_and_wait();
    times.push_back(guide::seconds_since(start) * 1e3);
  }
  std::nth_element(times.begin(), times.begin() + runs / 2, times.end());
  return times[static_cast<std::size_t>(runs / 2)];
}

double start_join_ms(int starts) {
  return median_ms(starts, [] {
    mproc::Process child([] {});
    child.start();
    child.join();
  });
}

// The kernel's share: a bare fork, _exit and waitpid, nothing of mproc's.
double bare_fork_ms(int forks) {
  return median_ms(forks, [] {
    pid_t child = ::fork();
    if (child == 0) ::_exit(0);
    if (child > 0) ::waitpid(child, nullptr, 0);
  });
}

// Pool(2) created, closed and joined, in milliseconds.
double pool_start_ms() {
  auto start = guide::Clock::now();
  mproc::Pool pool(2);
  pool.close();
  pool.join();
  return guide::seconds_since(start) * 1e3;
}

}  // namespace

int main() {
  // A program's first process starts may cost more than later ones (on a loaded VM we saw
  // ten times more); print them apart, and measure the sizes past them.
  std::printf("warm-up, the program's first 100 starts: median %.2f ms\n", start_join_ms(100));

  // The parent's heap grows in steps; every page is written, so it is really there.
  std::vector<std::unique_ptr<char[]>> heap;
  std::size_t touched = 0;
  for (std::size_t target : {std::size_t{0}, 256 * kMiB, 1024 * kMiB}) {
    const std::size_t grow = target - touched;
    if (grow > 0) {
      heap.push_back(std::make_unique_for_overwrite<char[]>(grow));
      std::memset(heap.back().get(), 1, grow);
      volatile char last = heap.back()[grow - 1];  // read back: the writes cannot be optimised away
      (void)last;
      touched = target;
    }
    std::printf("parent heap %4zu MiB: Process start+join %.2f ms, Pool(2) start+stop %.2f ms, bare fork %.2f ms\n",
                touched / kMiB, start_join_ms(21), pool_start_ms(), bare_fork_ms(21));
  }
  return 0;
}
