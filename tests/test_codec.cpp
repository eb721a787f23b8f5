// Tests of mproc/codec.hpp (and the basics of mproc/frame.hpp): round trips of every supported
// type, the exact wire format of the simple ones, and rejection of malformed input.
//
// Compile-time refusals cannot be tested here; each of these fails to compile, with the
// message quoted:
//
//   struct Opaque { std::string s; };                 // no serialize, not trivially copyable
//   mproc::dumps(Opaque{});                            // "... not_serializable<Opaque> ... is not serializable.
//                                                      //  Give it a member `template <class Archive> void serialize..."
//   mproc::dumps(std::vector<Opaque>{});               // same, naming Opaque rather than the vector
//   int x = 0; mproc::dumps(&x);                       // "pointers cannot cross a process boundary ..."
//   struct Job { int id; double* w; }; dumps(Job{});  // "pointers cannot cross a process boundary, not even
//                                                      //  as members ..." (an address anywhere inside)
//   mproc::dumps(std::string_view("x"));               // "views (std::string_view, std::span, ...) cannot cross ..."
//   mproc::loads<int[3]>(bytes);                       // "function returning an array": use std::array
//
// static_asserts below check the Serializable concept itself for these cases.
#include <gtest/gtest.h>

#include <cereal/cereal.hpp>

#include <array>
#include <chrono>
#include <complex>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <forward_list>
#include <functional>
#include <iterator>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include <pthread.h>
#include <sys/resource.h>

#include "mproc/codec.hpp"
#include "mproc/frame.hpp"

namespace {

using mproc::SerializationError;
using Bytes = std::vector<std::byte>;

// ---- user types, one per hook style ---------------------------------------------------------

// Member serialize with ar(a, b); trivially copyable, yet the hook is what is used.
struct Point {
  int x = 0;
  int y = 0;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(x, y);
  }
  bool operator==(const Point&) const = default;
};

// Member serialize with ar & a, CEREAL_NVP and make_nvp; std types inside.
struct Person {
  std::string name;
  std::vector<int> scores;
  std::optional<std::string> email;
  std::map<std::string, Point> places;
  template <class Archive>
  void serialize(Archive& ar) {
    ar & name & scores;
    ar(CEREAL_NVP(email), cereal::make_nvp("places", places));
  }
  bool operator==(const Person&) const = default;
};

// Split save/load members; load validates what it reads.
class Temperature {
 public:
  Temperature() = default;
  explicit Temperature(double celsius) : celsius_(celsius) {}
  double celsius() const { return celsius_; }
  template <class Archive>
  void save(Archive& ar) const {
    ar(static_cast<std::int64_t>(celsius_ * 1000.0));
  }
  template <class Archive>
  void load(Archive& ar) {
    std::int64_t millis = 0;
    ar(millis);
    celsius_ = static_cast<double>(millis) / 1000.0;
  }
  bool operator==(const Temperature&) const = default;

 private:
  double celsius_ = 0;
};

// Private hook, reached through cereal::access as cereal users write it.
class Secretive {
 public:
  Secretive() = default;
  Secretive(int a, std::string b) : a_(a), b_(std::move(b)) {}
  bool operator==(const Secretive&) const = default;

 private:
  friend class cereal::access;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(a_, b_);
  }
  int a_ = 0;
  std::string b_;
};

// Base and derived, with cereal::base_class.
struct Base {
  int id = 0;
  std::string tag;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(id, tag);
  }
  bool operator==(const Base&) const = default;
};
struct Derived : Base {
  std::vector<double> values;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(cereal::base_class<Base>(this), values);
  }
  bool operator==(const Derived&) const = default;
};

// Archive traits, C arrays (nested, of bool) and cereal::binary_data.
struct Grid {
  int cells[3][2] = {};
  bool mask[3] = {};
  char raw[4] = {};
  int loads_seen = 0;  // not on the wire: proves is_loading is usable
  template <class Archive>
  void serialize(Archive& ar) {
    ar(cells, mask, cereal::binary_data(raw, sizeof raw));
    if constexpr (Archive::is_loading::value) ++loads_seen;
  }
  bool operator==(const Grid& other) const {
    return std::memcmp(cells, other.cells, sizeof cells) == 0 && std::memcmp(mask, other.mask, sizeof mask) == 0 &&
           std::memcmp(raw, other.raw, sizeof raw) == 0;
  }
};

// Recursive: only user types can nest without a bound set by the type.
struct Node {
  int value = 0;
  std::vector<Node> children;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(value, children);
  }
  bool operator==(const Node&) const = default;
};

// A user type whose encoding is empty: containers of it are bounded by the memory budget.
struct Nothing {
  template <class Archive>
  void serialize(Archive&) {}
  bool operator==(const Nothing&) const = default;
};

struct LargeNothing {
  char unused[4096] = {};
  template <class Archive>
  void serialize(Archive&) {}
};

// A trivially copyable struct without hook: the raw fast path.
struct RawPod {
  std::int32_t a;
  double b;
  char c[3];
  bool operator==(const RawPod&) const = default;
};

struct EmptyPod {
  bool operator==(const EmptyPod&) const = default;
};

// Not default-constructible, trivially copyable: decoded by construction (bit_cast).
struct NoDefault {
  explicit NoDefault(int v) : value(v) {}
  int value;
  bool operator==(const NoDefault&) const = default;
};

enum class Color : std::uint8_t { red, green, blue };

}  // namespace

// Free-function hooks, found by ADL in the type's namespace.
namespace geo {
struct Vec3 {
  float x = 0, y = 0, z = 0;
  bool operator==(const Vec3&) const = default;
};
template <class Archive>
void serialize(Archive& ar, Vec3& v) {
  ar(v.x, v.y, v.z);
}

struct Id {
  std::string text;
  bool operator==(const Id&) const = default;
};
template <class Archive>
void save(Archive& ar, const Id& id) {
  ar(id.text);
}
template <class Archive>
void load(Archive& ar, Id& id) {
  ar(id.text);
  if (id.text.empty()) throw std::invalid_argument("empty id");
}
}  // namespace geo

