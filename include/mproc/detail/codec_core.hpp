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
// Throwing is out of line (src/codec.cpp) so the hot decode paths stay small.
[[noreturn]] void throw_truncated(std::size_t needed, std::size_t left);
[[noreturn]] void throw_too_deep(int max_depth);
[[noreturn]] void throw_empty_budget(std::size_t budget_bytes);
}  // namespace detail

/// Appends encoded values to a caller-owned byte vector.
///
/// Example: `std::vector<std::byte> buf; Encoder enc(buf); encode(enc, 42);`
/// Requires: `out` outlives the Encoder. Thread safety: none (one thread per Encoder).
class Encoder {
 public:
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

 private:
  std::vector<std::byte>* out_;
};

/// Reads encoded values from a byte span. Every read is bounds-checked and throws
/// SerializationError when it would run past the end, so untrusted input is safe to decode.
///
/// Besides the position, a Decoder carries two limits that keep hostile input cheap:
/// a nesting depth (only recursive user types can nest without bound) and a budget for
/// container elements whose encoding takes no bytes (they cannot be bounded by the input size).
/// Requires: the bytes outlive the Decoder. Thread safety: none (one thread per Decoder).
class Decoder {
 public:
  /// Deepest nesting of user types (types with serialize/save/load) a decode accepts.
  /// Like Python's recursion limit: deep enough for real data, shallow enough that a hostile
  /// frame cannot overflow the stack of a thread with a default-sized stack.
  static constexpr int kMaxDepth = 1000;
  /// Memory (sizeof(element) each) that container elements encoded in zero bytes may occupy
  /// in one decode, e.g. a std::vector<std::monostate>.
  static constexpr std::size_t kEmptyElementBudget = std::size_t{64} << 20;

  explicit Decoder(std::span<const std::byte> in) noexcept : in_(in) {}

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

  /// RAII: one level of user-type nesting. Throws SerializationError beyond kMaxDepth.
  class Nesting {
   public:
    explicit Nesting(Decoder& d) : d_(d) {
      if (++d_.depth_ > kMaxDepth) {
        --d_.depth_;
        detail::throw_too_deep(kMaxDepth);
      }
    }
    ~Nesting() { --d_.depth_; }
    Nesting(const Nesting&) = delete;
    Nesting& operator=(const Nesting&) = delete;

   private:
    Decoder& d_;
  };

  /// Records that an element occupying `bytes` of memory was decoded from no input bytes.
  /// Throws: SerializationError once kEmptyElementBudget is spent.
  void charge_empty_element(std::size_t bytes) {
    if (bytes > empty_budget_) detail::throw_empty_budget(kEmptyElementBudget);
    empty_budget_ -= bytes;
  }

  /// What is left of kEmptyElementBudget.
  std::size_t empty_budget() const noexcept { return empty_budget_; }

 private:
  std::span<const std::byte> in_;
  std::size_t pos_ = 0;
  int depth_ = 0;
  std::size_t empty_budget_ = kEmptyElementBudget;
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
