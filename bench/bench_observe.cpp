// What watching the work costs: a progress bar on the maps that bench_pool.cpp times, and the
// always-on worker insights.
//
//   BM_Progress_MapDefault/<mode>   map(inc, 1,000,000 ints), the default chunksize (items/s)
//   BM_Progress_IMapChunk1/<mode>   imap(inc, 0..100,000, chunksize 1): one task per item, the
//                                   bar counted 100,000 times (items/s)
//     mode 0: no progress; 1: a bar (Display::bar, redrawn 10 times a second) drawn into
//     /dev/null, so the drawing itself is paid; 2: Display::lines into /dev/null
//   BM_Insights_Snapshot            pool.insights() on a pool of 2 workers that ran 2,000 tasks
//
// Insights cannot be turned off: their cost is bench_pool's BM_Pool_Apply and
// BM_Pool_IMapChunk1 on this branch against the same benchmarks built from the commit before
// them (docs/performance.md quotes both).
#include <benchmark/benchmark.h>

#include <fcntl.h>
#include <numeric>
#include <optional>
#include <ranges>
#include <unistd.h>
#include <vector>

#include <mproc/mproc.hpp>
#include <mproc/progress.hpp>

#include "bench_support.hpp"

namespace {

constexpr int kWorkers = 2;
constexpr int kMapItems = 1'000'000;
constexpr int kBurst = 100'000;

int inc(int x) { return x + 1; }

void warm_up(mproc::Pool& pool) {
  std::vector<int> items(2000);
  std::iota(items.begin(), items.end(), 0);
  for (int r : pool.imap(inc, items, 1)) benchmark::DoNotOptimize(r);
}

std::optional<mproc::Progress> progress_for(int mode, int fd) {
  switch (mode) {
    case 1: return mproc::Progress{.display = mproc::Progress::Display::bar, .fd = fd};
    case 2: return mproc::Progress{.display = mproc::Progress::Display::lines, .fd = fd};
    default: return std::nullopt;
  }
}

struct DevNull {
  int fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  ~DevNull() { ::close(fd); }
};

void BM_Progress_MapDefault(benchmark::State& state) {
  mproc_bench::guarded(state, [&] {
    DevNull sink;
    mproc::Pool pool(kWorkers);
    warm_up(pool);
    std::vector<int> items(kMapItems);
    std::iota(items.begin(), items.end(), 0);
    const auto progress = progress_for(static_cast<int>(state.range(0)), sink.fd);
    for (auto _ : state) {
      std::vector<int> results = pool.map(inc, items, std::nullopt, progress);
      if (results.size() != items.size()) {
        state.SkipWithError("wrong results");
        break;
      }
      benchmark::DoNotOptimize(results.data());
    }
    state.SetItemsProcessed(state.iterations() * kMapItems);
  });
}
BENCHMARK(BM_Progress_MapDefault)->Arg(0)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_Progress_IMapChunk1(benchmark::State& state) {
  mproc_bench::guarded(state, [&] {
    DevNull sink;
    mproc::Pool pool(kWorkers);
    warm_up(pool);
    const auto progress = progress_for(static_cast<int>(state.range(0)), sink.fd);
    for (auto _ : state) {
      long long sum = 0;
      for (int r : pool.imap(inc, std::views::iota(0, kBurst), 1, progress)) sum += r;
      benchmark::DoNotOptimize(sum);
    }
    state.SetItemsProcessed(state.iterations() * kBurst);
  });
}
BENCHMARK(BM_Progress_IMapChunk1)->Arg(0)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_Insights_Snapshot(benchmark::State& state) {
  mproc_bench::guarded(state, [&] {
    mproc::Pool pool(kWorkers);
    warm_up(pool);
    for (auto _ : state) benchmark::DoNotOptimize(pool.insights());
  });
}
BENCHMARK(BM_Insights_Snapshot)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
