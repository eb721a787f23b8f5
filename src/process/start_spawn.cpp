// The spawn start method: a fresh copy of the program (/proc/self/exe) receives its start
// message over a socket in mproc::freeze_support().
#include <cerrno>
#include <csignal>
#include <string>
#include <unistd.h>

#include "mproc/error.hpp"
#include "process/start_method.hpp"
#include "sys/exec.hpp"
#include "sys/pidfd.hpp"
#include "sys/unix_socket.hpp"

extern char** environ;

namespace mproc::detail {

namespace {

// Reaps a child whose start failed; it was killed or is exiting by itself.
void reap_failed_start(pid_t pid) noexcept {
  int ignored = 0;
  sys::reap(pid, true, &ignored);
}

}  // namespace

StartedChild start_spawned(const BootMessage& message, const std::vector<int>& fds, int lifeline_read) {
  sys::UniqueFd parent_end, child_end;
  if (int rc = sys::stream_socket_pair(parent_end, child_end); rc < 0) throw OSError(-rc, "socketpair");

  // The copy gets the parent's argv[0] (so that ps shows the program's name) and nothing of
  // its command line: a copy whose main forgot freeze_support() must not redo the parent's
  // work. Its boot socket and lifeline arrive as descriptors 3 and 4.
  std::string marker = std::string(kBootEnvironment) + "=" + std::to_string(sys::kFirstInheritedFd) + "," +
                       std::to_string(sys::kFirstInheritedFd + 1);
  std::vector<char*> envp;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry)
    if (std::string_view(*entry).substr(0, sizeof kBootEnvironment) != std::string(kBootEnvironment) + "=")
      envp.push_back(*entry);
  envp.push_back(marker.data());
  envp.push_back(nullptr);
  char* argv[] = {program_invocation_name, nullptr};
  int inherited[] = {child_end.get(), lifeline_read};

  pid_t pid = sys::spawn_self(argv, envp.data(), inherited, 2);
  if (pid < 0) throw OSError(-pid, "posix_spawn of /proc/self/exe (start method 'spawn')");
  child_end.reset();
  StartedChild child;
  child.pid = pid;
  int pidfd = sys::pidfd_open(pid);  // our unreaped child: the pid cannot be recycled yet
  if (pidfd < 0) {
    ::kill(pid, SIGKILL);
    reap_failed_start(pid);
    throw OSError(-pidfd, "pidfd_open");
  }
  child.pidfd.reset(pidfd);
  try {
    boot_child(parent_end.get(), pid, message, fds);
  } catch (...) {
    reap_failed_start(pid);
    throw;
  }
  return child;
}

}  // namespace mproc::detail
