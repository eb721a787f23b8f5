// A one-shot notice that one thread posts and others wait for, with a generous bound.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace mproc::testing {

struct Notice {
  std::mutex mutex;
  std::condition_variable cv;
  bool posted = false;

  // Notifies while holding the lock: a waiter that sees `posted` may destroy the notice at once,
  // so the notifying thread must be done with `cv` before the waiter can return.
  void post() {
    std::lock_guard lock(mutex);
    posted = true;
    cv.notify_all();
  }
  bool wait(std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    std::unique_lock lock(mutex);
    return cv.wait_for(lock, timeout, [&] { return posted; });
  }
  bool is_posted() {
    std::lock_guard lock(mutex);
    return posted;
  }
};

}  // namespace mproc::testing
