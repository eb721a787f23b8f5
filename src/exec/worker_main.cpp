#include "exec/worker_main.hpp"

#include <chrono>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <new>
#include <unistd.h>

#include "mproc/error.hpp"
#include "mproc/process.hpp"
#include "sys/fd.hpp"
#include "sys/futex.hpp"
#include "sys/procstat.hpp"
#include "sys/rlimit.hpp"
#include "sys/worker_cgroup.hpp"
#include "sys/shm.hpp"

namespace mproc::detail {

std::atomic<bool> inside_worker{false};

namespace {

// In a worker, after sending the result of a directly handed task: wake the caller that
// waits for it, or the engine if none does (see WorkerWords).
void announce_direct_result(WorkerWords& words, int wake) {
  words.result_seq.fetch_add(1, std::memory_order_seq_cst);
  if (words.caller_waiting.load(std::memory_order_seq_cst) != 0) {
    sys::futex_wake(words.result_seq, INT_MAX);
  } else {
    std::uint64_t one = 1;
    [[maybe_unused]] ssize_t ignored = ::write(wake, &one, sizeof one);
  }
}

using Clock = std::chrono::steady_clock;

std::uint64_t ns_between(Clock::time_point start, Clock::time_point end) {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(end - start).count());
}

// A single writer: a plain load and store are enough (see WorkerWords).
void add_to(std::atomic<std::uint64_t>& word, std::uint64_t amount) {
  word.store(word.load(std::memory_order_relaxed) + amount, std::memory_order_relaxed);
}

// The words the new-handler reports a failed allocation to (one worker per process).
WorkerWords* words_for_new_handler = nullptr;

// Runs when operator new cannot get memory: notes it for the engine, then fails as usual.
// The note survives a task that catches the bad_alloc and a worker that dies of it.
void note_allocation_failure() {
  if (words_for_new_handler != nullptr) words_for_new_handler->out_of_memory.store(1, std::memory_order_relaxed);
  throw std::bad_alloc();
}

// Ends the worker, its peak memory published first (the engine reads it after the death).
[[noreturn]] void leave(WorkerWords& words, int status) {
  words.peak_rss_bytes.store(sys::peak_rss_bytes(), std::memory_order_relaxed);
  mproc::exit(status);
}

// After a task, under max_memory_per_child: whether the worker should retire. The peak
// (one system call) rules most checks out before the current size is read from /proc.
bool over_soft_limit(std::uint64_t limit) {
  if (sys::peak_rss_bytes() <= limit) return false;
  std::uint64_t resident = 0;
  return sys::current_rss_bytes(resident) == 0 && resident > limit;
}

}  // namespace

