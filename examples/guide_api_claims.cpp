// guide_api_claims — three tutorial sayings checked on mproc: "apply is like submit",
// "map_async(...).wait() is map" and "use the context manager" (docs/guide.md, "Tutorial
// claims, measured").
#include <mproc/mproc.hpp>

#include <chrono>
#include <cstdio>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "guide.hpp"

namespace {

int slow(int x) {
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  if (x < 0) throw std::invalid_argument("negative input");
  return x;
}

const char* outcome(const mproc::AsyncResult<int>& result) {
  try {
    result.get(std::chrono::seconds(10));
    return "a value";
  } catch (const mproc::CancelledError&) {
    return "CancelledError";
  }
}

}  // namespace

int main() {
  // "apply is like submit": how long until each call returns, for a 200 ms task.
  {
    mproc::Pool pool(2);
    mproc::ProcessPoolExecutor executor({.max_workers = 2});
    auto start = guide::Clock::now();
    pool.apply(slow, 1);
    const double apply = guide::seconds_since(start);
    start = guide::Clock::now();
    auto async = pool.apply_async(slow, 1);
    const double apply_async = guide::seconds_since(start);
    start = guide::Clock::now();
    auto future = executor.submit(slow, 1);
    const double submit = guide::seconds_since(start);
    async.get();
    future.result();
    std::printf("returns after: apply %.3f s, apply_async %.3f s, submit %.3f s\n", apply, apply_async, submit);
  }
  // "map_async(...).wait() is map": with one failing item.
  {
    mproc::Pool pool(2);
    const char* map = "returned";
    try {
      pool.map(slow, {1, -1});
    } catch (const std::invalid_argument&) {
      map = "threw invalid_argument";
    }
    auto pending = pool.map_async(slow, {1, -1});
    pending.wait();
    const char* wait = pending.successful() ? "returned, successful" : "returned, not successful";
    const char* get = "returned";
    try {
      pending.get();
    } catch (const std::invalid_argument&) {
      get = "threw invalid_argument";
    }
    std::printf("one failing item: map %s; map_async().wait() %s; map_async().get() %s\n", map, wait, get);
  }
  // "use the context manager": leaving the scope with a 200 ms task still running.
  for (bool terminate_on_exit : {false, true}) {
    std::optional<mproc::AsyncResult<int>> result;
    auto start = guide::Clock::now();
    {
      mproc::Pool pool({.processes = 1, .terminate_on_exit = terminate_on_exit});
      result = pool.apply_async(slow, 42);
      start = guide::Clock::now();
    }
    const double left = guide::seconds_since(start);
    std::printf("leaving the scope with a task running, %s: %.3f s, then the result is %s\n",
                terminate_on_exit ? "terminate_on_exit (Python's with)" : "default (waits)", left, outcome(*result));
  }
  return 0;
}
