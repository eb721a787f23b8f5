#include "mproc/detail/engine.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <poll.h>
#include <pthread.h>
#include <new>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <string>
#include <thread>
#include <unistd.h>
#include <utility>

#include "mproc/connection.hpp"
#include "mproc/error.hpp"
#include "mproc/imap_iterator.hpp"
#include "mproc/process.hpp"
#include "observe/observer_hub.hpp"
#include "process/start_method.hpp"
#include "sys/fd.hpp"
#include "sys/futex.hpp"
#include "sys/procstat.hpp"
#include "sys/shm.hpp"
#include "sys/spawn.hpp"
#include "sys/worker_cgroup.hpp"
#include "exec/worker_main.hpp"
#include "exec/worker_protocol.hpp"

namespace mproc::detail {

namespace {

using Clock = std::chrono::steady_clock;

// Small tasks are queued ahead on a busy worker (so a burst costs few wake-ups) up to this
// many bytes of arguments: well under a pipe's 64 KiB, so that writing them never blocks
// the engine's thread. Larger tasks only go to an idle worker, which is reading.
constexpr std::size_t kPrefetchBytes = 32 * 1024;
constexpr std::size_t kMaxPrefetchTasks = 64;
// Prefetch aims at this much queued work per worker: enough to hide a wake-up, not so much
// that one worker hoards tasks another could start.
constexpr double kPrefetchTargetNs = 200'000;

struct Task {
  std::uint64_t id = 0;
  std::uint32_t seq = 0;  // on the worker it was handed to
  TaskSpec spec;
  bool timed_out = false;  // its worker was killed for running past the timeout
  bool sent_alone = false;  // the last frame it travelled in held it alone
  bool solo = false;        // must travel alone: a batch it was in could not be received
  int deaths_before_start = 0;  // workers that died holding it alone, before starting it
};

// The words shared with one worker, in a memfd: mapped by a forked worker through fork,
// by a spawned one through the descriptor it is passed.
class WorkerShared {
 public:
  WorkerShared() {
    if (int rc = sys::memfd_create_sized("mproc-worker", sizeof(WorkerWords), memfd_); rc < 0)
      throw OSError(-rc, "memfd_create");
    if (int rc = sys::map_fd_shared(memfd_.get(), sizeof(WorkerWords), mapping_); rc < 0) throw OSError(-rc, "mmap");
    words_ = new (mapping_.get()) WorkerWords;
  }
  WorkerWords& words() const noexcept { return *words_; }
  int memfd() const noexcept { return memfd_.get(); }

 private:
  sys::UniqueFd memfd_;
  sys::SharedMapping mapping_;
  WorkerWords* words_;
};

// A worker's memory cgroup (MemoryLimitBackend::cgroup), removed with the Worker, which is
// always after the worker was reaped (its group is empty by then). Only by the process that
// made it: a forked worker's copy of the engine is not its to clean.
class WorkerCgroup {
 public:
  WorkerCgroup() = default;
  WorkerCgroup(std::string dir, bool v2) : dir_(std::move(dir)), v2_(v2), owner_(::getpid()) {}
  WorkerCgroup(WorkerCgroup&& other) noexcept
      : dir_(std::exchange(other.dir_, {})), v2_(other.v2_), owner_(other.owner_) {}
  WorkerCgroup& operator=(WorkerCgroup&& other) noexcept {
    if (this != &other) {
      remove();
      dir_ = std::exchange(other.dir_, {});
      v2_ = other.v2_;
      owner_ = other.owner_;
    }
    return *this;
  }
  ~WorkerCgroup() { remove(); }
  const std::string& dir() const noexcept { return dir_; }
  // Whether the kernel OOM-killed a process of the group (the worker: it is alone in it).
  bool oom_killed() const noexcept {
    std::uint64_t kills = 0;
    return !dir_.empty() && sys::cgroup_oom_kills(dir_.c_str(), v2_, kills) == 0 && kills != 0;
  }

 private:
  void remove() noexcept {
    if (dir_.empty() || ::getpid() != owner_) return;
    if (int rc = sys::remove_cgroup(dir_.c_str()); rc < 0)
      std::fprintf(stderr, "mproc: could not remove the worker's memory cgroup %s: %s\n", dir_.c_str(),
                   std::strerror(-rc));
    dir_.clear();
  }
  std::string dir_;
  bool v2_ = false;
  pid_t owner_ = 0;
};

struct Worker {
  std::uint64_t serial = 0;  // unique per engine: identifies the worker across replacements
  std::shared_ptr<WorkerShared> shared;
  Process process{ProcessOptions{}, [] {}};  // replaced by the started worker
  Connection tasks;    // engine → worker
  Connection results;  // worker → engine
  std::deque<std::unique_ptr<Task>> in_flight;  // front: running (or about to)
  Clock::time_point front_started{};
  Clock::time_point started_at{};  // when start() was called (insights: start-up time)
  std::size_t queued_bytes = 0;
  long remaining = LONG_MAX;  // tasks it may still be given (maxtasksperchild)
  std::uint32_t sent_seq = 0;          // seq of the last task handed to it
  std::size_t revoked_unacked = 0;     // tasks taken back that it has not yet skipped
  bool ready = false;         // its initializer has run
  bool killed = false;        // we sent SIGKILL (timeout or terminate)
  // Its one task was handed over by submit() and its result is the waiting caller's to read
  // (EngineCore::drive_direct): the engine does not poll its result pipe meanwhile.
  bool direct = false;
  // Declared last, destroyed first: nothing else of the Worker refers to it.
  WorkerCgroup cgroup;
};

// The engine whose thread this is, if any: a callback (which runs there) that joins or
// destroys its own pool must not wait for itself.
thread_local const EngineCore* current_engine_thread = nullptr;

void complete(Task& task, std::span<const std::byte> payload, std::exception_ptr error) noexcept {
  try {
    task.spec.done(payload, std::move(error));
  } catch (...) {
    // Completions catch their own decoding errors; nothing may escape into the engine.
  }
}

}  // namespace

class EngineCore;

// The driver installed on a result whose task went straight to a worker: a thread waiting
// for the result reads it itself (EngineCore::drive_direct).
class DirectResult final : public WaitDriver {
 public:
  DirectResult(std::weak_ptr<EngineCore> engine, std::uint64_t serial, std::uint64_t task_id,
               std::shared_ptr<WorkerShared> shared)
      : engine_(std::move(engine)), serial_(serial), task_id_(task_id), shared_(std::move(shared)) {}

  void drive(const StateCore& state, const std::optional<std::chrono::steady_clock::time_point>& deadline) override;

 private:
  std::weak_ptr<EngineCore> engine_;
  std::uint64_t serial_;
  std::uint64_t task_id_;
  std::shared_ptr<WorkerShared> shared_;  // outlives the worker if need be
};

class EngineCore : public std::enable_shared_from_this<EngineCore> {
 public:
  explicit EngineCore(EngineOptions options) : options_(std::move(options)), owner_(sys::current_pid()) {
    int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) throw OSError(errno, "eventfd");
    wake_.reset(fd);
    // Workers are forked by one thread only: this one now, the engine's thread later.
    if (options_.memory_limit != 0 && options_.memory_backend == MemoryLimitBackend::cgroup)
      if (int rc = sys::find_cgroup_parent(cgroup_parent_); rc < 0)
        throw OSError(-rc, "mproc: memory cgroup for the workers");
    std::lock_guard lock(mutex_);
    for (int i = 0; i < options_.processes; ++i) spawn_worker();
  }

