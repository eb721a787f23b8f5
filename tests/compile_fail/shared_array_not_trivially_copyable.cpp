// Must NOT compile: an Array of std::string — each element owns heap memory whose address
// means nothing in another process.
#include <mproc/mproc.hpp>

#include <string>

int main() {
  mproc::Array<std::string> names(3);
  return static_cast<int>(names.size());
}
