// sys/arena — large sparse shared reservations whose pages are committed and given back piece
// by piece. errno-level and noexcept.
//
// A queue reserves far more address space than it will ever fill (MAP_NORESERVE: no memory
// is committed at mmap time), commits a range of pages before writing into it, and gives the
// pages of a drained range back to the kernel. The mapping is MAP_SHARED, of an anonymous
// region or of a memfd sized by ftruncate alone (which an exec'd child can be passed), so
// every process mapping it sees the same pages, and it vanishes with its last mapper.
//
// Why commit explicitly: a page of a shared anonymous mapping that the kernel cannot supply
// when it is first touched kills the toucher (SIGBUS or the OOM killer). MADV_POPULATE_WRITE
// asks for the pages up front, where a shortage is an error code instead — except under a
// memory cgroup's limit, where the kernel runs the OOM killer there too: commit_shared checks
// the cgroup's headroom first (sys/memory_cgroup) and refuses with ENOMEM.
#pragma once

#include <cstddef>

#include "sys/shm.hpp"

namespace mproc::sys {

/// A zero-filled MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE region of `size` bytes: address
/// space only, until pages are touched or committed. Returns 0 or -errno (ENOMEM).
int map_sparse_shared(std::size_t size, SharedMapping& out) noexcept;

/// memfd_create (close-on-exec) of `size` bytes, none of them allocated (ftruncate only): the
/// file behind a sparse region that an exec'd child can be given. Returns 0 or -errno.
int memfd_create_sparse(const char* debug_name, std::size_t size, UniqueFd& out) noexcept;

/// Maps `size` bytes of the file behind `fd` MAP_SHARED | MAP_NORESERVE: as map_sparse_shared,
/// over a memfd. Returns 0 or -errno.
int map_sparse_fd(int fd, std::size_t size, SharedMapping& out) noexcept;

/// Commits (allocates and maps) the pages of [address, address + size), page-aligned
/// outward. Returns 0, or -ENOMEM / -EFAULT when memory is short, -ENOMEM also when the
/// pages would not leave kChargeReserve free under the memory cgroup's limit. On kernels without
/// MADV_POPULATE_WRITE (before 5.14) it does nothing and returns 0.
int commit_shared(void* address, std::size_t size) noexcept;

/// Gives the pages of [address, address + size) back (MADV_REMOVE): every process mapping
/// them reads zeros afterwards. `address` and `size` must be page-aligned. Returns 0 or -errno.
int release_shared(void* address, std::size_t size) noexcept;

}  // namespace mproc::sys
