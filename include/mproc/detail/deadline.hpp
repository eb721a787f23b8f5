// mproc/detail/deadline.hpp — relative timeouts to absolute deadlines, without overflow.
#pragma once

#include <chrono>

namespace mproc::detail {

/// now + timeout on the steady clock, saturating at time_point::max() (so `wait(hours::max())`
/// waits forever instead of overflowing into the past); a negative timeout means now.
/// The comparison is made in floating point: converting hours::max() to the clock's
/// nanoseconds would itself overflow.
template <class Rep, class Period>
std::chrono::steady_clock::time_point saturating_deadline(std::chrono::duration<Rep, Period> timeout) noexcept {
  using Clock = std::chrono::steady_clock;
  const auto now = Clock::now();
  if (timeout <= timeout.zero()) return now;
  const std::chrono::duration<long double> wanted = timeout;
  const std::chrono::duration<long double> headroom = Clock::time_point::max() - now;
  if (wanted >= headroom) return Clock::time_point::max();
  return now + std::chrono::ceil<Clock::duration>(timeout);
}

}  // namespace mproc::detail
