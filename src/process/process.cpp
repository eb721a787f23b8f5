#include "mproc/process.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <poll.h>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <mutex>
#include <sched.h>
#include <typeinfo>
#include <unistd.h>

#include "process/boot.hpp"
#include "process/child_process.hpp"
#include "core/demangle.hpp"
#include "process/start_method.hpp"
#include "mproc/error.hpp"
#include "sys/fd.hpp"
#include "sys/lifeline.hpp"
#include "sys/pidfd.hpp"
#include "sys/signals.hpp"
#include "sys/spawn.hpp"

namespace mproc {
namespace detail {

// One child. Guarded by `mutex`; never locked across fork (the child does not touch it).
struct ChildState {
  enum class Phase { created, running, exited, closed };

  std::mutex mutex;
  ProcessTarget target;
  std::optional<Context> context;
  std::string name;
  bool daemon = false;
  std::vector<int> identity;  // Python's _identity: (parent's..., counter)
  Phase phase = Phase::created;
  pid_t pid = 0;
  sys::UniqueFd pidfd;
  sys::UniqueFd lifeline;  // write end of the child's lifeline; closed once it is reaped
  sys::UniqueFd status;    // a forkserver child's exit code comes here (it is not our child)
  std::optional<int> exitcode;
};

}  // namespace detail

namespace {

using detail::ChildState;
using Phase = ChildState::Phase;

// Everything mproc knows about the current process. A forked child replaces the whole
// object instead of resetting it: a mutex another parent thread held at fork() time would
// stay locked forever in the child, so the child never touches the parent's copy.
struct ProcessGlobals {
  std::mutex mutex;
  std::string name = "MainProcess";
  bool daemon = false;
  std::optional<pid_t> parent_pid;
  std::vector<int> identity;
  int created_children = 0;
  int armed_parent_lifeline = -1;      // our own lifeline to our parent, when we are a child
  bool exit_handler_registered = false;
  std::vector<std::shared_ptr<ChildState>> children;  // started and not yet reaped
};

// Leaked on purpose: the atexit handler and forked children use it after static
// destructors may have run.
ProcessGlobals*& globals_slot() {
  static ProcessGlobals* slot = new ProcessGlobals;
  return slot;
}
ProcessGlobals& state() { return *globals_slot(); }

// Set on the thread that runs a Process target in a child: mproc::exit() unwinds there.
thread_local bool running_process_target = false;


void flush_standard_streams() {
  std::cout.flush();
  std::cerr.flush();
  std::fflush(stdout);
  std::fflush(stderr);
}

[[noreturn]] void throw_os_error(int negative_errno, const char* call) { throw OSError(-negative_errno, call); }

// Drops a reaped child from the registry so that its pidfd closes with its last handle.
// Lock order: a child's mutex may be held while taking the globals' mutex, never the reverse.
// Every caller holds its own reference to the child, so erasing the registry's reference
// never destroys the (locked) child state here.
void forget_child(const ChildState& child) {
  auto& globals = state();
  std::lock_guard lock(globals.mutex);
  std::erase_if(globals.children, [&](const auto& entry) { return entry.get() == &child; });
}

// Reaps `child` if it has exited (`block` waits for it). Caller holds child.mutex.
// Returns true once the child is reaped.
bool reap_locked(ChildState& child, bool block) {
  if (child.phase != Phase::running) return child.phase == Phase::exited || child.phase == Phase::closed;
  int code = 0;
  if (child.status) {
    // The pidfd (the sentinel) becomes readable as the child exits, a moment before the
    // server has reaped it and written its exit code. Once it is readable the code is on its
    // way and is waited for, so that is_alive(), exitcode() and active_children() agree with
    // the sentinel (Python's forkserver sentinel is the status channel itself).
    bool exited = block || sys::poll_fd(child.pidfd.get(), POLLIN, std::chrono::steady_clock::now()) > 0;
    std::optional<int> reported = detail::read_forkserver_status(child.status.get(), exited);
    if (!reported) return false;
    code = *reported;
    child.status.reset();
  } else if (int rc = sys::reap(child.pid, block, &code); rc == 0) {
    return false;
  } else if (rc < 0) {
    // ECHILD: someone else (a waitpid(-1) in user code, SIGCHLD ignored) reaped it; the
    // status is lost. Report it as 255, an unknown failure.
    if (rc != -ECHILD) throw_os_error(rc, "waitid");
    code = 255;
  }
  child.exitcode = code;
  child.phase = Phase::exited;
  child.lifeline.reset();
  forget_child(child);
  return true;
}

// Reaps every finished child of this process (Python's _cleanup()).
void reap_finished_children() {
  std::vector<std::shared_ptr<ChildState>> children;
  {
    auto& globals = state();
    std::lock_guard lock(globals.mutex);
    children = globals.children;
  }
  for (auto& child : children) {
    std::lock_guard lock(child->mutex);
    reap_locked(*child, false);
  }
}

// Python's _exit_function: at normal exit, terminate daemonic children, then join all.
void join_children_at_exit() {
  auto& globals = state();
  std::vector<std::shared_ptr<ChildState>> children;
  {
    std::lock_guard lock(globals.mutex);
    children.swap(globals.children);
  }
  for (auto& child : children) {
    std::lock_guard lock(child->mutex);
    if (child->daemon && child->phase == Phase::running) sys::pidfd_send_signal(child->pidfd.get(), SIGTERM);
  }
  for (auto& child : children) {
    std::lock_guard lock(child->mutex);
    try {
      reap_locked(*child, true);
    } catch (const std::exception&) {
      // Nothing useful to do at exit with a failed waitid; the kernel reaps us anyway.
    }
  }
}

void register_exit_handler_once(ProcessGlobals& globals) {
  if (globals.exit_handler_registered) return;
  std::atexit(join_children_at_exit);
  globals.exit_handler_registered = true;
}

// Runs in the child right after fork(), with every signal blocked. Only the forking
// thread exists here; anything another parent thread had locked stays locked, so this
// builds fresh globals instead of touching the parent's.
struct ChildStart {
  ChildState* child;
  sys::Lifeline lifeline;
};

[[noreturn]] void child_main(void* argument) {
  auto& start = *static_cast<ChildStart*>(argument);
  auto& child = *start.child;
  ProcessGlobals& parent = state();
  const sigset_t* previous_mask = sys::forked_child_saved_mask();

  int armed = sys::lifeline_arm_in_child(start.lifeline);
  if (armed < 0) {
    std::fprintf(stderr, "mproc: cannot watch the parent process (errno %d); exiting\n", -armed);
    ::_exit(1);
  }
  // Our parent's own lifeline (when it is a child itself) is not ours to hold.
  if (parent.armed_parent_lifeline >= 0) ::close(parent.armed_parent_lifeline);
  detail::become_child({child.name, child.daemon, child.identity, ::getppid(), armed});

  sys::reset_caught_signals_to_default();
  sys::set_signal_mask(*previous_mask);
  detail::run_target_and_exit(child.target.local);
}

}  // namespace

namespace detail {

void become_child(ChildIdentity identity) {
  ProcessGlobals& previous = state();
  auto* fresh = new ProcessGlobals;
  fresh->name = std::move(identity.name);
  fresh->daemon = identity.daemon;
  fresh->parent_pid = identity.parent_pid;
  fresh->identity = std::move(identity.identity);
  fresh->armed_parent_lifeline = identity.armed_lifeline;
  fresh->exit_handler_registered = previous.exit_handler_registered;  // inherited atexit list
  globals_slot() = fresh;  // the previous one is leaked: a fork may have copied it locked
}

void (*before_child_exit)() noexcept = nullptr;

void run_target_and_exit(const std::function<void()>& target) {
  const std::string& name = state().name;
  int code = 0;
  running_process_target = true;
  try {
    target();
  } catch (const SystemExit& request) {
    code = request.code;
  } catch (const std::exception& error) {
    std::fflush(stdout);
    std::fprintf(stderr, "Process %s:\n%s: %s\n", name.c_str(), detail::demangle(typeid(error).name()).c_str(),
                 error.what());
    code = 1;
  } catch (...) {
    std::fflush(stdout);
    std::fprintf(stderr, "Process %s:\n%s\n", name.c_str(), detail::current_exception_type_name().c_str());
    code = 1;
  }
  running_process_target = false;
  if (before_child_exit != nullptr) before_child_exit();
  // Our own children: terminate daemons, join the rest, as the main process does at exit.
  join_children_at_exit();
  // Only the standard streams: other FILE buffers may hold the parent's unflushed data,
  // which must not be written twice (Python's child flushes sys.stdout/stderr only).
  flush_standard_streams();
  ::_exit(code);
}

}  // namespace detail

namespace {

ChildState& checked(const std::shared_ptr<ChildState>& state) {
  if (!state) throw ProcessError("use of a moved-from Process");
  return *state;
}

// Python raises ValueError("process object is closed") from every query after close().
void require_open(const ChildState& child) {
  if (child.phase == Phase::closed) throw ProcessError("process object is closed");
}

std::string needs_named_target(detail::StartMethod method) {
  return std::string("mproc: under the '") + detail::start_method_name(method) +
         "' start method a Process target must be a plain function (a free function, a static member function "
         "or a lambda without captures) with serializable arguments, as Python needs picklable ones: the child "
         "is a fresh copy of the program and cannot see this one's memory. Pass what the callable captures as "
         "arguments, or use the 'fork' start method.";
}

void require_started(const ChildState& child, const char* what) {
  if (child.phase == Phase::created) throw ProcessError(std::string("cannot ") + what + " a process that was not started");
  if (child.phase == Phase::closed) throw ProcessError(std::string("cannot ") + what + " a closed process");
}

}  // namespace

Process::Process(ProcessOptions options, std::function<void()> target)
    : Process(std::move(options), detail::ProcessTarget{std::move(target), {}}) {}

Process::Process(ProcessOptions options, detail::ProcessTarget target) : state_(std::make_shared<ChildState>()) {
  if (!target) throw std::invalid_argument("mproc::Process: empty target");
  if (options.context && options.context->method() != detail::StartMethod::fork && !target.named)
    throw ProcessError(needs_named_target(options.context->method()));
  auto& globals = state();
  std::lock_guard lock(globals.mutex);
  state_->target = std::move(target);
  state_->context = options.context;
  state_->identity = globals.identity;
  state_->identity.push_back(++globals.created_children);
  state_->daemon = options.daemon.value_or(globals.daemon);
  if (!options.name.empty()) {
    state_->name = std::move(options.name);
  } else {
    state_->name = "Process-";
    for (std::size_t i = 0; i < state_->identity.size(); ++i) {
      if (i > 0) state_->name += ':';
      state_->name += std::to_string(state_->identity[i]);
    }
  }
}

void Process::start() {
  auto& child = checked(state_);
  // A spawned copy of the program whose main did not call freeze_support() first must not
  // start processes (an endless chain); it tells its parent and exits here.
  detail::refuse_start_while_awaiting_boot();
  reap_finished_children();
  auto& globals = state();
  detail::StartMethod method;
  {
    std::lock_guard lock(child.mutex);
    if (child.phase == Phase::closed) throw ProcessError("cannot start a closed process");
    if (child.phase != Phase::created) throw ProcessError("cannot start a process twice");
    if (globals.daemon) throw ProcessError("daemonic processes are not allowed to have children");
    method = detail::start_method_of(child.context);
    if (method != detail::StartMethod::fork && !child.target.named) throw ProcessError(needs_named_target(method));
    child.phase = Phase::running;  // claims the start; a concurrent start() now fails
  }
  auto undo_claim = [&] {
    std::lock_guard lock(child.mutex);
    child.phase = Phase::created;
  };
  sys::Lifeline lifeline;
  if (int rc = sys::lifeline_create(lifeline); rc < 0) {
    undo_claim();
    throw_os_error(rc, "pipe2 (lifeline)");
  }
  sys::UniqueFd lifeline_read(lifeline.read_end), lifeline_write(lifeline.write_end);
  {
    std::lock_guard lock(globals.mutex);
    register_exit_handler_once(globals);
  }
  // Text buffered in stdout/stderr would otherwise be printed again by a forked child,
  // which inherits the buffers (Python flushes both before fork too); a spawned one would
  // print after it what the parent printed before.
  flush_standard_streams();

  pid_t pid = 0;
  sys::UniqueFd pidfd, status;
  if (method == detail::StartMethod::fork) {
    ChildStart start{&child, lifeline};
    pid = sys::fork_child(child_main, &start);
    if (pid < 0) {
      undo_claim();
      throw_os_error(pid, "fork");
    }
    lifeline_read.reset();  // the child's alone now: it owns the O_ASYNC notification
    // Nobody else may reap our child (unless the user reaps with waitpid(-1) or ignores
    // SIGCHLD), so the pid cannot be recycled before pidfd_open.
    int opened = sys::pidfd_open(pid);
    if (opened < 0) {
      int ignored_exitcode = 0;
      sys::reap(pid, true, &ignored_exitcode);  // it can only be gone already; collect it
      std::lock_guard lock(child.mutex);
      child.pid = pid;
      child.exitcode = 255;
      child.phase = Phase::exited;
      throw_os_error(opened, "pidfd_open");
    }
    pidfd.reset(opened);
  } else {
    try {
      detail::BootMessage message;
      message.name = child.name;
      message.daemon = child.daemon;
      message.identity = child.identity;
      message.parent_pid = ::getpid();
      message.start_method = static_cast<std::uint8_t>(detail::current_start_method());
      detail::FdExportScope exports;
      message.call = child.target.named();
      detail::StartedChild started = method == detail::StartMethod::spawn
                                         ? detail::start_spawned(message, exports.fds(), lifeline_read.get())
                                         : detail::start_from_forkserver(message, exports.fds(), lifeline_read.get());
      pid = started.pid;
      pidfd = std::move(started.pidfd);
      status = std::move(started.status);
    } catch (...) {
      undo_claim();
      throw;
    }
    lifeline_read.reset();
  }
  {
    std::lock_guard lock(child.mutex);
    child.pid = pid;
    child.lifeline = std::move(lifeline_write);
    child.pidfd = std::move(pidfd);
    child.status = std::move(status);
  }
  std::lock_guard lock(globals.mutex);
  globals.children.push_back(state_);
}

void Process::join() {
  auto& child = checked(state_);
  {
    std::lock_guard lock(child.mutex);
    require_started(child, "join");
  }
  join_for(std::chrono::nanoseconds::max());
}

bool Process::join_for(std::chrono::nanoseconds timeout) {
  auto& child = checked(state_);
  int pidfd;
  {
    std::lock_guard lock(child.mutex);
    require_started(child, "join");
    if (child.phase != Phase::running) return true;
    pidfd = child.pidfd.get();
  }
  if (getpid() == child.pid) throw ProcessError("a process cannot join itself");
  // Poll without the lock so terminate()/kill() from another thread proceed meanwhile.
  // The pidfd stays open: close() refuses while the child runs.
  int ready = sys::poll_fd(pidfd, POLLIN, detail::deadline_after(timeout));
  if (ready < 0) throw_os_error(ready, "poll (pidfd)");
  if (ready == 0) return false;
  std::lock_guard lock(child.mutex);
  return reap_locked(child, true);
}

bool Process::is_alive() const {
  auto& child = checked(state_);
  std::lock_guard lock(child.mutex);
  require_open(child);
  return child.phase == Phase::running && !reap_locked(child, false);
}

std::optional<int> Process::exitcode() const {
  auto& child = checked(state_);
  std::lock_guard lock(child.mutex);
  require_open(child);
  if (child.phase == Phase::running) reap_locked(child, false);
  return child.exitcode;
}

pid_t Process::pid() const {
  auto& child = checked(state_);
  std::lock_guard lock(child.mutex);
  require_open(child);
  return child.pid;
}

std::string Process::name() const {
  auto& child = checked(state_);
  std::lock_guard lock(child.mutex);
  return child.name;
}

void Process::name(std::string new_name) {
  auto& child = checked(state_);
  std::lock_guard lock(child.mutex);
  child.name = std::move(new_name);
}

bool Process::daemon() const {
  auto& child = checked(state_);
  std::lock_guard lock(child.mutex);
  return child.daemon;
}

void Process::daemon(bool on) {
  auto& child = checked(state_);
  std::lock_guard lock(child.mutex);
  if (child.phase != Phase::created) throw ProcessError("process has already started");
  child.daemon = on;
}

int Process::sentinel() const {
  auto& child = checked(state_);
  std::lock_guard lock(child.mutex);
  require_started(child, "get the sentinel of");
  return child.pidfd.get();
}

namespace {
void send_signal(ChildState& child, int signal, const char* what) {
  std::lock_guard lock(child.mutex);
  require_started(child, what);
  if (child.phase != Phase::running) return;
  int rc = sys::pidfd_send_signal(child.pidfd.get(), signal);
  if (rc < 0 && rc != -ESRCH) throw_os_error(rc, "pidfd_send_signal");
}
}  // namespace

void Process::terminate() { send_signal(checked(state_), SIGTERM, "terminate"); }
void Process::kill() { send_signal(checked(state_), SIGKILL, "kill"); }

void Process::close() {
  auto& child = checked(state_);
  std::lock_guard lock(child.mutex);
  if (child.phase == Phase::running && !reap_locked(child, false))
    throw ProcessError("cannot close a process while it is still running; join() or terminate() it first");
  child.pidfd.reset();
  child.target = {};
  child.phase = Phase::closed;
}

CurrentProcess current_process() {
  auto& globals = state();
  std::lock_guard lock(globals.mutex);
  CurrentProcess info;
  info.name_ = globals.name;
  info.pid_ = ::getpid();
  info.daemon_ = globals.daemon;
  info.parent_pid_ = globals.parent_pid;
  return info;
}

std::vector<Process> active_children() {
  reap_finished_children();
  auto& globals = state();
  std::lock_guard lock(globals.mutex);
  std::vector<Process> alive;
  alive.reserve(globals.children.size());
  for (const auto& child : globals.children) alive.push_back(Process(child));
  return alive;
}

int cpu_count() noexcept {
  for (int cpus = 1024; cpus <= 1 << 16; cpus *= 4) {
    cpu_set_t* set = CPU_ALLOC(cpus);
    if (!set) break;
    std::size_t size = CPU_ALLOC_SIZE(cpus);
    int rc = ::sched_getaffinity(0, size, set);
    int count = rc == 0 ? CPU_COUNT_S(size, set) : 0;
    CPU_FREE(set);
    if (rc == 0) return count > 0 ? count : 1;
    if (errno != EINVAL) break;  // EINVAL: the mask is larger than our set; grow it
  }
  long online = ::sysconf(_SC_NPROCESSORS_ONLN);
  return online > 0 ? static_cast<int>(online) : 1;
}

void exit(int code) {
  if (running_process_target) throw SystemExit{code};
  std::exit(code);
}

}  // namespace mproc
