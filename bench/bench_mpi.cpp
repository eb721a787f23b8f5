// mproc::mpi::PoolExecutor in world mode, the counterpart of bench/python/mpi_futures.py
// (mpi4py.futures). Run under the same launcher as it (bench/mpi_compare.py does both):
//
//   mpiexec -n 3 build/bench/bench_mpi      # rank 0 drives ranks 1 and 2
//
// BM_MpiRoundTrip  `executor.submit(inc, i).result()`, one at a time
// BM_MpiBurst      20,000 `submit(inc, i)`, then every `.result()`
// BM_MpiMap        `map(inc, 0..10^6, chunksize = 1,000)`, summed
// Ranks 1..N-1 serve inside main's first PoolExecutor and never reach the benchmarks.
#include <cstdint>
#include <memory>
#include <ranges>
#include <vector>

#include <benchmark/benchmark.h>
#include <mpi.h>

#include "mproc/context.hpp"
#include "mproc/mpi.hpp"

namespace {

constexpr int kBurst = 20'000;
constexpr int kMapItems = 1'000'000;
constexpr std::size_t kMapChunk = 1'000;

std::int64_t inc(std::int64_t x) { return x + 1; }

mproc::mpi::PoolExecutor& executor() {
  static auto* pool = [] {
    auto* made = new mproc::mpi::PoolExecutor();
    // Warm up as the Python side does: connections made, queues at their working depth.
    std::vector<mproc::Future<std::int64_t>> warm;
    for (int i = 0; i < 2000; ++i) warm.push_back(made->submit(inc, i));
    for (auto& f : warm) f.result();
    return made;
  }();
  return *pool;
}

void BM_MpiRoundTrip(benchmark::State& state) {
  auto& pool = executor();
  std::int64_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(pool.submit(inc, i++).result());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MpiRoundTrip)->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_MpiBurst(benchmark::State& state) {
  auto& pool = executor();
  std::vector<mproc::Future<std::int64_t>> futures;
  futures.reserve(kBurst);
  for (auto _ : state) {
    futures.clear();
    for (int i = 0; i < kBurst; ++i) futures.push_back(pool.submit(inc, i));
    for (auto& f : futures) benchmark::DoNotOptimize(f.result());
  }
  state.SetItemsProcessed(state.iterations() * kBurst);
}
BENCHMARK(BM_MpiBurst)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_MpiMap(benchmark::State& state) {
  auto& pool = executor();
  for (auto _ : state) {
    std::int64_t sum = 0;
    for (std::int64_t value : pool.map(inc, std::views::iota(std::int64_t{0}, std::int64_t{kMapItems}), std::nullopt,
                                       kMapChunk))
      sum += value;
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations() * kMapItems);
}
BENCHMARK(BM_MpiMap)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  mproc::freeze_support(argc, argv);
  mproc::mpi::thread_level();  // initialises MPI
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) mproc::mpi::PoolExecutor serve;  // never returns on these ranks
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  delete &executor();  // shuts down before MPI is finalised at exit
  return 0;
}
