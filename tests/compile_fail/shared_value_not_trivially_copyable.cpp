// Must NOT compile: a std::string owns heap memory; its bytes mean nothing in another process.
#include <mproc/mproc.hpp>

#include <string>

int main() {
  mproc::Value<std::string> name(std::string("mproc"));
  return static_cast<int>(name.value().size());
}
