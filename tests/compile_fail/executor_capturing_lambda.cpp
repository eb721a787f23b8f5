// Must NOT compile: ProcessPoolExecutor::submit refuses a capturing lambda with a readable
// message.
#include <mproc/mproc.hpp>

int main() {
  int offset = 1;
  mproc::ProcessPoolExecutor executor({.max_workers = 1});
  auto future = executor.submit([offset](int x) { return x + offset; }, 1);
}
