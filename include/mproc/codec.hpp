// mproc/codec.hpp — the binary encoding of values that cross a process boundary.
//
// What is Serializable (checked at compile time; anything else is a static_assert that says
// what to do):
//   * a type with a cereal-style hook — member `template <class Archive> void serialize(Archive&)`
//     calling `ar(a, b)` / `ar & a`, split `save(Archive&) const` + `load(Archive&)` members, or
//     the free forms `serialize(Archive&, T&)` / `save` + `load` found by ADL. cereal::make_nvp /
//     CEREAL_NVP (the name is dropped), cereal::base_class / virtual_base_class and
//     cereal::binary_data work. Private hooks work with `friend class cereal::access;`.
//     Versioned hooks (serialize(Archive&, std::uint32_t)) and cereal's save_minimal are not
//     supported. A hook wins over every other rule;
//   * every other trivially copyable type: its object bytes, one memcpy (the fast path). `bool`
//     is one byte, validated as 0/1; empty types (std::monostate...) take no bytes. Raw pointers,
//     member pointers and views (std::string_view, std::span...) are refused: the addresses
//     they hold mean nothing in another process. So is an aggregate (a plain struct) with such
//     a member, at any depth of nested structs and arrays (see detail::holds_address for what
//     the inspection reaches), unless mproc::position_independent<T> says its addresses are
//     valid in every receiving process;
//   * std::basic_string of trivially copyable characters, std::array, C arrays (as members),
//     std::vector (elements that are raw: one memcpy each way), std::deque, std::list,
//     std::forward_list, std::[multi]set, std::[multi]map, std::unordered_[multi]set/map,
//     std::optional, std::variant, std::pair, std::tuple — of Serializable types, nested freely.
//
// Caveat of the raw fast path: the bytes of a trivially copyable struct are copied unchecked.
// A struct with a bool or enum member whose bytes were corrupted would hold an invalid value;
// frames are checksummed (mproc/frame.hpp), so this only matters for bytes that a hostile
// peer forged. Give such a struct a serialize() to have each member validated. Padding bytes
// are copied too (they carry whatever was in memory).
//
// Decoding is safe on untrusted bytes: every read is bounds-checked, lengths are checked
// against the bytes left before anything is allocated, the memory container elements take is
// bounded by a multiple of the input (Decoder::kMemoryBase), bools / optional flags / variant
// indexes are validated, the nesting of user types is capped both in levels
// (Decoder::kMaxDepth) and in the stack it uses (half of what the thread has left) — every
// failure is a mproc::SerializationError that says what was wrong. Encoding a value nested
// deeper than the decoder accepts fails the same way, at the sender. The format is for processes of one
// build of a program (same types, same compiler); it is not a long-term storage format.
#pragma once

#include <cstddef>
#include <span>
#include <type_traits>
#include <vector>

#include "mproc/detail/codec_archive.hpp"
#include "mproc/detail/codec_core.hpp"
#include "mproc/detail/codec_std.hpp"
#include "mproc/detail/codec_traits.hpp"
#include "mproc/error.hpp"

namespace mproc {

/// Appends the encoding of `value`.
/// Requires: Serializable<T> (a static_assert otherwise, naming the culprit type).
/// Throws: SerializationError (a valueless std::variant, nesting too deep), std::bad_alloc,
/// or whatever a user's save/serialize throws.
template <class T>
void encode(Encoder& encoder, const T& value) {
  if constexpr (Serializable<T>)
    detail::Codec<std::remove_cv_t<T>>::encode(encoder, value);
  else
    detail::explain_unserializable<T>();
}

/// Decodes one T from the decoder's current position.
/// Requires: Serializable<T>, not a C array (decode a std::array; C arrays decode only as
/// members of user types). Types with serialize/load hooks (and std::array of non-raw
/// elements) must be default-constructible — the hook loads into a default-constructed object;
/// every other type is constructed from its decoded parts (trivially copyable types need no
/// constructor, std::pair/tuple/optional/variant need their members movable).
/// Throws: SerializationError on malformed or truncated input (position is then unspecified).
template <class T>
T decode(Decoder& decoder) {
  if constexpr (Serializable<T>) {
    return detail::Codec<std::remove_cv_t<T>>::decode(decoder);
  } else {
    detail::explain_unserializable<T>();
    throw SerializationError("unreachable");
  }
}

/// Appends the encoding of `value` to `out`. Requires / throws: as encode.
template <class T>
void dumps(const T& value, std::vector<std::byte>& out) {
  Encoder encoder(out);
  encode(encoder, value);
}

/// The encoding of `value`. Requires / throws: as encode.
template <class T>
std::vector<std::byte> dumps(const T& value) {
  std::vector<std::byte> out;
  dumps(value, out);
  return out;
}

namespace detail {
template <class T>
T decode_in_context(Decoder& decoder) {
  try {
    return decode<T>(decoder);
  } catch (const SerializationError& error) {
    rethrow_in_context(type_name<T>(), error);
  }
}
}  // namespace detail

/// Decodes a T that must occupy all of `bytes`.
/// Throws: SerializationError (message prefixed with "cannot decode <T>: ") on malformed or
/// truncated input or when bytes are left over after the value.
template <class T>
T loads(std::span<const std::byte> bytes) {
  Decoder decoder(bytes);
  T value = detail::decode_in_context<T>(decoder);
  if (decoder.remaining() != 0) detail::throw_trailing(type_name<T>(), decoder.remaining());
  return value;
}

}  // namespace mproc
