#include "sys/random.hpp"

#include <cerrno>
#include <sys/random.h>

namespace mproc::sys {

int fill_random(void* buffer, std::size_t n) noexcept {
  auto* next = static_cast<unsigned char*>(buffer);
  while (n > 0) {
    // Requests up to 256 bytes never return short once the pool is ready; larger ones may,
    // and a signal may interrupt: loop on both.
    ssize_t got = ::getrandom(next, n, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    next += got;
    n -= static_cast<std::size_t>(got);
  }
  return 0;
}

}  // namespace mproc::sys
