#include "sys/memory_cgroup.hpp"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <string_view>
#include <unistd.h>

namespace mproc::sys {

namespace {

// Calls line(text) for each line of `path` (without the newline) until it returns false.
// Reads through a small buffer: /proc/self/mountinfo can be long, and this must not allocate.
// A line longer than the buffer is skipped (no line this module looks for is).
template <class Line>
int for_each_line(const char* path, Line line) noexcept {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  char buffer[4096];
  std::size_t have = 0;
  bool skipping = false;  // inside a line too long for the buffer
  for (;;) {
    const ssize_t n = ::read(fd, buffer + have, sizeof buffer - have);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      ::close(fd);
      return -error;
    }
    have += static_cast<std::size_t>(n);
    std::size_t start = 0;
    for (std::size_t i = 0; i < have; ++i) {
      if (buffer[i] != '\n') continue;
      if (!skipping && !line(std::string_view(buffer + start, i - start))) {
        ::close(fd);
        return 0;
      }
      skipping = false;
      start = i + 1;
    }
    if (n == 0) {
      if (!skipping && start < have) line(std::string_view(buffer + start, have - start));
      break;
    }
    if (start == 0 && have == sizeof buffer) {
      skipping = true;
      have = 0;
      continue;
    }
    std::memmove(buffer, buffer + start, have - start);
    have -= start;
  }
  ::close(fd);
  return 0;
}

// The `index`th space-separated field of `text` (empty if there are fewer).
std::string_view field(std::string_view text, int index) noexcept {
  std::size_t at = 0;
  for (int i = 0; i < index; ++i) {
    at = text.find(' ', at);
    if (at == std::string_view::npos) return {};
    ++at;
  }
  return text.substr(at, text.find(' ', at) - at);
}

bool has_token(std::string_view list, std::string_view token, char separator) noexcept {
  while (!list.empty()) {
    const std::size_t end = list.find(separator);
    if (list.substr(0, end) == token) return true;
    if (end == std::string_view::npos) break;
    list.remove_prefix(end + 1);
  }
  return false;
}

bool append(char* out, std::size_t size, std::size_t& used, std::string_view text) noexcept {
  if (used + text.size() + 1 > size) return false;
  std::memcpy(out + used, text.data(), text.size());
  used += text.size();
  out[used] = '\0';
  return true;
}

// Reads a file holding one number, or "max" (v2's "no limit", reported as kNoMemoryLimit).
bool read_number(const char* path, std::uint64_t& value) noexcept {
  bool found = false;
  for_each_line(path, [&](std::string_view text) {
    if (text == "max") {
      value = kNoMemoryLimit;
      found = true;
      return false;
    }
    std::uint64_t n = 0;
    for (char c : text) {
      if (c < '0' || c > '9') return false;
      n = n * 10 + static_cast<std::uint64_t>(c - '0');
      found = true;
    }
    value = n;
    return false;
  });
  return found;
}

// The value of `key` in a "key value" file (memory.stat), 0 if absent.
std::uint64_t read_stat(const char* path, std::string_view key) noexcept {
  std::uint64_t value = 0;
  for_each_line(path, [&](std::string_view text) {
    if (text.size() <= key.size() || text.substr(0, key.size()) != key || text[key.size()] != ' ') return true;
    for (char c : text.substr(key.size() + 1)) {
      if (c < '0' || c > '9') break;
      value = value * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return false;
  });
  return value;
}

// The room left under one cgroup level's limit, kNoMemoryLimit if it has none.
std::uint64_t level_headroom(char* dir, std::size_t dir_length, std::size_t dir_size, bool v2) noexcept {
  auto file = [&](const char* name) {
    std::size_t used = dir_length;
    return append(dir, dir_size, used, "/") && append(dir, dir_size, used, name);
  };
  std::uint64_t limit = kNoMemoryLimit;
  if (!file(v2 ? "memory.max" : "memory.limit_in_bytes") || !read_number(dir, limit)) limit = kNoMemoryLimit;
  // v1 reports "no limit" as the largest page-aligned 63-bit value.
  if (limit >= (std::uint64_t{1} << 62)) {
    dir[dir_length] = '\0';
    return kNoMemoryLimit;
  }
  std::uint64_t usage = 0;
  if (!file(v2 ? "memory.current" : "memory.usage_in_bytes") || !read_number(dir, usage)) usage = 0;
  std::uint64_t inactive_file = 0;
  if (file("memory.stat")) inactive_file = read_stat(dir, v2 ? "inactive_file" : "total_inactive_file");
  dir[dir_length] = '\0';
  const std::uint64_t working_set = usage > inactive_file ? usage - inactive_file : 0;
  return limit > working_set ? limit - working_set : 0;
}

}  // namespace

int memory_cgroup_dir(char* out, std::size_t out_size, char* root, std::size_t root_size, bool& v2) noexcept {
  // /proc/self/cgroup: "id:controllers:path"; v1's memory controller is named, v2 is "0::".
  char v1_path[1024] = "", v2_path[1024] = "";
  bool has_v1 = false, has_v2 = false;
  int rc = for_each_line("/proc/self/cgroup", [&](std::string_view text) {
    const std::size_t first = text.find(':');
    const std::size_t second = first == std::string_view::npos ? first : text.find(':', first + 1);
    if (second == std::string_view::npos) return true;
    const std::string_view controllers = text.substr(first + 1, second - first - 1);
    const std::string_view path = text.substr(second + 1);
    std::size_t used = 0;
    if (has_token(controllers, "memory", ',')) has_v1 = append(v1_path, sizeof v1_path, used, path);
    else if (text.substr(0, first) == "0" && controllers.empty()) has_v2 = append(v2_path, sizeof v2_path, used, path);
    return true;
  });
  if (rc < 0) return rc;
  // /proc/self/mountinfo: "id parent dev root mountpoint options [optional...] - fstype source super".
  bool found = false;
  rc = for_each_line("/proc/self/mountinfo", [&](std::string_view text) {
    const std::size_t dash = text.find(" - ");
    if (dash == std::string_view::npos) return true;
    const std::string_view tail = text.substr(dash + 3);
    const std::string_view fstype = field(tail, 0);
    bool is_v2 = false;
    if (has_v1 && fstype == "cgroup" && has_token(field(tail, 2), "memory", ',')) is_v2 = false;
    else if (!has_v1 && has_v2 && fstype == "cgroup2") is_v2 = true;
    else return true;
    const std::string_view mount_root = field(text, 3);
    const std::string_view mount_point = field(text, 4);
    std::string_view path = is_v2 ? v2_path : v1_path;
    // The mount shows the hierarchy from mount_root down (a container's view): strip it.
    if (mount_root != "/") path = path.substr(0, mount_root.size()) == mount_root ? path.substr(mount_root.size()) : "";
    if (path == "/") path = "";
    std::size_t used = 0, root_used = 0;
    if (!append(out, out_size, used, mount_point) || !append(out, out_size, used, path) ||
        !append(root, root_size, root_used, mount_point)) {
      rc = -ENAMETOOLONG;
      return false;
    }
    v2 = is_v2;
    found = true;
    return false;
  });
  if (rc < 0) return rc;
  return found ? 0 : -ENOENT;
}

std::uint64_t memory_cgroup_headroom() noexcept {
  char dir[4096], root[4096];
  bool v2 = false;
  if (memory_cgroup_dir(dir, sizeof dir, root, sizeof root, v2) < 0) return kNoMemoryLimit;
  // The nearest limit may be an ancestor's (a container's limit above a sub-group): walk up
  // to the mount point, keeping the smallest room.
  const std::size_t root_length = std::strlen(root);
  std::size_t length = std::strlen(dir);
  std::uint64_t headroom = kNoMemoryLimit;
  for (;;) {
    const std::uint64_t here = level_headroom(dir, length, sizeof dir, v2);
    if (here < headroom) headroom = here;
    if (length <= root_length) break;
    while (length > root_length && dir[length - 1] != '/') --length;
    if (length > root_length) --length;  // the slash itself
    dir[length] = '\0';
  }
  return headroom;
}

int check_memory_charge(std::size_t bytes) noexcept {
  // The allowance: bytes that may be committed before the cgroup files are read again. Shared
  // by the process's threads; races between them only make a reading a little stale.
  static std::atomic<std::int64_t> allowance{0};
  static std::atomic<std::int64_t> read_at_ns{0};
  static std::atomic<pid_t> read_by{0};  // a forked child (perhaps moved to another cgroup) reads afresh
  constexpr std::int64_t kRefreshNs = 100'000'000;
  const std::int64_t now =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
  const pid_t pid = ::getpid();
  const auto wanted = static_cast<std::int64_t>(bytes);
  if (read_by.load(std::memory_order_relaxed) == pid && now - read_at_ns.load(std::memory_order_relaxed) < kRefreshNs &&
      allowance.fetch_sub(wanted, std::memory_order_relaxed) >= wanted)
    return 0;
  const std::uint64_t headroom = memory_cgroup_headroom();
  std::int64_t next;
  int rc = 0;
  if (headroom == kNoMemoryLimit) {
    next = INT64_MAX / 2;
  } else if (bytes + kChargeReserve > headroom) {
    next = 0;
    rc = -ENOMEM;
  } else {
    // A quarter of what is left: this process's heap, its other threads and the cgroup's
    // other processes allocate too, and the allowance does not see them.
    next = static_cast<std::int64_t>((headroom - kChargeReserve - bytes) / 4);
  }
  allowance.store(next, std::memory_order_relaxed);
  read_at_ns.store(now, std::memory_order_relaxed);
  read_by.store(pid, std::memory_order_relaxed);
  return rc;
}

}  // namespace mproc::sys