namespace {

// ---- the Serializable concept ------------------------------------------------------------------

static_assert(mproc::Serializable<int>);
static_assert(mproc::Serializable<const int>);
static_assert(mproc::Serializable<RawPod>);
static_assert(mproc::Serializable<Person>);
static_assert(mproc::Serializable<geo::Vec3>);
static_assert(mproc::Serializable<geo::Id>);
static_assert(mproc::Serializable<std::map<std::string, std::vector<std::optional<Point>>>>);
static_assert(mproc::Serializable<int[3]>);
struct Opaque {
  std::string s;
};
static_assert(!mproc::Serializable<Opaque>);
static_assert(!mproc::Serializable<std::vector<Opaque>>);
static_assert(!mproc::Serializable<std::optional<Opaque>>);
static_assert(!mproc::Serializable<int*>);
static_assert(!mproc::Serializable<const char*>);
static_assert(!mproc::Serializable<int RawPod::*>);
static_assert(!mproc::Serializable<void (*)()>);
static_assert(!mproc::Serializable<std::string_view>);
static_assert(!mproc::Serializable<std::span<int>>);
static_assert(!mproc::Serializable<std::vector<int*>>);
static_assert(!mproc::Serializable<int&>);
static_assert(!mproc::Serializable<std::unique_ptr<int>>);
// Trivially copyable std templates of addresses do not fall back to their raw bytes.
static_assert(!mproc::Serializable<std::optional<int*>>);
static_assert(!mproc::Serializable<std::array<const char*, 2>>);
static_assert(!mproc::Serializable<std::pair<int, std::string_view>>);

// Members of trivially copyable aggregates are inspected, recursively: an address anywhere
// inside refuses the type (tests/compile_fail/*pointer_member* check the message).
struct WithPointer {
  int id;
  const double* weights;
};
struct Labelled {
  std::string_view label;
};
struct Callback {
  void (*fn)(int);
};
struct Nested {
  RawPod pod;
  struct {
    char tag[4];
    WithPointer inner[2];
  } deep;
};
struct Bits {
  unsigned a : 3;
  unsigned b : 5;
  int RawPod::*member;
};
struct FromBase : WithPointer {
  int extra;
};
struct PlainNested {
  RawPod pods[3];
  std::array<std::int16_t, 4> shorts;
  std::optional<int> maybe;
  char name[16];
};
static_assert(!mproc::Serializable<WithPointer>);
static_assert(!mproc::Serializable<Labelled>);
static_assert(!mproc::Serializable<Callback>);
static_assert(!mproc::Serializable<Nested>);
static_assert(!mproc::Serializable<Bits>);
static_assert(!mproc::Serializable<FromBase>);
static_assert(!mproc::Serializable<std::vector<WithPointer>>);
static_assert(mproc::Serializable<PlainNested>);

// The opt-in for addresses valid in every receiving process (e.g. into a mapping shared at
// one address): the type is then raw bytes again, also as a member of another.
struct SharedSlot {
  std::uint64_t* slot;
  std::uint32_t length;
  bool operator==(const SharedSlot&) const = default;
};
struct SlotPair {
  SharedSlot first;
  SharedSlot second;
  bool operator==(const SlotPair&) const = default;
};
}  // namespace
template <>
inline constexpr bool mproc::position_independent<SharedSlot> = true;
namespace {
static_assert(mproc::Serializable<SharedSlot>);
static_assert(mproc::Serializable<SlotPair>);

// ---- helpers ---------------------------------------------------------------------------------------

template <class T>
T round_trip(const T& value) {
  return mproc::loads<T>(mproc::dumps(value));
}

template <class T>
void expect_round_trip(const T& value) {
  EXPECT_EQ(round_trip(value), value) << mproc::type_name<T>();
}

// The encoding is self-delimiting, so no proper prefix of an encoding is itself complete.
template <class T>
void expect_truncations_throw(const T& value) {
  const Bytes bytes = mproc::dumps(value);
  for (std::size_t n = 0; n < bytes.size(); ++n)
    EXPECT_THROW(mproc::loads<T>(std::span(bytes).first(n)), SerializationError)
        << mproc::type_name<T>() << " truncated to " << n << " of " << bytes.size() << " bytes";
}

template <class T>
void expect_trailing_throws(const T& value) {
  Bytes bytes = mproc::dumps(value);
  bytes.push_back(std::byte{0});
  EXPECT_THROW(mproc::loads<T>(bytes), SerializationError) << mproc::type_name<T>();
}

// Round trip, every truncation, one trailing byte.
template <class T>
void check_all(const T& value) {
  expect_round_trip(value);
  expect_truncations_throw(value);
  expect_trailing_throws(value);
}

Bytes u64_bytes(std::uint64_t v) { return mproc::dumps(v); }

Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const SerializationError& e) {
    return e.what();
  }
  return "(no exception)";
}

// ---- round trips ---------------------------------------------------------------------------------------

TEST(CodecRoundTrip, Scalars) {
  check_all(42);
  check_all(-1L);
  check_all(std::uint64_t{0xFEDCBA9876543210ULL});
  check_all(3.25);
  check_all(-0.0f);
  check_all('x');
  check_all(true);
  check_all(false);
  check_all(Color::blue);
  check_all(std::byte{0xAB});
  check_all(std::complex<double>(1.5, -2.5));
  check_all(std::chrono::milliseconds(1234));
  check_all(std::chrono::system_clock::time_point(std::chrono::nanoseconds(1'700'000'000'123'456'789LL)));
  check_all(RawPod{7, 2.5, {'a', 'b', 'c'}});
  check_all(NoDefault(9));
}

TEST(CodecRoundTrip, EmptyTypesTakeNoBytes) {
  EXPECT_TRUE(mproc::dumps(std::monostate{}).empty());
  EXPECT_TRUE(mproc::dumps(EmptyPod{}).empty());
  EXPECT_TRUE(mproc::dumps(std::tuple<>{}).empty());
  expect_round_trip(std::monostate{});
  expect_round_trip(EmptyPod{});
  expect_trailing_throws(std::monostate{});
}

