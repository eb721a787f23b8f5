// mproc::Process benchmarks. Compare with bench/limits.cpp (BM_Limit_ForkExitWaitpid, the
// floor: a bare fork + _exit + waitpid) and bench/python/mp_process.py (Python's
// multiprocessing.Process with the "fork" start method).
#include <benchmark/benchmark.h>

#include <mproc/mproc.hpp>

namespace {

void noop() {}

// What Python's `Process(target=noop).start(); p.join()` does: a new handle per child, the
// child runs an empty target and exits, the parent waits and reaps it. Every iteration is
// a whole child's life, so real time is the measure (the child's CPU time is not ours).
void BM_Process_StartJoin(benchmark::State& state) {
  for (auto _ : state) {
    mproc::Process child(noop);
    child.start();
    child.join();
    if (child.exitcode() != 0) {
      state.SkipWithError("the child did not exit with 0");
      break;
    }
  }
}
BENCHMARK(BM_Process_StartJoin)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
