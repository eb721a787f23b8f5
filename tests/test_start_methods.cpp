// Start methods: the API (get/set_start_method, get_context), what spawn and forkserver
// children see and may run, how a forgotten freeze_support() is reported, code identity
// across exec, and what is left when the parent is killed.
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <string>
#include <unistd.h>
#include <vector>

#include <gtest/gtest.h>
#include <mproc/mproc.hpp>

#include "support/leak_check.hpp"
#include "support/plugin.hpp"

namespace {

using namespace std::chrono_literals;
using mproc::testing::eventually;
using mproc::testing::LeakCheckedTest;
using mproc::testing::process_running;

// ---- the API ------------------------------------------------------------------------------

TEST(StartMethodApi, ThreeMethodsForkFirst) {
  EXPECT_EQ(mproc::get_all_start_methods(), (std::vector<std::string>{"fork", "spawn", "forkserver"}));
}

TEST(StartMethodApi, SetTwiceNeedsForceAndAskingFixesTheDefault) {
  mproc::set_start_method("spawn", true);
  EXPECT_EQ(mproc::get_start_method(), "spawn");
  EXPECT_THROW(mproc::set_start_method("fork"), mproc::Error);
  EXPECT_EQ(mproc::get_start_method(), "spawn");
  mproc::set_start_method("forkserver", true);
  EXPECT_EQ(mproc::get_start_method(true), std::optional<std::string>("forkserver"));
  EXPECT_EQ(mproc::get_context().get_start_method(), "forkserver");
  mproc::set_start_method("fork", true);
  EXPECT_EQ(mproc::get_start_method(), "fork");
}

TEST(StartMethodApi, UnknownNamesAreInvalidArguments) {
  EXPECT_THROW(mproc::get_context("vfork"), std::invalid_argument);
  EXPECT_THROW(mproc::set_start_method("", true), std::invalid_argument);
  EXPECT_EQ(mproc::get_context("spawn").get_start_method(), "spawn");
  EXPECT_EQ(mproc::get_context("spawn"), mproc::get_context("spawn"));
  EXPECT_NE(mproc::get_context("spawn"), mproc::get_context("fork"));
}

// ---- code identity ------------------------------------------------------------------------

int square(int x) { return x * x; }

TEST(CodeIdentity, NamesResolveToTheSameFunction) {
  auto ref = mproc::detail::code_ref(&square);
  EXPECT_NE(ref.module, 0u);
  EXPECT_EQ(mproc::detail::resolve<int(int)>(ref), &square);
  auto in_library = mproc::detail::code_ref(&mproc_test_plugin::triple);
#ifndef MPROC_TEST_NO_PIE
  // (A position-dependent executable names a library function by its PLT stub, which is
  // the function's canonical address there: still the same code in every copy.)
  EXPECT_NE(in_library.module, ref.module);  // another module, another identity
#endif
  EXPECT_EQ(mproc::detail::resolve<int(int)>(in_library), &mproc_test_plugin::triple);
}

TEST(CodeIdentity, AnUnknownModuleOrANonCodeOffsetIsRefused) {
  auto ref = mproc::detail::code_ref(&square);
  auto other_build = ref;
  other_build.module ^= 0x5a5a5a5a;
  EXPECT_THROW(mproc::detail::resolve_code(other_build), mproc::SerializationError);
  auto outside = ref;
  outside.offset = ~std::uint64_t{0} >> 8;
  EXPECT_THROW(mproc::detail::resolve_code(outside), mproc::SerializationError);
  static int data = 0;
  EXPECT_THROW(mproc::detail::code_ref_of(&data), mproc::SerializationError);
}

// ---- what spawn and forkserver children see and run ------------------------------------

class ExecMethods : public LeakCheckedTest, public ::testing::WithParamInterface<const char*> {
 protected:
  mproc::Context context() const { return mproc::get_context(GetParam()); }
  bool forks() const { return std::string(GetParam()) == "fork"; }
};

int global_value = 1;

void send_global(mproc::Connection out) { out.send(global_value); }

TEST_P(ExecMethods, GlobalsAreTheProgramsInitialValues) {
  global_value = 2;
  auto [in, out] = mproc::Pipe(false);
  mproc::Process child({.context = context()}, send_global, std::move(out));
  child.start();
  EXPECT_EQ(in.recv<int>(), forks() ? 2 : 1);  // a fresh copy never saw the parent's store
  child.join();
  EXPECT_EQ(child.exitcode(), 0);
  global_value = 1;
}

void echo_twice(mproc::Connection channel, std::string prefix) {
  auto values = channel.recv<std::vector<int>>();
  channel.send(prefix + std::to_string(values.size()));
  channel.send(values);
}

TEST_P(ExecMethods, AConnectionArgumentReachesTheChildByDescriptor) {
  auto [here, there] = mproc::Pipe();
  mproc::Process child({.context = context()}, echo_twice, std::move(there), std::string("n="));
  child.start();
  here.send(std::vector<int>(100'000, 7));
  EXPECT_EQ(here.recv<std::string>(), "n=100000");
  EXPECT_EQ(here.recv<std::vector<int>>(), std::vector<int>(100'000, 7));
  child.join();
  EXPECT_EQ(child.exitcode(), 0);
}

void exit_with(int code) { mproc::exit(code); }

void send_start_method(mproc::Connection out) { out.send(mproc::get_start_method()); }

TEST(StartMethodApi, AChildInheritsItsParentsStartMethod) {
  for (const char* method : {"spawn", "forkserver"}) {
    mproc::set_start_method(method, true);
    auto [in, out] = mproc::Pipe(false);
    mproc::Process child(send_start_method, std::move(out));
    child.start();
    EXPECT_EQ(in.recv<std::string>(), method);  // a pool made in the child would use it too
    child.join();
  }
  mproc::set_start_method("fork", true);
}
void kill_self() { ::raise(SIGKILL); }
void throw_runtime_error() { throw std::runtime_error("from the child"); }
void wait_for_eof(mproc::Connection in) {
  try {
    in.recv<int>();
  } catch (const mproc::EOFError&) {
  }
}

TEST_P(ExecMethods, ExitCodesSignalsAndTerminateAsUnderFork) {
  mproc::Process exits({.context = context()}, exit_with, 5);
  mproc::Process killed({.context = context()}, kill_self);
  mproc::Process throws({.context = context()}, throw_runtime_error);
  exits.start();
  killed.start();
  throws.start();
  exits.join();
  killed.join();
  throws.join();
  EXPECT_EQ(exits.exitcode(), 5);
  EXPECT_EQ(killed.exitcode(), -SIGKILL);
  EXPECT_EQ(throws.exitcode(), 1);

  auto [in, out] = mproc::Pipe(false);
  mproc::Process blocked({.context = context()}, wait_for_eof, std::move(in));
  blocked.start();
  EXPECT_TRUE(blocked.is_alive());
  EXPECT_FALSE(blocked.join(10ms));
  blocked.terminate();
  blocked.join();
  EXPECT_EQ(blocked.exitcode(), -SIGTERM);
  int sentinel = blocked.sentinel();
  EXPECT_GE(sentinel, 0);
}

TEST_P(ExecMethods, WhatCannotBeNamedIsRefusedAtConstruction) {
  if (forks()) GTEST_SKIP() << "fork runs any callable";
  int captured = 3;
  auto capturing = [&captured] { captured = 4; };
  EXPECT_THROW(mproc::Process({.context = context()}, capturing), mproc::ProcessError);
  EXPECT_THROW(mproc::Pool({.processes = 1, .initializer = capturing, .context = context()}), std::invalid_argument);
  EXPECT_THROW(mproc::ProcessPoolExecutor({.max_workers = 1, .initializer = capturing, .mp_context = context()}),
               std::invalid_argument);
}

void noop() {}

TEST_P(ExecMethods, AFunctionTheChildCannotResolveIsASetupFailure) {
  if (forks()) GTEST_SKIP() << "a fork runs the parent's own code";
  mproc::detail::ProcessTarget target = mproc::detail::make_process_target(noop);
  auto named = target.named;
  target.named = [named] {
    auto call = named();
    call.function.module ^= 0xdeadbeef;  // as if the child were another build
    return call;
  };
  mproc::Process child({.context = context()}, std::move(target));
  try {
    child.start();
    FAIL() << "start() accepted a function the child cannot resolve";
  } catch (const mproc::ProcessError& error) {
    EXPECT_NE(std::string(error.what()).find("could not set itself up"), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("build"), std::string::npos) << error.what();
  }
  EXPECT_FALSE(child.is_alive());
}

int base_value = 0;
void set_base(int value) { base_value = value; }
int add_base(int x) { return x + base_value; }
int abort_task(int) { std::abort(); }

TEST_P(ExecMethods, PoolWithInitargsAndADeadWorker) {
  mproc::Pool pool({.processes = 2, .initializer = mproc::Initializer(set_base, 100), .context = context()});
  EXPECT_EQ(pool.apply(add_base, 1), 101);
  EXPECT_THROW(pool.apply(abort_task, 0), mproc::WorkerLostError);
  EXPECT_EQ(pool.map(add_base, std::vector<int>{1, 2, 3}), (std::vector<int>{101, 102, 103}));
  EXPECT_EQ(pool.apply(mproc_test_plugin::triple, 5), 15);  // a function in a shared library
}

TEST_P(ExecMethods, ExecutorReplacesWorkersAfterMaxTasks) {
  mproc::ProcessPoolExecutor executor({.max_workers = 1, .max_tasks_per_child = 1, .mp_context = context()});
  std::vector<mproc::Future<int>> futures;
  for (int i = 0; i < 5; ++i) futures.push_back(executor.submit(square, i));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(futures[static_cast<std::size_t>(i)].result(), i * i);
}

INSTANTIATE_TEST_SUITE_P(Methods, ExecMethods, ::testing::Values("fork", "spawn", "forkserver"));

// ---- a program that forgot freeze_support() ---------------------------------------------

mproc::testing::HelperResult run_forgetful_program(const std::string& method, const std::string& mode,
                                                   const std::string& kind) {
  return mproc::testing::run_program(MPROC_FORGOT_FREEZE_SUPPORT, {"FORGOT_FREEZE_SUPPORT_METHOD=" + method,
                                                                   "FORGOT_FREEZE_SUPPORT_MODE=" + mode,
                                                                   "FORGOT_FREEZE_SUPPORT_KIND=" + kind});
}

class ForgottenFreezeSupport : public ::testing::TestWithParam<std::tuple<const char*, const char*, const char*>> {};

TEST_P(ForgottenFreezeSupport, TheParentIsToldAndNothingRunsOn) {
  auto [method, mode, kind] = GetParam();
  auto begin = std::chrono::steady_clock::now();
  auto run = run_forgetful_program(method, mode, kind);
  EXPECT_EQ(run.exitcode, 3) << run.output;
  EXPECT_NE(run.output.find("freeze_support"), std::string::npos) << run.output;
  // Only a copy that runs on without reaching mproc needs the start-up time limit.
  if (std::string(mode) != "busy") {
    EXPECT_LT(std::chrono::steady_clock::now() - begin, 5s);
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, ForgottenFreezeSupport,
                         ::testing::Combine(::testing::Values("spawn", "forkserver"),
                                            ::testing::Values("start", "return"),
                                            ::testing::Values("process", "pool")));
INSTANTIATE_TEST_SUITE_P(RunsOn, ForgottenFreezeSupport,
                         ::testing::Values(std::make_tuple("spawn", "busy", "process")));

// ---- no orphans ---------------------------------------------------------------------------

pid_t parent_of(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  auto close = line.rfind(')');
  if (close == std::string::npos) return 0;
  char state = 0;
  int ppid = 0;
  if (std::sscanf(line.c_str() + close + 1, " %c %d", &state, &ppid) != 2) return 0;
  return ppid;
}

void start_pools_and_report(mproc::Connection out) {
  mproc::Pool spawned({.processes = 2, .context = mproc::get_context("spawn")});
  mproc::Pool forked_by_server({.processes = 2, .context = mproc::get_context("forkserver")});
  std::vector<int> pids = spawned.worker_pids();
  for (int pid : forked_by_server.worker_pids()) {
    pids.push_back(pid);
    pids.push_back(parent_of(pid));  // the forkserver
  }
  out.send(pids);
  for (;;) ::pause();
}

TEST(NoOrphans, AParentKilledTakesItsSpawnedWorkersAndItsForkserverWithIt) {
  auto [in, out] = mproc::Pipe(false);
  mproc::Process parent({.context = mproc::get_context("fork")}, start_pools_and_report, std::move(out));
  parent.start();
  auto pids = in.recv<std::vector<int>>();
  ASSERT_EQ(pids.size(), 6u);
  for (int pid : pids) EXPECT_TRUE(process_running(pid)) << pid;
  parent.kill();
  parent.join();
  for (int pid : pids) EXPECT_TRUE(eventually([&] { return !process_running(pid); })) << pid;
}

// ---- the forkserver dies ------------------------------------------------------------------

void block_on(mproc::Connection in) { wait_for_eof(std::move(in)); }

TEST(Forkserver, AServerThatDiedIsRestartedAndItsChildrenDieWithIt) {
  auto [in, out] = mproc::Pipe(false);
  mproc::Process child({.context = mproc::get_context("forkserver")}, block_on, std::move(in));
  child.start();
  pid_t server = parent_of(child.pid());
  ASSERT_GT(server, 1);
  ASSERT_NE(server, ::getpid());
  ::kill(server, SIGKILL);
  child.join();  // dies with its server
  EXPECT_EQ(child.exitcode(), -SIGKILL);
  mproc::Process next({.context = mproc::get_context("forkserver")}, exit_with, 7);
  next.start();  // a new server
  EXPECT_NE(parent_of(next.pid()), server);
  next.join();
  EXPECT_EQ(next.exitcode(), 7);
}

}  // namespace
