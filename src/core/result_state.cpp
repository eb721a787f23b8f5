#include "mproc/detail/result_state.hpp"

#include <algorithm>
#include <cstdio>

#include "mproc/error.hpp"

namespace mproc::detail {

void report_callback_exception(const char* which) noexcept {
  try {
    throw;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "mproc: exception in %s ignored: %s\n", which, error.what());
  } catch (...) {
    std::fprintf(stderr, "mproc: exception in %s ignored\n", which);
  }
}

// ---- CompletionWaiter ------------------------------------------------------------------------

void CompletionWaiter::notify(StateCore* finished) {
  {
    std::lock_guard lock(mutex_);
    finished_.push_back(finished);
  }
  cv_.notify_all();
}

StateCore* CompletionWaiter::next(std::optional<std::chrono::steady_clock::time_point> deadline) {
  std::unique_lock lock(mutex_);
  auto available = [&] { return !finished_.empty(); };
  if (!deadline) {
    cv_.wait(lock, available);
  } else if (!cv_.wait_until(lock, *deadline, available)) {
    return nullptr;
  }
  StateCore* first = finished_.front();
  finished_.pop_front();
  return first;
}

// ---- StateCore --------------------------------------------------------------------------------

bool StateCore::set_running() noexcept {
  if (advance(Status::pending, Status::running)) return true;
  Status status = status_.load(std::memory_order_acquire);
  return status != Status::cancelling && status != Status::cancelled;
}

bool StateCore::cancel() {
  std::unique_lock lock(mutex_);
  // Through "cancelling": the error must be in place before the status reads final.
  if (!advance(Status::pending, Status::cancelling)) return status_.load(std::memory_order_acquire) == Status::cancelled;
  error_ = std::make_exception_ptr(CancelledError("the task was cancelled"));
  status_.store(Status::cancelled, std::memory_order_release);
  publish(lock);
  return true;
}

bool StateCore::has_done_callbacks() const {
  std::lock_guard lock(mutex_);
  return !done_callbacks_.empty();
}

bool StateCore::done() const { return is_final(status_.load(std::memory_order_acquire)); }

bool StateCore::running() const {
  Status status = status_.load(std::memory_order_acquire);
  return status == Status::running || status == Status::completing;
}

bool StateCore::cancelled() const { return status_.load(std::memory_order_acquire) == Status::cancelled; }

const void*& current_completer() noexcept {
  thread_local const void* completer = nullptr;
  return completer;
}

bool StateCore::wait_until(std::optional<std::chrono::steady_clock::time_point> deadline) const {
  if (done()) return true;
  // Only that thread can complete it (and run its callbacks): waiting there is waiting for
  // oneself. It used to pass when a worker happened to be idle (the direct path) and hang
  // when none was.
  if (completer_ != nullptr && completer_ == current_completer())
    throw Error("mproc: a pool's result cannot be waited for in one of the same pool's callbacks: the pool's "
                "thread, which runs the callback, is the one that completes the result (it would wait for "
                "itself); chain a callback instead, or wait on another thread");
  // One waiter, once, may drive the result; the others (and it, afterwards) sleep below.
  if (driver_ && !driver_taken_.exchange(true, std::memory_order_acq_rel)) {
    driver_->drive(*this, deadline);
    if (done()) return true;
  }
  std::unique_lock lock(mutex_);
  auto is_done = [&] { return done(); };
  if (!deadline) {
    cv_.wait(lock, is_done);
    return true;
  }
  return cv_.wait_until(lock, *deadline, is_done);
}

std::exception_ptr StateCore::error() const {
  std::lock_guard lock(mutex_);
  return error_;
}

void StateCore::add_done_callback(std::function<void()> callback) {
  {
    std::lock_guard lock(mutex_);
    if (!done()) {
      done_callbacks_.push_back(std::move(callback));
      return;
    }
  }
  try {
    callback();
  } catch (...) {
    report_callback_exception("done callback");
  }
}

bool StateCore::add_waiter(const std::shared_ptr<CompletionWaiter>& waiter) {
  std::lock_guard lock(mutex_);
  if (done()) return false;
  waiters_.push_back(waiter);
  return true;
}

void StateCore::remove_waiter(const CompletionWaiter* waiter) {
  std::lock_guard lock(mutex_);
  std::erase_if(waiters_, [&](const auto& registered) { return registered.get() == waiter; });
}

bool StateCore::begin_completion() {
  // From pending (a task failed before it ran: terminate, a broken executor) or running.
  Status status = status_.load(std::memory_order_acquire);
  while (status == Status::pending || status == Status::running)
    if (status_.compare_exchange_weak(status, Status::completing, std::memory_order_acq_rel)) return true;
  return false;
}

void StateCore::end_completion(std::exception_ptr error) {
  std::unique_lock lock(mutex_);
  error_ = std::move(error);
  status_.store(Status::finished, std::memory_order_release);
  publish(lock);
}

// Requires the lock, with the status just made final. Wakes blocked waits, then — without
// the lock, since they may call back into this state — notifies registered waiters and runs
// the done callbacks, each exactly once.
void StateCore::publish(std::unique_lock<std::mutex>& lock) {
  auto callbacks = std::move(done_callbacks_);
  auto waiters = std::move(waiters_);
  done_callbacks_.clear();
  waiters_.clear();
  lock.unlock();
  cv_.notify_all();
  for (auto& waiter : waiters) waiter->notify(this);
  for (auto& callback : callbacks) {
    try {
      callback();
    } catch (...) {
      report_callback_exception("done callback");
    }
  }
}

}  // namespace mproc::detail
