// Writes the seed corpora of the fuzz targets: fuzz/corpus/fuzz_codec/ (a selector byte, then
// an encoding of a sample value of that type) and fuzz/corpus/fuzz_frame/ (a selector byte,
// then a stream of frames). Run by hand when fuzz_types.hpp changes:
//   build-fuzz/fuzz/fuzz_make_corpus fuzz/corpus
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fuzz_types.hpp"
#include "mproc/codec.hpp"
#include "mproc/frame.hpp"

namespace {

using Bytes = std::vector<std::byte>;
namespace fs = std::filesystem;

void write_seed(const fs::path& dir, const std::string& name, std::uint8_t selector, const Bytes& body) {
  fs::create_directories(dir);
  std::ofstream out(dir / name, std::ios::binary);
  out.put(static_cast<char>(selector));
  out.write(reinterpret_cast<const char*>(body.data()), static_cast<std::streamsize>(body.size()));
}

template <std::size_t I, class T>
void codec_seed(const fs::path& dir, const T& value, int variant) {
  static_assert(std::is_same_v<T, std::tuple_element_t<I, mproc_fuzz::Types>>);
  write_seed(dir, "type" + std::to_string(I) + "_" + std::to_string(variant), I, mproc::dumps(value));
}

mproc_fuzz::Node chain(int depth) {
  mproc_fuzz::Node root;
  mproc_fuzz::Node* tip = &root;
  for (int i = 1; i < depth; ++i) {
    tip->children.push_back(mproc_fuzz::Node{i, {}});
    tip = &tip->children.back();
  }
  return root;
}

void codec_corpus(const fs::path& dir) {
  using namespace mproc_fuzz;
  codec_seed<0>(dir, Node{}, 0);
  codec_seed<0>(dir, Node{1, {Node{2, {}}, Node{3, {Node{4, {}}}}}}, 1);
  codec_seed<0>(dir, chain(50), 2);
  HeavyNode heavy;
  heavy.children.emplace_back().children.emplace_back();
  codec_seed<1>(dir, heavy, 0);
  codec_seed<2>(dir, std::tuple_element_t<2, Types>(4), 0);
  codec_seed<3>(dir, std::tuple_element_t<3, Types>{{{1, 2}, {}}, {}, {{3}}}, 0);
  codec_seed<4>(dir, std::tuple_element_t<4, Types>{{"a", {1, std::nullopt}}, {"bc", {}}}, 0);
  codec_seed<5>(dir, std::tuple_element_t<5, Types>(std::string("text")), 0);
  codec_seed<5>(dir, std::tuple_element_t<5, Types>(std::map<int, std::string>{{1, "x"}, {2, "y"}}), 1);
  codec_seed<6>(dir, std::tuple_element_t<6, Types>{{"k", {1, 2, 3}}, {"", {}}}, 0);
  codec_seed<7>(dir, std::tuple_element_t<7, Types>{true, "note", {{1, "one"}}, {'a', 'b'}, {5, 6}}, 0);
  Message message{std::vector<double>{1.0, 2.0}, "n", 7, true, {Point{1, 2}}};
  codec_seed<8>(dir, message, 0);
  Derived derived;
  derived.tag = "t";
  derived.id = -3;
  derived.inbox["m"] = message;
  codec_seed<9>(dir, derived, 0);
  codec_seed<10>(dir, std::tuple_element_t<10, Types>{{true, false, true}, U"wide", {{1, std::nullopt, 3, 4, 5}}}, 0);
  codec_seed<11>(dir, std::tuple_element_t<11, Types>(10), 0);
  codec_seed<12>(dir, std::tuple_element_t<12, Types>(3), 0);
  codec_seed<13>(dir, std::tuple_element_t<13, Types>{{"a", "a"}, {{1, {}}, {1, {}}}, {7, 7}, {"x"}}, 0);
  codec_seed<14>(dir, std::tuple_element_t<14, Types>{{std::nullopt, std::vector<char>{'q'}}, {}}, 0);
  codec_seed<15>(dir, std::tuple_element_t<15, Types>(std::deque<Message>{message}), 0);
}

void frame_corpus(const fs::path& dir) {
  using Table = std::map<std::string, std::vector<std::int32_t>>;
  Bytes frame;
  auto append_value = [&frame](Bytes& stream, const auto& value) {
    mproc::wire::encode_frame(value, frame);
    stream.insert(stream.end(), frame.begin(), frame.end());
  };
  auto append_bytes = [&frame](Bytes& stream, const std::string& text) {
    mproc::wire::encode_bytes_frame(std::as_bytes(std::span(text.data(), text.size())), frame);
    stream.insert(stream.end(), frame.begin(), frame.end());
  };
  Bytes ints, mixed, table, big_header;
  append_value(ints, std::int32_t{1});
  append_value(ints, std::int32_t{-2});
  append_value(mixed, std::string("hello"));
  append_bytes(mixed, "raw bytes");
  append_value(mixed, std::int32_t{3});
  append_value(table, Table{{"a", {1, 2}}, {"b", {}}});
  append_bytes(table, std::string(200, 'z'));
  // A header announcing more than the pipe carries: the payload is due on the bulk channel.
  append_bytes(big_header, std::string(70000, 'x'));
  big_header.resize(mproc::wire::kHeaderSize);
  write_seed(dir, "ints", 0x00, ints);
  write_seed(dir, "mixed", 0x01, mixed);
  write_seed(dir, "mixed_small_limit", 0x83, mixed);
  write_seed(dir, "table", 0x02, table);
  write_seed(dir, "big_header", 0x03, big_header);
}

}  // namespace

int main(int argc, char** argv) {
  const fs::path root = argc > 1 ? argv[1] : "fuzz/corpus";
  codec_corpus(root / "fuzz_codec");
  frame_corpus(root / "fuzz_frame");
  std::printf("seed corpora written under %s\n", root.c_str());
  return 0;
}
