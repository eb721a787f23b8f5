// Must NOT compile: a raw pointer means nothing in another process.
#include <mproc/mproc.hpp>

int main() {
  int value = 0;
  auto [a, b] = mproc::Pipe();
  a.send(&value);
}
