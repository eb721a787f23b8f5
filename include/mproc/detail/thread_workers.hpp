// mproc/detail/thread_workers.hpp — the thread engine behind ThreadPoolExecutor and
// ThreadPool: a queue of type-erased jobs served by up to N threads, started on demand as
// concurrent.futures.ThreadPoolExecutor does.
#pragma once

#include <atomic>
#include <cstdint>

#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "mproc/detail/result_state.hpp"
#include "mproc/insights.hpp"

namespace mproc::detail {

/// One unit of work for a thread. run() must not throw (jobs store their own exceptions).
class ThreadJob {
 public:
  virtual ~ThreadJob() = default;
  /// The result's state if the job can be cancelled until a thread picks it up.
  virtual StateCore* control() noexcept { return nullptr; }
  /// The same state, owned: cancel_pending() cancels it outside the queue's lock, while a
  /// worker may already be destroying the job.
  virtual std::shared_ptr<StateCore> shared_control() const { return nullptr; }
  /// The flag of the map this job is a chunk of, if that map may be abandoned (an executor
  /// map): shutdown(cancel_futures=true) sets it, and the chunk then fails instead of running.
  virtual std::shared_ptr<std::atomic<bool>> abandon_flag() const { return nullptr; }
  /// Runs the job on a worker thread.
  virtual void run() noexcept = 0;
  /// The job will never run: record `error` as its outcome.
  virtual void fail(std::exception_ptr error) noexcept = 0;
};

/// A job that runs `body` (returning the value or throwing) into a ResultState.
template <class R, class Body>
class StateJob final : public ThreadJob {
 public:
  StateJob(std::shared_ptr<ResultState<R>> state, Body body) : state_(std::move(state)), body_(std::move(body)) {}
  StateCore* control() noexcept override { return state_.get(); }
  std::shared_ptr<StateCore> shared_control() const override { return state_; }
  void run() noexcept override {
    try {
      if constexpr (std::is_void_v<R>) {
        body_();
        state_->set_value({});
      } else {
        state_->set_value(body_());
      }
    } catch (...) {
      state_->set_error(std::current_exception());
    }
  }
  void fail(std::exception_ptr error) noexcept override { state_->set_error(std::move(error)); }

 private:
  std::shared_ptr<ResultState<R>> state_;
  Body body_;
};

struct ThreadWorkersOptions {
  int threads = 1;
  std::function<void()> initializer;
  std::string name_prefix;
};

class ThreadWorkers;

/// A lazy map's way into a thread pool (ThreadWorkers::open_stream), as EngineStream is into
/// the process engine: while it is open the threads stay after close(), and join() reads the
/// rest of the map's input first.
class ThreadStream {
 public:
  ThreadStream(std::shared_ptr<void> workers, std::uint64_t id) : workers_(std::move(workers)), id_(id) {}
  ~ThreadStream();
  ThreadStream(const ThreadStream&) = delete;
  ThreadStream& operator=(const ThreadStream&) = delete;
  /// Queues the map's jobs, also after close(). Throws Error once the pool was joined,
  /// BrokenExecutor after an initializer failed.
  void submit(std::vector<std::unique_ptr<ThreadJob>> jobs);

 private:
  std::shared_ptr<void> workers_;  // the pool's shared state (ThreadWorkers::Core)
  std::uint64_t id_;
};

/// Thread safety: every member may be called from any thread. join() throws Error on one of
/// the pool's own threads; the destructor may run there (see ~ThreadWorkers).
class ThreadWorkers {
 public:
  /// Throws std::invalid_argument for threads <= 0.
  explicit ThreadWorkers(ThreadWorkersOptions options);
  /// close() + join(): waits for every accepted job. On one of the pool's own threads (a task
  /// or done callback dropped the last reference to its pool) it waits for the other threads
  /// and detaches this one, which goes on serving the queue until it is empty: the state the
  /// threads share outlives this object.
  ~ThreadWorkers();
  ThreadWorkers(const ThreadWorkers&) = delete;
  ThreadWorkers& operator=(const ThreadWorkers&) = delete;

  /// Queues jobs (in order). Throws Error once closed, BrokenExecutor after an initializer
  /// failed; the jobs are then not queued.
  void submit(std::unique_ptr<ThreadJob> job);
  void submit(std::vector<std::unique_ptr<ThreadJob>> jobs);

  /// Opens a stream for a lazy map; `drain` reads the rest of its input through the stream
  /// (join() calls it); `abandon`, if any, gives the map up (cancel_pending calls it).
  /// Throws as submit() does.
  std::shared_ptr<ThreadStream> open_stream(std::function<void(bool to_the_end)> drain,
                                            std::function<void()> abandon = {});

  /// Cancels every queued job that has a control (see ThreadJob::control), and abandons the
  /// maps of queued chunks that may be abandoned; others stay.
  void cancel_pending();
  /// Fails every queued job with `error` (ThreadPool::terminate).
  void fail_pending(const std::exception_ptr& error);
  /// No more jobs; threads exit when the queue is empty.
  void close();
  /// Returns once every thread has exited — in every caller, when several join at once.
  /// Throws Error before close(), and on one of the pool's own threads (it would wait for
  /// itself).
  void join();
  bool closed() const;
  /// Each thread's figures (mproc/insights.hpp): start-up, initializer, jobs run (a map's
  /// chunk is one), time running them, time waiting for work; pid and peak RSS are the
  /// process's own, shared by every thread.
  Insights insights() const;

  int max_threads() const noexcept { return threads_; }
  /// True on one of this object's worker threads.
  bool on_worker_thread() const;

 private:
  friend class ThreadStream;
  struct Core;  // what the threads share with this object (src/exec/thread_workers.cpp)
  void join_threads(bool in_destructor);

  int threads_;
  std::shared_ptr<Core> core_;
};

}  // namespace mproc::detail
