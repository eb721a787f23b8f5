// mproc synchronization benchmarks. Compare with bench/python/mp_synchronize.py (Python's
// multiprocessing Lock / Value / Semaphore, start method "fork") and, for the ping-pong,
// bench/limits.cpp's BM_Limit_FutexRoundTrip.
//
//   BM_Lock_Uncontended          lock.acquire(); lock.release() in one process
//   BM_RLock_Uncontended         the same with an RLock (the lock of a Value)
//   BM_Value_LockedIncrement     2 processes, each `std::lock_guard g(v.get_lock()); ++v.value();`
//                                kBatch times per iteration; items/s = increments of both
//   BM_Semaphore_PingPong        two semaphores handing a turn back and forth with a child:
//                                one round trip per iteration (two futex wake-ups)
#include <benchmark/benchmark.h>

#include <cstdint>
#include <mutex>

#include <mproc/mproc.hpp>

#include "bench_support.hpp"

namespace {

using mproc_bench::guarded;

void BM_Lock_Uncontended(benchmark::State& state) {
  mproc::Lock lock;
  for (auto _ : state) {
    lock.acquire();
    lock.release();
  }
}
BENCHMARK(BM_Lock_Uncontended);

void BM_RLock_Uncontended(benchmark::State& state) {
  mproc::RLock lock;
  for (auto _ : state) {
    lock.acquire();
    lock.release();
  }
}
BENCHMARK(BM_RLock_Uncontended);

constexpr int kBatch = 100'000;

// Both processes increment the same Value under its lock (an RLock, as in Python) kBatch
// times per iteration; a Barrier starts and ends each batch together, so the batch's wall
// time covers 2 * kBatch contended increments.
void BM_Value_LockedIncrement(benchmark::State& state) {
  guarded(state, [&] {
    mproc::Value<std::int64_t> counter(0);
    mproc::Barrier start(2), done(2);
    mproc::RawValue<int> stop(0);
    auto batch = [&] {
      for (int i = 0; i < kBatch; ++i) {
        std::lock_guard guard(counter.get_lock());
        ++counter.value();
      }
    };
    mproc::Process child([&] {
      for (;;) {
        start.wait();
        if (stop.value() != 0) return;
        batch();
        done.wait();
      }
    });
    child.start();
    std::int64_t expected = 0;
    for (auto _ : state) {
      start.wait();
      batch();
      done.wait();
      expected += 2 * kBatch;
    }
    stop.value() = 1;
    start.wait();
    child.join();
    if (counter.value() != expected) state.SkipWithError("lost increments");
    state.SetItemsProcessed(state.iterations() * 2 * kBatch);
  });
}
BENCHMARK(BM_Value_LockedIncrement)->UseRealTime()->Unit(benchmark::kMillisecond);

// A turn handed to a child and back through two semaphores (Python's usual ping-pong).
void BM_Semaphore_PingPong(benchmark::State& state) {
  guarded(state, [&] {
    mproc::Semaphore ping(0), pong(0);
    mproc::RawValue<int> stop(0);
    mproc::Process child([&] {
      for (;;) {
        ping.acquire();
        if (stop.value() != 0) return;
        pong.release();
      }
    });
    child.start();
    for (auto _ : state) {
      ping.release();
      pong.acquire();
    }
    stop.value() = 1;
    ping.release();
    child.join();
  });
}
BENCHMARK(BM_Semaphore_PingPong)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
