// The non-template parts of mproc/codec.hpp and mproc/frame.hpp: the checksum, the frame
// header, and every error message (kept out of line so the inlined decode paths stay small).
#include "mproc/codec.hpp"

#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include <pthread.h>

#include "mproc/frame.hpp"

#if defined(__x86_64__)
#include <nmmintrin.h>
#elif defined(__aarch64__) && defined(__ARM_FEATURE_CRC32)
#include <arm_acle.h>
#endif

namespace mproc {

// ---- checksum: CRC-32C (Castagnoli) ---------------------------------------------------------------
//
// Why CRC-32C: it detects every burst error of up to 32 bits (so every corrupted byte, or run
// of 4 bytes) and every 1-3 bit error in frames far longer than ours, and other corruption with
// probability 1 - 2^-32; and x86-64 (SSE4.2) and ARMv8 compute it in hardware. A multiply-rotate
// hash measured 14-17 GB/s here (the rotates compete with the multiplies), hardware CRC-32C
// about 28 GB/s: one crc32 instruction has a 3-cycle latency but a throughput of one per cycle,
// so three independent streams run at once and are then combined (a CRC of A||B is the CRC of
// A shifted by |B| zero bytes, xor the CRC of B from a zero register — the register update is
// linear over GF(2)). Software fallback: slicing-by-8 (a few GB/s), for CPUs without the
// instruction — and for arm64 builds without CRC in -march (armv8-a+crc or armv8.1-a and later
// have it; the ARM path is selected at compile time, the x86 one at run time). Standard CRC-32C parameters: reflected, initial value and final xor 0xFFFFFFFF.
namespace {

constexpr std::uint32_t kCrc32cPoly = 0x82F63B78U;  // reflected Castagnoli polynomial
constexpr std::size_t kLongBlock = 8192;            // bytes per stream for large inputs
constexpr std::size_t kShortBlock = 256;            // ... for inputs of 768 B to 24 KiB

struct CrcTables {
  std::uint32_t slice[8][256];        // slice[k][b]: CRC of byte b followed by k zero bytes
  std::uint32_t shift_long[4][256];   // by byte j of a register: the register shifted by kLongBlock zeros
  std::uint32_t shift_short[4][256];  // ... by kShortBlock zeros
};

constexpr std::uint32_t shift_by_zeros(const std::uint32_t (&table)[256], std::uint32_t crc, std::size_t n) {
  for (; n != 0; --n) crc = (crc >> 8) ^ table[crc & 0xFF];
  return crc;
}

constexpr void fill_shift_table(std::uint32_t (&out)[4][256], const std::uint32_t (&table)[256], std::size_t n) {
  std::uint32_t basis[32] = {};
  for (int bit = 0; bit < 32; ++bit) basis[bit] = shift_by_zeros(table, std::uint32_t{1} << bit, n);
  for (int j = 0; j < 4; ++j)
    for (std::uint32_t v = 0; v < 256; ++v) {
      std::uint32_t image = 0;
      for (int k = 0; k < 8; ++k)
        if ((v >> k) & 1U) image ^= basis[8 * j + k];
      out[j][v] = image;
    }
}

constexpr CrcTables make_crc_tables() {
  CrcTables t{};
  for (std::uint32_t b = 0; b < 256; ++b) {
    std::uint32_t crc = b;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ ((crc & 1U) != 0 ? kCrc32cPoly : 0U);
    t.slice[0][b] = crc;
  }
  for (int k = 1; k < 8; ++k)
    for (std::uint32_t b = 0; b < 256; ++b)
      t.slice[k][b] = (t.slice[k - 1][b] >> 8) ^ t.slice[0][t.slice[k - 1][b] & 0xFF];
  fill_shift_table(t.shift_long, t.slice[0], kLongBlock);
  fill_shift_table(t.shift_short, t.slice[0], kShortBlock);
  return t;
}

constexpr CrcTables kCrc = make_crc_tables();

inline std::uint64_t load64(const std::byte* p) noexcept {
  std::uint64_t word;
  std::memcpy(&word, p, sizeof word);
  return word;
}

[[maybe_unused]] inline std::uint32_t shift(const std::uint32_t (&table)[4][256], std::uint32_t crc) noexcept {
  return table[0][crc & 0xFF] ^ table[1][(crc >> 8) & 0xFF] ^ table[2][(crc >> 16) & 0xFF] ^ table[3][crc >> 24];
}

std::uint32_t crc32c_software(std::uint32_t crc, const std::byte* p, std::size_t n) noexcept {
  const auto& s = kCrc.slice;
  for (; n >= 8; p += 8, n -= 8) {
    const std::uint64_t w = load64(p) ^ crc;
    crc = s[7][w & 0xFF] ^ s[6][(w >> 8) & 0xFF] ^ s[5][(w >> 16) & 0xFF] ^ s[4][(w >> 24) & 0xFF] ^
          s[3][(w >> 32) & 0xFF] ^ s[2][(w >> 40) & 0xFF] ^ s[1][(w >> 48) & 0xFF] ^ s[0][w >> 56];
  }
  for (; n != 0; ++p, --n) crc = (crc >> 8) ^ s[0][(crc ^ std::to_integer<std::uint32_t>(*p)) & 0xFF];
  return crc;
}

// The hardware loops below are written out once per instruction set: a target-specific
// intrinsic can only be inlined into a function compiled for that target.
#if defined(__x86_64__)
__attribute__((target("sse4.2"))) std::uint64_t crc_blocks_x86(std::uint64_t crc, const std::byte*& p, std::size_t& n,
                                                               std::size_t block,
                                                               const std::uint32_t (&shift_table)[4][256]) noexcept {
  for (; n >= 3 * block; p += 3 * block, n -= 3 * block) {
    std::uint64_t crc1 = 0, crc2 = 0;
    for (std::size_t i = 0; i < block; i += 8) {
      crc = _mm_crc32_u64(crc, load64(p + i));
      crc1 = _mm_crc32_u64(crc1, load64(p + block + i));
      crc2 = _mm_crc32_u64(crc2, load64(p + 2 * block + i));
    }
    crc = shift(shift_table, static_cast<std::uint32_t>(crc)) ^ crc1;
    crc = shift(shift_table, static_cast<std::uint32_t>(crc)) ^ crc2;
  }
  return crc;
}

__attribute__((target("sse4.2"))) std::uint32_t crc32c_x86(std::uint32_t crc32, const std::byte* p,
                                                           std::size_t n) noexcept {
  std::uint64_t crc = crc32;
  crc = crc_blocks_x86(crc, p, n, kLongBlock, kCrc.shift_long);
  crc = crc_blocks_x86(crc, p, n, kShortBlock, kCrc.shift_short);
  for (; n >= 8; p += 8, n -= 8) crc = _mm_crc32_u64(crc, load64(p));
  if (n >= 4) {
    std::uint32_t word;
    std::memcpy(&word, p, sizeof word);
    crc = _mm_crc32_u32(static_cast<std::uint32_t>(crc), word);
    p += 4, n -= 4;
  }
  for (; n != 0; ++p, --n) crc = _mm_crc32_u8(static_cast<std::uint32_t>(crc), std::to_integer<std::uint8_t>(*p));
  return static_cast<std::uint32_t>(crc);
}
#endif

#if defined(__aarch64__) && defined(__ARM_FEATURE_CRC32)
std::uint32_t crc_blocks_arm(std::uint32_t crc, const std::byte*& p, std::size_t& n, std::size_t block,
                             const std::uint32_t (&shift_table)[4][256]) noexcept {
  for (; n >= 3 * block; p += 3 * block, n -= 3 * block) {
    std::uint32_t crc1 = 0, crc2 = 0;
    for (std::size_t i = 0; i < block; i += 8) {
      crc = __crc32cd(crc, load64(p + i));
      crc1 = __crc32cd(crc1, load64(p + block + i));
      crc2 = __crc32cd(crc2, load64(p + 2 * block + i));
    }
    crc = shift(shift_table, crc) ^ crc1;
    crc = shift(shift_table, crc) ^ crc2;
  }
  return crc;
}

std::uint32_t crc32c_arm(std::uint32_t crc, const std::byte* p, std::size_t n) noexcept {
  crc = crc_blocks_arm(crc, p, n, kLongBlock, kCrc.shift_long);
  crc = crc_blocks_arm(crc, p, n, kShortBlock, kCrc.shift_short);
  for (; n >= 8; p += 8, n -= 8) crc = __crc32cd(crc, load64(p));
  if (n >= 4) {
    std::uint32_t word;
    std::memcpy(&word, p, sizeof word);
    crc = __crc32cw(crc, word);
    p += 4, n -= 4;
  }
  for (; n != 0; ++p, --n) crc = __crc32cb(crc, std::to_integer<std::uint8_t>(*p));
  return crc;
}
#endif

using Crc32cFn = std::uint32_t (*)(std::uint32_t, const std::byte*, std::size_t) noexcept;

Crc32cFn pick_crc32c() noexcept {
#if defined(__x86_64__)
  __builtin_cpu_init();  // may run before the constructors that would otherwise do it
  if (__builtin_cpu_supports("sse4.2")) return crc32c_x86;
#elif defined(__aarch64__) && defined(__ARM_FEATURE_CRC32)
  return crc32c_arm;
#endif
  return crc32c_software;
}

}  // namespace

std::uint32_t checksum(std::span<const std::byte> bytes) noexcept {
  static const Crc32cFn crc32c = pick_crc32c();
  return ~crc32c(0xFFFFFFFFU, bytes.data(), bytes.size());
}

namespace detail {
std::uint32_t checksum_portable(std::span<const std::byte> bytes) noexcept {
  return ~crc32c_software(0xFFFFFFFFU, bytes.data(), bytes.size());
}
}  // namespace detail

// ---- how deep a nesting of user types may go on the stack ----------------------------------------
//
// Why half of what is left: the check runs once per level of user type, at that level's
// frame; below the deepest check, that level's own work still needs stack (the members it
// decodes, a user's load(), allocation, and throwing and unwinding the SerializationError),
// and so may whoever decodes on this stack after us (a user's load() that decodes another
// value with a Decoder of its own gets half of what is left then). Half of an 8 MiB stack
// is ~4 MiB: kMaxDepth levels of ordinary types fit many times over, and a type that puts
// 16 KiB on the stack per level stops after a couple of hundred levels instead of crashing.
// Why the thread's real bounds rather than one fixed budget: threads' stacks range from a
// few KiB to gigabytes; pthread_getattr_np knows this thread's. It reads /proc/self/maps for
// the main thread, so it is asked once per thread. Where it cannot answer, or the frame is not
// on that stack (a fiber or coroutine running on a stack of its own, a signal handler on
// sigaltstack), kUnknownStackBudget is assumed free — small enough for common fiber stacks.
namespace {

constexpr std::uintptr_t kUnknownStackBudget = 64 * 1024;

struct StackBounds {
  std::uintptr_t low = 0;  // 0: unknown
  std::uintptr_t high = 0;
};

StackBounds this_thread_stack() noexcept {
  StackBounds bounds;
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) != 0) return bounds;
  void* address = nullptr;
  std::size_t size = 0;
  if (pthread_attr_getstack(&attr, &address, &size) == 0 && address != nullptr) {
    bounds.low = reinterpret_cast<std::uintptr_t>(address);
    bounds.high = bounds.low + size;
  }
  pthread_attr_destroy(&attr);
  return bounds;
}

}  // namespace