TEST(CodecRoundTrip, Strings) {
  check_all(std::string());
  check_all(std::string("hello"));
  check_all(std::string("with\0NULs\0inside", 16));
  expect_round_trip(std::string(100'000, 'z'));
  check_all(std::u16string(u"\u00e9t\u00e9"));
  check_all(std::u32string(U"\U0001F600"));
  check_all(std::wstring(L"wide"));
  check_all(std::basic_string<unsigned char>{1, 2, 255});
}

TEST(CodecRoundTrip, Vectors) {
  check_all(std::vector<int>{});
  check_all(std::vector<int>{1, -2, 3});
  check_all(std::vector<std::byte>{std::byte{0}, std::byte{255}});
  check_all(std::vector<std::string>{"", "a", std::string("\0", 1)});
  check_all(std::vector<std::array<float, 3>>{{1, 2, 3}, {4, 5, 6}});
  check_all(std::vector<RawPod>{{1, 2, {'x', 'y', 'z'}}});
  check_all(std::vector<Point>{{1, 2}, {3, 4}});
  check_all(std::vector<std::vector<int>>{{}, {1}, {2, 3}});
  check_all(std::vector<std::monostate>(5));
  check_all(std::vector<Nothing>(3));
  check_all(std::vector<NoDefault>{NoDefault(1), NoDefault(2)});
}

TEST(CodecRoundTrip, LargeVector) {
  std::vector<double> big(1 << 20);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<double>(i) * 0.5;
  const Bytes bytes = mproc::dumps(big);
  EXPECT_EQ(bytes.size(), 8 + big.size() * sizeof(double));  // one count, then the raw array
  EXPECT_EQ(mproc::loads<std::vector<double>>(bytes), big);
  // Decoding from a misaligned position takes the copy path that does not assume alignment.
  Bytes shifted(1);
  shifted.insert(shifted.end(), bytes.begin(), bytes.end());
  EXPECT_EQ(mproc::loads<std::vector<double>>(std::span(shifted).subspan(1)), big);
}

TEST(CodecRoundTrip, VectorOfBool) {
  for (std::size_t n : {0, 1, 7, 8, 9, 16, 17, 1000}) {
    std::vector<bool> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = (i * 7 + 3) % 5 < 2;
    check_all(v);
    EXPECT_EQ(mproc::dumps(v).size(), 8 + (n + 7) / 8);
  }
}

TEST(CodecRoundTrip, Arrays) {
  check_all(std::array<int, 4>{1, 2, 3, 4});
  check_all(std::array<int, 0>{});
  check_all(std::array<std::string, 2>{"a", "bc"});
  check_all(std::array<bool, 3>{true, false, true});
  check_all(std::array<std::array<std::uint8_t, 2>, 2>{{{1, 2}, {3, 4}}});
}

TEST(CodecRoundTrip, Sequences) {
  check_all(std::deque<int>{});
  check_all(std::deque<std::string>{"x", "y"});
  check_all(std::list<int>{3, 1, 2});
  check_all(std::list<Point>{{1, 1}});
  check_all(std::forward_list<int>{});
  check_all(std::forward_list<int>{5, 6, 7});
}

TEST(CodecRoundTrip, SetsAndMaps) {
  check_all(std::set<int>{});
  check_all(std::set<std::string>{"b", "a", "c"});
  check_all(std::multiset<int>{1, 1, 2});
  check_all(std::unordered_set<int>{4, 5, 6});
  check_all(std::unordered_multiset<std::string>{"a", "a"});
  check_all(std::map<std::string, int>{{"one", 1}, {"two", 2}});
  check_all(std::map<int, std::vector<std::string>>{{1, {}}, {2, {"x"}}});
  check_all(std::multimap<int, std::string>{{1, "a"}, {1, "b"}, {0, "c"}});
  check_all(std::unordered_map<std::string, std::vector<int>>{{"k", {1, 2}}, {"", {}}});
  check_all(std::unordered_multimap<int, int>{{1, 2}, {1, 3}});
  // A multimap keeps the order of equal keys.
  const std::multimap<int, std::string> ordered{{1, "first"}, {1, "second"}, {1, "third"}};
  const auto back = round_trip(ordered);
  EXPECT_TRUE(std::equal(back.begin(), back.end(), ordered.begin(), ordered.end()));
}

TEST(CodecRoundTrip, OptionalVariantTuplePair) {
  check_all(std::optional<int>{});
  check_all(std::optional<int>{5});
  check_all(std::optional<std::string>{"s"});
  check_all(std::optional<std::optional<int>>{std::optional<int>{}});
  check_all(std::optional<std::optional<int>>{});
  using V = std::variant<std::monostate, int, std::string, std::vector<double>, Point>;
  check_all(V{});
  check_all(V{7});
  check_all(V{std::string("text")});
  check_all(V{std::vector<double>{1.5}});
  check_all(V{Point{1, 2}});
  // Duplicate alternatives are told apart by index, not by type.
  using Twins = std::variant<int, int>;
  EXPECT_EQ(round_trip(Twins{std::in_place_index<1>, 3}).index(), 1u);
  check_all(std::pair<int, std::string>{1, "one"});
  check_all(std::tuple<int, std::string, std::optional<double>>{1, "x", 2.0});
  check_all(std::tuple<const int, bool>{1, true});
  check_all(std::tuple<>{});
}

TEST(CodecRoundTrip, NestedCombinations) {
  using Deep = std::map<std::string, std::vector<std::optional<std::variant<int, std::string, std::set<int>>>>>;
  Deep deep{{"a", {std::nullopt, 1, std::string("two"), std::set<int>{3, 4}}}, {"", {}}};
  check_all(deep);
  std::vector<std::tuple<std::pair<int, std::string>, std::array<std::optional<bool>, 2>>> nested{
      {{1, "x"}, {true, std::nullopt}}, {{2, ""}, {std::nullopt, false}}};
  check_all(nested);
}

TEST(CodecRoundTrip, UserTypes) {
  check_all(Point{3, -4});
  check_all(Person{"Ada", {90, 95}, "ada@example.com", {{"home", {1, 2}}}});
  check_all(Person{});
  check_all(Temperature(21.5));
  check_all(Secretive(7, "hidden"));
  Derived d;
  d.id = 5;
  d.tag = "base part";
  d.values = {1.0, 2.0};
  check_all(d);
  check_all(geo::Vec3{1, 2, 3});
  check_all(geo::Id{"id-1"});
  Grid g;
  g.cells[2][1] = 9;
  g.mask[1] = true;
  std::memcpy(g.raw, "ab\0d", 4);
  check_all(g);
  EXPECT_EQ(round_trip(g).loads_seen, 1);
  check_all(Node{1, {Node{2, {}}, Node{3, {Node{4, {}}}}}});
  check_all(std::vector<std::optional<Person>>{Person{"x", {}, std::nullopt, {}}, std::nullopt});
}

TEST(CodecRoundTrip, PositionIndependentOptIn) {
  static std::uint64_t shared_word = 0;
  const SlotPair pair{{&shared_word, 1}, {&shared_word, 2}};
  EXPECT_EQ(round_trip(pair), pair);
  EXPECT_EQ(mproc::dumps(pair).size(), sizeof pair);  // its bytes, as they are
}

TEST(CodecRoundTrip, HookWinsOverRawPath) {
  // Point is trivially copyable, but its serialize() (two ints, no padding) is what is used.
  EXPECT_EQ(mproc::dumps(Point{1, 2}), mproc::dumps(std::pair<int, int>{1, 2}));
}

TEST(CodecRoundTrip, UserLoadExceptionsPassThrough) {
  // A user's load may throw its own exceptions; mproc does not rewrap them.
  EXPECT_THROW(mproc::loads<geo::Id>(mproc::dumps(std::string())), std::invalid_argument);
}

TEST(CodecRoundTrip, EncodeDecodeStream) {
  // Several values back to back through one Encoder / Decoder.
  Bytes buf;
  mproc::Encoder enc(buf);
  mproc::encode(enc, 1);
  mproc::encode(enc, std::string("two"));
  mproc::encode(enc, Point{3, 3});
  EXPECT_EQ(&enc.buffer(), &buf);
  mproc::Decoder dec(buf);
  EXPECT_EQ(mproc::decode<int>(dec), 1);
  EXPECT_EQ(mproc::decode<std::string>(dec), "two");
  EXPECT_EQ(mproc::decode<Point>(dec), (Point{3, 3}));
  EXPECT_EQ(dec.remaining(), 0u);
  EXPECT_THROW(mproc::decode<int>(dec), SerializationError);
}

TEST(CodecRoundTrip, DumpsAppends) {
  Bytes out{std::byte{0xEE}};
  mproc::dumps(std::uint16_t{0x0201}, out);
  EXPECT_EQ(out, (Bytes{std::byte{0xEE}, std::byte{1}, std::byte{2}}));
}

// ---- wire format -------------------------------------------------------------------------------------

TEST(CodecFormat, SimpleEncodingsAreLittleEndianAndLengthPrefixed) {
  EXPECT_EQ(mproc::dumps(0x04030201), (Bytes{std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}}));
  EXPECT_EQ(mproc::dumps(true), Bytes{std::byte{1}});
  EXPECT_EQ(mproc::dumps(std::string("ab")), concat({u64_bytes(2), {std::byte{'a'}, std::byte{'b'}}}));
  EXPECT_EQ(mproc::dumps(std::optional<std::uint8_t>{}), Bytes{std::byte{0}});
  EXPECT_EQ(mproc::dumps(std::optional<std::uint8_t>{7}), (Bytes{std::byte{1}, std::byte{7}}));
  EXPECT_EQ(mproc::dumps(std::variant<std::uint8_t, std::uint16_t>{std::uint16_t{5}}),
            (Bytes{std::byte{1}, std::byte{0}, std::byte{0}, std::byte{0}, std::byte{5}, std::byte{0}}));
  EXPECT_EQ(mproc::dumps(std::vector<bool>{true, false, true}), concat({u64_bytes(3), {std::byte{0b101}}}));
}

// ---- malformed input ----------------------------------------------------------------------------------

TEST(CodecReject, TruncationMessageSaysWhat) {
  const Bytes three(3);
  const std::string what = message_of([&] { (void)mproc::loads<std::uint64_t>(three); });
  EXPECT_NE(what.find("truncated: needed 8 bytes, 3 left"), std::string::npos) << what;
  EXPECT_NE(what.find(mproc::type_name<std::uint64_t>()), std::string::npos) << what;  // the type being decoded
}

TEST(CodecReject, TrailingBytes) {
  Bytes bytes = mproc::dumps(1);
  bytes.resize(bytes.size() + 3);
  const std::string what = message_of([&] { (void)mproc::loads<int>(bytes); });
  EXPECT_NE(what.find("trailing bytes: 3 bytes left"), std::string::npos) << what;
}

TEST(CodecReject, InvalidBool) {
  EXPECT_THROW(mproc::loads<bool>(Bytes{std::byte{2}}), SerializationError);
  EXPECT_THROW(mproc::loads<bool>(Bytes{std::byte{0xFF}}), SerializationError);
  EXPECT_THROW((mproc::loads<std::array<bool, 2>>(Bytes{std::byte{1}, std::byte{3}})), SerializationError);
  Bytes grid = mproc::dumps(Grid{});
  grid[sizeof(int) * 6 + 1] = std::byte{2};  // mask[1]
  EXPECT_THROW(mproc::loads<Grid>(grid), SerializationError);
  // vector<bool>: bits past the last element must be zero.
  EXPECT_THROW(mproc::loads<std::vector<bool>>(concat({u64_bytes(3), {std::byte{0b1000}}})), SerializationError);
}

TEST(CodecReject, InvalidOptionalFlag) {
  EXPECT_THROW(mproc::loads<std::optional<std::uint8_t>>(Bytes{std::byte{2}, std::byte{0}}), SerializationError);
}

TEST(CodecReject, InvalidVariantIndex) {
  using V = std::variant<int, std::string>;
  const Bytes bad = concat({mproc::dumps(std::uint32_t{2}), mproc::dumps(0)});
  const std::string what = message_of([&] { (void)mproc::loads<V>(bad); });
  EXPECT_NE(what.find("index 2"), std::string::npos) << what;
  EXPECT_THROW(mproc::loads<V>(concat({mproc::dumps(std::uint32_t{0xFFFFFFFF}), mproc::dumps(0)})),
               SerializationError);
}

// Its copy constructor throws: emplacing a copy leaves a variant valueless_by_exception.
struct Bomb {
  int x = 0;
  Bomb() = default;
  Bomb(const Bomb& other) : x(other.x) { throw 1; }
  Bomb& operator=(const Bomb&) = default;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(x);
  }
};

