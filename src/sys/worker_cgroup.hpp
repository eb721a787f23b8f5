// sys/worker_cgroup — a memory cgroup of its own for each pool worker: the kernel's hard
// memory limit (v2 memory.max, v1 memory.limit_in_bytes), and its count of OOM kills, which
// tells a death by the limit apart from other deaths. errno-level and noexcept.
//
// The groups are children of this process's memory cgroup (sys/memory_cgroup), made only
// where the machine lets us: the directory is writable (root, or a delegated v2 subtree), and
// under v2 the "memory" controller is (or can be) enabled in its cgroup.subtree_control. v2's
// "no internal processes" rule forbids that write while the group holds processes itself
// (outside the root), so a v2 group that holds this very process works only where the write
// succeeds: the probe tries it and reports the failure.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mproc::sys {

/// Where worker groups can be made: the parent directory and the hierarchy's version.
struct CgroupParent {
  char dir[1024] = "";
  bool v2 = false;
};

/// Finds this process's memory cgroup and checks that child groups with a memory limit can be
/// made in it (for v2 enabling the memory controller for its children). Returns 0, or -ENOENT
/// (no memory cgroup visible), -EACCES/-EROFS/-EPERM (not ours to write), -EBUSY (v2: the
/// controller cannot be enabled here), or another -errno.
int find_cgroup_parent(CgroupParent& parent) noexcept;

/// Makes `parent`/`name` (into `dir`, NUL-terminated) and sets its memory limit to `bytes`
/// (v1: also memory.memsw.limit_in_bytes where present, so swap does not stretch it; its
/// failure is ignored). On failure nothing is left behind. Returns 0 or -errno.
int create_worker_cgroup(const CgroupParent& parent, const char* name, std::uint64_t bytes, char* dir,
                         std::size_t dir_size) noexcept;

/// Moves the calling process into the group at `dir` (writes "0" to its cgroup.procs).
/// Async-signal-safe. Returns 0 or -errno.
int join_cgroup(const char* dir) noexcept;

/// The OOM kills the kernel counted in the group (v2 memory.events, v1 memory.oom_control
/// "oom_kill", present since Linux 4.13) into `count`. Returns 0 or -errno (-ENODATA: the
/// kernel does not count them).
int cgroup_oom_kills(const char* dir, bool v2, std::uint64_t& count) noexcept;

/// Removes the (emptied) group at `dir`. A process that just died may still be leaving it:
/// EBUSY is retried for up to about a second. Returns 0 (also when it is already gone) or -errno.
int remove_cgroup(const char* dir) noexcept;

}  // namespace mproc::sys
