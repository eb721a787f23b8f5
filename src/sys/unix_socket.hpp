// sys/unix_socket — local socket pairs that carry descriptors beside their bytes
// (SCM_RIGHTS): how a spawned or forkserver-started child receives the pipes, shared
// memory and sockets it inherits by handle. errno-level and noexcept.
#pragma once

#include <cstddef>

#include "sys/fd.hpp"

namespace mproc::sys {

/// The most descriptors one message carries (the kernel's SCM_MAX_FD is 253).
inline constexpr std::size_t kMaxPassedFds = 64;

/// socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC). Returns 0 or -errno.
int stream_socket_pair(UniqueFd& first, UniqueFd& second) noexcept;

/// Sends all of `data` with `fds` attached to its first byte, never raising SIGPIPE.
/// Returns 0 or -errno (EPIPE when the peer is gone).
int send_with_fds(int socket, const void* data, std::size_t size, const int* fds, std::size_t fd_count) noexcept;

/// Reads exactly `size` bytes and the descriptors attached to them (received close-on-exec)
/// into fds[0..*fd_count), at most kMaxPassedFds. Returns `size`, a smaller count at end of
/// file, or -errno; -EBADMSG when descriptors were cut off (more than kMaxPassedFds sent;
/// those received are closed).
long recv_with_fds(int socket, void* data, std::size_t size, int* fds, std::size_t* fd_count) noexcept;

}  // namespace mproc::sys
