// watch_options — the memory limits and observers a process pool or executor passes to its
// engine, with the insights observer every such façade keeps. Private to the library.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "mproc/detail/engine.hpp"
#include "mproc/insights.hpp"

namespace mproc::detail {

/// Checks the limits (std::invalid_argument for 0), resolves the hard limit's backend
/// (automatic: a memory cgroup where one can be made; OSError when `cgroup` was asked for and
/// none can be), and puts them, the user's observers and a
/// new insights observer (returned through `insights`) into `engine`.
void apply_watch_options(EngineOptions& engine, std::optional<std::uint64_t> memory_limit, MemoryLimitBackend backend,
                         std::optional<std::uint64_t> max_memory_per_child,
                         std::vector<std::shared_ptr<Observer>> observers,
                         std::shared_ptr<InsightsObserver>& insights);

}  // namespace mproc::detail
