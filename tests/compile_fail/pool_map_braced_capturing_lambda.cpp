// Must NOT compile: a braced list does not let a capturing lambda through map: the same
// readable message as for a named range.
#include <mproc/mproc.hpp>

int main() {
  int offset = 1;
  auto add = [offset](int x) { return x + offset; };
  mproc::Pool pool(1);
  auto all = pool.map(add, {1, 2});
}
