#include "sys/fd.hpp"

#include <cerrno>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace mproc::sys {

void UniqueFd::reset(int fd) noexcept {
  if (fd_ >= 0) close_fd(fd_);
  fd_ = fd;
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

int send_all(int fd, struct iovec* iov, std::size_t count) noexcept {
  while (count > 0) {
    msghdr message{};
    message.msg_iov = iov;
    message.msg_iovlen = count;
    ssize_t sent = ::sendmsg(fd, &message, MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    auto left = static_cast<std::size_t>(sent);
    while (count > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --count;
    }
    if (count > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  return 0;
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
