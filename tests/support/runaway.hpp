// A task that allocates without end, for the memory-limit tests: only a limit stops it.
#pragma once

#include <cstring>
#include <memory>
#include <vector>

namespace mproc::testing {

// Allocates 16 MiB at a time, each touched (so a cgroup is charged for it), without end: an
// RLIMIT_DATA limit makes an allocation fail, a memory cgroup's limit OOM-kills the worker.
inline int runaway(int) {
  std::vector<std::unique_ptr<char[]>> blocks;
  for (;;) {
    auto block = std::make_unique<char[]>(16 << 20);
    std::memset(block.get(), 1, 16 << 20);
    blocks.push_back(std::move(block));
  }
}

}  // namespace mproc::testing
