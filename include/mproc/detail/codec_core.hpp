// mproc/detail/codec_core.hpp — the byte-level plumbing under mproc/codec.hpp: Encoder,
// Decoder, type names and tags. Include mproc/codec.hpp, not this header.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

#include "mproc/error.hpp"

namespace mproc {

// Lengths and fixed-width integers go on the wire in the machine's order, which is therefore
// also the wire order; a big-endian port would need byte swaps in put_uint/get_uint and in
// the raw (trivially copyable) fast path, which is deliberately a plain memcpy.
static_assert(std::endian::native == std::endian::little, "mproc's wire format is little-endian");

namespace detail {
// Throwing is out of line (src/core/codec.cpp) so the hot decode paths stay small.
[[noreturn]] void throw_truncated(std::size_t needed, std::size_t left);
[[noreturn]] void throw_too_deep(int max_depth);
[[noreturn]] void throw_stack_exhausted(std::size_t used_bytes);

// The lowest stack address that a nesting whose outermost level runs at `frame` may reach
// (src/core/codec.cpp says how it is chosen). Stacks grow down on every target mproc supports.
std::uintptr_t stack_floor(std::uintptr_t frame) noexcept;

/// How deep the user types of one encode or decode are nested, checked against two limits:
/// kMaxDepth levels, and the stack those levels use. Only user types (serialize/save/load)
/// can nest without a bound set by the type itself (a Node holding a std::vector<Node>), so
/// only they count. Levels alone are not enough: the stack a level takes depends on the type
/// (one holding a 16 KiB std::array takes at least that much per level, so 700 levels would
/// overflow an 8 MiB stack), hence the budget in bytes of stack actually used.
class RecursionBudget {
 public:
  static constexpr int kMaxDepth = 1000;

  /// Enters one level whose frame is at `frame`. Throws SerializationError past either limit.
  void enter(std::uintptr_t frame) {
    if (depth_ == 0) {
      // The floor is an absolute address, so it stays valid for later outermost levels of
      // the same encode/decode, which run at about the same frame: computing it once keeps
      // a vector of user types from paying for it per element. A frame outside
      // (floor, origin] is on another stack (a Decoder moved to another thread): recompute.
      if (frame <= floor_ || frame > origin_) {
        origin_ = frame;
        floor_ = stack_floor(frame);
      }
    } else if (depth_ >= kMaxDepth) {
      throw_too_deep(kMaxDepth);
    } else if (frame < floor_) {
      throw_stack_exhausted(origin_ - frame);
    }
    ++depth_;
  }
  void leave() noexcept { --depth_; }

 private:
  int depth_ = 0;
  std::uintptr_t origin_ = 0;
  std::uintptr_t floor_ = 0;
};

/// RAII: one level of user-type nesting (see RecursionBudget).
class Nesting {
 public:
  // always_inline: the frame measured is then the one of the decode/encode function itself.
  [[gnu::always_inline]] explicit Nesting(RecursionBudget& budget) : budget_(budget) {
    budget_.enter(reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0)));
  }
  ~Nesting() { budget_.leave(); }
  Nesting(const Nesting&) = delete;
  Nesting& operator=(const Nesting&) = delete;

 private:
  RecursionBudget& budget_;
};
}  // namespace detail

/// Appends encoded values to a caller-owned byte vector.
///
/// Example: `std::vector<std::byte> buf; Encoder enc(buf); encode(enc, 42);`
/// Requires: `out` outlives the Encoder. Thread safety: none (one thread per Encoder).
class Encoder {
 public:
  /// Deepest nesting of user types an encode accepts: the same as Decoder::kMaxDepth, so
  /// that a value the receiver would refuse fails at the sender, as Python's pickle raises
  /// RecursionError. The stack an encode's nesting may use is bounded too (RecursionBudget).
  static constexpr int kMaxDepth = detail::RecursionBudget::kMaxDepth;

