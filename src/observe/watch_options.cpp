#include "observe/watch_options.hpp"

#include <stdexcept>

#include "mproc/error.hpp"
#include "sys/worker_cgroup.hpp"

namespace mproc::detail {

void apply_watch_options(EngineOptions& engine, std::optional<std::uint64_t> memory_limit, MemoryLimitBackend backend,
                         std::optional<std::uint64_t> max_memory_per_child,
                         std::vector<std::shared_ptr<Observer>> observers,
                         std::shared_ptr<InsightsObserver>& insights) {
  if (memory_limit && *memory_limit == 0) throw std::invalid_argument("mproc: memory_limit must be positive");
  if (max_memory_per_child && *max_memory_per_child == 0)
    throw std::invalid_argument("mproc: max_memory_per_child must be positive");
  engine.memory_limit = memory_limit.value_or(0);
  engine.max_memory_per_child = max_memory_per_child.value_or(0);
  // The backend is chosen here, once: the insights line names it from the first event on.
  const char* how = "RLIMIT_DATA";
  engine.memory_backend = MemoryLimitBackend::rlimit;
  if (engine.memory_limit != 0 && backend != MemoryLimitBackend::rlimit) {
    sys::CgroupParent parent;
    const int rc = sys::find_cgroup_parent(parent);
    if (rc == 0) {
      engine.memory_backend = MemoryLimitBackend::cgroup;
      how = parent.v2 ? "cgroup v2 memory.max" : "cgroup v1 memory.limit_in_bytes";
    } else if (backend == MemoryLimitBackend::cgroup) {
      throw OSError(-rc, std::string("mproc: no memory cgroup for the workers can be made under ") +
                             (parent.dir[0] != '\0' ? parent.dir : "this process's memory cgroup"));
    }
  }
  insights = std::make_shared<InsightsObserver>(
      describe_memory_limits(engine.memory_limit, engine.max_memory_per_child, how));
  engine.observers.push_back(insights);
  for (auto& observer : observers)
    if (observer) engine.observers.push_back(std::move(observer));
}

}  // namespace mproc::detail
