// mproc/frame.hpp — the frame: the unit every message travels in.
//
// A frame is a 32-byte header followed by `length` payload bytes. Header layout (all fields
// little-endian, at fixed offsets):
//
//   offset  size  field
//        0     4  magic             "MPF1": not an mproc frame, or a stream out of sync
//        4     4  kind              FrameKind: raw send_bytes payload, or an encoded value
//        8     8  tag               type_tag<T>() of the value's type; 0 for bytes frames
//       16     8  length            payload bytes that follow the header
//       24     4  payload_checksum  checksum() of the payload
//       28     4  header_checksum   checksum() of bytes [0, 28) of the header
//
// The header has its own checksum so that a corrupted length is caught before a reader
// trusts it to allocate or to skip ahead; the tag lets a receiver refuse a value of another
// type before decoding a byte of it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/error.hpp"

namespace mproc::wire {

inline constexpr std::size_t kHeaderSize = 32;
/// The bytes 'M' 'P' 'F' '1' read as a little-endian u32. The digit is the format version.
inline constexpr std::uint32_t kMagic = 0x3146504DU;
/// Default cap on a frame's payload length (4 GiB): a larger length is refused unread.
inline constexpr std::uint64_t kDefaultMaxFrame = std::uint64_t{4} << 30;

enum class FrameKind : std::uint32_t {
  bytes = 1,  // a raw payload from send_bytes(); tag is 0
  value = 2,  // an encoded value of the type whose type_tag is in the header
};

/// A parsed header. Its in-memory layout happens to match the wire, but the wire is
/// always written and read field by field.
struct FrameHeader {
  std::uint32_t magic;
  FrameKind kind;
  std::uint64_t tag;
  std::uint64_t length;
  std::uint32_t payload_checksum;
  std::uint32_t header_checksum;
};

/// Writes a complete header for `payload` into out[0, kHeaderSize).
/// Requires: `out` has kHeaderSize writable bytes (which may precede `payload` in the
/// same buffer). Thread safety: pure apart from writing `out`.
void write_header(std::byte* out, FrameKind kind, std::uint64_t tag, std::span<const std::byte> payload) noexcept;

/// Parses and validates a header: magic, header checksum, kind, and length <= max_length.
/// Throws: SerializationError saying which check failed.
FrameHeader read_header(std::span<const std::byte, kHeaderSize> in, std::uint64_t max_length = kDefaultMaxFrame);

/// Checks that `payload` is exactly the header's length and matches its checksum.
/// Throws: SerializationError.
void verify_payload(const FrameHeader& header, std::span<const std::byte> payload);

namespace detail {
[[noreturn]] void throw_not_value_of(std::string_view expected_type, std::uint64_t expected_tag,
                                     const FrameHeader& header);
// Validates header, length == frame.size() - kHeaderSize and the payload checksum.
FrameHeader check_frame(std::span<const std::byte> frame);
}  // namespace detail

/// Throws SerializationError, naming T, unless the frame holds a value of type T (a value
/// frame whose tag is type_tag<T>()).
template <class T>
void expect_value_of(const FrameHeader& header) {
  using U = std::remove_cv_t<T>;
  if (header.kind != FrameKind::value || header.tag != type_tag<U>())
    detail::throw_not_value_of(type_name<U>(), type_tag<U>(), header);
}

/// Makes `out` a complete value frame holding `value`: clears it, reserves the header's
/// room, encodes the value after it and fills the header in, so the frame can be written
/// with one syscall and no further copy. `out`'s capacity is reused across calls.
/// Requires / throws: as mproc::encode.
template <class T>
void encode_frame(const T& value, std::vector<std::byte>& out) {
  out.clear();
  out.resize(kHeaderSize);
  Encoder encoder(out);
  encode(encoder, value);
  write_header(out.data(), FrameKind::value, type_tag<std::remove_cv_t<T>>(),
               std::span<const std::byte>(out).subspan(kHeaderSize));
}

/// Python's length prefix on a socket connection (CPython's Connection._send_bytes): a
/// 4-byte big-endian signed length up to kStreamShortLengthMax; above it, -1 and then an
/// 8-byte big-endian length. mproc's frame travels inside such a message on a socket.
inline constexpr std::uint64_t kStreamShortLengthMax = 0x7fffffff;
inline constexpr std::size_t kStreamPrefixMax = 12;
/// Writes the prefix for a `length`-byte message into out[0, kStreamPrefixMax); returns
/// its size (4 or 12).
std::size_t write_stream_prefix(std::byte* out, std::uint64_t length) noexcept;

/// Makes `out` a complete bytes frame holding a copy of `payload`.
void encode_bytes_frame(std::span<const std::byte> payload, std::vector<std::byte>& out);

/// Decodes a whole frame made by encode_frame<T>: validates the header, that the payload is
/// exactly the rest of `frame`, its checksum, that it is a value frame of T, then decodes it.
/// Throws: SerializationError on any mismatch, corruption, truncation or trailing bytes.
template <class T>
T decode_frame(std::span<const std::byte> frame) {
  const FrameHeader header = detail::check_frame(frame);
  expect_value_of<T>(header);
  return loads<std::remove_cv_t<T>>(frame.subspan(kHeaderSize));
}

}  // namespace mproc::wire
