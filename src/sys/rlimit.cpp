#include "sys/rlimit.hpp"

#include <cerrno>
#include <sys/resource.h>

namespace mproc::sys {

int limit_data_size(std::uint64_t bytes) noexcept {
  // RLIMIT_DATA, not RLIMIT_AS: since Linux 4.7 it counts every private writable mapping
  // (what a leak grows), while RLIMIT_AS also counts reservations that never become memory
  // (thread stacks' guard areas, read-only file mappings) and would fail allocations early.
  struct rlimit limit {};
  limit.rlim_cur = static_cast<rlim_t>(bytes);
  limit.rlim_max = static_cast<rlim_t>(bytes);
  struct rlimit current {};
  if (::getrlimit(RLIMIT_DATA, &current) == 0 && current.rlim_max != RLIM_INFINITY && current.rlim_max < limit.rlim_max)
    limit.rlim_max = limit.rlim_cur = current.rlim_max;  // never above what we may set
  return ::setrlimit(RLIMIT_DATA, &limit) == 0 ? 0 : -errno;
}

}  // namespace mproc::sys
