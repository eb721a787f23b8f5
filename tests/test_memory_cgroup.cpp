// The hard memory limit under a memory cgroup per worker (MemoryLimitBackend::cgroup): a task
// that allocates past it is OOM-killed by the kernel and fails with MemoryLimitError, other
// deaths stay WorkerLostError, and no group is left behind — at 1, 2 and 4 workers. Skips
// where no memory cgroup can be made (not root, no delegated v2 subtree).
#include <mproc/mproc.hpp>
#include <mproc/insights.hpp>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <memory>
#include <string>
#include <unistd.h>
#include <vector>

#include "support/leak_check.hpp"
#include "support/runaway.hpp"
#include "support/start_method.hpp"
#include "sys/memory_cgroup.hpp"
#include "sys/procstat.hpp"
#include "sys/worker_cgroup.hpp"

namespace {

constexpr std::uint64_t kLimit = std::uint64_t{128} << 20;

int square(int x) { return x * x; }

using mproc::testing::runaway;

// Dies as an OOM kill does (SIGKILL), but by its own hand: not the limit's doing.
int kill_myself(int) {
  ::kill(::getpid(), SIGKILL);
  ::pause();
  return 0;
}

// The worker's memory cgroup, as /proc/self/cgroup names it.
std::string my_memory_cgroup(int) {
  std::ifstream file("/proc/self/cgroup");
  std::string line, v2;
  while (std::getline(file, line)) {
    if (line.find(":memory:") != std::string::npos) return line.substr(line.find(":memory:") + 8);
    if (line.rfind("0::", 0) == 0) v2 = line.substr(3);
  }
  return v2;
}

// The groups this process's pools made (named "mproc-<pid>-...") now present.
int our_groups() {
  mproc::sys::CgroupParent parent;
  if (mproc::sys::find_cgroup_parent(parent) != 0) return -1;
  const std::string prefix = "mproc-" + std::to_string(::getpid()) + "-";
  int count = 0;
  if (DIR* dir = ::opendir(parent.dir)) {
    while (dirent* entry = ::readdir(dir))
      if (std::strncmp(entry->d_name, prefix.c_str(), prefix.size()) == 0) ++count;
    ::closedir(dir);
  }
  return count;
}

bool cgroups_available() {
  mproc::sys::CgroupParent parent;
  return mproc::sys::find_cgroup_parent(parent) == 0;
}

mproc::PoolOptions options(int workers) {
  return {.processes = workers, .memory_limit = kLimit, .memory_limit_backend = mproc::MemoryLimitBackend::cgroup};
}

class CgroupLimit : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    if (!cgroups_available()) {
      GTEST_SKIP() << "no writable memory cgroup here (not root, or v2 not delegated)";
    }
    ASSERT_EQ(our_groups(), 0);
  }
  void TearDown() override {
    if (!IsSkipped()) {
      EXPECT_EQ(our_groups(), 0) << "a worker's memory cgroup was left behind";
    }
  }
};

TEST_P(CgroupLimit, EachWorkerRunsInAGroupOfItsOwnNamedByTheInsights) {
  const int workers = GetParam();
  mproc::Pool pool(options(workers));
  EXPECT_EQ(our_groups(), workers);
  const std::string group = pool.apply(my_memory_cgroup, 0);
  EXPECT_NE(group.find("/mproc-" + std::to_string(::getpid()) + "-"), std::string::npos) << group;
  const std::string limits = pool.insights().memory_limits;
  EXPECT_NE(limits.find("cgroup v"), std::string::npos) << limits;
  EXPECT_NE(limits.find("128 MiB"), std::string::npos) << limits;
}

