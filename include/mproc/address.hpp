// mproc/address.hpp — where a Listener listens and a Client connects (Python's
// multiprocessing.connection addresses).
//
//   mproc::Address::tcp("127.0.0.1", 0)      // ('127.0.0.1', 0): the kernel picks the port
//   mproc::Address::tcp("::1", 6000)         // IPv6; "::" listens on IPv6 and IPv4 (dual stack)
//   mproc::Address::unix_path("/run/x.sock") // '/run/x.sock'
//   mproc::Address::abstract("name")         // '\0name' (Linux abstract namespace)
#pragma once

#include <cstdint>
#include <string>

namespace mproc {

/// A socket address: TCP host and port, a Unix socket path, or a Linux abstract name. A
/// value type, cheap to copy.
class Address {
 public:
  enum class Kind { tcp, unix_path, abstract };

  /// A TCP address. `host` is an IPv4 or IPv6 literal or a name (resolved when used; a
  /// name with several addresses is tried in order by a Client; a Listener binds its first
  /// IPv4 address if it has one, where Python's Client looks). Port 0 asks the kernel to choose; the
  /// Listener's address() then tells which. An empty host is Python's `('', port)`: "0.0.0.0",
  /// every IPv4 interface for a Listener, this host for a Client.
  static Address tcp(std::string host, std::uint16_t port);
  /// A Unix socket at `path` (at most 107 bytes, no NUL). Throws std::invalid_argument.
  static Address unix_path(std::string path);
  /// A Linux abstract socket `name` (at most 107 bytes); it vanishes with its last socket,
  /// leaving no file behind. Throws std::invalid_argument.
  static Address abstract(std::string name);

  /// The address of an unnamed Unix socket (a Unix Client's end, as last_accepted() reports
  /// it): kind unix_path, empty path, as Python's ''.
  static Address unnamed_unix();

  Kind kind() const noexcept { return kind_; }
  /// TCP only: the host as given (or as the kernel reports it, for a peer), and the port.
  const std::string& host() const noexcept { return name_; }
  std::uint16_t port() const noexcept { return port_; }
  /// unix_path: the path; abstract: the name without its leading NUL.
  const std::string& path() const noexcept { return name_; }

  /// "127.0.0.1:5000", "[::1]:5000", "/run/x.sock", "@name" (as ss(8) shows abstract names).
  std::string to_string() const;

  friend bool operator==(const Address&, const Address&) = default;

 private:
  Address(Kind kind, std::string name, std::uint16_t port) : kind_(kind), name_(std::move(name)), port_(port) {}
  Kind kind_ = Kind::tcp;
  std::string name_;
  std::uint16_t port_ = 0;
};

}  // namespace mproc
