// Pool: CPython's _TestPool / _TestPoolWorkerErrors / _TestPoolWorkerLifetime /
// TestInitializers behaviours, plus mproc's promises: a dead worker fails only its task,
// per-task timeouts, terminate fails pending work, lazy imap, no leaks.
#include <mproc/mproc.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <future>
#include <ios>
#include <memory>
#include <numeric>
#include <optional>
#include <sstream>
#include <system_error>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "support/gate.hpp"
#include "support/leak_check.hpp"
#include "support/start_method.hpp"

using namespace std::chrono_literals;
using mproc::testing::Gate;
using mproc::testing::LeakCheckedTest;

namespace {

int square(int x) { return x * x; }
int add(int a, int b) { return a + b; }
std::string greet(const std::string& name) { return "hello " + name; }
void nothing(int) {}
int my_pid(int) { return static_cast<int>(::getpid()); }
int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
int raise_value_error(int x) {
  if (x == 5) throw std::invalid_argument("bad item 5");
  return x;
}
struct CustomError : std::exception {
  const char* what() const noexcept override { return "custom failure"; }
};
int raise_custom(int) { throw CustomError(); }
int crash_with(int how) {
  switch (how) {
    case 0: std::signal(SIGSEGV, SIG_DFL); ::raise(SIGSEGV); break;  // a fresh (spawned) sanitizer build catches it otherwise
    case 1: std::signal(SIGABRT, SIG_DFL); std::abort();
    case 2: ::_exit(7);
    case 3: ::raise(SIGKILL); break;
  }
  return how;
}
int forever(int) {
  for (;;) ::pause();
}

class PoolTest : public LeakCheckedTest {};
class PoolSizes : public LeakCheckedTest, public ::testing::WithParamInterface<int> {};

TEST_P(PoolSizes, ApplyMapStarmapImap) {
  mproc::Pool pool(GetParam());
  EXPECT_EQ(pool.processes(), GetParam());
  EXPECT_EQ(pool.apply(square, 7), 49);
  EXPECT_EQ(pool.apply(add, 2, 3), 5);
  EXPECT_EQ(pool.apply(greet, "world"), "hello world");
  pool.apply(nothing, 1);
  std::vector<int> input(100);
  std::iota(input.begin(), input.end(), 0);
  std::vector<int> expected;
  for (int x : input) expected.push_back(x * x);
  EXPECT_EQ(pool.map(square, input), expected);
  EXPECT_EQ(pool.map(square, input, 1), expected);
  EXPECT_EQ(pool.map(square, input, 7), expected);
  EXPECT_TRUE(pool.map(square, std::vector<int>{}).empty());
  std::vector<std::tuple<int, int>> pairs = {{1, 2}, {3, 4}, {5, 6}};
  EXPECT_EQ(pool.starmap(add, pairs), (std::vector<int>{3, 7, 11}));
  std::vector<int> lazy;
  for (int value : pool.imap(square, input)) lazy.push_back(value);
  EXPECT_EQ(lazy, expected);
  std::vector<int> chunked;
  for (int value : pool.imap(square, input, 10)) chunked.push_back(value);
  EXPECT_EQ(chunked, expected);
  std::multiset<int> unordered;
  for (int value : pool.imap_unordered(square, input, 3)) unordered.insert(value);
  EXPECT_EQ(unordered, std::multiset<int>(expected.begin(), expected.end()));
}


TEST_F(PoolTest, AsyncResultSemantics) {
  mproc::Pool pool(2);
  auto slow = pool.apply_async(sleep_ms, 300);
  EXPECT_FALSE(slow.ready());
  EXPECT_THROW(slow.successful(), mproc::InvalidStateError);
  EXPECT_THROW(slow.get(10ms), mproc::TimeoutError);
  EXPECT_FALSE(slow.wait(10ms));
  EXPECT_EQ(slow.get(), 300);
  EXPECT_TRUE(slow.ready());
  EXPECT_TRUE(slow.successful());
  EXPECT_EQ(slow.get(), 300);  // again
  auto failing = pool.apply_async(raise_value_error, 5);
  failing.wait();
  EXPECT_FALSE(failing.successful());
  EXPECT_THROW(failing.get(), std::invalid_argument);
  auto mapped = pool.map_async(square, std::vector<int>{1, 2, 3});
  EXPECT_EQ(mapped.get(), (std::vector<int>{1, 4, 9}));
}

TEST_F(PoolTest, CallbacksRunOnceOffTheCallersThread) {
  mproc::Pool pool(2);
  std::atomic<int> value{0}, errors{0};
  std::atomic<bool> other_thread{false};
  auto caller = std::this_thread::get_id();
  auto ok = pool.apply_async(mproc::CallOptions{.callback =
                                                  [&](const int& result) {
                                                    value = result;
                                                    other_thread = std::this_thread::get_id() != caller;
                                                  },
                                              .error_callback = [&](std::exception_ptr) { ++errors; }},
                             square, 9);
  ok.wait();
  EXPECT_EQ(value, 81);  // the callback ran before the result became ready
  EXPECT_TRUE(other_thread);
  auto bad = pool.apply_async(mproc::CallOptions{.callback = [&](const int&) { value = -1; },
                                               .error_callback = [&](std::exception_ptr) { ++errors; }},
                              raise_value_error, 5);
  bad.wait();
  EXPECT_EQ(errors, 1);
  EXPECT_EQ(value, 81);
}

TEST_F(PoolTest, ExceptionsKeepTheirType) {
  mproc::Pool pool(2);
  EXPECT_THROW(pool.apply(raise_value_error, 5), std::invalid_argument);
  try {
    pool.apply(raise_custom, 0);
    FAIL();
  } catch (const mproc::RemoteError& error) {
    EXPECT_NE(error.type_name().find("CustomError"), std::string::npos);
    EXPECT_EQ(error.message(), "custom failure");
    EXPECT_GT(error.pid(), 0);
  }
  std::vector<int> input(20);
  std::iota(input.begin(), input.end(), 0);
  EXPECT_THROW(pool.map(raise_value_error, input), std::invalid_argument);
  EXPECT_EQ(pool.apply(square, 3), 9);  // still works
  // imap raises at the failing position and goes on.
  auto results = pool.imap(raise_value_error, input);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(results.next(), i);
  EXPECT_THROW(results.next(), std::invalid_argument);
  EXPECT_EQ(results.next(), 6);
}

TEST_F(PoolTest, BadArguments) {
  EXPECT_THROW(mproc::Pool(0), std::invalid_argument);
  EXPECT_THROW(mproc::Pool(-1), std::invalid_argument);
  EXPECT_THROW(mproc::Pool({.processes = 1, .maxtasksperchild = 0}), std::invalid_argument);
  mproc::Pool pool(1);
  EXPECT_THROW(pool.map(square, std::vector<int>{1}, 0), std::invalid_argument);
  EXPECT_THROW(pool.imap(square, std::vector<int>{1}, 0), std::invalid_argument);
}

TEST_F(PoolTest, ClosedPoolAndJoinRules) {
  mproc::Pool pool(2);
  EXPECT_THROW(pool.join(), mproc::Error);  // join before close
  auto pending = pool.apply_async(sleep_ms, 50);
  pool.close();
  EXPECT_THROW(pool.apply(square, 1), mproc::Error);
  EXPECT_THROW(pool.map(square, std::vector<int>{1}), mproc::Error);
  pool.join();
  EXPECT_EQ(pending.get(), 50);  // accepted work completes
}

TEST_P(PoolSizes, DeadWorkerFailsOnlyItsTask) {
  for (int how = 0; how < 4; ++how) {
    mproc::Pool pool(GetParam());
    std::vector<mproc::AsyncResult<int>> others;
    for (int i = 0; i < 20; ++i) others.push_back(pool.apply_async(square, i));
    auto doomed = pool.apply_async(crash_with, how);
    for (int i = 0; i < 20; ++i) others.push_back(pool.apply_async(square, i));
    try {
      doomed.get();
      FAIL() << "crash " << how << " went unnoticed";
    } catch (const mproc::WorkerLostError& error) {
      const int expected_exitcode[] = {-SIGSEGV, -SIGABRT, 7, -SIGKILL};
      EXPECT_EQ(error.exitcode(), expected_exitcode[how]);
    }
    for (int i = 0; i < 40; ++i) EXPECT_EQ(others[i].get(), (i % 20) * (i % 20));
    EXPECT_EQ(pool.apply(square, 12), 144);  // replaced worker serves
    EXPECT_EQ(pool.worker_pids().size(), static_cast<std::size_t>(GetParam()));
  }
}

// Tells the test it is running (through the test's gate), then never returns.
int announce_then_block(int) {
  Gate::announce();
  for (;;) ::pause();
}

TEST_F(PoolTest, WorkerKilledFromOutside) {
  Gate gate;
  mproc::Pool pool(2);
  auto stuck = pool.apply_async(announce_then_block, 0);
  ASSERT_TRUE(gate.wait_started());  // the task is running now
  for (int worker : pool.worker_pids()) ::kill(worker, SIGKILL);
  EXPECT_THROW(stuck.get(), mproc::WorkerLostError);
  EXPECT_EQ(pool.apply(square, 4), 16);  // even if dispatched to an already-dead worker
}

TEST_F(PoolTest, TaskTimeoutKillsTheWorker) {
  mproc::Pool pool({.processes = 2, .task_timeout = 200ms});
  auto begin = std::chrono::steady_clock::now();
  auto stuck = pool.apply_async(forever, 0);
  auto fine = pool.apply_async(square, 5);
  EXPECT_THROW(stuck.get(), mproc::TimeoutError);
  EXPECT_GE(std::chrono::steady_clock::now() - begin, 150ms);
  EXPECT_EQ(fine.get(), 25);
  EXPECT_EQ(pool.apply(square, 6), 36);
}

TEST_F(PoolTest, PerCallTimeoutOverridesThePools) {
  mproc::Pool pool(2);  // no pool-wide limit
  auto stuck = pool.apply_async(mproc::CallOptions{.timeout = 100ms}, forever, 0);
  EXPECT_THROW(stuck.get(), mproc::TimeoutError);
  auto mapped = pool.map_async(mproc::CallOptions{.timeout = 100ms}, forever, std::vector<int>{1, 2});
  EXPECT_THROW(mapped.get(), mproc::TimeoutError);
  EXPECT_EQ(pool.apply(square, 2), 4);
}

TEST_F(PoolTest, WorkersIgnoreSigint) {
  mproc::Pool pool(2);
  for (int pid : pool.worker_pids()) ::kill(pid, SIGINT);  // as Ctrl-C reaches the group
  std::vector<int> input(20, 3);
  EXPECT_EQ(pool.map(square, input, 1), std::vector<int>(20, 9));
}

TEST_F(PoolTest, EmptyInputsGiveEmptyResults) {
  mproc::Pool pool(2);
  std::vector<int> none;
  EXPECT_TRUE(pool.map(square, none).empty());
  EXPECT_TRUE(pool.map_async(square, none).get().empty());
  EXPECT_TRUE(pool.starmap(add, std::vector<std::tuple<int, int>>{}).empty());
  EXPECT_EQ(pool.imap(square, none).next(), std::nullopt);
  EXPECT_EQ(pool.imap_unordered(square, none).next(), std::nullopt);
}

TEST_F(PoolTest, MapAsyncCallbacks) {
  mproc::Pool pool(2);
  std::vector<int> seen;
  std::atomic<int> errors{0};
  auto ok = pool.map_async(mproc::CallOptions{.callback = [&](const std::vector<int>& all) { seen = all; }},
                           square, std::vector<int>{1, 2, 3});
  ok.wait();
  EXPECT_EQ(seen, (std::vector<int>{1, 4, 9}));
  auto bad = pool.map_async(mproc::CallOptions{.error_callback = [&](std::exception_ptr) { ++errors; }},
                            raise_value_error, std::vector<int>{4, 5, 6}, 1);
  bad.wait();
  EXPECT_EQ(errors, 1);
  EXPECT_THROW(bad.get(), std::invalid_argument);
}

TEST_F(PoolTest, WorkerLifetimeUnderLoad) {
  // CPython's test_pool_worker_lifetime: 3 workers, maxtasksperchild 10, 100 tasks.
  mproc::Pool pool({.processes = 3, .maxtasksperchild = 10});
  auto before = pool.worker_pids();
  std::vector<mproc::AsyncResult<int>> results;
  for (int i = 0; i < 100; ++i) results.push_back(pool.apply_async(square, i));
  for (int i = 0; i < 100; ++i) EXPECT_EQ(results[static_cast<std::size_t>(i)].get(), i * i);
  auto after = pool.worker_pids();
  EXPECT_EQ(after.size(), 3u);
  std::sort(before.begin(), before.end());
  std::sort(after.begin(), after.end());
  EXPECT_NE(before, after);  // workers were replaced (CPython asserts the same)
  pool.close();
  pool.join();
}

TEST_F(PoolTest, StarmapAsyncAndVoidFunctions) {
  mproc::Pool pool(2);
  std::vector<std::pair<int, int>> pairs = {{1, 1}, {2, 2}, {3, 3}};
  EXPECT_EQ(pool.starmap_async(add, pairs).get(), (std::vector<int>{2, 4, 6}));
  pool.map(nothing, std::vector<int>{1, 2, 3});  // void results: nothing to return
  pool.apply_async(nothing, 1).get();
}

TEST_F(PoolTest, EarlyCloseWithMaxTasksPerChild) {
  // CPython's test_pool_worker_lifetime_early_close.
  mproc::Pool pool({.processes = 1, .maxtasksperchild = 1});
  std::vector<mproc::AsyncResult<int>> results;
  for (int i = 0; i < 6; ++i) results.push_back(pool.apply_async(sleep_ms, 10 + i));
  pool.close();
  pool.join();
  for (int i = 0; i < 6; ++i) EXPECT_EQ(results[i].get(), 10 + i);
}

TEST_F(PoolTest, TerminateFailsPendingWorkPromptly) {
  mproc::Pool pool(2);
  std::vector<mproc::AsyncResult<int>> results;
  // Tasks that never end: only a terminate() that kills the workers can return.
  for (int i = 0; i < 10000; ++i) results.push_back(pool.apply_async(forever, i));
  auto begin = std::chrono::steady_clock::now();
  pool.terminate();
  pool.join();
  EXPECT_LT(std::chrono::steady_clock::now() - begin, 1s);  // "well under a second"
  for (auto& result : results) EXPECT_THROW(result.get(), mproc::CancelledError);
}

TEST_F(PoolTest, MaxTasksPerChildReplacesWorkers) {
  mproc::Pool pool({.processes = 1, .maxtasksperchild = 2});
  std::set<int> pids;
  for (int i = 0; i < 6; ++i) pids.insert(pool.apply(my_pid, i));
  EXPECT_EQ(pids.size(), 3u);
  std::vector<int> input(50);
  std::iota(input.begin(), input.end(), 0);
  auto squares = pool.map(square, input, 1);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(squares[i], i * i);
}

int initialized_value = 0;
int read_initialized(int) { return initialized_value; }
void set_initialized(int value, std::string check) {
  if (check != "initargs") throw std::runtime_error("initargs garbled");
  initialized_value = value;
}

TEST_F(PoolTest, InitializerWithInitargs) {
  mproc::Pool pool({.processes = 2, .initializer = mproc::Initializer(set_initialized, 7, std::string("initargs"))});
  EXPECT_EQ(pool.map(read_initialized, std::vector<int>(10, 0), 1), std::vector<int>(10, 7));
  EXPECT_EQ(initialized_value, 0);  // ran in the workers only
}

TEST_F(PoolTest, InitializerRunsInEachWorker) {
  mproc::Pool pool({.processes = 2, .initializer = [] { initialized_value = 42; }});
  EXPECT_EQ(pool.apply(read_initialized, 0), 42);
  EXPECT_EQ(pool.map(read_initialized, std::vector<int>(10, 0), 1), std::vector<int>(10, 42));
}

TEST_F(PoolTest, FailingInitializerBreaksThePool) {
  mproc::Pool pool({.processes = 1, .initializer = [] { throw std::runtime_error("no database"); }});
  // Depending on how fast the worker fails, the pool is broken when the task is submitted
  // (submit throws) or while it waits (get throws): BrokenExecutor either way.
  EXPECT_THROW(pool.apply_async(square, 2).get(), mproc::BrokenExecutor);
  EXPECT_THROW(pool.apply(square, 2), mproc::BrokenExecutor);
}

long long consumed_items = 0;
TEST_F(PoolTest, ImapReadsAnEndlessInputLazily) {
  mproc::Pool pool(2);
  auto endless = std::views::iota(0) | std::views::transform([](int x) {
                   ++consumed_items;
                   return x;
                 });
  consumed_items = 0;
  auto results = pool.imap(square, endless);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(results.next(), i * i);
    if (i % 100 == 0) std::this_thread::sleep_for(5ms);  // a slow consumer: workers run ahead
  }
  // Bounded read-ahead, however far the workers could have run: a window of chunks.
  EXPECT_LT(consumed_items, 1000 + 100);
}

