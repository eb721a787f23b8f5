// Must NOT compile: std::optional<int*> is trivially copyable, but its value is a pointer: it
// must not fall back to its raw bytes.
#include <mproc/mproc.hpp>

#include <optional>

int main() {
  int value = 0;
  auto [a, b] = mproc::Pipe();
  a.send(std::optional<int*>(&value));
}
