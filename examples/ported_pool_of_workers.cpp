// ported_pool_of_workers — "Using a pool of workers" from the multiprocessing documentation
// (Python original: ported_pool_of_workers.py).
//
//   Python                                      mproc
//   with Pool(processes=4) as pool:             { mproc::Pool pool({.processes = 4,
//                                                                   .terminate_on_exit = true});
//                                               Python's `with` terminates the pool on exit;
//                                               mproc's destructor waits for accepted tasks
//                                               unless told to terminate (here: the 10 s
//                                               sleep would otherwise be waited for)
//   pool.map(f, range(10))                      pool.map(f, std::views::iota(0, 10))
//   for i in pool.imap_unordered(f, ...):       for (int i : pool.imap_unordered(f, ...))
//   pool.apply_async(f, (20,))                  pool.apply_async(f, 20)
//   res.get(timeout=1)                          res.get(1s)
//   pool.apply_async(os.getpid, ())             pool.apply_async(::getpid)  (a plain function)
//   except TimeoutError:                        catch (const mproc::TimeoutError&)
#include <mproc/mproc.hpp>

#include <chrono>
#include <cstdio>
#include <ranges>
#include <thread>
#include <vector>
#include <unistd.h>

using namespace std::chrono_literals;

namespace {

int f(int x) { return x * x; }

void sleep_seconds(int seconds) { std::this_thread::sleep_for(std::chrono::seconds(seconds)); }

void print(const std::vector<int>& values) {
  std::printf("[");
  for (std::size_t i = 0; i < values.size(); ++i) std::printf("%s%d", i ? ", " : "", values[i]);
  std::printf("]\n");
}

}  // namespace

int main() {
  {
    // start 4 worker processes
    mproc::Pool pool({.processes = 4, .terminate_on_exit = true});

    // print "[0, 1, 4,..., 81]"
    print(pool.map(f, std::views::iota(0, 10)));

    // print same numbers in arbitrary order
    for (int i : pool.imap_unordered(f, std::views::iota(0, 10))) std::printf("%d\n", i);

    // evaluate "f(20)" asynchronously
    auto res = pool.apply_async(f, 20);   // runs in *only* one process
    std::printf("%d\n", res.get(1s));     // prints "400"

    // evaluate "getpid()" asynchronously
    auto pid = pool.apply_async(::getpid);   // runs in *only* one process
    std::printf("%d\n", pid.get(1s));         // prints the PID of that process

    // launching multiple evaluations asynchronously *may* use more processes
    std::vector<mproc::AsyncResult<pid_t>> multiple_results;
    for (int i = 0; i < 4; ++i) multiple_results.push_back(pool.apply_async(::getpid));
    std::vector<int> pids;
    for (auto& r : multiple_results) pids.push_back(r.get(1s));
    print(pids);

    // make a single worker sleep for 10 seconds
    auto sleeping = pool.apply_async(sleep_seconds, 10);
    try {
      sleeping.get(1s);
    } catch (const mproc::TimeoutError&) {
      std::printf("We lacked patience and got a multiprocessing.TimeoutError\n");
    }

    std::printf("For the moment, the pool remains available for more work\n");
  }  // terminate_on_exit: the sleeping worker is killed, not waited for

  // leaving the block has stopped the pool
  std::printf("Now the pool is closed and no longer available\n");
  return 0;
}
