#include "worker_main.hpp"

#include <climits>
#include <csignal>
#include <cstdio>
#include <unistd.h>

#include "mproc/error.hpp"
#include "mproc/process.hpp"
#include "sys/fd.hpp"
#include "sys/futex.hpp"
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
  results.send(WireResult{});  // ready
  const long limit = ends.max_tasks;
  long done = 0;
  const auto pid = static_cast<std::int32_t>(::getpid());
  for (;;) {
    std::vector<WireTask> batch;
    try {
      batch = tasks.recv<std::vector<WireTask>>();
    } catch (const EOFError&) {
      mproc::exit(0);
    } catch (const std::exception& error) {
      // Nothing of the batch was claimed, so nothing is lost; the engine learns from the exit
      // code that this batch, not a task, killed the worker.
      std::fprintf(stderr, "mproc: a pool worker could not receive its tasks: %s\n", error.what());
      mproc::exit(kBatchUnreadableExit);
    }
    if (batch.empty()) mproc::exit(0);  // orderly stop
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
      try {
        resolve<std::remove_pointer_t<Invoker>>(task.invoker)(task.function, task.args, result.payload);
      } catch (const SystemExit&) {
        throw;  // mproc::exit() in a task ends the worker, as sys.exit does in Python
      } catch (...) {
        result.ok = false;
        result.payload.clear();
        result.failure = describe_current_exception(pid);
      }
      results.send(result);
      if (task.direct) announce_direct_result(words, ends.wake);
      if (++done >= limit) mproc::exit(0);
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
  worker_main(WorkerEnds{config.tasks, config.results, *words, wake_fd.get(), limit}, initializer);
}

}  // namespace mproc::detail
