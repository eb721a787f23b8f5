// Must NOT compile: a capturing lambda cannot be named in a worker process. The message must
// say so (not just "no matching function").
#include <mproc/mproc.hpp>

#include <vector>

int main() {
  int offset = 1;
  auto add = [offset](int x) { return x + offset; };
  mproc::Pool pool(1);
  pool.apply(add, 1);
}
