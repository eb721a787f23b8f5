// Must NOT compile: imap refuses a capturing lambda with a readable message too.
#include <mproc/mproc.hpp>

#include <vector>

int main() {
  int offset = 1;
  auto add = [offset](int x) { return x + offset; };
  mproc::Pool pool(1);
  for (int x : pool.imap(add, std::vector<int>{1, 2})) (void)x;
}
