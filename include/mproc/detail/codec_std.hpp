// mproc/detail/codec_std.hpp — encodings of the standard library types. Include
// mproc/codec.hpp, not this header.
//
// Wire format (all integers little-endian):
//   container / string   u64 element count, then the elements; contiguous ranges of raw
//                        (trivially copyable) elements are their bytes, one memcpy
//   std::vector<bool>    u64 count, then ceil(count/8) bytes, bit i in byte i/8, unused bits 0
//   std::optional        u8 0/1, then the value when 1
//   std::variant         u32 alternative index, then the alternative
//   std::pair / tuple    the members in order;  std::array / T[N]  the N elements
// Decoding rejects every malformed input with SerializationError and allocates only after a
// length has been checked against the bytes left and the decoder's memory budget (read_count).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <forward_list>
#include <iterator>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "mproc/detail/codec_archive.hpp"

namespace mproc::detail {

inline constexpr std::size_t kCountSize = sizeof(std::uint64_t);

// Appends one decoded element to a sequence. A user type is loaded in place into a
// default-constructed element (which its decode needs anyway): decoding it into a temporary
// first would copy it, and would put the whole object on the stack once per level of a
// recursive type (a Node holding a large array and a std::vector<Node>).
template <class T, class C>
void decode_back(Decoder& d, C& c) {
  if constexpr (shape_of<T>() == Shape::user) {
    Codec<T>::require_default_constructible();
    Codec<T>::decode_into(d, c.emplace_back());
  } else
    c.push_back(Codec<T>::decode(d));
}

template <class Range>
void encode_counted(Encoder& e, const Range& range, std::size_t count) {
  put_uint(e, static_cast<std::uint64_t>(count));
  for (const auto& element : range) Codec<typename Range::value_type>::encode(e, element);
}

// ---- C arrays and std::array: N elements, no count ----------------------------------------

template <class T, std::size_t N>
  requires Serializable<T>
struct Codec<T[N]> {
  static constexpr bool supported = true;
  static constexpr bool raw = Codec<T>::raw;
  static constexpr std::size_t min_size = N * Codec<T>::min_size;

  static void encode(Encoder& e, const T (&array)[N]) {
    if constexpr (raw) {
      e.write_bytes(array, sizeof array);
    } else {
      for (const T& element : array) Codec<T>::encode(e, element);
    }
  }
  static void decode_into(Decoder& d, T (&array)[N]) {
    if constexpr (raw) {
      d.read_bytes(array, sizeof array);
    } else {
      for (T& element : array) detail::decode_into(d, element);
    }
  }
};

template <class T, std::size_t N>
  requires Serializable<T>
struct Codec<std::array<T, N>> {
  using Array = std::array<T, N>;
  static constexpr bool supported = true;
  // N == 0 is not raw: its one byte is padding.
  static constexpr bool raw = Codec<T>::raw && N > 0 && sizeof(Array) == N * sizeof(T);
  static constexpr std::size_t min_size = N * Codec<T>::min_size;

  static void encode(Encoder& e, const Array& array) {
    if constexpr (raw) {
      e.write_bytes(array.data(), sizeof(Array));
    } else {
      for (const T& element : array) Codec<T>::encode(e, element);
    }
  }
  static Array decode(Decoder& d) {
    if constexpr (raw) {
      return BasicCodec<Array, Shape::raw>::decode(d);
    } else {
      static_assert(std::is_default_constructible_v<T>,
                    "mproc: decoding a std::array of non-trivially-copyable elements needs a default constructor");
      Array array{};
      for (T& element : array) detail::decode_into(d, element);
      return array;
    }
  }
};

// ---- strings ----------------------------------------------------------------------------

template <class Ch, class Traits, class Alloc>
  requires(Codec<Ch>::raw)
struct Codec<std::basic_string<Ch, Traits, Alloc>> {
  using String = std::basic_string<Ch, Traits, Alloc>;
  static constexpr bool supported = true;
  static constexpr bool raw = false;
  static constexpr std::size_t min_size = kCountSize;

