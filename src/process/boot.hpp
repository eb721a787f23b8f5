// boot — how a child that is not a plain fork learns what to run: the start message its
// parent sends over a socket (the "boot socket"), and its answer. Used by spawn (an exec'd
// copy of the program receives it in freeze_support()) and forkserver (a fork of the
// server receives it). Private to the library.
#pragma once

#include <cstdint>
#include <string>
#include <sys/types.h>
#include <vector>

#include "mproc/detail/process_target.hpp"
#include "sys/fd.hpp"

namespace mproc::detail {

/// The environment variable that marks a spawned copy of the program: "<boot fd>,<lifeline fd>".
inline constexpr char kBootEnvironment[] = "MPROC_BOOT";
/// argv marker of a spawned copy, for launchers that do not pass the environment (MPI).
inline constexpr char kBootArgument[] = "--mproc-boot";
/// Serves a copy of the program that a launcher started with argv {exe, kBootArgument, kind,
/// ...} (MPI_Comm_spawn passes no descriptors and, across hosts, no environment). Must not
/// return: it ends the process.
using ArgvBootHandler = void (*)(int argc, char** argv);
/// Registers the handler for `kind` (a string literal), from a static initialiser of the
/// library part that starts such copies (mproc::mpi), so the core library never depends on it.
void register_argv_boot(const char* kind, ArgvBootHandler handler) noexcept;
/// freeze_support(argc, argv) in a copy started with kBootArgument: runs the registered
/// handler, or says on stderr that nothing serves that kind and exits with kBootFailedExit.
[[noreturn]] void run_argv_boot(int argc, char** argv) noexcept;
/// A booted child that could not set itself up exits with this code (after telling its
/// parent why over the boot socket).
inline constexpr int kBootFailedExit = 121;
/// How long a parent waits for a new child's answer before it concludes that the program
/// does not call freeze_support() first.
inline constexpr int kBootTimeoutSeconds = 10;

struct BootMessage {
  std::uint32_t version = 1;
  std::string name;
  bool daemon = false;
  std::vector<int> identity;
  std::int32_t parent_pid = 0;
  /// The parent's start method (a StartMethod): the child's own, as in Python, so that a
  /// pool made inside a spawned child spawns too.
  std::uint8_t start_method = 0;
  NamedCall call;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(version, name, daemon, identity, parent_pid, start_method, call);
  }
};

enum class BootStatus : std::uint8_t { ready = 1, setup_failed = 2, freeze_support_missing = 3 };

struct BootReply {
  BootStatus status = BootStatus::setup_failed;
  std::string detail;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(status, detail);
  }
};

/// Collects the descriptors export_fd() hands out on this thread while it lives.
class FdExportScope {
 public:
  FdExportScope();
  ~FdExportScope();
  FdExportScope(const FdExportScope&) = delete;
  FdExportScope& operator=(const FdExportScope&) = delete;
  const std::vector<int>& fds() const noexcept { return fds_; }

 private:
  friend std::uint32_t export_fd(int fd);
  std::vector<int> fds_;
  FdExportScope* previous_;
};

/// Parent side: sends `message` with `fds` over `boot_socket` and waits for the child's
/// answer. Throws ProcessError, saying why, when the child could not set itself up, does
/// not call freeze_support(), dies first or does not answer within kBootTimeoutSeconds
/// (then it is killed; `pid` is reaped by the caller).
void boot_child(int boot_socket, pid_t pid, const BootMessage& message, const std::vector<int>& fds);

/// Child side: receives the start message on `boot_socket`, arms `lifeline`, answers, and
/// runs the target as a Process's; never returns.
[[noreturn]] void run_booted_child(sys::UniqueFd boot_socket, int lifeline);

/// Throws nothing; in a spawned copy that has not reached freeze_support() (its main does
/// not call it first), tells the parent so and exits: such a copy never starts processes of
/// its own, so a forgotten freeze_support() cannot become an endless chain of processes.
void refuse_start_while_awaiting_boot() noexcept;

}  // namespace mproc::detail
