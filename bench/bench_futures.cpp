// concurrent.futures benchmarks. Compare with bench/python/cf_executor.py
// (concurrent.futures.ProcessPoolExecutor(2) with the "fork" context, ThreadPoolExecutor(2)).
//
//   BM_ProcessPoolExecutor_RoundTrip    submit(inc, i).result() on an idle executor
//   BM_ProcessPoolExecutor_SubmitBurst  100,000 submit(inc, i), then every result (items/s)
//   BM_ThreadPoolExecutor_SubmitBurst   the same on 2 threads (items/s)
//
// Each executor is created before the timed loop and warmed up, as in bench_pool.cpp.
#include <benchmark/benchmark.h>

#include <vector>

#include <mproc/process_pool_executor.hpp>
#include <mproc/thread_pool_executor.hpp>

#include "bench_support.hpp"

namespace {

constexpr int kWorkers = 2;
constexpr int kBurst = 100'000;

int inc(int x) { return x + 1; }

using mproc_bench::guarded;

template <class Executor>
void warm_up(Executor& executor, int tasks = 2000) {
  std::vector<mproc::Future<int>> futures;
  futures.reserve(static_cast<std::size_t>(tasks));
  for (int i = 0; i < tasks; ++i) futures.push_back(executor.submit(inc, i));
  for (auto& future : futures) benchmark::DoNotOptimize(future.result());
}

// Python: `executor.submit(inc, i).result()`.
void BM_ProcessPoolExecutor_RoundTrip(benchmark::State& state) {
  guarded(state, [&] {
    mproc::ProcessPoolExecutor executor(kWorkers);
    warm_up(executor);
    int value = 0;
    for (auto _ : state) {
      if (executor.submit(inc, value).result() != value + 1) {
        state.SkipWithError("wrong result");
        break;
      }
      ++value;
    }
  });
}
BENCHMARK(BM_ProcessPoolExecutor_RoundTrip)->UseRealTime();

// Python: `fs = [executor.submit(inc, i) for i in range(N)]`, then `.result()` on each.
template <class Executor>
void submit_burst(benchmark::State& state) {
  guarded(state, [&] {
    Executor executor(kWorkers);
    warm_up(executor);
    std::vector<mproc::Future<int>> futures;
    futures.reserve(kBurst);
    for (auto _ : state) {
      futures.clear();
      for (int i = 0; i < kBurst; ++i) futures.push_back(executor.submit(inc, i));
      long long sum = 0;
      for (auto& future : futures) sum += future.result();
      benchmark::DoNotOptimize(sum);
    }
    state.SetItemsProcessed(state.iterations() * kBurst);
  });
}
void BM_ProcessPoolExecutor_SubmitBurst(benchmark::State& state) { submit_burst<mproc::ProcessPoolExecutor>(state); }
void BM_ThreadPoolExecutor_SubmitBurst(benchmark::State& state) { submit_burst<mproc::ThreadPoolExecutor>(state); }
BENCHMARK(BM_ProcessPoolExecutor_SubmitBurst)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ThreadPoolExecutor_SubmitBurst)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
