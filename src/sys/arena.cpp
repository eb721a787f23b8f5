#include "sys/arena.hpp"

#include <cerrno>
#include <cstdint>
#include <sys/mman.h>
#include <utility>
#include <unistd.h>

#include "sys/memory_cgroup.hpp"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14; older headers lack the name
#endif

namespace mproc::sys {

int map_sparse_shared(std::size_t size, SharedMapping& out) noexcept {
  if (size == 0) return -EINVAL;
  void* address =
      ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (address == MAP_FAILED) return -errno;
  out = SharedMapping(address, size);
  return 0;
}

int memfd_create_sparse(const char* debug_name, std::size_t size, UniqueFd& out) noexcept {
  if (size == 0) return -EINVAL;
  UniqueFd fd(::memfd_create(debug_name, MFD_CLOEXEC));
  if (!fd) return -errno;
  // A size, no pages: the memfd lives on the kernel's internal tmpfs, which has no size limit
  // of its own; pages are charged (to the memory cgroup) as commit_shared populates them.
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) return -errno;
  out = std::move(fd);
  return 0;
}

int map_sparse_fd(int fd, std::size_t size, SharedMapping& out) noexcept {
  if (size == 0) return -EINVAL;
  void* address = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
  if (address == MAP_FAILED) return -errno;
  out = SharedMapping(address, size);
  return 0;
}

int commit_shared(void* address, std::size_t size) noexcept {
  if (size == 0) return 0;
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto first = reinterpret_cast<std::uintptr_t>(address) & ~(page - 1);
  const auto last = (reinterpret_cast<std::uintptr_t>(address) + size + page - 1) & ~(page - 1);
  // Under a memory cgroup's limit the kernel answers a shortage with the OOM killer, not an
  // error (see sys/memory_cgroup): refuse first.
  if (int refused = check_memory_charge(last - first); refused < 0) return refused;
  int rc;
  do {
    rc = ::madvise(reinterpret_cast<void*>(first), last - first, MADV_POPULATE_WRITE);
  } while (rc != 0 && errno == EINTR);
  if (rc == 0) return 0;
  // EINVAL: a kernel that does not know the advice; the pages will be faulted in on use.
  return errno == EINVAL ? 0 : -errno;
}

int release_shared(void* address, std::size_t size) noexcept {
  if (size == 0) return 0;
  return ::madvise(address, size, MADV_REMOVE) == 0 ? 0 : -errno;
}

}  // namespace mproc::sys
