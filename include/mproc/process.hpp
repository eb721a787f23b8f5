// mproc/process.hpp — multiprocessing.Process, current_process(), active_children(),
// cpu_count() and exit().
//
//   mproc::Process p([&](int n) { do_work(n); }, 42);   // any callable: this is fork()
//   p.start();
//   if (!p.join(std::chrono::seconds(5))) p.terminate();
//   int code = p.exitcode().value();                      // -SIGTERM when terminated
//
// Lifetime policy (documented promise, tested):
// - A started child never outlives this process: when the parent dies by any means, the
//   kernel SIGKILLs its children (see src/sys/lifeline.hpp).
// - No zombies: a child is reaped by join(), is_alive(), exitcode(), by the next start()
//   or active_children() of any Process (as Python does) and, at the latest, at exit.
// - Destroying a Process handle never blocks and never kills: the child keeps running and
//   stays in active_children(), like a Python Process object that was garbage-collected.
// - At normal exit (return from main / std::exit), daemonic children are terminated and
//   every child is joined, as Python's multiprocessing does.
// - A child ends with _exit() after its target: it does not run the parent's atexit
//   handlers or static destructors (Python's os._exit), but stdio is flushed.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>
#include <sys/types.h>

#include "mproc/context.hpp"
#include "mproc/detail/process_target.hpp"
#include "mproc/detail/timeout.hpp"

namespace mproc {

namespace detail {
struct ChildState;
}

/// Options of a Process, the keyword arguments of Python's constructor.
/// (Every member has a default member initializer so that designated initializers that
/// name only some members compile cleanly under -Wextra.)
struct ProcessOptions {
  std::string name = {};             ///< empty: Python's default "Process-N[:M...]"
  std::optional<bool> daemon = {};   ///< nullopt: inherit the current process's flag
  /// The start method (Python's ctx.Process); nullopt: the current one (get_start_method()).
  std::optional<Context> context = {};
};

/// A child process running a callable — Python's multiprocessing.Process. A Process is a
/// shared handle: copies refer to the same child, as Python references do;
/// active_children() returns such handles.
///
/// Under the "spawn" and "forkserver" start methods (context.hpp) the target must be a plain
/// function (free, static member, or captureless lambda) with serializable arguments, as
/// Python requires picklable ones; a Connection, Queue, lock or shared Value/Array argument
/// reaches the child by descriptor. Its globals are the program's initial values.
///
/// Thread safety: all members may be called concurrently from several threads.
class Process {
 public:
  /// Requires: `target` invocable with `args` (decay-copied, as std::thread does).
  /// Effects: prepares a child; nothing runs until start(). Under fork the callable may
  /// capture anything, references included: the child sees a copy of this address space.
  /// Throws ProcessError when options.context is spawn or forkserver and the target is not
  /// a plain function with serializable arguments.
  template <class F, class... Args>
    requires std::is_invocable_v<std::decay_t<F>, std::decay_t<Args>...>
  explicit Process(F&& target, Args&&... args)
      : Process(ProcessOptions{}, std::forward<F>(target), std::forward<Args>(args)...) {}

  template <class F, class... Args>
    requires std::is_invocable_v<std::decay_t<F>, std::decay_t<Args>...>
  Process(ProcessOptions options, F&& target, Args&&... args)
      : Process(std::move(options), detail::make_process_target(std::forward<F>(target), std::forward<Args>(args)...)) {}

  /// A target for the fork start method only.
  Process(ProcessOptions options, std::function<void()> target);
  Process(ProcessOptions options, detail::ProcessTarget target);

  /// Effects: starts the child by its start method; it runs the target and exits 0, or 1
  /// after printing an escaping exception's type and message to stderr, or mproc::exit()'s
  /// code. Under spawn/forkserver, returns once the child has received its target.
  /// Throws: ProcessError if already started or closed, if the current process is daemonic
  /// (daemons may not have children, as in Python), if the start method needs a nameable
  /// target and this one is not, or if a spawned child could not set itself up (its message
  /// says why: a function it cannot resolve, a main without freeze_support()...); OSError
  /// if fork, exec or a descriptor fails; SerializationError if an argument cannot be encoded.
  void start();

  /// Waits for the child to exit and reaps it. Throws ProcessError before start().
  void join();
  /// Waits at most `timeout`; returns true if the child has exited (and was reaped).
  template <class Rep, class Period>
  bool join(std::chrono::duration<Rep, Period> timeout) {
    return join_for(detail::to_nanoseconds(timeout));
  }

  /// True between start() and the child's exit.
  bool is_alive() const;
  /// nullopt until the child has exited; then its exit status, or -signum after a signal.
  std::optional<int> exitcode() const;
  /// The child's pid once started (0 before start()).
  pid_t pid() const;
  std::string name() const;
  /// Throws ProcessError once started.
  void name(std::string new_name);
  bool daemon() const;
  /// Throws ProcessError once started (Python: "process has already started").
  void daemon(bool on);
  /// A descriptor that becomes readable when the child exits (a pidfd): Python's sentinel,
  /// usable with poll() or mproc::wait. Valid until close(). Throws before start().
  int sentinel() const;

  /// Sends SIGTERM / SIGKILL. No effect once the child has exited. Throws before start().
  void terminate();
  void kill();

  /// Releases the handle's resources (the pidfd). Throws ProcessError if the child is
  /// still running. Afterwards every member except close(), name() and daemon() throws
  /// ProcessError, as Python raises ValueError("process object is closed").
  void close();

  friend bool operator==(const Process& a, const Process& b) noexcept { return a.state_ == b.state_; }

 private:
  explicit Process(std::shared_ptr<detail::ChildState> state) noexcept : state_(std::move(state)) {}
  bool join_for(std::chrono::nanoseconds timeout);
  friend std::vector<Process> active_children();

  std::shared_ptr<detail::ChildState> state_;
};

/// What Python's current_process() tells about the calling process.
class CurrentProcess {
 public:
  /// "MainProcess" in the original process; the Process's name in a child.
  const std::string& name() const noexcept { return name_; }
  pid_t pid() const noexcept { return pid_; }
  bool daemon() const noexcept { return daemon_; }
  /// The pid of the mproc parent; nullopt in the main process (Python's parent_process()).
  std::optional<pid_t> parent_pid() const noexcept { return parent_pid_; }

 private:
  friend CurrentProcess current_process();
  std::string name_;
  pid_t pid_ = 0;
  bool daemon_ = false;
  std::optional<pid_t> parent_pid_;
};

/// Information about the calling process. Thread-safe.
CurrentProcess current_process();

/// The children of this process that are still running (finished ones are reaped first).
/// Thread-safe.
std::vector<Process> active_children();

/// CPUs this process may run on (its affinity mask), like Python's os.process_cpu_count();
/// at least 1.
int cpu_count() noexcept;

/// Ends the calling child process with `code`, like sys.exit(): in a Process target it
/// unwinds the target's stack (running destructors) and the child exits with `code`. In the
/// main process it calls std::exit(code). The exception used to unwind does not derive from
/// std::exception, so `catch (const std::exception&)` does not swallow it.
[[noreturn]] void exit(int code = 0);

/// The exception mproc::exit() throws inside a Process target (Python's SystemExit).
struct SystemExit {
  int code;
};

}  // namespace mproc
