// mproc::mpi's executors: how each launch model finds (or starts) its worker ranks.
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <stdexcept>
#include <string>
#include <unistd.h>
#include <vector>

#include "mproc/error.hpp"
#include "mproc/mpi.hpp"
#include "process/boot.hpp"
#include "protocol.hpp"
#include "runtime.hpp"

namespace mproc::mpi {

namespace {

using mproc::detail::MpiChannel;
using mproc::detail::mpi_guard;

std::string program_path() {
  // MPI's launcher execs the path itself: "/proc/self/exe" would name the launcher.
  std::vector<char> path(PATH_MAX);
  for (;;) {
    ssize_t length = ::readlink("/proc/self/exe", path.data(), path.size());
    if (length < 0) throw OSError(errno, "readlink /proc/self/exe");
    if (static_cast<std::size_t>(length) < path.size()) return std::string(path.data(), static_cast<std::size_t>(length));
    path.resize(path.size() * 2);
  }
}

int universe_workers() {
  int* universe = nullptr;
  int found = 0;
  auto guard = mpi_guard();
  MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_UNIVERSE_SIZE, &universe, &found);
  return found && universe != nullptr && *universe > 1 ? *universe - 1 : 1;
}

// Open MPI 4.1.4 with PMIx 4.2 (Debian 12's) hangs in a small fraction of spawns: a new
// copy never returns from PMIx_Init and MPI_Comm_spawn waits for it forever (upstream:
// openpmix/openpmix#2735). A hang is worse than a failure: past the limit the job is aborted
// with a message saying why and exit status kSpawnHungExit. MPROC_MPI_SPAWN_TIMEOUT
// (seconds) changes the limit.
constexpr int kSpawnHungExit = 75;  // EX_TEMPFAIL: running again may well succeed

std::chrono::seconds spawn_limit() {
  if (const char* text = std::getenv("MPROC_MPI_SPAWN_TIMEOUT")) {
    char* end = nullptr;
    long seconds = std::strtol(text, &end, 10);
    if (end != text && *end == '\0' && seconds > 0) return std::chrono::seconds(seconds);
  }
  return std::chrono::seconds(60);
}

class SpawnWatchdog {
 public:
  SpawnWatchdog(int count, std::chrono::seconds limit)
      : thread_([this, count, limit] {
          std::unique_lock lock(mutex_);
          if (cv_.wait_for(lock, limit, [this] { return done_; })) return;
          std::fprintf(stderr,
                       "mproc::mpi: MPI_Comm_spawn of %d copies has not returned after %lld s (a spawned copy hangs "
                       "in MPI's start-up: a known Open MPI 4.1 / PMIx 4 defect); aborting the job (status %d). "
                       "World mode (mpiexec -n N) does not spawn.\n",
                       count, static_cast<long long>(limit.count()), kSpawnHungExit);
          std::fflush(stderr);
          MPI_Abort(MPI_COMM_WORLD, kSpawnHungExit);
          ::_exit(kSpawnHungExit);
        }) {}
  ~SpawnWatchdog() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
      cv_.notify_one();  // under the lock: the thread may be about to wait
    }
    thread_.join();
  }
  SpawnWatchdog(const SpawnWatchdog&) = delete;
  SpawnWatchdog& operator=(const SpawnWatchdog&) = delete;

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;  // last: starts once the members it uses exist
};

MpiChannel spawn_workers(int count) {
  std::string program = program_path();
  std::string marker = mproc::detail::kBootArgument;
  std::string kind = "mpi";
  char* argv[] = {marker.data(), kind.data(), nullptr};
  std::vector<int> codes(static_cast<std::size_t>(count), MPI_SUCCESS);
  MPI_Comm children = MPI_COMM_NULL;
  int rc = MPI_SUCCESS;
  {
    SpawnWatchdog watchdog(count, spawn_limit());
    auto guard = mpi_guard();
    // Errors of the spawn are raised on MPI_COMM_SELF: returned, for this call only.
    MPI_Errhandler previous;
    MPI_Comm_get_errhandler(MPI_COMM_SELF, &previous);
    MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN);
    rc = MPI_Comm_spawn(program.c_str(), argv, count, MPI_INFO_NULL, 0, MPI_COMM_SELF, &children, codes.data());
    MPI_Comm_set_errhandler(MPI_COMM_SELF, previous);
    MPI_Errhandler_free(&previous);
  }
  if (rc == MPI_SUCCESS)
    for (int code : codes)
      if (code != MPI_SUCCESS) rc = code;
  if (rc != MPI_SUCCESS)
    throw ProcessError("mproc::mpi: MPI_Comm_spawn of " + std::to_string(count) + " copies of " + program +
                       " failed: " + mproc::detail::mpi_error_string(rc) +
                       " (more workers than slots? run under mpiexec with --oversubscribe, set "
                       "OMPI_MCA_rmaps_base_oversubscribe=1, or give a hostfile with more slots)");
  {
    auto guard = mpi_guard();
    MPI_Comm_set_errhandler(children, MPI_ERRORS_RETURN);
  }
  MpiChannel channel;
  channel.comm = children;
  for (int rank = 0; rank < count; ++rank) channel.workers.push_back(rank);
  channel.end = MpiChannel::End::stop_and_disconnect;
  return channel;
}

}  // namespace

