// libFuzzer target: the frame reader on hostile streams. The first byte sets the receiving
// side's choices; the rest is written as it is to a Connection's pipe, whose writer then
// closes. The receiver reads frames until the stream ends or breaks: with recv<T> for a few
// types, recv_bytes (with and without a maxlength) and recv_bytes_into a small buffer. The
// same bytes also go through the frame parser directly (wire::decode_frame). Every outcome but
// a value, SerializationError, EOFError or OSError(EMSGSIZE) is a finding — and so is memory
// beyond libFuzzer's limits: a header may claim gigabytes that never arrive.
#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <unistd.h>

#include "mproc/connection.hpp"
#include "mproc/error.hpp"
#include "mproc/frame.hpp"

namespace {

// A pipe holds 64 KiB: more would block the writer, which is also the reader here.
constexpr std::size_t kMaxStream = 65536;

using Table = std::map<std::string, std::vector<std::int32_t>>;

void receive_one(mproc::Connection& in, unsigned choice) {
  switch (choice % 6) {
    case 0:
      (void)in.recv<std::int32_t>();
      break;
    case 1:
      (void)in.recv<std::string>();
      break;
    case 2:
      (void)in.recv<Table>();
      break;
    case 3:
      (void)in.recv_bytes();
      break;
    case 4:
      (void)in.recv_bytes(std::size_t{100});
      break;
    default: {
      std::byte buffer[128];
      (void)in.recv_bytes_into(buffer);
      break;
    }
  }
}

template <class T>
void parse(std::span<const std::byte> frame) {
  try {
    (void)mproc::wire::decode_frame<T>(frame);
  } catch (const mproc::SerializationError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const unsigned choices = data[0];
  const std::span<const std::byte> stream(reinterpret_cast<const std::byte*>(data + 1),
                                          std::min(size - 1, kMaxStream));
  parse<std::int32_t>(stream);
  parse<std::string>(stream);
  parse<Table>(stream);

  auto [in, out] = mproc::Pipe(false);
  if (!stream.empty() && ::write(out.fileno(), stream.data(), stream.size()) != static_cast<ssize_t>(stream.size()))
    std::abort();
  out.close();
  if (choices & 0x80) in.max_message_size(1024);
  for (unsigned i = 0; i < 16; ++i) {
    try {
      receive_one(in, (choices >> (i % 4)) + i);
    } catch (const mproc::EOFError&) {
      return 0;
    } catch (const mproc::SerializationError&) {
      // Corrupt (the connection is then unusable, and says so) or merely of another type
      // than asked for (the frame was consumed whole; the next one may be read): read on.
    } catch (const mproc::OSError& e) {
      // recv_bytes(maxlength) refuses a longer message and closes the connection.
      if (e.code().value() != EMSGSIZE && e.code().value() != EBADF) std::abort();
      return 0;
    }
  }
  return 0;
}
