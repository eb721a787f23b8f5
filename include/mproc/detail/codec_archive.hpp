// mproc/detail/codec_archive.hpp — mproc's own cereal-compatible archives, through which
// user types' serialize/save/load run. Include mproc/codec.hpp, not this header.
//
// Why not cereal's binary archives: cereal::BinaryInputArchive trusts the sizes it reads
// (it resizes a vector to whatever length the bytes claim), and its std-type support would
// bypass mproc's bounds checks. These archives accept the same user code — ar(a, b), ar & a,
// cereal::make_nvp / CEREAL_NVP, cereal::base_class, cereal::binary_data — and send every
// member through mproc's own codec.
#pragma once

#include <cereal/cereal.hpp>

#include <memory>
#include <type_traits>

#include "mproc/detail/codec_traits.hpp"
#include "mproc/detail/shared_handle.hpp"

namespace mproc {

namespace detail {
template <class T>
void encode_member(Encoder& e, const T& value);
}  // namespace detail

/// The archive a user type's serialize/save sees when mproc encodes it.
/// Supports ar(values...), ar & value, ar << value, and the cereal wrappers make_nvp
/// (the name is dropped), base_class / virtual_base_class and binary_data.
class OutputArchive {
 public:
  using is_saving = std::true_type;
  using is_loading = std::false_type;

  explicit OutputArchive(Encoder& encoder) noexcept : encoder_(&encoder) {}

  template <class... Ts>
  OutputArchive& operator()(Ts&&... values) {
    (save_one(values), ...);
    return *this;
  }
  template <class T>
  OutputArchive& operator&(T&& value) {
    save_one(value);
    return *this;
  }
  template <class T>
  OutputArchive& operator<<(T&& value) {
    save_one(value);
    return *this;
  }

  Encoder& encoder() noexcept { return *encoder_; }

 private:
  template <class T>
  void save_one(const T& value) {
    detail::encode_member(*encoder_, value);
  }
  template <class T>
  void save_one(const cereal::NameValuePair<T>& nvp) {
    save_one(nvp.value);
  }
  template <class B>
  void save_one(const cereal::base_class<B>& base) {
    detail::encode_member(*encoder_, static_cast<const B&>(*base.base_ptr));
  }
  template <class B>
  void save_one(const cereal::virtual_base_class<B>& base) {
    detail::encode_member(*encoder_, static_cast<const B&>(*base.base_ptr));
  }
  template <class T>
  void save_one(const cereal::BinaryData<T>& data) {
    encoder_->write_bytes(data.data, static_cast<std::size_t>(data.size));
  }

  Encoder* encoder_;
};

/// The archive a user type's serialize/load sees when mproc decodes it. Every read is
/// bounds-checked; malformed input throws SerializationError out of the user's load.
class InputArchive {
 public:
  using is_saving = std::false_type;
  using is_loading = std::true_type;

  explicit InputArchive(Decoder& decoder) noexcept : decoder_(&decoder) {}

  template <class... Ts>
  InputArchive& operator()(Ts&&... values) {
    (load_one(values), ...);
    return *this;
  }
  template <class T>
  InputArchive& operator&(T&& value) {
    load_one(value);
    return *this;
  }
  template <class T>
  InputArchive& operator>>(T&& value) {
    load_one(value);
    return *this;
  }

  Decoder& decoder() noexcept { return *decoder_; }

 private:
  template <class T>
  void load_one(T& value) {
    static_assert(!std::is_const_v<T>, "mproc: cannot load into a const member");
    detail::decode_into(*decoder_, value);
  }
  template <class T>
  void load_one(cereal::NameValuePair<T>& nvp) {
    load_one(nvp.value);
  }
  template <class B>
  void load_one(cereal::base_class<B>& base) {
    detail::decode_into(*decoder_, *base.base_ptr);
  }
  template <class B>
  void load_one(cereal::virtual_base_class<B>& base) {
    detail::decode_into(*decoder_, *base.base_ptr);
  }
  template <class T>
  void load_one(cereal::BinaryData<T>& data) {
    decoder_->read_bytes(data.data, static_cast<std::size_t>(data.size));
  }

  Decoder* decoder_;
};

namespace detail {

// The hooks in cereal's order of preference; the first one a type has is used.
template <class T>
void call_save(OutputArchive& ar, const T& value) {
  if constexpr (has_member_serialize<T>)
    // serialize() is one non-const member for both directions, as in cereal.
    cereal::access::member_serialize(ar, const_cast<T&>(value));
  else if constexpr (has_member_save_load<T>)
    cereal::access::member_save(ar, value);
  else if constexpr (adl::has_free_serialize<T>)
    adl::serialize_by_adl(ar, const_cast<T&>(value));
  else
    adl::save_by_adl(ar, value);
}

template <class T>
void call_load(InputArchive& ar, T& value) {
  if constexpr (has_member_serialize<T>)
    cereal::access::member_serialize(ar, value);
  else if constexpr (has_member_save_load<T>)
    cereal::access::member_load(ar, value);
  else if constexpr (adl::has_free_serialize<T>)
    adl::serialize_by_adl(ar, value);
  else
    adl::load_by_adl(ar, value);
}

template <class T>
struct BasicCodec<T, Shape::user> {
  static constexpr bool supported = true;
  static constexpr bool raw = false;
  // Unknown without running serialize(): a container of user types is bounded by the
  // decoder's memory budget (see read_count), never by trusting the length prefix.
  static constexpr std::size_t min_size = 0;

  static void encode(Encoder& e, const T& value) {
    // Only user types can be recursive, so only they count towards the nesting limits.
    Nesting nesting(e.recursion());
    OutputArchive ar(e);
    call_save(ar, value);
  }
  static T decode(Decoder& d) {
    if constexpr (shared_by_descriptor<T>) {
      // A handle loads into an empty one: a default-constructed Lock or Queue would make a
      // shared object only to drop it.
      T value = HandleAccess::unloaded<T>();
      decode_into(d, value);
      return value;
    } else {
      return decode_default_constructed(d);
    }
  }
  static T decode_default_constructed(Decoder& d) {
    require_default_constructible();
    T value = T();
    decode_into(d, value);
    return value;
  }
  static constexpr void require_default_constructible() {
    static_assert(std::is_default_constructible_v<T>,
                  "mproc: decoding a type with serialize/load needs a default constructor: the "
                  "archive loads into a default-constructed object");
  }
  static void decode_into(Decoder& d, T& value) {
    // Only user types can be recursive (a Node holding a vector<Node>), so only they
    // count towards the nesting limits.
    Nesting nesting(d.recursion());
    InputArchive ar(d);
    call_load(ar, value);
  }
};

template <class T>
void encode_member(Encoder& e, const T& value) {
  if constexpr (Serializable<T>)
    Codec<std::remove_cv_t<T>>::encode(e, value);
  else
    explain_unserializable<T>();
}

template <class T>
void decode_into(Decoder& d, T& value) {
  if constexpr (!Serializable<T>) {
    explain_unserializable<T>();
  } else if constexpr (requires(Decoder& dd, T& vv) { Codec<T>::decode_into(dd, vv); }) {
    // User types load in place; C arrays cannot be returned by value.
    Codec<T>::decode_into(d, value);
  } else {
    value = Codec<T>::decode(d);
  }
}

}  // namespace detail
}  // namespace mproc