  // The thread holds the engine alive until it has finished (Engine's destructor closes and
  // joins it; a callback may drop the last other reference while it runs).
  void start() {
    thread_ = std::thread([self = shared_from_this()] { self->run(); });
  }

  ~EngineCore() {
    // In a forked copy of this process the thread does not exist: nothing to stop.
    if (sys::current_pid() != owner_ || !thread_.joinable()) return;
    // The thread's own reference was the last one: it is returning from run(), touching
    // nothing of ours any more.
    if (std::this_thread::get_id() == thread_.get_id()) {
      thread_.detach();
      return;
    }
    thread_.join();
  }

  bool on_engine_thread() const noexcept { return current_engine_thread == this; }
  pid_t owner() const noexcept { return owner_; }

  void check_caller() const {
    if (sys::current_pid() != owner_)
      throw Error(inside_worker ? "a pool cannot be used from one of its own tasks (it would deadlock)"
                                : "a pool can only be used by the process that created it");
  }

  void submit(std::vector<TaskSpec> specs, bool from_stream = false) {
    bool was_empty;
    {
      std::lock_guard lock(mutex_);
      check_accepting(from_stream);
      was_empty = incoming_.empty();
      for (auto& spec : specs) {
        auto task = std::make_unique<Task>();
        task->id = next_id_++;
        task->spec = std::move(spec);
        if (!task->spec.timeout) task->spec.timeout = options_.task_timeout;
        if (task->spec.control) task->spec.control->set_completer(this);
        incoming_.push_back(std::move(task));
      }
      // A lone task with an idle worker goes straight to it from this thread: one wake-up
      // (the engine thread's) fewer on the way, which is most of an apply() round trip. A
      // task with a timeout takes the engine's path, whose poll must learn the deadline.
      if (was_empty && incoming_.size() == 1 && pending_.empty() && !incoming_.front()->spec.timeout &&
          incoming_.front()->spec.args.size() <= kPrefetchBytes) {
        // Only a ready worker: until its "ready" message is read, the engine watches its pipe.
        if (Worker* idle = idle_worker()) {
          if (!claim(incoming_.front())) {
            incoming_.pop_front();
            // An abandoned map's chunk was completed (CancelledError) into finished_tasks_:
            // the engine delivers it.
            if (!finished_tasks_.empty()) wake();
            return;
          }
          std::vector<std::unique_ptr<Task>> one;
          one.push_back(std::move(incoming_.front()));
          incoming_.pop_front();
          // The engine thread may be asleep in a poll that does not watch this (idle)
          // worker: the worker announces the result itself (WorkerWords), to the caller if
          // it waits and may read the result itself (drive_direct) — one wake-up fewer on
          // the way back too — else to the engine.
          idle->direct = true;
          const auto& spec = one.front()->spec;
          if (spec.control && spec.caller_may_complete)
            spec.control->set_driver(
                std::make_shared<DirectResult>(weak_from_this(), idle->serial, one.front()->id, idle->shared));
          send_to(*idle, one, true);
          return;
        }
      }
    }
    // The engine drains the whole queue each time it wakes: a non-empty queue means a wake
    // is already on its way.
    if (was_empty) wake();
  }

  std::shared_ptr<EngineStream> open_stream(std::function<void(bool)> drain, std::function<void()> abandon) {
    std::lock_guard lock(mutex_);
    check_accepting(false);
    std::uint64_t id = next_stream_id_++;
    streams_.emplace(id, Stream{std::move(drain), std::move(abandon)});
    return std::make_shared<EngineStream>(shared_from_this(), id);
  }

  void close_stream(std::uint64_t id) {
    {
      std::lock_guard lock(mutex_);
      streams_.erase(id);
    }
    wake();  // the engine may be waiting for the last stream to finish
  }

  void post(std::function<void()> fn) {
    {
      std::lock_guard lock(mutex_);
      check_accepting(false);
      auto task = std::make_unique<Task>();
      task->spec.done = [fn = std::move(fn)](std::span<const std::byte>, std::exception_ptr) { fn(); };
      finish(std::move(task), {}, nullptr);
    }
    wake();
  }

  void cancel_pending() {
    // Cancelling runs the results' done callbacks, which may call back into the engine: the
    // states are collected under the lock and cancelled outside it. The tasks stay queued
    // (taking them out would let a closed engine see an empty queue and finish without
    // them); dispatch drops what was cancelled, and a purge does so at once.
    std::vector<std::shared_ptr<StateCore>> controls;
    std::vector<std::shared_ptr<std::atomic<bool>>> maps;
    std::vector<std::function<void()>> abandons;
    {
      std::lock_guard lock(mutex_);
      take_incoming();
      // Open maps that may be given up read no further (their chunks on workers' queues
      // included), so that join() does not drain them.
      for (auto& [id, stream] : streams_)
        if (stream.abandon) abandons.push_back(stream.abandon);
      for (auto& task : pending_) {
        if (task->spec.control) controls.push_back(task->spec.control);
        if (task->spec.abandoned) maps.push_back(task->spec.abandoned);
      }
      purge_requested_ = true;
    }
    for (auto& abandon : abandons) abandon();
    for (auto& flag : maps) flag->store(true, std::memory_order_relaxed);
    for (auto& control : controls) control->cancel();
    wake();
  }

