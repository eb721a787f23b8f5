// guide_apply_async — apply() waits for each task before the next one is submitted, so a
// loop of apply() runs one task at a time however many workers the pool has; apply_async()
// submits them all and the workers run them together. (docs/guide.md, "apply or apply_async")
//
// Python:
//   with Pool(4) as pool:
//       [pool.apply(wait_half_second, (i,)) for i in range(4)]             # ~2 s
//       rs = [pool.apply_async(wait_half_second, (i,)) for i in range(4)]  # ~0.5 s
//       [r.get() for r in rs]
#include <mproc/mproc.hpp>

#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "guide.hpp"

namespace {

constexpr int kTasks = 4;

// A task that spends half a second waiting (on a disk, a network, a database).
int wait_half_second(int i) {
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  return i;
}

}  // namespace

int main() {
  mproc::Pool pool(kTasks);

  auto start = guide::Clock::now();
  for (int i = 0; i < kTasks; ++i) pool.apply(wait_half_second, i);  // blocks until this one is done
  const double apply = guide::seconds_since(start);

  start = guide::Clock::now();
  std::vector<mproc::AsyncResult<int>> results;
  for (int i = 0; i < kTasks; ++i) results.push_back(pool.apply_async(wait_half_second, i));  // returns at once
  for (auto& result : results) result.get();  // now wait for all four, running side by side
  const double apply_async = guide::seconds_since(start);

  std::printf("%d tasks of 0.5 s on Pool(%d)\n", kTasks, kTasks);
  std::printf("apply: %.2f s, apply_async: %.2f s\n", apply, apply_async);
  return 0;
}