TEST_F(PoolTest, ImapRethrowsAnInputError) {
  mproc::Pool pool(2);
  auto failing = std::views::iota(0, 100) | std::views::transform([](int x) {
                   if (x == 10) throw std::length_error("input broke");
                   return x;
                 });
  auto results = pool.imap(square, failing);
  EXPECT_THROW(
      {
        while (results.next()) {
        }
      },
      std::length_error);
  EXPECT_EQ(pool.apply(square, 3), 9);
}

// CPython's test_imap_handle_iterable_exception: the input's error comes after the
// results of the items before it (those of its own chunk are lost with it).
auto throwing_input(int total, int fail_at) {
  return std::views::iota(0, total) | std::views::transform([fail_at](int x) {
           if (x == fail_at) throw std::length_error("input broke");
           return x;
         });
}

TEST_F(PoolTest, ImapRaisesTheInputErrorInPosition) {
  mproc::Pool pool(2);
  auto first = pool.imap(square, throwing_input(10, 3), 1);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(first.next(), i * i);
  EXPECT_THROW(first.next(), std::length_error);
  auto second = pool.imap(square, throwing_input(20, 7), 2);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(second.next(), i * i);
  EXPECT_THROW(second.next(), std::length_error);
  std::multiset<int> seen;
  auto unordered = pool.imap_unordered(square, throwing_input(10, 5), 1);
  EXPECT_THROW(
      {
        while (auto value = unordered.next()) seen.insert(*value);
      },
      std::length_error);
  EXPECT_EQ(seen, (std::multiset<int>{0, 1, 4, 9, 16}));
  EXPECT_THROW(pool.map(square, throwing_input(10, 0), 1), std::length_error);
  EXPECT_EQ(pool.apply(square, 3), 9);
}

