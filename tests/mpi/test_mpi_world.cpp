// mproc::mpi::PoolExecutor in world mode (`mpiexec -n 3`: rank 0 drives ranks 1 and 2):
// mpi4py's test_futures behaviours. Ranks 1..N-1 serve inside main's first PoolExecutor and
// never run a test; rank 0 runs every test, each with executors of its own.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <mpi.h>
#include <numeric>
#include <ranges>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "mpi_tasks.hpp"
#include "mproc/context.hpp"
#include "mproc/error.hpp"
#include "mproc/mpi.hpp"

namespace mproc::testing::mpi {
namespace {

using namespace std::chrono_literals;
using mproc::mpi::PoolExecutor;

TEST(MpiWorld, SubmitReturnsTheValue) {
  PoolExecutor executor;
  EXPECT_EQ(executor.max_workers(), 2);
  EXPECT_EQ(executor.submit(square, 7).result(), 49);
  EXPECT_EQ(executor.submit(join_words, "ab", 3, "!").result(), "ababab!");
  auto done = executor.submit(nothing);
  done.result();
  EXPECT_TRUE(done.done());
}

TEST(MpiWorld, TasksRunOnTheWorkerRanks) {
  PoolExecutor executor;
  std::vector<Future<int>> ranks;
  for (int i = 0; i < 200; ++i) ranks.push_back(executor.submit(world_rank));
  std::set<int> seen;
  for (auto& f : ranks) seen.insert(f.result());
  EXPECT_EQ(seen, (std::set<int>{1, 2}));
}

TEST(MpiWorld, MaxWorkersLimitsTheRanks) {
  PoolExecutor executor({.max_workers = 1});
  EXPECT_EQ(executor.max_workers(), 1);
  std::set<int> seen;
  for (int i = 0; i < 50; ++i) seen.insert(executor.submit(world_rank).result());
  EXPECT_EQ(seen, std::set<int>{1});
  EXPECT_THROW(PoolExecutor({.max_workers = 0}), std::invalid_argument);
}

TEST(MpiWorld, ExceptionsKeepTheirType) {
  PoolExecutor executor;
  auto failed = executor.submit(fail_out_of_range, 5);
  try {
    failed.result();
    FAIL() << "no exception";
  } catch (const std::out_of_range& error) {
    EXPECT_STREQ(error.what(), "index 5 is out of range");
  }
  EXPECT_NE(failed.exception(), nullptr);
  auto custom = executor.submit(fail_custom, 0);
  try {
    custom.result();
    FAIL() << "no exception";
  } catch (const RemoteError& error) {
    EXPECT_NE(std::string(error.what()).find("CustomFailure"), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("a failure of the program's own type"), std::string::npos);
  }
  // The executor goes on.
  EXPECT_EQ(executor.submit(square, 3).result(), 9);
  EXPECT_EQ(executor.submit(fail_out_of_range, -4).exception(), nullptr);
}

TEST(MpiWorld, MapKeepsOrderForEveryChunksize) {
  PoolExecutor executor;
  std::vector<int> expected(1000);
  for (int i = 0; i < 1000; ++i) expected[i] = i * i;
  for (std::size_t chunksize : {1u, 7u, 1000u, 5000u}) {
    std::vector<int> got;
    for (int value : executor.map(square, std::views::iota(0, 1000), std::nullopt, chunksize)) got.push_back(value);
    EXPECT_EQ(got, expected) << "chunksize " << chunksize;
  }
  std::vector<int> none;
  int count = 0;
  for (int value : executor.map(square, none)) count += value + 1;
  EXPECT_EQ(count, 0);
  EXPECT_THROW(executor.map(square, none, std::nullopt, 0), std::invalid_argument);
}

TEST(MpiWorld, MapRaisesAtTheFailingItem) {
  PoolExecutor executor;
  std::vector<int> got;
  auto results = executor.map(square_but_13, std::views::iota(0, 40), std::nullopt, 3);
  try {
    for (int value : results) got.push_back(value);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& error) {
    EXPECT_STREQ(error.what(), "13 is unlucky");
  }
  // A chunk fails as a whole (as in Python): 12, 13 and 14 share one.
  ASSERT_EQ(got.size(), 12u);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(got[i], i * i);
}

TEST(MpiWorld, MapReadsAheadBoundedly) {
  PoolExecutor executor;
  std::atomic<int> read{0};
  auto endless = std::views::iota(0) | std::views::transform([&read](int i) {
                   read.fetch_add(1, std::memory_order_relaxed);
                   return i;
                 });
  {
    auto results = executor.map(square, endless, std::nullopt, /*chunksize=*/5, /*buffersize=*/4);
    int taken = 0;
    for (int value : results) {
      EXPECT_EQ(value, taken * taken);
      if (++taken == 100) break;
    }
  }
  // 100 consumed, at most 4 chunks of 5 ahead (and the one being read).
  EXPECT_LE(read.load(), 100 + 5 * 5);
}

TEST(MpiWorld, MapTimeoutThrows) {
  PoolExecutor executor;
  auto results = executor.map(nap, std::vector<int>{1000, 1000, 1000}, 200ms);
  EXPECT_THROW(for (int value : results)(void) value, TimeoutError);
}

TEST(MpiWorld, WaitAndAsCompleted) {
  PoolExecutor executor;
  auto slow = executor.submit(nap, 3000);
  auto fast = executor.submit(nap, 0);
  std::vector<Future<int>> both{slow, fast};
  auto [done, not_done] = mproc::wait(both, 20s, FIRST_COMPLETED);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_TRUE(done[0] == fast);
  EXPECT_EQ(not_done.size(), 1u);
  auto timed = mproc::wait(both, 10ms, ALL_COMPLETED);
  EXPECT_EQ(timed.not_done.size(), 1u);

  std::vector<Future<int>> futures;
  for (int i = 0; i < 20; ++i) futures.push_back(executor.submit(square, i));
  futures.push_back(executor.submit(fail_out_of_range, 1));
  std::set<int> values;
  int failures = 0;
  for (const auto& future : mproc::as_completed(futures, 60s)) {
    if (future.exception()) {
      ++failures;
    } else {
      values.insert(future.result());
    }
  }
  EXPECT_EQ(values.size(), 20u);
  EXPECT_EQ(failures, 1);
  auto first_exception = mproc::wait(futures, 20s, FIRST_EXCEPTION);
  EXPECT_EQ(first_exception.not_done.size(), 0u);
  EXPECT_EQ(slow.result(), 3000);
}

TEST(MpiWorld, DoneCallbacksRun) {
  PoolExecutor executor;
  std::atomic<int> sum{0};
  std::vector<Future<int>> futures;
  for (int i = 0; i < 10; ++i) {
    futures.push_back(executor.submit(square, i));
    futures.back().add_done_callback([&sum](Future<int>& f) { sum += f.result(); });
  }
  executor.shutdown();
  EXPECT_EQ(sum.load(), 285);
}

TEST(MpiWorld, ShutdownWaitsAndRefusesNewWork) {
  PoolExecutor executor;
  std::vector<Future<int>> futures;
  for (int i = 0; i < 6; ++i) futures.push_back(executor.submit(nap, 50));
  executor.shutdown(/*wait=*/true);
  for (auto& f : futures) EXPECT_TRUE(f.done());
  EXPECT_THROW(executor.submit(square, 1), Error);
  EXPECT_THROW(executor.map(square, std::vector<int>{1}), Error);
  executor.shutdown();  // again: nothing
}

TEST(MpiWorld, ShutdownCancelsWhatNoRankHolds) {
  PoolExecutor executor;
  std::vector<Future<int>> futures;
  for (int i = 0; i < 40; ++i) futures.push_back(executor.submit(nap, 100));
  executor.shutdown(/*wait=*/false, /*cancel_futures=*/true);
  int cancelled = 0, ran = 0;
  for (auto& f : futures) {
    if (f.cancelled()) {
      ++cancelled;
      EXPECT_THROW(f.result(), CancelledError);
    } else {
      ++ran;
      EXPECT_EQ(f.result(60s), 100);
    }
  }
  // Two ranks hold at most two tasks each when the shutdown comes (mpi4py asks >= 35 of 50).
  EXPECT_GE(cancelled, 30);
  EXPECT_EQ(cancelled + ran, 40);
}

TEST(MpiWorld, CancelBeforeDispatch) {
  PoolExecutor executor({.max_workers = 1});
  auto busy = executor.submit(nap, 300);
  while (!busy.running() && !busy.done()) std::this_thread::sleep_for(1ms);  // on the rank now
  std::vector<Future<int>> queued;
  for (int i = 0; i < 10; ++i) queued.push_back(executor.submit(nap, 300));
  EXPECT_TRUE(queued.back().cancel());
  EXPECT_TRUE(queued.back().cancelled());
  EXPECT_THROW(queued.back().result(), CancelledError);
  executor.shutdown(true, true);
  EXPECT_EQ(busy.result(), 300);
}

TEST(MpiWorld, SeveralExecutorsAtOnce) {
  PoolExecutor first, second({.max_workers = 1});
  std::vector<Future<int>> a, b;
  for (int i = 0; i < 100; ++i) {
    a.push_back(first.submit(square, i));
    b.push_back(second.submit(square, -i));
  }
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(a[i].result(), i * i);
    EXPECT_EQ(b[i].result(), i * i);
  }
  first.shutdown();
  EXPECT_EQ(second.submit(square, 12).result(), 144);
  PoolExecutor third;
  EXPECT_EQ(third.submit(square, 11).result(), 121);
}

}  // namespace
}  // namespace mproc::testing::mpi

int main(int argc, char** argv) {
  mproc::freeze_support(argc, argv);
  mproc::mpi::thread_level();  // initialises MPI
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  // Ranks 1..N-1: serve rank 0's executors, then end (this never returns there).
  if (rank != 0) mproc::mpi::PoolExecutor serve;
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
