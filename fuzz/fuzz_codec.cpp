// libFuzzer target: the codec on hostile bytes. The first byte picks one of the types in
// fuzz_types.hpp, the rest is decoded as that type with mproc::loads. Decoding must return
// a value or throw SerializationError — a crash, a hang, another exception (std::bad_alloc
// included: memory must stay bounded by the input), a sanitizer report or a malloc beyond
// libFuzzer's -malloc_limit_mb is a finding. A value that decodes must encode again, to the
// same bytes when the type has one encoding per value, and decode again.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

#include "fuzz_types.hpp"
#include "mproc/codec.hpp"

namespace {

// A value built from hostile bytes may nest deeply: unlink it level by level, so that its
// destructor does not recurse once per level (the decoder bounds the stack it uses itself,
// destructors are the type's own business).
template <class T>
void dispose(T& value) {
  if constexpr (std::is_same_v<T, mproc_fuzz::Node> || std::is_same_v<T, mproc_fuzz::HeavyNode>) {
    std::vector<T> pending;
    for (auto& child : value.children) pending.push_back(std::move(child));
    value.children.clear();
    while (!pending.empty()) {
      T node = std::move(pending.back());
      pending.pop_back();
      for (auto& child : node.children) pending.push_back(std::move(child));
      node.children.clear();
    }
  }
}

[[noreturn]] void finding(const char* what) {
  __builtin_printf("fuzz_codec: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::span<const std::byte> input(reinterpret_cast<const std::byte*>(data + 1), size - 1);
  mproc_fuzz::with_type(data[0], [&]<class T>(std::type_identity<T>) {
    T value;
    try {
      value = mproc::loads<T>(input);
    } catch (const mproc::SerializationError&) {
      return;
    }
    const std::vector<std::byte> again = mproc::dumps(value);
    if constexpr (mproc_fuzz::kCanonical<T>) {
      if (again.size() != input.size() || std::memcmp(again.data(), input.data(), again.size()) != 0)
        finding("a decoded value encodes to other bytes");
    }
    try {
      T copy = mproc::loads<T>(again);
      dispose(copy);
    } catch (const mproc::SerializationError&) {
      finding("the encoding of a decoded value does not decode");
    }
    dispose(value);
  });
  return 0;
}