TEST_F(PoolTest, CloseAndJoinAfterAFailedMap) {
  // CPython's test_map_no_failfast: an error in map must not make join() hang.
  mproc::Pool pool(2);
  std::vector<int> input(200);
  std::iota(input.begin(), input.end(), 0);
  EXPECT_THROW(pool.map(raise_value_error, input, 1), std::invalid_argument);
  pool.close();
  pool.join();
}

TEST_F(PoolTest, ParentKilledTakesTheWorkersWithIt) {
  auto subreaper = mproc::testing::become_subreaper();
  auto children_before = mproc::testing::child_pids();  // this process's forkserver, if any
  auto [parent_end, child_end] = mproc::Pipe();
  mproc::Process owner(
      [](mproc::Connection to) {
        mproc::Pool pool(3);
        for (int pid : pool.worker_pids()) to.send(pid);
        for (;;) ::pause();
      },
      std::move(child_end));
  owner.start();
  std::vector<int> workers;
  for (int i = 0; i < 3; ++i) workers.push_back(parent_end.recv<int>());
  owner.kill();
  owner.join();
  // Re-parented to us (or, under forkserver, the owner's own server is): each must end (by
  // the lifeline's SIGKILL, or by seeing its task pipe close first, whichever comes first).
  mproc::testing::reap_orphans(children_before);
  for (int pid : workers) EXPECT_TRUE(mproc::testing::eventually([&] { return !mproc::testing::process_running(pid); }));
}

