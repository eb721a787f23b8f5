// start_method — the parent's side of the three start methods (Python's Popen classes):
// given what a child must run, each returns the running child. Private to the library.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "process/boot.hpp"
#include "mproc/context.hpp"
#include "sys/fd.hpp"

namespace mproc::detail {

/// The current start method; asking fixes the default ("fork"), as in Python.
StartMethod current_start_method();
/// `context`'s method, or the current one.
StartMethod start_method_of(const std::optional<Context>& context);
const char* start_method_name(StartMethod method) noexcept;
/// Python's worker names: "ForkPoolWorker", "SpawnProcess", "ForkServerPoolWorker"...
std::string worker_name_prefix(StartMethod method, const char* kind);

/// A child started by spawn or the forkserver.
struct StartedChild {
  pid_t pid = 0;
  sys::UniqueFd pidfd;
  /// Forkserver children only: the server writes the child's exit code here once it has
  /// reaped it (the child is the server's, not ours, to wait for).
  sys::UniqueFd status;
};

/// Starts a fresh copy of the program that runs `message` (spawn). `lifeline_read` is the
/// child's end of its lifeline. Throws OSError, ProcessError (boot_child).
StartedChild start_spawned(const BootMessage& message, const std::vector<int>& fds, int lifeline_read);

/// Has the forkserver (started on first use, restarted if it died) fork a child that runs
/// `message`. Throws OSError, ProcessError.
StartedChild start_from_forkserver(const BootMessage& message, const std::vector<int>& fds, int lifeline_read);

/// Reads a forkserver child's exit code from its status channel; `block` waits for it.
/// nullopt while it runs. A server that died without reporting: -SIGKILL (its children die
/// with it).
std::optional<int> read_forkserver_status(int status_fd, bool block);

}  // namespace mproc::detail