  void close() {
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
    }
    wake();
  }

  void terminate() {
    {
      std::lock_guard lock(mutex_);
      terminating_ = true;
      closed_ = true;
    }
    wake();
  }

  void join() { join_streams_then_workers(true); }

  // join(), or, from the destructor (`to_the_end` false), without reading the open maps'
  // input any further.
  void join_streams_then_workers(bool to_the_end) {
    if (on_engine_thread())
      throw Error("a pool cannot be joined from its own callbacks (the pool's thread would wait for itself)");
    {
      std::lock_guard lock(mutex_);
      if (!closed_) throw Error("join() requires close() or terminate() first");
    }
    drain_streams(to_the_end);
    std::unique_lock lock(mutex_);
    finished_cv_.wait(lock, [&] { return finished_; });
  }

  // The destructor's policy: finish the accepted work (unless terminate() came first), and
  // let the thread go, so that the engine's descriptors close before the destructor returns.
  // An open map's input is not read further: what it submitted is accepted work, the rest of
  // a range that may be endless is not. From a callback, only close: the thread finishes on
  // its own once the callback returns.
  void close_and_join() {
    close();
    if (on_engine_thread()) return;
    join_streams_then_workers(false);
    if (thread_.joinable()) thread_.join();  // its reference to the engine (start()) goes with it
  }

  int processes() const noexcept { return options_.processes; }

  std::vector<int> worker_pids() const {
    std::lock_guard lock(mutex_);
    return pids_;
  }

 private:
  // Requires mutex_. Throws unless new work is accepted: a stream's work is, after close().
  void check_accepting(bool from_stream) const {
    if (broken_) throw BrokenExecutor(broken_reason_);
    if (terminating_ || finished_ || (closed_ && !from_stream)) throw Error("the pool is closed");
  }

  // Reads the rest of every open stream's input (the maps accepted before close()), on this
  // thread. Each drain closes its stream once its input has ended; no stream opens after
  // close().
  void drain_streams(bool to_the_end) {
    std::vector<std::function<void(bool)>> drains;
    {
      std::lock_guard lock(mutex_);
      if (terminating_ || broken_) return;
      for (auto& [id, stream] : streams_) drains.push_back(stream.drain);
    }
    for (auto& drain : drains) drain(to_the_end);
  }

  void wake() {
    std::uint64_t one = 1;
    [[maybe_unused]] ssize_t ignored = ::write(wake_.get(), &one, sizeof one);
  }

  // ---- workers -----------------------------------------------------------------------

  void spawn_worker() {
    auto [task_reader, task_writer] = Pipe(false);
    auto [result_reader, result_writer] = Pipe(false);
    auto shared = std::make_shared<WorkerShared>();
    ++spawned_;
    ProcessOptions process_options{.name = options_.worker_name_prefix + "-" + std::to_string(spawned_),
                                   .daemon = true,
                                   .context = get_context(start_method_name(options_.start_method))};
    const long max_tasks = options_.max_tasks_per_child ? long{*options_.max_tasks_per_child} : LONG_MAX;
    WorkerCgroup cgroup = make_worker_cgroup();
    // Taken before start(): under spawn and forkserver start() returns once the child has
    // booted, and the child may be well into its initializer by then (start-up = time to
    // ready less the initializer's own time, so a later reading would come out negative).
    const Clock::time_point starting = Clock::now();
    Process process = options_.start_method == StartMethod::fork
                          ? forked_worker(std::move(process_options), task_reader, task_writer, result_reader,
                                          result_writer, *shared, max_tasks, cgroup.dir())
                          : exec_worker(std::move(process_options), task_reader, result_writer, *shared, max_tasks,
                                        cgroup.dir());
    process.start();
    auto worker = std::make_unique<Worker>();
    worker->serial = static_cast<std::uint64_t>(spawned_);
    worker->shared = std::move(shared);
    worker->process = std::move(process);
    worker->tasks = std::move(task_writer);
    worker->results = std::move(result_reader);
    worker->cgroup = std::move(cgroup);
    if (options_.max_tasks_per_child) worker->remaining = *options_.max_tasks_per_child;
    worker->started_at = starting;
    if (observed()) {
      WorkerEvent event = event_for(*worker);
      notify(&Observer::on_worker_started, event);
      if (!awaiting_replacement_.empty()) {
        event.replaces = awaiting_replacement_.front();
        awaiting_replacement_.pop_front();
        notify(&Observer::on_worker_replaced, event);
      }
    }
    workers_.push_back(std::move(worker));
    publish_pids();
  }

  // ---- observers (mproc/observer.hpp) ----------------------------------------------------
  // Events are queued under the lock and delivered by flush_finished, outside it, on the
  // engine's thread (src/observe/observer_hub.hpp).

  bool observed() const noexcept { return hub_.active(); }

  WorkerEvent event_for(const Worker& worker) const {
    WorkerEvent event;
    event.worker = worker.serial;
    event.pid = worker.process.pid();
    event.time = Clock::now();
    return event;
  }

  static WorkerCounters counters_of(const Worker& worker) {
    const WorkerWords& words = worker.shared->words();
    WorkerCounters counters;
    counters.working = std::chrono::nanoseconds(words.working_ns.load(std::memory_order_relaxed));
    counters.waiting = std::chrono::nanoseconds(words.waiting_ns.load(std::memory_order_relaxed));
    counters.initializer = std::chrono::nanoseconds(words.initializer_ns.load(std::memory_order_relaxed));
    counters.peak_rss_bytes = words.peak_rss_bytes.load(std::memory_order_relaxed);
    return counters;
  }

  // Requires mutex_.
  void notify(ObserverHub::Callback callback, const WorkerEvent& event) { hub_.queue(callback, event); }

 public:
  // Delivers the queued events now, on the calling thread: the results a caller collected
  // itself (the direct path) queue their events without waking the engine, so a caller about
  // to read what the observers know (insights()) brings them up to date first.
  void flush_events() {
    auto delivering = hub_.hold_delivery();
    std::vector<ObserverHub::Pending> events;
    {
      std::lock_guard lock(mutex_);
      events = hub_.take();
    }
    hub_.deliver(events);
  }

 private:

  // How `worker`, which ended with `exitcode`, ended (for the observers).
  WorkerExit exit_cause(const Worker& worker, int exitcode, bool timed_out, bool initializer_failed) const {
    if (timed_out) return WorkerExit::timed_out;
    if (exitcode == kMemoryRecycleExit) return WorkerExit::recycled;
    if (options_.memory_limit != 0 &&
        (exitcode == kMemoryLimitExit || worker.shared->words().out_of_memory.load(std::memory_order_relaxed) != 0))
      return WorkerExit::memory_limit;
    if (initializer_failed) return WorkerExit::initializer_failed;
    return exitcode == 0 ? WorkerExit::retired : WorkerExit::crashed;
  }

  // Requires mutex_. The death of `worker`, told to the observers.
  void notify_death(const Worker& worker, WorkerExit exit, int exitcode) {
    if (!observed()) return;
    WorkerEvent event = event_for(worker);
    event.exit = exit;
    event.exitcode = exitcode;
    event.counters = counters_of(worker);
    notify(&Observer::on_worker_died, event);
  }

  // Under MemoryLimitBackend::cgroup: a new group with the limit, for the next worker, made
  // before it starts (the worker joins it itself, worker_main). A group that cannot be made
  // (the parent removed, out of ids) leaves that worker under RLIMIT_DATA instead: said on
  // stderr, not fatal — a replacement must not fail the pool.
  WorkerCgroup make_worker_cgroup() {
    if (options_.memory_limit == 0 || options_.memory_backend != MemoryLimitBackend::cgroup) return {};
    char name[64], dir[1200];
    std::snprintf(name, sizeof name, "mproc-%d-%p-%d", static_cast<int>(::getpid()), static_cast<void*>(this),
                  spawned_);
    if (int rc = sys::create_worker_cgroup(cgroup_parent_, name, options_.memory_limit, dir, sizeof dir); rc < 0) {
      std::fprintf(stderr, "mproc: could not make a memory cgroup for a worker (%s): RLIMIT_DATA instead\n",
                   std::strerror(-rc));
      return {};
    }
    return WorkerCgroup(dir, cgroup_parent_.v2);
  }

  // Reaped `worker` was OOM-killed in its memory cgroup: noted where the engine looks for a
  // death by the memory limit (the worker is dead; its words are ours alone now).
  static void note_oom_kill(Worker& worker) {
    if (worker.cgroup.oom_killed()) worker.shared->words().out_of_memory.store(1, std::memory_order_relaxed);
  }

  // A worker forked from this process: it runs worker_main on its copy of the ends.
  Process forked_worker(ProcessOptions options, Connection& task_reader, Connection& task_writer,
                        Connection& result_reader, Connection& result_writer, WorkerShared& shared, long max_tasks,
                        const std::string& cgroup) {
    return Process(std::move(options), [this, &task_reader, &task_writer, &result_reader, &result_writer, &shared,
                                        max_tasks, cgroup] {
      // The parent's ends, and the other workers' connections, are not ours.
      task_writer.close();
      result_reader.close();
      for (auto& other : workers_) {
        other->tasks.close();
        other->results.close();
      }
      // wake_ stays open: a direct result nobody waits for wakes the engine.
      worker_main(WorkerEnds{task_reader, result_writer, shared.words(), wake_.get(), max_tasks,
                             options_.memory_limit, options_.max_memory_per_child, cgroup},
                  options_.initializer.target().local);
    });
  }

  // A worker that is a fresh copy of the program (spawn) or a forkserver child: it receives
  // its ends, the shared words and the engine's eventfd by descriptor.
  Process exec_worker(ProcessOptions options, Connection& task_reader, Connection& result_writer,
                      WorkerShared& shared, long max_tasks, const std::string& cgroup) {
    ProcessTarget target;
    target.local = [] { throw Error("mproc: a spawned pool worker cannot run as a fork"); };
    target.named = [&, max_tasks, cgroup] {
      WorkerConfig config;
      // Moved in and back out: the config borrows the two ends while it is encoded.
      config.tasks = std::move(task_reader);
      config.results = std::move(result_writer);
      config.words = PassedFd{shared.memfd()};
      config.wake = PassedFd{wake_.get()};
      config.max_tasks = max_tasks == LONG_MAX ? 0 : max_tasks;
      config.memory_limit = options_.memory_limit;
      config.max_memory_per_child = options_.max_memory_per_child;
      config.cgroup = cgroup;
      if (options_.initializer) config.initializer = options_.initializer.target().named();
      NamedCall call;
      call.invoker = code_ref(&run_spawned_worker);
      call.function = call.invoker;
      try {
        call.args = dumps(config);
      } catch (...) {
        task_reader = std::move(config.tasks);
        result_writer = std::move(config.results);
        throw;
      }
      task_reader = std::move(config.tasks);
      result_writer = std::move(config.results);
      return call;
    };
    return Process(std::move(options), std::move(target));
  }

  // Requires mutex_.
  void publish_pids() {
    pids_.clear();
    for (auto& worker : workers_) pids_.push_back(worker->process.pid());
  }

  // ---- the engine's thread ----------------------------------------------------------

  void run() {
    // This thread is ours: block SIGPIPE on it for good, so that writes to workers skip the
    // per-write mask juggling (a dead worker shows as EPIPE).
    sigset_t sigpipe_only;
    sigemptyset(&sigpipe_only);
    sigaddset(&sigpipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &sigpipe_only, nullptr);
    sys::sigpipe_handled_on_this_thread();
    current_engine_thread = this;
    current_completer() = this;
    try {
      serve();
    } catch (const std::exception& error) {
      // The engine cannot go on (fork or poll failed): fail every task instead of losing it.
      fail_everything(std::string("the pool's engine failed: ") + error.what());
    }
    flush_finished();
    std::lock_guard lock(mutex_);
    finished_ = true;
    finished_cv_.notify_all();
  }

  void fail_everything(const std::string& reason) {
    std::lock_guard lock(mutex_);
    broken_ = true;
    broken_reason_ = reason;
    take_incoming();
    kill_workers_and_fail_all(std::make_exception_ptr(BrokenExecutor(reason)));
  }

  // Requires mutex_. Moves submitted tasks to the engine's own queue.
  void take_incoming() {
    while (!incoming_.empty()) {
      pending_.push_back(std::move(incoming_.front()));
      incoming_.pop_front();
    }
  }

  // Everything the engine thread does, it does holding mutex_ (so that submit() may hand a
  // task straight to an idle worker), except waiting in poll and running completions, which
  // may call back into the pool.
  void serve() {
    std::unique_lock lock(mutex_);
    for (;;) {
      take_incoming();
      if (terminating_) {
        kill_workers_and_fail_all(
            std::make_exception_ptr(CancelledError("the pool was terminated before the task finished")));
        return;
      }
      if (broken_flag_) fail_pending(std::make_exception_ptr(BrokenExecutor(broken_reason_)));
      if (purge_requested_) purge_pending();
      if (missing_workers_ > 0) {
        // Nothing left to serve after close(): the missing workers are not needed.
        if (closed_ && pending_.empty() && streams_.empty())
          missing_workers_ = 0;
        else
          replace_missing_workers();
        publish_pids();
      }
      dispatch();
      if (closed_ && pending_.empty() && all_idle() && streams_.empty()) {
        shut_down_gracefully();
        return;
      }
      // Results already read ahead are invisible to poll(2): take them first.
      bool drained = false;
      for (auto& worker : workers_)
        if (!worker->direct && worker->results.has_buffered_data()) {
          drain_results(*worker);
          drained = true;
        }
      if (drained || !finished_tasks_.empty() || hub_.queued() > 0) {
        lock.unlock();
        flush_finished();
        lock.lock();
        continue;
      }
      wait_for_events(lock);
    }
  }

  // Requires mutex_ (held by `lock`); releases it while waiting.
  void wait_for_events(std::unique_lock<std::mutex>& lock) {
    std::vector<sys::PollEntry> entries;
    entries.push_back({wake_.get(), POLLIN, 0});
    for (auto& worker : workers_) {
      // An idle worker sends nothing (its death shows on the sentinel), and a direct one's
      // result is its caller's to read: poll(2) ignores a negative fd. Never polling an idle
      // worker's pipe is what lets submit() hand it a direct task while this thread sleeps.
      bool watched =
          !worker->direct && (!worker->ready || !worker->in_flight.empty() || worker->revoked_unacked > 0);
      entries.push_back({watched ? worker->results.fileno() : -1, POLLIN, 0});
      entries.push_back({worker->process.sentinel(), POLLIN, 0});
    }
    sys::Deadline deadline = nearest_deadline();
    // Only this thread changes workers_, so the entries stay valid while the lock is free.
    lock.unlock();
    int ready = sys::poll_fds(entries.data(), entries.size(), deadline);
    lock.lock();
    if (ready < 0) throw OSError(-ready, "poll");
    if (entries[0].revents) {
      std::uint64_t count;
      [[maybe_unused]] ssize_t ignored = ::read(wake_.get(), &count, sizeof count);
      // A worker announces a direct result nobody waits for on the eventfd: take it over.
      for (auto& worker : workers_)
        if (worker->direct && sys::poll_fd(worker->results.fileno(), POLLIN, Clock::now()) > 0) {
          release_direct(*worker);
          drain_results(*worker);
        }
    }
    // Results before deaths: a worker that finished a task and then died keeps the result.
    std::vector<Worker*> dead;
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      if (entries[1 + 2 * i].revents) drain_results(*workers_[i]);
      if (entries[2 + 2 * i].revents) dead.push_back(workers_[i].get());
    }
    for (Worker* worker : dead) handle_exit(*worker);
    enforce_timeouts();
  }

  // Completions run outside the lock, on this thread, in the order they finished.
  void finish(std::unique_ptr<Task> task, std::vector<std::byte> payload, std::exception_ptr error) {
    finished_tasks_.push_back(Finished{std::move(task), std::move(payload), std::move(error)});
  }

  void flush_finished() {
    std::vector<Finished> batch;
    {
      // Events first: an observer (insights) is up to date when the results it concerns arrive.
      auto delivering = hub_.hold_delivery();
      std::vector<ObserverHub::Pending> events;
      {
        std::lock_guard lock(mutex_);
        batch.swap(finished_tasks_);
        events = hub_.take();
      }
      hub_.deliver(events);
    }
    for (auto& done : batch) complete(*done.task, done.payload, std::move(done.error));
  }

  bool all_idle() const {
    return std::all_of(workers_.begin(), workers_.end(), [](const auto& w) { return w->in_flight.empty(); });
  }

  // Until a task's duration is known, none is queued ahead: the first tasks may be long, and
  // work queued on one worker cannot move to another that falls idle.
  std::size_t prefetch_depth() const {
    if (average_service_ns_ <= 0) return 1;
    return std::clamp<std::size_t>(static_cast<std::size_t>(kPrefetchTargetNs / average_service_ns_), 1,
                                   kMaxPrefetchTasks);
  }

  void dispatch() {
    distribute();
    // Work queued behind a task that runs far longer than expected moves to a worker that
    // has nothing to do, as Python's workers would each pull it from the shared queue.
    if (pending_.empty() && revoke_from_stalled_workers()) distribute();
  }

  // Requires mutex_. Takes back the tasks queued behind stalled tasks, if a worker is idle.
  // True if it took any back (they are at the front of pending_ again).
  bool revoke_from_stalled_workers() {
    if (idle_worker() == nullptr) return false;
    const auto now = Clock::now();
    bool took = false;
    for (auto& worker : workers_)
      if (has_work_queued_behind(*worker) && now - worker->front_started > stall_threshold()) took |= revoke(*worker);
    return took;
  }

  // Requires mutex_. Takes back every task queued on `worker` that it has not claimed.
  bool revoke(Worker& worker) {
    const std::uint32_t claimed = set_claim_limit(worker.shared->words(), std::nullopt);
    std::size_t taken = 0;
    // in_flight is in seq order: everything past `claimed` is at its back.
    while (!worker.in_flight.empty() && !seq_at_most(worker.in_flight.back()->seq, claimed)) {
      std::unique_ptr<Task> task = std::move(worker.in_flight.back());
      worker.in_flight.pop_back();
      worker.queued_bytes -= std::min(worker.queued_bytes, task->spec.args.size());
      ++worker.remaining;
      pending_.push_front(std::move(task));
      ++taken;
    }
    worker.revoked_unacked += taken;
    return taken > 0;
  }

  void distribute() {
    if (pending_.empty()) return;
    std::size_t depth = prefetch_depth();
    // Idle workers first, so that queued-ahead work never waits while a worker sleeps.
    std::vector<Worker*> order;
    for (auto& worker : workers_) order.push_back(worker.get());
    std::stable_sort(order.begin(), order.end(),
                     [](Worker* a, Worker* b) { return a->in_flight.size() < b->in_flight.size(); });
    // No worker takes more than its share of what is pending: the durations measured so far
    // may come from other, shorter tasks, and work queued on one worker cannot move to an
    // idle one.
    std::size_t live =
        static_cast<std::size_t>(std::count_if(order.begin(), order.end(), [](Worker* w) { return takes_work(*w); }));
    if (live == 0) return;
    const std::size_t share = (pending_.size() + live - 1) / live;
    const auto now = Clock::now();
    for (Worker* worker : order) {
      if (pending_.empty()) break;
      // A worker still running its initializer takes nothing: a task's time limit counts
      // from its hand-off, and the initializer's time is not the task's.
      if (!takes_work(*worker)) continue;
      // Nothing is queued behind a task that runs far longer than the average: it would
      // wait there while another worker may fall idle.
      if (!worker->in_flight.empty() && now - worker->front_started > stall_threshold()) continue;
      std::vector<std::unique_ptr<Task>> batch;
      std::size_t batch_bytes = 0;
      long quota = worker->remaining;
      while (!pending_.empty() && quota > 0 && worker->in_flight.size() + batch.size() < depth &&
             batch.size() < share) {
        if (!claim(pending_.front())) {
          pending_.pop_front();  // cancelled while it waited
          continue;
        }
        std::size_t size = pending_.front()->spec.args.size();
        bool idle = worker->in_flight.empty() && batch.empty();
        if (!idle && (size > kPrefetchBytes || worker->queued_bytes + batch_bytes + size > kPrefetchBytes)) break;
        const bool solo = pending_.front()->solo;
        if (solo && !batch.empty()) break;
        batch_bytes += size;
        --quota;
        batch.push_back(std::move(pending_.front()));
        pending_.pop_front();
        if (solo) break;
      }
      if (!batch.empty()) send_to(*worker, batch);
    }
  }

  // Requires mutex_. Marks a task as running as it leaves for a worker; false if it must be
  // dropped instead: its result was cancelled (and is final already), or its map was
  // abandoned (it completes with CancelledError; `task` is then moved from).
  bool claim(std::unique_ptr<Task>& task) {
    if (task->spec.control && !task->spec.control->set_running()) return false;
    if (task->spec.abandoned && task->spec.abandoned->load(std::memory_order_relaxed)) {
      finish(std::move(task), {}, abandoned_chunk_error());
      return false;
    }
    return true;
  }

  // Requires mutex_. Drops every queued task that cancel_pending() cancelled or abandoned.
  void purge_pending() {
    purge_requested_ = false;
    std::deque<std::unique_ptr<Task>> kept;
    for (auto& task : pending_) {
      bool cancelled = task->spec.control && task->spec.control->cancelled();
      bool abandoned = task->spec.abandoned && task->spec.abandoned->load(std::memory_order_relaxed);
      if (abandoned && !cancelled)
        finish(std::move(task), {}, abandoned_chunk_error());
      else if (!cancelled)
        kept.push_back(std::move(task));
    }
    pending_.swap(kept);
  }

  // Requires mutex_. Whether `worker` has tasks queued behind the one it runs, which another
  // worker falling idle may take (revoke_from_stalled_workers).
  static bool has_work_queued_behind(const Worker& worker) {
    return worker.in_flight.size() >= 2 && !worker.killed && !worker.direct;
  }
  bool work_queued_behind_a_task() const {
    return std::any_of(workers_.begin(), workers_.end(), [](const auto& w) { return has_work_queued_behind(*w); });
  }

  // How long a running task may take before nothing more is queued behind it.
  Clock::duration stall_threshold() const {
    auto ns = std::max(kPrefetchTargetNs, 4 * average_service_ns_);
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::nano>(ns));
  }

  // Requires mutex_. The engine takes over reading `worker`'s results (it polls its pipe
  // from now on), and a caller asleep in drive_direct wakes to notice.
  void release_direct(Worker& worker) {
    if (!worker.direct) return;
    worker.direct = false;
    WorkerWords& words = worker.shared->words();
    words.result_seq.fetch_add(1, std::memory_order_seq_cst);
    sys::futex_wake(words.result_seq, INT_MAX);
  }

 public:
  // ---- the direct-result path -----------------------------------------------------------
  //
  // A lone task handed to an idle worker by submit() travels caller -> worker directly. Its
  // result would travel worker -> engine thread -> caller: three wake-ups per round trip.
  // When the caller waits for that result (get(), result()), it reads the result pipe itself
  // instead, so the round trip costs two wake-ups, as a plain ping-pong does. If nobody
  // waits, the worker wakes the engine (WorkerWords), which reads it as usual.

  /// Called by a thread blocking on the result of task `task_id`, handed directly to the
  /// worker `serial`. Returns once the result is completed here, or the engine has taken the
  /// task over (the caller then waits on the result's state), or the deadline has passed.
  void drive_direct(std::uint64_t serial, std::uint64_t task_id, WorkerShared& shared, const StateCore& state,
                    const std::optional<Clock::time_point>& deadline) {
    if (sys::current_pid() != owner_) return;
    WorkerWords& words = shared.words();
    for (;;) {
      std::uint32_t seen = words.result_seq.load(std::memory_order_seq_cst);
      words.caller_waiting.store(1, std::memory_order_seq_cst);
      if (state.done() || collect_direct(serial, task_id)) break;
      if (sys::futex_wait(words.result_seq, seen, deadline) == -ETIMEDOUT) {
        // Giving up: the engine reads the result whenever it comes.
        std::lock_guard lock(mutex_);
        if (Worker* worker = direct_worker(serial, task_id)) release_direct(*worker);
        wake();
        break;
      }
    }
    words.caller_waiting.store(0, std::memory_order_seq_cst);
  }

 private:
  // Requires mutex_. The worker still waiting for its caller to collect task `task_id`.
  Worker* direct_worker(std::uint64_t serial, std::uint64_t task_id) const {
    for (auto& worker : workers_)
      if (worker->serial == serial)
        return worker->direct && !worker->in_flight.empty() && worker->in_flight.front()->id == task_id
                   ? worker.get()
                   : nullptr;
    return nullptr;
  }

  // Reads the direct task's result if it has arrived and completes it on this thread. True
  // when the caller is done here: completed, or taken over by the engine.
  bool collect_direct(std::uint64_t serial, std::uint64_t task_id) {
    std::optional<Finished> mine;
    {
      std::lock_guard lock(mutex_);
      Worker* worker = direct_worker(serial, task_id);
      if (worker == nullptr) return true;  // the engine has it
      if (sys::poll_fd(worker->results.fileno(), POLLIN, Clock::now()) <= 0) return false;
      worker->direct = false;  // from now on the engine watches this worker again
      drain_results(*worker);
      auto it = std::find_if(finished_tasks_.begin(), finished_tasks_.end(),
                             [&](const Finished& f) { return f.task->id == task_id; });
      // Done callbacks run on the engine's thread (Python runs them on the executor's), not
      // on this caller's: such a result is left there.
      if (it != finished_tasks_.end() && !(it->task->spec.control && it->task->spec.control->has_done_callbacks())) {
        mine = std::move(*it);
        finished_tasks_.erase(it);
      }
      // Anything else (nothing, normally; or a torn frame: a death) is the engine's, and the
      // worker is free now: tasks held back for it must be dispatched.
      // Events alone wake the engine only in bulk: a wake-up per round trip is what this path saves.
      if (!finished_tasks_.empty() || hub_.queued() >= kEventsBeforeWake || !mine || !pending_.empty() ||
          work_queued_behind_a_task())
        wake();
    }
    if (mine) complete(*mine->task, mine->payload, std::move(mine->error));
    return true;
  }

  // Requires mutex_. A worker that takes new work and would start it at once: ready, not
  // busy, not dying, and past any task taken back from it.
  static bool takes_work(const Worker& worker) {
    return worker.ready && !worker.killed && worker.remaining > 0 && worker.revoked_unacked == 0;
  }
  Worker* idle_worker() const {
    for (auto& worker : workers_)
      if (worker->in_flight.empty() && takes_work(*worker)) return worker.get();
    return nullptr;
  }

  // Requires mutex_. Hands `tasks` to `worker` in one frame.
  void send_to(Worker& worker, std::vector<std::unique_ptr<Task>>& tasks, bool direct = false) {
    // Queued behind a direct task: the engine takes over reading this worker's results.
    if (!direct) release_direct(worker);
    std::vector<WireTask> batch;
    batch.reserve(tasks.size());
    if (worker.in_flight.empty()) worker.front_started = Clock::now();
    for (auto& task : tasks) {
      task->seq = ++worker.sent_seq;
      task->sent_alone = tasks.size() == 1;
      batch.push_back(
          WireTask{task->id, task->seq, task->spec.invoker, task->spec.function, task->spec.args, direct});
      worker.queued_bytes += task->spec.args.size();
      --worker.remaining;
      worker.in_flight.push_back(std::move(task));
    }
    // The worker may claim them once the limit covers them: raised before they are sent.
    // (Never while a taken-back task is unread in its pipe: dispatch skips such a worker.)
    set_claim_limit(worker.shared->words(), worker.sent_seq);
    const auto feeding_start = observed() ? Clock::now() : Clock::time_point{};
    try {
      worker.tasks.send(batch);
    } catch (const Error&) {
      // The worker is gone; its death (seen on its sentinel) requeues these tasks.
    }
    if (observed()) {
      WorkerEvent event = event_for(worker);
      event.tasks = batch.size();
      event.duration = event.time - feeding_start;
      notify(&Observer::on_tasks_sent, event);
    }
  }

  sys::Deadline nearest_deadline() const {
    sys::Deadline nearest;
    if (missing_workers_ > 0) nearest = retry_at_;
    // When a task with others queued behind it becomes stalled, an idle worker may take them.
    if (idle_worker() != nullptr)
      for (auto& worker : workers_)
        if (has_work_queued_behind(*worker)) {
          auto stalls_at = worker->front_started + stall_threshold();
          if (!nearest || stalls_at < *nearest) nearest = stalls_at;
        }
    for (auto& worker : workers_) {
      if (worker->in_flight.empty() || worker->killed) continue;
      const auto& timeout = worker->in_flight.front()->spec.timeout;
      if (!timeout) continue;
      auto deadline = saturating_add(worker->front_started, *timeout);
      if (!nearest || deadline < *nearest) nearest = deadline;
    }
    return nearest;
  }

  void enforce_timeouts() {
    auto now = Clock::now();
    for (auto& worker : workers_) {
      if (worker->in_flight.empty() || worker->killed) continue;
      Task& front = *worker->in_flight.front();
      if (!front.spec.timeout) continue;
      if (now - worker->front_started < *front.spec.timeout) continue;
      // A thread cannot be stopped; a process can. Its death requeues what it had queued.
      front.timed_out = true;
      worker->killed = true;
      worker->process.kill();
    }
  }

  // Requires mutex_. Reads every result that has arrived from `worker`; never waits for one
  // that has not (another thread — a caller collecting a direct result — may have emptied
  // the pipe since poll(2) reported it readable).
  void drain_results(Worker& worker) {
    if (!worker.results.has_buffered_data() && sys::poll_fd(worker.results.fileno(), POLLIN, Clock::now()) <= 0)
      return;
    try {
      do {
        auto result = worker.results.recv<WireResult>();
        if (result.id == 0) {
          worker.ready = true;
          if (observed()) {
            WorkerEvent event = event_for(worker);
            event.duration = Clock::now() - worker.started_at;
            event.counters = counters_of(worker);
            notify(&Observer::on_worker_ready, event);
          }
          continue;
        }
        if (result.skipped) {
          if (worker.revoked_unacked > 0) --worker.revoked_unacked;
          continue;
        }
        if (worker.in_flight.empty() || worker.in_flight.front()->id != result.id) {
          // Protocol violation: results come back in dispatch order. Treat as a crash.
          worker.killed = true;
          worker.process.kill();
          return;
        }
        std::unique_ptr<Task> task = std::move(worker.in_flight.front());
        worker.in_flight.pop_front();
        worker.queued_bytes -= std::min(worker.queued_bytes, task->spec.args.size());
        auto now = Clock::now();
        record_service_time(now - worker.front_started);
        if (observed()) {
          WorkerEvent event;
          event.worker = worker.serial;
          event.pid = worker.process.pid();
          event.time = now;
          event.tasks = 1;
          event.duration = now - worker.front_started;
          event.ok = result.ok;
          event.counters = counters_of(worker);
          notify(&Observer::on_task_finished, event);
          if (worker.in_flight.empty()) notify(&Observer::on_worker_waiting, event);
        }
        worker.front_started = now;
        if (result.ok)
          finish(std::move(task), std::move(result.payload), nullptr);
        else if (options_.memory_limit != 0 && worker.shared->words().out_of_memory.load(std::memory_order_relaxed))
          // The allocation failed under the hard limit: said as such, not as a bare bad_alloc.
          finish(std::move(task), {},
                 std::make_exception_ptr(MemoryLimitError(worker.process.pid(), kMemoryLimitExit, options_.memory_limit,
                                                          result.failure.type_name + ": " + result.failure.message)));
        else
          finish(std::move(task), {}, rebuild_exception(result.failure));
      } while (worker.results.has_buffered_data());
    } catch (const Error&) {
      // End of file or a torn frame: the worker died mid-write; its sentinel reports it.
    }
  }

  void record_service_time(Clock::duration elapsed) {
    double ns = static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count());
    average_service_ns_ = average_service_ns_ <= 0 ? ns : 0.9 * average_service_ns_ + 0.1 * ns;
  }

  void handle_exit(Worker& worker) {
    // A result sent just before the death is still in the pipe, also one the engine was not
    // watching (a direct task's): it counts.
    release_direct(worker);
    drain_results(worker);
    worker.process.join();
    note_oom_kill(worker);
    int exitcode = worker.process.exitcode().value_or(-1);
    pid_t pid = worker.process.pid();
    // Killed by us before it was ready (terminate): not the initializer's fault.
    bool initializer_failed = static_cast<bool>(options_.initializer) && !worker.ready && !worker.killed;
    std::deque<std::unique_ptr<Task>> unfinished = std::move(worker.in_flight);
    bool front_was_running =
        !unfinished.empty() && worker.shared->words().started.load(std::memory_order_relaxed) == unfinished.front()->id;
    // Past a failed allocation under the hard limit (the worker's new-handler said so), or
    // after its own report of one: the death is the limit's.
    const bool out_of_memory =
        options_.memory_limit != 0 &&
        (exitcode == kMemoryLimitExit || worker.shared->words().out_of_memory.load(std::memory_order_relaxed) != 0);
    const bool timed_out = front_was_running && unfinished.front()->timed_out;
    notify_death(worker, exit_cause(worker, exitcode, timed_out, initializer_failed), exitcode);
    if (front_was_running) {
      // The front task was running: it is lost with the worker. The rest never started.
      std::unique_ptr<Task> lost = std::move(unfinished.front());
      unfinished.pop_front();
      std::exception_ptr error =
          lost->timed_out
              ? std::make_exception_ptr(TimeoutError("task timed out; worker " + std::to_string(pid) + " was killed"))
          : out_of_memory
              ? std::make_exception_ptr(MemoryLimitError(pid, exitcode, options_.memory_limit,
                                                         "the worker died while running the task"))
              : std::make_exception_ptr(WorkerLostError(pid, exitcode, "the worker died while running the task"));
      finish(std::move(lost), {}, error);
    }
    // A planned retirement (soft memory limit, or the hard limit reported after a task) left
    // its queued tasks unstarted through no fault of theirs: they go back as they were.
    const bool planned = exitcode == kMemoryRecycleExit || exitcode == kMemoryLimitExit;
    if (!front_was_running && !unfinished.empty() && !planned) {
      // The worker died before it started its next task: perhaps because of that task (its
      // batch could not be received — decoding failed, memory ran out — or receiving it
      // killed the worker). A task that travelled alone is then the suspect: it fails at
      // once when the worker said it could not receive it, and after a second such death
      // otherwise, instead of killing worker after worker. The tasks of a batch travel alone
      // from now on, so that a culprit among them is found and the others run.
      Task& next = *unfinished.front();
      if (next.sent_alone) ++next.deaths_before_start;
      const bool unreadable = exitcode == kBatchUnreadableExit;
      if (next.sent_alone && (unreadable || next.deaths_before_start >= 2)) {
        std::unique_ptr<Task> culprit = std::move(unfinished.front());
        unfinished.pop_front();
        std::exception_ptr error =
            unreadable ? std::make_exception_ptr(SerializationError(
                             "the worker " + std::to_string(pid) +
                             " could not receive this task: decoding its arguments failed or ran out of memory"))
                       : std::make_exception_ptr(WorkerLostError(
                             pid, exitcode, "two workers died holding this task before they could start it"));
        finish(std::move(culprit), {}, error);
      }
      for (auto& task : unfinished) task->solo = true;
    }
    while (!unfinished.empty()) {
      unfinished.back()->timed_out = false;  // it never started: its time limit starts afresh
      pending_.push_front(std::move(unfinished.back()));
      unfinished.pop_back();
    }
    const std::uint64_t worker_serial = worker.serial;
    std::erase_if(workers_, [&](const auto& w) { return w.get() == &worker; });
    if (initializer_failed) {
      broken_ = true;
      broken_flag_ = true;
      broken_reason_ = "the pool's initializer failed in worker " + std::to_string(pid) + " (exit code " +
                       std::to_string(exitcode) + ")";
    }
    // An open stream (an imap accepted before close()) may still submit: keep a worker for it.
    bool stopping =
        terminating_ || broken_ || (closed_ && pending_.empty() && incoming_.empty() && streams_.empty());
    if (!stopping) {
      if (observed()) awaiting_replacement_.push_back(worker_serial);
      ++missing_workers_;
      replace_missing_workers();
    }
    publish_pids();
  }

  // Requires mutex_. Starts the workers that died and were not replaced yet. A start that
  // fails for want of a resource (descriptors, processes, memory: OSError or ProcessError)
  // is retried with backoff while the other workers serve; only when the pool has no worker
  // left and none could be started for kGiveUpAfter is it broken.
  void replace_missing_workers() {
    static constexpr auto kFirstRetry = std::chrono::milliseconds(10);
    static constexpr auto kLongestRetry = std::chrono::seconds(1);
    static constexpr auto kGiveUpAfter = std::chrono::seconds(5);
    while (missing_workers_ > 0) {
      const auto now = Clock::now();
      if (now < retry_at_) return;
      try {
        spawn_worker();
      } catch (const Error& error) {
        retry_backoff_ = std::min<Clock::duration>(
            kLongestRetry, retry_backoff_ == Clock::duration::zero() ? Clock::duration(kFirstRetry) : 2 * retry_backoff_);
        retry_at_ = now + retry_backoff_;
        if (!unable_since_) unable_since_ = now;
        if (workers_.empty() && now - *unable_since_ >= kGiveUpAfter) {
          broken_ = true;
          broken_flag_ = true;
          broken_reason_ = std::string("the pool has no worker left and could not start one for 5 s: ") + error.what();
          missing_workers_ = 0;
        }
        return;
      }
      --missing_workers_;
      retry_backoff_ = Clock::duration::zero();
      retry_at_ = {};
      unable_since_.reset();
    }
  }

  // Requires mutex_.
  void fail_pending(const std::exception_ptr& error) {
    for (auto& task : pending_) finish(std::move(task), {}, error);
    pending_.clear();
  }

  // How long a worker that has read its stop may take to exit before it is killed. Exiting
  // is a flush of stdio and _exit: microseconds. A worker still there seconds later is stuck
  // where nothing of the pool's is left to lose — its stdout a pipe nobody reads, a lock
  // another thread of the parent held when it was forked (a sanitizer's allocator, say), a
  // manager that no longer answers its last flush — and waiting for it would hang close()
  // and join() for ever.
  static constexpr auto kExitGrace = std::chrono::seconds(10);

  // Requires mutex_. Waits for `worker` to exit after its stop. One still in its initializer
  // is waited for as long as that takes (it reads the stop once it is ready); from the moment
  // it is ready, it has kExitGrace, then it is killed.
  void join_after_stop(Worker& worker) {
    std::optional<Clock::time_point> ready_since;
    for (;;) {
      if (!ready_since) {
        drain_results(worker);  // its ready message, if it came
        if (worker.ready) ready_since = Clock::now();
      }
      const auto slice = ready_since ? kExitGrace - (Clock::now() - *ready_since) : Clock::duration(std::chrono::milliseconds(100));
      if (slice <= Clock::duration::zero()) break;
      if (worker.process.join(slice)) return;
    }
    worker.process.kill();
    worker.process.join();
  }

  void shut_down_gracefully() {
    for (auto& worker : workers_) {
      try {
        worker->tasks.send(std::vector<WireTask>{});  // orderly stop
      } catch (const Error&) {
      }
    }
    for (auto& worker : workers_) {
      join_after_stop(*worker);
      // A worker still starting when the pool closed sent its ready message before it read
      // the stop: it is in the pipe, unread, and the observers are owed it before the death.
      drain_results(*worker);
      note_oom_kill(*worker);
      // One may have retired on its own just before (memory limits): its code says so.
      const int exitcode = worker->process.exitcode().value_or(0);
      notify_death(*worker, exit_cause(*worker, exitcode, false, false), exitcode);
    }
    workers_.clear();
    publish_pids();
  }

  // Requires mutex_. terminate(), or an engine that cannot go on: every unfinished task
  // ends with `error`.
  void kill_workers_and_fail_all(const std::exception_ptr& error) {
    for (auto& worker : workers_) {
      release_direct(*worker);
      worker->process.kill();
    }
    for (auto& worker : workers_) {
      worker->process.join();
      notify_death(*worker, WorkerExit::terminated, worker->process.exitcode().value_or(-SIGKILL));
      for (auto& task : worker->in_flight) finish(std::move(task), {}, error);
    }
    workers_.clear();
    publish_pids();
    fail_pending(error);
  }

  const EngineOptions options_;
  sys::CgroupParent cgroup_parent_;  // where the workers' memory cgroups are made (backend cgroup)
  const pid_t owner_;
  sys::UniqueFd wake_;
  std::thread thread_;

  mutable std::mutex mutex_;  // guards everything below up to the engine-thread-only state
  std::condition_variable finished_cv_;
  std::deque<std::unique_ptr<Task>> incoming_;
  std::uint64_t next_id_ = 1;
  bool closed_ = false;
  bool terminating_ = false;
  bool broken_ = false;
  bool finished_ = false;
  std::string broken_reason_;
  std::vector<int> pids_;

  // Changed by the engine thread, and by submit() handing a task to an idle worker.
  struct Finished {
    std::unique_ptr<Task> task;
    std::vector<std::byte> payload;
    std::exception_ptr error;
  };
  std::vector<Finished> finished_tasks_;
  // Observer events waiting for flush_finished, and the dead workers whose replacement is
  // still to be told (on_worker_replaced).
  ObserverHub hub_{options_.observers};  // its queue guarded by mutex_
  static constexpr std::size_t kEventsBeforeWake = 256;
  std::deque<std::uint64_t> awaiting_replacement_;
  std::deque<std::unique_ptr<Task>> pending_;
  std::vector<std::unique_ptr<Worker>> workers_;
  int spawned_ = 0;
  double average_service_ns_ = 0;
  bool broken_flag_ = false;
  // Workers that died and could not be replaced yet (out of descriptors or processes): the
  // engine retries with backoff and serves with the workers it has meanwhile.
  int missing_workers_ = 0;
  Clock::time_point retry_at_{};
  Clock::duration retry_backoff_{};
  std::optional<Clock::time_point> unable_since_;
  bool purge_requested_ = false;
  // Open lazy maps (EngineStream), by id: how to read the rest of each one's input.
  struct Stream {
    std::function<void(bool to_the_end)> drain;
    std::function<void()> abandon;
  };
  std::map<std::uint64_t, Stream> streams_;
  std::uint64_t next_stream_id_ = 1;
};

