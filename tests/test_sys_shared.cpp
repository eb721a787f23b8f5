// The sys layer under the shared-state types: futex words, shared mappings, named shared
// memory and the robust mutex, each checked across a real fork.
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstring>
#include <new>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "support/leak_check.hpp"
#include "sys/futex.hpp"
#include "sys/robust_mutex.hpp"
#include "sys/shm.hpp"
#include "sys/spawn.hpp"

namespace {

using namespace std::chrono_literals;
using mproc::sys::Clock;

class SysShared : public mproc::testing::LeakCheckedTest {};

// Forks a child running `body` (which must end in _exit) and returns its pid.
template <class Body>
pid_t fork_child(Body body) {
  pid_t pid = ::fork();
  if (pid == 0) {
    body();
    ::_exit(0);
  }
  return pid;
}

int wait_status(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

TEST_F(SysShared, FutexWaitTimesOutAtItsDeadline) {
  std::atomic<std::uint32_t> word{0};
  auto start = Clock::now();
  EXPECT_EQ(mproc::sys::futex_wait(word, 0, Clock::now() + 50ms), -ETIMEDOUT);
  EXPECT_GE(Clock::now() - start, 45ms);
  EXPECT_EQ(mproc::sys::futex_wait(word, 1, std::nullopt), -EAGAIN);
}

TEST_F(SysShared, FutexWakesAWaiterInAnotherProcess) {
  mproc::sys::SharedMapping page;
  ASSERT_EQ(mproc::sys::map_anonymous_shared(4096, page), 0);
  auto* word = new (page.get()) std::atomic<std::uint32_t>(0);
  pid_t child = fork_child([&] {
    while (word->load() == 0) mproc::sys::futex_wait(*word, 0, std::nullopt);
    ::_exit(word->load() == 7 ? 0 : 1);
  });
  word->store(7);
  mproc::sys::futex_wake(*word, INT_MAX);
  int status = wait_status(child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(SysShared, NamedSharedMemoryIsExclusiveAndRemovable) {
  std::string name = "/mproc-test-sys-" + std::to_string(::getpid());
  mproc::sys::UniqueFd created;
  ASSERT_EQ(mproc::sys::shm_create(name.c_str(), 8192, created), 0);
  mproc::sys::UniqueFd again;
  EXPECT_EQ(mproc::sys::shm_create(name.c_str(), 8192, again), -EEXIST);
  mproc::sys::UniqueFd attached;
  std::size_t size = 0;
  ASSERT_EQ(mproc::sys::shm_attach(name.c_str(), attached, size), 0);
  EXPECT_EQ(size, 8192u);
  EXPECT_EQ(mproc::sys::shm_remove(name.c_str()), 0);
  EXPECT_EQ(mproc::sys::shm_attach(name.c_str(), attached, size), -ENOENT);
  EXPECT_EQ(mproc::sys::shm_create("no-slash", 10, again), -EINVAL);
}

TEST_F(SysShared, RobustMutexPassesToTheNextOwnerWhenItsHolderIsKilled) {
  mproc::sys::SharedMapping page;
  ASSERT_EQ(mproc::sys::map_anonymous_shared(sizeof(pthread_mutex_t), page), 0);
  auto* mutex = static_cast<pthread_mutex_t*>(page.get());
  ASSERT_EQ(mproc::sys::robust_mutex_init(mutex), 0);
  mproc::sys::SharedMapping flag_page;
  ASSERT_EQ(mproc::sys::map_anonymous_shared(4096, flag_page), 0);
  auto* locked = new (flag_page.get()) std::atomic<std::uint32_t>(0);

  pid_t holder = fork_child([&] {
    mproc::sys::robust_mutex_lock(mutex, std::nullopt);
    locked->store(1);
    mproc::sys::futex_wake(*locked, INT_MAX);
    ::pause();
  });
  while (locked->load() == 0) mproc::sys::futex_wait(*locked, 0, Clock::now() + 1s);
  EXPECT_EQ(mproc::sys::robust_mutex_try_lock(mutex), -EBUSY);
  EXPECT_EQ(mproc::sys::robust_mutex_lock(mutex, Clock::now() + 20ms), -ETIMEDOUT);
  ::kill(holder, SIGKILL);
  wait_status(holder);

  EXPECT_EQ(mproc::sys::robust_mutex_lock(mutex, Clock::now() + 5s), mproc::sys::kOwnerDied);
  EXPECT_EQ(mproc::sys::robust_mutex_unlock(mutex), 0);
  EXPECT_EQ(mproc::sys::robust_mutex_unlock(mutex), -EPERM);  // not held any more
  EXPECT_EQ(mproc::sys::robust_mutex_lock(mutex, std::nullopt), 0);  // consistent again
  EXPECT_EQ(mproc::sys::robust_mutex_unlock(mutex), 0);
  EXPECT_EQ(mproc::sys::robust_mutex_destroy(mutex), 0);
}

TEST_F(SysShared, CachedPidFollowsFork) {
  EXPECT_EQ(mproc::sys::current_pid(), ::getpid());
  pid_t child = fork_child([] { ::_exit(mproc::sys::current_pid() == ::getpid() ? 0 : 1); });
  int status = wait_status(child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