  explicit Encoder(std::vector<std::byte>& out) noexcept : out_(&out) {}

  /// Appends n bytes from `data` (which may be null when n == 0).
  /// Throws: std::bad_alloc / std::length_error from the vector.
  void write_bytes(const void* data, std::size_t n) {
    if (n == 0) return;
    const auto* first = static_cast<const std::byte*>(data);
    // insert() from a pointer range is one memmove into the grown buffer, with no
    // zero-fill first as resize()+memcpy would do: this is the large-message hot path.
    out_->insert(out_->end(), first, first + n);
  }

  /// The vector being appended to.
  std::vector<std::byte>& buffer() noexcept { return *out_; }

  /// Plumbing for codec implementations: the nesting of user types (detail::Nesting).
  detail::RecursionBudget& recursion() noexcept { return recursion_; }

 private:
  std::vector<std::byte>* out_;
  detail::RecursionBudget recursion_;
};

/// Reads encoded values from a byte span. Every read is bounds-checked and throws
/// SerializationError when it would run past the end, so untrusted input is safe to decode.
///
/// Besides the position, a Decoder carries two limits that keep hostile input cheap:
/// the nesting of user types (kMaxDepth levels, and a budget of stack; see
/// detail::RecursionBudget), and a budget for the memory that container elements take.
/// Requires: the bytes outlive the Decoder. Thread safety: none (one thread per Decoder).
class Decoder {
 public:
  /// Deepest nesting of user types (types with serialize/save/load) a decode accepts.
  /// Like Python's recursion limit: deep enough for real data. A decode also stops, with
  /// SerializationError, before its nesting uses half of the stack left to the thread.
  static constexpr int kMaxDepth = detail::RecursionBudget::kMaxDepth;
  /// The memory that the container elements of one decode may occupy (sizeof(element) each,
  /// plus the links of a node-based container; elements stored as their own bytes, e.g. a
  /// std::vector<int>'s, cost nothing beyond the input) is kMemoryBase plus
  /// kMemoryPerInputByte per byte of input. A length prefix is checked against the bytes
  /// left (each element takes at least its minimum encoded size), but a small encoding can
  /// still stand for a large object: a std::optional<std::array<double, 8192>> takes 64 KiB
  /// and may be encoded in one byte. Real data stays far below the bound (the largest ratio
  /// among the std types is a node of a std::list or std::set of one-byte elements, or a
  /// std::optional<std::string> that is empty: about 40 bytes of memory per byte of input).
  /// The base is for elements encoded in no bytes at all (std::monostate, empty user types):
  /// small, because a few bytes of input may claim all of it (a 9-byte frame: 4 MiB of
  /// list nodes, a few milliseconds of work).
  static constexpr std::size_t kMemoryBase = std::size_t{4} << 20;
  static constexpr std::size_t kMemoryPerInputByte = 64;

  explicit Decoder(std::span<const std::byte> in) noexcept : in_(in), memory_budget_(memory_for(in.size())) {}

  /// Copies the next n bytes to `out` and advances. Throws: SerializationError if fewer are left.
  void read_bytes(void* out, std::size_t n) {
    const std::span<const std::byte> bytes = take(n);
    if (n != 0) std::memcpy(out, bytes.data(), n);
  }

  /// A view of the next n bytes (valid as long as the input is); advances past them.
  /// Throws: SerializationError if fewer than n bytes are left.
  std::span<const std::byte> take(std::size_t n) {
    if (n > remaining()) detail::throw_truncated(n, remaining());
    const std::span<const std::byte> bytes = in_.subspan(pos_, n);
    pos_ += n;
    return bytes;
  }

  /// Bytes not yet read.
  std::size_t remaining() const noexcept { return in_.size() - pos_; }

  // ---- plumbing for codec implementations ----

  /// The nesting of user types (detail::Nesting).
  detail::RecursionBudget& recursion() noexcept { return recursion_; }

