// sys/rlimit — per-process resource limits that mproc sets on its workers. errno-level and
// noexcept.
#pragma once

#include <cstdint>

namespace mproc::sys {

/// Caps this process's private data memory (heap, private anonymous mappings: what
/// malloc and operator new take) at `bytes`, soft and hard limit both (a worker cannot raise
/// it back). An allocation that would pass it fails with ENOMEM, which operator new turns
/// into std::bad_alloc. Shared mappings (mproc's queues, shared memory) are not counted.
/// Returns 0 or -errno.
int limit_data_size(std::uint64_t bytes) noexcept;

}  // namespace mproc::sys