TEST_F(PoolTest, ImapNextTimeout) {
  mproc::Pool pool(1);
  auto results = pool.imap(sleep_ms, std::vector<int>{500});
  EXPECT_THROW(results.next(20ms), mproc::TimeoutError);
  EXPECT_EQ(results.next(), 500);
  EXPECT_EQ(results.next(), std::nullopt);
}

mproc::Pool* nested_pool = nullptr;

int nested_apply(int) {
  // Reaches the pool object copied into this worker: must be a clear error, not a hang.
  try {
    nested_pool->apply(square, 2);
  } catch (const mproc::Error&) {
    return -1;
  }
  return 1;
}

TEST_F(PoolTest, CallingThePoolFromItsOwnTaskIsAnError) {
  MPROC_FORK_ONLY();  // only a fork gives a worker the parent's pool object to misuse
  // maxtasksperchild = 1: the worker that runs nested_apply is forked after nested_pool is
  // set, so it sees a complete copy of the pool.
  mproc::Pool pool({.processes = 1, .maxtasksperchild = 1});
  nested_pool = &pool;
  EXPECT_EQ(pool.apply(square, 1), 1);
  EXPECT_EQ(pool.apply(nested_apply, 0), -1);
  nested_pool = nullptr;
}

TEST_F(PoolTest, DestructorWaitsForAcceptedWork) {
  std::vector<mproc::AsyncResult<int>> results;
  {
    mproc::Pool pool(2);
    for (int i = 0; i < 10; ++i) results.push_back(pool.apply_async(sleep_ms, 20));
  }
  for (auto& result : results) EXPECT_EQ(result.get(), 20);
}

TEST_F(PoolTest, ManyTinyTasks) {
  mproc::Pool pool(2);
  std::vector<mproc::AsyncResult<int>> results;
  for (int i = 0; i < 20000; ++i) results.push_back(pool.apply_async(square, i % 1000));
  for (int i = 0; i < 20000; ++i) ASSERT_EQ(results[i].get(), (i % 1000) * (i % 1000));
}

// ---- more failure modes, at several worker counts ---------------------------------------

int crash_at_five(int x) {
  if (x == 5) ::raise(SIGKILL);
  return x;
}

