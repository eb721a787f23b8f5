// mproc::Pool benchmarks. Compare with bench/python/mp_pool.py (multiprocessing.Pool(2),
// start method "fork") and, for the round trip, bench/limits.cpp's pipe ping-pong.
//
// Every case uses a pool of 2 workers created before the timed loop (one pool per benchmark
// run) and warmed up with a few tasks, so that the loop measures the steady state: no
// process start-up, and the engine's adaptive prefetch already fitted to the task. Work
// happens in other processes: real time is the measure.
//
//   BM_Pool_Apply               pool.apply(inc, i): one tiny task, submitted and waited for
//   BM_Limit_RelayRoundTrip     the apply's floor: caller -> relay thread -> child -> relay -> caller
//   BM_Pool_ApplyAsyncBurst     100,000 apply_async(inc, i), then every result (items/s)
//   BM_Pool_IMapChunk1          imap(inc, 0..100,000, chunksize 1), consumed in order (items/s)
//   BM_Pool_MapDefault          map(inc, 1,000,000 ints), the default chunksize (items/s)
//   BM_Pool_CpuMapSpeedup/1     map(burn, 16 tasks of ~30 ms); counter `speedup` = the same
//                               16 calls run serially in this process ÷ the pool's time
//                               (/1: 100 tiny tasks before each map, untimed; /0: CPU-bound
//                               maps only, a diagnostic)
//   BM_Limit_ForkSpeedup        the speed-up's limit: the 16 calls over 2 plain forked children
//   BM_Pool_CpuScaling/<n>      map(burn, a fixed total of ~0.25 s split into 4 tasks per
//                               hardware thread) on Pool(n), n = 1, 2, 4, ... up to
//                               hardware_concurrency(); counter `speedup` over serial
//   BM_Pool_WorkerMemory        counters `private_bytes` (Private_Clean + Private_Dirty of
//                               /proc/<pid>/smaps_rollup) and `pss_bytes` of an idle worker
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <fstream>
#include <numeric>
#include <optional>
#include <ranges>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mproc/mproc.hpp>

#include "bench_support.hpp"
#include <mproc/pool.hpp>

