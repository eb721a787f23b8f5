// A world-mode program whose task kills its worker rank (argv[1]: "sigkill" raises SIGKILL,
// "exit" calls _exit(3)), run by rank_death.sh under mpiexec. Every rank writes its pid
// to $MPROC_TEST_PID_DIR/<rank>.pid first, so the script can check that none survives.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unistd.h>

#include <mpi.h>

#include "mproc/context.hpp"
#include "mproc/error.hpp"
#include "mproc/mpi.hpp"

namespace {
int square(int x) { return x * x; }
int die(int how) {
  if (how == 0) std::raise(SIGKILL);
  ::_exit(3);
}
}  // namespace

int main(int argc, char** argv) {
  mproc::freeze_support(argc, argv);
  mproc::mpi::thread_level();
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (const char* dir = std::getenv("MPROC_TEST_PID_DIR")) {
    std::string path = std::string(dir) + "/" + std::to_string(rank) + ".pid";
    if (FILE* file = std::fopen(path.c_str(), "w")) {
      std::fprintf(file, "%d\n", static_cast<int>(::getpid()));
      std::fclose(file);
    }
  }
  mproc::mpi::PoolExecutor executor;  // ranks 1..N-1 serve here
  std::printf("square(3) = %d\n", executor.submit(square, 3).result());
  std::fflush(stdout);
  int how = argc > 1 && std::strcmp(argv[1], "exit") == 0 ? 1 : 0;
  try {
    executor.submit(die, how).result();
    std::printf("unreachable: the task returned\n");
  } catch (const mproc::Error& error) {
    std::printf("rank 0: %s\n", error.what());
  }
  std::fflush(stdout);
  return 0;
}
