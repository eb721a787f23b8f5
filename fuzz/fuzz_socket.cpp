// libFuzzer target: what a socket peer controls before and after authentication.
// The first byte picks the side and the mode:
//   - handshake (even): the rest is the peer's side of Python's challenge/response, split
//     into reads of sizes the next bytes choose, fed through the handshake reader to the
//     protocol state machine playing the Listener (server) or the Client role. It must end
//     done, failed or refused, never read more than a handshake message's worth, never
//     crash or throw;
//   - stream (odd): the rest is written to a socket Connection speaking Python's framing
//     (4-byte length, or -1 and an 8-byte length), whose writer then closes; the reader
//     receives with recv<T>, recv_bytes (with and without maxlength) and recv_bytes_into
//     until the stream ends or breaks. Anything but a value, SerializationError, EOFError or
//     OSError(EMSGSIZE) is a finding, and so is memory taken for a claimed length.
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

#include "ipc/handshake.hpp"
#include "mproc/connection.hpp"
#include "mproc/error.hpp"

namespace {

constexpr std::size_t kMaxStream = 65536;  // fits a Unix socket's buffer: the writer never blocks

void fuzz_handshake(unsigned mode, std::span<const std::uint8_t> data) {
  using mproc::detail::Handshake;
  std::array<std::byte, mproc::detail::kChallengeRandomBytes> random{};
  Handshake handshake(mode & 2 ? Handshake::Role::client : Handshake::Role::server, "fuzz key", random);
  mproc::detail::HandshakeReader reader;
  std::size_t at = 0;
  while (at < data.size() && !handshake.done() && !handshake.failed()) {
    (void)handshake.take_outgoing();
    std::size_t chunk = std::min<std::size_t>({reader.wanted(), static_cast<std::size_t>(data[at] % 17) + 1, data.size() - at - 1});
    ++at;
    if (chunk == 0) break;
    if (reader.wanted() > mproc::detail::kMaxHandshakeMessage + 4) std::abort();  // bounded before auth
    std::string why;
    if (!reader.feed(std::as_bytes(std::span(data.data() + at, chunk)), why)) return;
    at += chunk;
    if (reader.complete()) {
      handshake.on_message(reader.message());
      reader.reset();
    }
  }
}

void receive_one(mproc::Connection& in, unsigned choice) {
  switch (choice % 5) {
    case 0:
      (void)in.recv<std::int32_t>();
      break;
    case 1:
      (void)in.recv<std::string>();
      break;
    case 2:
      (void)in.recv_bytes();
      break;
    case 3:
      (void)in.recv_bytes(std::size_t{100});
      break;
    default: {
      std::byte buffer[128];
      (void)in.recv_bytes_into(buffer);
    }
  }
}

void fuzz_stream(unsigned mode, std::span<const std::uint8_t> data) {
  if (data.size() > kMaxStream) return;
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) std::abort();
  if (!data.empty() && ::write(fds[1], data.data(), data.size()) != static_cast<ssize_t>(data.size())) std::abort();
  ::close(fds[1]);
  mproc::Connection in = mproc::detail::adopt_stream_socket(fds[0]);
  in.max_message_size(std::uint64_t{1} << 30);
  for (unsigned round = 0; round < 64; ++round) {
    try {
      receive_one(in, mode / 2 + round);
    } catch (const mproc::EOFError&) {
      return;
    } catch (const mproc::SerializationError&) {
      if (in.closed()) return;
      // A bad value inside a whole message leaves the stream usable; a bad prefix does not.
    } catch (const mproc::OSError& e) {
      if (e.errno_value() != EMSGSIZE) throw;
      return;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const unsigned mode = data[0];
  std::span<const std::uint8_t> rest(data + 1, size - 1);
  try {
    if (mode & 1)
      fuzz_stream(mode >> 1, rest);
    else
      fuzz_handshake(mode, rest);
  } catch (const mproc::SerializationError&) {
    // a stream left unusable by a corrupt prefix: every later read says so
  }
  return 0;
}
