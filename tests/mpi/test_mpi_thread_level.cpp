// A program that initialises MPI itself, at the level named by MPROC_TEST_MPI_LEVEL
// ("serialized" or "funneled"), under `mpiexec -n 2`: mproc takes MPI as it finds it and
// leaves its finalisation to the program.
#include <cstdlib>
#include <cstring>
#include <mpi.h>

#include <gtest/gtest.h>

#include "mpi_tasks.hpp"
#include "mproc/context.hpp"
#include "mproc/error.hpp"
#include "mproc/mpi.hpp"

namespace mproc::testing::mpi {
namespace {

int requested_level() {
  const char* level = std::getenv("MPROC_TEST_MPI_LEVEL");
  return level != nullptr && std::strcmp(level, "funneled") == 0 ? MPI_THREAD_FUNNELED : MPI_THREAD_SERIALIZED;
}

TEST(MpiThreadLevel, ExecutorsWorkFromSerializedAndRefuseBelow) {
  int provided = 0;
  MPI_Query_thread(&provided);
  EXPECT_EQ(mproc::mpi::thread_level(), provided);
  if (provided >= MPI_THREAD_SERIALIZED) {
    // Below MULTIPLE the executor's thread makes its MPI calls under mproc's lock.
    mproc::mpi::CommExecutor executor(MPI_COMM_WORLD, 0);
    if (executor) {
      std::vector<Future<int>> futures;
      for (int i = 0; i < 200; ++i) futures.push_back(executor.submit(square, i));
      for (int i = 0; i < 200; ++i) EXPECT_EQ(futures[i].result(), i * i);
    }
  } else {
    try {
      mproc::mpi::CommExecutor executor(MPI_COMM_WORLD, 0);
      FAIL() << "an executor started at MPI_THREAD_FUNNELED";
    } catch (const Error& error) {
      EXPECT_NE(std::string(error.what()).find("MPI_THREAD_FUNNELED"), std::string::npos) << error.what();
    }
  }
}

}  // namespace
}  // namespace mproc::testing::mpi

int main(int argc, char** argv) {
  mproc::freeze_support(argc, argv);
  int provided = 0;
  MPI_Init_thread(&argc, &argv, mproc::testing::mpi::requested_level(), &provided);
  ::testing::InitGoogleTest(&argc, argv);
  int status = RUN_ALL_TESTS();
  MPI_Finalize();  // the program's: mproc did not initialise MPI, so it does not finalise it
  try {
    mproc::mpi::thread_level();
    std::fprintf(stderr, "thread_level() after MPI_Finalize did not throw\n");
    status = 1;
  } catch (const mproc::Error&) {
  }
  return status;
}