EngineStream::~EngineStream() {
  if (core_) core_->close_stream(id_);
}

void EngineStream::submit(std::vector<TaskSpec> tasks) {
  core_->check_caller();
  core_->submit(std::move(tasks), true);
}

void DirectResult::drive(const StateCore& state, const std::optional<std::chrono::steady_clock::time_point>& deadline) {
  if (auto engine = engine_.lock()) engine->drive_direct(serial_, task_id_, *shared_, state, deadline);
}

namespace {
// A hard limit below what a forked worker starts with could never let it allocate anything
// (a sanitizer build's shadow reservations alone pass any sane limit): refused up front.
void check_memory_limit(const EngineOptions& options) {
  if (options.memory_limit == 0) return;
  if (options.memory_limit < (std::uint64_t{16} << 20))
    throw std::invalid_argument("mproc: memory_limit must be at least 16 MiB");
  std::uint64_t data = 0;
  // (RLIMIT_DATA only: a memory cgroup charges what the worker touches, not what it inherits.)
  if (options.memory_backend == MemoryLimitBackend::rlimit && options.start_method == StartMethod::fork &&
      sys::data_size_bytes(data) == 0 && data >= options.memory_limit)
    throw std::invalid_argument("mproc: memory_limit (" + std::to_string(options.memory_limit >> 20) +
                                " MiB) is below the private memory a forked worker starts with (" +
                                std::to_string(data >> 20) + " MiB, this process's VmData)");
}
}  // namespace

