// handshake — the challenge/response authentication of Python's multiprocessing.connection,
// as a pure state machine (no I/O), so that it can be driven over a blocking Connection, a
// non-blocking socket among many, or a fuzzer's bytes. Internal.
//
// The protocol (CPython 3.12 Lib/multiprocessing/connection.py): the side that delivers a
// challenge sends b"#CHALLENGE#" + message and expects the HMAC of `message` under the
// shared key; it answers b"#WELCOME#" or b"#FAILURE#". A Listener delivers first, then
// answers the Client's challenge; a Client answers, then delivers. Two schemes:
//   - legacy (Python <= 3.11): message is 20 random bytes, the response the raw 16-byte
//     HMAC-MD5;
//   - modern (3.12+): message is b"{sha256}" + 40 random bytes, the response
//     b"{digest}" + HMAC-<digest>. The MAC covers the whole message, prefix included, so a
//     peer cannot talk the deliverer into a weaker digest than the one the MAC proves.
// mproc delivers the modern challenge (a 3.11 peer still answers it, with HMAC-MD5 over the
// whole message, which is accepted as Python 3.12 accepts it) and answers either.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mproc::detail {

/// Largest handshake message read (Python's recv_bytes(256)); nothing larger is read
/// from a peer before it has authenticated.
inline constexpr std::size_t kMaxHandshakeMessage = 256;
/// Random bytes in a delivered challenge (Python 3.12's MESSAGE_LENGTH).
inline constexpr std::size_t kChallengeRandomBytes = 40;

/// HMAC of `message` under `key` with Python's digest name (md5, sha256, sha384, sha3_256,
/// sha3_384). Returns nullopt for any other name.
std::optional<std::vector<std::byte>> hmac(std::string_view digest, std::string_view key,
                                           std::span<const std::byte> message);

/// The response to a challenge's message (what follows #CHALLENGE#), as Python's
/// _create_response. Returns nullopt with `why` set when the message is of no known scheme.
std::optional<std::vector<std::byte>> create_response(std::string_view key, std::span<const std::byte> message,
                                                      std::string& why);

/// Whether `response` proves the key for `message`, as Python's _verify_challenge, in
/// constant time. On false, `why` says what was wrong.
bool verify_response(std::string_view key, std::span<const std::byte> message, std::span<const std::byte> response,
                     std::string& why);

class Handshake {
 public:
  enum class Role {
    server,   // deliver, then answer (Listener.accept)
    client,   // answer, then deliver (Client)
    deliver,  // deliver_challenge alone
    answer,   // answer_challenge alone
  };

  /// `random`: the kChallengeRandomBytes of the challenge this side delivers (from the
  /// kernel; fixed in tests). Delivering roles queue their challenge at once.
  Handshake(Role role, std::string key, std::span<const std::byte, kChallengeRandomBytes> random);

  /// Messages to send now, in order (unframed), and forgets them.
  std::vector<std::vector<std::byte>> take_outgoing();
  /// One whole message received from the peer. Requires !done() && !failed().
  void on_message(std::span<const std::byte> message);

  bool done() const noexcept { return stage_ == Stage::done; }
  bool failed() const noexcept { return stage_ == Stage::failed; }
  /// Why it failed (after the outgoing #FAILURE#, if any, has been sent).
  const std::string& error() const noexcept { return error_; }

 private:
  enum class Stage { await_response, await_challenge, await_welcome, done, failed };
  void start_phase();
  void finish_phase();
  void fail(std::string why);

  std::string key_;
  std::vector<std::byte> challenge_;  // the message this side delivered
  std::vector<std::vector<std::byte>> outgoing_;
  bool deliver_phase_[2] = {false, false};
  int phases_ = 0;
  int phase_ = 0;
  Stage stage_ = Stage::done;
  std::string error_;
};

/// Reads one length-prefixed handshake message (Python's 4-byte big-endian length) from a
/// byte stream, asking for exactly the bytes it still needs, so that it never reads past
/// the message into what follows the handshake. A length over kMaxHandshakeMessage (or
/// negative, or the 8-byte form) is refused before anything more is read.
class HandshakeReader {
 public:
  /// How many bytes the next read may take (>= 1 until a message is complete).
  std::size_t wanted() const noexcept;
  /// Takes bytes (at most wanted()). Returns false, with `why` set, on a refused length.
  bool feed(std::span<const std::byte> bytes, std::string& why);
  bool complete() const noexcept;
  /// The message, once complete.
  std::span<const std::byte> message() const noexcept;
  void reset() noexcept { buffer_.clear(); }

 private:
  std::size_t declared() const noexcept;
  std::vector<std::byte> buffer_;
};

/// A message framed as Python frames it: 4-byte big-endian length, then the bytes.
std::vector<std::byte> frame_handshake_message(std::span<const std::byte> message);

}  // namespace mproc::detail
