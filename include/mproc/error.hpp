// mproc/error.hpp — the exception hierarchy shared by every mproc module.
//
// Every error mproc throws derives from mproc::Error (itself a std::runtime_error), so one
// catch clause takes them all; each subclass mirrors the Python exception of the same role
// and carries data a caller can branch on (errno, pid, exit code, remote type name), not
// only a formatted string. Bad arguments are std::invalid_argument, as the standard library.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <sys/types.h>

namespace mproc {

/// Base of every mproc error.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A key or name a manager's dict or Namespace proxy does not hold (Python's KeyError).
class KeyError : public Error {
 public:
  using Error::Error;
};

/// An operating-system call failed (Python's OSError). Carries the errno.
class OSError : public Error {
 public:
  OSError(int errno_value, const std::string& what_call);
  /// The errno reported by the failing call.
  int errno_value() const noexcept { return code_.value(); }
  const std::error_code& code() const noexcept { return code_; }

 private:
  std::error_code code_;
};

/// Misuse of a Process (start twice, join before start, close while alive), as Python's
/// ValueError/AssertionError on multiprocessing.Process; also mproc's multiprocessing.ProcessError.
class ProcessError : public Error {
 public:
  using Error::Error;
};

/// A blocking call ran out of time (Python's TimeoutError / multiprocessing.TimeoutError).
class TimeoutError : public Error {
 public:
  using Error::Error;
};

/// Reading from a connection whose peer closed it (Python's EOFError).
class EOFError : public Error {
 public:
  using Error::Error;
};

/// A Listener/Client handshake failed: the peer's key differs, it broke the protocol, or it
/// did not finish in time (Python's multiprocessing.AuthenticationError). The message names
/// the peer's address.
class AuthenticationError : public Error {
 public:
  using Error::Error;
};

/// A value could not be encoded or a frame could not be decoded: truncated, oversized,
/// corrupted, or of another type than the one asked for (Python's pickle.UnpicklingError).
class SerializationError : public Error {
 public:
  using Error::Error;
};

/// A task threw an exception whose type has no local equivalent. Carries the remote
/// exception's type name, its message and the pid of the process that threw it.
class RemoteError : public Error {
 public:
  RemoteError(std::string type_name, std::string message, pid_t pid);
  const std::string& type_name() const noexcept { return type_name_; }
  const std::string& message() const noexcept { return message_; }
  pid_t pid() const noexcept { return pid_; }

 private:
  std::string type_name_;
  std::string message_;
  pid_t pid_;
};

/// The worker running a task died before finishing it. exitcode() follows Python's
/// Process.exitcode convention: the exit status, or -signum when a signal ended it.
class WorkerLostError : public Error {
 public:
  WorkerLostError(pid_t pid, int exitcode, const std::string& detail = {});
  pid_t pid() const noexcept { return pid_; }
  int exitcode() const noexcept { return exitcode_; }
  /// The signal that ended the worker, if a signal did.
  std::optional<int> signal() const noexcept {
    return exitcode_ < 0 ? std::optional<int>(-exitcode_) : std::nullopt;
  }

 private:
  pid_t pid_;
  int exitcode_;
};

/// A task went past its worker's hard memory limit (PoolOptions::memory_limit): an allocation
/// failed there, or the kernel killed the worker for it. The worker is replaced, as for any
/// lost worker; limit() is the limit in bytes. Python has no counterpart (a MemoryError, or a
/// worker killed by the OOM killer).
class MemoryLimitError : public WorkerLostError {
 public:
  MemoryLimitError(pid_t pid, int exitcode, std::uint64_t limit_bytes, const std::string& detail = {});
  std::uint64_t limit() const noexcept { return limit_; }

 private:
  std::uint64_t limit_;
};

/// queue.Empty: get_nowait() on an empty queue, or get(timeout) that timed out.
class Empty : public Error {
 public:
  Empty() : Error("queue is empty") {}
  using Error::Error;
};

/// queue.Full: put_nowait() on a full queue, or put(timeout) that timed out.
class Full : public Error {
 public:
  Full() : Error("queue is full") {}
  using Error::Error;
};

/// threading.BrokenBarrierError.
class BrokenBarrierError : public Error {
 public:
  using Error::Error;
};

/// concurrent.futures.CancelledError.
class CancelledError : public Error {
 public:
  using Error::Error;
};

/// concurrent.futures.InvalidStateError.
class InvalidStateError : public Error {
 public:
  using Error::Error;
};

/// concurrent.futures.BrokenExecutor.
class BrokenExecutor : public Error {
 public:
  using Error::Error;
};

}  // namespace mproc
