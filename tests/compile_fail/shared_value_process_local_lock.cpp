// Must NOT compile: a Value guarded by a std::mutex — a process-local lock that would
// protect nothing between processes (Python's lock= takes a multiprocessing Lock or RLock).
#include <mproc/mproc.hpp>

#include <mutex>

int main() {
  mproc::Value<int, std::mutex> counter(0);
  return counter.value();
}
