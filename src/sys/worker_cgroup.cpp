#include "sys/worker_cgroup.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <string_view>
#include <sys/stat.h>
#include <unistd.h>

#include "sys/memory_cgroup.hpp"

namespace mproc::sys {

namespace {

// `dir`/`file` into `out`; false when it does not fit.
bool join_path(char* out, std::size_t size, const char* dir, const char* file) noexcept {
  const int n = std::snprintf(out, size, "%s/%s", dir, file);
  return n > 0 && static_cast<std::size_t>(n) < size;
}

// Writes `text` to `dir`/`file` in one write(), as cgroup files want. Async-signal-safe.
int write_file(const char* dir, const char* file, std::string_view text) noexcept {
  char path[1200];
  if (!join_path(path, sizeof path, dir, file)) return -ENAMETOOLONG;
  const int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  ssize_t n;
  do n = ::write(fd, text.data(), text.size());
  while (n < 0 && errno == EINTR);
  const int error = n < 0 ? errno : 0;
  ::close(fd);
  if (error != 0) return -error;
  return static_cast<std::size_t>(n) == text.size() ? 0 : -EIO;
}

// Reads `dir`/`file` (small cgroup files) into `buffer`, NUL-terminated.
int read_file(const char* dir, const char* file, char* buffer, std::size_t size) noexcept {
  char path[1200];
  if (!join_path(path, sizeof path, dir, file)) return -ENAMETOOLONG;
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  std::size_t have = 0;
  while (have + 1 < size) {
    const ssize_t n = ::read(fd, buffer + have, size - 1 - have);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      ::close(fd);
      return -error;
    }
    if (n == 0) break;
    have += static_cast<std::size_t>(n);
  }
  ::close(fd);
  buffer[have] = '\0';
  return 0;
}

bool has_word(std::string_view list, std::string_view word) noexcept {
  while (!list.empty()) {
    const std::size_t end = list.find_first_of(" \n");
    if (list.substr(0, end) == word) return true;
    if (end == std::string_view::npos) break;
    list.remove_prefix(end + 1);
  }
  return false;
}

// The value of the line "key N" in `text`.
bool keyed_value(std::string_view text, std::string_view key, std::uint64_t& value) noexcept {
  while (!text.empty()) {
    const std::size_t end = text.find('\n');
    const std::string_view line = text.substr(0, end);
    if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == ' ') {
      value = 0;
      for (char c : line.substr(key.size() + 1)) {
        if (c < '0' || c > '9') break;
        value = value * 10 + static_cast<std::uint64_t>(c - '0');
      }
      return true;
    }
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  return false;
}

}  // namespace

int find_cgroup_parent(CgroupParent& parent) noexcept {
  char root[1024];
  bool v2 = false;
  if (int rc = memory_cgroup_dir(parent.dir, sizeof parent.dir, root, sizeof root, v2); rc < 0) return rc;
  parent.v2 = v2;
  // Making a group needs write access to the directory; cgroupfs may still refuse (EPERM)
  // at mkdir, which create_worker_cgroup reports.
  if (::access(parent.dir, W_OK) != 0) return -errno;
  if (!v2) return 0;
  // v2: the children get memory.max only when the parent enables the controller for them.
  char controllers[512];
  if (int rc = read_file(parent.dir, "cgroup.subtree_control", controllers, sizeof controllers); rc < 0) return rc;
  if (has_word(controllers, "memory")) return 0;
  if (int rc = write_file(parent.dir, "cgroup.subtree_control", "+memory"); rc < 0) return rc;
  return 0;
}

int create_worker_cgroup(const CgroupParent& parent, const char* name, std::uint64_t bytes, char* dir,
                         std::size_t dir_size) noexcept {
  if (!join_path(dir, dir_size, parent.dir, name)) return -ENAMETOOLONG;
  if (::mkdir(dir, 0755) != 0) return -errno;
  char number[32];
  const int length = std::snprintf(number, sizeof number, "%llu", static_cast<unsigned long long>(bytes));
  const std::string_view text(number, static_cast<std::size_t>(length));
  int rc = write_file(dir, parent.v2 ? "memory.max" : "memory.limit_in_bytes", text);
  if (rc == 0 && parent.v2) {
    // No swap either: a limit that pages out to swap instead of failing is no limit to a task.
    (void)write_file(dir, "memory.swap.max", "0");
  } else if (rc == 0) {
    (void)write_file(dir, "memory.memsw.limit_in_bytes", text);
  }
  if (rc < 0) ::rmdir(dir);
  return rc;
}

int join_cgroup(const char* dir) noexcept { return write_file(dir, "cgroup.procs", "0"); }

int cgroup_oom_kills(const char* dir, bool v2, std::uint64_t& count) noexcept {
  char text[1024];
  if (int rc = read_file(dir, v2 ? "memory.events" : "memory.oom_control", text, sizeof text); rc < 0) return rc;
  return keyed_value(text, "oom_kill", count) ? 0 : -ENODATA;
}

int remove_cgroup(const char* dir) noexcept {
  for (int attempt = 0;; ++attempt) {
    if (::rmdir(dir) == 0 || errno == ENOENT) return 0;
    if (errno != EBUSY || attempt >= 100) return -errno;
    const timespec pause{0, 10'000'000};
    ::nanosleep(&pause, nullptr);
  }
}

}  // namespace mproc::sys
