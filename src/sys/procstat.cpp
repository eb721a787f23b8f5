#include "sys/procstat.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

namespace mproc::sys {

namespace {

// Reads a small /proc file whole into `buffer` (NUL-terminated). Returns 0 or -errno.
int read_small_file(const char* path, char* buffer, std::size_t size) noexcept {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  std::size_t have = 0;
  while (have + 1 < size) {
    const ssize_t n = ::read(fd, buffer + have, size - 1 - have);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      ::close(fd);
      return -error;
    }
    if (n == 0) break;
    have += static_cast<std::size_t>(n);
  }
  buffer[have] = '\0';
  ::close(fd);
  return 0;
}

}  // namespace

std::uint64_t peak_rss_bytes() noexcept {
  struct rusage usage {};
  if (::getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return static_cast<std::uint64_t>(usage.ru_maxrss) * 1024;  // Linux reports KiB
}

int current_rss_bytes(std::uint64_t& bytes) noexcept {
  char text[128];
  if (int rc = read_small_file("/proc/self/statm", text, sizeof text); rc < 0) return rc;
  // "size resident shared text lib data dt", in pages.
  char* end = nullptr;
  std::strtoull(text, &end, 10);
  const unsigned long long resident = std::strtoull(end, &end, 10);
  const long page = ::sysconf(_SC_PAGESIZE);
  bytes = static_cast<std::uint64_t>(resident) * static_cast<std::uint64_t>(page > 0 ? page : 4096);
  return 0;
}

int data_size_bytes(std::uint64_t& bytes) noexcept {
  char text[4096];
  if (int rc = read_small_file("/proc/self/status", text, sizeof text); rc < 0) return rc;
  const char* line = std::strstr(text, "\nVmData:");
  if (line == nullptr) return -ENOENT;
  bytes = std::strtoull(line + 8, nullptr, 10) * 1024;  // "VmData:   1234 kB"
  return 0;
}

}  // namespace mproc::sys