TEST_P(CgroupLimit, ARunawayAllocationIsKilledByTheKernelAndFailsAsMemoryLimitError) {
  const int workers = GetParam();
  mproc::Pool pool(options(workers));
  auto ordinary = pool.map_async(square, std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 1);
  try {
    pool.apply(runaway, 0);
    ADD_FAILURE() << "the runaway allocation was not stopped";
  } catch (const mproc::MemoryLimitError& error) {
    EXPECT_EQ(error.limit(), kLimit);
  } catch (const std::exception& error) {
    ADD_FAILURE() << "not a MemoryLimitError: " << error.what();
  }
  EXPECT_EQ(ordinary.get().back(), 100);    // nothing else was lost
  EXPECT_EQ(pool.apply(square, 12), 144);  // and the pool serves on, the worker replaced
  pool.close();
  pool.join();
  auto insights = pool.insights();
  EXPECT_EQ(insights.exits[mproc::WorkerExit::memory_limit], 1u) << insights;
  EXPECT_EQ(insights.exits[mproc::WorkerExit::crashed], 0u) << insights;
}

TEST_P(CgroupLimit, AnotherSigkillIsAWorkerLostNotTheLimit) {
  mproc::Pool pool(options(GetParam()));
  try {
    pool.apply(kill_myself, 0);
    ADD_FAILURE() << "the task did not fail";
  } catch (const mproc::MemoryLimitError& error) {
    ADD_FAILURE() << "a plain SIGKILL was taken for the limit: " << error.what();
  } catch (const mproc::WorkerLostError& error) {
    EXPECT_EQ(error.exitcode(), -SIGKILL);
  }
  EXPECT_EQ(pool.apply(square, 3), 9);
  pool.close();
  pool.join();
  auto insights = pool.insights();
  EXPECT_EQ(insights.exits[mproc::WorkerExit::memory_limit], 0u) << insights;
  EXPECT_EQ(insights.exits[mproc::WorkerExit::crashed], 1u) << insights;
}

TEST_P(CgroupLimit, TerminateLeavesNoGroupBehind) {
  {
    mproc::Pool pool(options(GetParam()));
    auto busy = pool.apply_async(runaway, 0);  // dies of the limit, or is killed by terminate
    EXPECT_EQ(pool.apply(square, 2), 4);
    pool.terminate();
    pool.join();  // terminate() only starts the killing; join() waits for the workers' end
    EXPECT_EQ(our_groups(), 0);
  }
  EXPECT_EQ(our_groups(), 0);
}

TEST_P(CgroupLimit, TheExecutorUsesThemToo) {
  mproc::ProcessPoolExecutor executor({.max_workers = GetParam(), .memory_limit = kLimit,
                                       .memory_limit_backend = mproc::MemoryLimitBackend::cgroup});
  auto future = executor.submit(runaway, 0);
  EXPECT_THROW(future.result(), mproc::MemoryLimitError);
  EXPECT_EQ(executor.submit(square, 4).result(), 16);
  EXPECT_NE(executor.insights().memory_limits.find("cgroup v"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Workers, CgroupLimit, ::testing::Values(1, 2, 4));

TEST(MemoryLimitBackends, RlimitCanBeForcedAndAutomaticTellsWhichIsInForce) {
  // Far above what a worker uses, and above a sanitizer build's reservations (which a forked
  // worker's RLIMIT_DATA counts).
  std::uint64_t data = 0;
  ASSERT_EQ(mproc::sys::data_size_bytes(data), 0);
  const std::uint64_t huge = std::max(std::uint64_t{1} << 40, 2 * data);
  mproc::Pool forced({.processes = 1, .memory_limit = huge,
                      .memory_limit_backend = mproc::MemoryLimitBackend::rlimit});
  EXPECT_NE(forced.insights().memory_limits.find("RLIMIT_DATA"), std::string::npos);
  mproc::Pool automatic({.processes = 1, .memory_limit = huge});
  const std::string limits = automatic.insights().memory_limits;
  EXPECT_NE(limits.find(cgroups_available() ? "cgroup v" : "RLIMIT_DATA"), std::string::npos) << limits;
}

}  // namespace