Engine::Engine(EngineOptions options) {
  if (options.processes <= 0) throw std::invalid_argument("mproc: the number of processes must be at least 1");
  if (options.start_method != StartMethod::fork && options.initializer && !options.initializer.target().named)
    throw std::invalid_argument(std::string("mproc: under the '") + start_method_name(options.start_method) +
                                "' start method the initializer must be a plain function (a free function, a static "
                                "member function or a lambda without captures) with serializable initargs: "
                                "mproc::Initializer(init, initargs...)");
  if (options.max_tasks_per_child && *options.max_tasks_per_child <= 0)
    throw std::invalid_argument("mproc: maxtasksperchild must be at least 1");
  if (options.task_timeout && options.task_timeout->count() <= 0)
    throw std::invalid_argument("mproc: the task timeout must be positive");
  check_memory_limit(options);
  core_ = std::make_shared<EngineCore>(std::move(options));
  core_->start();
}

// Waits for the accepted work (after terminate(): for the killed workers). Only in the
// process that made the engine: a worker holds a forked copy that is not its to stop.
Engine::~Engine() {
  if (inside_worker || sys::current_pid() != core_->owner()) return;
  try {
    core_->close_and_join();
  } catch (const std::exception& error) {
    std::fprintf(stderr, "mproc: closing a pool failed: %s\n", error.what());
  }
}

