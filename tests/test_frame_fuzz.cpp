// Fuzzing of frames and of the decoder.
//
// 1. Frames: valid frames of several types are corrupted (1..8 random bytes anywhere, header
//    included), truncated, or extended with junk. decode_frame must return the original value
//    for an unmodified frame and throw SerializationError for every other one. That "every" is
//    a sound expectation: a truncated or extended frame no longer matches its length field; a
//    corruption confined to 4 consecutive bytes of the header or of the payload is a burst of
//    at most 32 bits, which CRC-32C always detects; any other corruption escapes both CRCs with
//    probability about 2^-32 per frame (2^-64 when it touches both header and payload), i.e.
//    never in 20,000 frames with a fixed seed. A corruption that flips a byte twice back to its
//    value leaves the frame intact, and is checked as such.
// 2. The decoder alone (no checksum to hide behind): corrupted payloads and random bytes are
//    decoded as each type. Any outcome but a value or a SerializationError (a crash, a hang,
//    another exception, a sanitizer report in the ASan+UBSan build) is a failure.
//
// Seed: fixed, printed, and overridable with MPROC_FUZZ_SEED=<n> to reproduce or explore.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/frame.hpp"

namespace {

using mproc::SerializationError;
using Bytes = std::vector<std::byte>;

struct Message {
  std::variant<int, std::string, std::vector<double>> body;
  std::optional<std::string> note;
  std::uint32_t sequence = 0;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(body, note, sequence);
  }
  bool operator==(const Message&) const = default;
};

// bools validated on decode (a serialize hook, so not the raw path).
struct Flags {
  bool urgent = false;
  std::int16_t level = 0;
  bool done = false;
  std::vector<bool> bits;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(urgent, level, done, bits);
  }
  bool operator==(const Flags&) const = default;
};

using Table = std::map<std::string, std::vector<int>>;

std::uint64_t fuzz_seed() {
  static const std::uint64_t seed = [] {
    const char* env = std::getenv("MPROC_FUZZ_SEED");
    const std::uint64_t s = env != nullptr ? std::strtoull(env, nullptr, 10) : 20240611ULL;
    std::printf("fuzz seed: %llu (set MPROC_FUZZ_SEED to change)\n", static_cast<unsigned long long>(s));
    return s;
  }();
  return seed;
}

class Gen {
 public:
  explicit Gen(std::uint64_t seed) : rng_(seed) {}
  std::mt19937_64& rng() { return rng_; }
  std::size_t below(std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng_); }
  bool coin() { return below(2) == 0; }

  std::string text() {
    std::string s(below(40), '\0');
    for (char& c : s) c = static_cast<char>(below(256));
    return s;
  }
  std::vector<double> doubles() {
    std::vector<double> v(below(30));
    for (double& x : v) x = std::uniform_real_distribution<double>(-1e6, 1e6)(rng_);
    return v;
  }
  std::vector<int> ints() {
    std::vector<int> v(below(10));
    for (int& x : v) x = static_cast<int>(rng_());
    return v;
  }

  template <class T>
  T make();

 private:
  std::mt19937_64 rng_;
};

template <>
int Gen::make<int>() {
  return static_cast<int>(rng_());
}
template <>
std::string Gen::make<std::string>() {
  return text();
}
template <>
std::vector<double> Gen::make<std::vector<double>>() {
  return doubles();
}
template <>
Table Gen::make<Table>() {
  Table t;
  for (std::size_t i = below(6); i > 0; --i) t[text()] = ints();
  return t;
}
template <>
Message Gen::make<Message>() {
  Message m;
  switch (below(3)) {
    case 0: m.body = make<int>(); break;
    case 1: m.body = text(); break;
    default: m.body = doubles(); break;
  }
  if (coin()) m.note = text();
  m.sequence = static_cast<std::uint32_t>(rng_());
  return m;
}
template <>
Flags Gen::make<Flags>() {
  Flags f{coin(), static_cast<std::int16_t>(rng_()), coin(), {}};
  f.bits.resize(below(20));
  for (std::size_t i = 0; i < f.bits.size(); ++i) f.bits[i] = coin();
  return f;
}

// One random mutation of a valid frame: corrupt, truncate or extend.
Bytes mutate(Gen& g, const Bytes& frame) {
  Bytes out = frame;
  switch (g.below(4)) {
    case 0:  // truncate
      out.resize(g.below(frame.size()));
      break;
    case 1:  // extend with junk
      for (std::size_t n = 1 + g.below(16); n > 0; --n) out.push_back(static_cast<std::byte>(g.below(256)));
      break;
    case 2:  // corrupt within the header, where a bad length would be most dangerous
      for (std::size_t n = 1 + g.below(4); n > 0; --n)
        out[g.below(mproc::wire::kHeaderSize)] ^= static_cast<std::byte>(1 + g.below(255));
      break;
    default:  // corrupt 1..8 bytes anywhere
      for (std::size_t n = 1 + g.below(8); n > 0; --n) out[g.below(out.size())] ^= static_cast<std::byte>(1 + g.below(255));
      break;
  }
  return out;
}

struct Tally {
  int frames = 0;
  int rejected = 0;
  int unchanged = 0;
};