  static void encode(Encoder& e, const String& s) {
    put_uint(e, static_cast<std::uint64_t>(s.size()));
    e.write_bytes(s.data(), s.size() * sizeof(Ch));
  }
  static String decode(Decoder& d) {
    const std::size_t count = read_count<String, Ch>(d);
    const std::span<const std::byte> bytes = d.take(count * sizeof(Ch));
    String s;
    if constexpr (std::is_same_v<Ch, char> || std::is_same_v<Ch, unsigned char>) {
      // char may alias the input bytes: one copy, no zero-fill first.
      s.assign(reinterpret_cast<const Ch*>(bytes.data()), count);
    } else {
      s.resize(count);
      if (count != 0) std::memcpy(s.data(), bytes.data(), bytes.size());
    }
    return s;
  }
};

// ---- std::vector ----------------------------------------------------------------------------

template <class T, class A>
  requires Serializable<T>
struct Codec<std::vector<T, A>> {
  using Vector = std::vector<T, A>;
  static constexpr bool supported = true;
  static constexpr bool raw = false;
  static constexpr std::size_t min_size = kCountSize;

  static void encode(Encoder& e, const Vector& v) {
    if constexpr (Codec<T>::raw) {
      // The hot path: the whole element array in one memcpy.
      put_uint(e, static_cast<std::uint64_t>(v.size()));
      e.write_bytes(v.data(), v.size() * sizeof(T));
    } else {
      encode_counted(e, v, v.size());
    }
  }
  static Vector decode(Decoder& d) {
    const std::size_t count = read_count<Vector, T>(d);
    if constexpr (Codec<T>::raw) {
      return decode_raw(d, count);
    } else if constexpr (shape_of<T>() == Shape::empty) {
      return Vector(count, Codec<T>::decode(d));  // all alike, and taking no bytes
    } else {
      Vector v;
      v.reserve(count);  // paid for by read_count
      for (std::size_t i = 0; i < count; ++i) decode_back<T>(d, v);
      return v;
    }
  }

 private:
  static Vector decode_raw(Decoder& d, std::size_t count) {
    const std::span<const std::byte> bytes = d.take(count * sizeof(T));
    if (reinterpret_cast<std::uintptr_t>(bytes.data()) % alignof(T) == 0) {
      // The bytes are the object representations of `count` Ts (memcpy'd from a vector of
      // them), suitably aligned: constructing from that range is one memmove into fresh
      // storage, where resize()+memcpy would first zero the whole buffer (60% slower at 1 MiB).
      // Strictly, no T objects live in the byte buffer; as zero-copy readers do, this relies on
      // the library copying trivially copyable ranges with memmove — no typed load happens.
      // Payloads decoded from a frame buffer are aligned (elements start at offset 40 of an
      // operator-new block); small payloads decoded inside a read-ahead buffer may not be.
      const T* first = reinterpret_cast<const T*>(bytes.data());
      return Vector(first, first + count);
    }
    Vector v;
    if constexpr (std::is_default_constructible_v<T>) {
      v.resize(count);
      if (count != 0) std::memcpy(v.data(), bytes.data(), bytes.size());
    } else {
      v.reserve(count);
      Decoder elements(bytes);
      for (std::size_t i = 0; i < count; ++i) v.push_back(Codec<T>::decode(elements));
    }
    return v;
  }
};

template <class A>
struct Codec<std::vector<bool, A>> {
  using Vector = std::vector<bool, A>;
  static constexpr bool supported = true;
  static constexpr bool raw = false;
  static constexpr std::size_t min_size = kCountSize;

