#include "runtime.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <unistd.h>

#include "process/boot.hpp"
#include "mproc/error.hpp"
#include "mproc/mpi.hpp"
#include "protocol.hpp"

namespace mproc::detail {

namespace {

struct Runtime {
  int level = MPI_THREAD_SINGLE;
  bool ours = false;  // mproc initialised MPI: it finalises it at exit
};

std::mutex& serial_lock() {
  static auto* lock = new std::mutex;  // leaked: used by exit-time finalisation
  return *lock;
}
std::atomic<bool> serialize_calls{false};

void finalize_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

const char* level_name(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE: return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED: return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED: return "MPI_THREAD_SERIALIZED";
    default: return "MPI_THREAD_MULTIPLE";
  }
}

Runtime initialise() {
  Runtime runtime;
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (finalized) throw Error("mproc::mpi: MPI has been finalised; no executor can start");
  if (initialized) {
    MPI_Query_thread(&runtime.level);
  } else {
    // argc/argv are optional since MPI-2; mpiexec passes what it needs in the environment.
    int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &runtime.level);
    if (rc != MPI_SUCCESS) throw Error("mproc::mpi: MPI_Init_thread failed: " + mpi_error_string(rc));
    runtime.ours = true;
    std::atexit(finalize_at_exit);
  }
  if (runtime.level == MPI_THREAD_SERIALIZED) {
    serialize_calls.store(true, std::memory_order_release);
    std::fprintf(stderr, "mproc::mpi: MPI provides %s only; mproc serialises its MPI calls\n",
                 level_name(runtime.level));
  }
  return runtime;
}

const Runtime& runtime() {
  int finalized = 0;
  MPI_Finalized(&finalized);  // callable at any time, before MPI_Init and after MPI_Finalize
  if (finalized) throw Error("mproc::mpi: MPI has been finalised");
  static const Runtime value = initialise();  // thread-safe once; a throw retries next time
  return value;
}

// ---- world mode ------------------------------------------------------------------------------

MPI_Comm world = MPI_COMM_NULL;

// MPI_Finalize deletes MPI_COMM_SELF's attributes before anything else (MPI-2.2, 8.7.1):
// rank 0's last chance to release the worker ranks, whoever calls MPI_Finalize (the program,
// or mproc at exit).
int release_world_workers(MPI_Comm, int, void*, void*) {
  int size = 0;
  MPI_Comm_size(world, &size);
  for (int rank = 1; rank < size; ++rank) MPI_Send(nullptr, 0, MPI_BYTE, rank, kStopTag, world);
  return MPI_SUCCESS;
}

MPI_Comm make_world_comm() {
  MPI_Comm comm = MPI_COMM_NULL;
  auto guard = mpi_guard();
  check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &comm), "MPI_Comm_dup");
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  world = comm;
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  if (rank == 0) {
    int keyval = MPI_KEYVAL_INVALID;
    check_mpi(MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, release_world_workers, &keyval, nullptr),
              "MPI_Comm_create_keyval");
    check_mpi(MPI_Comm_set_attr(MPI_COMM_SELF, keyval, nullptr), "MPI_Comm_set_attr");
  }
  return comm;
}

// ---- a copy started by MPI_Comm_spawn ----------------------------------------------------------

[[noreturn]] void serve_spawned_copy(int, char**) {
  try {
    ensure_mpi();
  } catch (const std::exception& error) {
    std::fprintf(stderr, "%s\n", error.what());
    ::_exit(kBootFailedExit);
  }
  MPI_Comm parent = MPI_COMM_NULL;
  MPI_Comm_get_parent(&parent);
  if (parent == MPI_COMM_NULL) {
    std::fprintf(stderr, "mproc::mpi: this program was started with '%s mpi' but not by MPI_Comm_spawn\n",
                 kBootArgument);
    ::_exit(kBootFailedExit);
  }
  serve(parent, 0);
  {
    auto guard = mpi_guard();
    MPI_Comm_disconnect(&parent);
  }
  finalize_at_exit();
  std::exit(0);
}

[[maybe_unused]] const bool spawned_copy_served = (register_argv_boot("mpi", &serve_spawned_copy), true);

}  // namespace

int ensure_mpi() {
  const int level = runtime().level;
  if (level < MPI_THREAD_SERIALIZED)
    throw Error(std::string("mproc::mpi: MPI provides ") + level_name(level) +
                ", but the executors call MPI from threads of their own: initialise MPI with MPI_Init_thread "
                "asking MPI_THREAD_MULTIPLE (or at least MPI_THREAD_SERIALIZED), or let mproc initialise it");
  return level;
}

int current_thread_level() { return runtime().level; }

std::unique_lock<std::mutex> mpi_guard() {
  if (!serialize_calls.load(std::memory_order_acquire)) return {};
  return std::unique_lock(serial_lock());
}

std::string mpi_error_string(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, static_cast<std::size_t>(length));
}

void check_mpi(int code, const char* call) {
  if (code != MPI_SUCCESS)
    throw BrokenExecutor(std::string("mproc::mpi: ") + call + " failed: " + mpi_error_string(code));
}

MPI_Comm world_comm() {
  static const MPI_Comm comm = make_world_comm();
  return comm;
}

int next_world_tag() {
  // MPI guarantees tags up to 32767 at least.
  static std::atomic<int> count{0};
  return kFirstTaskTag + 2 * (count.fetch_add(1, std::memory_order_relaxed) % 16000);
}

void end_world_worker() {
  finalize_at_exit();
  std::exit(0);
}

}  // namespace mproc::detail

namespace mproc::mpi {

int thread_level() { return ::mproc::detail::current_thread_level(); }

}  // namespace mproc::mpi