TEST_P(PoolSizes, CrashInsideAMapChunk) {
  mproc::Pool pool(GetParam());
  std::vector<int> input(20);
  std::iota(input.begin(), input.end(), 0);
  EXPECT_THROW(pool.map(crash_at_five, input, 1), mproc::WorkerLostError);
  // imap reports the lost chunk in its position and goes on with the rest.
  auto results = pool.imap(crash_at_five, input);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(results.next(), i);
  EXPECT_THROW(results.next(), mproc::WorkerLostError);
  for (int i = 6; i < 20; ++i) EXPECT_EQ(results.next(), i);
  EXPECT_EQ(results.next(), std::nullopt);
}

TEST_P(PoolSizes, TimeoutWithWorkQueuedBehind) {
  mproc::Pool pool({.processes = GetParam(), .task_timeout = 300ms});
  auto stuck = pool.apply_async(forever, 0);
  std::vector<mproc::AsyncResult<int>> behind;
  for (int i = 0; i < 10; ++i) behind.push_back(pool.apply_async(square, i));
  EXPECT_THROW(stuck.get(), mproc::TimeoutError);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(behind[static_cast<std::size_t>(i)].get(), i * i);
}

TEST_P(PoolSizes, TerminateFailsMapsAndIterators) {
  // CPython's test_terminate: a map_async in progress, then terminate().
  mproc::Pool pool(GetParam());
  auto lazy = pool.imap(sleep_ms, std::vector<int>(100, 100));
  EXPECT_EQ(lazy.next(), 100);
  auto mapped = pool.map_async(forever, std::vector<int>(100, 0), 1);  // only a kill ends it
  auto begin = std::chrono::steady_clock::now();
  pool.terminate();
  pool.join();
  EXPECT_LT(std::chrono::steady_clock::now() - begin, 1s);
  EXPECT_THROW(mapped.get(), mproc::CancelledError);
  EXPECT_THROW(
      {
        while (lazy.next()) {
        }
      },
      mproc::Error);
}

INSTANTIATE_TEST_SUITE_P(Workers, PoolSizes, ::testing::Values(1, 2, 4));

// ---- Python's semantics around close(), join() and callbacks ------------------------------

TEST_F(PoolTest, ImapAcceptedBeforeCloseFinishes) {
  mproc::Pool pool(2);
  std::vector<int> input(1000);
  std::iota(input.begin(), input.end(), 0);
  auto results = pool.imap(square, input);
  pool.close();
  EXPECT_THROW(pool.imap(square, input), mproc::Error);  // a new one is refused
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(results.next(), i * i);
  EXPECT_EQ(results.next(), std::nullopt);
  pool.join();
}

TEST_F(PoolTest, AnOpenImapKeepsItsWorkersAfterClose) {
  // Workers that retire (maxtasksperchild) or die after close() are replaced while an imap
  // accepted before close() may still submit; otherwise its later chunks would wait forever.
  mproc::Pool pool({.processes = 1, .maxtasksperchild = 1});
  std::vector<int> input(100);
  std::iota(input.begin(), input.end(), 0);
  auto results = pool.imap(square, input);
  pool.close();
  for (int i = 0; i < 100; ++i) ASSERT_EQ(results.next(), i * i);
  EXPECT_EQ(results.next(), std::nullopt);
  pool.join();
}

TEST_F(PoolTest, JoinFinishesAnUnconsumedImap) {
  // Python's task handler reads the whole input of an imap accepted before close(); join()
  // waits for it. Results then wait in the iterator.
  mproc::Pool pool(2);
  std::vector<int> input(2000);
  std::iota(input.begin(), input.end(), 0);
  auto ordered = pool.imap(square, input);
  auto unordered = pool.imap_unordered(square, input, 7);
  pool.close();
  pool.join();
  EXPECT_TRUE(pool.worker_pids().empty());
  for (int i = 0; i < 2000; ++i) ASSERT_EQ(ordered.next(), i * i);
  EXPECT_EQ(ordered.next(), std::nullopt);
  std::multiset<int> seen;
  while (auto value = unordered.next()) seen.insert(*value);
  EXPECT_EQ(seen.size(), 2000u);
}

TEST_F(PoolTest, AnImapOutlivingItsPoolIsAnErrorNotACrash) {
  std::vector<int> input(5000);
  std::iota(input.begin(), input.end(), 0);
  std::optional<mproc::IMapIterator<int>> results;
  {
    mproc::Pool pool(2);
    results.emplace(pool.imap(square, input));
    EXPECT_EQ(results->next(), 0);
  }  // the destructor finishes what the imap submitted and reads its input no further
  int count = 1;
  try {
    while (auto value = results->next()) {
      ASSERT_EQ(*value, count * count);
      ++count;
    }
    EXPECT_EQ(count, 5000);  // the whole input had been read before the destructor ran
  } catch (const mproc::Error& error) {
    EXPECT_LT(count, 5000);
    EXPECT_NE(std::string(error.what()).find("destroyed"), std::string::npos) << error.what();
  }
}

TEST_F(PoolTest, DestroyingAPoolWithAStartedEndlessImapReadsNoFurther) {
  // The destructor used to drain the imap's input to its end, which never comes: it read
  // (and queued) forever.
  std::optional<mproc::IMapIterator<int>> results;
  {
    mproc::Pool pool(2);
    results.emplace(pool.imap(square, std::views::iota(0), 4));
    EXPECT_EQ(results->next(), 0);
    EXPECT_EQ(results->next(), 1);
  }
  int count = 2;
  bool ended_with_error = false;
  try {
    while (auto value = results->next()) {
      ASSERT_EQ(*value, count * count);
      ++count;
    }
  } catch (const mproc::Error&) {
    ended_with_error = true;
  }
  EXPECT_TRUE(ended_with_error);
  EXPECT_LT(count, 1'000'000);
}