  static void encode(Encoder& e, const Vector& v) {
    put_uint(e, static_cast<std::uint64_t>(v.size()));
    std::uint8_t byte = 0;
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (v[i]) byte = static_cast<std::uint8_t>(byte | (1u << (i % 8)));
      if (i % 8 == 7 || i + 1 == v.size()) {
        put_uint(e, byte);
        byte = 0;
      }
    }
  }
  static Vector decode(Decoder& d) {
    const auto count = get_uint<std::uint64_t>(d);
    const std::uint64_t byte_count = count / 8 + (count % 8 != 0 ? 1 : 0);
    if (byte_count > d.remaining()) throw_count_exceeds_input(type_name<Vector>(), count, d.remaining(), 1);
    const std::span<const std::byte> bytes = d.take(static_cast<std::size_t>(byte_count));
    // Unused bits must be 0 so that each vector has exactly one encoding.
    if (count % 8 != 0 && (std::to_integer<unsigned>(bytes.back()) >> (count % 8)) != 0)
      throw_bad_bit_padding(type_name<Vector>());
    Vector v(static_cast<std::size_t>(count));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = ((std::to_integer<unsigned>(bytes[i / 8]) >> (i % 8)) & 1u) != 0;
    return v;
  }
};

// ---- other sequences ------------------------------------------------------------------------

template <class C, bool Node>
struct SequenceCodec {
  using T = typename C::value_type;
  static constexpr bool supported = true;
  static constexpr bool raw = false;
  static constexpr std::size_t min_size = kCountSize;

  static void encode(Encoder& e, const C& c) {
    if constexpr (requires { c.size(); })
      encode_counted(e, c, c.size());
    else  // std::forward_list keeps no size
      encode_counted(e, c, static_cast<std::size_t>(std::distance(c.begin(), c.end())));
  }
  static C decode(Decoder& d) {
    const std::size_t count = read_count<C, T, Node>(d);
    C c;
    if constexpr (requires { c.push_back(std::declval<T>()); }) {
      for (std::size_t i = 0; i < count; ++i) decode_back<T>(d, c);
    } else {
      auto last = c.before_begin();
      for (std::size_t i = 0; i < count; ++i) {
        if constexpr (shape_of<T>() == Shape::user) {
          Codec<T>::require_default_constructible();
          last = c.emplace_after(last);
          Codec<T>::decode_into(d, *last);
        } else {
          last = c.insert_after(last, Codec<T>::decode(d));
        }
      }
    }
    return c;
  }
};

template <class T, class A>
  requires Serializable<T>
struct Codec<std::deque<T, A>> : SequenceCodec<std::deque<T, A>, false> {};
template <class T, class A>
  requires Serializable<T>
struct Codec<std::list<T, A>> : SequenceCodec<std::list<T, A>, true> {};
template <class T, class A>
  requires Serializable<T>
struct Codec<std::forward_list<T, A>> : SequenceCodec<std::forward_list<T, A>, true> {};

// ---- sets and maps ----------------------------------------------------------------------------

// Decoding appends at end() with a hint: an encoding made by mproc is already in order, so
// building an ordered container is linear. A repeated key in a unique-key container cannot
// come from an encoding and is refused rather than silently dropped.
template <class C, bool UniqueKeys>
struct SetCodec {
  using K = typename C::value_type;
  static constexpr bool supported = true;
  static constexpr bool raw = false;
  static constexpr std::size_t min_size = kCountSize;

  static void encode(Encoder& e, const C& c) { encode_counted(e, c, c.size()); }
  static C decode(Decoder& d) {
    const std::size_t count = read_count<C, K, true>(d);
    C c;
    if constexpr (requires { c.reserve(count); }) c.reserve(count);  // paid for by read_count
    for (std::size_t i = 0; i < count; ++i) {
      const std::size_t before = c.size();
      c.emplace_hint(c.end(), Codec<K>::decode(d));
      if (UniqueKeys && c.size() == before) throw_duplicate_key(type_name<C>());
    }
    return c;
  }
};

template <class C, bool UniqueKeys>
struct MapCodec {
  using K = typename C::key_type;
  using M = typename C::mapped_type;
  using Entry = std::pair<K, M>;
  static constexpr bool supported = true;
  static constexpr bool raw = false;
  static constexpr std::size_t min_size = kCountSize;

  static void encode(Encoder& e, const C& c) { encode_counted(e, c, c.size()); }
  static C decode(Decoder& d) {
    const std::size_t count = read_count<C, Entry, true>(d);
    C c;
    if constexpr (requires { c.reserve(count); }) c.reserve(count);  // paid for by read_count
    for (std::size_t i = 0; i < count; ++i) {
      // Key and value decoded separately: moving out of a pair<const K, M> would copy the key.
      K key = Codec<K>::decode(d);
      M mapped = Codec<M>::decode(d);
      const std::size_t before = c.size();
      c.emplace_hint(c.end(), std::move(key), std::move(mapped));
      if (UniqueKeys && c.size() == before) throw_duplicate_key(type_name<C>());
    }
    return c;
  }
};

