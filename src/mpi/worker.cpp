// The worker side of mproc::mpi: a rank (world mode, CommExecutor) or a spawned copy that
// runs the tasks its root sends, the way a process pool worker runs them (worker_main.cpp).
#include <chrono>
#include <cstdio>
#include <sched.h>
#include <thread>
#include <unistd.h>

#include "backoff.hpp"
#include "mproc/mpi.hpp"
#include "protocol.hpp"
#include "runtime.hpp"

namespace mproc::detail {

namespace {

std::atomic<bool> serving{false};

// A failure here has no future to go to: abort the job as a dead rank would (the launcher
// then ends every rank and reports it).
[[noreturn]] void abort_job(MPI_Comm comm, const char* what) {
  std::fprintf(stderr, "mproc::mpi: worker rank: %s; aborting the job\n", what);
  MPI_Abort(comm, kBatchUnreadableExit);
  ::_exit(kBatchUnreadableExit);
}

void send_results(MPI_Comm comm, int root, int tag, ResultBatch& batch, std::vector<std::byte>& out) {
  out.clear();
  dumps(batch, out);
  if (out.size() > static_cast<std::size_t>(INT_MAX)) abort_job(comm, "a result batch is over 2 GiB");
  auto guard = mpi_guard();
  if (MPI_Send(out.data(), static_cast<int>(out.size()), MPI_BYTE, root, tag + 1, comm) != MPI_SUCCESS)
    abort_job(comm, "MPI_Send of results failed");
}

}  // namespace

void serve(MPI_Comm comm, int root) noexcept {
  serving.store(true, std::memory_order_relaxed);
  const auto pid = static_cast<std::int32_t>(::getpid());
  // Results of a batch go back together, unless it runs long: then each as it ends, so a
  // slow task's neighbours are not held back.
  constexpr auto kFlushAfter = std::chrono::milliseconds(1);
  std::vector<std::byte> in, out;
  PollBackoff backoff;
  std::size_t last_batch = 0;
  for (;;) {
    int flag = 0;
    MPI_Status status;
    {
      auto guard = mpi_guard();
      if (MPI_Iprobe(root, MPI_ANY_TAG, comm, &flag, &status) != MPI_SUCCESS) abort_job(comm, "MPI_Iprobe failed");
    }
    if (!flag) {
      // A lone task per message: a round trip, whose next task comes within microseconds of
      // the answer. Batches: the root is busy producing them, and needs the CPU more than
      // this rank needs to spin (see PollBackoff).
      auto pause = backoff.next(/*latency=*/last_batch <= 1);
      if (pause.count() == 0) {
        ::sched_yield();
      } else {
        std::this_thread::sleep_for(pause);
      }
      continue;
    }
    backoff.reset();
    int count = 0;
    MPI_Get_count(&status, MPI_BYTE, &count);
    in.resize(static_cast<std::size_t>(count));
    {
      auto guard = mpi_guard();
      if (MPI_Recv(in.data(), count, MPI_BYTE, root, status.MPI_TAG, comm, MPI_STATUS_IGNORE) != MPI_SUCCESS)
        abort_job(comm, "MPI_Recv of tasks failed");
    }
    if (status.MPI_TAG == kStopTag) break;
    std::vector<WireTask> tasks;
    try {
      tasks = loads<std::vector<WireTask>>(in);
    } catch (const std::exception& error) {
      abort_job(comm, error.what());
    }
    last_batch = tasks.size();
    ResultBatch batch;
    auto started = std::chrono::steady_clock::now();
    auto batch_started = started;
    for (auto& task : tasks) {
      WireResult result;
      result.id = task.id;
      try {
        resolve<std::remove_pointer_t<Invoker>>(task.invoker)(task.function, task.args, result.payload);
      } catch (...) {
        result.ok = false;
        result.payload.clear();
        result.failure = describe_current_exception(pid);
      }
      batch.results.push_back(std::move(result));
      auto now = std::chrono::steady_clock::now();
      if (now - batch_started >= kFlushAfter && &task != &tasks.back()) {
        batch.busy_ns = static_cast<std::uint64_t>(std::chrono::nanoseconds(now - started).count());
        send_results(comm, root, status.MPI_TAG, batch, out);
        batch.results.clear();
        started = now;
      }
    }
    batch.busy_ns = static_cast<std::uint64_t>(
        std::chrono::nanoseconds(std::chrono::steady_clock::now() - started).count());
    send_results(comm, root, status.MPI_TAG, batch, out);
    backoff.reset();
  }
  serving.store(false, std::memory_order_relaxed);
}

}  // namespace mproc::detail

namespace mproc::mpi {

bool is_worker() noexcept { return ::mproc::detail::serving.load(std::memory_order_relaxed); }

}  // namespace mproc::mpi
