// mproc/context.hpp — start methods: how a new process comes to be. Python's
// get_all_start_methods, get_start_method, set_start_method, get_context and
// freeze_support.
//
//   int main(int argc, char** argv) {
//     mproc::freeze_support(argc, argv);   // first: a spawned worker runs here, never returns
//     mproc::set_start_method("forkserver");
//     mproc::Pool pool(4);                 // workers are forks of a small, clean server
//   }
//
// - "fork" (the default): the child is a copy of the caller, made by fork(). Fastest for a
//   small parent; any callable may be a target. It copies the parent's page tables (a cost
//   that grows with the parent's memory) and inherits whatever another thread had locked.
// - "spawn": the child is a fresh copy of the program (/proc/self/exe) that runs the target
//   from mproc::freeze_support() at the top of main. Nothing of the parent's memory, threads
//   or locks is inherited; start cost is flat in the parent's size.
// - "forkserver": one fresh copy of the program is spawned on first use; it forks each new
//   child on request. Start cost near fork's of a small process, flat in the parent's size.
// Under spawn and forkserver a target (Process target, pool initializer) must be a plain
// function with serializable arguments, and main must call freeze_support() first.
// The default stays "fork" because it runs every program unchanged (no freeze_support,
// capturing lambdas as targets); see docs/guide.md, "Which start method?".
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mproc {

namespace detail {
enum class StartMethod : unsigned char { fork, spawn, forkserver };
}

/// A start method chosen for some objects (Python's context object). Cheap to copy.
/// Pass it as ProcessOptions::context, PoolOptions::context or
/// ProcessPoolExecutorOptions::mp_context.
class Context {
 public:
  /// "fork", "spawn" or "forkserver".
  std::string get_start_method() const;
  friend bool operator==(const Context&, const Context&) = default;

  /// For mproc's own use: which method this is.
  detail::StartMethod method() const noexcept { return method_; }

 private:
  friend Context get_context(std::optional<std::string_view> method);
  explicit Context(detail::StartMethod method) noexcept : method_(method) {}
  detail::StartMethod method_;
};

/// {"fork", "spawn", "forkserver"}, the default first.
std::vector<std::string> get_all_start_methods();

/// The current start method. Like Python, asking fixes it: a later set_start_method without
/// `force` throws. Thread-safe.
std::string get_start_method();
/// Python's get_start_method(allow_none=True): nullopt while none was set or fixed.
std::optional<std::string> get_start_method(bool allow_none);

/// Sets the start method used where no context is given. Throws std::invalid_argument for an
/// unknown name, Error ("context has already been set") if it was set or fixed before,
/// unless `force`. Thread-safe; affects processes started afterwards.
void set_start_method(std::string_view method, bool force = false);

/// The context of `method` ("fork", "spawn", "forkserver"); without one, the current start
/// method's. Throws std::invalid_argument for an unknown name.
Context get_context(std::optional<std::string_view> method = std::nullopt);

/// The first statement of main in a program that uses spawn or forkserver. In a process
/// started as a spawn or forkserver child it runs what the parent asked for and never
/// returns; anywhere else it returns at once. A spawned copy whose main does not call it
/// first is detected (its parent's start() throws ProcessError naming the fix), and it never
/// starts processes of its own.
void freeze_support();
/// The same, for a main that has argc/argv at hand; it also serves a copy that MPI started
/// (mproc::mpi's spawn mode marks it in argv, MPI passing no environment across hosts).
void freeze_support(int argc, char** argv);

}  // namespace mproc