namespace {

constexpr int kWorkers = 2;

int inc(int x) { return x + 1; }

// Pure computation: a xorshift chain, one dependent step after another (no closed form, no
// vectorisation, no memory traffic).
std::uint64_t burn(std::uint64_t steps) {
  std::uint64_t x = 0x9E3779B97F4A7C15ull ^ steps;
  for (std::uint64_t i = 0; i < steps; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
  }
  return x;
}

using mproc_bench::guarded;

// Gives every worker a few tasks, so the engine's service-time estimate and the workers'
// allocators are warm before the timed loop.
void warm_up(mproc::Pool& pool, int tasks = 2000) {
  std::vector<mproc::AsyncResult<int>> results;
  results.reserve(static_cast<std::size_t>(tasks));
  for (int i = 0; i < tasks; ++i) results.push_back(pool.apply_async(inc, i));
  for (auto& result : results) benchmark::DoNotOptimize(result.get());
}

// --- latency -----------------------------------------------------------------------------

// Python: `pool.apply(inc, (i,))`.
void BM_Pool_Apply(benchmark::State& state) {
  guarded(state, [&] {
    mproc::Pool pool(kWorkers);
    warm_up(pool);
    int value = 0;
    for (auto _ : state) {
      if (pool.apply(inc, value) != value + 1) {
        state.SkipWithError("wrong result");
        break;
      }
      ++value;
    }
  });
}
BENCHMARK(BM_Pool_Apply)->UseRealTime();

// The floor of a round trip through a relay thread, as Pool::apply makes one: the calling
// thread wakes a relay thread (eventfd), which writes 4 bytes to a child over a pipe and
// poll(2)s; the child echoes them; the relay reads them and wakes the caller (a futex, through
// std::atomic::wait/notify). Four wake-ups per round trip where a plain ping-pong has two;
// raw syscalls, no codec, no allocation.
void BM_Limit_RelayRoundTrip(benchmark::State& state) {
  int to_child[2], from_child[2];
  if (::pipe(to_child) != 0 || ::pipe(from_child) != 0) {
    state.SkipWithError("pipe failed");
    return;
  }
  pid_t child = ::fork();
  if (child == 0) {
    ::close(to_child[1]);  // else our own copy keeps the pipe open: no EOF, no exit
    ::close(from_child[0]);
    std::uint32_t word;
    while (::read(to_child[0], &word, sizeof word) == sizeof word)
      if (::write(from_child[1], &word, sizeof word) != sizeof word) break;
    ::_exit(0);
  }
  ::close(to_child[0]);
  ::close(from_child[1]);
  int wake = ::eventfd(0, EFD_CLOEXEC);
  std::atomic<std::uint32_t> done{0};
  std::thread relay([&] {
    pollfd fds[2] = {{wake, POLLIN, 0}, {from_child[0], POLLIN, 0}};
    for (;;) {
      if (::poll(fds, 2, -1) < 0) return;
      if (fds[0].revents) {
        std::uint64_t count;
        if (::read(wake, &count, sizeof count) != sizeof count) return;
        if (count > 1) return;  // the stop request
        std::uint32_t word = 1;
        if (::write(to_child[1], &word, sizeof word) != sizeof word) return;
      }
      if (fds[1].revents) {
        std::uint32_t word;
        if (::read(from_child[0], &word, sizeof word) != sizeof word) return;
        done.fetch_add(1, std::memory_order_release);
        done.notify_one();
      }
    }
  });
  std::uint32_t expected = 0;
  for (auto _ : state) {
    std::uint64_t one = 1;
    if (::write(wake, &one, sizeof one) != sizeof one) break;
    done.wait(expected, std::memory_order_acquire);
    ++expected;
  }
  std::uint64_t stop = 2;
  if (::write(wake, &stop, sizeof stop) != sizeof stop) std::terminate();
  relay.join();
  ::close(to_child[1]);
  ::close(from_child[0]);
  ::close(wake);
  ::waitpid(child, nullptr, 0);
}
BENCHMARK(BM_Limit_RelayRoundTrip)->UseRealTime();

// --- throughput of tiny tasks ---------------------------------------------------------------

constexpr int kBurst = 100'000;

// Python: `[pool.apply_async(inc, (i,)) for i in range(N)]`, then `.get()` on each.
void BM_Pool_ApplyAsyncBurst(benchmark::State& state) {
  guarded(state, [&] {
    mproc::Pool pool(kWorkers);
    warm_up(pool);
    std::vector<mproc::AsyncResult<int>> results;
    results.reserve(kBurst);
    for (auto _ : state) {
      results.clear();
      for (int i = 0; i < kBurst; ++i) results.push_back(pool.apply_async(inc, i));
      long long sum = 0;
      for (auto& result : results) sum += result.get();
      benchmark::DoNotOptimize(sum);
    }
    state.SetItemsProcessed(state.iterations() * kBurst);
  });
}
BENCHMARK(BM_Pool_ApplyAsyncBurst)->UseRealTime()->Unit(benchmark::kMillisecond);

// Python: `for r in pool.imap(inc, range(N), chunksize=1)`.
void BM_Pool_IMapChunk1(benchmark::State& state) {
  guarded(state, [&] {
    mproc::Pool pool(kWorkers);
    warm_up(pool);
    for (auto _ : state) {
      long long sum = 0;
      for (int r : pool.imap(inc, std::views::iota(0, kBurst), 1)) sum += r;
      benchmark::DoNotOptimize(sum);
    }
    state.SetItemsProcessed(state.iterations() * kBurst);
  });
}
BENCHMARK(BM_Pool_IMapChunk1)->UseRealTime()->Unit(benchmark::kMillisecond);

constexpr int kMapItems = 1'000'000;

// Python: `pool.map(inc, items)`, items a list of 1,000,000 ints built before the loop.
void BM_Pool_MapDefault(benchmark::State& state) {
  guarded(state, [&] {
    mproc::Pool pool(kWorkers);
    warm_up(pool);
    std::vector<int> items(kMapItems);
    std::iota(items.begin(), items.end(), 0);
    for (auto _ : state) {
      std::vector<int> results = pool.map(inc, items);
      if (results.size() != items.size() || results.back() != kMapItems) {
        state.SkipWithError("wrong results");
        break;
      }
      benchmark::DoNotOptimize(results.data());
    }
    state.SetItemsProcessed(state.iterations() * kMapItems);
  });
}
BENCHMARK(BM_Pool_MapDefault)->UseRealTime()->Unit(benchmark::kMillisecond);

// --- CPU-bound speed-up -------------------------------------------------------------------

constexpr int kCpuTasks = 16;
constexpr double kCpuTaskSeconds = 0.030;

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The number of burn() steps that takes about kCpuTaskSeconds here.
std::uint64_t calibrate_burn() {
  std::uint64_t steps = 1'000'000;
  for (;;) {
    auto start = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(burn(steps));
    double elapsed = seconds_since(start);
    if (elapsed > 0.005) return static_cast<std::uint64_t>(static_cast<double>(steps) * kCpuTaskSeconds / elapsed);
    steps *= 4;
  }
}

// The timed loop of the speed-up cases. Each iteration runs `items` serially in this
// process (untimed, on our own clock), then through pool.map (timed); with `warm_each`, 100
// tiny tasks first, untimed. Returns the total serial and pool seconds.
struct SerialVsPool {
  double serial = 0;
  double parallel = 0;
  double speedup() const { return parallel > 0 ? serial / parallel : 0; }
};

SerialVsPool serial_vs_pool(benchmark::State& state, mproc::Pool& pool, const std::vector<std::uint64_t>& items,
                            bool warm_each) {
  std::vector<std::uint64_t> expected(items.size());
  SerialVsPool times;
  for (auto _ : state) {
    state.PauseTiming();
    if (warm_each) warm_up(pool, 100);
    auto start = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < items.size(); ++i) expected[i] = burn(items[i]);
    times.serial += seconds_since(start);
    state.ResumeTiming();
    start = std::chrono::steady_clock::now();
    std::vector<std::uint64_t> results = pool.map(burn, items);
    times.parallel += seconds_since(start);
    if (results != expected) {
      state.SkipWithError("wrong results");
      break;
    }
  }
  return times;
}