// A negative item waits until the test opens its gate; others return at once.
int gated(int x) {
  if (x < 0) Gate::pass();
  return x;
}
// A positive item announces itself and waits to be let through: the test lets the long
// items through two at a time, only once two have arrived (a barrier of two).
int paired(int x) {
  if (x > 0) {
    Gate::announce();
    Gate::pass();
  }
  return x;
}

TEST_F(PoolTest, ImapUnorderedYieldsInCompletionOrder) {
  mproc::Pool pool(2);
  Gate gate;  // destroyed first: a worker still waiting at it passes, and the pool can join
  auto results = pool.imap_unordered(gated, std::vector<int>{-1, 10}, 1);
  EXPECT_EQ(results.next(10s), 10);  // finished first, though submitted second
  gate.open();
  EXPECT_EQ(results.next(10s), -1);
  EXPECT_EQ(results.next(), std::nullopt);
}

TEST_F(PoolTest, SkewedMapKeepsBothWorkersBusy) {
  // Four long and four instant items, one per chunk: Python's workers pull chunks from a
  // shared queue, so the long ones run two at a time. Each long one waits until another
  // has arrived too: queued all on one worker, the second of a pair never arrives (the
  // test gives up after 10 s and lets them through, failing).
  Gate gate;
  std::atomic<bool> ran_in_pairs{true};
  std::thread pairer([&] {
    for (int pair = 0; pair < 2; ++pair) {
      if (!gate.wait_started(2, 10s)) {
        ran_in_pairs = false;
        gate.open();
        return;
      }
      gate.open(2);
    }
  });
  mproc::Pool pool(2);
  auto results = pool.map(paired, std::vector<int>{1, 2, 3, 4, 0, 0, 0, 0}, 1);
  pairer.join();
  EXPECT_EQ(results, (std::vector<int>{1, 2, 3, 4, 0, 0, 0, 0}));
  EXPECT_TRUE(ran_in_pairs) << "the long items did not run two at a time";
}

TEST_F(PoolTest, WorkQueuedBehindAnUnexpectedlyLongTaskMovesToAnIdleWorker) {
  mproc::Pool pool(2);
  Gate gate;
  // A burst of tiny tasks: the engine learns they are tiny and queues many ahead.
  std::vector<mproc::AsyncResult<int>> warm;
  for (int i = 0; i < 2000; ++i) warm.push_back(pool.apply_async(square, i));
  for (auto& result : warm) result.get();
  // One submission (the imap's first window) of a task that runs until the gate opens and
  // 60 tiny ones: the engine hands each worker its share at once, so about 23 tiny ones are
  // queued behind the slow one. The other worker can run only the rest of the window and
  // its refills (37); every one of the 60 arrives before the gate opens only if the queued
  // ones move to it.
  std::vector<int> items{-1};
  for (int i = 1; i <= 60; ++i) items.push_back(i);
  auto results = pool.imap_unordered(gated, items, 1);
  for (int i = 1; i <= 60; ++i) {
    auto value = results.next(10s);
    ASSERT_TRUE(value);
    EXPECT_GT(*value, 0);
  }
  gate.open();
  EXPECT_EQ(results.next(10s), -1);
  EXPECT_EQ(results.next(), std::nullopt);
  EXPECT_EQ(pool.map(square, std::vector<int>(500, 3)), std::vector<int>(500, 9));  // all still in order
}

TEST_F(PoolTest, CallbacksMayTakeNothingForVoidAndSeeTheOriginalError) {
  mproc::Pool pool(2);
  std::atomic<int> calls{0};
  pool.apply_async(mproc::CallOptions{.callback = [&] { ++calls; }}, nothing, 1).get();
  EXPECT_EQ(calls, 1);
  std::atomic<bool> was_invalid_argument{false};
  auto failed = pool.apply_async(mproc::CallOptions{.error_callback =
                                                        [&](std::exception_ptr error) {
                                                          try {
                                                            std::rethrow_exception(error);
                                                          } catch (const std::invalid_argument&) {
                                                            was_invalid_argument = true;
                                                          } catch (...) {
                                                          }
                                                        }},
                                 raise_value_error, 5);
  failed.wait();
  EXPECT_TRUE(was_invalid_argument);
}

TEST_F(PoolTest, CallbacksTakeTheirArgumentInEveryFormAUserWrites) {
  mproc::Pool pool(1);
  std::atomic<int> values{0};
  std::atomic<int> errors{0};
  pool.apply_async(mproc::CallOptions{.callback = [&](auto& r) { values += r; }}, square, 2).get();
  pool.apply_async(mproc::CallOptions{.callback = [&](const auto& r) { values += r; }}, square, 2).get();
  pool.apply_async(mproc::CallOptions{.callback = [&](auto r) { values += r; }}, square, 2).get();
  auto count_error = [&](const std::exception_ptr& error) { errors += error != nullptr; };
  pool.apply_async(mproc::CallOptions{.error_callback = [&](auto& e) { count_error(e); }}, raise_value_error, 5).wait();
  pool.apply_async(mproc::CallOptions{.error_callback = [&](const auto& e) { count_error(e); }}, raise_value_error, 5)
      .wait();
  pool.apply_async(mproc::CallOptions{.error_callback = [&](auto e) { count_error(e); }}, raise_value_error, 5).wait();
  EXPECT_EQ(values, 12);
  EXPECT_EQ(errors, 3);
}

TEST_F(PoolTest, AnEmptyMapAsyncCallsItsCallbackOffTheCallersThread) {
  mproc::Pool pool(2);
  std::atomic<int> calls{0};
  std::atomic<bool> other_thread{false};
  const auto caller = std::this_thread::get_id();
  auto empty = pool.map_async(mproc::CallOptions{.callback =
                                                     [&](const std::vector<int>& all) {
                                                       calls += all.empty() ? 1 : 100;
                                                       other_thread = std::this_thread::get_id() != caller;
                                                     }},
                              square, std::vector<int>{});
  EXPECT_TRUE(empty.get().empty());
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(other_thread);
  pool.close();
  EXPECT_THROW(pool.map_async(square, std::vector<int>{}), mproc::Error);
}