// In a worker the engine object is a copy made by fork, possibly half-constructed (the
// first workers are forked by the constructor), so the worker flag is checked before the
// object is touched.
void Engine::check_caller() const {
  if (inside_worker) throw Error("a pool cannot be used from one of its own tasks (it would deadlock)");
  core_->check_caller();
}

void Engine::submit(TaskSpec task) {
  std::vector<TaskSpec> one;
  one.push_back(std::move(task));
  submit(std::move(one));
}
void Engine::submit(std::vector<TaskSpec> tasks) {
  check_caller();
  core_->submit(std::move(tasks));
}
std::shared_ptr<EngineStream> Engine::open_stream(std::function<void(bool)> drain, std::function<void()> abandon) {
  check_caller();
  return core_->open_stream(std::move(drain), std::move(abandon));
}
void Engine::post(std::function<void()> fn) {
  check_caller();
  core_->post(std::move(fn));
}
void Engine::cancel_pending() {
  check_caller();
  core_->cancel_pending();
}
void Engine::close() {
  check_caller();
  core_->close();
}
void Engine::terminate() {
  check_caller();
  core_->terminate();
}
void Engine::join() {
  check_caller();
  core_->join();
}
void Engine::flush_events() {
  check_caller();
  core_->flush_events();
}
int Engine::processes() const noexcept { return inside_worker ? 0 : core_->processes(); }
std::vector<int> Engine::worker_pids() const {
  check_caller();
  return core_->worker_pids();
}

}  // namespace mproc::detail