TEST(CodecReject, ValuelessVariantCannotBeEncoded) {
  std::variant<int, Bomb> v;
  const Bomb bomb;
  try {
    v.emplace<Bomb>(bomb);
  } catch (int) {
  }
  ASSERT_TRUE(v.valueless_by_exception());
  EXPECT_THROW(mproc::dumps(v), SerializationError);
}

TEST(CodecReject, HugeLengthPrefixesThrowWithoutAllocating) {
  // 2^60 elements in a 12-byte input: must be refused before any allocation — a
  // std::bad_alloc or std::length_error here would mean the size was trusted.
  const Bytes huge = concat({u64_bytes(std::uint64_t{1} << 60), Bytes(4)});
  auto refused = [&](auto tag) {
    using T = typename decltype(tag)::type;
    try {
      (void)mproc::loads<T>(huge);
      ADD_FAILURE() << mproc::type_name<T>() << " accepted a length of 2^60";
    } catch (const SerializationError&) {
    } catch (const std::exception& e) {
      ADD_FAILURE() << mproc::type_name<T>() << " threw " << e.what() << " instead of SerializationError";
    }
  };
  refused(std::type_identity<std::vector<int>>{});
  refused(std::type_identity<std::vector<std::byte>>{});
  refused(std::type_identity<std::vector<std::string>>{});
  refused(std::type_identity<std::vector<bool>>{});
  refused(std::type_identity<std::vector<std::monostate>>{});
  refused(std::type_identity<std::vector<Nothing>>{});
  refused(std::type_identity<std::vector<Point>>{});
  refused(std::type_identity<std::string>{});
  refused(std::type_identity<std::u32string>{});
  refused(std::type_identity<std::deque<int>>{});
  refused(std::type_identity<std::list<std::string>>{});
  refused(std::type_identity<std::forward_list<int>>{});
  refused(std::type_identity<std::set<int>>{});
  refused(std::type_identity<std::unordered_set<std::string>>{});
  refused(std::type_identity<std::map<int, int>>{});
  refused(std::type_identity<std::unordered_map<std::string, std::vector<int>>>{});
  refused(std::type_identity<std::multimap<std::monostate, std::monostate>>{});

  const std::string what = message_of([&] { (void)mproc::loads<std::vector<int>>(huge); });
  EXPECT_NE(what.find("length 1152921504606846976 exceeds the 4 bytes left"), std::string::npos) << what;
}

