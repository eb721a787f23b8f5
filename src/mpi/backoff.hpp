// mpi/backoff — how a thread that polls MPI waits for the next message: MPI's own blocking
// calls spin a core at 100%, which an oversubscribed node (several ranks per core) cannot
// afford. Spins (yielding the core) for kSpin after the last message, so a steady stream of
// small tasks pays no wake-up, then sleeps, doubling up to kMaxSleep.
#pragma once

#include <algorithm>
#include <chrono>

namespace mproc::detail {

class PollBackoff {
 public:
  static constexpr std::chrono::microseconds kSpin{2000};
  static constexpr std::chrono::microseconds kFirstSleep{20};
  static constexpr std::chrono::microseconds kMaxSleep{1000};

  /// Something arrived: spin again.
  void reset() noexcept {
    idle_since_ = std::chrono::steady_clock::now();
    sleep_ = std::chrono::microseconds{0};
  }
  /// How long to wait before the next poll: zero (yield only) while spinning.
  std::chrono::microseconds next() noexcept {
    if (std::chrono::steady_clock::now() - idle_since_ < kSpin) return std::chrono::microseconds{0};
    sleep_ = std::clamp(sleep_ * 2, kFirstSleep, kMaxSleep);
    return sleep_;
  }

 private:
  std::chrono::steady_clock::time_point idle_since_ = std::chrono::steady_clock::now();
  std::chrono::microseconds sleep_{0};
};

}  // namespace mproc::detail
