// The pool under conditions that once broke it for good: a task its worker cannot receive,
// and a dead worker that cannot be replaced for a while (out of descriptors).
#include <cstdint>
#include <fcntl.h>
#include <cstdio>
#include <fstream>
#include <future>
#include <string>
#include <sys/resource.h>
#include <unistd.h>
#include <vector>

#include <gtest/gtest.h>
#include <mproc/mproc.hpp>

#include "support/leak_check.hpp"

namespace {

using namespace std::chrono_literals;

int square(int x) { return x * x; }
std::size_t byte_count(const std::vector<char>& bytes) { return bytes.size(); }

std::uint64_t address_space_in_use() {
  std::ifstream statm("/proc/self/statm");
  std::uint64_t pages = 0;
  statm >> pages;
  return pages * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

// A pool initializer: the worker may map only `headroom` more bytes.
void limit_address_space(std::uint64_t headroom) {
  rlimit limit{};
  limit.rlim_cur = limit.rlim_max = address_space_in_use() + headroom;
  if (::setrlimit(RLIMIT_AS, &limit) != 0) std::perror("setrlimit");
}

TEST(PoolResilience, ATaskItsWorkerCannotReceiveFailsOnceAndThePoolGoesOn) {
  // The worker runs out of memory while it receives the batch, before it could mark the task
  // started. It used to be re-queued on a new worker, which died the same way, forever.
  mproc::Pool pool({.processes = 1, .initializer = mproc::Initializer(limit_address_space, std::uint64_t{64} << 20)});
  auto unreceivable = pool.apply_async(byte_count, std::vector<char>(std::size_t{256} << 20, 'x'));
  try {
    unreceivable.get();
    FAIL() << "a 256 MiB argument reached a worker limited to 64 MiB more";
  } catch (const mproc::SerializationError&) {
    // The worker said it could not receive it.
  } catch (const mproc::WorkerLostError&) {
    // Or receiving it killed the worker outright (twice): then it is given up too.
  }
  EXPECT_EQ(pool.apply(square, 3), 9);
  EXPECT_EQ(pool.map(square, std::vector<int>{1, 2, 3}), (std::vector<int>{1, 4, 9}));
}

// Exit codes of the sandbox below.
constexpr int kCannotDropPrivileges = 20;

// Runs in a forked sandbox (the limit is the whole process's): exit 0 on success. The
// sandbox becomes an unprivileged user, whose process limit (RLIMIT_NPROC, which root
// ignores) can forbid the replacement's fork while the pool runs. (A descriptor limit would
// do the same, but UndefinedBehaviorSanitizer needs descriptors to check virtual calls.)
void replacement_waits_for_processes() {
  if (::setgid(65534) != 0 || ::setuid(65534) != 0) mproc::exit(kCannotDropPrivileges);
  mproc::Pool pool(2);
  if (pool.apply(square, 2) != 4) mproc::exit(10);
  rlimit original{};
  ::getrlimit(RLIMIT_NPROC, &original);
  rlimit tight = original;
  tight.rlim_cur = 1;  // this user already runs more: no fork succeeds
  if (::setrlimit(RLIMIT_NPROC, &tight) != 0) mproc::exit(11);
  std::vector<int> pids = pool.worker_pids();
  ::kill(pids[0], SIGKILL);
  // The other worker serves everything meanwhile.
  for (int i = 0; i < 20; ++i)
    if (pool.apply(square, i) != i * i) mproc::exit(12);
  if (!mproc::testing::eventually([&] { return pool.worker_pids().size() == 1; })) mproc::exit(13);
  // The limit lifts: the missing worker comes back within the longest backoff.
  if (::setrlimit(RLIMIT_NPROC, &original) != 0) mproc::exit(14);
  if (!mproc::testing::eventually([&] { return pool.worker_pids().size() == 2; })) mproc::exit(15);
  if (pool.map(square, std::vector<int>{1, 2, 3, 4}) != std::vector<int>{1, 4, 9, 16}) mproc::exit(16);
}

TEST(PoolResilience, ADeadWorkerThatCannotBeReplacedForAWhileDoesNotBreakThePool) {
  mproc::Process sandbox(replacement_waits_for_processes);
  sandbox.start();
  sandbox.join();
  if (sandbox.exitcode() == kCannotDropPrivileges) GTEST_SKIP() << "needs root to become an unprivileged user";
  EXPECT_EQ(sandbox.exitcode(), 0);
}

}  // namespace

namespace {

// Issue: a callback that waits on its own pool used to deadlock whenever no worker was idle
// (and pass when one was, through the direct path). Now it is an Error at once, either way.
std::string wait_in_callback_of_a_busy_pool(int workers) {
  mproc::Pool pool(workers);
  std::promise<std::string> seen;
  auto outcome = seen.get_future();
  auto first = pool.apply_async(mproc::CallOptions{.callback =
                                                       [&](const int&) {
                                                         try {
                                                           pool.apply(square, 2);
                                                           seen.set_value("no error");
                                                         } catch (const mproc::Error& error) {
                                                           seen.set_value(error.what());
                                                         }
                                                       }},
                                square, 1);
  if (outcome.wait_for(30s) != std::future_status::ready) return "deadlock";
  first.wait();
  return outcome.get();
}

TEST(PoolResilience, WaitingForThePoolInItsOwnCallbackIsAnError) {
  for (int workers : {1, 2}) {
    std::string what = wait_in_callback_of_a_busy_pool(workers);
    EXPECT_NE(what.find("callbacks"), std::string::npos) << workers << " workers: " << what;
  }
}

// Waits for a byte on `fd` (inherited by the forked worker), then squares.
int square_when_released(int fd, int x) {
  char byte;
  if (::read(fd, &byte, 1) != 1) return -1;
  return x * x;
}

TEST(PoolResilience, WaitingForTheExecutorInADoneCallbackIsAnError) {
  int release[2];
  ASSERT_EQ(::pipe2(release, O_CLOEXEC), 0);
  mproc::ProcessPoolExecutor executor({.max_workers = 1});  // forked after the pipe: inherits it
  std::promise<std::string> seen;
  auto outcome = seen.get_future();
  // Held until the callback is installed: a callback added to a finished future runs on the
  // adding thread, which is not the executor's.
  auto future = executor.submit(square_when_released, release[0], 3);
  future.add_done_callback([&](mproc::Future<int>) {
    try {
      executor.submit(square, 4).result();
      seen.set_value("no error");
    } catch (const mproc::Error& error) {
      seen.set_value(error.what());
    }
  });
  ASSERT_EQ(::write(release[1], "x", 1), 1);
  ASSERT_EQ(outcome.wait_for(30s), std::future_status::ready);
  std::string what = outcome.get();
  EXPECT_NE(what.find("callbacks"), std::string::npos) << what;
  EXPECT_EQ(future.result(), 9);
  ::close(release[0]);
  ::close(release[1]);
}

}  // namespace

namespace {

int sleep_then_square(int x) {
  ::usleep(20'000);
  return x * x;
}

TEST(PoolResilience, TheLongestTaskTimeoutMeansNoLimit) {
  // The engine's deadline (hand-off time + timeout) used to overflow (UBSan: signed overflow).
  mproc::Pool pool({.processes = 1, .task_timeout = std::chrono::nanoseconds::max()});
  EXPECT_EQ(pool.apply(sleep_then_square, 5), 25);
  auto queued = pool.apply_async(sleep_then_square, 6);
  EXPECT_EQ(pool.apply(sleep_then_square, 7), 49);
  EXPECT_EQ(queued.get(), 36);
}

}  // namespace
