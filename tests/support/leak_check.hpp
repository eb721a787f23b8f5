// Test support: fd / zombie leak checks and helper programs that re-run the test binary.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace mproc::testing {

/// The targets of this process's open descriptors ("/proc/self/fd"), sorted.
std::vector<std::string> open_fds();

/// The pids of this process's children (of all its threads), from /proc.
std::vector<int> child_pids();

/// Reaps, until none is left, every child of this process not in `before` (sorted): the
/// orphans a killed descendant left to this subreaper (its children, or its forkserver,
/// whose own children follow if it dies first). Each must end by itself: a survivor hangs
/// the test until its ctest timeout. Returns each reaped pid's wait status.
std::map<int, int> reap_orphans(const std::vector<int>& before);

/// True if this process has a child that exited and was not reaped (a zombie).
bool has_zombie_child();

/// A fixture that fails a test which leaks a descriptor or leaves a zombie child.
class LeakCheckedTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

 private:
  std::vector<std::string> fds_before_;
};

/// Result of running a helper program.
struct HelperResult {
  int exitcode;        // Python convention: status, or -signum
  std::string output;  // its stdout
};

/// Runs the program at `path` (no arguments) with this process's environment plus
/// `extra_environment` ("NAME=value" entries), and waits for it; its stdout is captured.
HelperResult run_program(const std::string& path, const std::vector<std::string>& extra_environment);

/// Runs this test binary again as helper `name` (registered with MPROC_TEST_HELPER),
/// with `args` in the environment as MPROC_TEST_HELPER_ARG, and waits for it.
HelperResult run_helper(const std::string& name, const std::string& arg = {});

/// Registers a helper: when the binary is started by run_helper(name), `body` runs
/// during static initialisation instead of the tests and the process exits with its return
/// value through std::exit (so atexit handlers run, as at the end of a real main()).
struct HelperRegistration {
  HelperRegistration(const char* name, int (*body)(const std::string& arg));
};

#define MPROC_TEST_HELPER(name)                                                          \
  static int name##_helper_body(const std::string& arg);                                \
  static ::mproc::testing::HelperRegistration name##_helper_registration(#name, &name##_helper_body); \
  static int name##_helper_body([[maybe_unused]] const std::string& arg)

/// Makes this process the reaper of orphaned descendants (PR_SET_CHILD_SUBREAPER), so a
/// test can observe grandchildren that outlive their parent, until the returned scope ends:
/// a later test in the same process must not collect the orphans of its helpers (such as
/// a helper's forkserver, which outlives the helper for a moment).
class SubreaperScope {
 public:
  SubreaperScope();
  ~SubreaperScope();
  SubreaperScope(const SubreaperScope&) = delete;
  SubreaperScope& operator=(const SubreaperScope&) = delete;
};
[[nodiscard]] SubreaperScope become_subreaper();

/// Waits until `predicate` holds or `timeout_ms` passes; returns its last value. Polls with
/// short sleeps: for conditions no descriptor can signal (another process's state).
bool eventually(const std::function<bool()>& predicate, int timeout_ms = 10'000);

/// True while a process with this pid exists and is not a zombie.
bool process_running(int pid);

}  // namespace mproc::testing
