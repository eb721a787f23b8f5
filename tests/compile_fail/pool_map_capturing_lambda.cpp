// Must NOT compile: map refuses a capturing lambda with a readable message too.
#include <mproc/mproc.hpp>

#include <vector>

int main() {
  int offset = 1;
  auto add = [offset](int x) { return x + offset; };
  mproc::Pool pool(1);
  auto all = pool.map(add, std::vector<int>{1, 2});
}
