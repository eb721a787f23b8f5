// Must NOT compile: a done callback receives the future, not its value. The message must say
// what to write.
#include <mproc/mproc.hpp>

int square_int(int x) { return x * x; }

int main() {
  mproc::ProcessPoolExecutor executor({.max_workers = 1});
  auto future = executor.submit(square_int, 2);
  future.add_done_callback([](int value) { (void)value; });
}
