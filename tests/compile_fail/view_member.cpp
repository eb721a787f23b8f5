// Must NOT compile: a std::string_view member points into this process's memory, like a pointer.
#include <mproc/mproc.hpp>

#include <string_view>

struct Labelled {
  std::string_view label;
  int value = 0;
};

int main() {
  auto [a, b] = mproc::Pipe();
  a.send(Labelled{});
}
