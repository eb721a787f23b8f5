// sys/futex — wait/wake on a 32-bit word in memory shared between processes. errno-level
// and noexcept. The futexes here are *shared* (not FUTEX_PRIVATE_FLAG): the kernel keys them
// by the physical page, so a word in a MAP_SHARED mapping works across fork and across
// unrelated processes that map the same object.
#pragma once

#include <atomic>
#include <cstdint>

#include "sys/fd.hpp"  // Deadline

namespace mproc::sys {

/// Sleeps while `word` still holds `expected`, until woken or the deadline passes.
/// Returns 0 when woken (possibly spuriously — callers re-check their condition), -EAGAIN
/// when the word no longer held `expected`, -ETIMEDOUT, or -EINTR after a signal.
/// The deadline is absolute on steady_clock (CLOCK_MONOTONIC), so repeated waits inside a
/// retry loop never stretch the caller's timeout.
int futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected, const Deadline& deadline) noexcept;

/// Wakes up to `count` waiters on `word` (INT_MAX: all). Returns how many were woken or -errno.
int futex_wake(const std::atomic<std::uint32_t>& word, int count) noexcept;

/// One pause in a bounded spin before a futex sleep: tells the CPU this is a spin-wait (it
/// saves power and yields the pipeline to a hyper-thread sibling, which may be the peer).
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

static_assert(sizeof(std::atomic<std::uint32_t>) == 4 && std::atomic<std::uint32_t>::is_always_lock_free,
              "a futex word is a plain lock-free 32-bit integer");

}  // namespace mproc::sys
