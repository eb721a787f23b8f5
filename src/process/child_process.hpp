// child_process — what every kind of child does to become one, whichever start method made
// it (process.cpp). Private to the library.
#pragma once

#include <functional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace mproc::detail {

struct ChildIdentity {
  std::string name;
  bool daemon = false;
  std::vector<int> identity;  // Python's _identity
  pid_t parent_pid = 0;
  int armed_lifeline = -1;    // the child's end of its lifeline, armed
};

/// In a new child: replaces this process's mproc state (name, daemon flag, children...) with
/// a child's. Never touches the previous state's mutex (a fork may have copied it locked).
void become_child(ChildIdentity identity);

/// Set by a library part that must finish something before a child's _exit (managers: the
/// one-way calls not yet acknowledged, so that a parent's join() orders after them).
extern void (*before_child_exit)() noexcept;

/// Runs `target` as a Process target and ends the process: exit code 0, mproc::exit()'s
/// code, or 1 after printing an escaping exception; joins its own children first.
[[noreturn]] void run_target_and_exit(const std::function<void()>& target);

}  // namespace mproc::detail