TEST_F(PoolTest, JoiningFromACallbackIsAnError) {
  mproc::Pool pool(1);
  std::atomic<int> refused{0};
  auto result = pool.apply_async(mproc::CallOptions{.callback =
                                                        [&](const int&) {
                                                          // The pool is closed by now: only the
                                                          // callback rule can refuse this join.
                                                          try {
                                                            pool.join();
                                                          } catch (const mproc::Error& error) {
                                                            if (std::string(error.what()).find("own callbacks") !=
                                                                std::string::npos)
                                                              ++refused;
                                                          }
                                                        }},
                                 sleep_ms, 100);
  pool.close();
  EXPECT_EQ(result.get(), 100);
  EXPECT_EQ(refused, 1);
  pool.join();
}

TEST_F(PoolTest, APoolDroppedByItsOwnCallbackShutsDownCleanly) {
  auto fds_before = mproc::testing::open_fds();
  std::atomic<bool> called{false};
  {
    auto pool = std::make_shared<mproc::Pool>(2);
    std::weak_ptr<mproc::Pool> weak = pool;
    auto result = pool->apply_async(mproc::CallOptions{.callback =
                                                           [keep = pool, &called](const int&) mutable {
                                                             keep.reset();  // may be the last reference
                                                             called = true;
                                                           }},
                                    square, 3);
    pool.reset();
    EXPECT_EQ(result.get(), 9);
  }
  EXPECT_TRUE(called);
  // The engine finishes on its own thread once the callback returns; its workers are reaped
  // and its descriptors closed soon after.
  EXPECT_TRUE(mproc::testing::eventually([&] { return mproc::testing::open_fds() == fds_before; }));
  EXPECT_TRUE(mproc::testing::eventually([] { return mproc::active_children().empty(); }));
}

TEST_F(PoolTest, DestructorAfterTerminateIsPrompt) {
  auto begin = std::chrono::steady_clock::now();
  {
    mproc::Pool pool(2);
    for (int i = 0; i < 4; ++i) pool.apply_async(forever, i);
    pool.terminate();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - begin, 2s);
}

TEST_F(PoolTest, DefaultsAndBadLifetimes) {
  mproc::Pool pool;
  EXPECT_EQ(pool.processes(), mproc::cpu_count());
  EXPECT_THROW(mproc::Pool({.processes = 1, .maxtasksperchild = -1}), std::invalid_argument);
  EXPECT_THROW(mproc::Pool({.processes = 1, .task_timeout = 0ms}), std::invalid_argument);
}

TEST_F(PoolTest, WaitForeverDoesNotOverflow) {
  mproc::Pool pool(1);
  auto result = pool.apply_async(sleep_ms, 50);
  EXPECT_TRUE(result.wait(std::chrono::hours::max()));
  EXPECT_EQ(result.get(std::chrono::seconds::max()), 50);
  auto lazy = pool.imap(sleep_ms, std::vector<int>{20});
  EXPECT_EQ(lazy.next(std::chrono::hours::max()), 20);
}

// ---- exceptions -----------------------------------------------------------------------------

int throw_system_error(int) { throw std::system_error(ENOENT, std::generic_category(), "open config"); }
int throw_bad_optional(int) { return std::optional<int>().value(); }
int throw_queue_empty(int) { throw mproc::Empty(); }
int throw_ios_failure(int) { throw std::ios_base::failure("stream broke"); }
int throw_future_error(int) {
  std::promise<int> promise;
  (void)promise.get_future();
  return promise.get_future().get();  // a second get_future(): future_already_retrieved
}

TEST_F(PoolTest, MoreExceptionTypesKeepTheirType) {
  mproc::Pool pool(1);
  try {
    pool.apply(throw_system_error, 0);
    FAIL();
  } catch (const std::system_error& error) {
    EXPECT_EQ(error.code(), std::errc::no_such_file_or_directory);
    EXPECT_EQ(std::string(error.what()),
              std::system_error(ENOENT, std::generic_category(), "open config").what());
  }
  EXPECT_THROW(pool.apply(throw_bad_optional, 0), std::bad_optional_access);
  EXPECT_THROW(pool.apply(throw_queue_empty, 0), mproc::Empty);
  try {
    pool.apply(throw_ios_failure, 0);
    FAIL();
  } catch (const std::ios_base::failure& error) {
    EXPECT_EQ(std::string(error.what()), std::ios_base::failure("stream broke").what());
  }
  // A logic_error that carries an error_code: its type and its code both come back.
  try {
    pool.apply(throw_future_error, 0);
    FAIL();
  } catch (const std::future_error& error) {
    EXPECT_EQ(error.code(), std::future_errc::future_already_retrieved);
  }
}

// A value whose encoding fails at run time (CPython's test_unpickleable_result and
// test_map_unplicklable).
struct Unencodable {
  int value = 0;
  template <class Archive>
  void save(Archive& archive) const {
    if (value < 0) throw std::runtime_error("cannot encode a negative Unencodable");
    archive(value);
  }
  template <class Archive>
  void load(Archive& archive) {
    archive(value);
  }
};
Unencodable make_unencodable(int x) { return Unencodable{x}; }
int read_unencodable(Unencodable u) { return u.value; }

