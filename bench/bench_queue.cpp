// mproc::Queue benchmarks. Compare with bench/python/mp_queue.py (multiprocessing.Queue,
// start method "fork") and bench/limits.cpp (memcpy bandwidth).
//
// One consumer child per benchmark run, started before the timed loop: it gets exactly as
// many items as the parent will put (state.max_iterations), then puts an acknowledgement on a
// second queue. The parent's timed loop puts the items and, after the last one, waits for the
// acknowledgement, so the time covers every item got, not only put. Work happens in two
// processes: real time is the measure.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include <mproc/mproc.hpp>

#include "bench_support.hpp"

namespace {

using mproc_bench::guarded;
using Bytes = std::vector<std::byte>;

// Puts `make(i)` for every iteration into a Queue<T> drained by one child process.
template <class T, class Make>
void run_one_to_one(benchmark::State& state, Make make) {
  guarded(state, [&] {
    mproc::Queue<T> queue;  // unbounded, as Python's Queue()
    mproc::Queue<int> done;
    const auto count = static_cast<std::int64_t>(state.max_iterations);
    mproc::Process consumer([&] {
      for (std::int64_t i = 0; i < count; ++i) benchmark::DoNotOptimize(queue.get());
      done.put(1);
    });
    consumer.start();
    const T value = make(0);
    std::int64_t put = 0;
    for (auto _ : state) {
      queue.put(value);
      if (++put == count) done.get();
    }
    consumer.join();
    if (consumer.exitcode() != 0) state.SkipWithError("the consumer failed");
  });
}

// Python: `q.put(i)` in the parent, `q.get()` in a child; items per second.
void BM_Queue_SmallItems(benchmark::State& state) {
  run_one_to_one<std::int64_t>(state, [](std::int64_t i) { return i; });
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_Queue_SmallItems)->UseRealTime();

// Python: `q.put(bytes(1 MiB))` / `q.get()`; bytes per second.
void BM_Queue_LargeItems(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  run_one_to_one<Bytes>(state, [size](std::int64_t) { return Bytes(size, std::byte{1}); });
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_Queue_LargeItems)->Arg(1 << 20)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
