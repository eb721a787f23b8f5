// Must NOT compile: a trivially copyable struct is sent as its bytes, and a pointer member
// would arrive as an address that means nothing in the receiver (a segfault or a wrong result
// there). The message must be the one a pointer gets.
#include <mproc/mproc.hpp>

struct Job {
  int id = 0;
  const double* weights = nullptr;
};

int main() {
  auto [a, b] = mproc::Pipe();
  a.send(Job{});
}
