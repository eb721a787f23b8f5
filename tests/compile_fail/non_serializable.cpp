// Must NOT compile: a type with neither a serialize member nor trivially copyable layout.
#include <mproc/mproc.hpp>

#include <string>

struct Opaque {
  std::string text;
};

int main() {
  auto [a, b] = mproc::Pipe();
  a.send(Opaque{});
}
