// sys/random — bytes from the kernel's cryptographic random source (getrandom(2)), for
// authentication challenges. errno-level and noexcept.
#pragma once

#include <cstddef>

namespace mproc::sys {

/// Fills [buffer, buffer + n) with random bytes, waiting for the pool to be initialised if
/// it is not yet (only at early boot). Returns 0 or -errno.
int fill_random(void* buffer, std::size_t n) noexcept;

}  // namespace mproc::sys
