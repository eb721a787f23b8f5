#include "mproc/detail/thread_workers.hpp"

#include <algorithm>
#include <pthread.h>
#include <stdexcept>

#include "mproc/error.hpp"

namespace mproc::detail {

ThreadWorkers::ThreadWorkers(ThreadWorkersOptions options) : options_(std::move(options)) {
  if (options_.threads <= 0) throw std::invalid_argument("mproc: max_workers must be at least 1");
}

ThreadWorkers::~ThreadWorkers() {
  close();
  join();
}

void ThreadWorkers::submit(std::unique_ptr<ThreadJob> job) {
  std::vector<std::unique_ptr<ThreadJob>> one;
  one.push_back(std::move(job));
  submit(std::move(one));
}

void ThreadWorkers::submit(std::vector<std::unique_ptr<ThreadJob>> jobs) {
  std::size_t wake;
  {
    std::lock_guard lock(mutex_);
    if (broken_) throw BrokenExecutor(broken_reason_);
    if (closed_) throw Error("cannot schedule new tasks after shutdown");
    for (auto& job : jobs) queue_.push_back(std::move(job));
    // Start threads on demand, as Python does: only when no idle thread can take the work.
    while (static_cast<std::size_t>(idle_) < queue_.size() && threads_.size() < static_cast<std::size_t>(options_.threads))
      start_thread_locked();
    wake = std::min(static_cast<std::size_t>(idle_), jobs.size());
  }
  // Only sleeping threads need a wake-up; busy ones look at the queue before sleeping.
  if (wake == 1) {
    work_cv_.notify_one();
  } else if (wake > 1) {
    work_cv_.notify_all();
  }
}

void ThreadWorkers::cancel_pending() {
  // Cancelling runs done callbacks, which may submit: never under the lock.
  std::deque<std::unique_ptr<ThreadJob>> taken;
  {
    std::lock_guard lock(mutex_);
    taken.swap(queue_);
  }
  std::deque<std::unique_ptr<ThreadJob>> kept;
  for (auto& job : taken) {
    StateCore* control = job->control();
    if (control == nullptr || !control->cancel()) kept.push_back(std::move(job));
  }
  std::lock_guard lock(mutex_);
  for (auto it = kept.rbegin(); it != kept.rend(); ++it) queue_.push_front(std::move(*it));
}

void ThreadWorkers::fail_pending(const std::exception_ptr& error) {
  std::deque<std::unique_ptr<ThreadJob>> taken;
  {
    std::lock_guard lock(mutex_);
    taken.swap(queue_);
  }
  for (auto& job : taken) job->fail(error);
}

void ThreadWorkers::close() {
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
  }
  work_cv_.notify_all();
}

bool ThreadWorkers::closed() const {
  std::lock_guard lock(mutex_);
  return closed_;
}

void ThreadWorkers::join() {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mutex_);
    if (!closed_) throw Error("join() requires close() or shutdown() first");
    // A worker joining its own pool would wait for itself.
    auto self = std::this_thread::get_id();
    if (std::any_of(threads_.begin(), threads_.end(), [&](const std::thread& t) { return t.get_id() == self; }))
      throw Error("a thread pool cannot be joined from one of its own tasks (it would deadlock)");
    threads.swap(threads_);
  }
  for (auto& thread : threads) thread.join();
}

bool ThreadWorkers::on_worker_thread() const {
  std::lock_guard lock(mutex_);
  auto self = std::this_thread::get_id();
  return std::any_of(threads_.begin(), threads_.end(), [&](const std::thread& t) { return t.get_id() == self; });
}

void ThreadWorkers::start_thread_locked() {
  std::size_t index = threads_.size();
  threads_.emplace_back([this, index] {
    if (!options_.name_prefix.empty()) {
      // Linux limits thread names to 15 characters.
      std::string name = (options_.name_prefix + "_" + std::to_string(index)).substr(0, 15);
      ::pthread_setname_np(::pthread_self(), name.c_str());
    }
    serve();
  });
}

void ThreadWorkers::serve() noexcept {
  if (options_.initializer) {
    try {
      options_.initializer();
    } catch (const std::exception& error) {
      std::unique_lock lock(mutex_);
      break_locked(lock, std::string("a worker's initializer failed: ") + error.what());
      return;
    } catch (...) {
      std::unique_lock lock(mutex_);
      break_locked(lock, "a worker's initializer failed");
      return;
    }
  }
  std::unique_lock lock(mutex_);
  for (;;) {
    if (queue_.empty()) {
      if (closed_ || broken_) return;
      ++idle_;
      work_cv_.wait(lock, [&] { return !queue_.empty() || closed_ || broken_; });
      --idle_;
      continue;
    }
    std::unique_ptr<ThreadJob> job = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    // A job cancelled while it waited is dropped: its result is already final.
    StateCore* control = job->control();
    if (control == nullptr || control->set_running()) job->run();
    job.reset();
    lock.lock();
  }
}

// Requires the lock (released and retaken). Python's BrokenThreadPool: the pool takes no more
// work, and everything queued fails.
void ThreadWorkers::break_locked(std::unique_lock<std::mutex>& lock, const std::string& reason) {
  if (!broken_) {
    broken_ = true;
    broken_reason_ = reason;
  }
  std::deque<std::unique_ptr<ThreadJob>> taken;
  taken.swap(queue_);
  lock.unlock();
  work_cv_.notify_all();
  auto error = std::make_exception_ptr(BrokenExecutor(reason));
  for (auto& job : taken) job->fail(error);
  lock.lock();
}

}  // namespace mproc::detail
