// worker_main — the pool worker's side: its main loop as a free function over what it was
// given, so that the same code runs in a fork of the engine's process, in an exec'd copy
// of the program (spawn) and in a forkserver child. Private to the library.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <optional>

#include "mproc/connection.hpp"
#include "mproc/detail/process_target.hpp"
#include "exec/worker_protocol.hpp"

namespace mproc::detail {

/// Set in a worker process: a task that calls back into a pool gets a clear error.
extern std::atomic<bool> inside_worker;

/// What a worker needs. `words` is the memory shared with the engine (a WorkerWords);
/// `wake` the engine's eventfd.
struct WorkerEnds {
  Connection& tasks;
  Connection& results;
  WorkerWords& words;
  int wake;
  long max_tasks;  // LONG_MAX: no limit
  std::uint64_t memory_limit = 0;          // EngineOptions::memory_limit (0: none)
  std::uint64_t max_memory_per_child = 0;  // EngineOptions::max_memory_per_child (0: none)
  std::string cgroup;  // the memory cgroup to join (backend cgroup); empty: RLIMIT_DATA
};

/// Runs the initializer, then tasks until the engine says stop; never returns.
[[noreturn]] void worker_main(WorkerEnds ends, const std::function<void()>& initializer);

/// What a worker started by spawn or the forkserver receives, descriptors by handle.
struct WorkerConfig {
  Connection tasks;
  Connection results;
  PassedFd words;  // a memfd holding its WorkerWords
  PassedFd wake;
  std::int64_t max_tasks = 0;
  std::optional<NamedCall> initializer;
  std::uint64_t memory_limit = 0;
  std::uint64_t max_memory_per_child = 0;
  std::string cgroup;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(tasks, results, words, wake, max_tasks, initializer, memory_limit, max_memory_per_child, cgroup);
  }
};

/// The Invoker that starts such a worker: decodes its WorkerConfig and runs worker_main.
void run_spawned_worker(const CodeRef& self, std::span<const std::byte> config, std::vector<std::byte>& unused);

}  // namespace mproc::detail
