// Must NOT compile: a std::string for an int parameter. The message must name the argument's
// position and both types, not a failure deep inside std::tuple.
#include <mproc/mproc.hpp>

#include <string>

int square_int(int x) { return x * x; }

int main() {
  mproc::Pool pool(1);
  return pool.apply(square_int, std::string("3"));
}
