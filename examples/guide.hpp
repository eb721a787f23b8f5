// guide.hpp — the few helpers the guide's examples (examples/guide_*.cpp, docs/guide.md)
// share: a stopwatch and a unit of pure computation whose length is set in seconds.
#pragma once

#include <chrono>
#include <cstdint>

namespace guide {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Pure computation: a xorshift chain, each step depending on the last, so the compiler can
// neither vectorise it nor find a closed form, and it touches no memory. A plain function
// with a trivially copyable argument and result: it can be a pool task.
inline std::uint64_t burn(std::uint64_t steps) {
  std::uint64_t x = 0x9E3779B97F4A7C15ull ^ steps;
  for (std::uint64_t i = 0; i < steps; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
  }
  return x;
}

// The number of burn() steps that takes about `seconds` of one CPU on this machine.
inline std::uint64_t burn_steps_for(double seconds) {
  std::uint64_t steps = 1'000'000;
  for (;;) {
    auto start = Clock::now();
    volatile std::uint64_t sink = burn(steps);
    (void)sink;
    double elapsed = seconds_since(start);
    if (elapsed > 0.02) return static_cast<std::uint64_t>(static_cast<double>(steps) * seconds / elapsed);
    steps *= 2;
  }
}

}  // namespace guide
