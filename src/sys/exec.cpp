#include "sys/exec.hpp"

#include <cerrno>
#include <csignal>
#include <fcntl.h>
#include <spawn.h>
#include <unistd.h>

#include "sys/fd.hpp"

namespace mproc::sys {

pid_t spawn_self(char* const argv[], char* const envp[], const int* fds, int fd_count) noexcept {
  constexpr int kMaxFds = 16;
  if (fd_count < 0 || fd_count > kMaxFds) return -EINVAL;
  // The sources are first copied above every target number, so that placing fds[i] at
  // kFirstInheritedFd + i never overwrites a source still to be placed.
  int high[kMaxFds];
  int made = 0;
  int rc = 0;
  for (; made < fd_count; ++made) {
    high[made] = ::fcntl(fds[made], F_DUPFD_CLOEXEC, kFirstInheritedFd + fd_count);
    if (high[made] < 0) {
      rc = -errno;
      break;
    }
  }
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attributes;
  bool actions_made = false, attributes_made = false;
  pid_t pid = 0;
  if (rc == 0) {
    rc = -posix_spawn_file_actions_init(&actions);
    actions_made = rc == 0;
  }
  // dup2 clears close-on-exec on the copy: exactly these descriptors cross the exec.
  for (int i = 0; rc == 0 && i < fd_count; ++i)
    rc = -posix_spawn_file_actions_adddup2(&actions, high[i], kFirstInheritedFd + i);
  if (rc == 0) rc = -posix_spawn_file_actions_addclosefrom_np(&actions, kFirstInheritedFd + fd_count);
  if (rc == 0) {
    rc = -posix_spawnattr_init(&attributes);
    attributes_made = rc == 0;
  }
  if (rc == 0) {
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    rc = -posix_spawnattr_setsigmask(&attributes, &none);
    if (rc == 0) rc = -posix_spawnattr_setsigdefault(&attributes, &all);
    if (rc == 0) rc = -posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  }
  if (rc == 0) rc = -posix_spawn(&pid, "/proc/self/exe", &actions, &attributes, argv, envp);
  if (attributes_made) posix_spawnattr_destroy(&attributes);
  if (actions_made) posix_spawn_file_actions_destroy(&actions);
  for (int i = 0; i < made; ++i) close_fd(high[i]);
  return rc < 0 ? rc : pid;
}

}  // namespace mproc::sys
