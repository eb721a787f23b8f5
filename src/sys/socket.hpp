// sys/socket — stream sockets that listen, accept and connect (TCP over IPv4/IPv6, Unix
// paths, Linux abstract names): what Listener and Client are built on. errno-level and
// noexcept: functions return 0 / a count on success and -errno on failure. Every socket is
// made close-on-exec, so a child started by exec never inherits a listener or a peer.
#pragma once

#include <cstddef>
#include <sys/socket.h>

#include "sys/fd.hpp"

namespace mproc::sys {

/// A socket address and its length, as the kernel takes and gives them.
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  const sockaddr* get() const noexcept { return reinterpret_cast<const sockaddr*>(&storage); }
  sockaddr* get() noexcept { return reinterpret_cast<sockaddr*>(&storage); }
  int family() const noexcept { return storage.ss_family; }
};

/// socket + bind + listen. An IPv4/IPv6 socket gets SO_REUSEADDR (a restarted server can
/// bind at once, as Python's Listener does); an IPv6 one also takes IPv4 peers where the
/// host allows it (IPV6_V6ONLY off: dual stack). Returns 0 or -errno.
int listen_on(const SocketAddress& address, int backlog, UniqueFd& out) noexcept;

/// accept4 of one pending connection, made non-blocking and close-on-exec. Returns 0,
/// -EAGAIN when none is pending, or -errno. `peer` receives its address.
int accept_pending(int listener, UniqueFd& out, SocketAddress& peer) noexcept;

/// Connects a new stream socket to `address`, giving up at `deadline` (-ETIMEDOUT). The
/// socket is returned blocking. Returns 0 or -errno (-ECONNREFUSED, -ENETUNREACH, ...).
int connect_to(const SocketAddress& address, const Deadline& deadline, UniqueFd& out) noexcept;

/// getsockname / getpeername. Return 0 or -errno.
int local_address(int fd, SocketAddress& out) noexcept;
int peer_address(int fd, SocketAddress& out) noexcept;

/// TCP_NODELAY on an IPv4/IPv6 socket (each message is one write, so Nagle's delay only
/// ever hurts); a no-op for Unix sockets. Returns 0 or -errno.
int set_no_delay(int fd) noexcept;

/// Sends all of [data, data + size) on a socket that may be non-blocking, waiting for room
/// until `deadline` (-ETIMEDOUT), never raising SIGPIPE (-EPIPE). Returns 0 or -errno.
int send_all_until(int fd, const void* data, std::size_t size, const Deadline& deadline) noexcept;

/// One recv(2) with MSG_DONTWAIT: returns the count (0 at end of file), -EAGAIN when
/// nothing is there, or -errno.
long recv_now(int fd, void* buffer, std::size_t n) noexcept;

}  // namespace mproc::sys
