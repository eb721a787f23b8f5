// mproc/detail/result_state.hpp — the shared state behind AsyncResult and Future: a result
// that is pending, running, then finished (a value or an exception) or cancelled, exactly once.
//
// StateCore holds everything that does not depend on the result type, compiled once in
// src/core/result_state.cpp: the status machine, blocking waits, done callbacks, and the waiters
// registered by mproc::wait / mproc::as_completed. ResultState<R> adds the value. Timed waits
// take a Deadline made by detail/timeout.hpp.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "mproc/detail/timeout.hpp"

namespace mproc::detail {

/// Reports an exception escaping a user callback on stderr (call inside a catch block).
void report_callback_exception(const char* which) noexcept;

/// The completer (see StateCore::set_completer) whose thread this is, if any: set once by
/// an engine's thread, where results are completed and callbacks run.
const void*& current_completer() noexcept;

class StateCore;

/// Collects the states that complete while mproc::wait / as_completed watch them, in
/// completion order. Thread safety: all members may be called from any thread.
class CompletionWaiter {
 public:
  void notify(StateCore* finished);
  /// Pops the next completed state, waiting until the deadline; nullptr on timeout.
  StateCore* next(Deadline deadline);

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<StateCore*> finished_;
};

/// Lets a thread that blocks on a result produce it itself instead of sleeping until another
/// thread does (the process engine's direct-result path).
class WaitDriver {
 public:
  virtual ~WaitDriver() = default;
  /// Blocks until `state` is done or the deadline passes, or returns early once it cannot
  /// help any more (the waiter then sleeps as usual).
  virtual void drive(const StateCore& state, const Deadline& deadline) = 0;
};

/// The type-independent part of a result's state. Completed by the thread that ran (or
/// gave up on) the task; observed from any thread.
class StateCore {
 public:
  enum class Status { pending, running, completing, cancelling, finished, cancelled };

  StateCore() = default;
  StateCore(const StateCore&) = delete;
  StateCore& operator=(const StateCore&) = delete;
  virtual ~StateCore() = default;

  /// pending → running (Python's set_running_or_notify_cancel). Returns false if the
  /// result was cancelled: the task must then not run.
  bool set_running() noexcept;
  /// pending → cancelled, waking waiters and running done callbacks. Returns true if the
  /// result is (now or already) cancelled, false once it runs or has finished.
  bool cancel();

  bool done() const;
  /// Whether done callbacks are registered (they must run on the completing backend's
  /// thread, so a waiter that could complete the result itself leaves it to the backend).
  bool has_done_callbacks() const;
  bool running() const;
  bool cancelled() const;
  /// Blocks until done (finished or cancelled) or the deadline; returns done().
  bool wait_until(Deadline deadline) const;
  /// Requires done(). The exception the task ended with; nullptr after a value; a
  /// CancelledError after cancel().
  std::exception_ptr error() const;

  /// Runs `callback` once the result is done — right now, on this thread, if it already is;
  /// otherwise on the completing thread. An exception it throws is reported and ignored.
  void add_done_callback(std::function<void()> callback);

  /// Installs the driver the first waiter uses (once). Requires: the state is not yet shared
  /// with another thread.
  void set_driver(std::shared_ptr<WaitDriver> driver) { driver_ = std::move(driver); }
  /// Names the thread that completes this result (an engine's: see current_completer()).
  /// Waiting for it on that very thread — from one of the pool's own callbacks — throws
  /// Error instead of deadlocking. Requires: the state is not yet shared with another thread.
  void set_completer(const void* completer) noexcept { completer_ = completer; }

  /// Registers `waiter` to hear of this state's completion. Returns false (and registers
  /// nothing) when already done.
  bool add_waiter(const std::shared_ptr<CompletionWaiter>& waiter);
  void remove_waiter(const CompletionWaiter* waiter);

 protected:
  /// pending/running → completing: only one completion wins. Returns false if the result
  /// was already completed or cancelled (the new outcome is dropped).
  bool begin_completion();
  /// completing → finished with `error` (nullptr: a value was stored), then wakes waiters
  /// and runs done callbacks.
  void end_completion(std::exception_ptr error);

  /// Requires done(): the outcome is written before the final status is published
  /// (release) and done() reads it with acquire, so it may be read without the lock.
  const std::exception_ptr& final_error() const noexcept { return error_; }

 private:
  static bool is_final(Status status) { return status == Status::finished || status == Status::cancelled; }
  // Every change to a final status happens under mutex_ (so blocked waits cannot miss it);
  // the other transitions are lock-free compare-exchanges: a task's hand-off to a worker
  // (set_running) and the start of its completion cost no lock.
  bool advance(Status from, Status to) noexcept {
    return status_.compare_exchange_strong(from, to, std::memory_order_acq_rel);
  }
  void publish(std::unique_lock<std::mutex>& lock);

  mutable std::mutex mutex_;
  mutable std::condition_variable cv_;
  std::atomic<Status> status_{Status::pending};
  std::shared_ptr<WaitDriver> driver_;
  mutable std::atomic<bool> driver_taken_{false};
  const void* completer_ = nullptr;
  std::exception_ptr error_;
  std::vector<std::function<void()>> done_callbacks_;
  std::vector<std::shared_ptr<CompletionWaiter>> waiters_;
};

/// StateCore plus the value. R may be void.
template <class R>
class ResultState final : public StateCore {
 public:
  using Stored = std::conditional_t<std::is_void_v<R>, std::monostate, R>;

  /// Python's AsyncResult callbacks: called on the completing thread *before* the result
  /// becomes ready, so get() returns only after they ran.
  std::function<void(const Stored&)> callback;
  std::function<void(std::exception_ptr)> error_callback;

  /// Completes with `value` unless already completed or cancelled. If storing the value
  /// throws (a throwing move), the result fails with that exception instead; set_value then
  /// returns normally. Calling set_error() for it would be too late: completion has begun.
  void set_value(Stored value) {
    if (!begin_completion()) return;
    try {
      value_.emplace(std::move(value));  // only the completing thread touches it until done
    } catch (...) {
      complete_with_error(std::current_exception());
      return;
    }
    if (callback) {
      try {
        callback(*value_);
      } catch (...) {
        report_callback_exception("callback");
      }
    }
    end_completion(nullptr);
  }

  /// Completes with `error` unless already completed or cancelled.
  void set_error(std::exception_ptr error) {
    if (!begin_completion()) return;
    complete_with_error(std::move(error));
  }

  /// Requires done(). A copy of the value, or rethrows the error.
  Stored value() const {
    if (const auto& failure = final_error()) std::rethrow_exception(failure);
    return *value_;
  }

 private:
  // Requires begin_completion() to have succeeded on this thread.
  void complete_with_error(std::exception_ptr error) {
    if (error_callback) {
      try {
        error_callback(error);
      } catch (...) {
        report_callback_exception("error_callback");
      }
    }
    end_completion(std::move(error));
  }

  std::optional<Stored> value_;
};

}  // namespace mproc::detail
