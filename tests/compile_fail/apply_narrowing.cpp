// Must NOT compile: 3.7 for an int parameter would arrive as 3, silently.
#include <mproc/mproc.hpp>

int square_int(int x) { return x * x; }

int main() {
  mproc::Pool pool(1);
  return pool.apply(square_int, 3.7);
}
