#include "sys/lifeline.hpp"

#include <cerrno>
#include <csignal>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

namespace mproc::sys {

int lifeline_create(Lifeline& lifeline) noexcept {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return -errno;
  lifeline.read_end = fds[0];
  lifeline.write_end = fds[1];
  return 0;
}

int lifeline_arm_in_child(const Lifeline& lifeline) noexcept {
  ::close(lifeline.write_end);
  int armed = lifeline.read_end;
  // The O_ASYNC owner lives in the open file description, which only this child uses
  // (the parent closes its copy of the read end right after fork).
  int flags = ::fcntl(armed, F_GETFL);
  if (flags < 0 || ::fcntl(armed, F_SETOWN, ::getpid()) != 0 || ::fcntl(armed, F_SETSIG, SIGKILL) != 0 ||
      ::fcntl(armed, F_SETFL, flags | O_ASYNC | O_NONBLOCK) != 0)
    return -errno;
  // The parent may have died between fork() and arming, when no signal would come: the
  // write end is then already gone and the pipe reports hang-up. Die exactly as the armed
  // lifeline would have made us die, so observers see one outcome either way.
  pollfd entry{armed, POLLIN, 0};
  if (::poll(&entry, 1, 0) > 0 && (entry.revents & (POLLHUP | POLLIN))) ::kill(::getpid(), SIGKILL);
  return armed;
}

}  // namespace mproc::sys
