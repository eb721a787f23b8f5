// Manager proxies against a raw Unix-socket round trip (BM_Limit_RawRoundTripPolling/0 in
// bench_listener) and Python's multiprocessing.Manager (bench/python/mp_managers.py).
//
// BM_Manager_DictGet       one d.get(k): one request, one reply
// BM_Manager_DictSetGet    d.set(k, i); d.get(k): two round trips per iteration
// BM_Manager_QueuePutGet   a child puts 10,000 ints through a Queue proxy, the parent gets them
//                          (items/s, the two processes' calls overlapping in the server)
// BM_Manager_LockCounter4  4 processes x 500 increments of a Value proxy under a manager Lock
//                          (acquire; v.set(v.get() + 1); release); time per increment
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include <mproc/mproc.hpp>

#include "bench_support.hpp"

namespace {

void BM_Manager_DictGet(benchmark::State& state) {
  mproc_bench::guarded(state, [&] {
    mproc::Manager manager;
    auto d = manager.dict<std::string, std::int64_t>();
    d.set("key", 1);
    for (auto _ : state) benchmark::DoNotOptimize(d.get("key"));
  });
}
BENCHMARK(BM_Manager_DictGet)->UseRealTime();

void BM_Manager_DictSetGet(benchmark::State& state) {
  mproc_bench::guarded(state, [&] {
    mproc::Manager manager;
    auto d = manager.dict<std::string, std::int64_t>();
    std::int64_t i = 0;
    for (auto _ : state) {
      d.set("key", i++);
      benchmark::DoNotOptimize(d.get("key"));
    }
  });
}
BENCHMARK(BM_Manager_DictSetGet)->UseRealTime();

constexpr int kItems = 10'000;

void produce(mproc::QueueProxy<std::int64_t> q) {
  for (int i = 0; i < kItems; ++i) q.put(i);
}

void BM_Manager_QueuePutGet(benchmark::State& state) {
  mproc_bench::guarded(state, [&] {
    mproc::Manager manager;
    auto q = manager.Queue<std::int64_t>();
    for (auto _ : state) {
      mproc::Process producer(produce, q);
      producer.start();
      std::int64_t sum = 0;
      for (int i = 0; i < kItems; ++i) sum += q.get();
      producer.join();
      benchmark::DoNotOptimize(sum);
    }
    state.SetItemsProcessed(state.iterations() * kItems);
  });
}
BENCHMARK(BM_Manager_QueuePutGet)->UseRealTime()->Unit(benchmark::kMillisecond);

constexpr int kIncrements = 500;

void count_under_lock(mproc::LockProxy lock, mproc::ValueProxy<std::int64_t> v) {
  for (int i = 0; i < kIncrements; ++i) {
    lock.acquire();
    v.set(v.get() + 1);
    lock.release();
  }
}

void BM_Manager_LockCounter4(benchmark::State& state) {
  mproc_bench::guarded(state, [&] {
    mproc::Manager manager;
    auto lock = manager.Lock();
    for (auto _ : state) {
      auto v = manager.Value<std::int64_t>(0);
      std::vector<mproc::Process> workers;
      for (int w = 0; w < 4; ++w) workers.emplace_back(count_under_lock, lock, v);
      for (auto& p : workers) p.start();
      for (auto& p : workers) p.join();
      if (v.get() != 4 * kIncrements) throw mproc::Error("lost an increment under the manager Lock");
    }
    state.SetItemsProcessed(state.iterations() * 4 * kIncrements);
  });
}
BENCHMARK(BM_Manager_LockCounter4)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
