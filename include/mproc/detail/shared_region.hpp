// mproc/detail/shared_region.hpp — anonymous shared memory for the shared-state types
// (synchronize.hpp, sharedctypes.hpp). Not part of the public API.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>

namespace mproc::detail {

/// `bytes` (> 0) of zero-filled MAP_SHARED | MAP_ANONYMOUS memory, page-aligned: shared with
/// every child forked after this call, never visible in /dev/shm, unmapped in this process
/// when the last shared_ptr copy goes. Throws OSError (ENOMEM) when it cannot be mapped.
std::shared_ptr<std::byte> allocate_shared_region(std::size_t bytes);

/// A user's timeout as the nanoseconds the implementation waits: negative means "do not
/// wait" (zero), and a duration too long for nanoseconds (hours::max()) saturates instead of
/// overflowing.
template <class Rep, class Period>
std::chrono::nanoseconds clamp_timeout(std::chrono::duration<Rep, Period> timeout) noexcept {
  if (timeout <= std::chrono::duration<Rep, Period>::zero()) return std::chrono::nanoseconds::zero();
  // Compared in floating point: the common type of two integer durations may itself overflow.
  constexpr double kMaxSeconds = static_cast<double>(std::chrono::nanoseconds::max().count()) / 1e9;
  if (std::chrono::duration<double>(timeout).count() >= kMaxSeconds) return std::chrono::nanoseconds::max();
  return std::chrono::duration_cast<std::chrono::nanoseconds>(timeout);
}

/// now + `timeout` on steady_clock, saturating at time_point::max().
inline std::chrono::steady_clock::time_point deadline_in(std::chrono::nanoseconds timeout) noexcept {
  const auto now = std::chrono::steady_clock::now();
  const auto headroom = std::chrono::steady_clock::time_point::max() - now;
  return timeout >= headroom ? std::chrono::steady_clock::time_point::max() : now + timeout;
}

/// "No timeout" (wait forever) as std::nullopt, for the non-template entry points.
using Timeout = std::optional<std::chrono::nanoseconds>;

}  // namespace mproc::detail
