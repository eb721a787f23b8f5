// sys/fd — file descriptors: ownership and EINTR-safe I/O. errno-level and noexcept:
// functions return 0 / a count on success and -errno on failure; callers above throw.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <utility>

namespace mproc::sys {

using Clock = std::chrono::steady_clock;
/// An absolute time after which a blocking call gives up; nullopt waits forever. The same type
/// as detail::Deadline, which mproc/detail/timeout.hpp makes from a user's timeout.
using Deadline = std::optional<Clock::time_point>;

/// A steady_clock time point as an absolute CLOCK_MONOTONIC timespec (the clock steady_clock
/// reads on Linux), for kernel and pthread calls that take absolute deadlines.
timespec monotonic_timespec(Clock::time_point when) noexcept;

/// Owns one file descriptor; closes it on destruction. Move-only.
class UniqueFd {
 public:
  UniqueFd() noexcept = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

/// close(2) that never retries on EINTR (on Linux the fd is gone either way).
void close_fd(int fd) noexcept;

/// Waits until `fd` reports one of `events` or the deadline passes, restarting after
/// signals with the remaining time. Returns the revents (>0), 0 on timeout, or -errno.
int poll_fd(int fd, short events, const Deadline& deadline) noexcept;

/// Polls many fds at once (struct pollfd array); same return convention as poll(2)
/// except -errno on failure; restarts after signals.
struct PollEntry {
  int fd;
  short events;
  short revents;
};
int poll_fds(PollEntry* entries, std::size_t count, const Deadline& deadline) noexcept;

/// Writes all of iov[0..count) to a socket with MSG_NOSIGNAL (a closed peer is EPIPE, not
/// SIGPIPE), retrying short writes and EINTR. Returns 0 or -errno.
int send_all(int fd, struct iovec* iov, std::size_t count) noexcept;

/// Writes all of iov[0..count) to a pipe, retrying short writes and EINTR. SIGPIPE is
/// blocked on the calling thread meanwhile and, when the write fails with EPIPE (no reader
/// left), the SIGPIPE it raised is consumed, so a vanished reader is an error, never a
/// signal. Returns 0 or -errno.
int write_all_nosigpipe(int fd, struct iovec* iov, std::size_t count) noexcept;

/// Declares that SIGPIPE can never reach the calling thread (it is blocked on the thread for
/// good, or ignored in the process), so write_all_nosigpipe() may skip its two signal-mask
/// calls. For mproc's own threads and worker processes only.
void sigpipe_handled_on_this_thread() noexcept;

/// Reads up to n bytes, retrying EINTR. Returns the count (0 at end of file) or -errno.
ssize_t read_some(int fd, void* buffer, std::size_t n) noexcept;

/// Reads exactly n bytes unless end of file comes first. Returns the count read
/// (< n only at end of file) or -errno.
ssize_t read_full(int fd, void* buffer, std::size_t n) noexcept;

/// Sets or clears O_NONBLOCK. Returns 0 or -errno.
int set_nonblocking(int fd, bool on) noexcept;

}  // namespace mproc::sys
