#include "mproc/detail/thread_workers.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <pthread.h>
#include <stdexcept>
#include <thread>

#include "mproc/error.hpp"
#include "sys/procstat.hpp"
#include <unistd.h>

namespace mproc::detail {

namespace {
// The pool whose worker the current thread is, if any. Set for the thread's whole life, so
// it cannot be confused with a later thread that reuses an exited one's id.
thread_local const void* current_pool_core = nullptr;
}  // namespace

// Everything the worker threads touch. Each thread holds a reference, so a thread that
// outlives the ThreadWorkers (detached by a destructor that ran on it) still has its queue.
struct ThreadWorkers::Core {
  explicit Core(ThreadWorkersOptions o)
      : options(std::move(o)), counters(std::make_unique<Counters[]>(static_cast<std::size_t>(options.threads))) {}

  const ThreadWorkersOptions options;
  // Each thread's own figures for insights(): written by that thread alone, read by anyone.
  // One clock reading per job: each reading ends one span (waiting, or a job) and starts the next.
  using Clock = std::chrono::steady_clock;
  struct Counters {
    std::atomic<std::int64_t> created_ns{0};  // steady_clock ticks when the thread was asked for
    std::atomic<std::int64_t> startup_ns{0};
    std::atomic<std::int64_t> initializer_ns{0};
    std::atomic<std::uint64_t> jobs{0};
    std::atomic<std::int64_t> working_ns{0};
    std::atomic<std::int64_t> waiting_ns{0};
    std::atomic<bool> started{false};
  };
  std::unique_ptr<Counters[]> counters;
  static void add(std::atomic<std::int64_t>& word, Clock::duration amount) {
    word.store(word.load(std::memory_order_relaxed) +
                   std::chrono::duration_cast<std::chrono::nanoseconds>(amount).count(),
               std::memory_order_relaxed);
  }
  std::mutex mutex;
  std::condition_variable work_cv;
  std::condition_variable joined_cv;
  std::deque<std::unique_ptr<ThreadJob>> queue;
  std::vector<std::thread> threads;  // moved out by the joiner
  int idle = 0;
  bool closed = false;
  bool broken = false;
  std::string broken_reason;
  // One caller joins the threads; any other caller of join() waits for it to finish, so
  // that every join() returns only once the threads have exited.
  bool joining = false;
  bool joined = false;
  // Open lazy maps, by id: how to read the rest of each one's input (ThreadStream).
  struct Stream {
    std::function<void(bool to_the_end)> drain;
    std::function<void()> abandon;
  };
  std::map<std::uint64_t, Stream> streams;
  std::uint64_t next_stream = 1;

  // Requires the lock. Whether the threads are done for good: nothing queued, and nothing
  // may be (closed with no open map, or broken).
  bool finished_locked() const { return queue.empty() && ((closed && streams.empty()) || broken); }

  // Requires the lock. Throws unless jobs are accepted: a stream's are, after close().
  void check_accepting_locked(bool from_stream) const {
    if (broken) throw BrokenExecutor(broken_reason);
    if (joined || (closed && !from_stream)) throw Error("cannot schedule new tasks after shutdown");
  }

  // Queues `jobs` (the lock not held), starting threads on demand.
  void submit(const std::shared_ptr<Core>& self, std::vector<std::unique_ptr<ThreadJob>> jobs, bool from_stream) {
    std::size_t wake;
    {
      std::lock_guard lock(mutex);
      check_accepting_locked(from_stream);
      for (auto& job : jobs) queue.push_back(std::move(job));
      // Start threads on demand, as Python does: only when no idle thread can take the work
      // (and none after close(): the joiner takes the list of threads as complete).
      while (!closed && static_cast<std::size_t>(idle) < queue.size() &&
             threads.size() < static_cast<std::size_t>(options.threads))
        start_thread_locked(self);
      wake = std::min(static_cast<std::size_t>(idle), jobs.size());
    }
    // Only sleeping threads need a wake-up; busy ones look at the queue before sleeping.
    if (wake == 1) {
      work_cv.notify_one();
    } else if (wake > 1) {
      work_cv.notify_all();
    }
  }

  bool on_own_thread() const { return current_pool_core == this; }

  // Requires the lock.
  void start_thread_locked(const std::shared_ptr<Core>& self) {
    std::size_t index = threads.size();
    counters[index].created_ns.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    counters[index].started.store(true, std::memory_order_release);
    threads.emplace_back([core = self, index] {
      current_pool_core = core.get();
      core->name_this_thread(index);
      core->serve(core->counters[index]);
    });
  }

