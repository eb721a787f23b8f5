// The forkserver start method: one fresh copy of the program (started by spawn on first
// use) forks each new child on request. The children are forks of a small process that
// has no threads, so starting one costs about a small fork, whatever this process's size.
//
// Per request the parent makes two socket pairs and sends the server one end of each and
// the child's lifeline: the boot socket (the child receives its start message on it, as a
// spawned copy does) and the status channel (the server writes the child's pid with a
// pidfd, then, once it has reaped the child, its exit code).
#include <cerrno>
#include <csignal>
#include <cstring>
#include <map>
#include <mutex>
#include <poll.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mproc/error.hpp"
#include "process/start_method.hpp"
#include "sys/lifeline.hpp"
#include "sys/pidfd.hpp"
#include "sys/signals.hpp"
#include "sys/unix_socket.hpp"

namespace mproc::detail {

namespace {

struct ForkRequest {
  std::uint32_t magic = 0x4d504652;  // "MPFR"
};
struct ForkAnswer {
  std::int32_t pid = 0;
};

// ---- the server ----------------------------------------------------------------------------

// Closes every descriptor from 3 up except the two a new child keeps.
void close_all_but(int keep_a, int keep_b) noexcept {
  if (keep_a > keep_b) std::swap(keep_a, keep_b);
  auto close_between = [](int first, int last) {
    if (first <= last) ::close_range(static_cast<unsigned>(first), static_cast<unsigned>(last), 0);
  };
  close_between(3, keep_a - 1);
  close_between(keep_a + 1, keep_b - 1);
  close_between(keep_b + 1, INT32_MAX);
}

// Forks one child for a request whose descriptors are boot, status, lifeline.
void serve_request(int control, std::map<pid_t, sys::UniqueFd>& children, const sigset_t& original_mask) {
  ForkRequest request;
  int fds[sys::kMaxPassedFds];
  std::size_t count = 0;
  long got = sys::recv_with_fds(control, &request, sizeof request, fds, &count);
  if (got <= 0) ::_exit(0);  // the parent is gone: so are we (our children die with us)
  if (got != sizeof request || request.magic != ForkRequest{}.magic || count != 3) {
    for (std::size_t i = 0; i < count; ++i) sys::close_fd(fds[i]);
    return;
  }
  sys::UniqueFd boot(fds[0]), status(fds[1]), lifeline(fds[2]);
  const pid_t server = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    // The child of a single-threaded server: nothing is locked. It dies with the server
    // (PR_SET_PDEATHSIG fires on the death of the forking thread, which is the server's
    // only one), and with the user's process through its own lifeline.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != server) ::_exit(kBootFailedExit);  // the server died before prctl
    int boot_fd = boot.release(), lifeline_fd = lifeline.release();
    close_all_but(boot_fd, lifeline_fd);
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGCHLD, SIG_DFL);
    sys::set_signal_mask(original_mask);
    run_booted_child(sys::UniqueFd(boot_fd), lifeline_fd);
  }
  if (pid < 0) return;  // the parent sees the status channel close and reports the failure
  ForkAnswer answer{pid};
  int pidfd = sys::pidfd_open(pid);  // not reaped before it is sent: the pid is still this child's
  if (pidfd < 0) {
    // Without a pidfd the parent cannot watch the child: end it; closing the status channel
    // unanswered tells the parent that this start failed.
    ::kill(pid, SIGKILL);
    return;
  }
  int passed[] = {pidfd};
  sys::send_with_fds(status.get(), &answer, sizeof answer, passed, 1);
  sys::close_fd(pidfd);
  children.emplace(pid, std::move(status));
}

void report_exits(std::map<pid_t, sys::UniqueFd>& children) {
  for (;;) {
    int code = 0;
    siginfo_t info{};
    if (::waitid(P_ALL, 0, &info, WEXITED | WNOHANG) != 0 || info.si_pid == 0) return;
    code = info.si_code == CLD_EXITED ? info.si_status : -info.si_status;
    auto child = children.find(info.si_pid);
    if (child == children.end()) continue;
    std::int32_t wire = code;
    iovec data{&wire, sizeof wire};
    sys::send_all(child->second.get(), &data, 1);
    children.erase(child);
  }
}

}  // namespace

