// mproc/detail/codec_traits.hpp — how mproc decides the encoding of a type: the Codec
// customisation point, the Serializable concept and the compile-time explanations shown
// when a type is not serializable. Include mproc/codec.hpp, not this header.
#pragma once

#include <cereal/cereal.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "mproc/detail/codec_core.hpp"

namespace mproc {

class OutputArchive;
class InputArchive;

/// Opt-in for a trivially copyable type whose members hold addresses (pointers, views) that
/// are valid in every process that receives it — say, pointers into memory mapped at the same
/// address in all of them before they forked. Such a type is refused by default (a pointer
/// member would arrive as an address that means nothing in the receiver); specialise this to
/// true to send its bytes anyway, at your own risk:
///
///   template <> inline constexpr bool mproc::position_independent<RingView> = true;
template <class T>
inline constexpr bool position_independent = false;

namespace detail {

// ---- error helpers (src/core/codec.cpp) -------------------------------------------------------
[[noreturn]] void throw_bad_bool(unsigned value);
[[noreturn]] void throw_bad_optional_flag(std::string_view type, unsigned value);
[[noreturn]] void throw_bad_variant_index(std::string_view type, std::uint32_t index, std::size_t alternatives);
[[noreturn]] void throw_valueless_variant(std::string_view type);
[[noreturn]] void throw_count_exceeds_input(std::string_view type, std::uint64_t count, std::size_t left,
                                            std::size_t min_element_size);
[[noreturn]] void throw_over_memory_budget(std::string_view type, std::uint64_t count, std::size_t element_bytes,
                                           std::size_t budget_left);
[[noreturn]] void throw_duplicate_key(std::string_view type);
[[noreturn]] void throw_bad_bit_padding(std::string_view type);
[[noreturn]] void throw_trailing(std::string_view type, std::size_t left);
[[noreturn]] void rethrow_in_context(std::string_view type, const SerializationError& error);

// ---- user hooks, found the way cereal finds them -----------------------------------------
// cereal::access reaches members that are private to everyone but `friend class cereal::access`,
// so types written for cereal work unchanged.
template <class T>
concept has_member_serialize = requires(T& t, OutputArchive& out, InputArchive& in) {
  cereal::access::member_serialize(out, t);
  cereal::access::member_serialize(in, t);
};

template <class T>
concept has_member_save_load = requires(const T& ct, T& t, OutputArchive& out, InputArchive& in) {
  cereal::access::member_save(out, ct);
  cereal::access::member_load(in, t);
};

namespace adl {
// Poison pills: unqualified lookup stops here, so serialize/save/load come only from
// argument-dependent lookup: T's namespace, and mproc's (the archives' namespace) — which is
// why mproc must never declare namespace-scope functions with these names.
void serialize() = delete;
void save() = delete;
void load() = delete;

template <class T>
concept has_free_serialize = requires(T& t, OutputArchive& out, InputArchive& in) {
  serialize(out, t);
  serialize(in, t);
};

template <class T>
concept has_free_save_load = requires(const T& ct, T& t, OutputArchive& out, InputArchive& in) {
  save(out, ct);
  load(in, t);
};

template <class A, class T>
void serialize_by_adl(A& ar, T& value) {
  serialize(ar, value);
}
template <class T>
void save_by_adl(OutputArchive& ar, const T& value) {
  save(ar, value);
}
template <class T>
void load_by_adl(InputArchive& ar, T& value) {
  load(ar, value);
}
}  // namespace adl

template <class T>
concept has_user_codec = has_member_serialize<T> || has_member_save_load<T> || adl::has_free_serialize<T> ||
                         adl::has_free_save_load<T>;

// Trivially copyable types that hold addresses into this process: refused like pointers.
template <class T>
struct is_view : std::false_type {};
template <class C, class Tr>
struct is_view<std::basic_string_view<C, Tr>> : std::true_type {};
template <class T, std::size_t E>
struct is_view<std::span<T, E>> : std::true_type {};
template <class T>
struct is_view<std::reference_wrapper<T>> : std::true_type {};
template <class T>
struct is_view<std::initializer_list<T>> : std::true_type {};

// How a type that no std-template specialisation of Codec claims is encoded. address_holder:
// trivially copyable, but a member holds a pointer or a view (holds_address).
enum class Shape { unsupported, pointer, view, user, boolean, empty, raw, address_holder };

template <class T>
consteval bool holds_address();

// True for the std templates Codec has a specialisation for (codec_std.hpp). When one of them
// is not serializable, the culprit is one of its arguments, and that is what the error names;
// nor may it fall back to its raw bytes (a std::optional<int*> is trivially copyable).
template <class T>
inline constexpr bool is_std_codec_template = false;

template <class T>
consteval Shape shape_of() {
  // A user hook wins over the raw fast path: the author asked for it (e.g. to validate).
  if constexpr (has_user_codec<T>) return Shape::user;
  else if constexpr (is_std_codec_template<T>) return Shape::unsupported;  // its specialisation refused it
  else if constexpr (std::is_same_v<T, bool>) return Shape::boolean;
  else if constexpr (std::is_pointer_v<T> || std::is_member_pointer_v<T>) return Shape::pointer;
  else if constexpr (is_view<T>::value) return Shape::view;
  else if constexpr (std::is_array_v<T> || std::is_volatile_v<T> || !std::is_trivially_copyable_v<T>)
    return Shape::unsupported;
  // An empty type's one byte is padding: sending it would send garbage for nothing.
  else if constexpr (std::is_empty_v<T>) return Shape::empty;
  else if constexpr (holds_address<T>()) return Shape::address_holder;
  else return Shape::raw;
}

// Codec<T> is the customisation point. Every supported specialisation provides:
//   static constexpr bool supported = true;
//   static constexpr bool raw;              // encoding == the object's sizeof(T) bytes
//   static constexpr std::size_t min_size;  // fewest bytes any encoding of T takes
//   static void encode(Encoder&, const T&);
//   static T decode(Decoder&);              // absent for C arrays (see decode_into)
// min_size lets containers reject a hostile length before allocating for it.
template <class T, Shape S = shape_of<T>()>
struct BasicCodec {
  static constexpr bool supported = false;
};

template <class T>
struct Codec : BasicCodec<T> {};

template <class T>
struct Codec<const T> : Codec<T> {};

}  // namespace detail

/// A type mproc can encode and decode (see mproc/codec.hpp for the list and the rules).
template <class T>
concept Serializable = detail::Codec<std::remove_cv_t<T>>::supported;

namespace detail {

// ---- members of trivially copyable aggregates: no addresses -------------------------------
//
// A trivially copyable struct is sent as its bytes, so a pointer member would arrive as an
// address that means nothing in the receiver. Aggregates are therefore inspected member by
// member, by the technique Boost.PFR uses to count fields: aggregate initialisation
// T{probe, probe, ...} with probes that convert to a member's type. Brace elision carries the
// initialisers into nested aggregates and C arrays, so every scalar ("leaf") inside is reached,
// at any depth. Two probes:
// - AnyLeaf converts to anything but an aggregate class (those are elided into, leaf by leaf):
//   T{AnyLeaf x n} is valid for n up to the number of leaves;
// - SafeLeaf converts only to what may cross (Serializable, by value — not a pointer, a view,
//   a reference, or a std::optional<int*>...): T{SafeLeaf x n} stops at the first leaf that
//   may not.
// T holds an address when SafeLeaf stops before AnyLeaf. Why not structured bindings, which
// name the members' types directly: they need the exact member count, and a wrong count (a
// member type the counting cannot initialise) is a hard error in a program that compiled
// before; here a probe that fails only ends the inspection early.
// Limits, as for any such technique: non-aggregate classes (private members, constructors)
// are taken at their word, a union shows its first member only, members after one that no
// probe can initialise are not reached, and only the first kMaxInspectedLeaves leaves are
// inspected (that bounds compile time for types holding large arrays). An aggregate that
// cannot be initialised from nothing (a reference member) is not inspected.
inline constexpr std::size_t kMaxInspectedLeaves = 256;

template <class U>
concept elided_into = std::is_class_v<U> && std::is_aggregate_v<U> && !position_independent<U>;

struct AnyLeaf {
  template <class U>
    requires(!elided_into<U>)
  operator U&() const noexcept;  // declared only: used in unevaluated contexts
};

struct SafeLeaf {
  template <class U>
    requires(!elided_into<U> && (position_independent<U> || Serializable<U>))
  operator U() const noexcept;
};

template <class T, class Probe, std::size_t... I>
consteval bool initialisable(std::index_sequence<I...>) {
  return requires { T{(void(I), Probe{})...}; };
}
template <class T, class Probe, std::size_t N>
consteval bool initialisable() {
  return initialisable<T, Probe>(std::make_index_sequence<N>{});
}

// The largest n in [lo, hi] with T{AnyLeaf x n} valid, given that it is valid for lo.
template <class T, std::size_t Lo, std::size_t Hi>
consteval std::size_t count_leaves() {
  if constexpr (Lo == Hi) {
    return Lo;
  } else {
    constexpr std::size_t mid = Lo + (Hi - Lo + 1) / 2;
    if constexpr (initialisable<T, AnyLeaf, mid>())
      return count_leaves<T, mid, Hi>();
    else
      return count_leaves<T, Lo, mid - 1>();
  }
}

template <class T>
consteval bool holds_address() {
  if constexpr (!std::is_aggregate_v<T> || std::is_array_v<T> || position_independent<T>) {
    return false;
  } else if constexpr (!initialisable<T, AnyLeaf, 0>()) {
    return false;
  } else {
    constexpr std::size_t leaves = count_leaves<T, 0, kMaxInspectedLeaves>();
    return !initialisable<T, SafeLeaf, leaves>();
  }
}

template <class>
inline constexpr bool dependent_false = false;

template <class T>
struct not_serializable {
  static_assert(dependent_false<T>,
                "mproc: the type T in 'mproc::detail::not_serializable<T>' above is not serializable. "
                "Give it a member `template <class Archive> void serialize(Archive& ar) { ar(member1, member2); }` "
                "(cereal style; save/load members or free functions work too), or make it trivially copyable.");
};

template <class T>
struct pointers_cannot_cross_a_process_boundary {
  static_assert(dependent_false<T>,
                "mproc: pointers cannot cross a process boundary: an address means nothing in another "
                "process. Send the pointed-to value, or an index or key that the receiver can look up.");
};

template <class T>
struct pointer_members_cannot_cross_a_process_boundary {
  static_assert(dependent_false<T>,
                "mproc: pointers cannot cross a process boundary, not even as members: the trivially copyable "
                "type T in 'mproc::detail::pointer_members_cannot_cross_a_process_boundary<T>' above has a member "
                "(perhaps nested) that is a pointer or a view, whose address means nothing in another process. "
                "Give T a `template <class Archive> void serialize(Archive& ar)` that sends the pointed-to value "
                "(or an index or key the receiver can look up). If the addresses are valid in every process that "
                "receives T, say so: `template <> inline constexpr bool mproc::position_independent<T> = true;`.");
};

template <class T>
struct callables_cannot_cross_a_process_boundary {
  static_assert(dependent_false<T>,
                "mproc: a callable (a std::function, a lambda, a function object or a function pointer: the type T "
                "in 'mproc::detail::callables_cannot_cross_a_process_boundary<T>' above) cannot cross a process "
                "boundary: code is not data, as in Python, where pickling a lambda fails. Pass data that says what "
                "to do (an enum, a name, the values the callable would have captured) and choose or call the "
                "function inside the task.");
};

// Class types with one operator() (closures, std::function, function objects) that are not
// serializable are named as callables: "add serialize()" would be the wrong advice.
template <class T>
inline constexpr bool is_callable_object = false;
template <class T>
  requires(std::is_class_v<T> && requires { &T::operator(); })
inline constexpr bool is_callable_object<T> = true;

template <class T>
struct views_cannot_cross_a_process_boundary {
  static_assert(dependent_false<T>,
                "mproc: views (std::string_view, std::span, std::reference_wrapper, std::initializer_list) "
                "cannot cross a process boundary: they point into this process's memory. "
                "Send an owning std::string or std::vector instead.");
};

// Arguments of a container that are not values of it: never the reason it is not serializable.
template <class T>
inline constexpr bool is_container_plumbing = false;
template <class T>
inline constexpr bool is_container_plumbing<std::allocator<T>> = true;
template <class T>
inline constexpr bool is_container_plumbing<std::less<T>> = true;
template <class T>
inline constexpr bool is_container_plumbing<std::hash<T>> = true;
template <class T>
inline constexpr bool is_container_plumbing<std::equal_to<T>> = true;
template <class T>
inline constexpr bool is_container_plumbing<std::char_traits<T>> = true;

template <class T>
constexpr void explain_unserializable();

template <class A>
inline constexpr bool is_culprit = !Serializable<A> && !is_container_plumbing<A>;

template <class A>
constexpr void explain_if_culprit() {
  if constexpr (is_culprit<A>) explain_unserializable<A>();
}

template <class T>
struct TemplateArgs {
  static constexpr bool any_culprit = false;
  static constexpr void explain() {}
};

template <template <class...> class C, class... As>
struct TemplateArgs<C<As...>> {
  static constexpr bool any_culprit = (is_culprit<As> || ...);
  static constexpr void explain() { (explain_if_culprit<As>(), ...); }
};

template <class T, std::size_t N>
struct TemplateArgs<std::array<T, N>> {
  static constexpr bool any_culprit = is_culprit<T>;
  static constexpr void explain() { explain_if_culprit<T>(); }
};

// Instantiates the static_assert that best names what is wrong with T (or with the element
// type inside it that is to blame). Only ever instantiated for a non-Serializable T.
template <class T>
constexpr void explain_unserializable() {
  using U = std::remove_cv_t<T>;
  if constexpr (is_callable_object<U> || (std::is_pointer_v<U> && std::is_function_v<std::remove_pointer_t<U>>))
    (void)sizeof(callables_cannot_cross_a_process_boundary<U>);
  else if constexpr (std::is_pointer_v<U> || std::is_member_pointer_v<U>)
    (void)sizeof(pointers_cannot_cross_a_process_boundary<U>);
  else if constexpr (is_view<U>::value)
    (void)sizeof(views_cannot_cross_a_process_boundary<U>);
  else if constexpr (shape_of<U>() == Shape::address_holder)
    (void)sizeof(pointer_members_cannot_cross_a_process_boundary<U>);
  else if constexpr (std::is_array_v<U> && is_culprit<std::remove_extent_t<U>>)
    explain_unserializable<std::remove_extent_t<U>>();
  else if constexpr (is_std_codec_template<U> && TemplateArgs<U>::any_culprit)
    TemplateArgs<U>::explain();
  else
    (void)sizeof(not_serializable<U>);
}

// ---- element-count checks: the defence against hostile length prefixes ----------------

// What one element of a node-based container (std::list, std::set, std::map, the unordered
// ones...) costs besides the element: its links (or hash and bucket slot) and the
// allocator's header.
inline constexpr std::size_t kNodeOverhead = 4 * sizeof(void*);

// Validates a container length read from the wire BEFORE anything is allocated for it, and
// pays for its elements out of the decoder's memory budget (Decoder::kMemoryBase):
// - each element needs at least min_size bytes, so more elements than that fit in the input
//   cannot be real;
// - each element occupies sizeof(Elem) (plus kNodeOverhead in a node-based container), and
//   the memory of all the containers of one decode is bounded: a one-byte encoding may stand
//   for a 64 KiB element. Elements stored as their own bytes in contiguous memory (raw ones in
//   a string or a vector) cost no more memory than the input they come from and are free.
// All elements are paid for up front, so reserving `count` is safe, and no per-element
// check is needed.
template <class Container, class Elem, bool Node = false>
std::size_t read_count(Decoder& d) {
  const auto count = get_uint<std::uint64_t>(d);
  constexpr std::size_t min_size = Codec<Elem>::min_size;
  if constexpr (min_size > 0) {
    if (count > d.remaining() / min_size)
      throw_count_exceeds_input(type_name<Container>(), count, d.remaining(), min_size);
  }
  constexpr std::size_t element_bytes = Node ? sizeof(Elem) + kNodeOverhead : Codec<Elem>::raw ? 0 : sizeof(Elem);
  if constexpr (element_bytes > 0) {
    if (count > d.memory_budget() / element_bytes)
      throw_over_memory_budget(type_name<Container>(), count, element_bytes, d.memory_budget());
    d.charge_memory(static_cast<std::size_t>(count) * element_bytes);
  }
  return static_cast<std::size_t>(count);
}

// ---- the shapes that need no archive ------------------------------------------------

template <class T>
struct BasicCodec<T, Shape::boolean> {
  static constexpr bool supported = true;
  static constexpr bool raw = false;
  static constexpr std::size_t min_size = 1;
  static void encode(Encoder& e, bool value) { put_uint(e, static_cast<std::uint8_t>(value ? 1 : 0)); }
  static bool decode(Decoder& d) {
    // Any byte but 0/1 would be a bool with an invalid object representation (UB to read).
    const auto byte = get_uint<std::uint8_t>(d);
    if (byte > 1) throw_bad_bool(byte);
    return byte == 1;
  }
};

template <class T>
struct BasicCodec<T, Shape::empty> {
  static constexpr bool supported = true;
  static constexpr bool raw = false;
  static constexpr std::size_t min_size = 0;
  static void encode(Encoder&, const T&) noexcept {}
  static T decode(Decoder&) {
    if constexpr (std::is_default_constructible_v<T>)
      return T{};
    else
      return std::bit_cast<T>(std::array<std::byte, sizeof(T)>{});
  }
};

template <class T>
struct BasicCodec<T, Shape::raw> {
  static constexpr bool supported = true;
  static constexpr bool raw = true;
  static constexpr std::size_t min_size = sizeof(T);
  static void encode(Encoder& e, const T& value) { e.write_bytes(std::addressof(value), sizeof(T)); }
  static T decode(Decoder& d) {
    if constexpr (std::is_trivially_default_constructible_v<T>) {
      T value;
      d.read_bytes(std::addressof(value), sizeof(T));
      return value;
    } else {
      // No default constructor to make an object to copy into: bit_cast makes one.
      std::array<std::byte, sizeof(T)> bytes;
      d.read_bytes(bytes.data(), sizeof(T));
      return std::bit_cast<T>(bytes);
    }
  }
};

// Decodes into an existing object (archive members, base subobjects). Assignment rather
// than a memcpy over the object keeps it correct for base subobjects whose tail padding
// holds members of the derived class. Defined in codec_archive.hpp.
template <class T>
void decode_into(Decoder& d, T& value);

}  // namespace detail
}  // namespace mproc
