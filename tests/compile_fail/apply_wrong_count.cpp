// Must NOT compile: two arguments for a function of one.
#include <mproc/mproc.hpp>

int square_int(int x) { return x * x; }

int main() {
  mproc::ProcessPoolExecutor executor({.max_workers = 1});
  return executor.submit(square_int, 1, 2).result();
}