template <class T>
void fuzz_frames(Gen& g, int count, Tally& tally) {
  Bytes frame;
  for (int i = 0; i < count; ++i) {
    const T value = g.make<T>();
    mproc::wire::encode_frame(value, frame);
    ASSERT_EQ(mproc::wire::decode_frame<T>(frame), value);
    const Bytes bad = mutate(g, frame);
    ++tally.frames;
    if (bad == frame) {
      // Two flips of one byte cancelled out: an intact frame must decode.
      ++tally.unchanged;
      EXPECT_EQ(mproc::wire::decode_frame<T>(bad), value);
      continue;
    }
    try {
      (void)mproc::wire::decode_frame<T>(bad);
      ADD_FAILURE() << "a damaged frame of " << mproc::type_name<T>() << " was accepted (iteration " << i
                    << ", seed " << fuzz_seed() << ")";
      return;
    } catch (const SerializationError&) {
      ++tally.rejected;
    }
  }
}

// Decoding arbitrary bytes: a value or SerializationError, nothing else.
template <class T>
void decode_untrusted(std::span<const std::byte> bytes, int& accepted) {
  try {
    (void)mproc::loads<T>(bytes);
    ++accepted;
  } catch (const SerializationError&) {
  }
}

template <class T>
void fuzz_decoder(Gen& g, int count) {
  int accepted = 0;
  for (int i = 0; i < count; ++i) {
    Bytes bytes = mproc::dumps(g.make<T>());
    switch (g.below(3)) {
      case 0:  // corrupt a few bytes
        if (!bytes.empty())
          for (std::size_t n = 1 + g.below(4); n > 0; --n)
            bytes[g.below(bytes.size())] ^= static_cast<std::byte>(1 + g.below(255));
        break;
      case 1:  // plant a large length-like value somewhere
        if (bytes.size() >= 8) {
          const std::uint64_t big = std::uint64_t{1} << g.below(64);
          std::memcpy(bytes.data() + g.below(bytes.size() - 7), &big, sizeof big);
        }
        break;
      default:  // pure noise
        bytes.resize(g.below(64));
        for (std::byte& b : bytes) b = static_cast<std::byte>(g.below(256));
        break;
    }
    decode_untrusted<T>(bytes, accepted);
  }
  // Not a check, a sign that the mutations also reach the decoders' success paths.
  std::printf("decoder: %5d of %d garbage inputs decoded as %.*s, the rest rejected\n", accepted, count,
              static_cast<int>(mproc::type_name<T>().size()), mproc::type_name<T>().data());
}

TEST(FrameFuzz, DamagedFramesAreAlwaysRejected) {
  Gen g(fuzz_seed());
  Tally tally;
  constexpr int kPerType = 4000;  // 6 types: 24,000 damaged frames
  fuzz_frames<int>(g, kPerType, tally);
  fuzz_frames<std::string>(g, kPerType, tally);
  fuzz_frames<std::vector<double>>(g, kPerType, tally);
  fuzz_frames<Table>(g, kPerType, tally);
  fuzz_frames<Message>(g, kPerType, tally);
  fuzz_frames<Flags>(g, kPerType, tally);
  std::printf("frames: %d damaged, %d rejected, %d unchanged by their mutation\n", tally.frames, tally.rejected,
              tally.unchanged);
  EXPECT_EQ(tally.rejected + tally.unchanged, tally.frames);
}

TEST(FrameFuzz, DecoderSurvivesGarbage) {
  Gen g(fuzz_seed() + 1);
  constexpr int kPerType = 10000;
  fuzz_decoder<int>(g, kPerType);
  fuzz_decoder<std::string>(g, kPerType);
  fuzz_decoder<std::vector<double>>(g, kPerType);
  fuzz_decoder<Table>(g, kPerType);
  fuzz_decoder<Message>(g, kPerType);
  fuzz_decoder<Flags>(g, kPerType);
}

TEST(FrameFuzz, WrongTypeIsRejected) {
  Gen g(fuzz_seed() + 2);
  Bytes frame;
  for (int i = 0; i < 200; ++i) {
    mproc::wire::encode_frame(g.make<Message>(), frame);
    EXPECT_THROW(mproc::wire::decode_frame<Flags>(frame), SerializationError);
    EXPECT_THROW(mproc::wire::decode_frame<std::string>(frame), SerializationError);
    mproc::wire::encode_frame(g.make<int>(), frame);
    EXPECT_THROW(mproc::wire::decode_frame<unsigned>(frame), SerializationError);
    EXPECT_THROW(mproc::wire::decode_frame<long>(frame), SerializationError);
    mproc::wire::encode_frame(g.make<std::vector<double>>(), frame);
    EXPECT_THROW(mproc::wire::decode_frame<std::vector<float>>(frame), SerializationError);
  }
}

TEST(FrameFuzz, BytesFrameIsNotAValue) {
  Gen g(fuzz_seed() + 3);
  Bytes frame;
  for (int i = 0; i < 200; ++i) {
    // Even bytes that happen to be a valid encoding of the requested type.
    const Bytes payload = mproc::dumps(g.make<std::string>());
    mproc::wire::encode_bytes_frame(payload, frame);
    EXPECT_THROW(mproc::wire::decode_frame<std::string>(frame), SerializationError);
    EXPECT_THROW(mproc::wire::decode_frame<Bytes>(frame), SerializationError);
  }
}

}  // namespace
