// Shared pieces of mproc's Google Benchmark cases.
#pragma once

#include <benchmark/benchmark.h>

#include <exception>

namespace mproc_bench {

// Runs the benchmark body; an exception (a child died, a frame was refused) ends the run
// with an error in the report instead of terminating the whole binary.
template <class Body>
void guarded(benchmark::State& state, Body body) {
  try {
    body();
  } catch (const std::exception& error) {
    state.SkipWithError(error.what());
  }
}

}  // namespace mproc_bench
