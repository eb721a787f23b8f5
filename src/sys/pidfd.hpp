// sys/pidfd — race-free handles on child processes. A pidfd names one process for as long
// as the descriptor lives, even after the pid is recycled, and becomes readable when the
// process exits: join(timeout) and "wait for any of these" are poll calls, not sleeps.
#pragma once

#include <sys/types.h>

namespace mproc::sys {

/// pidfd_open(2) with O_CLOEXEC semantics. Returns the fd or -errno.
int pidfd_open(pid_t pid) noexcept;

/// Sends `signal` to the process behind `pidfd`. Returns 0 or -errno (ESRCH once reaped).
int pidfd_send_signal(int pidfd, int signal) noexcept;

/// Reaps `pid` if it has exited. `block` waits for it. Returns 1 and stores Python's
/// exitcode convention (status, or -signum) in *exitcode; 0 when still running (only
/// without `block`); -errno on failure (ECHILD when someone else reaped it).
int reap(pid_t pid, bool block, int* exitcode) noexcept;

}  // namespace mproc::sys
