// mproc::Pipe / Connection benchmarks. Compare with bench/limits.cpp (raw pipe and
// socketpair round trips, memcpy bandwidth) and bench/python/mp_connection.py (Python's
// multiprocessing.Pipe, start method "fork").
//
// Each benchmark run starts one child before the timed loop; the child serves every
// iteration and leaves when the parent closes its end (EOFError), so the loop measures the
// steady state, not process start-up. Work happens in two processes: real time is the measure.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <span>
#include <utility>
#include <vector>

#include <mproc/mproc.hpp>

#include "bench_support.hpp"

namespace {

using Bytes = std::vector<std::byte>;

// A child at the other end of a Pipe, running `serve(its_end)` until the parent closes
// `ours`. Not movable: the child's callable refers to this object (a copy of it, in the
// child's copy of our address space).
class Peer {
 public:
  template <class Serve>
  explicit Peer(Serve serve)
      : pipe_(mproc::Pipe()), process_([this, serve] {
          pipe_.first.close();  // else the child would hold our end open and never see EOF
          try {
            serve(pipe_.second);
          } catch (const mproc::EOFError&) {
            // The parent closed its end: the benchmark run is over.
          }
        }) {
    process_.start();
    pipe_.second.close();
  }
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;
  ~Peer() { finish(); }

  mproc::Connection& ours() { return pipe_.first; }

  // Closes our end and joins the child; true if the child served without error.
  bool finish() {
    pipe_.first.close();
    process_.join();
    return process_.exitcode() == 0;
  }

 private:
  std::pair<mproc::Connection, mproc::Connection> pipe_;
  mproc::Process process_;
};

using mproc_bench::guarded;

// --- small-value latency ---------------------------------------------------------------

// Python: `a.send(i); a.recv()` with a child doing `b.send(b.recv())`.
void BM_Pipe_RoundTripInt(benchmark::State& state) {
  guarded(state, [&] {
    Peer peer([](mproc::Connection& end) {
      for (;;) end.send(end.recv<int>());
    });
    mproc::Connection& ours = peer.ours();
    int value = 0;
    for (auto _ : state) {
      ours.send(value);
      if (ours.recv<int>() != value) {
        state.SkipWithError("echoed a different value");
        break;
      }
      ++value;
    }
    if (!peer.finish()) state.SkipWithError("the child failed");
  });
}
BENCHMARK(BM_Pipe_RoundTripInt)->UseRealTime();

// Diagnostic: the same round trip of 4 raw bytes through send_bytes/recv_bytes, to tell the
// typed path's cost (codec, type check) from the framing and transport underneath.
void BM_Pipe_RoundTripBytes4(benchmark::State& state) {
  guarded(state, [&] {
    Peer peer([](mproc::Connection& end) {
      for (;;) end.send_bytes(end.recv_bytes());
    });
    mproc::Connection& ours = peer.ours();
    Bytes message(4, std::byte{7});
    for (auto _ : state) {
      ours.send_bytes(message);
      benchmark::DoNotOptimize(ours.recv_bytes());
    }
    if (!peer.finish()) state.SkipWithError("the child failed");
  });
}
BENCHMARK(BM_Pipe_RoundTripBytes4)->UseRealTime();

// --- bulk throughput -------------------------------------------------------------------
//
// The parent streams messages of range(0) bytes; the child receives and drops them. A
// 1-byte message is a sync request the child echoes: the last iteration sends one and
// waits for the echo, so the timed loop ends only when the child has received everything
// (the socket buffers would otherwise hide up to a few MiB still in flight).

constexpr std::size_t kSync = 1;

void set_throughput(benchmark::State& state) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}

// Python: `a.send_bytes(buf)` / `b.recv_bytes()`.
void BM_Pipe_SendBytes(benchmark::State& state) {
  guarded(state, [&] {
    Peer peer([](mproc::Connection& end) {
      for (;;) {
        Bytes message = end.recv_bytes();
        if (message.size() == kSync) end.send_bytes(message);
      }
    });
    mproc::Connection& ours = peer.ours();
    Bytes message(static_cast<std::size_t>(state.range(0)), std::byte{1});
    Bytes sync(kSync, std::byte{2});
    benchmark::IterationCount sent = 0;
    for (auto _ : state) {
      ours.send_bytes(message);
      if (++sent == state.max_iterations) {
        ours.send_bytes(sync);
        benchmark::DoNotOptimize(ours.recv_bytes());
      }
    }
    set_throughput(state);
    if (!peer.finish()) state.SkipWithError("the child failed");
  });
}
BENCHMARK(BM_Pipe_SendBytes)->Arg(1 << 20)->UseRealTime();

// Diagnostic: as BM_Pipe_SendBytes, but the child receives into one preallocated buffer
// with recv_bytes_into (no allocation per message on the receiving side).
void BM_Pipe_SendBytesRecvInto(benchmark::State& state) {
  guarded(state, [&] {
    auto size = static_cast<std::size_t>(state.range(0));
    Peer peer([size](mproc::Connection& end) {
      Bytes buffer(size);
      for (;;) {
        std::size_t length = end.recv_bytes_into(buffer);
        if (length == kSync) end.send_bytes(std::span<const std::byte>(buffer.data(), length));
      }
    });
    mproc::Connection& ours = peer.ours();
    Bytes message(size, std::byte{1});
    Bytes sync(kSync, std::byte{2});
    benchmark::IterationCount sent = 0;
    for (auto _ : state) {
      ours.send_bytes(message);
      if (++sent == state.max_iterations) {
        ours.send_bytes(sync);
        benchmark::DoNotOptimize(ours.recv_bytes());
      }
    }
    set_throughput(state);
    if (!peer.finish()) state.SkipWithError("the child failed");
  });
}
BENCHMARK(BM_Pipe_SendBytesRecvInto)->Arg(1 << 20)->UseRealTime();

// The typed path: `send(std::vector<std::byte>)` / `recv<std::vector<std::byte>>()`.
// Python's counterpart is `send(bytes)` / `recv()` (a pickle of a bytes object).
void BM_Pipe_SendVector(benchmark::State& state) {
  guarded(state, [&] {
    Peer peer([](mproc::Connection& end) {
      for (;;) {
        auto message = end.recv<Bytes>();
        if (message.size() == kSync) end.send(message);
      }
    });
    mproc::Connection& ours = peer.ours();
    Bytes message(static_cast<std::size_t>(state.range(0)), std::byte{1});
    Bytes sync(kSync, std::byte{2});
    benchmark::IterationCount sent = 0;
    for (auto _ : state) {
      ours.send(message);
      if (++sent == state.max_iterations) {
        ours.send(sync);
        benchmark::DoNotOptimize(ours.recv<Bytes>());
      }
    }
    set_throughput(state);
    if (!peer.finish()) state.SkipWithError("the child failed");
  });
}
BENCHMARK(BM_Pipe_SendVector)->Arg(1 << 20)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
