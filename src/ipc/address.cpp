#include "mproc/address.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <cstring>
#include <netdb.h>
#include <netinet/in.h>
#include <stdexcept>
#include <sys/un.h>

#include "mproc/error.hpp"
#include "ipc/socket_address.hpp"

namespace mproc {

namespace {
// sun_path holds 108 bytes; a path needs its NUL, an abstract name its leading NUL.
constexpr std::size_t kMaxUnixName = sizeof(sockaddr_un{}.sun_path) - 1;

void check_unix_name(const std::string& name, const char* what) {
  if (name.size() > kMaxUnixName)
    throw std::invalid_argument(std::string(what) + " is too long (" + std::to_string(name.size()) + " bytes; at most " +
                                std::to_string(kMaxUnixName) + ")");
  if (name.find('\0') != std::string::npos) throw std::invalid_argument(std::string(what) + " contains a NUL byte");
}
}  // namespace

Address Address::tcp(std::string host, std::uint16_t port) {
  // Python's ('', port): INADDR_ANY. A Listener then listens on every IPv4 interface, and a
  // Client connects to this host (Linux takes 0.0.0.0 as a local address, as Python's does).
  if (host.empty()) host = "0.0.0.0";
  return Address(Kind::tcp, std::move(host), port);
}

Address Address::unix_path(std::string path) {
  if (path.empty()) throw std::invalid_argument("Address::unix_path: empty path");
  check_unix_name(path, "Unix socket path");
  return Address(Kind::unix_path, std::move(path), 0);
}

Address Address::unnamed_unix() { return Address(Kind::unix_path, std::string(), 0); }

Address Address::abstract(std::string name) {
  check_unix_name(name, "abstract socket name");
  return Address(Kind::abstract, std::move(name), 0);
}

std::string Address::to_string() const {
  switch (kind_) {
    case Kind::tcp:
      if (name_.find(':') != std::string::npos) return "[" + name_ + "]:" + std::to_string(port_);
      return name_ + ":" + std::to_string(port_);
    case Kind::unix_path:
      return name_;
    case Kind::abstract:
      return "@" + name_;
  }
  return name_;
}

namespace detail {

std::vector<sys::SocketAddress> resolve(const Address& address, bool passive) {
  std::vector<sys::SocketAddress> result;
  if (address.kind() != Address::Kind::tcp) {
    sys::SocketAddress one;
    auto* un = reinterpret_cast<sockaddr_un*>(&one.storage);
    un->sun_family = AF_UNIX;
    const std::string& name = address.path();
    // An abstract name starts with a NUL and is exactly as long as the length says.
    const std::size_t offset = address.kind() == Address::Kind::abstract ? 1 : 0;
    std::memcpy(un->sun_path + offset, name.data(), name.size());
    one.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + offset + name.size() + (offset ? 0 : 1));
    result.push_back(one);
    return result;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0) | AI_ADDRCONFIG;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(address.port());
  int rc = ::getaddrinfo(address.host().c_str(), port.c_str(), &hints, &found);
  if (rc == EAI_NONAME || rc == EAI_ADDRFAMILY || rc == EAI_NODATA) {
    // AI_ADDRCONFIG hides ::1 on a host whose only non-loopback addresses are IPv4; a
    // literal the kernel can still serve must not be refused for that.
    hints.ai_flags &= ~AI_ADDRCONFIG;
    rc = ::getaddrinfo(address.host().c_str(), port.c_str(), &hints, &found);
  }
  if (rc != 0) {
    if (rc == EAI_SYSTEM) throw OSError(errno, "getaddrinfo " + address.to_string());
    throw OSError(EHOSTUNREACH, "cannot resolve " + address.to_string() + " (" + ::gai_strerror(rc) + ")");
  }
  for (addrinfo* entry = found; entry; entry = entry->ai_next) {
    if (entry->ai_addrlen > sizeof(sockaddr_storage)) continue;
    sys::SocketAddress one;
    std::memcpy(&one.storage, entry->ai_addr, entry->ai_addrlen);
    one.length = entry->ai_addrlen;
    result.push_back(one);
  }
  ::freeaddrinfo(found);
  if (passive) {
    // A name such as "localhost" listens where Python's Client looks for it: Python's
    // connection addresses are IPv4 for every ('host', port). A literal is unaffected.
    std::stable_partition(result.begin(), result.end(), [](const sys::SocketAddress& a) { return a.family() == AF_INET; });
  }
  if (result.empty()) throw OSError(EHOSTUNREACH, "cannot resolve " + address.to_string());
  return result;
}

Address to_address(const sys::SocketAddress& address) {
  char text[INET6_ADDRSTRLEN] = {};
  switch (address.family()) {
    case AF_INET: {
      const auto* in = reinterpret_cast<const sockaddr_in*>(&address.storage);
      ::inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
      return Address::tcp(text, ntohs(in->sin_port));
    }
    case AF_INET6: {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address.storage);
      ::inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
      return Address::tcp(text, ntohs(in6->sin6_port));
    }
    case AF_UNIX: {
      const auto* un = reinterpret_cast<const sockaddr_un*>(&address.storage);
      const std::size_t header = offsetof(sockaddr_un, sun_path);
      if (address.length <= header) return Address::unnamed_unix();
      std::size_t n = address.length - header;
      if (un->sun_path[0] == '\0') return Address::abstract(std::string(un->sun_path + 1, n - 1));
      return Address::unix_path(std::string(un->sun_path, strnlen(un->sun_path, n)));
    }
    default:
      throw OSError(EAFNOSUPPORT, "unknown socket address family " + std::to_string(address.family()));
  }
}

}  // namespace detail
}  // namespace mproc