TEST(CodecReject, ZeroSizeElementsHaveABudget) {
  // Each inner vector claims a million empty elements: every one is plausible alone, but
  // together they would allocate without bound, so the per-decode memory budget stops them.
  Bytes bytes = u64_bytes(1000);
  for (int i = 0; i < 1000; ++i) {
    const Bytes inner = u64_bytes(1'000'000);
    bytes.insert(bytes.end(), inner.begin(), inner.end());
  }
  EXPECT_THROW(mproc::loads<std::vector<std::vector<std::monostate>>>(bytes), SerializationError);
  // The budget is in bytes of memory: a large element type that encodes to nothing spends it
  // faster (and keeps this test quick; with Nothing it would take 64M decode calls).
  EXPECT_THROW(mproc::loads<std::vector<std::vector<LargeNothing>>>(bytes), SerializationError);
  EXPECT_THROW(mproc::loads<std::list<LargeNothing>>(u64_bytes(1'000'000)), SerializationError);
  // Found by fuzz_codec: 8 bytes claiming 1.5 M list nodes of an empty type took seconds to
  // build and destroy; the budget for elements encoded in no bytes is now 4 MiB.
  EXPECT_THROW(mproc::loads<std::list<Nothing>>(u64_bytes(0x180003)), SerializationError);
  // Within the budget it works.
  EXPECT_EQ(round_trip(std::vector<std::monostate>(1'000'000)).size(), 1'000'000u);
}

TEST(CodecReject, DuplicateKeys) {
  const Bytes dup_set = concat({u64_bytes(2), mproc::dumps(5), mproc::dumps(5)});
  EXPECT_THROW(mproc::loads<std::set<int>>(dup_set), SerializationError);
  EXPECT_THROW(mproc::loads<std::unordered_set<int>>(dup_set), SerializationError);
  EXPECT_EQ(mproc::loads<std::multiset<int>>(dup_set).size(), 2u);
  const Bytes dup_map = concat({u64_bytes(2), mproc::dumps(1), mproc::dumps(2), mproc::dumps(1), mproc::dumps(3)});
  EXPECT_THROW((mproc::loads<std::map<int, int>>(dup_map)), SerializationError);
  EXPECT_THROW((mproc::loads<std::unordered_map<int, int>>(dup_map)), SerializationError);
  EXPECT_EQ((mproc::loads<std::multimap<int, int>>(dup_map).size()), 2u);
}

Node chain(int depth) {
  Node root{0, {}};
  Node* tip = &root;
  for (int i = 1; i < depth; ++i) {
    tip->children.push_back(Node{i, {}});
    tip = &tip->children.back();
  }
  return root;
}

