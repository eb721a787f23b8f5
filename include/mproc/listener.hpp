// mproc/listener.hpp — multiprocessing.connection.Listener and Client: connections between
// unrelated processes, on this machine or across the network, that Python's own Listener
// and Client can talk to.
//
//   // server                                            // client
//   mproc::Listener listener(mproc::Address::tcp("127.0.0.1", 6000),
//                            {.authkey = "secret"});      auto c = mproc::Client(
//   mproc::Connection c = listener.accept();                 mproc::Address::tcp("127.0.0.1", 6000),
//   auto job = c.recv<Job>();                                {.authkey = "secret"});
//   c.send(run(job));                                    c.send(Job{...});
//
// A connection is the same mproc::Connection as a Pipe end (send, recv<T>, send_bytes,
// recv_bytes, poll, mproc::wait over any mix of pipes and sockets), speaking Python's framing
// on the wire. With an authkey, both sides prove they know it (Python's HMAC challenge,
// mproc/auth.hpp) before anything else is read. Authentication is not encryption: on an
// untrusted network, run it inside an SSH tunnel, WireGuard or stunnel.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "mproc/address.hpp"
#include "mproc/connection.hpp"
#include "mproc/detail/timeout.hpp"

namespace mproc {

struct ListenerOptions {
  /// Connections the kernel queues before accept() takes them (Python's default is 1).
  int backlog = 128;
  /// The shared key (bytes; an empty string is a key). Unset: no authentication, as
  /// Python's authkey=None.
  std::optional<std::string> authkey = std::nullopt;
  /// How long a connecting peer has to finish the handshake before it is dropped.
  std::chrono::nanoseconds handshake_timeout = std::chrono::seconds(5);
};

struct ClientOptions {
  /// The shared key; unset: no authentication (the Listener must have none either).
  std::optional<std::string> authkey = std::nullopt;
  /// One deadline for connecting (every address the host resolves to, together) and the
  /// handshake after it.
  std::chrono::nanoseconds timeout = std::chrono::seconds(10);
};

/// A listening socket (Python's multiprocessing.connection.Listener). Movable, not copyable.
///
/// accept() may run in several threads at once. Handshakes run interleaved, not one after
/// another: a peer that connects and stalls delays no other connection, and is dropped when
/// its handshake_timeout passes. A peer that disconnects or stalls during the handshake is
/// dropped silently; one with the wrong key (or that breaks the protocol) makes accept()
/// throw AuthenticationError for it, as Python does, and the Listener serves on.
class Listener {
 public:
  /// Binds and listens. A Unix path must not exist yet (a stale socket file from a dead
  /// server: remove it first, as with Python); the Listener removes it again on close.
  /// Throws: OSError naming the address (EADDRINUSE, EACCES, a host that does not resolve).
  explicit Listener(const Address& address, ListenerOptions options = {});
  Listener(Listener&&) noexcept;
  Listener& operator=(Listener&&) noexcept;
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  /// Closes (see close()). No thread may still be inside accept().
  ~Listener();

  /// Waits for the next connection that completes the handshake and returns it.
  /// Throws: AuthenticationError (that peer's key was wrong; call accept() again),
  /// OSError (EBADF once closed, including by close() from another thread while this one
  /// waits; EMFILE when out of descriptors).
  Connection accept();
  /// The same, giving up after `timeout`: nullopt then.
  template <class Rep, class Period>
  std::optional<Connection> accept(std::chrono::duration<Rep, Period> timeout) {
    return accept_until(detail::deadline_after(timeout));
  }

  /// Stops listening: threads waiting in accept() throw OSError(EBADF), half-done
  /// handshakes are dropped, and a Unix socket file this Listener created is removed.
  /// Safe from any thread, idempotent. Connections already accepted stay open.
  void close() noexcept;
  bool closed() const noexcept;

  /// Where it listens, with the port the kernel chose for port 0.
  const Address& address() const;
  /// The peer of the connection accept() last returned (nullopt before the first).
  /// An unnamed Unix peer is Address::unnamed_unix(). Thread-safe.
  std::optional<Address> last_accepted() const;

 private:
  struct State;
  std::optional<Connection> accept_until(const detail::Deadline& deadline);
  std::unique_ptr<State> state_;
};

/// Connects to a Listener (mproc's or Python's) at `address` (Python's
/// multiprocessing.connection.Client), trying each address a host name resolves to.
/// Throws: OSError naming the address (ECONNREFUSED, ENOENT, ETIMEDOUT when neither a
/// connection nor a refusal came within options.timeout), AuthenticationError (the keys
/// differ, the peer broke the protocol or did not finish the handshake within the timeout),
/// EOFError (the listener closed the connection during the handshake).
Connection Client(const Address& address, ClientOptions options = {});

}  // namespace mproc