namespace detail {

std::uintptr_t stack_floor(std::uintptr_t frame) noexcept {
  // A forked child inherits this with the thread's stack it describes, which stays valid.
  thread_local const StackBounds stack = this_thread_stack();
  if (stack.low != 0 && frame > stack.low && frame <= stack.high) return frame - (frame - stack.low) / 2;
  return frame > kUnknownStackBudget ? frame - kUnknownStackBudget : 0;
}

}  // namespace detail

// ---- codec errors -------------------------------------------------------------------------------

namespace {
std::string str(std::string_view text) { return std::string(text); }
std::string num(std::uint64_t value) { return std::to_string(value); }
std::string hex(std::uint64_t value) {
  char text[24];
  std::snprintf(text, sizeof text, "0x%llx", static_cast<unsigned long long>(value));
  return text;
}
std::string bytes_text(std::uint64_t n) { return num(n) + (n == 1 ? " byte" : " bytes"); }
}  // namespace

namespace detail {

void throw_truncated(std::size_t needed, std::size_t left) {
  throw SerializationError("truncated: needed " + bytes_text(needed) + ", " + num(left) + " left");
}

void throw_too_deep(int max_depth) {
  throw SerializationError("nesting deeper than " + num(static_cast<std::uint64_t>(max_depth)) +
                           " levels of user types (a runaway recursive value, or hostile input)");
}

void throw_stack_exhausted(std::size_t used_bytes) {
  throw SerializationError("nesting of user types used " + bytes_text(used_bytes) +
                           " of stack, half of what this thread had left (a runaway recursive value, or hostile input)");
}

void throw_bad_bool(unsigned value) {
  throw SerializationError("invalid bool byte " + num(value) + " (must be 0 or 1)");
}

void throw_bad_optional_flag(std::string_view type, unsigned value) {
  throw SerializationError("invalid " + str(type) + " presence flag " + num(value) + " (must be 0 or 1)");
}

void throw_bad_variant_index(std::string_view type, std::uint32_t index, std::size_t alternatives) {
  throw SerializationError("invalid " + str(type) + " index " + num(index) + " (it has " + num(alternatives) +
                           " alternatives)");
}

void throw_valueless_variant(std::string_view type) {
  throw SerializationError("cannot encode a valueless_by_exception " + str(type));
}

void throw_count_exceeds_input(std::string_view type, std::uint64_t count, std::size_t left,
                               std::size_t min_element_size) {
  throw SerializationError(str(type) + " length " + num(count) + " exceeds the " + bytes_text(left) +
                           " left (each element takes at least " + bytes_text(min_element_size) + ")");
}

void throw_over_memory_budget(std::string_view type, std::uint64_t count, std::size_t element_bytes,
                              std::size_t budget_left) {
  throw SerializationError(str(type) + " length " + num(count) + " would take " + num(element_bytes) +
                           " bytes of memory per element, more than the " + bytes_text(budget_left) +
                           " this decode may still use (" + num(Decoder::kMemoryBase >> 20) + " MiB + " +
                           num(Decoder::kMemoryPerInputByte) + " per byte of input)");
}

void throw_duplicate_key(std::string_view type) {
  throw SerializationError("duplicate key in " + str(type) + " (an encoding never repeats a key)");
}

void throw_bad_bit_padding(std::string_view type) {
  throw SerializationError("nonzero padding bits after the last element of " + str(type));
}

void throw_trailing(std::string_view type, std::size_t left) {
  throw SerializationError("trailing bytes: " + bytes_text(left) + " left after a complete " + str(type));
}

void rethrow_in_context(std::string_view type, const SerializationError& error) {
  throw SerializationError("cannot decode " + str(type) + ": " + error.what());
}

}  // namespace detail

