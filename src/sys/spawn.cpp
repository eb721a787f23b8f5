#include "sys/spawn.hpp"

#include <atomic>
#include <cerrno>
#include <pthread.h>
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

namespace {
std::atomic<pid_t> cached_pid{0};

void refresh_cached_pid() noexcept { cached_pid.store(::getpid(), std::memory_order_relaxed); }

// Registered during static initialisation; a fork before that leaves the child's cache at 0,
// which current_pid() treats as "ask the kernel".
[[maybe_unused]] const bool cached_pid_registered = [] {
  refresh_cached_pid();
  return ::pthread_atfork(nullptr, nullptr, &refresh_cached_pid) == 0;
}();
}  // namespace

pid_t current_pid() noexcept {
  pid_t pid = cached_pid.load(std::memory_order_relaxed);
  return pid != 0 ? pid : ::getpid();
}

}  // namespace mproc::sys
