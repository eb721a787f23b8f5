#include "sys/futex.hpp"

#include <cerrno>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace mproc::sys {

namespace {
// std::atomic<uint32_t> has the size and representation of uint32_t (asserted in the
// header); the kernel reads the word itself, so handing it its address is sound.
std::uint32_t* address_of(const std::atomic<std::uint32_t>& word) noexcept {
  return reinterpret_cast<std::uint32_t*>(const_cast<std::atomic<std::uint32_t>*>(&word));
}
}  // namespace

int futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected, const Deadline& deadline) noexcept {
  // FUTEX_WAIT_BITSET takes an *absolute* CLOCK_MONOTONIC timeout, which is what
  // std::chrono::steady_clock reads on Linux; plain FUTEX_WAIT would take a relative one.
  timespec absolute{};
  const timespec* timeout = nullptr;
  if (deadline) {
    absolute = monotonic_timespec(*deadline);
    timeout = &absolute;
  }
  long rc = ::syscall(SYS_futex, address_of(word), FUTEX_WAIT_BITSET, expected, timeout, nullptr,
                      FUTEX_BITSET_MATCH_ANY);
  return rc == 0 ? 0 : -errno;
}

int futex_wake(const std::atomic<std::uint32_t>& word, int count) noexcept {
  long rc = ::syscall(SYS_futex, address_of(word), FUTEX_WAKE, count, nullptr, nullptr, 0);
  return rc >= 0 ? static_cast<int>(rc) : -errno;
}

}  // namespace mproc::sys