template <class K, class Cmp, class A>
  requires Serializable<K>
struct Codec<std::set<K, Cmp, A>> : SetCodec<std::set<K, Cmp, A>, true> {};
template <class K, class Cmp, class A>
  requires Serializable<K>
struct Codec<std::multiset<K, Cmp, A>> : SetCodec<std::multiset<K, Cmp, A>, false> {};
template <class K, class H, class Eq, class A>
  requires Serializable<K>
struct Codec<std::unordered_set<K, H, Eq, A>> : SetCodec<std::unordered_set<K, H, Eq, A>, true> {};
template <class K, class H, class Eq, class A>
  requires Serializable<K>
struct Codec<std::unordered_multiset<K, H, Eq, A>> : SetCodec<std::unordered_multiset<K, H, Eq, A>, false> {};

template <class K, class M, class Cmp, class A>
  requires(Serializable<K> && Serializable<M>)
struct Codec<std::map<K, M, Cmp, A>> : MapCodec<std::map<K, M, Cmp, A>, true> {};
template <class K, class M, class Cmp, class A>
  requires(Serializable<K> && Serializable<M>)
struct Codec<std::multimap<K, M, Cmp, A>> : MapCodec<std::multimap<K, M, Cmp, A>, false> {};
template <class K, class M, class H, class Eq, class A>
  requires(Serializable<K> && Serializable<M>)
struct Codec<std::unordered_map<K, M, H, Eq, A>> : MapCodec<std::unordered_map<K, M, H, Eq, A>, true> {};
template <class K, class M, class H, class Eq, class A>
  requires(Serializable<K> && Serializable<M>)
struct Codec<std::unordered_multimap<K, M, H, Eq, A>> : MapCodec<std::unordered_multimap<K, M, H, Eq, A>, false> {};

// ---- optional, variant, pair, tuple ---------------------------------------------------------------

template <class T>
  requires Serializable<T>
struct Codec<std::optional<T>> {
  static constexpr bool supported = true;
  static constexpr bool raw = false;
  static constexpr std::size_t min_size = 1;

  static void encode(Encoder& e, const std::optional<T>& value) {
    put_uint(e, static_cast<std::uint8_t>(value.has_value() ? 1 : 0));
    if (value) Codec<T>::encode(e, *value);
  }
  static std::optional<T> decode(Decoder& d) {
    const auto flag = get_uint<std::uint8_t>(d);
    if (flag > 1) throw_bad_optional_flag(type_name<std::optional<T>>(), flag);
    if (flag == 0) return std::nullopt;
    return std::optional<T>(std::in_place, Codec<T>::decode(d));
  }
};

template <class... Ts>
  requires(Serializable<Ts> && ...)
struct Codec<std::variant<Ts...>> {
  using Variant = std::variant<Ts...>;
  static constexpr bool supported = true;
  static constexpr bool raw = false;
  static constexpr std::size_t min_size = sizeof(std::uint32_t) + std::min({Codec<Ts>::min_size...});

  static void encode(Encoder& e, const Variant& value) {
    if (value.valueless_by_exception()) throw_valueless_variant(type_name<Variant>());
    put_uint(e, static_cast<std::uint32_t>(value.index()));
    std::visit([&e](const auto& alternative) { Codec<std::remove_cvref_t<decltype(alternative)>>::encode(e, alternative); },
               value);
  }
  static Variant decode(Decoder& d) {
    const auto index = get_uint<std::uint32_t>(d);
    if (index >= sizeof...(Ts)) throw_bad_variant_index(type_name<Variant>(), index, sizeof...(Ts));
    return decode_alternative(d, index, std::index_sequence_for<Ts...>{});
  }

