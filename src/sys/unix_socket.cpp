#include "sys/unix_socket.hpp"

#include <cerrno>
#include <cstring>
#include <sys/socket.h>
#include <sys/uio.h>

namespace mproc::sys {

int stream_socket_pair(UniqueFd& first, UniqueFd& second) noexcept {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return -errno;
  first.reset(fds[0]);
  second.reset(fds[1]);
  return 0;
}

int send_with_fds(int socket, const void* data, std::size_t size, const int* fds, std::size_t fd_count) noexcept {
  if (fd_count > kMaxPassedFds || size == 0) return -EINVAL;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPassedFds)];
  iovec vector{const_cast<void*>(data), size};
  msghdr message{};
  message.msg_iov = &vector;
  message.msg_iovlen = 1;
  if (fd_count > 0) {
    message.msg_control = control;
    message.msg_controllen = CMSG_SPACE(sizeof(int) * fd_count);
    cmsghdr* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int) * fd_count);
    std::memcpy(CMSG_DATA(header), fds, sizeof(int) * fd_count);
  }
  ssize_t sent;
  do {
    sent = ::sendmsg(socket, &message, MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) return -errno;
  // The descriptors went with the first bytes; the rest is plain data.
  iovec rest{static_cast<char*>(const_cast<void*>(data)) + sent, size - static_cast<std::size_t>(sent)};
  return rest.iov_len == 0 ? 0 : send_all(socket, &rest, 1);
}

long recv_with_fds(int socket, void* data, std::size_t size, int* fds, std::size_t* fd_count) noexcept {
  *fd_count = 0;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPassedFds)];
  iovec vector{data, size};
  msghdr message{};
  message.msg_iov = &vector;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  ssize_t got;
  do {
    got = ::recvmsg(socket, &message, MSG_CMSG_CLOEXEC | MSG_WAITALL);
  } while (got < 0 && errno == EINTR);
  if (got < 0) return -errno;
  for (cmsghdr* header = CMSG_FIRSTHDR(&message); header != nullptr; header = CMSG_NXTHDR(&message, header)) {
    if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
    std::size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(header) + i * sizeof(int), sizeof fd);
      if (*fd_count < kMaxPassedFds) {
        fds[(*fd_count)++] = fd;
      } else {
        close_fd(fd);
      }
    }
  }
  if ((message.msg_flags & MSG_CTRUNC) != 0) {
    for (std::size_t i = 0; i < *fd_count; ++i) close_fd(fds[i]);
    *fd_count = 0;
    return -EBADMSG;
  }
  if (got > 0 && static_cast<std::size_t>(got) < size) {
    ssize_t rest = read_full(socket, static_cast<char*>(data) + got, size - static_cast<std::size_t>(got));
    if (rest < 0) return rest;
    got += rest;
  }
  return got;
}

}  // namespace mproc::sys