TEST_F(PoolTest, AResultThatCannotBeEncodedFailsOnlyItsTask) {
  mproc::Pool pool(2);
  auto before = pool.worker_pids();
  for (int i = 0; i < 20; ++i) {
    std::atomic<int> errors{0};
    auto result = pool.apply_async(mproc::CallOptions{.error_callback = [&](std::exception_ptr) { ++errors; }},
                                   make_unencodable, -1);
    EXPECT_THROW(result.get(), std::runtime_error);
    EXPECT_EQ(errors, 1);
  }
  EXPECT_EQ(pool.apply(make_unencodable, 3).value, 3);
  EXPECT_EQ(pool.worker_pids(), before);  // no worker was lost over it
  EXPECT_THROW(pool.apply(read_unencodable, Unencodable{-1}), std::runtime_error);
  EXPECT_THROW(pool.map(read_unencodable, std::vector<Unencodable>{{1}, {-1}}), std::runtime_error);
  EXPECT_EQ(pool.map(read_unencodable, std::vector<Unencodable>{{1}, {2}}), (std::vector<int>{1, 2}));
}

// ---- initializers (TestInitializers) --------------------------------------------------------

// Each run of the initializer announces itself at the test's gate, where the test counts.
void count_run() { Gate::announce(); }

TEST_F(PoolTest, InitializerRunsOncePerWorker) {
  Gate runs;
  {
    mproc::Pool pool({.processes = 1, .initializer = count_run});
    pool.close();
    pool.join();
  }
  EXPECT_EQ(runs.take_started(), 1);
  {
    mproc::Pool pool({.processes = 1, .initializer = count_run, .maxtasksperchild = 1});
    for (int i = 0; i < 3; ++i) pool.apply(square, i);
    pool.close();
    pool.join();
  }
  // One per worker, replacements included: three ran a task; a fourth may have replaced the
  // third before close() arrived (Python's pool does the same).
  int count = runs.take_started();
  EXPECT_GE(count, 3);
  EXPECT_LE(count, 4);
}

// ---- the parent's end -----------------------------------------------------------------------

MPROC_TEST_HELPER(pool_then_ctrl_c) {
  mproc::test::use_start_method_of_the_test();
  mproc::Pool pool(2);
  for (int pid : pool.worker_pids()) std::printf("%d\n", pid);
  std::fflush(stdout);
  pool.apply(square, 2);
  ::raise(SIGINT);  // Ctrl-C: the default action ends the parent
  return 0;
}

TEST_F(PoolTest, CtrlCInTheParentLeavesNoWorkerBehind) {
  auto subreaper = mproc::testing::become_subreaper();
  auto children_before = mproc::testing::child_pids();  // this process's forkserver, if any
  auto helper = mproc::testing::run_helper("pool_then_ctrl_c");
  EXPECT_EQ(helper.exitcode, -SIGINT);
  std::istringstream pids(helper.output);
  std::vector<int> workers;
  for (int pid = 0; pids >> pid;) workers.push_back(pid);
  EXPECT_EQ(workers.size(), 2u);
  // The helper's orphans are re-parented to us: its workers (fork, spawn) or its forkserver,
  // whose own children, the workers, come to us if it dies first. Each must end by itself:
  // a survivor would hang here until ctest's timeout.
  mproc::testing::reap_orphans(children_before);
  // No worker is left anywhere: each was reaped by us or by the server before it ended.
  for (int pid : workers) EXPECT_FALSE(mproc::testing::process_running(pid)) << pid;
}

MPROC_TEST_HELPER(pool_in_a_static) {
  mproc::test::use_start_method_of_the_test();
  static mproc::Pool pool(2);
  static auto pending = pool.apply_async(sleep_ms, 50);
  return 0;  // std::exit: the static pool's destructor waits for the task, then the workers
}

TEST_F(PoolTest, AStaticPoolIsFinalizedAtExit) {
  // CPython's test_worker_finalization_via_atexit_handler_of_multiprocessing.
  auto helper = mproc::testing::run_helper("pool_in_a_static");
  EXPECT_EQ(helper.exitcode, 0);
}

// A worker whose stdio holds more than its stdout pipe can take: its exit-time flush blocks
// for as long as nobody reads that pipe.
std::vector<char> big_stdout_buffer(1 << 20);
void buffer_stdout_fully() { std::setvbuf(stdout, big_stdout_buffer.data(), _IOFBF, big_stdout_buffer.size()); }
int print_more_than_a_pipe_holds(int x) {
  const std::string text(256 * 1024, 'x');
  std::fwrite(text.data(), 1, text.size(), stdout);  // stays in the buffer until exit
  return x;
}

TEST_F(PoolTest, AWorkerStuckAfterItsStopIsKilledAndJoinReturns) {
  // The workers' stdout is a pipe that nobody reads; the parent keeps its own stdout.
  int pipe_ends[2];
  ASSERT_EQ(::pipe2(pipe_ends, O_CLOEXEC), 0);
  std::fflush(stdout);
  const int saved_stdout = ::dup(STDOUT_FILENO);
  ::dup2(pipe_ends[1], STDOUT_FILENO);
  std::optional<mproc::Pool> pool;
  try {
    pool.emplace(mproc::PoolOptions{.processes = 1, .initializer = mproc::Initializer(buffer_stdout_fully)});
  } catch (...) {
    ::dup2(saved_stdout, STDOUT_FILENO);
    throw;
  }
  ::dup2(saved_stdout, STDOUT_FILENO);
  ::close(saved_stdout);
  EXPECT_EQ(pool->apply(print_more_than_a_pipe_holds, 7), 7);
  const auto start = std::chrono::steady_clock::now();
  pool->close();
  pool->join();  // the worker cannot finish exiting: killed after its grace, not waited for ever
  EXPECT_LT(std::chrono::steady_clock::now() - start, 60s);
  pool.reset();
  ::close(pipe_ends[0]);
  ::close(pipe_ends[1]);
}

}  // namespace
