#include "sys/shm.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sys/memory_cgroup.hpp"

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
  // Over a memory cgroup's limit fallocate is answered by the OOM killer, not ENOSPC.
  if (int refused = check_memory_charge(size); refused < 0) return refused;
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

namespace {
// glibc's shm_open(name) is open("/dev/shm" + name) (fixed since glibc 2.34; musl likewise).
constexpr char kShmDirectory[] = "/dev/shm";
constexpr std::size_t kMaxName = 255;

// "/dev/shm" + name into `path` without allocating (async-signal-safe). False for a name that
// is not '/' + 1 to 255 characters without another '/'.
bool shm_path(const char* name, char (&path)[sizeof kShmDirectory + kMaxName + 1]) noexcept {
  if (name == nullptr || name[0] != '/') return false;
  std::size_t length = std::strlen(name);
  if (length < 2 || length > kMaxName + 1 || std::strchr(name + 1, '/') != nullptr) return false;
  std::memcpy(path, kShmDirectory, sizeof kShmDirectory - 1);
  std::memcpy(path + sizeof kShmDirectory - 1, name, length + 1);
  return true;
}

FileId file_id(const struct stat& status) noexcept {
  return {static_cast<std::uint64_t>(status.st_dev), static_cast<std::uint64_t>(status.st_ino)};
}
}  // namespace

int file_id_of(int fd, FileId& out) noexcept {
  struct stat status{};
  if (::fstat(fd, &status) != 0) return -errno;
  out = file_id(status);
  return 0;
}

int shm_create_unnamed(std::size_t size, UniqueFd& out, FileId& id) noexcept {
  UniqueFd fd(::open(kShmDirectory, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  if (!fd) return -errno;
  if (int rc = reserve(fd.get(), size); rc < 0) return rc;  // unnamed: gone with the fd
  if (int rc = file_id_of(fd.get(), id); rc < 0) return rc;
  out = std::move(fd);
  return 0;
}

int shm_link(int fd, const char* name) noexcept {
  char path[sizeof kShmDirectory + kMaxName + 1];
  if (!shm_path(name, path)) return -EINVAL;
  // open(2)'s recipe for naming an O_TMPFILE file without CAP_DAC_READ_SEARCH: link the
  // /proc/self/fd entry, following the magic link. linkat never replaces an existing name.
  char source[32];
  std::snprintf(source, sizeof source, "/proc/self/fd/%d", fd);
  if (::linkat(AT_FDCWD, source, AT_FDCWD, path, AT_SYMLINK_FOLLOW) != 0) return -errno;
  return 0;
}

int shm_remove_if(const char* name, const FileId& id) noexcept {
  char path[sizeof kShmDirectory + kMaxName + 1];
  if (!shm_path(name, path)) return -EINVAL;
  struct stat status{};
  if (::stat(path, &status) != 0) return -errno;
  if (file_id(status) != id) return -ESTALE;
  return ::unlink(path) == 0 ? 0 : -errno;
}

}  // namespace mproc::sys
