#include "sys/pidfd.hpp"

#include <cerrno>
#include <csignal>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace mproc::sys {

int pidfd_open(pid_t pid) noexcept {
  // pidfd_open(2) always sets close-on-exec on the new descriptor.
  long fd = ::syscall(SYS_pidfd_open, pid, 0);
  return fd < 0 ? -errno : static_cast<int>(fd);
}

int pidfd_send_signal(int pidfd, int signal) noexcept {
  return ::syscall(SYS_pidfd_send_signal, pidfd, signal, nullptr, 0) < 0 ? -errno : 0;
}

int reap(pid_t pid, bool block, int* exitcode) noexcept {
  for (;;) {
    siginfo_t info{};
    int options = WEXITED | (block ? 0 : WNOHANG);
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, options) < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (info.si_pid == 0) return 0;  // WNOHANG and still running
    *exitcode = info.si_code == CLD_EXITED ? info.si_status : -info.si_status;
    return 1;
  }
}

}  // namespace mproc::sys
