// sys/procstat — what this process's memory footprint is: resident set now and at its peak,
// and the size of its private data (what RLIMIT_DATA bounds). errno-level and noexcept;
// allocation-free, so that a worker whose allocations fail can still ask.
#pragma once

#include <cstdint>

namespace mproc::sys {

/// The process's peak resident set in bytes (getrusage's ru_maxrss, the kernel's VmHWM).
/// One system call: cheap enough to take once per batch of tasks. 0 if it fails.
std::uint64_t peak_rss_bytes() noexcept;

/// The resident set now, in bytes, from /proc/self/statm. Returns 0 or -errno.
int current_rss_bytes(std::uint64_t& bytes) noexcept;

/// The private writable memory of the process (VmData in /proc/self/status): the quantity
/// RLIMIT_DATA bounds. Returns 0 or -errno.
int data_size_bytes(std::uint64_t& bytes) noexcept;

}  // namespace mproc::sys
