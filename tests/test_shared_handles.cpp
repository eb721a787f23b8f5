// Shared objects (Queue, the synchronization primitives, Value/Array) as Process arguments and
// pool initargs under every start method: under fork they are inherited; under spawn and
// forkserver they reach the child by descriptor and the child maps the same memory. Also what
// is refused: a forged or mismatched region, and these handles anywhere but a start message.
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <dirent.h>
#include <optional>
#include <set>
#include <string>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>

#include <gtest/gtest.h>
#include <mproc/mproc.hpp>

#include "process/boot.hpp"
#include "support/leak_check.hpp"

namespace {

using namespace std::chrono_literals;
using mproc::testing::LeakCheckedTest;

class SharedHandles : public LeakCheckedTest, public ::testing::WithParamInterface<const char*> {
 protected:
  mproc::Context context() const { return mproc::get_context(GetParam()); }
  bool forks() const { return std::string(GetParam()) == "fork"; }

  // Starts f(args...) in a child of this test's start method and waits for its exit code.
  template <class F, class... Args>
  int run_child(F f, Args&&... args) {
    mproc::Process child({.context = context()}, f, std::forward<Args>(args)...);
    child.start();
    child.join();
    return *child.exitcode();
  }
};

// ---- the locks ----------------------------------------------------------------------------

// The child reports that the lock is held (by the parent), then takes it when the parent lets
// go, says so, and holds it until the parent has seen that it is excluded.
void contend_for_lock(mproc::Lock lock, mproc::Connection parent) {
  parent.send(lock.acquire(false));
  (void)parent.recv<int>();  // the parent released it
  lock.acquire();
  parent.send(true);
  (void)parent.recv<int>();  // the parent saw itself excluded
  lock.release();
}

TEST_P(SharedHandles, ALockExcludesAcrossTheBoundaryBothWays) {
  mproc::Lock lock;
  auto [here, there] = mproc::Pipe();
  lock.acquire();
  mproc::Process child({.context = context()}, contend_for_lock, lock, std::move(there));
  child.start();
  EXPECT_FALSE(here.recv<bool>());  // the parent holds it: the child is excluded
  lock.release();
  here.send(1);
  EXPECT_TRUE(here.recv<bool>());  // the child holds it now
  EXPECT_TRUE(lock.locked());
  EXPECT_FALSE(lock.acquire(false));
  here.send(1);
  child.join();
  EXPECT_EQ(child.exitcode(), 0);
  EXPECT_TRUE(lock.acquire(false));
  lock.release();
}

void hold_rlock_twice(mproc::RLock lock, mproc::Connection parent) {
  lock.acquire();
  lock.acquire();
  parent.send(1);
  (void)parent.recv<int>();
  lock.release();
  lock.release();
}

TEST_P(SharedHandles, AnRLockHeldTwiceInTheChildExcludesTheParent) {
  mproc::RLock lock;
  auto [here, there] = mproc::Pipe();
  mproc::Process child({.context = context()}, hold_rlock_twice, lock, std::move(there));
  child.start();
  (void)here.recv<int>();
  EXPECT_TRUE(lock.locked());
  EXPECT_FALSE(lock.acquire(false));
  here.send(1);
  child.join();
  EXPECT_EQ(child.exitcode(), 0);
  EXPECT_FALSE(lock.locked());
}

void die_holding(mproc::Lock lock) {
  lock.acquire();
  ::raise(SIGKILL);
}

TEST_P(SharedHandles, AChildKilledHoldingALockHandsItOverAsOwnerDied) {
  mproc::Lock lock;
  EXPECT_EQ(run_child(die_holding, lock), -SIGKILL);
  EXPECT_TRUE(lock.acquire(true, 10s));
  EXPECT_TRUE(lock.owner_died());
  lock.release();
  EXPECT_FALSE(lock.owner_died());
}

void release_three_then_take(mproc::Semaphore semaphore, mproc::BoundedSemaphore bounded, mproc::Connection parent) {
  for (int i = 0; i < 3; ++i) semaphore.release();
  (void)parent.recv<int>();  // the parent took all three (else this process could take one)
  semaphore.acquire();       // the parent's release
  bounded.acquire();
  bounded.release();
  try {
    bounded.release();  // past its initial value: the bound crossed with the state
    parent.send(std::string("no error"));
  } catch (const std::invalid_argument&) {
    parent.send(std::string("refused"));
  }
}

TEST_P(SharedHandles, SemaphoresCountAcrossTheBoundary) {
  mproc::Semaphore semaphore(0);
  mproc::BoundedSemaphore bounded(1);
  auto [here, there] = mproc::Pipe();
  mproc::Process child({.context = context()}, release_three_then_take, semaphore, bounded, std::move(there));
  child.start();
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(semaphore.acquire(true, 10s));
  semaphore.release();
  here.send(1);
  EXPECT_EQ(here.recv<std::string>(), "refused");
  child.join();
  EXPECT_EQ(child.exitcode(), 0);
  EXPECT_EQ(semaphore.get_value(), 0);
  EXPECT_EQ(bounded.get_value(), 1);
}

void answer_event(mproc::Event ping, mproc::Event pong) {
  ping.wait();
  pong.set();
}

TEST_P(SharedHandles, EventsAreSetAndSeenAcrossTheBoundary) {
  mproc::Event ping, pong;
  mproc::Process child({.context = context()}, answer_event, ping, pong);
  child.start();
  ping.set();
  EXPECT_TRUE(pong.wait(10s));
  child.join();
  EXPECT_EQ(child.exitcode(), 0);
}

// Waits (on the condition, with its lock) for the parent's 1, answers 2.
template <class L>
void condition_round_trip(mproc::Condition condition, mproc::Value<int, L> value) {
  std::unique_lock guard(condition);
  condition.wait_for([&] { return value.value() == 1; });
  value.value() = 2;
  condition.notify_all();
}

template <class L>
void check_condition(mproc::Condition condition, mproc::Value<int, L> value, mproc::Context context) {
  mproc::Process child({.context = context}, condition_round_trip<L>, condition, value);
  child.start();
  {
    std::unique_lock guard(condition);
    value.value() = 1;
    condition.notify_all();
    EXPECT_TRUE(condition.wait_for([&] { return value.value() == 2; }, 10s));
  }
  child.join();
  EXPECT_EQ(child.exitcode(), 0);
}

TEST_P(SharedHandles, AConditionAndItsLockWorkAcrossTheBoundary) {
  check_condition(mproc::Condition(), mproc::Value<int, mproc::RLock>(0), context());  // over a new RLock
  mproc::Lock lock;
  check_condition(mproc::Condition(lock), mproc::Value<int, mproc::Lock>(0), context());
}

void barrier_party(mproc::Barrier barrier, mproc::Connection parent) { parent.send(barrier.wait(10s)); }

void barrier_action() {}

TEST_P(SharedHandles, ABarrierCountsTheChildsArrival) {
  mproc::Barrier barrier(2, barrier_action);
  auto [here, there] = mproc::Pipe();
  mproc::Process child({.context = context()}, barrier_party, barrier, std::move(there));
  child.start();
  const std::size_t mine = barrier.wait(10s);
  const auto theirs = here.recv<std::size_t>();
  EXPECT_EQ(std::set<std::size_t>({mine, theirs}), (std::set<std::size_t>{0, 1}));
  child.join();
  EXPECT_EQ(child.exitcode(), 0);
}

TEST_P(SharedHandles, ABarrierWhoseActionCannotBeNamedStaysHere) {
  if (forks()) GTEST_SKIP() << "a fork inherits any action";
  int runs = 0;
  mproc::Barrier barrier(2, [&runs] { ++runs; });
  auto [here, there] = mproc::Pipe();
  mproc::Process child({.context = context()}, barrier_party, barrier, std::move(there));
  EXPECT_THROW(child.start(), mproc::SerializationError);
}

// ---- shared ctypes ------------------------------------------------------------------------

struct Point {
  int x;
  double y;
};

void update_values(mproc::Value<long> counter, mproc::Array<int> array, mproc::RawValue<Point> point,
                   mproc::RawArray<char> text, mproc::Connection parent) {
  {
    std::lock_guard guard(counter);
    counter.value() += 10;
  }
  for (std::size_t i = 0; i < array.size(); ++i) array.store(i, array.load(i) * 2);
  point.value().x += 1;
  parent.send(std::string(text.begin(), text.end()));
  text[0] = 'C';
}

TEST_P(SharedHandles, ValuesAndArraysAreTheSameMemoryInTheChild) {
  mproc::Value<long> counter(5);
  mproc::Array<int> array({1, 2, 3});
  mproc::RawValue<Point> point(Point{1, 2.5});
  mproc::RawArray<char> text(std::string("abc"));
  auto [here, there] = mproc::Pipe();
  EXPECT_EQ(run_child(update_values, counter, array, point, text, std::move(there)), 0);
  EXPECT_EQ(here.recv<std::string>(), "abc");  // the child read what the parent wrote
  EXPECT_EQ(counter.load(), 15);
  EXPECT_EQ(std::vector<int>(array.begin(), array.end()), (std::vector<int>{2, 4, 6}));
  EXPECT_EQ(point.value().x, 2);
  EXPECT_EQ(point.value().y, 2.5);
  EXPECT_EQ(text[0], 'C');
}

void value_lock_is_shared(mproc::Value<int, mproc::Lock> value, mproc::Lock lock, mproc::Connection parent) {
  // One lock, passed twice (inside the Value and alone): the same memory in the child.
  lock.acquire();
  parent.send(value.try_lock());
  lock.release();
}

TEST_P(SharedHandles, AValuesGivenLockIsTheSameLockInTheChild) {
  mproc::Lock lock;
  mproc::Value<int, mproc::Lock> value(0, lock);
  auto [here, there] = mproc::Pipe();
  EXPECT_EQ(run_child(value_lock_is_shared, value, lock, std::move(there)), 0);
  EXPECT_FALSE(here.recv<bool>());
}

// ---- queues -------------------------------------------------------------------------------

void echo_queue(mproc::Queue<std::string> in, mproc::Queue<std::string> out, mproc::Queue<int> bounded) {
  for (std::string item = in.get(); item != "end"; item = in.get()) out.put(item + "!");
  out.put(std::to_string(bounded.maxsize()) + (bounded.full() ? " full" : " not full"));
  (void)bounded.get();  // lets the parent's blocked put through
}

TEST_P(SharedHandles, QueuesCarryItemsBothWaysWithTheirMaxsize) {
  mproc::Queue<std::string> to_child, from_child;
  mproc::Queue<int> bounded(1);
  bounded.put(1);
  mproc::Process child({.context = context()}, echo_queue, to_child, from_child, bounded);
  child.start();
  to_child.put("a");
  to_child.put(std::string(200'000, 'b'));  // larger than a segment's first page
  to_child.put("end");
  EXPECT_EQ(from_child.get(10s), "a!");
  EXPECT_EQ(from_child.get(10s), std::string(200'000, 'b') + "!");
  EXPECT_EQ(from_child.get(10s), "1 full");
  bounded.put(2, 10s);  // room made by the child's get
  child.join();
  EXPECT_EQ(child.exitcode(), 0);
  EXPECT_EQ(bounded.get_nowait(), 2);
}

void consume_tasks(mproc::JoinableQueue<int> tasks, mproc::SimpleQueue<int> results) {
  for (int i = 0; i < 3; ++i) {
    results.put(tasks.get() * 10);
    tasks.task_done();
  }
}

TEST_P(SharedHandles, AJoinableQueueIsJoinedAfterTheChildsTaskDone) {
  mproc::JoinableQueue<int> tasks;
  mproc::SimpleQueue<int> results;
  for (int i = 1; i <= 3; ++i) tasks.put(i);
  mproc::Process child({.context = context()}, consume_tasks, tasks, results);
  child.start();
  EXPECT_TRUE(tasks.join(10s));
  std::vector<int> got;
  for (int i = 0; i < 3; ++i) got.push_back(results.get());
  EXPECT_EQ(got, (std::vector<int>{10, 20, 30}));
  child.join();
  EXPECT_EQ(child.exitcode(), 0);
}

// ---- pool initargs ------------------------------------------------------------------------

std::optional<mproc::Queue<int>> worker_queue;
std::optional<mproc::Lock> worker_lock;

void init_worker(mproc::Queue<int> queue, mproc::Lock lock) {
  worker_queue = queue;
  worker_lock = lock;
  queue.put(static_cast<int>(::getpid()));
}

bool worker_lock_is_free(int) {
  const bool free = worker_lock->acquire(false);
  if (free) worker_lock->release();
  return free;
}

TEST_P(SharedHandles, AQueueAndALockAsInitargsReachEveryWorker) {
  mproc::Queue<int> queue;
  mproc::Lock lock;
  {
    mproc::Pool pool({.processes = 3, .initializer = mproc::Initializer(init_worker, queue, lock), .context = context()});
    std::set<int> pids;
    for (int i = 0; i < 3; ++i) pids.insert(queue.get(10s));
    EXPECT_EQ(pids.size(), 3u);  // every worker put its own pid
    lock.acquire();
    EXPECT_FALSE(pool.apply(worker_lock_is_free, 0));  // the parent's hold is seen in a worker
    lock.release();
    EXPECT_TRUE(pool.apply(worker_lock_is_free, 0));
    pool.close();
    pool.join();
  }
}

TEST_P(SharedHandles, AnExecutorsInitargsReachItsWorkers) {
  mproc::Queue<int> queue;
  mproc::Lock lock;
  mproc::ProcessPoolExecutor executor(
      {.max_workers = 2, .initializer = mproc::Initializer(init_worker, queue, lock), .mp_context = context()});
  EXPECT_TRUE(executor.submit(worker_lock_is_free, 0).result());
  EXPECT_GT(queue.get(10s), 0);
  executor.shutdown();
}

// ---- what is refused ------------------------------------------------------------------------

TEST_P(SharedHandles, AHandleOutsideAStartMessageIsASerializationError) {
  mproc::Lock lock;
  mproc::Queue<int> queue;
  mproc::Value<int> value(1);
  auto [here, there] = mproc::Pipe();
  EXPECT_THROW(here.send(lock), mproc::SerializationError);
  EXPECT_THROW(here.send(value), mproc::SerializationError);
  mproc::Queue<mproc::Queue<int>> queue_of_queues;
  try {
    queue_of_queues.put(queue);
    FAIL() << "a Queue was put in a Queue";
  } catch (const mproc::SerializationError& error) {
    EXPECT_NE(std::string(error.what()).find("pool's initializer"), std::string::npos) << error.what();
  }
  EXPECT_TRUE(queue_of_queues.empty());
}

// The encoding of a Lock as a start message carries it: its layout word and size, then the
// index of its descriptor (see detail::RegionRef).
struct ForgedLock {
  std::uint64_t layout = 0;
  std::uint64_t bytes = 0;
  mproc::detail::PassedFd fd;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(layout, bytes, fd);
  }
};

void must_not_run(mproc::Lock lock, mproc::Connection parent) {
  (void)lock;
  parent.send(1);
}

// A child started with `forged` where its target expects a Lock.
int start_with_forged_lock(const mproc::Context& context, const ForgedLock& forged, mproc::Connection& there) {
  mproc::detail::ProcessTarget target = mproc::detail::make_process_target(must_not_run, mproc::Lock(), std::move(there));
  auto named = target.named;
  target.named = [named, forged] {
    auto call = named();
    call.args = mproc::dumps(forged);  // the Lock's place; the Connection is never reached
    return call;
  };
  mproc::Process child({.context = context}, std::move(target));
  child.start();
  child.join();
  return *child.exitcode();
}

TEST_P(SharedHandles, AChildRefusesARegionOfAnotherLayoutOrSize) {
  if (forks()) GTEST_SKIP() << "nothing is encoded for a fork";
  // The real layout word and size of a Lock, as this build encodes them.
  mproc::Lock lock;
  ForgedLock real;
  {
    mproc::detail::FdExportScope scope;
    auto bytes = mproc::dumps(lock);
    ASSERT_GE(bytes.size(), 16u);
    std::memcpy(&real.layout, bytes.data(), 8);
    std::memcpy(&real.bytes, bytes.data() + 8, 8);
  }
  {
    ForgedLock other_version = real;
    other_version.layout ^= std::uint64_t{1} << 40;  // as a build with the next layout version
    other_version.fd.fd = ::memfd_create("forged", MFD_CLOEXEC);
    ASSERT_GE(other_version.fd.fd, 0);
    ASSERT_EQ(::ftruncate(other_version.fd.fd, static_cast<off_t>(real.bytes)), 0);
    auto [here, there] = mproc::Pipe();
    EXPECT_EQ(start_with_forged_lock(context(), other_version, there), 1);  // the target's decoding threw
    EXPECT_THROW(here.recv<int>(), mproc::EOFError);                        // and it never ran
    ::close(other_version.fd.fd);
  }
  {
    ForgedLock too_small = real;
    too_small.fd.fd = ::memfd_create("forged", MFD_CLOEXEC);
    ASSERT_GE(too_small.fd.fd, 0);
    ASSERT_EQ(::ftruncate(too_small.fd.fd, 8), 0);  // the size the message claims is a lie
    auto [here, there] = mproc::Pipe();
    EXPECT_EQ(start_with_forged_lock(context(), too_small, there), 1);
    EXPECT_THROW(here.recv<int>(), mproc::EOFError);
    ::close(too_small.fd.fd);
  }
}

// ---- what is left behind ------------------------------------------------------------------

std::set<std::string> dev_shm_entries() {
  std::set<std::string> names;
  if (DIR* dir = ::opendir("/dev/shm")) {
    while (const dirent* entry = ::readdir(dir)) names.insert(entry->d_name);
    ::closedir(dir);
  }
  return names;
}

void touch_all(mproc::Lock lock, mproc::Queue<int> queue, mproc::Value<int> value, mproc::Barrier barrier) {
  lock.acquire();
  lock.release();
  queue.put(value.load());
  (void)barrier.parties();
}

TEST_P(SharedHandles, NothingAppearsInDevShm) {
  const auto before = dev_shm_entries();
  {
    mproc::Lock lock;
    mproc::Queue<int> queue;
    mproc::Value<int> value(7);
    mproc::Barrier barrier(1);
    EXPECT_EQ(run_child(touch_all, lock, queue, value, barrier), 0);
    EXPECT_EQ(queue.get(10s), 7);
    EXPECT_EQ(dev_shm_entries(), before);
  }
  EXPECT_EQ(dev_shm_entries(), before);
}

INSTANTIATE_TEST_SUITE_P(Methods, SharedHandles, ::testing::Values("fork", "spawn", "forkserver"));

}  // namespace
