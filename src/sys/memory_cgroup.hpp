// sys/memory_cgroup — how much more memory this process may be charged before its memory
// cgroup's limit (a container's memory limit) is reached. errno-level and noexcept.
//
// Why this exists: over a memory cgroup's limit the kernel returns no error for shared memory.
// Pages of a shared anonymous mapping, a memfd or a /dev/shm file are charged to the cgroup
// when they are allocated, and a charge that reclaim cannot make room for runs the cgroup's OOM
// killer, which kills the process with the largest footprint: usually the one committing the
// pages. Measured on Linux 6.18 under a cgroup v1 limit (v2 charges through the same kernel
// code): madvise(MADV_POPULATE_WRITE) of a MAP_SHARED | MAP_ANONYMOUS region and fallocate()
// of a memfd both end in SIGKILL, not ENOMEM.
// So before committing shared pages, mproc compares the size with the room left under the
// limit and refuses with ENOMEM itself. This is a check, not a reservation: other processes
// of the cgroup allocating at the same moment can still exhaust it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mproc::sys {

/// No limit: what memory_cgroup_headroom reports outside a limited cgroup.
inline constexpr std::uint64_t kNoMemoryLimit = UINT64_MAX;

/// The directory of this process's memory cgroup (cgroup v1 "memory" controller, or v2), e.g.
/// "/sys/fs/cgroup/memory/docker/abc", into `out` (NUL-terminated), and that of the hierarchy's
/// mount point into `root`. `v2` tells which version. Returns 0, or -ENOENT when the process
/// has no visible memory cgroup, -ENAMETOOLONG, or another -errno.
int memory_cgroup_dir(char* out, std::size_t out_size, char* root, std::size_t root_size, bool& v2) noexcept;

/// The bytes that can still be charged to this process before the nearest memory limit of
/// its cgroup or an ancestor (up to the mount point) is reached: the limit less the usage, the
/// inactive file cache counted as free (the kernel reclaims it first). kNoMemoryLimit when no
/// limit applies or the cgroup files cannot be read. Reads a few files per level: not for hot paths.
std::uint64_t memory_cgroup_headroom() noexcept;

/// Checks that `bytes` more of shared memory may be charged to this process while leaving a
/// reserve (kChargeReserve) under its memory cgroup's limit. Returns 0 or -ENOMEM. Cheap: the
/// cgroup files are read again only when an allowance taken from the last reading (a quarter
/// of the headroom, as others in the cgroup allocate too) runs out, after 100 ms, or after fork.
int check_memory_charge(std::size_t bytes) noexcept;

/// What check_memory_charge leaves free under the limit: room for the process to report the
/// error and carry on (an exception, a few heap pages) without meeting the OOM killer.
inline constexpr std::uint64_t kChargeReserve = std::uint64_t{4} << 20;

}  // namespace mproc::sys