  /// What is left of the memory budget (see kMemoryBase), in bytes.
  std::size_t memory_budget() const noexcept { return memory_budget_; }
  /// Spends `bytes` of the memory budget. Requires: bytes <= memory_budget() (callers check
  /// first, to name the container in their error).
  void charge_memory(std::size_t bytes) noexcept { memory_budget_ -= bytes; }

 private:
  static constexpr std::size_t memory_for(std::size_t input_bytes) noexcept {
    constexpr std::size_t kMax = SIZE_MAX;
    if (input_bytes > (kMax - kMemoryBase) / kMemoryPerInputByte) return kMax;
    return kMemoryBase + input_bytes * kMemoryPerInputByte;
  }

  std::span<const std::byte> in_;
  std::size_t pos_ = 0;
  detail::RecursionBudget recursion_;
  std::size_t memory_budget_;
};

namespace detail {

template <class U>
void put_uint(Encoder& e, U value) {
  static_assert(std::is_unsigned_v<U>);
  e.write_bytes(&value, sizeof value);
}

template <class U>
U get_uint(Decoder& d) {
  static_assert(std::is_unsigned_v<U>);
  U value;
  d.read_bytes(&value, sizeof value);
  return value;
}

constexpr std::uint64_t fnv1a64(std::string_view text) noexcept {
  std::uint64_t hash = 0xcbf29ce484222325ULL;
  for (char c : text) {
    hash ^= static_cast<std::uint8_t>(c);
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

// Cuts T's spelling out of __PRETTY_FUNCTION__ of mproc::type_name<T>:
//   GCC:   "... mproc::type_name() [with T = int; std::string_view = ...]"
//   Clang: "... mproc::type_name() [T = int]"
// A type's spelling never contains ';', and with Clang the final ']' closes the list.
constexpr std::string_view extract_type_name(std::string_view pretty) noexcept {
  constexpr std::string_view marker = "T = ";
  const std::size_t start = pretty.find(marker);
  if (start == std::string_view::npos) return pretty;
  pretty.remove_prefix(start + marker.size());
  const std::size_t end = pretty.find(';');
  return end != std::string_view::npos ? pretty.substr(0, end) : pretty.substr(0, pretty.size() - 1);
}

}  // namespace detail

/// The compiler's spelling of T, e.g. "std::vector<int>" (GCC) — for messages and type tags.
/// Not portable between compilers; stable for one compiler. Thread safety: pure function.
template <class T>
constexpr std::string_view type_name() noexcept {
  return detail::extract_type_name(__PRETTY_FUNCTION__);
}

namespace detail {
template <class T>
inline constexpr std::uint64_t type_tag_v = fnv1a64(type_name<T>());
}  // namespace detail

/// 64-bit FNV-1a of type_name<T>(): identifies T in a frame header so that a receiver can
/// reject a value of another type. A constant expression; equal across binaries built by
/// the same compiler (it hashes the compiler's spelling of the type, not its layout).
template <class T>
constexpr std::uint64_t type_tag() noexcept {
  return detail::type_tag_v<T>;
}

/// CRC-32C (Castagnoli; the iSCSI/ext4 checksum, standard parameters) of `bytes`: detects every
/// burst error up to 32 bits long — any corrupted byte — and other corruption with probability
/// 1 - 2^-32. Uses the CPU's CRC instruction (SSE4.2; ARMv8 CRC when compiled for it), about
/// 28 GB/s on one core here, else a portable table-driven loop. Not cryptographic: it detects
/// corruption, not forgery. Thread safety: pure function.
std::uint32_t checksum(std::span<const std::byte> bytes) noexcept;

namespace detail {
// checksum() by the portable path, whatever the CPU: lets tests compare the two paths.
std::uint32_t checksum_portable(std::span<const std::byte> bytes) noexcept;
}  // namespace detail

}  // namespace mproc
