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

/// This process's id without a syscall (glibc stopped caching getpid() in 2.25; here it costs
/// ~200 ns, a tenth of a pool task's round trip). Cached, and refreshed in the child of every
/// fork() by a pthread_atfork handler; falls back to getpid() before the cache is set.
pid_t current_pid() noexcept;

}  // namespace mproc::sys