TEST(CodecReject, NestingDepthIsBounded) {
  const Node ok = chain(mproc::Decoder::kMaxDepth);
  EXPECT_EQ(round_trip(ok), ok);
  // One level more, made by hand: the encoder refuses it (next test).
  const Bytes too_deep = concat({mproc::dumps(-1), u64_bytes(1), mproc::dumps(ok)});
  const std::string what = message_of([&] { (void)mproc::loads<Node>(too_deep); });
  EXPECT_NE(what.find("nesting deeper than"), std::string::npos) << what;
  // The same limit holds for a hostile prefix that just keeps opening one child each level:
  // each level is value (4 bytes) + child count 1 (8 bytes).
  Bytes hostile;
  for (int i = 0; i < 100'000; ++i) {
    const Bytes level = concat({mproc::dumps(i), u64_bytes(1)});
    hostile.insert(hostile.end(), level.begin(), level.end());
  }
  EXPECT_THROW(mproc::loads<Node>(hostile), SerializationError);
}

TEST(CodecReject, EncoderRefusesWhatTheDecoderWould) {
  // As Python's pickle raises RecursionError: the sender learns it, not the receiver.
  const Node too_deep = chain(mproc::Encoder::kMaxDepth + 1);
  const std::string what = message_of([&] { (void)mproc::dumps(too_deep); });
  EXPECT_NE(what.find("nesting deeper than"), std::string::npos) << what;
  // The encoder is reusable afterwards: its depth went back to 0.
  Bytes out;
  mproc::Encoder encoder(out);
  EXPECT_THROW(mproc::encode(encoder, too_deep), SerializationError);
  out.clear();
  mproc::encode(encoder, chain(3));
  EXPECT_EQ(mproc::loads<Node>(out), chain(3));
}

// Recursive types whose every level holds a 16 KiB member. Decoding 700 levels of either
// crashed: each level took a copy of the node (or of the optional) on the stack.
struct HeavyNode {
  std::array<char, 16384> payload{};
  std::vector<HeavyNode> children;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(payload, children);
  }
  bool operator==(const HeavyNode&) const = default;
};
// A level is 9 bytes of input when the member is absent (flag 0, child count 1).
struct HeavyOptionalNode {
  std::optional<std::array<char, 16384>> payload;
  std::vector<HeavyOptionalNode> children;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(payload, children);
  }
};

template <class N>
void deepen(N& root, int depth) {
  N* tip = &root;
  for (int i = 1; i < depth; ++i) tip = &tip->children.emplace_back();
}

// Destroying a deep chain recurses too: unlink it level by level first.
template <class N>
void flatten(N& root) {
  std::vector<N> pending;
  pending.swap(root.children);
  while (!pending.empty()) {
    std::vector<N> next;
    for (N& node : pending)
      next.insert(next.end(), std::make_move_iterator(node.children.begin()),
                  std::make_move_iterator(node.children.end()));
    pending.swap(next);
  }
}

bool stack_exhausted(const std::string& what) { return what.find("bytes of stack") != std::string::npos; }
// Each level of a HeavyOptionalNode also takes 16 KiB of the memory budget: which limit stops
// a deep one first depends on the build's stack frames (the stack, in an optimised build; the
// memory, in a Debug + ASan one). Either is a SerializationError instead of a crash.
bool refused_deep(const std::string& what) {
  return stack_exhausted(what) || what.find("bytes of memory per element") != std::string::npos;
}

TEST(CodecReject, StackUsedByNestingIsBounded) {
  // Elements of a vector are decoded in place, so a 16 KiB member costs no stack per level:
  // 700 levels decode.
  HeavyNode deep;
  deepen(deep, 700);
  HeavyNode decoded = round_trip(deep);
  EXPECT_TRUE(decoded == deep);
  flatten(decoded);
  flatten(deep);
  // An optional member is decoded through a temporary on the stack: 700 levels of it are
  // refused with SerializationError before the stack runs out, whether they come from a
  // legitimate sender...
  HeavyOptionalNode deep_optional;
  deepen(deep_optional, 700);
  const Bytes bytes = mproc::dumps(deep_optional);
  flatten(deep_optional);
  std::string what = message_of([&] { (void)mproc::loads<HeavyOptionalNode>(bytes); });
  EXPECT_TRUE(refused_deep(what)) << what;
  // ... or from a hostile 8 KiB frame.
  Bytes hostile;
  for (int i = 0; i < 900; ++i) {
    const Bytes level = concat({mproc::dumps(std::uint8_t{0}), u64_bytes(1)});
    hostile.insert(hostile.end(), level.begin(), level.end());
  }
  EXPECT_LT(hostile.size(), 8200u);
  what = message_of([&] { (void)mproc::loads<HeavyOptionalNode>(hostile); });
  EXPECT_TRUE(refused_deep(what)) << what;
  // Shallow values of the type still decode.
  HeavyOptionalNode shallow;
  deepen(shallow, 20);
  EXPECT_NO_THROW((void)mproc::loads<HeavyOptionalNode>(mproc::dumps(shallow)));
}

TEST(CodecReject, NestingOnASmallThreadStackIsBounded) {
  // kMaxDepth levels of a small type fit a default stack, not a 64 KiB one (where they
  // crashed): the bound comes from the stack of the thread that decodes.
  const Bytes bytes = mproc::dumps(chain(mproc::Decoder::kMaxDepth));
  struct Job {
    const Bytes* bytes;
    std::string outcome;
  } job{&bytes, {}};
  auto run = [](void* arg) -> void* {
    auto* j = static_cast<Job*>(arg);
    try {
      Node node = mproc::loads<Node>(*j->bytes);
      flatten(node);
      j->outcome = "decoded";
    } catch (const SerializationError& e) {
      j->outcome = e.what();
    }
    return nullptr;
  };
  pthread_attr_t attr;
  ASSERT_EQ(pthread_attr_init(&attr), 0);
  ASSERT_EQ(pthread_attr_setstacksize(&attr, 64 * 1024), 0);
  pthread_t thread;
  ASSERT_EQ(pthread_create(&thread, &attr, run, &job), 0);
  pthread_attr_destroy(&attr);
  ASSERT_EQ(pthread_join(thread, nullptr), 0);
  EXPECT_TRUE(stack_exhausted(job.outcome)) << job.outcome;
}