// Each iteration runs the 16 tasks serially in this process (untimed, on our own clock),
// then through the pool (timed). speedup = total serial time ÷ total pool time.
// Arg 1 (the row): a pool that also serves tiny tasks — before each map, untimed, 100 tiny
// apply_async tasks (as every case here warms its pool, and as Python's counterpart does).
// Arg 0 (diagnostic): a pool that only ever runs these CPU-bound maps (the first on a
// fresh pool).
void BM_Pool_CpuMapSpeedup(benchmark::State& state) {
  guarded(state, [&] {
    const bool mixed = state.range(0) == 1;
    mproc::Pool pool(kWorkers);
    const std::uint64_t steps = calibrate_burn();
    std::vector<std::uint64_t> items(kCpuTasks, steps);
    const SerialVsPool times = serial_vs_pool(state, pool, items, mixed);
    state.counters["speedup"] = times.speedup();
    state.counters["task_ms"] = times.serial / static_cast<double>(state.iterations()) / kCpuTasks * 1e3;
    state.SetItemsProcessed(state.iterations() * kCpuTasks);
  });
}
BENCHMARK(BM_Pool_CpuMapSpeedup)->Arg(1)->Arg(0)->UseRealTime()->Unit(benchmark::kMillisecond);

// The machine's limit for the speed-up: the same 16 calls split over 2 forked children (8
// each, no pool, no messages), against the same calls run serially. Below 2.0 only because
// of fork/exit/waitpid and whatever else takes the CPUs (on a VM: the host).
void BM_Limit_ForkSpeedup(benchmark::State& state) {
  const std::uint64_t steps = calibrate_burn();
  double serial = 0, parallel = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kCpuTasks; ++i) benchmark::DoNotOptimize(burn(steps));
    serial += seconds_since(start);
    state.ResumeTiming();
    start = std::chrono::steady_clock::now();
    pid_t children[kWorkers];
    for (auto& child : children) {
      child = ::fork();
      if (child == 0) {
        for (int i = 0; i < kCpuTasks / kWorkers; ++i) benchmark::DoNotOptimize(burn(steps));
        ::_exit(0);
      }
      if (child < 0) {
        state.SkipWithError("fork failed");
        return;
      }
    }
    for (pid_t child : children) ::waitpid(child, nullptr, 0);
    parallel += seconds_since(start);
  }
  state.counters["speedup"] = parallel > 0 ? serial / parallel : 0;
  state.SetItemsProcessed(state.iterations() * kCpuTasks);
}
BENCHMARK(BM_Limit_ForkSpeedup)->UseRealTime()->Unit(benchmark::kMillisecond);

