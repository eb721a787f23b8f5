// Process: Python's _TestProcess behaviours plus mproc's lifetime promises (no orphans, no
// zombies, no leaked descriptors).
#include <mproc/mproc.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "support/gate.hpp"
#include "support/leak_check.hpp"
#include "support/start_method.hpp"

using namespace std::chrono_literals;
using mproc::testing::LeakCheckedTest;

namespace {

class ProcessTest : public LeakCheckedTest {};

using mproc::testing::Gate;

// Targets are plain functions with their data as arguments, so that every test runs under
// every start method (a spawned child sees none of this process's memory).
void wait_for_gate() { Gate::pass(); }

TEST_F(ProcessTest, CurrentProcessInMain) {
  auto me = mproc::current_process();
  EXPECT_EQ(me.name(), "MainProcess");
  EXPECT_EQ(me.pid(), ::getpid());
  EXPECT_FALSE(me.daemon());
  EXPECT_FALSE(me.parent_pid().has_value());
}

TEST_F(ProcessTest, StartJoinExitcodeZero) {
  mproc::Process p([] {});
  EXPECT_FALSE(p.is_alive());
  EXPECT_FALSE(p.exitcode().has_value());
  EXPECT_EQ(p.pid(), 0);
  p.start();
  EXPECT_GT(p.pid(), 0);
  EXPECT_NE(p.pid(), ::getpid());
  p.join();
  EXPECT_FALSE(p.is_alive());
  EXPECT_EQ(p.exitcode(), 0);
}

// Starts `p`, whose target sends "hello world7", its name, its parent's pid and its own pid
// through the other end of `from`, and checks them.
void expect_identity_report(mproc::Process& p, mproc::Connection& from) {
  p.start();
  EXPECT_EQ(from.recv<std::string>(), "hello world7");
  EXPECT_EQ(from.recv<std::string>(), p.name());
  EXPECT_EQ(from.recv<int>(), ::getpid());
  EXPECT_EQ(from.recv<pid_t>(), p.pid());
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

TEST_F(ProcessTest, CapturingLambdaWithArgumentsReportsThroughPipe) {
  MPROC_FORK_ONLY();  // a capturing lambda as the target
  auto [parent_end, child_end] = mproc::Pipe();
  std::string prefix = "hello ";
  mproc::Process p(
      [&](int n, std::string word) {
        auto me = mproc::current_process();
        child_end.send(prefix + word + std::to_string(n));
        child_end.send(me.name());
        child_end.send(static_cast<int>(me.parent_pid().value_or(-1)));
        child_end.send(me.pid());
      },
      7, std::string("world"));
  expect_identity_report(p, parent_end);
}

void report_identity(mproc::Connection to, int n, std::string word) {
  auto me = mproc::current_process();
  to.send("hello " + word + std::to_string(n));
  to.send(me.name());
  to.send(static_cast<int>(me.parent_pid().value_or(-1)));
  to.send(me.pid());
}

TEST_F(ProcessTest, PlainFunctionWithAConnectionAndArgumentsReportsThroughIt) {
  auto [parent_end, child_end] = mproc::Pipe();
  mproc::Process p(report_identity, std::move(child_end), 7, std::string("world"));
  expect_identity_report(p, parent_end);
}

TEST_F(ProcessTest, ACapturingTargetRunsOnlyUnderFork) {
  int code = 4;
  mproc::Process p([code] { mproc::exit(code); });
  if (!mproc::test::running_under_fork()) {
    EXPECT_THROW(p.start(), mproc::ProcessError);
    return;
  }
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 4);
}

TEST_F(ProcessTest, ExitCodesFollowPython) {
  mproc::Process exits_five([] { mproc::exit(5); });
  mproc::Process throws([] { throw std::runtime_error("boom"); });
  mproc::Process underscore_exit([] { ::_exit(3); });
  mproc::Process aborts([] { std::signal(SIGABRT, SIG_DFL); std::abort(); });
  for (auto* p : {&exits_five, &throws, &underscore_exit, &aborts}) p->start();
  for (auto* p : {&exits_five, &throws, &underscore_exit, &aborts}) p->join();
  EXPECT_EQ(exits_five.exitcode(), 5);
  EXPECT_EQ(throws.exitcode(), 1);
  EXPECT_EQ(underscore_exit.exitcode(), 3);
  EXPECT_EQ(aborts.exitcode(), -SIGABRT);
}

TEST_F(ProcessTest, ExitUnwindsTheTargetAndIsNotAStdException) {
  auto [parent_end, child_end] = mproc::Pipe();
  mproc::Process p(
      [](mproc::Connection to) {
        struct Reporter {
          mproc::Connection* to;
          ~Reporter() { to->send(std::string("unwound")); }
        } reporter{&to};
        try {
          mproc::exit(9);
        } catch (const std::exception&) {
          to.send(std::string("swallowed"));
        }
      },
      std::move(child_end));
  p.start();
  EXPECT_EQ(parent_end.recv<std::string>(), "unwound");
  p.join();
  EXPECT_EQ(p.exitcode(), 9);
}

TEST_F(ProcessTest, EscapingExceptionPrintsTypeAndMessageToStderr) {
  // The child's stderr goes to a file it opens by name (it inherits no descriptor of ours).
  char path[] = "/tmp/mproc-test-stderr-XXXXXX";
  int file = ::mkstemp(path);
  ASSERT_GE(file, 0);
  mproc::Process p(
      [](std::string stderr_path) {
        int fd = ::open(stderr_path.c_str(), O_WRONLY | O_CLOEXEC);
        ::dup2(fd, STDERR_FILENO);
        throw std::out_of_range("index 12 is out of range");
      },
      std::string(path));
  p.name("Worker-7");
  p.start();
  p.join();
  std::string text;
  char buffer[512];
  for (ssize_t n; (n = ::read(file, buffer, sizeof buffer)) > 0;) text.append(buffer, static_cast<size_t>(n));
  ::close(file);
  ::unlink(path);
  EXPECT_EQ(p.exitcode(), 1);
  EXPECT_NE(text.find("Process Worker-7"), std::string::npos) << text;
  EXPECT_NE(text.find("std::out_of_range: index 12 is out of range"), std::string::npos) << text;
}

TEST_F(ProcessTest, TerminateAndKillReportNegativeSignal) {
  Gate gate;
  mproc::Process a(wait_for_gate);
  mproc::Process b(wait_for_gate);
  a.start();
  b.start();
  EXPECT_TRUE(a.is_alive());
  a.terminate();
  b.kill();
  a.join();
  b.join();
  EXPECT_EQ(a.exitcode(), -SIGTERM);
  EXPECT_EQ(b.exitcode(), -SIGKILL);
  a.terminate();  // no effect once exited
  b.kill();
}

TEST_F(ProcessTest, JoinWithTimeoutIsBoundedAndReturnsFalseWhileRunning) {
  Gate gate;
  mproc::Process p(wait_for_gate);
  p.start();
  auto begin = std::chrono::steady_clock::now();
  EXPECT_FALSE(p.join(100ms));
  auto waited = std::chrono::steady_clock::now() - begin;
  EXPECT_GE(waited, 90ms);
  EXPECT_LT(waited, 5s);
  EXPECT_EQ(p.exitcode(), std::nullopt);
  gate.open();  // the child passes and returns
  EXPECT_TRUE(p.join(30s));
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_TRUE(p.join(0ms));
}

TEST_F(ProcessTest, JoinFromAnotherThreadWhileTerminating) {
  Gate gate;
  mproc::Process p(wait_for_gate);
  p.start();
  std::thread joiner([&] { p.join(); });
  p.terminate();
  joiner.join();
  EXPECT_EQ(p.exitcode(), -SIGTERM);
}

TEST_F(ProcessTest, MisuseIsAClearError) {
  mproc::Process p([] {});
  EXPECT_THROW(p.join(), mproc::ProcessError);
  EXPECT_THROW(p.terminate(), mproc::ProcessError);
  EXPECT_THROW(p.sentinel(), mproc::ProcessError);
  p.start();
  EXPECT_THROW(p.start(), mproc::ProcessError);
  EXPECT_THROW(p.daemon(true), mproc::ProcessError);
  p.join();
  p.close();
  EXPECT_THROW(p.start(), mproc::ProcessError);
  EXPECT_THROW(p.join(), mproc::ProcessError);
  EXPECT_THROW(p.exitcode(), mproc::ProcessError);
  EXPECT_THROW(p.is_alive(), mproc::ProcessError);
  EXPECT_THROW(p.pid(), mproc::ProcessError);
  EXPECT_FALSE(p.name().empty());
  p.close();  // idempotent
  EXPECT_THROW(mproc::Process(std::function<void()>{}), std::invalid_argument);
}

TEST_F(ProcessTest, CloseWhileAliveIsRefused) {
  Gate gate;
  mproc::Process p(wait_for_gate);
  p.start();
  EXPECT_THROW(p.close(), mproc::ProcessError);
  gate.open();
  p.join();
  p.close();
}

TEST_F(ProcessTest, NamesFollowPythonDefaults) {
  mproc::Process a([] {});
  mproc::Process b([] {});
  ASSERT_EQ(a.name().rfind("Process-", 0), 0u);
  int first = std::stoi(a.name().substr(8));
  EXPECT_EQ(b.name(), "Process-" + std::to_string(first + 1));
  mproc::Process named({.name = "indexer"}, [] {});
  EXPECT_EQ(named.name(), "indexer");
}

TEST_F(ProcessTest, NestedChildGetsHierarchicalName) {
  auto [parent_end, child_end] = mproc::Pipe();
  mproc::Process outer(
      [](mproc::Connection to) {
        mproc::Process inner([](mproc::Connection out) { out.send(mproc::current_process().name()); }, std::move(to));
        inner.start();
        inner.join();
      },
      std::move(child_end));
  outer.start();
  EXPECT_EQ(parent_end.recv<std::string>(), outer.name() + ":1");
  outer.join();
  EXPECT_EQ(outer.exitcode(), 0);
}

TEST_F(ProcessTest, DaemonFlagAndDaemonsMayNotHaveChildren) {
  auto [parent_end, child_end] = mproc::Pipe();
  mproc::Process p(
      {.daemon = true},
      [](mproc::Connection to) {
        to.send(mproc::current_process().daemon());
        try {
          mproc::Process grandchild([] {});
          grandchild.start();
          to.send(std::string("started"));
        } catch (const mproc::ProcessError& error) {
          to.send(std::string(error.what()));
        }
      },
      std::move(child_end));
  EXPECT_TRUE(p.daemon());
  p.start();
  EXPECT_TRUE(parent_end.recv<bool>());
  EXPECT_NE(parent_end.recv<std::string>().find("daemonic"), std::string::npos);
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

TEST_F(ProcessTest, ActiveChildrenListsRunningChildrenOnly) {
  Gate gate;
  mproc::Process p(wait_for_gate);
  EXPECT_TRUE(mproc::active_children().empty());
  p.start();
  auto children = mproc::active_children();
  ASSERT_EQ(children.size(), 1u);
  EXPECT_TRUE(children[0] == p);
  EXPECT_EQ(children[0].pid(), p.pid());
  gate.open();
  p.join();
  EXPECT_TRUE(mproc::active_children().empty());
}

TEST_F(ProcessTest, DroppedHandleKeepsRunningAndIsReapedLater) {
  Gate gate;
  pid_t pid;
  {
    mproc::Process p(wait_for_gate);
    p.start();
    pid = p.pid();
  }
  auto children = mproc::active_children();
  ASSERT_EQ(children.size(), 1u);
  auto child = children[0];
  EXPECT_EQ(child.pid(), pid);
  EXPECT_TRUE(mproc::testing::process_running(pid));
  gate.open();
  int ready = ::poll(std::array<pollfd, 1>{pollfd{child.sentinel(), POLLIN, 0}}.data(), 1, 30'000);
  EXPECT_EQ(ready, 1);
  EXPECT_TRUE(mproc::active_children().empty());  // reaps it
  EXPECT_EQ(child.exitcode(), 0);
}

TEST_F(ProcessTest, SentinelBecomesReadableAtExit) {
  Gate gate;
  mproc::Process p(wait_for_gate);
  p.start();
  int sentinel = p.sentinel();
  EXPECT_TRUE(mproc::wait(std::span<const int>(&sentinel, 1), 50ms).empty());
  gate.open();
  EXPECT_EQ(mproc::wait(std::span<const int>(&sentinel, 1), 30s).size(), 1u);
  p.join();
}

TEST_F(ProcessTest, OnceTheSentinelIsReadableTheExitcodeIsKnown) {
  // Under forkserver the child is the server's: its exit code arrives from the server a
  // moment after the sentinel (a pidfd) becomes readable; is_alive() and exitcode() must
  // not report a child that the sentinel says has exited as still running.
  for (int i = 0; i < 20; ++i) {
    mproc::Process p([](int code) { mproc::exit(code); }, 3);
    p.start();
    int sentinel = p.sentinel();
    ASSERT_EQ(mproc::wait(std::span<const int>(&sentinel, 1), 30s).size(), 1u);
    EXPECT_FALSE(p.is_alive());
    EXPECT_EQ(p.exitcode(), 3);
  }
  EXPECT_TRUE(mproc::active_children().empty());
}

TEST_F(ProcessTest, ChildOutlivesTheThreadThatStartedIt) {
  // PR_SET_PDEATHSIG would kill this child when the starting thread exits.
  auto [parent_end, child_end] = mproc::Pipe();
  std::optional<mproc::Process> p;
  std::thread starter([&] {
    p.emplace(
        [](mproc::Connection peer) {
          int request = peer.recv<int>();
          peer.send(request + 1);
        },
        std::move(child_end));
    p->start();
  });
  starter.join();
  parent_end.send(41);
  EXPECT_EQ(parent_end.recv<int>(), 42);
  p->join();
  EXPECT_EQ(p->exitcode(), 0);
}

TEST_F(ProcessTest, ChildrenDieWhenTheirParentIsKilled) {
  auto subreaper = mproc::testing::become_subreaper();
  auto children_before = mproc::testing::child_pids();  // this process's forkserver, if any
  auto [parent_end, child_end] = mproc::Pipe();
  mproc::Process middle(
      [](mproc::Connection to) {
        std::vector<mproc::Process> grandchildren;
        for (int i = 0; i < 3; ++i) {
          // Nothing but a signal ends these: they must not notice middle's death by any other
          // means (such as end of file on a pipe middle held) before the lifeline kills them.
          grandchildren.emplace_back([] {
            for (;;) ::pause();
          });
          grandchildren.back().start();
          to.send(grandchildren.back().pid());
        }
        for (;;) ::pause();  // until killed
      },
      std::move(child_end));
  middle.start();
  std::vector<pid_t> pids;
  for (int i = 0; i < 3; ++i) pids.push_back(parent_end.recv<pid_t>());
  middle.kill();
  middle.join();
  EXPECT_EQ(middle.exitcode(), -SIGKILL);
  // Orphans are re-parented to us (the subreaper); each must die of SIGKILL promptly. Under
  // forkserver the grandchildren are middle's server's children: it comes to us, they die
  // with it (and come to us too, or are reaped by it first).
  auto statuses = mproc::testing::reap_orphans(children_before);
  for (pid_t pid : pids) {
    EXPECT_TRUE(mproc::testing::eventually([&] { return !mproc::testing::process_running(pid); })) << pid;
    if (auto reaped = statuses.find(pid); reaped != statuses.end()) {
      EXPECT_TRUE(WIFSIGNALED(reaped->second));
      EXPECT_EQ(WTERMSIG(reaped->second), SIGKILL);
    }
  }
}

TEST_F(ProcessTest, CpuCountHonoursAffinity) {
  cpu_set_t set;
  ASSERT_EQ(::sched_getaffinity(0, sizeof set, &set), 0);
  EXPECT_EQ(mproc::cpu_count(), CPU_COUNT(&set));
  auto [parent_end, child_end] = mproc::Pipe();
  mproc::Process p(
      [](mproc::Connection to) {
        cpu_set_t inherited, one;
        ::sched_getaffinity(0, sizeof inherited, &inherited);
        CPU_ZERO(&one);
        for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
          if (CPU_ISSET(cpu, &inherited)) {
            CPU_SET(cpu, &one);
            break;
          }
        ::sched_setaffinity(0, sizeof one, &one);
        to.send(mproc::cpu_count());
      },
      std::move(child_end));
  p.start();
  EXPECT_EQ(parent_end.recv<int>(), 1);
  p.join();
}

TEST_F(ProcessTest, ManyStartsLeakNothing) {
  for (int i = 0; i < 50; ++i) {
    mproc::Process p([](int code) { mproc::exit(code); }, i % 7);
    p.start();
    p.join();
    EXPECT_EQ(p.exitcode(), i % 7);
  }
}

TEST_F(ProcessTest, ManyConcurrentChildren) {
  std::vector<mproc::Process> children;
  for (int i = 0; i < 32; ++i) children.emplace_back([](int code) { mproc::exit(code); }, i);
  for (auto& child : children) child.start();
  for (auto& child : children) child.join();
  for (int i = 0; i < 32; ++i) EXPECT_EQ(children[i].exitcode(), i);
}

TEST_F(ProcessTest, ParentSignalHandlersAreResetInTheChild) {
  static std::atomic<int> handled{0};
  auto previous = std::signal(SIGUSR1, [](int) { handled = 1; });
  Gate gate;
  mproc::Process p(wait_for_gate);
  p.start();
  ASSERT_EQ(::kill(p.pid(), SIGUSR1), 0);  // default action: terminate
  p.join();
  EXPECT_EQ(p.exitcode(), -SIGUSR1);
  std::signal(SIGUSR1, previous);
}

// Text the parent buffered before start() is printed once, not once more by the child.
MPROC_TEST_HELPER(buffered_stdout) {
  mproc::test::use_start_method_of_the_test();
  std::printf("before ");  // stdout is a pipe here: fully buffered, not flushed yet
  mproc::Process child([] { std::printf("child "); });
  child.start();
  child.join();
  std::printf("after\n");
  return child.exitcode() == 0 ? 0 : 3;
}

TEST_F(ProcessTest, BufferedOutputIsNotDuplicatedByTheChild) {
  auto result = mproc::testing::run_helper("buffered_stdout");
  EXPECT_EQ(result.exitcode, 0);
  EXPECT_EQ(result.output, "before child after\n");
}

// At normal exit, daemonic children are terminated and the others joined (Python's
// _exit_function). Runs in a helper: a fresh copy of this binary returning from "main".
MPROC_TEST_HELPER(exit_policy) {
  mproc::test::use_start_method_of_the_test();
  mproc::Process daemon({.daemon = true}, [] {
    for (;;) ::pause();  // would wait forever
  });
  daemon.start();
  mproc::Process worker([] {
    std::this_thread::sleep_for(100ms);
    std::printf("worker finished\n");
  });
  worker.start();
  std::printf("daemon %d\n", daemon.pid());
  std::fflush(stdout);
  return 0;  // std::exit: the exit handler must terminate `daemon` and join `worker`
}

TEST_F(ProcessTest, AtExitDaemonsAreTerminatedAndOthersJoined) {
  auto result = mproc::testing::run_helper("exit_policy");
  EXPECT_EQ(result.exitcode, 0);
  EXPECT_NE(result.output.find("worker finished"), std::string::npos) << result.output;
  auto at = result.output.find("daemon ");
  ASSERT_NE(at, std::string::npos);
  int daemon_pid = std::stoi(result.output.substr(at + 7));
  EXPECT_FALSE(mproc::testing::process_running(daemon_pid));
}

}  // namespace
