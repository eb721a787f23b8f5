#include "process/boot.hpp"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include "process/child_process.hpp"
#include "mproc/context.hpp"
#include "mproc/error.hpp"
#include "process/start_method.hpp"
#include "sys/lifeline.hpp"
#include "sys/unix_socket.hpp"

namespace mproc::detail {

namespace {

// ---- frames on the boot socket ------------------------------------------------------------

struct BootFrameHeader {
  std::uint32_t magic = 0x4d504254;  // "MPBT"
  std::uint32_t fd_count = 0;
  std::uint64_t length = 0;
};
constexpr std::uint64_t kMaxBootMessage = std::uint64_t{1} << 32;

void send_boot_frame(int socket, const std::vector<std::byte>& payload, const std::vector<int>& fds) {
  if (fds.size() > sys::kMaxPassedFds)
    throw ProcessError("mproc: a Process's arguments hold more than " + std::to_string(sys::kMaxPassedFds) +
                       " descriptors (queues, locks, connections); pass fewer");
  BootFrameHeader header;
  header.fd_count = static_cast<std::uint32_t>(fds.size());
  header.length = payload.size();
  if (int rc = sys::send_with_fds(socket, &header, sizeof header, fds.data(), fds.size()); rc < 0)
    throw OSError(-rc, "sendmsg (start message)");
  if (payload.empty()) return;
  iovec rest{const_cast<std::byte*>(payload.data()), payload.size()};
  if (int rc = sys::send_all(socket, &rest, 1); rc < 0) throw OSError(-rc, "send (start message)");
}

// Returns false at end of file before a whole frame.
bool recv_boot_frame(int socket, std::vector<std::byte>& payload, std::vector<sys::UniqueFd>& fds) {
  BootFrameHeader header;
  int received[sys::kMaxPassedFds];
  std::size_t received_count = 0;
  long got = sys::recv_with_fds(socket, &header, sizeof header, received, &received_count);
  for (std::size_t i = 0; i < received_count; ++i) fds.emplace_back(received[i]);
  if (got < 0) throw OSError(static_cast<int>(-got), "recvmsg (start message)");
  if (static_cast<std::size_t>(got) < sizeof header) return false;
  if (header.magic != BootFrameHeader{}.magic || header.length > kMaxBootMessage || header.fd_count != fds.size())
    throw SerializationError("mproc: malformed start message");
  payload.resize(header.length);
  if (header.length == 0) return true;
  ssize_t rest = sys::read_full(socket, payload.data(), payload.size());
  if (rest < 0) throw OSError(static_cast<int>(-rest), "read (start message)");
  return static_cast<std::size_t>(rest) == payload.size();
}

void send_reply(int socket, BootStatus status, std::string detail) noexcept {
  try {
    send_boot_frame(socket, dumps(BootReply{status, std::move(detail)}), {});
  } catch (...) {
    // The parent is gone or the socket broke: nobody is left to tell.
  }
}

// ---- descriptors inside the start message --------------------------------------------------

thread_local FdExportScope* current_export = nullptr;
thread_local std::vector<sys::UniqueFd>* current_import = nullptr;

// ---- a spawned copy that has not reached freeze_support() ----------------------------------

// A spawned copy learns that it is one from its environment, on first asking: during
// static initialisation (below) or, whichever comes first, when user code run by another
// static initialiser starts a process — so that a forgotten freeze_support() is caught
// whatever order the program's static initialisers run in.
struct AwaitingBoot {
  bool awaiting = false;
  int boot_fd = -1;
  int lifeline_fd = -1;
};

void report_missing_freeze_support() noexcept;

AwaitingBoot& awaiting_boot() {
  static AwaitingBoot state = [] {
    AwaitingBoot read;
    const char* marker = std::getenv(kBootEnvironment);
    if (marker != nullptr && std::sscanf(marker, "%d,%d", &read.boot_fd, &read.lifeline_fd) == 2) {
      read.awaiting = true;
      // A copy whose main returns without calling freeze_support() says so on its way out.
      std::atexit(report_missing_freeze_support);
    }
    return read;
  }();
  return state;
}

// In a spawned copy still awaiting its start message: tells the parent, once, that
// freeze_support() was missed (`how`). False anywhere else.
bool report_missed_freeze_support(const char* how) noexcept {
  auto& state = awaiting_boot();
  if (!state.awaiting) return false;
  state.awaiting = false;
  send_reply(state.boot_fd, BootStatus::freeze_support_missing, how);
  return true;
}

void report_missing_freeze_support() noexcept {
  report_missed_freeze_support("the program's main() did not call mproc::freeze_support() before it went on");
}

[[maybe_unused]] const bool boot_marker_read = awaiting_boot().awaiting;

std::string describe_boot_reply(const BootReply& reply) {
  switch (reply.status) {
    case BootStatus::freeze_support_missing:
      return "mproc: the new process (a fresh copy of this program) did not run what it was started for: " +
             reply.detail +
             ". With the 'spawn' and 'forkserver' start methods, mproc::freeze_support() (or "
             "freeze_support(argc, argv)) must be the first statement of main.";
    case BootStatus::setup_failed:
      return "mproc: the new process could not set itself up: " + reply.detail;
    case BootStatus::ready:
      break;
  }
  return {};
}

}  // namespace

FdExportScope::FdExportScope() : previous_(current_export) { current_export = this; }
FdExportScope::~FdExportScope() {
  current_export = previous_;
}

// A closed or absent descriptor (-1) travels as itself.
constexpr std::uint32_t kNoFd = UINT32_MAX;

std::uint32_t export_fd(int fd) {
  if (fd < 0) return kNoFd;
  if (current_export == nullptr)
    throw SerializationError(
        "mproc: this value holds a descriptor (a Connection, or the shared memory of a Queue, Lock or Value), "
        "which can only be passed to a Process as it starts; share it with pool workers through the pool's "
        "initializer (mproc::Initializer(init, queue)) or by inheritance (fork), as Python requires");
  auto& fds = current_export->fds_;
  for (std::size_t i = 0; i < fds.size(); ++i)
    if (fds[i] == fd) return static_cast<std::uint32_t>(i);
  fds.push_back(fd);
  return static_cast<std::uint32_t>(fds.size() - 1);
}

int import_fd(std::uint32_t index) {
  if (index == kNoFd) return -1;
  if (current_import == nullptr || index >= current_import->size() || !(*current_import)[index])
    throw SerializationError("mproc: a descriptor index that was not passed with this message");
  int fd = ::fcntl((*current_import)[index].get(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) throw OSError(errno, "fcntl(F_DUPFD_CLOEXEC)");
  return fd;
}

void end_fd_import() noexcept {
  if (current_import != nullptr) current_import->clear();
  current_import = nullptr;
}

void boot_child(int boot_socket, pid_t pid, const BootMessage& message, const std::vector<int>& fds) {
  try {
    send_boot_frame(boot_socket, dumps(message), fds);
  } catch (const OSError& error) {
    // A copy that never reached freeze_support() may have answered and gone before the
    // message was sent: its answer, if any, is still in the socket.
    if (error.code().value() != EPIPE && error.code().value() != ECONNRESET) throw;
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kBootTimeoutSeconds);
  int ready = sys::poll_fd(boot_socket, POLLIN, deadline);
  if (ready < 0) throw OSError(-ready, "poll (start message)");
  if (ready == 0) {
    ::kill(pid, SIGKILL);
    throw ProcessError("mproc: the new process (a fresh copy of this program) did not answer within " +
                       std::to_string(kBootTimeoutSeconds) +
                       " s; it was killed. With the 'spawn' and 'forkserver' start methods, "
                       "mproc::freeze_support() must be the first statement of main.");
  }
  std::vector<std::byte> payload;
  std::vector<sys::UniqueFd> no_fds;
  if (!recv_boot_frame(boot_socket, payload, no_fds))
    throw ProcessError("mproc: the new process ended during its start-up, before it reached "
                       "mproc::freeze_support() (see its exit code and its output on stderr)");
  auto reply = loads<BootReply>(payload);
  if (reply.status != BootStatus::ready) throw ProcessError(describe_boot_reply(reply));
}

void run_booted_child(sys::UniqueFd boot_socket, int lifeline) {
  awaiting_boot().awaiting = false;
  // Ctrl-C and the like go to the defaults: the parent's handlers mean nothing here.
  int armed = sys::lifeline_arm_in_child(sys::Lifeline{lifeline, -1});
  if (armed < 0) {
    send_reply(boot_socket.get(), BootStatus::setup_failed,
               std::string("cannot watch the parent process: ") + std::strerror(-armed));
    ::_exit(kBootFailedExit);
  }
  BootMessage message;
  std::vector<sys::UniqueFd> fds;
  try {
    std::vector<std::byte> payload;
    if (!recv_boot_frame(boot_socket.get(), payload, fds)) ::_exit(kBootFailedExit);  // the parent is gone
    message = loads<BootMessage>(payload);
    if (message.version != BootMessage{}.version) throw SerializationError("start message of another mproc version");
    // Both names are checked before the child says it is ready: a function this copy
    // cannot resolve to the same code is a setup failure, never a jump.
    resolve_code(message.call.invoker);
    resolve_code(message.call.function);
  } catch (const std::exception& error) {
    send_reply(boot_socket.get(), BootStatus::setup_failed, error.what());
    ::_exit(kBootFailedExit);
  }
  send_reply(boot_socket.get(), BootStatus::ready, {});
  boot_socket.reset();
  if (message.start_method <= static_cast<std::uint8_t>(StartMethod::forkserver))
    set_start_method(start_method_name(static_cast<StartMethod>(message.start_method)), true);
  become_child(ChildIdentity{message.name, message.daemon, message.identity, message.parent_pid, armed});
  current_import = &fds;
  const NamedCall& call = message.call;
  run_target_and_exit([&] { run_named_call(call); });
}

namespace {
struct ArgvBoot {
  const char* kind;
  ArgvBootHandler handler;
};
// Filled by static initialisers only (before main, one thread): no lock needed.
ArgvBoot argv_boots[4] = {};
}  // namespace

void register_argv_boot(const char* kind, ArgvBootHandler handler) noexcept {
  for (auto& slot : argv_boots)
    if (slot.kind == nullptr || std::strcmp(slot.kind, kind) == 0) {
      slot = {kind, handler};
      return;
    }
}

void run_argv_boot(int argc, char** argv) noexcept {
  const char* kind = argc >= 3 && argv[2] != nullptr ? argv[2] : "";
  for (const auto& slot : argv_boots)
    if (slot.kind != nullptr && std::strcmp(slot.kind, kind) == 0) {
      slot.handler(argc, argv);
      std::exit(0);  // a handler ends the process; this only guards against one that returns
    }
  std::fprintf(stderr,
               "mproc: this copy of the program was started with '%s %s', but nothing in it serves that kind of "
               "start (a copy started by mproc::mpi must link mproc::mpi; see docs/guide.md)\n",
               kBootArgument, kind);
  ::_exit(kBootFailedExit);
}

void refuse_start_while_awaiting_boot() noexcept {
  if (!report_missed_freeze_support(
          "the program's main() started a process or a pool before calling mproc::freeze_support()"))
    return;
  std::fflush(stdout);
  ::_exit(kBootFailedExit);
}

}  // namespace mproc::detail

namespace mproc {

void freeze_support() {
  auto& state = detail::awaiting_boot();
  if (!state.awaiting) return;
  ::unsetenv(detail::kBootEnvironment);  // this copy's own children are not booted children
  detail::run_booted_child(sys::UniqueFd(state.boot_fd), state.lifeline_fd);
}

void freeze_support(int argc, char** argv) {
  // A copy started by a launcher that passes neither descriptors nor the environment (MPI's
  // spawn) is marked in argv instead; it never returns from here either.
  if (argc >= 2 && argv != nullptr && argv[1] != nullptr && std::strcmp(argv[1], detail::kBootArgument) == 0)
    detail::run_argv_boot(argc, argv);
  freeze_support();
}

}  // namespace mproc
