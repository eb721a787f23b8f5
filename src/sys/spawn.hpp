// sys/spawn — creating child processes.
#pragma once

#include <csignal>
#include <sys/types.h>

namespace mproc::sys {

/// Forks with every signal blocked, so that no parent handler runs in the child before it
/// resets them. In the child, calls `child_main(argument)`, which must not return (it ends
/// with _exit) and must restore the signal mask itself (forked_child_saved_mask()). In the
/// parent, restores the signal mask and returns the pid, or -errno.
pid_t fork_child(void (*child_main)(void*), void* argument) noexcept;

/// In a child started by fork_child: the signal mask the forking thread had before fork.
const sigset_t* forked_child_saved_mask() noexcept;

}  // namespace mproc::sys
