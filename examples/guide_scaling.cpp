// guide_scaling — the tutorial claim "more processes stop helping because coordination costs
// time", measured past the core count (docs/guide.md, "Tutorial claims, measured").
//
// A fixed amount of pure computation (about 0.8 s of one CPU, 64 tasks) mapped over Pool(n)
// for n = 1, 2, 3, 4, 8, 16, chunksize 1; and 64,000 empty tasks at each n, which is all
// coordination (each result goes back to the parent).
#include <mproc/mproc.hpp>

#include <cstdint>
#include <cstdio>
#include <vector>

#include "guide.hpp"

namespace {

std::uint64_t nothing(std::uint64_t x) { return x; }

}  // namespace

int main() {
  const std::uint64_t steps = guide::burn_steps_for(0.8 / 64);
  const std::vector<std::uint64_t> work(64, steps);
  double serial = 0;
  {
    auto start = guide::Clock::now();
    volatile std::uint64_t sink = 0;
    for (std::uint64_t s : work) sink = sink + guide::burn(s);
    serial = guide::seconds_since(start);
  }
  std::printf("serial: %.3f s (%d CPUs)\n", serial, mproc::cpu_count());
  const std::vector<std::uint64_t> empty(64'000, 1);
  for (int workers : {1, 2, 3, 4, 8, 16}) {
    mproc::Pool pool(workers);
    auto start = guide::Clock::now();
    pool.map(guide::burn, work, 1);
    const double cpu = guide::seconds_since(start);
    start = guide::Clock::now();
    pool.map(nothing, empty, 1);
    const double tiny = guide::seconds_since(start);
    std::printf("Pool(%2d): %.3f s, speed-up %.2fx; 64,000 empty tasks %.1f us each\n", workers, cpu, serial / cpu,
                tiny / 64'000 * 1e6);
  }
  return 0;
}
