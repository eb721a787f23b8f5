// The types the codec fuzzer decodes, chosen by an input's first byte: deep (recursive user
// types), wide (maps, tuples), amplifying (small encodings of large elements), and every
// shape of the codec (raw, bool, empty, user hooks, each std template).
#pragma once

#include <cereal/cereal.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <forward_list>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

namespace mproc_fuzz {

// Recursive: only user types can nest without a bound set by the type.
struct Node {
  std::int32_t value = 0;
  std::vector<Node> children;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(value, children);
  }
};

// Recursive and heavy: each level decodes a 16 KiB optional through the stack.
struct HeavyNode {
  std::optional<std::array<char, 16384>> payload;
  std::list<HeavyNode> children;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(payload, children);
  }
};

struct Point {
  double x = 0;
  double y = 0;
};

// Member serialize with nvp, std types inside.
struct Message {
  std::variant<std::int32_t, std::string, std::vector<double>> body;
  std::optional<std::string> note;
  std::uint32_t sequence = 0;
  bool urgent = false;
  std::vector<Point> path;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(body, CEREAL_NVP(note), sequence, urgent, cereal::make_nvp("path", path));
  }
};

// Split save/load and a base class.
struct Base {
  std::string tag;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(tag);
  }
};
struct Derived : Base {
  std::int64_t id = 0;
  std::map<std::string, Message> inbox;
  template <class Archive>
  void save(Archive& ar) const {
    ar(cereal::base_class<Base>(this), id, inbox);
  }
  template <class Archive>
  void load(Archive& ar) {
    ar(cereal::base_class<Base>(this), id, inbox);
  }
};

struct Empty {
  template <class Archive>
  void serialize(Archive&) {}
};

using Types = std::tuple<
    Node,                                                                     // 0 deep
    HeavyNode,                                                                // 1 deep, heavy levels
    std::vector<std::optional<std::array<double, 8192>>>,                     // 2 amplifying
    std::vector<std::vector<std::vector<std::uint16_t>>>,                     // 3 nested
    std::map<std::string, std::vector<std::optional<std::int32_t>>>,          // 4 wide
    std::variant<std::monostate, std::int32_t, std::string, std::vector<double>, std::map<int, std::string>>,
    std::unordered_map<std::string, std::set<std::int32_t>>,                  // 6
    std::tuple<bool, std::optional<std::string>, std::list<std::pair<std::int32_t, std::string>>,
               std::deque<char>, std::forward_list<std::int32_t>>,            // 7
    Message,                                                                  // 8
    Derived,                                                                  // 9
    std::tuple<std::vector<bool>, std::u32string, std::array<std::optional<std::int16_t>, 5>>,  // 10
    std::vector<std::monostate>,                                              // 11 zero-size elements
    std::list<Empty>,                                                         // 12
    std::tuple<std::multiset<std::string>, std::multimap<std::int32_t, Empty>,
               std::unordered_multiset<std::int64_t>, std::unordered_set<std::string>>,  // 13
    std::vector<std::vector<std::optional<std::vector<char>>>>,              // 14
    std::optional<std::variant<Node, std::deque<Message>>>>;                  // 15

inline constexpr std::size_t kTypeCount = std::tuple_size_v<Types>;

// Whether encode(decode(bytes)) must give back exactly `bytes`: true unless the type holds
// an associative container (a decoded one is in its own order, not the input's).
template <class T>
inline constexpr bool kCanonical = true;
template <>
inline constexpr bool kCanonical<std::map<std::string, std::vector<std::optional<std::int32_t>>>> = false;
template <>
inline constexpr bool kCanonical<std::tuple_element_t<5, Types>> = false;
template <>
inline constexpr bool kCanonical<std::tuple_element_t<6, Types>> = false;
template <>
inline constexpr bool kCanonical<Derived> = false;
template <>
inline constexpr bool kCanonical<std::tuple_element_t<13, Types>> = false;

// Calls f(std::type_identity<T>{}) for the type with index `selector % kTypeCount`.
template <class F>
void with_type(std::uint8_t selector, F&& f) {
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    const std::size_t index = selector % kTypeCount;
    ((index == I ? (f(std::type_identity<std::tuple_element_t<I, Types>>{}), 0) : 0), ...);
  }(std::make_index_sequence<kTypeCount>{});
}

}  // namespace mproc_fuzz