  void name_this_thread(std::size_t index) const {
    if (options.name_prefix.empty()) return;
    // Linux allows 15 characters: the prefix gives way, the index that tells the threads
    // apart stays ("ThreadPoolExecutor" -> "ThreadPoolE_12").
    constexpr std::size_t max_name = 15;
    std::string suffix = "_" + std::to_string(index);
    std::string name = options.name_prefix.substr(0, max_name - std::min(max_name, suffix.size())) + suffix;
    ::pthread_setname_np(::pthread_self(), name.substr(0, max_name).c_str());
  }

  void serve(Counters& mine) noexcept {
    Clock::time_point mark = Clock::now();
    mine.startup_ns.store(mark.time_since_epoch().count() - mine.created_ns.load(std::memory_order_relaxed),
                          std::memory_order_relaxed);
    if (options.initializer) {
      try {
        options.initializer();
      } catch (const std::exception& error) {
        std::unique_lock lock(mutex);
        break_locked(lock, std::string("a worker's initializer failed: ") + error.what());
        return;
      } catch (...) {
        std::unique_lock lock(mutex);
        break_locked(lock, "a worker's initializer failed");
        return;
      }
      const auto now = Clock::now();
      add(mine.initializer_ns, now - mark);
      mark = now;
    }
    std::unique_lock lock(mutex);
    for (;;) {
      if (queue.empty()) {
        // Closed, empty and no open map is final: nothing is ever queued again, nor put back.
        if (finished_locked()) return;
        ++idle;
        work_cv.wait(lock, [&] { return !queue.empty() || finished_locked(); });
        --idle;
        const auto now = Clock::now();
        add(mine.waiting_ns, now - mark);
        mark = now;
        continue;
      }
      std::unique_ptr<ThreadJob> job = std::move(queue.front());
      queue.pop_front();
      lock.unlock();
      // A job cancelled while it waited is dropped: its result is already final.
      StateCore* control = job->control();
      if (control == nullptr || control->set_running()) job->run();
      job.reset();
      const auto now = Clock::now();
      add(mine.working_ns, now - mark);
      mark = now;
      mine.jobs.store(mine.jobs.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      lock.lock();
    }
  }

  // Requires the lock (released and retaken). Python's BrokenThreadPool: the pool takes no
  // more work, and everything queued fails.
  void break_locked(std::unique_lock<std::mutex>& lock, const std::string& reason) {
    if (!broken) {
      broken = true;
      broken_reason = reason;
    }
    std::deque<std::unique_ptr<ThreadJob>> taken;
    taken.swap(queue);
    lock.unlock();
    work_cv.notify_all();
    auto error = std::make_exception_ptr(BrokenExecutor(reason));
    for (auto& job : taken) job->fail(error);
    lock.lock();
  }
};

ThreadWorkers::ThreadWorkers(ThreadWorkersOptions options) : threads_(options.threads) {
  if (options.threads <= 0) throw std::invalid_argument("mproc: max_workers must be at least 1");
  core_ = std::make_shared<Core>(std::move(options));
}

ThreadWorkers::~ThreadWorkers() {
  close();
  join_threads(true);
}

void ThreadWorkers::submit(std::unique_ptr<ThreadJob> job) {
  std::vector<std::unique_ptr<ThreadJob>> one;
  one.push_back(std::move(job));
  submit(std::move(one));
}

void ThreadWorkers::submit(std::vector<std::unique_ptr<ThreadJob>> jobs) { core_->submit(core_, std::move(jobs), false); }

std::shared_ptr<ThreadStream> ThreadWorkers::open_stream(std::function<void(bool)> drain,
                                                         std::function<void()> abandon) {
  std::lock_guard lock(core_->mutex);
  core_->check_accepting_locked(false);
  std::uint64_t id = core_->next_stream++;
  core_->streams.emplace(id, Core::Stream{std::move(drain), std::move(abandon)});
  return std::make_shared<ThreadStream>(core_, id);
}

ThreadStream::~ThreadStream() {
  auto& core = *static_cast<ThreadWorkers::Core*>(workers_.get());
  {
    std::lock_guard lock(core.mutex);
    core.streams.erase(id_);
  }
  core.work_cv.notify_all();  // threads of a closed pool may now finish
}

void ThreadStream::submit(std::vector<std::unique_ptr<ThreadJob>> jobs) {
  auto core = std::static_pointer_cast<ThreadWorkers::Core>(workers_);
  core->submit(core, std::move(jobs), true);
}

void ThreadWorkers::cancel_pending() {
  // Cancelling runs done callbacks, which may submit: never under the lock. The jobs stay
  // queued meanwhile (a worker that reaches a cancelled one drops it): taking them out and
  // putting back the ones that cannot be cancelled (map chunks) would let a worker of a
  // closed pool find the queue empty, exit, and leave those behind with nobody to run them.
  std::vector<std::shared_ptr<StateCore>> controls;
  std::vector<std::function<void()>> abandons;
  {
    std::lock_guard lock(core_->mutex);
    // Open maps that may be given up read no further, so that join() does not drain them.
    for (auto& [id, stream] : core_->streams)
      if (stream.abandon) abandons.push_back(stream.abandon);
    controls.reserve(core_->queue.size());
    for (auto& job : core_->queue) {
      if (auto control = job->shared_control()) controls.push_back(std::move(control));
      if (auto flag = job->abandon_flag()) flag->store(true, std::memory_order_relaxed);
    }
  }
  for (auto& abandon : abandons) abandon();
  // One a worker has claimed meanwhile is running: cancel() then refuses, as it should.
  for (auto& control : controls) control->cancel();
}

void ThreadWorkers::fail_pending(const std::exception_ptr& error) {
  // Every job taken here is failed here: none is put back, so a worker may exit meanwhile.
  std::deque<std::unique_ptr<ThreadJob>> taken;
  {
    std::lock_guard lock(core_->mutex);
    taken.swap(core_->queue);
  }
  for (auto& job : taken) job->fail(error);
}

void ThreadWorkers::close() {
  {
    std::lock_guard lock(core_->mutex);
    core_->closed = true;
  }
  core_->work_cv.notify_all();
}

Insights ThreadWorkers::insights() const {
  Insights insights;
  insights.memory_limits = "none (threads share the process's memory)";
  const auto peak = sys::peak_rss_bytes();
  for (int i = 0; i < threads_; ++i) {
    const Core::Counters& slot = core_->counters[static_cast<std::size_t>(i)];
    if (!slot.started.load(std::memory_order_acquire)) continue;  // threads start on demand
    WorkerInsight row;
    row.worker = static_cast<std::uint64_t>(i) + 1;
    row.pid = ::getpid();
    row.startup = std::chrono::nanoseconds(slot.startup_ns.load(std::memory_order_relaxed));
    row.initializer = std::chrono::nanoseconds(slot.initializer_ns.load(std::memory_order_relaxed));
    row.tasks = slot.jobs.load(std::memory_order_relaxed);
    row.working = std::chrono::nanoseconds(slot.working_ns.load(std::memory_order_relaxed));
    row.waiting = std::chrono::nanoseconds(slot.waiting_ns.load(std::memory_order_relaxed));
    row.peak_rss_bytes = peak;
    insights.total.startup += row.startup;
    insights.total.initializer += row.initializer;
    insights.total.tasks += row.tasks;
    insights.total.working += row.working;
    insights.total.waiting += row.waiting;
    insights.workers.push_back(row);
  }
  insights.total.peak_rss_bytes = peak;
  return insights;
}

bool ThreadWorkers::closed() const {
  std::lock_guard lock(core_->mutex);
  return core_->closed;
}

void ThreadWorkers::join() { join_threads(false); }

void ThreadWorkers::join_threads(bool in_destructor) {
  // Owned here: a second joiner may be the destructor, done with this object once woken.
  std::shared_ptr<Core> core = core_;
  if (!core->on_own_thread()) {
    // Python finishes a map accepted before shutdown: read the rest of every open one's input
    // — but not from the destructor, where an open map's input (perhaps endless) is read no
    // further and its iterator ends with an error after the results of what it had read.
    std::vector<std::function<void(bool)>> drains;
    {
      std::lock_guard lock(core->mutex);
      if (!core->closed) throw Error("join() requires close() or shutdown() first");
      if (!core->broken)
        for (auto& [id, stream] : core->streams) drains.push_back(stream.drain);
    }
    for (auto& drain : drains) drain(!in_destructor);
  }
  std::unique_lock lock(core->mutex);
  if (!core->closed) throw Error("join() requires close() or shutdown() first");
  if (core->on_own_thread()) {
    if (!in_destructor) throw Error("a thread pool cannot be joined from one of its own tasks (it would deadlock)");
    // The last reference to the pool went away in one of its own tasks or done callbacks.
    // This thread cannot wait for itself: it is detached, and exits by itself once the
    // queue is empty, holding the Core. The other threads are joined below as usual.
    const auto self = std::this_thread::get_id();
    for (auto& thread : core->threads)
      if (thread.get_id() == self) thread.detach();
  }
  // No thread starts after close(): core->threads is complete.
  if (core->joining) {
    core->joined_cv.wait(lock, [&] { return core->joined; });
    return;
  }
  core->joining = true;
  std::vector<std::thread> threads = std::move(core->threads);
  core->threads.clear();
  lock.unlock();
  for (auto& thread : threads)
    if (thread.joinable()) thread.join();
  lock.lock();
  core->joined = true;
  core->joined_cv.notify_all();
}

bool ThreadWorkers::on_worker_thread() const { return core_->on_own_thread(); }

}  // namespace mproc::detail
