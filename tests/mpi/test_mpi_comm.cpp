// mproc::mpi::CommExecutor under `mpiexec -n 3`: every rank runs every test, collectively;
// the root submits, the other ranks serve inside the constructor and then go on with main.
#include <mpi.h>
#include <ranges>
#include <set>
#include <stdexcept>
#include <vector>

#include <gtest/gtest.h>

#include "mpi_tasks.hpp"
#include "mproc/context.hpp"
#include "mproc/error.hpp"
#include "mproc/mpi.hpp"

namespace mproc::testing::mpi {
namespace {

using mproc::mpi::CommExecutor;

int my_rank() { return world_rank(); }

TEST(MpiComm, NonZeroRootDrivesTheOtherRanks) {
  const int rank = my_rank();
  CommExecutor executor(MPI_COMM_WORLD, 1);
  EXPECT_EQ(static_cast<bool>(executor), rank == 1);
  if (executor) {
    EXPECT_EQ(executor.max_workers(), 2);
    std::vector<Future<int>> ranks;
    for (int i = 0; i < 100; ++i) ranks.push_back(executor.submit(world_rank));
    std::set<int> seen;
    for (auto& f : ranks) seen.insert(f.result());
    EXPECT_EQ(seen, (std::set<int>{0, 2}));
    std::vector<int> squares;
    for (int value : executor.map(square, std::views::iota(0, 100), std::nullopt, 9)) squares.push_back(value);
    ASSERT_EQ(squares.size(), 100u);
    EXPECT_EQ(squares[99], 99 * 99);
    EXPECT_THROW(executor.submit(fail_out_of_range, 2).result(), std::out_of_range);
    executor.shutdown();
    EXPECT_THROW(executor.submit(square, 1), Error);
  } else {
    // Served until the root shut down; this rank goes on with main.
    EXPECT_EQ(executor.max_workers(), 0);
    EXPECT_THROW(executor.submit(square, 1), Error);
    executor.shutdown();  // nothing to do here
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST(MpiComm, DestructorReleasesTheRanksAndAnotherFollows) {
  const int rank = my_rank();
  {
    CommExecutor executor(MPI_COMM_WORLD, 2);
    if (executor) {
      auto f = executor.submit(nap, 50);
      auto g = executor.submit(square, 6);
      EXPECT_EQ(g.result(), 36);
      (void)f;  // the destructor waits for it
    }
  }
  CommExecutor again(MPI_COMM_WORLD, 0);
  EXPECT_EQ(static_cast<bool>(again), rank == 0);
  if (again) {
    EXPECT_EQ(again.submit(square, 8).result(), 64);
  }
}

TEST(MpiComm, SubCommunicator) {
  const int rank = my_rank();
  MPI_Comm pair = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, rank < 2 ? 0 : 1, rank, &pair);
  if (rank < 2) {
    CommExecutor executor(pair, 0);
    if (executor) {
      EXPECT_EQ(executor.max_workers(), 1);
      EXPECT_EQ(executor.submit(world_rank).result(), 1);
    }
  } else {
    EXPECT_THROW(CommExecutor(pair, 0), std::invalid_argument);  // one rank: nobody to serve
  }
  MPI_Comm_free(&pair);
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST(MpiComm, BadArgumentsAreRefusedOnEveryRank) {
  EXPECT_THROW(CommExecutor(MPI_COMM_WORLD, 3), std::invalid_argument);
  EXPECT_THROW(CommExecutor(MPI_COMM_WORLD, -1), std::invalid_argument);
  EXPECT_THROW(CommExecutor(MPI_COMM_NULL, 0), std::invalid_argument);
}

}  // namespace
}  // namespace mproc::testing::mpi

int main(int argc, char** argv) {
  mproc::freeze_support(argc, argv);
  mproc::mpi::thread_level();  // initialises MPI (finalised at exit)
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
