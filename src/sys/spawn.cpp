#include "sys/spawn.hpp"

#include <cerrno>
#include <unistd.h>

#include "sys/signals.hpp"

namespace mproc::sys {

namespace {
// Written by the forking thread just before fork(); the child reads its own copy.
thread_local sigset_t saved_mask;
}  // namespace

pid_t fork_child(void (*child_main)(void*), void* argument) noexcept {
  AllSignalsBlocked blocked;
  saved_mask = blocked.previous();
  pid_t pid = ::fork();
  if (pid == 0) {
    child_main(argument);
    ::_exit(127);  // child_main must not return; be safe if it does
  }
  return pid < 0 ? -errno : pid;
}

const sigset_t* forked_child_saved_mask() noexcept { return &saved_mask; }

}  // namespace mproc::sys