TEST(CodecReject, SmallEncodingsOfLargeElementsAreBounded) {
  // One byte (an absent optional) stands for a 64 KiB element: the length prefix is
  // plausible, the memory is not. 64 KiB of input must not become 4 GB, 1 MiB must not ask
  // for 64 GiB (std::bad_alloc): both are a SerializationError, before anything is allocated.
  using Big = std::optional<std::array<double, 8192>>;
  for (std::size_t input : {std::size_t{64} << 10, std::size_t{1} << 20}) {
    const Bytes bytes = concat({u64_bytes(input - 8), Bytes(input - 8)});
    rusage before{};
    getrusage(RUSAGE_SELF, &before);
    try {
      (void)mproc::loads<std::vector<Big>>(bytes);
      ADD_FAILURE() << "accepted " << input - 8 << " elements of " << sizeof(Big) << " bytes";
    } catch (const SerializationError& e) {
      EXPECT_NE(std::string(e.what()).find("bytes of memory per element"), std::string::npos) << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "threw " << e.what() << " instead of SerializationError";
    }
    rusage after{};
    getrusage(RUSAGE_SELF, &after);
    EXPECT_LT(after.ru_maxrss - before.ru_maxrss, 64 * 1024) << "KiB of peak memory grew";
  }
  // Node-based containers pay for their nodes, deques and lists too.
  const Bytes many = concat({u64_bytes(std::size_t{1} << 20), Bytes(std::size_t{1} << 20)});
  EXPECT_THROW(mproc::loads<std::list<Big>>(many), SerializationError);
  EXPECT_THROW(mproc::loads<std::deque<Big>>(many), SerializationError);
  EXPECT_THROW((mproc::loads<std::map<std::uint8_t, Big>>(many)), SerializationError);
  // Real values of the type still round-trip, also when they amplify within the budget.
  std::vector<Big> some(100);
  some[3].emplace().fill(2.5);
  EXPECT_EQ(round_trip(some), some);
}

TEST(CodecReject, DecoderBoundsChecks) {
  const Bytes bytes{std::byte{1}, std::byte{2}, std::byte{3}};
  mproc::Decoder d(bytes);
  EXPECT_EQ(d.take(2).size(), 2u);
  EXPECT_EQ(d.remaining(), 1u);
  std::byte out[4];
  EXPECT_THROW(d.read_bytes(out, 2), SerializationError);
  EXPECT_EQ(d.remaining(), 1u);  // a failed read consumes nothing
  EXPECT_THROW(d.take(SIZE_MAX), SerializationError);
  d.read_bytes(out, 1);
  EXPECT_EQ(out[0], std::byte{3});
  EXPECT_EQ(d.take(0).size(), 0u);
  mproc::Decoder empty{std::span<const std::byte>()};
  EXPECT_THROW(empty.take(1), SerializationError);
}

// ---- type names and tags ----------------------------------------------------------------------------

static_assert(mproc::type_tag<int>() != mproc::type_tag<long>());
static_assert(mproc::type_tag<std::vector<int>>() != mproc::type_tag<std::vector<unsigned>>());
static_assert(mproc::type_tag<Point>() != mproc::type_tag<std::pair<int, int>>());
constexpr std::uint64_t kIntTag = mproc::type_tag<int>();  // usable in constant expressions
static_assert(kIntTag == mproc::detail::fnv1a64("int"));
static_assert(mproc::type_name<int>() == "int");
static_assert(mproc::type_name<std::vector<int>>() == "std::vector<int>");

TEST(CodecTypes, NamesAreReadable) {
  EXPECT_EQ(mproc::type_name<double>(), "double");
  EXPECT_NE(mproc::type_name<Person>().find("Person"), std::string_view::npos);
  EXPECT_NE(mproc::type_name<geo::Vec3>().find("geo::Vec3"), std::string_view::npos);
  EXPECT_EQ(mproc::type_tag<std::string>(), mproc::type_tag<std::string>());
}

// ---- checksum -----------------------------------------------------------------------------------------

TEST(Checksum, IsCrc32c) {
  const std::string check = "123456789";
  const auto bytes = std::as_bytes(std::span(check.data(), check.size()));
  EXPECT_EQ(mproc::checksum(bytes), 0xE3069283u);  // the CRC-32C check value
  EXPECT_EQ(mproc::detail::checksum_portable(bytes), 0xE3069283u);
  EXPECT_EQ(mproc::checksum({}), 0u);
}

TEST(Checksum, HardwareAndPortablePathsAgree) {
  // Sizes around the block boundaries of the three-stream loop (768 B and 24 KiB).
  std::uint64_t state = 1;
  for (std::size_t n : {0, 1, 3, 4, 5, 7, 8, 9, 28, 31, 32, 33, 255, 767, 768, 769, 1000, 24575, 24576, 24577, 100'003,
                        (1 << 20) + 13}) {
    Bytes data(n);
    for (auto& b : data) b = std::byte(static_cast<std::uint8_t>((state = state * 6364136223846793005ULL + 1) >> 56));
    EXPECT_EQ(mproc::checksum(data), mproc::detail::checksum_portable(data)) << n;
    // Through a misaligned start as well.
    if (n > 1) {
      const auto shifted = std::span<const std::byte>(data).subspan(1);
      EXPECT_EQ(mproc::checksum(shifted), mproc::detail::checksum_portable(shifted)) << n;
    }
  }
}

