// mpi/runtime — MPI as mproc::mpi uses it: initialisation and finalisation, the thread
// support level (and the lock that serialises mproc's MPI calls below MULTIPLE), errors,
// and the world-mode communicator. Private to mproc::mpi.
#pragma once

#include <mutex>
#include <string>

#include <mpi.h>

namespace mproc::detail {

/// Initialises MPI unless the program did (MPI_Init_thread asking MPI_THREAD_MULTIPLE;
/// then MPI is finalised at exit), once. Returns the thread level. Throws Error if MPI was
/// finalised or provides less than MPI_THREAD_SERIALIZED (the executors make MPI calls on
/// threads of their own). Thread-safe.
int ensure_mpi();
/// As ensure_mpi(), but any level is returned, not refused (mproc::mpi::thread_level()).
int current_thread_level();

/// Held around every MPI call of mproc's: a lock below MPI_THREAD_MULTIPLE, nothing above.
std::unique_lock<std::mutex> mpi_guard();

/// MPI's description of an error code.
std::string mpi_error_string(int code);
/// Throws BrokenExecutor naming `call` and MPI's reason unless `code` is MPI_SUCCESS.
void check_mpi(int code, const char* call);

/// World mode: this process's duplicate of MPI_COMM_WORLD, shared by every PoolExecutor
/// (made collectively on the first call, on every rank). On rank 0, MPI's finalisation first
/// tells ranks 1..N-1 to stop serving.
MPI_Comm world_comm();
/// A task tag for a new world-mode executor (executors share world_comm() by tag).
int next_world_tag();

/// Serves the tasks `root` sends on `comm` until it sends kStopTag. Throws nothing: an
/// MPI failure aborts the job (MPI's default handler), as any rank's death does.
void serve(MPI_Comm comm, int root) noexcept;

/// A world-mode worker rank after its service: finalises MPI and ends the process.
[[noreturn]] void end_world_worker();

}  // namespace mproc::detail
