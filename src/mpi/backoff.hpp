// mpi/backoff — how a thread that polls MPI waits for the next message: MPI's own blocking
// calls spin a core at 100%, which an oversubscribed node (several ranks per core) cannot
// afford. Spins (yielding the core) for a while after the last message, so a quick answer
// pays no wake-up, then sleeps, doubling up to kMaxSleep.
//
// How long to spin depends on what the wait is for. A thread that spins keeps its full share
// of a busy CPU (sched_yield gives nothing to CPU-bound neighbours under CFS): while workers
// compute a deep queue of tasks, a spinning root takes CPU from them (on 2 vCPUs with 2
// worker ranks, a 2 ms spin cut a map's rate from 35 M to 7.5 M items/s). But when a few
// tasks wait for one answer each (a round trip), the answer comes within microseconds and a
// sleeping poller adds up to kMaxSleep per hop (0.1 ms round trips became 3 ms). So: a long
// spin (kLatencySpin, MPROC_MPI_SPIN_US overrides it) when latency matters, a short one
// (kThroughputSpin) when the wait is for work already queued.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdlib>

namespace mproc::detail {

class PollBackoff {
 public:
  static inline const std::chrono::microseconds kLatencySpin{[] {
    const char* text = std::getenv("MPROC_MPI_SPIN_US");
    return text != nullptr ? std::atol(text) : 2000L;
  }()};
  static constexpr std::chrono::microseconds kThroughputSpin{100};
  static constexpr std::chrono::microseconds kFirstSleep{20};
  static constexpr std::chrono::microseconds kMaxSleep{1000};

  /// Something arrived: spin again.
  void reset() noexcept {
    idle_since_ = std::chrono::steady_clock::now();
    sleep_ = std::chrono::microseconds{0};
  }
  /// How long to wait before the next poll: zero (yield only) while spinning. `latency`:
  /// whether an answer is awaited that nothing else is queued behind (see above).
  std::chrono::microseconds next(bool latency = true) noexcept {
    auto spin = latency ? kLatencySpin : kThroughputSpin;
    if (std::chrono::steady_clock::now() - idle_since_ < spin) return std::chrono::microseconds{0};
    sleep_ = std::clamp(sleep_ * 2, kFirstSleep, kMaxSleep);
    return sleep_;
  }

 private:
  std::chrono::steady_clock::time_point idle_since_ = std::chrono::steady_clock::now();
  std::chrono::microseconds sleep_{0};
};

}  // namespace mproc::detail
