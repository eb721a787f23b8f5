// ported_lock — ten processes print under one Lock (Python original: ported_lock.py).
//
//   Python                                      mproc
//   lock = Lock()                               mproc::Lock lock;
//   Process(target=f, args=(lock, num))         mproc::Process(f, lock, num)
//                                               f receives a *copy* of the Lock handle, and
//                                               a copy is the same lock (as a Python
//                                               reference is): copying never makes a new
//                                               lock. The same holds for Value, Array,
//                                               Event, Queue... Make a new object for a new one.
//   l.acquire(); try: ... finally: l.release()  std::lock_guard guard(l);  (or acquire/release)
//   ...start() without join()                   the same: at the end of main every child is
//                                               joined, as Python joins non-daemonic children
#include <mproc/mproc.hpp>

#include <cstdio>
#include <mutex>

namespace {

void f(mproc::Lock l, int i) {
  std::lock_guard guard(l);   // Python's acquire / try / finally: release
  std::printf("hello world %d\n", i);
  std::fflush(stdout);        // print inside the lock: flushed before release
}

}  // namespace

int main() {
  mproc::Lock lock;
  for (int num = 0; num < 10; ++num) mproc::Process(f, lock, num).start();
  // The handles are gone, the children run on; returning from main joins them all.
  return 0;
}
