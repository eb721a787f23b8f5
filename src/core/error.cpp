#include "mproc/error.hpp"

#include <cstring>
#include <utility>

namespace mproc {

OSError::OSError(int errno_value, const std::string& what_call)
    : Error(what_call + ": " + std::strerror(errno_value)),
      code_(errno_value, std::system_category()) {}

RemoteError::RemoteError(std::string type_name, std::string message, pid_t pid)
    : Error(type_name + ": " + message + " (in process " + std::to_string(pid) + ")"),
      type_name_(std::move(type_name)),
      message_(std::move(message)),
      pid_(pid) {}

namespace {
std::string describe_exit(pid_t pid, int exitcode, const std::string& detail) {
  std::string text = "worker " + std::to_string(pid) + " died ";
  text += exitcode < 0 ? "by signal " + std::to_string(-exitcode) + " (" + strsignal(-exitcode) + ")"
                       : "with exit code " + std::to_string(exitcode);
  if (!detail.empty()) text += ": " + detail;
  return text;
}
}  // namespace

WorkerLostError::WorkerLostError(pid_t pid, int exitcode, const std::string& detail)
    : Error(describe_exit(pid, exitcode, detail)), pid_(pid), exitcode_(exitcode) {}

MemoryLimitError::MemoryLimitError(pid_t pid, int exitcode, std::uint64_t limit_bytes, const std::string& detail)
    : WorkerLostError(pid, exitcode,
                      "the task went past the worker's memory limit of " + std::to_string(limit_bytes >> 20) + " MiB" +
                          (detail.empty() ? "" : " (" + detail + ")")),
      limit_(limit_bytes) {}

}  // namespace mproc
