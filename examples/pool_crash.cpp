// pool_crash — what Python's Pool cannot do: a task that kills its worker fails alone.
//
// In Python, `pool.map(f, items)` where one call segfaults (or is killed by the OOM killer)
// hangs forever. Here the task that was running fails with WorkerLostError, the worker is
// replaced, and every other result arrives.
#include <mproc/mproc.hpp>

#include <csignal>
#include <cstdio>
#include <vector>

namespace {

int risky(int x) {
  if (x == 13) std::raise(SIGSEGV);  // stands for a bug in a native library
  return x * x;
}

}  // namespace

int main() {
  mproc::Pool pool(2);
  std::vector<mproc::AsyncResult<int>> results;
  for (int x = 0; x < 20; ++x) results.push_back(pool.apply_async(risky, x));

  int completed = 0, lost = 0;
  for (int x = 0; x < 20; ++x) {
    try {
      results[static_cast<std::size_t>(x)].get();
      ++completed;
    } catch (const mproc::WorkerLostError& error) {
      ++lost;
      std::printf("task %d: %s\n", x, error.what());
    }
  }
  std::printf("completed: %d, lost: %d\n", completed, lost);
  // The pool is still whole: the crashed worker was replaced.
  std::printf("after the crash: risky(12) = %d\n", pool.apply(risky, 12));
  return completed == 19 && lost == 1 ? 0 : 1;
}
