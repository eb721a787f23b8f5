// sys/exec — starting a fresh copy of this program (the spawn start method, the forkserver).
#pragma once

#include <sys/types.h>

namespace mproc::sys {

/// The first descriptor number a spawned copy receives its inherited descriptors at.
inline constexpr int kFirstInheritedFd = 3;

/// Starts /proc/self/exe — this program's own file, even if it was replaced or deleted on
/// disk since — with `argv` and `envp`. In the child, fds[i] becomes descriptor
/// kFirstInheritedFd + i and every other descriptor above 2 is closed: nothing of the
/// parent's leaks into it. Every signal is reset to its default action and unblocked.
/// posix_spawn's vfork-style clone shares the parent's memory until exec, so the cost does
/// not grow with the parent's size and no parent thread's lock is inherited.
/// Returns the pid, or -errno (the exec's own failure included).
pid_t spawn_self(char* const argv[], char* const envp[], const int* fds, int fd_count) noexcept;

}  // namespace mproc::sys
