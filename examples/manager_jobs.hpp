// What the manager server and its clients share: the job queue type and its registration
// (Python's BaseManager.register calls, made by both programs).
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>

#include <mproc/mproc.hpp>

// A thread-safe queue: the server runs each client's calls on that client's own thread.
class JobQueue {
 public:
  void put(int job) {
    std::lock_guard lock(mutex_);
    jobs_.push_back(job);
    ready_.notify_one();
  }
  int get() {
    std::unique_lock lock(mutex_);
    ready_.wait(lock, [this] { return !jobs_.empty(); });
    int job = jobs_.front();
    jobs_.pop_front();
    return job;
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<int> jobs_;
};

// Every create("jobs") is the same queue (Python: register("get_queue", callable=lambda: queue)).
inline std::shared_ptr<JobQueue> the_jobs() {
  static auto jobs = std::make_shared<JobQueue>();
  return jobs;
}
inline std::shared_ptr<JobQueue> the_results() {
  static auto results = std::make_shared<JobQueue>();
  return results;
}

inline void register_queues(mproc::BaseManager& manager) {
  manager.register_type<JobQueue>("jobs", &the_jobs, &JobQueue::put, &JobQueue::get);
  manager.register_type<JobQueue>("results", &the_results, &JobQueue::put, &JobQueue::get);
}

inline const char* kKey = "manager example key";