// ---- frames ---------------------------------------------------------------------------------------

namespace wire {

namespace {

constexpr std::size_t kHeaderChecksummed = 28;  // every header byte but header_checksum

void store32(std::byte* out, std::uint32_t value) noexcept { std::memcpy(out, &value, sizeof value); }
void store64(std::byte* out, std::uint64_t value) noexcept { std::memcpy(out, &value, sizeof value); }
std::uint32_t load32(const std::byte* in) noexcept {
  std::uint32_t value;
  std::memcpy(&value, in, sizeof value);
  return value;
}
std::uint64_t load64_at(const std::byte* in) noexcept {
  std::uint64_t value;
  std::memcpy(&value, in, sizeof value);
  return value;
}

const char* kind_text(FrameKind kind) noexcept {
  return kind == FrameKind::bytes ? "raw bytes (sent with send_bytes)" : "a value";
}

}  // namespace

void write_header(std::byte* out, FrameKind kind, std::uint64_t tag, std::span<const std::byte> payload) noexcept {
  store32(out + 0, kMagic);
  store32(out + 4, static_cast<std::uint32_t>(kind));
  store64(out + 8, tag);
  store64(out + 16, payload.size());
  store32(out + 24, checksum(payload));
  store32(out + 28, checksum(std::span<const std::byte>(out, kHeaderChecksummed)));
}

FrameHeader read_header(std::span<const std::byte, kHeaderSize> in, std::uint64_t max_length) {
  const std::byte* p = in.data();
  FrameHeader header{load32(p + 0),         static_cast<FrameKind>(load32(p + 4)), load64_at(p + 8),
                     load64_at(p + 16),     load32(p + 24),                        load32(p + 28)};
  // Magic first: a wrong magic most likely means the reader lost its place in the stream,
  // which is worth saying rather than reporting a mere checksum mismatch.
  if (header.magic != kMagic)
    throw SerializationError("bad frame magic " + hex(header.magic) + " (expected " + hex(kMagic) +
                             "): not an mproc frame, or the stream lost its framing");
  const std::uint32_t computed = checksum(in.first(kHeaderChecksummed));
  if (header.header_checksum != computed)
    throw SerializationError("frame header checksum mismatch (stored " + hex(header.header_checksum) + ", computed " +
                             hex(computed) + "): the header was corrupted");
  // The checks below fail only for a header written by something other than write_header.
  if (header.kind != FrameKind::bytes && header.kind != FrameKind::value)
    throw SerializationError("unknown frame kind " + num(static_cast<std::uint32_t>(header.kind)));
  if (header.kind == FrameKind::bytes && header.tag != 0)
    throw SerializationError("bytes frame with a nonzero type tag " + hex(header.tag));
  if (header.length > max_length)
    throw SerializationError("frame payload of " + bytes_text(header.length) + " exceeds the limit of " +
                             bytes_text(max_length));
  return header;
}

void verify_payload(const FrameHeader& header, std::span<const std::byte> payload) {
  if (payload.size() != header.length)
    throw SerializationError("frame length mismatch: the header announces " + bytes_text(header.length) +
                             " of payload, " + bytes_text(payload.size()) + " present");
  const std::uint32_t computed = checksum(payload);
  if (computed != header.payload_checksum)
    throw SerializationError("frame payload checksum mismatch (stored " + hex(header.payload_checksum) +
                             ", computed " + hex(computed) + "): the payload was corrupted");
}

void encode_bytes_frame(std::span<const std::byte> payload, std::vector<std::byte>& out) {
  out.clear();  // a reallocation then copies nothing stale
  out.resize(kHeaderSize + payload.size());
  if (!payload.empty()) std::memcpy(out.data() + kHeaderSize, payload.data(), payload.size());
  write_header(out.data(), FrameKind::bytes, 0, payload);
}

namespace detail {

void throw_not_value_of(std::string_view expected_type, std::uint64_t expected_tag, const FrameHeader& header) {
  if (header.kind != FrameKind::value)
    throw SerializationError("expected a value of type " + str(expected_type) + ", got " + kind_text(header.kind));
  throw SerializationError("expected a value of type " + str(expected_type) + " (type tag " + hex(expected_tag) +
                           "), got a value of another type (type tag " + hex(header.tag) +
                           "): sender and receiver disagree on the message type");
}

FrameHeader check_frame(std::span<const std::byte> frame) {
  if (frame.size() < kHeaderSize)
    throw SerializationError("frame of " + bytes_text(frame.size()) + " is shorter than its " +
                             bytes_text(kHeaderSize) + " header");
  const FrameHeader header = read_header(frame.first<kHeaderSize>(), UINT64_MAX);
  verify_payload(header, frame.subspan(kHeaderSize));
  return header;
}

}  // namespace detail
}  // namespace wire
}  // namespace mproc