[[noreturn]] void worker_main(WorkerEnds ends, const std::function<void()>& initializer) {
  Connection& tasks = ends.tasks;
  Connection& results = ends.results;
  WorkerWords& words = ends.words;
  // Ctrl-C reaches the whole process group: the parent handles it and shuts the pool
  // down; a worker dying of it mid-task would only turn it into a lost task.
  std::signal(SIGINT, SIG_IGN);
  // Our process: a vanished engine shows as EPIPE on the result pipe; no signal needed.
  std::signal(SIGPIPE, SIG_IGN);
  sys::sigpipe_handled_on_this_thread();
  inside_worker = true;
  if (ends.memory_limit != 0) {
    // Before the initializer, which is the worker's too. A limit that cannot be set leaves
    // the worker without one: said on stderr, not fatal (the engine then sees plain deaths).
    //
    // Under a memory cgroup the worker moves itself in, here, rather than the engine writing
    // its pid after start(): the group exists before the worker does, so joining cannot
    // miss it, and nothing the worker allocates (its initializer, its first task) runs
    // before the limit holds — an engine-side move would leave that window open, as long as
    // the engine's thread takes to get there. A worker that dies before joining leaves the
    // group empty; the engine removes it all the same. Only pages touched from now on are
    // charged to the group (the kernel does not move earlier charges).
    int rc = -ENOENT;
    if (!ends.cgroup.empty()) {
      rc = sys::join_cgroup(ends.cgroup.c_str());
      if (rc < 0)
        std::fprintf(stderr, "mproc: could not join the worker's memory cgroup (%s): RLIMIT_DATA instead\n",
                     std::strerror(-rc));
    }
    if (rc < 0) {
      if ((rc = sys::limit_data_size(ends.memory_limit)) < 0)
        std::fprintf(stderr, "mproc: could not set the worker's memory limit: %s\n", std::strerror(-rc));
      // Under RLIMIT_DATA an allocation past the limit fails: noted for the engine. (Under a
      // cgroup it does not fail, the kernel kills the worker: the engine reads the group's
      // OOM-kill count instead.)
      words_for_new_handler = &words;
      std::set_new_handler(note_allocation_failure);
    }
  }
  const auto init_start = Clock::now();
  if (initializer) {
    try {
      initializer();
    } catch (const std::exception& error) {
      std::fprintf(stderr, "mproc: pool initializer failed: %s\n", error.what());
      mproc::exit(kInitializerFailedExit);
    } catch (const SystemExit&) {
      throw;
    } catch (...) {
      std::fprintf(stderr, "mproc: pool initializer failed\n");
      mproc::exit(kInitializerFailedExit);
    }
  }
  // One clock reading per task and one per batch: each reading ends one span and starts the
  // next (waiting, then each task in turn; sending a result counts toward the span after it).
  Clock::time_point mark = Clock::now();
  words.initializer_ns.store(ns_between(init_start, mark), std::memory_order_relaxed);
  words.peak_rss_bytes.store(sys::peak_rss_bytes(), std::memory_order_relaxed);
  results.send(WireResult{});  // ready
  const long limit = ends.max_tasks;
  long done = 0;
  const auto pid = static_cast<std::int32_t>(::getpid());
  auto next_rss_sample = mark;
  for (;;) {
    std::vector<WireTask> batch;
    try {
      batch = tasks.recv<std::vector<WireTask>>();
    } catch (const EOFError&) {
      leave(words, 0);
    } catch (const std::exception& error) {
      // Nothing of the batch was claimed, so nothing is lost; the engine learns from the exit
      // code that this batch, not a task, killed the worker.
      std::fprintf(stderr, "mproc: a pool worker could not receive its tasks: %s\n", error.what());
      mproc::exit(kBatchUnreadableExit);
    }
    {
      const auto now = Clock::now();
      add_to(words.waiting_ns, ns_between(mark, now));
      mark = now;
    }
    if (batch.empty()) leave(words, 0);  // orderly stop
    for (auto& task : batch) {
      WireResult result;
      result.id = task.id;
      if (!claim_task(words, task.seq)) {
        // Taken back for another worker: say so, so the engine knows this one is past it.
        result.skipped = true;
        results.send(result);
        continue;
      }
      // Relaxed is enough: the engine reads it only after this process is dead.
      words.started.store(task.id, std::memory_order_relaxed);
      words.out_of_memory.store(0, std::memory_order_relaxed);
      try {
        resolve<std::remove_pointer_t<Invoker>>(task.invoker)(task.function, task.args, result.payload);
      } catch (const SystemExit&) {
        throw;  // mproc::exit() in a task ends the worker, as sys.exit does in Python
      } catch (...) {
        result.ok = false;
        result.payload.clear();
        result.failure = describe_current_exception(pid);
      }
      {
        const auto now = Clock::now();
        add_to(words.working_ns, ns_between(mark, now));
        mark = now;
      }
      // Past an allocation failure under the hard limit the worker retires after this
      // result (its heap may be in pieces); past the soft limit, it makes room for a fresh one.
      int retire = -1;
      if (ends.memory_limit != 0 && words.out_of_memory.load(std::memory_order_relaxed) != 0)
        retire = kMemoryLimitExit;
      else if (ends.max_memory_per_child != 0 && over_soft_limit(ends.max_memory_per_child))
        retire = kMemoryRecycleExit;
      if (retire >= 0) words.peak_rss_bytes.store(sys::peak_rss_bytes(), std::memory_order_relaxed);
      results.send(result);
      if (task.direct) announce_direct_result(words, ends.wake);
      if (retire >= 0) mproc::exit(retire);
      if (++done >= limit) leave(words, 0);
    }
    // At most every 10 ms of batches, not per task: a system call per tiny task would show
    // (a worker's death publishes it again, leave()).
    if (mark >= next_rss_sample) {
      words.peak_rss_bytes.store(sys::peak_rss_bytes(), std::memory_order_relaxed);
      next_rss_sample = mark + std::chrono::milliseconds(10);
    }
  }
}

void run_spawned_worker(const CodeRef&, std::span<const std::byte> encoded, std::vector<std::byte>&) {
  auto config = loads<WorkerConfig>(encoded);
  // The initializer's arguments are decoded when it runs, still inside the start message's
  // descriptor window (its invoker closes the window); without one, close it now.
  std::function<void()> initializer;
  if (config.initializer) {
    initializer = [&call = *config.initializer] { run_named_call(call); };
  } else {
    end_fd_import();
  }
  sys::UniqueFd words_fd(config.words.fd), wake_fd(config.wake.fd);
  sys::SharedMapping mapping;
  if (int rc = sys::map_fd_shared(words_fd.get(), sizeof(WorkerWords), mapping); rc < 0)
    throw OSError(-rc, "mmap (worker words)");
  auto* words = static_cast<WorkerWords*>(mapping.get());
  long limit = config.max_tasks > 0 ? static_cast<long>(config.max_tasks) : LONG_MAX;
  worker_main(WorkerEnds{config.tasks, config.results, *words, wake_fd.get(), limit, config.memory_limit,
                         config.max_memory_per_child, std::move(config.cgroup)},
              initializer);
}

}  // namespace mproc::detail
