// mproc/async_result.hpp — multiprocessing.pool.AsyncResult: the result of a task that
// runs elsewhere.
//
//   mproc::AsyncResult<int> r = pool.apply_async(square, 7);
//   if (r.wait(1s)) std::cout << r.get();   // 49, or rethrows the task's exception
#pragma once

#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>

#include "mproc/error.hpp"

namespace mproc {

namespace detail {

void report_callback_exception(const char* which) noexcept;

/// The shared state behind an AsyncResult. Completed exactly once, by the pool's thread.
template <class R>
class ResultState {
 public:
  using Stored = std::conditional_t<std::is_void_v<R>, std::monostate, R>;

  std::function<void(const Stored&)> callback;
  std::function<void(std::exception_ptr)> error_callback;

  void set_value(Stored value) {
    {
      std::lock_guard lock(mutex_);
      if (done_) return;
      value_ = std::move(value);
    }
    // Python calls the callback before the result is marked ready: get() returns only
    // after it ran. It runs on the pool's thread, never the caller's.
    if (callback) {
      try {
        callback(*value_);
      } catch (...) {
        report_callback_exception("callback");
      }
    }
    mark_done();
  }

  void set_error(std::exception_ptr error) {
    {
      std::lock_guard lock(mutex_);
      if (done_) return;
      error_ = std::move(error);
    }
    if (error_callback) {
      try {
        error_callback(error_);
      } catch (...) {
        report_callback_exception("error_callback");
      }
    }
    mark_done();
  }

  bool wait_until(std::optional<std::chrono::steady_clock::time_point> deadline) {
    std::unique_lock lock(mutex_);
    if (!deadline) {
      cv_.wait(lock, [&] { return done_; });
      return true;
    }
    return cv_.wait_until(lock, *deadline, [&] { return done_; });
  }

  bool ready() const {
    std::lock_guard lock(mutex_);
    return done_;
  }

  // Requires ready().
  bool successful() const {
    std::lock_guard lock(mutex_);
    return !error_;
  }

  // Requires ready().
  Stored take_or_copy() const {
    std::lock_guard lock(mutex_);
    if (error_) std::rethrow_exception(error_);
    return *value_;
  }

 private:
  void mark_done() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    cv_.notify_all();
  }

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  std::optional<Stored> value_;
  std::exception_ptr error_;
};

}  // namespace detail

/// Python's AsyncResult. Copies share one result. Thread safety: every member may be
/// called from any thread.
template <class R>
class AsyncResult {
 public:
  explicit AsyncResult(std::shared_ptr<detail::ResultState<R>> state) : state_(std::move(state)) {}

  /// Waits for the result and returns it (a copy: get() may be called again), or rethrows
  /// the task's exception: the same type for standard exceptions, RemoteError for others,
  /// WorkerLostError if the worker died, TimeoutError if the task ran out of time.
  R get() const {
    wait();
    return value();
  }
  /// As get(), waiting at most `timeout`. Throws TimeoutError if the result is not ready.
  template <class Rep, class Period>
  R get(std::chrono::duration<Rep, Period> timeout) const {
    if (!wait(timeout)) throw TimeoutError("the result is not ready");
    return value();
  }

  void wait() const { state_->wait_until(std::nullopt); }
  /// Returns true if the result is ready.
  template <class Rep, class Period>
  bool wait(std::chrono::duration<Rep, Period> timeout) const {
    return state_->wait_until(std::chrono::steady_clock::now() +
                              std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout));
  }

  bool ready() const { return state_->ready(); }
  /// Whether the task completed without an exception. Throws InvalidStateError if not ready
  /// (Python raises ValueError).
  bool successful() const {
    if (!ready()) throw InvalidStateError("the result is not ready");
    return state_->successful();
  }

 private:
  R value() const {
    if constexpr (std::is_void_v<R>) {
      state_->take_or_copy();
    } else {
      return state_->take_or_copy();
    }
  }

  std::shared_ptr<detail::ResultState<R>> state_;
};

/// Per-call options of apply_async / map_async / starmap_async: Python's `callback` and
/// `error_callback` keywords, plus a time limit for this call's task(s):
///
///   pool.apply_async(mproc::CallOptions{.callback = [](const int& r) { ... },
///                                       .error_callback = [](std::exception_ptr e) { ... },
///                                       .timeout = 2s},
///                    square, 7);
///
/// Each callback is called exactly once, on the pool's result thread (never the caller's),
/// before the result becomes ready; it should return quickly. An exception it throws is
/// reported on stderr and otherwise ignored. `timeout` overrides PoolOptions::task_timeout
/// for each task of the call (each chunk of a map).
template <class OnValue = std::nullptr_t, class OnError = std::nullptr_t>
struct CallOptions {
  OnValue callback = nullptr;
  OnError error_callback = nullptr;
  std::optional<std::chrono::nanoseconds> timeout = {};
};

}  // namespace mproc
