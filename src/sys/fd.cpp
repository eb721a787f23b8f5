#include "sys/fd.hpp"

#include <cerrno>
#include <csignal>
#include <pthread.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace mproc::sys {

void UniqueFd::reset(int fd) noexcept {
  if (fd_ >= 0) close_fd(fd_);
  fd_ = fd;
}

timespec monotonic_timespec(Clock::time_point when) noexcept {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(when.time_since_epoch()).count();
  if (ns < 0) ns = 0;
  return timespec{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
}

void close_fd(int fd) noexcept {
  // Linux releases the descriptor even when close() reports EINTR; retrying could close
  // a descriptor another thread has just been given.
  (void)::close(fd);
}

namespace {
// Remaining time until the deadline as a timespec for ppoll; nullptr waits forever.
const timespec* remaining(const Deadline& deadline, timespec& storage) noexcept {
  if (!deadline) return nullptr;
  auto left = *deadline - Clock::now();
  if (left < Clock::duration::zero()) left = Clock::duration::zero();
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
  storage.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
  storage.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  return &storage;
}
}  // namespace

int poll_fds(PollEntry* entries, std::size_t count, const Deadline& deadline) noexcept {
  static_assert(sizeof(PollEntry) == sizeof(pollfd), "PollEntry mirrors struct pollfd");
  for (;;) {
    timespec storage{};
    int ready = ::ppoll(reinterpret_cast<pollfd*>(entries), count, remaining(deadline, storage), nullptr);
    if (ready >= 0) return ready;
    if (errno != EINTR) return -errno;
  }
}

int poll_fd(int fd, short events, const Deadline& deadline) noexcept {
  PollEntry entry{fd, events, 0};
  int ready = poll_fds(&entry, 1, deadline);
  return ready > 0 ? entry.revents : ready;
}

namespace {
// Drops the first `done` bytes from the front of an iovec array.
void advance(struct iovec*& iov, std::size_t& count, std::size_t done) noexcept {
  while (count > 0 && done >= iov->iov_len) {
    done -= iov->iov_len;
    ++iov;
    --count;
  }
  if (count > 0) {
    iov->iov_base = static_cast<char*>(iov->iov_base) + done;
    iov->iov_len -= done;
  }
}

// Calls write_once(iov, count) until everything is written; write_once returns what
// writev/sendmsg return.
template <class WriteOnce>
int write_all_with(struct iovec* iov, std::size_t count, WriteOnce write_once) noexcept {
  while (count > 0) {
    ssize_t written = write_once(iov, count);
    if (written < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    advance(iov, count, static_cast<std::size_t>(written));
  }
  return 0;
}
}  // namespace

int send_all(int fd, struct iovec* iov, std::size_t count) noexcept {
  return write_all_with(iov, count, [fd](struct iovec* parts, std::size_t n) {
    msghdr message{};
    message.msg_iov = parts;
    message.msg_iovlen = n;
    return ::sendmsg(fd, &message, MSG_NOSIGNAL);
  });
}

namespace {
thread_local bool sigpipe_handled = false;
}  // namespace

void sigpipe_handled_on_this_thread() noexcept { sigpipe_handled = true; }

int write_all_nosigpipe(int fd, struct iovec* iov, std::size_t count) noexcept {
  auto write_once = [fd](struct iovec* parts, std::size_t n) { return ::writev(fd, parts, static_cast<int>(n)); };
  if (sigpipe_handled) return write_all_with(iov, count, write_once);
  // Only sockets know MSG_NOSIGNAL. For a pipe, block SIGPIPE on this thread around the
  // write (a thread-directed signal stays pending while blocked), then take back the one
  // our failed write raised. If the caller had SIGPIPE blocked already, a pending SIGPIPE
  // may be its own: leave it alone.
  sigset_t sigpipe_only, previous;
  sigemptyset(&sigpipe_only);
  sigaddset(&sigpipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &sigpipe_only, &previous);
  int rc = write_all_with(iov, count, write_once);
  if (rc == -EPIPE && !sigismember(&previous, SIGPIPE)) {
    const timespec no_wait{0, 0};
    while (::sigtimedwait(&sigpipe_only, nullptr, &no_wait) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  return rc;
}

ssize_t read_some(int fd, void* buffer, std::size_t n) noexcept {
  for (;;) {
    ssize_t got = ::read(fd, buffer, n);
    if (got >= 0) return got;
    if (errno != EINTR) return -errno;
  }
}

ssize_t read_full(int fd, void* buffer, std::size_t n) noexcept {
  std::size_t done = 0;
  while (done < n) {
    ssize_t got = read_some(fd, static_cast<char*>(buffer) + done, n - done);
    if (got < 0) return got;
    if (got == 0) break;
    done += static_cast<std::size_t>(got);
  }
  return static_cast<ssize_t>(done);
}

int set_nonblocking(int fd, bool on) noexcept {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return -errno;
  flags = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  return ::fcntl(fd, F_SETFL, flags) < 0 ? -errno : 0;
}

}  // namespace mproc::sys
