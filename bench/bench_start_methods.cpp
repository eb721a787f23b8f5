// The start methods ("fork", "forkserver", "spawn") against each other. Compare with
// bench/python/mp_start_methods.py (multiprocessing.get_context(method)) and, for the start
// cost, bench/limits.cpp's BM_Limit_ForkExitWaitpid; bench/start_methods.py runs all three and
// prints the comparison.
//
// This program is its own spawned copy: main calls mproc::freeze_support() first, and the
// cases are registered afterwards, so a spawned worker runs only the static initialisers of
// the libraries (no benchmark registration) before it reaches its target.
//
// "Parent of N GiB": before the timed loop the benchmark process maps N GiB of anonymous
// private memory and writes every page (transparent huge pages are not requested, so on a
// kernel in "madvise" mode these are 4 KiB pages), and keeps it for the case's duration.
//
//   BM_WorkerStart/<method>/<N>GiB      Pool(2) constructed, the first apply(inc, i) waited
//                                       for, the pool destroyed (close + join); real time per
//                                       cycle, counter first_result_us = construction ->
//                                       first result, cpu_us = CPU time of this process and
//                                       its reaped children per cycle (not the forkserver's
//                                       children: they are the server's)
//   BM_ProcessStartJoin/<method>/<N>GiB Process(noop).start(); join(): one child, the unit
//                                       BM_Limit_ForkExitWaitpid measures; cpu_us as above
//   BM_ReplaceLatency/<method>/2GiB     Pool(2, maxtasksperchild=1) in a 2 GiB parent: each
//                                       iteration is one apply_async(inc, i) and its get()
//                                       (one task in flight, every worker replaced after
//                                       one task); counters p50_us, p99_us, max_us, mean_us
//                                       of submit -> result
//   BM_Apply/<method>                   pool.apply(inc, i) on a warmed Pool(2)
//   BM_Map/<method>                     pool.map(inc, 1,000,000 ints), default chunksize
//                                       (items/s)
// Under forkserver the server is started by an untimed warm-up before each timed loop: the
// figures are the steady state, not the first start (which is a spawn).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include <sys/mman.h>
#include <sys/resource.h>

#include <mproc/mproc.hpp>

#include "bench_support.hpp"

namespace {

using mproc_bench::guarded;
using Clock = std::chrono::steady_clock;

constexpr int kWorkers = 2;
constexpr const char* kMethods[] = {"fork", "forkserver", "spawn"};

int inc(int x) { return x + 1; }
void noop() {}

double microseconds(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

// CPU time (user + system) of this process, all threads, and of its reaped children, in µs:
// what a start costs on an idle machine, whatever the wait for a CPU adds to the wall time.
// A forkserver's children are the server's, not ours: under forkserver this counts only
// this process's side.
double cpu_microseconds() {
  auto sum = [](int who) {
    rusage usage{};
    ::getrusage(who, &usage);
    auto us = [](const timeval& t) { return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_usec); };
    return us(usage.ru_utime) + us(usage.ru_stime);
  };
  return sum(RUSAGE_SELF) + sum(RUSAGE_CHILDREN);
}

// --- the parent's memory -------------------------------------------------------------------

// N GiB of touched private memory, kept between the cases that ask for the same size (the
// repetitions of one case run one after another), released when a case asks for another.
class Ballast {
 public:
  static void ensure(std::size_t gib) {
    static Ballast current;
    if (current.gib_ == gib) return;
    current.release();
    current.acquire(gib);
  }