// --- CPU-bound scaling --------------------------------------------------------------------

// A fixed total of pure computation, split into the same tasks at every worker count.
constexpr double kScalingTotalSeconds = 0.25;

int hardware_threads() { return std::max(1, static_cast<int>(std::thread::hardware_concurrency())); }

// 4 tasks per hardware thread: enough for every worker count to get equal shares (up to a
// quarter of a task of imbalance at a count that does not divide it).
int scaling_tasks() { return 4 * hardware_threads(); }

// Worker counts 1, 2, 4, ... up to the machine's hardware threads, and that count itself.
void scaling_arguments(benchmark::internal::Benchmark* bench) {
  int workers = 1;
  for (; workers < hardware_threads(); workers *= 2) bench->Arg(workers);
  bench->Arg(hardware_threads());
}

// Each iteration runs the tasks serially in this process (untimed, on our own clock), then
// through pool.map on `workers` processes (timed). speedup = serial time ÷ pool time; 1 is
// no gain, the worker count is the ideal. The pool is started and warmed before the loop.
void BM_Pool_CpuScaling(benchmark::State& state) {
  guarded(state, [&] {
    const int workers = static_cast<int>(state.range(0));
    mproc::Pool pool(workers);
    warm_up(pool, 100);
    const auto tasks = static_cast<std::size_t>(scaling_tasks());
    // calibrate_burn() gives the steps of kCpuTaskSeconds; scale them to a share of the total.
    const auto steps = static_cast<std::uint64_t>(static_cast<double>(calibrate_burn()) * kScalingTotalSeconds /
                                                  kCpuTaskSeconds / static_cast<double>(tasks));
    const std::vector<std::uint64_t> items(tasks, steps);
    state.counters["speedup"] = serial_vs_pool(state, pool, items, false).speedup();
    state.counters["tasks"] = static_cast<double>(tasks);
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(tasks));
  });
}
BENCHMARK(BM_Pool_CpuScaling)->Apply(scaling_arguments)->Iterations(3)->UseRealTime()->Unit(benchmark::kMillisecond);

// --- memory --------------------------------------------------------------------------------

// Private_Clean + Private_Dirty and Pss of a process, in bytes, from smaps_rollup.
struct Footprint {
  double private_bytes = 0;
  double pss_bytes = 0;
};

Footprint footprint(int pid) {
  std::ifstream file("/proc/" + std::to_string(pid) + "/smaps_rollup");
  if (!file) throw std::runtime_error("cannot read /proc/" + std::to_string(pid) + "/smaps_rollup");
  Footprint result;
  std::string line;
  while (std::getline(file, line)) {
    std::istringstream fields(line);
    std::string key;
    double kib = 0;
    fields >> key >> kib;
    if (key == "Private_Clean:" || key == "Private_Dirty:") result.private_bytes += kib * 1024;
    if (key == "Pss:") result.pss_bytes = kib * 1024;
  }
  return result;
}

// An idle worker (after the warm-up tasks, then 100 ms without work): the largest of the two
// workers' figures. The timed loop only reads smaps; its time means nothing.
void BM_Pool_WorkerMemory(benchmark::State& state) {
  guarded(state, [&] {
    mproc::Pool pool(kWorkers);
    warm_up(pool);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    Footprint worst;
    for (auto _ : state) {
      worst = {};
      for (int pid : pool.worker_pids()) {
        Footprint f = footprint(pid);
        worst.private_bytes = std::max(worst.private_bytes, f.private_bytes);
        worst.pss_bytes = std::max(worst.pss_bytes, f.pss_bytes);
      }
    }
    state.counters["private_bytes"] = worst.private_bytes;
    state.counters["pss_bytes"] = worst.pss_bytes;
    state.counters["parent_private_bytes"] = footprint(::getpid()).private_bytes;
  });
}
BENCHMARK(BM_Pool_WorkerMemory)->UseRealTime()->Iterations(20);

}  // namespace

BENCHMARK_MAIN();
