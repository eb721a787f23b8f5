// The smallest program a user of mproc writes: one child sends a value through a Pipe.
// Built by tests/consumers/run_consumer.cmake against an installed mproc (find_package), as
// a subdirectory (add_subdirectory) and through FetchContent.
#include <mproc/mproc.hpp>

int main() {
  auto [a, b] = mproc::Pipe();
  mproc::Process p([&] { b.send(42); });
  p.start();
  int v = a.recv<int>();
  p.join();
  return v == 42 && p.exitcode() == 0 ? 0 : 1;
}
