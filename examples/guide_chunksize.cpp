// guide_chunksize — what chunksize does: a map of many tiny tasks sends one message per
// chunk, so at chunksize 1 the per-message cost (a hand-off to a worker and back) dominates;
// the default chunksize (Python's rule: about four chunks per worker) pays it a few times
// only. (docs/guide.md, "chunksize")
//
// Python:
//   with Pool(2) as pool:
//       pool.map(inc, range(100_000), chunksize=1)
//       pool.map(inc, range(100_000))          # chunksize 12,500 here
#include <mproc/mproc.hpp>

#include <cstddef>
#include <cstdio>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <vector>

#include "guide.hpp"

namespace {

constexpr int kWorkers = 2;
constexpr std::size_t kItems = 100'000;

int inc(int x) { return x + 1; }

// Seconds for pool.map(inc, items, chunksize); checks the results.
double timed_map(mproc::Pool& pool, const std::vector<int>& items, std::optional<std::size_t> chunksize) {
  auto start = guide::Clock::now();
  std::vector<int> results = pool.map(inc, items, chunksize);
  const double seconds = guide::seconds_since(start);
  if (results.size() != items.size() || results.back() != items.back() + 1) throw std::runtime_error("wrong results");
  return seconds;
}

}  // namespace

int main() {
  mproc::Pool pool(kWorkers);
  std::vector<int> items(kItems);
  std::iota(items.begin(), items.end(), 0);
  // Python's default: ceil(items / (4 * workers)).
  const std::size_t default_chunk = (kItems + 4 * kWorkers - 1) / (4 * kWorkers);

  timed_map(pool, std::vector<int>(1000, 1), std::nullopt);  // warm-up: workers started, pages touched
  const double one = timed_map(pool, items, 1);
  const double fitted = timed_map(pool, items, std::nullopt);

  std::printf("map of %zu tiny tasks on Pool(%d)\n", kItems, kWorkers);
  std::printf("chunksize 1: %.3f s (%.0f k tasks/s), default chunksize %zu: %.3f s (%.0f k tasks/s)\n", one,
              kItems / one / 1e3, default_chunk, fitted, kItems / fitted / 1e3);
  return 0;
}