namespace detail {

Executor::~Executor() {
  try {
    shutdown(true);
  } catch (...) {
    // From a done callback (it cannot wait for itself): the dispatcher finishes by itself.
  }
}

void Executor::check_open() const {
  if (!dispatcher_)
    throw Error("mproc::mpi: this rank is not the executor's root; only the root submits (test `if (executor)`)");
  dispatcher_->check_caller();
  if (shut_down_.load(std::memory_order_acquire)) throw Error("cannot schedule new futures after shutdown");
}

void Executor::shutdown(bool wait, bool cancel_futures) {
  if (!dispatcher_) return;
  dispatcher_->check_caller();
  shut_down_.store(true, std::memory_order_release);
  if (cancel_futures) dispatcher_->cancel_pending();
  dispatcher_->close();
  if (wait) dispatcher_->join();
}

}  // namespace detail

PoolExecutor::PoolExecutor(PoolExecutorOptions options) {
  if (options.max_workers && *options.max_workers <= 0)
    throw std::invalid_argument("mproc::mpi::PoolExecutor: max_workers must be at least 1");
  if (is_worker()) throw Error("mproc::mpi: a task running on a worker rank cannot start an executor");
  mproc::detail::ensure_mpi();
  int size = 1, rank = 0;
  {
    auto guard = mpi_guard();
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  }
  MpiChannel channel;
  if (size > 1) {
    channel.comm = mproc::detail::world_comm();  // collective: every rank's first executor
    if (rank != 0) {
      mproc::detail::serve(channel.comm, 0);
      mproc::detail::end_world_worker();
    }
    int count = std::min(size - 1, options.max_workers.value_or(INT_MAX));
    for (int worker = 1; worker <= count; ++worker) channel.workers.push_back(worker);
    channel.task_tag = mproc::detail::next_world_tag();
  } else {
    channel = spawn_workers(options.max_workers.value_or(universe_workers()));
  }
  dispatcher_ = std::make_unique<mproc::detail::MpiDispatcher>(std::move(channel));
}

CommExecutor::CommExecutor(MPI_Comm comm, int root) {
  if (is_worker()) throw Error("mproc::mpi: a task running on a worker rank cannot start an executor");
  mproc::detail::ensure_mpi();
  if (comm == MPI_COMM_NULL) throw std::invalid_argument("mproc::mpi::CommExecutor: MPI_COMM_NULL");
  int inter = 0, size = 0, rank = 0;
  auto lookup = mpi_guard();
  MPI_Comm_test_inter(comm, &inter);
  if (inter) throw std::invalid_argument("mproc::mpi::CommExecutor: needs an intracommunicator");
  MPI_Comm_size(comm, &size);
  MPI_Comm_rank(comm, &rank);
  if (lookup.owns_lock()) lookup.unlock();
  if (root < 0 || root >= size)
    throw std::invalid_argument("mproc::mpi::CommExecutor: root " + std::to_string(root) +
                                " is not a rank of the communicator (size " + std::to_string(size) + ")");
  if (size < 2) throw std::invalid_argument("mproc::mpi::CommExecutor: needs a communicator of at least two ranks");
  // A private communicator: the executor's messages never meet the program's own.
  MPI_Comm own = MPI_COMM_NULL;
  {
    auto guard = mpi_guard();
    mproc::detail::check_mpi(MPI_Comm_dup(comm, &own), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(own, MPI_ERRORS_RETURN);
  }
  if (rank != root) {
    mproc::detail::serve(own, root);
    auto guard = mpi_guard();
    MPI_Comm_free(&own);
    return;
  }
  MpiChannel channel;
  channel.comm = own;
  for (int worker = 0; worker < size; ++worker)
    if (worker != root) channel.workers.push_back(worker);
  channel.end = MpiChannel::End::stop_and_free;
  dispatcher_ = std::make_unique<mproc::detail::MpiDispatcher>(std::move(channel));
}

}  // namespace mproc::mpi
