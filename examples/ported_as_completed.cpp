// ported_as_completed — futures mapped back to their inputs, the common
// `{executor.submit(f, x): x for x in inputs}` idiom, on processes and with a deadline
// (Python original: ported_as_completed.py).
//
//   Python                                      mproc
//   {executor.submit(f, x): x for x in xs}      std::unordered_map<mproc::Future<R>, X>
//                                               (std::hash<mproc::Future<R>>; copies are equal)
//   as_completed(future_to_input, timeout=30)   mproc::as_completed(futures, 30s)
//   future.exception()                          future.exception() → std::exception_ptr
//   type(exc).__name__                          the same C++ type: a std::invalid_argument
//                                               thrown in the worker is rethrown as one here
#include <mproc/mproc.hpp>

#include <chrono>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <vector>

using namespace std::chrono_literals;

namespace {

int slow_square(int x) {
  std::this_thread::sleep_for(std::chrono::milliseconds(10 * (5 - x)));   // later inputs finish first
  if (x == 3) throw std::invalid_argument("three is not welcome");
  return x * x;
}

}  // namespace

int main() {
  mproc::freeze_support();
  mproc::ProcessPoolExecutor executor({.max_workers = 5});
  std::unordered_map<mproc::Future<int>, int> future_to_input;
  std::vector<mproc::Future<int>> futures;
  for (int x = 0; x < 5; ++x) {
    futures.push_back(executor.submit(slow_square, x));
    future_to_input.emplace(futures.back(), x);
  }
  for (auto& future : mproc::as_completed(futures, 30s)) {
    const int x = future_to_input.at(future);
    if (std::exception_ptr error = future.exception()) {
      try {
        std::rethrow_exception(error);
      } catch (const std::invalid_argument& exc) {
        std::printf("%d -> invalid_argument: %s\n", x, exc.what());
      }
    } else {
      std::printf("%d -> %d\n", x, future.result());
    }
  }
  return 0;
}
