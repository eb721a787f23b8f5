// socket_address — between mproc::Address and the kernel's socket addresses. Internal.
#pragma once

#include <vector>

#include "mproc/address.hpp"
#include "sys/socket.hpp"

namespace mproc::detail {

/// The kernel addresses `address` stands for: one for a Unix or abstract address; for TCP,
/// every address its host resolves to (a literal without a lookup), IPv6 and IPv4 as the
/// resolver orders them. `passive` resolves for bind (an empty result is never returned).
/// Throws OSError naming the address when the host does not resolve.
std::vector<sys::SocketAddress> resolve(const Address& address, bool passive);

/// The Address of a kernel address (a peer's, or a bound socket's). An unnamed Unix peer
/// is unix_path("").
Address to_address(const sys::SocketAddress& address);

}  // namespace mproc::detail