TEST(Checksum, DetectsEverySingleByteCorruption) {
  // CRC-32C detects every burst of up to 32 bits, so this is a guarantee, not luck.
  Bytes data(30'000);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = std::byte(static_cast<std::uint8_t>(i * 37 + i / 251));
  const std::uint32_t clean = mproc::checksum(data);
  for (std::size_t pos = 0; pos < data.size(); pos += 7) {
    for (unsigned mask : {0x01u, 0x80u, 0xFFu, 0x5Au}) {
      data[pos] ^= std::byte(mask);
      ASSERT_NE(mproc::checksum(data), clean) << pos;
      data[pos] ^= std::byte(mask);
    }
  }
  Bytes small(64, std::byte{0x11});
  const std::uint32_t small_clean = mproc::checksum(small);
  for (std::size_t pos = 0; pos < small.size(); ++pos)
    for (unsigned mask = 1; mask < 256; ++mask) {
      small[pos] ^= std::byte(mask);
      ASSERT_NE(mproc::checksum(small), small_clean);
      small[pos] ^= std::byte(mask);
    }
}

TEST(Checksum, DetectsReorderedWords) {
  Bytes data(4096);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = std::byte(static_cast<std::uint8_t>(i / 8));
  const std::uint32_t clean = mproc::checksum(data);
  std::swap_ranges(data.begin(), data.begin() + 8, data.begin() + 1024);
  EXPECT_NE(mproc::checksum(data), clean);
}

// ---- frames (the fuzzing is in test_frame_fuzz.cpp) ---------------------------------------------------

TEST(Frame, ValueRoundTripAndLayout) {
  Bytes frame;
  const Person ada{"Ada", {1}, std::nullopt, {}};
  mproc::wire::encode_frame(ada, frame);
  ASSERT_GE(frame.size(), mproc::wire::kHeaderSize);
  const auto header = mproc::wire::read_header(std::span(frame).first<mproc::wire::kHeaderSize>());
  EXPECT_EQ(header.magic, mproc::wire::kMagic);
  EXPECT_EQ(header.kind, mproc::wire::FrameKind::value);
  EXPECT_EQ(header.tag, mproc::type_tag<Person>());
  EXPECT_EQ(header.length, frame.size() - mproc::wire::kHeaderSize);
  EXPECT_EQ(std::memcmp(frame.data(), "MPF1", 4), 0);
  EXPECT_EQ(mproc::wire::decode_frame<Person>(frame), ada);
  // encode_frame replaces the buffer's content and reuses its capacity.
  mproc::wire::encode_frame(7, frame);
  EXPECT_EQ(frame.size(), mproc::wire::kHeaderSize + sizeof(int));
  EXPECT_EQ(mproc::wire::decode_frame<int>(frame), 7);
}

TEST(Frame, BytesFrame) {
  const Bytes payload{std::byte{1}, std::byte{2}, std::byte{3}};
  Bytes frame{std::byte{9}};
  mproc::wire::encode_bytes_frame(payload, frame);
  ASSERT_EQ(frame.size(), mproc::wire::kHeaderSize + 3);
  const auto header = mproc::wire::read_header(std::span(frame).first<mproc::wire::kHeaderSize>());
  EXPECT_EQ(header.kind, mproc::wire::FrameKind::bytes);
  EXPECT_EQ(header.tag, 0u);
  mproc::wire::verify_payload(header, std::span(frame).subspan(mproc::wire::kHeaderSize));
  EXPECT_TRUE(std::equal(payload.begin(), payload.end(), frame.begin() + mproc::wire::kHeaderSize));
  const std::string what = message_of([&] { (void)mproc::wire::decode_frame<Bytes>(frame); });
  EXPECT_NE(what.find("got raw bytes"), std::string::npos) << what;
}

TEST(Frame, WriteHeaderMatchesEncodeBytesFrame) {
  const Bytes payload(100, std::byte{7});
  std::byte header[mproc::wire::kHeaderSize];
  mproc::wire::write_header(header, mproc::wire::FrameKind::bytes, 0, payload);
  Bytes frame;
  mproc::wire::encode_bytes_frame(payload, frame);
  EXPECT_EQ(std::memcmp(header, frame.data(), sizeof header), 0);
}

TEST(Frame, TypeMismatch) {
  Bytes frame;
  mproc::wire::encode_frame(std::vector<int>{1, 2}, frame);
  EXPECT_THROW(mproc::wire::decode_frame<std::vector<unsigned>>(frame), SerializationError);
  const std::string what = message_of([&] { (void)mproc::wire::decode_frame<std::string>(frame); });
  EXPECT_NE(what.find("expected a value of type"), std::string::npos) << what;
  EXPECT_NE(what.find("basic_string"), std::string::npos) << what;
  const auto header = mproc::wire::read_header(std::span(frame).first<mproc::wire::kHeaderSize>());
  EXPECT_NO_THROW(mproc::wire::expect_value_of<std::vector<int>>(header));
  EXPECT_NO_THROW(mproc::wire::expect_value_of<const std::vector<int>>(header));
  EXPECT_THROW(mproc::wire::expect_value_of<std::vector<long>>(header), SerializationError);
}

TEST(Frame, HeaderChecks) {
  Bytes frame;
  mproc::wire::encode_frame(std::string(1000, 'x'), frame);
  auto header_of = [](const Bytes& f) {
    return mproc::wire::read_header(std::span(f).first<mproc::wire::kHeaderSize>());
  };
  EXPECT_THROW(mproc::wire::read_header(std::span(frame).first<mproc::wire::kHeaderSize>(), 999), SerializationError);
  EXPECT_NO_THROW(mproc::wire::read_header(std::span(frame).first<mproc::wire::kHeaderSize>(), 1008));

  Bytes bad_magic = frame;
  bad_magic[0] = std::byte{'X'};
  EXPECT_NE(message_of([&] { (void)header_of(bad_magic); }).find("magic"), std::string::npos);

  Bytes bad_length = frame;
  bad_length[16] ^= std::byte{1};
  EXPECT_NE(message_of([&] { (void)header_of(bad_length); }).find("header checksum"), std::string::npos);

  Bytes bad_payload = frame;
  bad_payload[100] ^= std::byte{1};
  EXPECT_NE(message_of([&] { (void)mproc::wire::decode_frame<std::string>(bad_payload); }).find("payload checksum"),
            std::string::npos);

  const auto header = header_of(frame);
  EXPECT_THROW(mproc::wire::verify_payload(header, std::span(frame).subspan(mproc::wire::kHeaderSize + 1)),
               SerializationError);
  EXPECT_THROW(mproc::wire::decode_frame<std::string>(std::span(frame).first(10)), SerializationError);
}

}  // namespace