/// The forkserver's main loop (the target of its boot message). Serves until the parent
/// closes the control socket.
void forkserver_main(PassedFd control) {
  // Ctrl-C in the terminal reaches the whole process group; the parent decides what it
  // means, and the server must outlive it to report its children's exits.
  std::signal(SIGINT, SIG_IGN);
  sigset_t sigchld, original_mask;
  sigemptyset(&sigchld);
  sigaddset(&sigchld, SIGCHLD);
  ::pthread_sigmask(SIG_BLOCK, &sigchld, &original_mask);
  sys::UniqueFd child_exits(::signalfd(-1, &sigchld, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!child_exits) throw OSError(errno, "signalfd");
  std::map<pid_t, sys::UniqueFd> children;
  for (;;) {
    sys::PollEntry entries[] = {{control.fd, POLLIN, 0}, {child_exits.get(), POLLIN, 0}};
    if (int rc = sys::poll_fds(entries, 2, std::nullopt); rc < 0) throw OSError(-rc, "poll");
    if (entries[1].revents != 0) {
      signalfd_siginfo drained[8];
      while (::read(child_exits.get(), drained, sizeof drained) > 0) {
      }
      report_exits(children);
    }
    if (entries[0].revents != 0) serve_request(control.fd, children, original_mask);
  }
}

namespace {

// ---- the parent's connection to its server -------------------------------------------------

struct ForkserverClient {
  std::mutex mutex;
  pid_t pid = 0;
  sys::UniqueFd pidfd;
  sys::UniqueFd control;
  sys::UniqueFd lifeline;  // the write end: the server dies with this process
};

ForkserverClient*& client_slot() {
  static ForkserverClient* slot = new ForkserverClient;  // leaked: children start at exit
  return slot;
}

// A forked child must not share its parent's server (their requests would interleave on one
// socket) nor its mutex (perhaps held by another thread at fork): it gets a fresh client and
// starts its own server if it needs one.
[[maybe_unused]] const bool forkserver_fork_handler = [] {
  return ::pthread_atfork(nullptr, nullptr, [] {
           ForkserverClient* inherited = client_slot();
           ::close(inherited->control.release());
           (void)inherited->pidfd.release();
           (void)inherited->lifeline.release();
           client_slot() = new ForkserverClient;
         }) == 0;
}();

bool server_alive(const ForkserverClient& client) {
  return client.pidfd && sys::poll_fd(client.pidfd.get(), POLLIN, std::chrono::steady_clock::now()) == 0;
}

// Requires client.mutex.
void start_server(ForkserverClient& client) {
  if (client.pid != 0) {
    // A server that died: collect it, start another.
    int ignored = 0;
    sys::reap(client.pid, true, &ignored);
    client.pid = 0;
    client.pidfd.reset();
    client.control.reset();
    client.lifeline.reset();
  }
  sys::UniqueFd ours, its;
  if (int rc = sys::stream_socket_pair(ours, its); rc < 0) throw OSError(-rc, "socketpair");
  sys::Lifeline lifeline;
  if (int rc = sys::lifeline_create(lifeline); rc < 0) throw OSError(-rc, "pipe2 (lifeline)");
  sys::UniqueFd lifeline_read(lifeline.read_end), lifeline_write(lifeline.write_end);
  BootMessage message;
  message.name = "ForkServer";
  message.daemon = true;
  message.parent_pid = ::getpid();
  FdExportScope exports;
  message.call = make_process_target(&forkserver_main, PassedFd{its.get()}).named();
  StartedChild server = start_spawned(message, exports.fds(), lifeline_read.get());
  client.pid = server.pid;
  client.pidfd = std::move(server.pidfd);
  client.control = std::move(ours);
  client.lifeline = std::move(lifeline_write);
}

// Requires client.mutex. Asks the server for a child; returns its status channel and pid,
// or nothing when the server is gone.
std::optional<std::pair<sys::UniqueFd, ForkAnswer>> request_child(ForkserverClient& client, int boot, int lifeline,
                                                                   sys::UniqueFd& pidfd) {
  sys::UniqueFd status_ours, status_its;
  if (int rc = sys::stream_socket_pair(status_ours, status_its); rc < 0) throw OSError(-rc, "socketpair");
  ForkRequest request;
  int fds[] = {boot, status_its.get(), lifeline};
  if (sys::send_with_fds(client.control.get(), &request, sizeof request, fds, 3) < 0) return std::nullopt;
  status_its.reset();
  ForkAnswer answer;
  int received[sys::kMaxPassedFds];
  std::size_t count = 0;
  long got = sys::recv_with_fds(status_ours.get(), &answer, sizeof answer, received, &count);
  for (std::size_t i = 1; i < count; ++i) sys::close_fd(received[i]);
  if (got != sizeof answer || count < 1) {
    if (count >= 1) sys::close_fd(received[0]);
    return std::nullopt;
  }
  pidfd.reset(received[0]);
  return std::make_pair(std::move(status_ours), answer);
}

}  // namespace

StartedChild start_from_forkserver(const BootMessage& message, const std::vector<int>& fds, int lifeline_read) {
  sys::UniqueFd boot_ours, boot_its;
  if (int rc = sys::stream_socket_pair(boot_ours, boot_its); rc < 0) throw OSError(-rc, "socketpair");
  StartedChild child;
  {
    ForkserverClient& client = *client_slot();
    std::lock_guard lock(client.mutex);
    // A server that died is replaced once; its children died with it.
    for (int attempt = 0;; ++attempt) {
      if (!server_alive(client)) start_server(client);
      auto answer = request_child(client, boot_its.get(), lifeline_read, child.pidfd);
      if (answer) {
        child.status = std::move(answer->first);
        child.pid = answer->second.pid;
        break;
      }
      // A live server that answered nothing could not fork or watch the child (out of
      // processes or descriptors): that start fails, the server and its children stay.
      // (A server that is dying closes its sockets a moment before its pidfd says so: give
      // it that moment.)
      const bool died = sys::poll_fd(client.pidfd.get(), POLLIN,
                                     std::chrono::steady_clock::now() + std::chrono::milliseconds(200)) > 0;
      if (attempt == 1 || !died)
        throw ProcessError("mproc: the forkserver could not start a process (out of processes or descriptors?)");
    }
  }
  boot_its.reset();
  boot_child(boot_ours.get(), child.pid, message, fds);
  return child;
}

std::optional<int> read_forkserver_status(int status_fd, bool block) {
  int ready = sys::poll_fd(status_fd, POLLIN, block ? sys::Deadline{} : sys::Deadline{std::chrono::steady_clock::now()});
  if (ready < 0) throw OSError(-ready, "poll (forkserver status)");
  if (ready == 0) return std::nullopt;
  std::int32_t code = 0;
  ssize_t got = sys::read_full(status_fd, &code, sizeof code);
  if (got == static_cast<ssize_t>(sizeof code)) return code;
  return -SIGKILL;  // the server died: its children were killed with it
}

}  // namespace mproc::detail
