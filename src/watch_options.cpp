#include "watch_options.hpp"

#include <stdexcept>

namespace mproc::detail {

void apply_watch_options(EngineOptions& engine, std::optional<std::uint64_t> memory_limit,
                         std::optional<std::uint64_t> max_memory_per_child,
                         std::vector<std::shared_ptr<Observer>> observers,
                         std::shared_ptr<InsightsObserver>& insights) {
  if (memory_limit && *memory_limit == 0) throw std::invalid_argument("mproc: memory_limit must be positive");
  if (max_memory_per_child && *max_memory_per_child == 0)
    throw std::invalid_argument("mproc: max_memory_per_child must be positive");
  engine.memory_limit = memory_limit.value_or(0);
  engine.max_memory_per_child = max_memory_per_child.value_or(0);
  insights = std::make_shared<InsightsObserver>(describe_memory_limits(engine.memory_limit, engine.max_memory_per_child));
  engine.observers.push_back(insights);
  for (auto& observer : observers)
    if (observer) engine.observers.push_back(std::move(observer));
}

}  // namespace mproc::detail
