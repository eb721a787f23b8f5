#include "sys/socket.hpp"

#include <cerrno>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>

namespace mproc::sys {

int listen_on(const SocketAddress& address, int backlog, UniqueFd& out) noexcept {
  UniqueFd fd(::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return -errno;
  const int on = 1, off = 0;
  if (address.family() == AF_INET || address.family() == AF_INET6) {
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0) return -errno;
  }
  // Dual stack where the host allows it; a host without IPv4 mapping keeps v6-only.
  if (address.family() == AF_INET6) (void)::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  if (::bind(fd.get(), address.get(), address.length) != 0) return -errno;
  if (::listen(fd.get(), backlog) != 0) return -errno;
  out = std::move(fd);
  return 0;
}

int accept_pending(int listener, UniqueFd& out, SocketAddress& peer) noexcept {
  for (;;) {
    peer.length = sizeof peer.storage;
    int fd = ::accept4(listener, peer.get(), &peer.length, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0) {
      out.reset(fd);
      return 0;
    }
    // A connection reset while it waited in the queue is the peer's problem, not the
    // listener's: take the next one. EINTR likewise.
    if (errno == EINTR || errno == ECONNABORTED) continue;
    return errno == EWOULDBLOCK ? -EAGAIN : -errno;
  }
}

int connect_to(const SocketAddress& address, const Deadline& deadline, UniqueFd& out) noexcept {
  UniqueFd fd(::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return -errno;
  // Non-blocking, so that an unreachable host (SYNs unanswered) costs the caller's timeout,
  // not the kernel's minutes of retries.
  if (::connect(fd.get(), address.get(), address.length) != 0) {
    if (errno != EINPROGRESS && errno != EINTR) return -errno;
    int revents = poll_fd(fd.get(), POLLOUT, deadline);
    if (revents < 0) return revents;
    if (revents == 0) return -ETIMEDOUT;
    int error = 0;
    socklen_t length = sizeof error;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &length) != 0) return -errno;
    if (error != 0) return -error;
  }
  if (int rc = set_nonblocking(fd.get(), false); rc < 0) return rc;
  out = std::move(fd);
  return 0;
}

int local_address(int fd, SocketAddress& out) noexcept {
  out.length = sizeof out.storage;
  return ::getsockname(fd, out.get(), &out.length) == 0 ? 0 : -errno;
}

int peer_address(int fd, SocketAddress& out) noexcept {
  out.length = sizeof out.storage;
  return ::getpeername(fd, out.get(), &out.length) == 0 ? 0 : -errno;
}

int set_no_delay(int fd) noexcept {
  SocketAddress self;
  if (int rc = local_address(fd, self); rc < 0) return rc;
  if (self.family() != AF_INET && self.family() != AF_INET6) return 0;
  const int on = 1;
  return ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) == 0 ? 0 : -errno;
}

int send_all_until(int fd, const void* data, std::size_t size, const Deadline& deadline) noexcept {
  const char* next = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t sent = ::send(fd, next, size, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent >= 0) {
      next += sent;
      size -= static_cast<std::size_t>(sent);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return -errno;
    int revents = poll_fd(fd, POLLOUT, deadline);
    if (revents < 0) return revents;
    if (revents == 0) return -ETIMEDOUT;
  }
  return 0;
}

long recv_now(int fd, void* buffer, std::size_t n) noexcept {
  for (;;) {
    ssize_t got = ::recv(fd, buffer, n, MSG_DONTWAIT);
    if (got >= 0) return got;
    if (errno == EINTR) continue;
    return errno == EWOULDBLOCK ? -EAGAIN : -errno;
  }
}

}  // namespace mproc::sys
