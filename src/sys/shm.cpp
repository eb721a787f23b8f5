#include "sys/shm.hpp"

#include <cerrno>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mproc::sys {

void SharedMapping::reset() noexcept {
  if (address_ != nullptr) ::munmap(address_, length_);
  address_ = nullptr;
  length_ = 0;
}

int map_anonymous_shared(std::size_t size, SharedMapping& out) noexcept {
  if (size == 0) return -EINVAL;
  void* address = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (address == MAP_FAILED) return -errno;
  out = SharedMapping(address, size);
  return 0;
}

int map_fd_shared(int fd, std::size_t size, SharedMapping& out) noexcept {
  if (size == 0) return -EINVAL;
  void* address = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (address == MAP_FAILED) return -errno;
  out = SharedMapping(address, size);
  return 0;
}

namespace {
// Reserves the object's pages (see the header: ENOSPC now rather than SIGBUS later).
int reserve(int fd, std::size_t size) noexcept {
  if (size == 0) return 0;
  int rc;
  do {
    rc = ::posix_fallocate(fd, 0, static_cast<off_t>(size));
  } while (rc == EINTR);
  return -rc;
}
}  // namespace

int memfd_create_sized(const char* debug_name, std::size_t size, UniqueFd& out) noexcept {
  UniqueFd fd(::memfd_create(debug_name, MFD_CLOEXEC));
  if (!fd) return -errno;
  if (int rc = reserve(fd.get(), size); rc < 0) return rc;
  out = std::move(fd);
  return 0;
}

int shm_create(const char* name, std::size_t size, UniqueFd& out) noexcept {
  if (name == nullptr || name[0] != '/') return -EINVAL;
  UniqueFd fd(::shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) return -errno;
  if (int rc = reserve(fd.get(), size); rc < 0) {
    ::shm_unlink(name);  // ours: O_EXCL guaranteed we created it
    return rc;
  }
  out = std::move(fd);
  return 0;
}

int shm_attach(const char* name, UniqueFd& out, std::size_t& size) noexcept {
  if (name == nullptr || name[0] != '/') return -EINVAL;
  UniqueFd fd(::shm_open(name, O_RDWR | O_CLOEXEC, 0));
  if (!fd) return -errno;
  struct stat status{};
  if (::fstat(fd.get(), &status) != 0) return -errno;
  size = static_cast<std::size_t>(status.st_size);
  out = std::move(fd);
  return 0;
}

int shm_remove(const char* name) noexcept {
  return ::shm_unlink(name) == 0 ? 0 : -errno;
}

}  // namespace mproc::sys
