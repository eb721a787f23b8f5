// mproc/detail/timeout.hpp — the one place where a user's timeout becomes nanoseconds and a
// deadline. Not part of the public API.
//
// Every blocking call with a timeout (queues, locks, events, conditions, barriers, joins, polls,
// results, futures, maps) goes through these two functions, so that all of them agree on what
// an extreme timeout means:
//   - a timeout too long for nanoseconds (hours::max(), duration<double>(1e300)) or NaN waits as
//     long as the clock can count, never an overflow that wraps into the past ("now");
//   - zero or a negative timeout (hours::min() included) is a deadline already past: the call
//     tries once and does not block, as Python treats a negative timeout.
// The sys layer takes the result as an absolute steady_clock deadline (sys::Deadline is the
// same type), so a retry loop below never stretches the caller's timeout.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <optional>
#include <ratio>
#include <utility>

namespace mproc::detail {

/// An absolute time on steady_clock after which a blocking call gives up; nullopt: never.
using Deadline = std::optional<std::chrono::steady_clock::time_point>;
/// A relative timeout for the non-template entry points; nullopt: wait forever.
using Timeout = std::optional<std::chrono::nanoseconds>;

/// `timeout` in nanoseconds, rounded up, saturating at nanoseconds::max() / min() instead of
/// overflowing. NaN counts as no limit.
template <class Rep, class Period>
std::chrono::nanoseconds to_nanoseconds(std::chrono::duration<Rep, Period> timeout) noexcept {
  using std::chrono::nanoseconds;
  using PerTick = std::ratio_divide<Period, std::nano>;  // nanoseconds per tick
  if constexpr (!std::chrono::treat_as_floating_point_v<Rep> && PerTick::den == 1) {
    // Whole nanoseconds per tick (ns, us, ms, s, min, h): exact; clamped before multiplying,
    // since the multiplication itself is where hours::max() overflows.
    constexpr std::intmax_t limit = nanoseconds::max().count() / PerTick::num;
    const Rep count = timeout.count();
    if (std::cmp_greater_equal(count, limit)) return nanoseconds::max();
    if (std::cmp_less_equal(count, -limit)) return nanoseconds::min();
    return nanoseconds(static_cast<std::intmax_t>(count) * PerTick::num);
  } else {
    // Floating-point or fractional ticks: computed in long double (no overflow below 1e4932),
    // then rounded up, so a tiny positive timeout never becomes zero.
    const long double ns = static_cast<long double>(timeout.count()) * PerTick::num / PerTick::den;
    constexpr long double bound = 9.2e18L;  // just inside nanoseconds' range
    if (!(ns < bound)) return nanoseconds::max();
    if (ns <= -bound) return nanoseconds::min();
    return nanoseconds(static_cast<std::int64_t>(std::ceil(ns)));
  }
}

/// `from` + `timeout` (negative counts as zero), saturating at the clock's maximum.
inline std::chrono::steady_clock::time_point saturating_add(std::chrono::steady_clock::time_point from,
                                                            std::chrono::nanoseconds timeout) noexcept {
  using Clock = std::chrono::steady_clock;
  const auto relative = std::max(timeout, std::chrono::nanoseconds::zero());
  // Compared as a difference: from + relative is the overflow this module exists to avoid.
  if (relative >= Clock::time_point::max() - from) return Clock::time_point::max();
  return from + std::chrono::duration_cast<Clock::duration>(relative);
}

/// The deadline `timeout` from now (nullopt: none), saturating at the clock's maximum; zero and
/// negative timeouts are a deadline already past.
inline Deadline deadline_after(Timeout timeout) noexcept {
  if (!timeout) return std::nullopt;
  return saturating_add(std::chrono::steady_clock::now(), *timeout);
}

/// As above, for a timeout of any duration type (converted without overflow).
template <class Rep, class Period>
Deadline deadline_after(std::chrono::duration<Rep, Period> timeout) noexcept {
  return deadline_after(Timeout(to_nanoseconds(timeout)));
}

}  // namespace mproc::detail