 private:
  void acquire(std::size_t gib) {
    gib_ = gib;
    size_ = gib << 30;
    if (size_ == 0) return;
    void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap of the parent's ballast failed");
    std::memset(p, 0x5a, size_);  // every page written: private, resident, dirty
    data_ = p;
  }
  void release() {
    if (data_ != nullptr) ::munmap(data_, size_);
    data_ = nullptr;
    size_ = 0;
    gib_ = 0;
  }
  void* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t gib_ = 0;
};

mproc::PoolOptions pool_options(const char* method) {
  return mproc::PoolOptions{.processes = kWorkers, .context = mproc::get_context(method)};
}

void warm_up(mproc::Pool& pool, int tasks = 2000) {
  std::vector<mproc::AsyncResult<int>> results;
  results.reserve(static_cast<std::size_t>(tasks));
  for (int i = 0; i < tasks; ++i) results.push_back(pool.apply_async(inc, i));
  for (auto& result : results) benchmark::DoNotOptimize(result.get());
}

// --- a: worker start -----------------------------------------------------------------------

// One cycle: Pool(2), the first result, the pool destroyed. Returns construction -> result.
Clock::duration pool_cycle(const char* method, int value) {
  const auto start = Clock::now();
  mproc::Pool pool(pool_options(method));
  if (pool.apply(inc, value) != value + 1) throw std::runtime_error("wrong result");
  return Clock::now() - start;
}

void BM_WorkerStart(benchmark::State& state, const char* method, std::size_t gib) {
  guarded(state, [&] {
    Ballast::ensure(gib);
    pool_cycle(method, -1);  // untimed: the forkserver started, the program's pages cached
    double first_result_us = 0;
    int value = 0;
    const double cpu_start = cpu_microseconds();
    for (auto _ : state) first_result_us += microseconds(pool_cycle(method, value++));
    const auto iterations = static_cast<double>(state.iterations());
    state.counters["first_result_us"] = first_result_us / iterations;
    state.counters["cpu_us"] = (cpu_microseconds() - cpu_start) / iterations;
  });
}

void BM_ProcessStartJoin(benchmark::State& state, const char* method, std::size_t gib) {
  guarded(state, [&] {
    Ballast::ensure(gib);
    const mproc::ProcessOptions options{.context = mproc::get_context(method)};
    auto cycle = [&] {
      mproc::Process process(options, noop);
      process.start();
      process.join();
      if (process.exitcode() != 0) throw std::runtime_error("the child failed");
    };
    cycle();  // untimed warm-up
    const double cpu_start = cpu_microseconds();
    for (auto _ : state) cycle();
    state.counters["cpu_us"] = (cpu_microseconds() - cpu_start) / static_cast<double>(state.iterations());
  });
}

// --- b: latency while workers are replaced -------------------------------------------------

double percentile(std::vector<double> sorted, double p) {
  if (sorted.empty()) return 0;
  std::sort(sorted.begin(), sorted.end());
  // Nearest rank: the smallest value with at least p of the samples at or below it.
  auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

void BM_ReplaceLatency(benchmark::State& state, const char* method, std::size_t gib) {
  guarded(state, [&] {
    Ballast::ensure(gib);
    mproc::PoolOptions options = pool_options(method);
    options.maxtasksperchild = 1;
    mproc::Pool pool(options);
    // Untimed: a few tasks, so that replacement is in its steady state.
    for (int i = 0; i < 2 * kWorkers; ++i) benchmark::DoNotOptimize(pool.apply(inc, i));
    std::vector<double> latencies;
    latencies.reserve(static_cast<std::size_t>(state.max_iterations));
    int value = 0;
    for (auto _ : state) {
      const auto start = Clock::now();
      auto result = pool.apply_async(inc, value);
      if (result.get() != value + 1) throw std::runtime_error("wrong result");
      latencies.push_back(microseconds(Clock::now() - start));
      ++value;
    }
    state.counters["p50_us"] = percentile(latencies, 0.50);
    state.counters["p99_us"] = percentile(latencies, 0.99);
    state.counters["max_us"] = percentile(latencies, 1.0);
    state.counters["mean_us"] =
        std::accumulate(latencies.begin(), latencies.end(), 0.0) / static_cast<double>(latencies.size());
  });
}

// --- c: the data path after start ----------------------------------------------------------

void BM_Apply(benchmark::State& state, const char* method) {
  guarded(state, [&] {
    Ballast::ensure(0);
    mproc::Pool pool(pool_options(method));
    warm_up(pool);
    int value = 0;
    for (auto _ : state) {
      if (pool.apply(inc, value) != value + 1) throw std::runtime_error("wrong result");
      ++value;
    }
  });
}

constexpr int kMapItems = 1'000'000;

void BM_Map(benchmark::State& state, const char* method) {
  guarded(state, [&] {
    Ballast::ensure(0);
    mproc::Pool pool(pool_options(method));
    warm_up(pool);
    std::vector<int> items(kMapItems);
    std::iota(items.begin(), items.end(), 0);
    for (auto _ : state) {
      std::vector<int> results = pool.map(inc, items);
      if (results.size() != items.size() || results.back() != kMapItems) throw std::runtime_error("wrong results");
      benchmark::DoNotOptimize(results.data());
    }
    state.SetItemsProcessed(state.iterations() * kMapItems);
  });
}

constexpr int kLatencyTasks = 200;
constexpr std::size_t kLatencyGib = 2;

void register_cases() {
  auto name = [](std::string family, const char* method, std::string suffix = {}) {
    return family + "/" + method + suffix;
  };
  for (std::size_t gib : {0, 1, 4})
    for (const char* method : kMethods)
      benchmark::RegisterBenchmark(name("BM_WorkerStart", method, "/" + std::to_string(gib) + "GiB").c_str(),
                                   [=](benchmark::State& state) { BM_WorkerStart(state, method, gib); })
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
  for (std::size_t gib : {0, 4})
    for (const char* method : kMethods)
      benchmark::RegisterBenchmark(name("BM_ProcessStartJoin", method, "/" + std::to_string(gib) + "GiB").c_str(),
                                   [=](benchmark::State& state) { BM_ProcessStartJoin(state, method, gib); })
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
  for (const char* method : kMethods)
    benchmark::RegisterBenchmark(
        name("BM_ReplaceLatency", method, "/" + std::to_string(kLatencyGib) + "GiB").c_str(),
        [=](benchmark::State& state) { BM_ReplaceLatency(state, method, kLatencyGib); })
        ->Iterations(kLatencyTasks)
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
  for (const char* method : kMethods)
    benchmark::RegisterBenchmark(name("BM_Apply", method).c_str(),
                                 [=](benchmark::State& state) { BM_Apply(state, method); })
        ->UseRealTime();
  for (const char* method : kMethods)
    benchmark::RegisterBenchmark(name("BM_Map", method).c_str(), [=](benchmark::State& state) { BM_Map(state, method); })
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
}

}  // namespace

int main(int argc, char** argv) {
  mproc::freeze_support(argc, argv);  // a spawned worker runs its target here and never returns
  register_cases();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