 private:
  template <std::size_t I>
  static Variant decode_at(Decoder& d) {
    return Variant(std::in_place_index<I>, Codec<std::variant_alternative_t<I, Variant>>::decode(d));
  }
  template <std::size_t... Is>
  static Variant decode_alternative(Decoder& d, std::uint32_t index, std::index_sequence<Is...>) {
    // A jump table: the index was validated, so it is always in range.
    static constexpr Variant (*kDecoders[])(Decoder&) = {&decode_at<Is>...};
    return kDecoders[index](d);
  }
};

template <class A, class B>
  requires(Serializable<A> && Serializable<B>)
struct Codec<std::pair<A, B>> {
  static constexpr bool supported = true;
  static constexpr bool raw = false;
  static constexpr std::size_t min_size = Codec<A>::min_size + Codec<B>::min_size;

  static void encode(Encoder& e, const std::pair<A, B>& value) {
    Codec<A>::encode(e, value.first);
    Codec<B>::encode(e, value.second);
  }
  static std::pair<A, B> decode(Decoder& d) {
    // Braced initialisation evaluates its elements left to right: the wire order.
    return std::pair<A, B>{Codec<A>::decode(d), Codec<B>::decode(d)};
  }
};

template <class... Ts>
  requires(Serializable<Ts> && ...)
struct Codec<std::tuple<Ts...>> {
  static constexpr bool supported = true;
  static constexpr bool raw = false;
  static constexpr std::size_t min_size = (std::size_t{0} + ... + Codec<Ts>::min_size);

  static void encode(Encoder& e, const std::tuple<Ts...>& value) {
    std::apply([&e](const auto&... members) { (Codec<std::remove_cvref_t<decltype(members)>>::encode(e, members), ...); },
               value);
  }
  static std::tuple<Ts...> decode([[maybe_unused]] Decoder& d) {
    // Braced initialisation evaluates its elements left to right: the wire order.
    return std::tuple<Ts...>{Codec<Ts>::decode(d)...};
  }
};

// ---- which std templates name their culprit argument in compile errors ------------------------

template <class T, std::size_t N>
inline constexpr bool is_std_codec_template<std::array<T, N>> = true;
template <class C, class Tr, class A>
inline constexpr bool is_std_codec_template<std::basic_string<C, Tr, A>> = true;
template <class T, class A>
inline constexpr bool is_std_codec_template<std::vector<T, A>> = true;
template <class T, class A>
inline constexpr bool is_std_codec_template<std::deque<T, A>> = true;
template <class T, class A>
inline constexpr bool is_std_codec_template<std::list<T, A>> = true;
template <class T, class A>
inline constexpr bool is_std_codec_template<std::forward_list<T, A>> = true;
template <class K, class C, class A>
inline constexpr bool is_std_codec_template<std::set<K, C, A>> = true;
template <class K, class C, class A>
inline constexpr bool is_std_codec_template<std::multiset<K, C, A>> = true;
template <class K, class H, class E, class A>
inline constexpr bool is_std_codec_template<std::unordered_set<K, H, E, A>> = true;
template <class K, class H, class E, class A>
inline constexpr bool is_std_codec_template<std::unordered_multiset<K, H, E, A>> = true;
template <class K, class M, class C, class A>
inline constexpr bool is_std_codec_template<std::map<K, M, C, A>> = true;
template <class K, class M, class C, class A>
inline constexpr bool is_std_codec_template<std::multimap<K, M, C, A>> = true;
template <class K, class M, class H, class E, class A>
inline constexpr bool is_std_codec_template<std::unordered_map<K, M, H, E, A>> = true;
template <class K, class M, class H, class E, class A>
inline constexpr bool is_std_codec_template<std::unordered_multimap<K, M, H, E, A>> = true;
template <class T>
inline constexpr bool is_std_codec_template<std::optional<T>> = true;
template <class... Ts>
inline constexpr bool is_std_codec_template<std::variant<Ts...>> = true;
template <class A, class B>
inline constexpr bool is_std_codec_template<std::pair<A, B>> = true;
template <class... Ts>
inline constexpr bool is_std_codec_template<std::tuple<Ts...>> = true;

}  // namespace mproc::detail
