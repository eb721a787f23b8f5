// executor_deadline — concurrent.futures with what Python's executors lack: a runaway task is
// stopped at its deadline, a crashing one fails alone, and the executor keeps serving.
//
// A ProcessPoolExecutor with a 300 ms task_timeout runs ten "requests": one never returns,
// one crashes its worker. as_completed() hands back each result as it is ready.
#include <mproc/mproc.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

int handle_request(int id) {
  if (id == 3) std::this_thread::sleep_for(1h);  // a request stuck in an endless loop
  if (id == 7) std::raise(SIGSEGV);              // a request hitting a bug in native code
  std::this_thread::sleep_for(20ms);
  return id * 10;
}

}  // namespace

int main() {
  mproc::ProcessPoolExecutor executor({.max_workers = 2, .task_timeout = 300ms});
  std::vector<mproc::Future<int>> futures;
  for (int id = 0; id < 10; ++id) futures.push_back(executor.submit(handle_request, id));

  int served = 0, timed_out = 0, crashed = 0;
  for (auto& future : mproc::as_completed(futures, 60s)) {
    try {
      future.result();
      ++served;
    } catch (const mproc::TimeoutError&) {
      ++timed_out;
    } catch (const mproc::WorkerLostError& error) {
      std::printf("a worker died: %s\n", error.what());
      ++crashed;
    }
  }
  std::printf("served: %d, timed out: %d, crashed: %d\n", served, timed_out, crashed);
  // Still serving: the stuck and the crashed workers were replaced.
  std::printf("after: %d\n", executor.submit(handle_request, 4).result());
  return served == 8 && timed_out == 1 && crashed == 1 ? 0 : 1;
}
