// Queue, JoinableQueue, SimpleQueue: the behaviours of CPython's _TestQueue, across processes,
// plus what mproc promises beyond Python (a returned put survives its process; a producer or
// consumer killed mid-operation corrupts nothing and blocks nobody).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <dirent.h>
#include <map>
#include <stdexcept>
#include <thread>
#include <string>
#include <unistd.h>
#include <vector>

#include <gtest/gtest.h>

#include <mproc/mproc.hpp>

#include "shm/queue_checkpoints.hpp"  // src/: the private test points
#include "support/leak_check.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::vector<std::string> dev_shm() {
  std::vector<std::string> names;
  if (DIR* dir = ::opendir("/dev/shm")) {
    while (dirent* entry = ::readdir(dir)) names.emplace_back(entry->d_name);
    ::closedir(dir);
  }
  std::sort(names.begin(), names.end());
  return names;
}

// Fails a test that leaks an fd, a zombie, or anything in /dev/shm.
class QueueTest : public mproc::testing::LeakCheckedTest {
 protected:
  void SetUp() override {
    LeakCheckedTest::SetUp();
    shm_before_ = dev_shm();
  }
  void TearDown() override {
    EXPECT_EQ(dev_shm(), shm_before_);
    LeakCheckedTest::TearDown();
  }

 private:
  std::vector<std::string> shm_before_;
};

int exit_code(mproc::Process& p) {
  p.join();
  return p.exitcode().value_or(-1000);
}

// A queue type with its shared core exposed, to read the sleeper counts.
template <class Q>
struct Probe : Q {
  using Q::Q;
  mproc::detail::QueueCore& core() { return *this->core_; }
};

// Crash and pause points (mproc::detail::QueueCheckpoint). A child arms one after fork, so
// that only its own next operation stops there; the hook is a plain function, so its
// parameters live in globals of the child's copy of this process.
using mproc::detail::QueueCheckpoint;
QueueCheckpoint g_point;
mproc::Event* g_paused = nullptr;  // set by a paused child
mproc::Event* g_resume = nullptr;  // set by the test to let it go on

void kill_at_point(QueueCheckpoint point) noexcept {
  // A real SIGKILL, as from outside: the kernel releases the robust mutexes it holds.
  if (point == g_point) ::raise(SIGKILL);
}
void pause_at_point(QueueCheckpoint point) noexcept {
  if (point != g_point) return;
  mproc::detail::set_queue_checkpoint_hook(nullptr);
  g_paused->set();
  // Bounded, so that a regression shows as a failed expectation rather than a hang.
  (void)g_resume->wait(20s);
}
void die_at(QueueCheckpoint point) {
  g_point = point;
  mproc::detail::set_queue_checkpoint_hook(&kill_at_point);
}
void pause_at(QueueCheckpoint point) {
  g_point = point;
  mproc::detail::set_queue_checkpoint_hook(&pause_at_point);
}

// How long a process stranded by a missed wake-up may take to notice: slices are 100 ms, so
// this is generous; the bounded calls the stranded processes make wait twice as long.
constexpr auto kNoticeBound = 5s;
constexpr auto kStrandedWait = 10s;

// _TestQueue.test_put / test_get: a bounded queue, put/get in several shapes, Full / Empty.
TEST_F(QueueTest, PutGetFullEmptyAsPython) {
  mproc::Queue<int> q(6);
  EXPECT_TRUE(q.empty());
  EXPECT_FALSE(q.full());
  q.put(1);
  q.put(2, true);
  q.put(3, true, 1s);
  q.put(4, 1s);
  q.put_nowait(5);
  q.put(6, false);
  EXPECT_EQ(q.qsize(), 6u);
  EXPECT_TRUE(q.full());
  EXPECT_FALSE(q.empty());
  EXPECT_THROW(q.put(7, false), mproc::Full);
  EXPECT_THROW(q.put_nowait(7), mproc::Full);
  auto start = Clock::now();
  EXPECT_THROW(q.put(7, true, 100ms), mproc::Full);
  EXPECT_THROW(q.put(7, 100ms), mproc::Full);
  EXPECT_GE(Clock::now() - start, 190ms);

  EXPECT_EQ(q.get(), 1);
  EXPECT_EQ(q.get(true), 2);
  EXPECT_EQ(q.get(true, 1s), 3);
  EXPECT_EQ(q.get(1s), 4);
  EXPECT_EQ(q.get_nowait(), 5);
  EXPECT_EQ(q.get(false), 6);
  EXPECT_TRUE(q.empty());
  EXPECT_THROW(q.get(false), mproc::Empty);
  EXPECT_THROW(q.get_nowait(), mproc::Empty);
  start = Clock::now();
  EXPECT_THROW(q.get(true, 100ms), mproc::Empty);
  EXPECT_THROW(q.get(100ms), mproc::Empty);
  EXPECT_GE(Clock::now() - start, 190ms);
}

TEST_F(QueueTest, UnboundedNeverFullAndGrowsPastOneSegment) {
  mproc::Queue<std::int64_t> q;  // maxsize 0
  EXPECT_LE(q.maxsize(), 0);
  for (std::int64_t i = 0; i < 100'000; ++i) q.put_nowait(i);
  EXPECT_FALSE(q.full());
  EXPECT_EQ(q.qsize(), 100'000u);
  for (std::int64_t i = 0; i < 100'000; ++i) ASSERT_EQ(q.get_nowait(), i);
  EXPECT_TRUE(q.empty());
}

// _TestQueue.test_put: a blocked put() in one process is released by a get() in another.
TEST_F(QueueTest, BlockedPutWakesWhenAnotherProcessGets) {
  mproc::Queue<int> q(1);
  mproc::Queue<int> started;
  q.put(0);
  mproc::Process producer([&] {
    started.put(1);
    q.put(42);  // blocks until the parent gets
  });
  producer.start();
  EXPECT_EQ(started.get(), 1);
  EXPECT_EQ(q.get(5s), 0);
  EXPECT_EQ(q.get(5s), 42);
  EXPECT_EQ(exit_code(producer), 0);
}

// _TestQueue.test_get: a blocked get() is released by a put() from another process.
TEST_F(QueueTest, BlockedGetWakesWhenAnotherProcessPuts) {
  mproc::Queue<std::string> q;
  mproc::Queue<int> go;
  mproc::Process producer([&] {
    go.get();
    q.put("hello");
  });
  producer.start();
  go.put(1);
  EXPECT_EQ(q.get(10s), "hello");
  EXPECT_EQ(exit_code(producer), 0);
}

// _TestQueue.test_fork: items put before a fork are got by the child; the child's puts by us.
// A consumer that keeps catching up with its producer sleeps and wakes over and over; an item
// it takes before the producer's wake-up for that item arrives must not make it miss the next
// one (a lost wake-up here once hung the 1-producer/1-consumer benchmark). Every get has a
// deadline far beyond what a round needs, so a lost wake-up fails instead of hanging. The race
// is narrow (the producer must stall between publishing and announcing an item): many rounds.
TEST_F(QueueTest, ConsumerThatCatchesUpNeverMissesAWakeUp) {
  constexpr std::int64_t kItems = 500'000;
  for (int round = 0; round < 10; ++round) {
    mproc::Queue<std::int64_t> q;
    mproc::Process consumer([&] {
      for (std::int64_t i = 0; i < kItems; ++i)
        if (q.get(true, 20s) != i) ::_exit(2);
    });
    consumer.start();
    for (std::int64_t i = 0; i < kItems; ++i) q.put(i);
    consumer.join();
    ASSERT_EQ(exit_code(consumer), 0) << "round " << round;
  }
}

TEST_F(QueueTest, ChildSeesItemsPutBeforeFork) {
  mproc::Queue<int> q;
  for (int i = 0; i < 10; ++i) q.put(i);
  mproc::Process child([&] {
    for (int i = 0; i < 10; ++i)
      if (q.get(5s) != i) mproc::exit(1);
    for (int i = 10; i < 20; ++i) q.put(i);
  });
  child.start();
  EXPECT_EQ(exit_code(child), 0);
  for (int i = 10; i < 20; ++i) EXPECT_EQ(q.get(5s), i);
}

// _TestQueue.test_qsize.
TEST_F(QueueTest, QsizeCountsAcrossProcesses) {
  mproc::Queue<int> q;
  EXPECT_EQ(q.qsize(), 0u);
  q.put(1);
  EXPECT_EQ(q.qsize(), 1u);
  mproc::Process child([&] { q.put(2); });
  child.start();
  EXPECT_EQ(exit_code(child), 0);
  EXPECT_EQ(q.qsize(), 2u);
  q.get();
  EXPECT_EQ(q.qsize(), 1u);
}

// _TestQueue.test_task_done / JoinableQueue: workers ack each item; join() waits for all.
TEST_F(QueueTest, JoinableQueueJoinWaitsForEveryTaskDone) {
  mproc::JoinableQueue<int> q;
  mproc::Queue<int> results;
  std::vector<mproc::Process> workers;
  for (int w = 0; w < 3; ++w) {
    workers.emplace_back([&] {
      for (;;) {
        int item = q.get();
        if (item < 0) {
          q.task_done();
          return;
        }
        results.put(item * 2);
        q.task_done();
      }
    });
    workers.back().start();
  }
  for (int i = 0; i < 300; ++i) q.put(i);
  q.join();
  EXPECT_EQ(results.qsize(), 300u);  // every task done means every result was put
  for (int w = 0; w < 3; ++w) q.put(-1);
  EXPECT_TRUE(q.join(10s));
  for (auto& worker : workers) EXPECT_EQ(exit_code(worker), 0);
  long sum = 0;
  for (int i = 0; i < 300; ++i) sum += results.get_nowait();
  EXPECT_EQ(sum, 2L * 299 * 300 / 2);
}

TEST_F(QueueTest, TaskDoneTooOftenThrowsAndJoinTimesOut) {
  mproc::JoinableQueue<int> q;
  EXPECT_THROW(q.task_done(), mproc::Error);
  q.put(1);
  EXPECT_FALSE(q.join(50ms));
  q.get();
  EXPECT_FALSE(q.join(10ms));
  q.task_done();
  EXPECT_TRUE(q.join(10ms));
  EXPECT_THROW(q.task_done(), mproc::Error);
}

// _TestQueue.test_closed_queue_put_get: close() is per process; a forked child reopens.
TEST_F(QueueTest, CloseIsPerProcess) {
  mproc::Queue<int> q;
  q.put(1);
  q.close();
  q.close();  // idempotent
  EXPECT_THROW(q.put(2), mproc::Error);
  EXPECT_THROW(q.get(), mproc::Error);
  mproc::Queue<int> copy = q;  // a handle to the same queue: closed too in this process
  EXPECT_THROW(copy.put(2), mproc::Error);
  EXPECT_EQ(q.qsize(), 1u);
  mproc::Process child([&] {
    if (q.get(5s) != 1) mproc::exit(1);
    q.put(3);
  });
  child.start();
  EXPECT_EQ(exit_code(child), 0);
  EXPECT_EQ(q.qsize(), 1u);
}

TEST_F(QueueTest, SimpleQueue) {
  mproc::SimpleQueue<std::vector<int>> q;
  EXPECT_TRUE(q.empty());
  mproc::Process child([&] { q.put({1, 2, 3}); });
  child.start();
  EXPECT_EQ(q.get(), (std::vector<int>{1, 2, 3}));
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(exit_code(child), 0);
  q.close();
  EXPECT_THROW(q.put({}), mproc::Error);
}

struct Order {
  std::string symbol;
  std::vector<double> prices;
  std::map<std::string, int> tags;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(symbol, prices, tags);
  }
  bool operator==(const Order&) const = default;
};

TEST_F(QueueTest, AnySerializableTypeAndSizeFrom8BytesTo256MiB) {
  mproc::Queue<Order> orders;
  Order order{"ABC", {1.5, 2.5}, {{"x", 1}}};
  orders.put(order);
  EXPECT_EQ(orders.get(), order);

  mproc::Queue<std::vector<std::byte>> q;
  const std::vector<std::size_t> sizes = {0, 8, 4096, 70'000, std::size_t{1} << 20, std::size_t{256} << 20, 3};
  mproc::Process producer([&] {
    for (std::size_t size : sizes) {
      std::vector<std::byte> v(size);
      for (std::size_t i = 0; i < size; i += 4096) v[i] = static_cast<std::byte>(i / 4096 + size);
      q.put(v);
    }
  });
  producer.start();
  for (std::size_t size : sizes) {
    std::vector<std::byte> v = q.get(60s);
    ASSERT_EQ(v.size(), size);
    for (std::size_t i = 0; i < size; i += 4096) ASSERT_EQ(v[i], static_cast<std::byte>(i / 4096 + size));
  }
  EXPECT_EQ(exit_code(producer), 0);
}

// Promise: a put that returned is in the queue even if its process exits at once (Python's
// feeder thread can lose it).
TEST_F(QueueTest, PutThatReturnedSurvivesItsProcessExiting) {
  mproc::Queue<std::string> q;
  std::vector<mproc::Process> producers;
  for (int p = 0; p < 4; ++p) {
    producers.emplace_back([&, p] {
      q.put(std::string(100'000, static_cast<char>('a' + p)));
      ::_exit(0);  // no flush, no destructors: nothing left to finish the put
    });
    producers.back().start();
  }
  for (auto& producer : producers) EXPECT_EQ(exit_code(producer), 0);
  EXPECT_EQ(q.qsize(), 4u);
  std::string seen;
  for (int p = 0; p < 4; ++p) seen += q.get_nowait()[0];
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, "abcd");
}

// Many producers and consumers in different processes: FIFO per producer, every item got
// exactly once.
TEST_F(QueueTest, ManyProducersManyConsumersExactlyOnceFifoPerProducer) {
  constexpr int kProducers = 3, kConsumers = 3, kItems = 20'000;
  mproc::Queue<std::pair<int, int>> q(64);
  mproc::Queue<std::vector<std::pair<int, int>>> got;
  std::vector<mproc::Process> processes;
  for (int p = 0; p < kProducers; ++p)
    processes.emplace_back([&, p] {
      for (int i = 0; i < kItems; ++i) q.put({p, i});
    });
  for (int c = 0; c < kConsumers; ++c)
    processes.emplace_back([&] {
      std::vector<std::pair<int, int>> mine;
      for (;;) {
        auto item = q.get();
        if (item.first < 0) break;
        mine.push_back(item);
      }
      got.put(mine);
    });
  for (auto& p : processes) p.start();
  for (int p = 0; p < kProducers; ++p) EXPECT_EQ(exit_code(processes[static_cast<std::size_t>(p)]), 0);
  for (int c = 0; c < kConsumers; ++c) q.put({-1, 0});
  std::vector<std::vector<int>> per_producer(kProducers);
  for (int c = 0; c < kConsumers; ++c) {
    std::vector<int> last(kProducers, -1);
    for (auto [p, i] : got.get(30s)) {
      EXPECT_GT(i, last[static_cast<std::size_t>(p)]) << "FIFO per producer, as one consumer sees it";
      last[static_cast<std::size_t>(p)] = i;
      per_producer[static_cast<std::size_t>(p)].push_back(i);
    }
  }
  for (auto& p : processes) p.join();
  for (auto& items : per_producer) {
    std::sort(items.begin(), items.end());
    ASSERT_EQ(items.size(), static_cast<std::size_t>(kItems));
    for (int i = 0; i < kItems; ++i) ASSERT_EQ(items[static_cast<std::size_t>(i)], i);
  }
}

// Promise: producers SIGKILLed at random points of their puts corrupt nothing and block nobody:
// every item got is whole, each producer's items come in order, and a survivor still works.
TEST_F(QueueTest, ProducersKilledMidPutCorruptNothing) {
  mproc::Queue<std::vector<int>> q;
  for (int round = 0; round < 6; ++round) {
    std::vector<mproc::Process> producers;
    for (int p = 0; p < 2; ++p) {
      producers.emplace_back([&, p] {
        for (int i = 0;; ++i) q.put(std::vector<int>(static_cast<std::size_t>(1 + (i * 37) % 5000), p * 1'000'000 + i));
      });
      producers.back().start();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5 + 7 * round));  // kill at an arbitrary point
    for (auto& p : producers) p.kill();
    for (auto& p : producers) EXPECT_EQ(exit_code(p), -SIGKILL);
    std::vector<int> last(2, -1);
    while (true) {
      std::vector<int> v;
      try {
        v = q.get_nowait();
      } catch (const mproc::Empty&) {
        break;
      }
      ASSERT_FALSE(v.empty());
      for (int x : v) ASSERT_EQ(x, v[0]) << "an item is whole";
      const int p = v[0] / 1'000'000, i = v[0] % 1'000'000;
      ASSERT_EQ(v.size(), static_cast<std::size_t>(1 + (i * 37) % 5000));
      ASSERT_GT(i, last[static_cast<std::size_t>(p)]);
      last[static_cast<std::size_t>(p)] = i;
    }
  }
  q.put({7});
  EXPECT_EQ(q.get(1s), std::vector<int>{7});
}

// Promise: consumers SIGKILLed mid-get corrupt nothing and block nobody: every item is got at
// most once, whole, and those not got by the dead are still there for the living.
TEST_F(QueueTest, ConsumersKilledMidGetCorruptNothing) {
  constexpr int kItems = 3000;
  mproc::Queue<std::vector<int>> q;
  mproc::Queue<int> got;  // the index of every item a consumer returned from get()
  for (int i = 0; i < kItems; ++i) q.put(std::vector<int>(static_cast<std::size_t>(1 + (i * 53) % 20'000), i));
  std::vector<mproc::Process> consumers;
  for (int c = 0; c < 2; ++c) {
    consumers.emplace_back([&] {
      for (;;) {
        auto v = q.get();
        for (int x : v)
          if (x != v[0]) mproc::exit(3);
        got.put(v[0]);
      }
    });
    consumers.back().start();
  }
  ASSERT_TRUE(mproc::testing::eventually([&] { return got.qsize() > 200; }));
  for (auto& c : consumers) c.kill();
  for (auto& c : consumers) EXPECT_EQ(exit_code(c), -SIGKILL);
  std::vector<int> seen(kItems, 0);
  while (!got.empty()) seen[static_cast<std::size_t>(got.get_nowait())]++;
  // The survivors: this process drains what the dead left.
  while (!q.empty()) {
    auto v = q.get_nowait();
    ASSERT_FALSE(v.empty());
    for (int x : v) ASSERT_EQ(x, v[0]);
    ASSERT_EQ(v.size(), static_cast<std::size_t>(1 + (v[0] * 53) % 20'000));
    seen[static_cast<std::size_t>(v[0])]++;
  }
  int missing = 0;
  for (int n : seen) {
    ASSERT_LE(n, 1) << "got more than once";
    missing += n == 0 ? 1 : 0;
  }
  EXPECT_LE(missing, 4) << "only items in the hands of a killed consumer may be gone";
  q.put({1});
  EXPECT_EQ(q.get(1s), std::vector<int>{1});
}

// A consumer blocked in get() and killed does not keep the others from being woken.
TEST_F(QueueTest, KilledSleepingConsumerDoesNotSwallowWakeUps) {
  Probe<mproc::Queue<int>> q;
  mproc::Process sleeper([&] { q.get(); });
  sleeper.start();
  ASSERT_TRUE(mproc::testing::eventually([&] { return q.core().sleepers().getters > 0; }));
  sleeper.kill();
  EXPECT_EQ(exit_code(sleeper), -SIGKILL);
  mproc::Process consumer([&] { mproc::exit(q.get(10s) == 5 ? 0 : 1); });
  consumer.start();
  q.put(5);
  EXPECT_EQ(exit_code(consumer), 0);
}

TEST_F(QueueTest, HandlesAreCheapCopiesOfOneQueue) {
  mproc::Queue<int> a(2);
  mproc::Queue<int> b = a;
  a.put(1);
  EXPECT_EQ(b.get(), 1);
  EXPECT_EQ(b.maxsize(), 2);
}

// Audit (issue 6), a process killed between its commit and its wake-up: a producer killed
// after its item is in the queue but before it woke the getters — holding the producers'
// mutex, or just after releasing it — must not leave a consumer blocked in get() asleep.
void producer_killed_at_strands_no_getter(QueueCheckpoint point) {
  Probe<mproc::Queue<int>> q;
  mproc::Process consumer([&] {
    try {
      mproc::exit(q.get(kStrandedWait) == 42 ? 0 : 1);
    } catch (const mproc::Empty&) {
      mproc::exit(2);
    }
  });
  consumer.start();
  ASSERT_TRUE(mproc::testing::eventually([&] { return q.core().sleepers().getters > 0; }));
  mproc::Process producer([&] {
    die_at(point);
    q.put(42);
    mproc::exit(3);
  });
  producer.start();
  ASSERT_EQ(exit_code(producer), -SIGKILL);
  const auto died = Clock::now();
  ASSERT_EQ(exit_code(consumer), 0);
  EXPECT_LT(Clock::now() - died, kNoticeBound) << "the getter noticed the item only at its deadline";
  // The dead producer's end is repaired by the next put; counts are exact.
  EXPECT_EQ(q.qsize(), 0u);
  q.put(7);
  EXPECT_EQ(q.qsize(), 1u);
  EXPECT_EQ(q.get(1s), 7);
  EXPECT_TRUE(q.empty());
}
TEST_F(QueueTest, ProducerKilledBeforeItsWakeUpStrandsNoGetter) {
  producer_killed_at_strands_no_getter(QueueCheckpoint::put_committed);
}
TEST_F(QueueTest, ProducerKilledAfterUnlockBeforeItsWakeUpStrandsNoGetter) {
  producer_killed_at_strands_no_getter(QueueCheckpoint::put_unlocked);
}

// Audit: a consumer killed after taking an item but before waking a blocked put() — holding
// the consumers' mutex with the count of its get unmade, or after releasing it — must not
// leave that put() waiting for room that is there.
void consumer_killed_at_strands_no_putter(QueueCheckpoint point) {
  Probe<mproc::Queue<int>> q(1);
  q.put(1);
  mproc::Process producer([&] {
    try {
      q.put(2, kStrandedWait);
      mproc::exit(0);
    } catch (const mproc::Full&) {
      mproc::exit(2);
    }
  });
  producer.start();
  ASSERT_TRUE(mproc::testing::eventually([&] { return q.core().sleepers().putters > 0; }));
  mproc::Process consumer([&] {
    die_at(point);
    q.get();
    mproc::exit(3);
  });
  consumer.start();
  ASSERT_EQ(exit_code(consumer), -SIGKILL);
  const auto died = Clock::now();
  ASSERT_EQ(exit_code(producer), 0);
  EXPECT_LT(Clock::now() - died, kNoticeBound) << "the putter noticed the room only at its deadline";
  EXPECT_EQ(q.qsize(), 1u);
  EXPECT_EQ(q.get(1s), 2);  // item 1 died with the consumer
  EXPECT_TRUE(q.empty());
}
TEST_F(QueueTest, ConsumerKilledBeforeItsWakeUpStrandsNoPutter) {
  consumer_killed_at_strands_no_putter(QueueCheckpoint::get_committed);
}
TEST_F(QueueTest, ConsumerKilledAfterUnlockBeforeItsWakeUpStrandsNoPutter) {
  consumer_killed_at_strands_no_putter(QueueCheckpoint::get_unlocked);
}

// Audit: a process killed in task_done() after counting, before waking join(), must not leave
// join() asleep after every task is done.
TEST_F(QueueTest, TaskDoneKilledBeforeItsWakeUpStrandsNoJoin) {
  Probe<mproc::JoinableQueue<int>> q;
  q.put(1);
  EXPECT_EQ(q.get(), 1);
  mproc::Process joiner([&] { mproc::exit(q.join(kStrandedWait) ? 0 : 1); });
  joiner.start();
  ASSERT_TRUE(mproc::testing::eventually([&] { return q.core().sleepers().joiners > 0; }));
  mproc::Process worker([&] {
    die_at(QueueCheckpoint::task_done_counted);
    q.task_done();
    mproc::exit(3);
  });
  worker.start();
  ASSERT_EQ(exit_code(worker), -SIGKILL);
  const auto died = Clock::now();
  EXPECT_EQ(exit_code(joiner), 0);
  EXPECT_LT(Clock::now() - died, kNoticeBound) << "join() noticed only at its deadline";
  EXPECT_TRUE(q.join(0s));
}

// Audit: a producer killed after linking a new segment behind the tail but before moving the
// tail to it. A consumer draining the old tail must not hand it to the free list (that would
// overwrite the link the next producer's repair follows, sending the producers' end into the
// free list: later items lost, segments handed out twice).
TEST_F(QueueTest, ProducerKilledWhileLinkingASegmentCorruptsNothing) {
  using Bytes = std::vector<std::byte>;
  mproc::Queue<Bytes> q;
  auto item = [](int i) { return Bytes(static_cast<std::size_t>(1 + (i * 7919) % 90'000), static_cast<std::byte>(i)); };
  mproc::Process producer([&] {
    die_at(QueueCheckpoint::segment_linked);
    q.put(Bytes(100'000));  // more than the first segment (64 KiB) holds: links a new one
    mproc::exit(3);
  });
  producer.start();
  ASSERT_EQ(exit_code(producer), -SIGKILL);
  EXPECT_THROW(q.get_nowait(), mproc::Empty);  // the dead put never committed
  // Through many segment switches, the living see every item, in order, whole; in the last
  // rounds a child does the getting.
  int next_put = 0, next_got = 0;
  for (int round = 0; round < 4; ++round) {
    for (int i = 0; i < 40; ++i) q.put(item(next_put++));
    if (round < 2) {
      for (int i = 0; i < 40; ++i) ASSERT_EQ(q.get_nowait(), item(next_got++));
    } else {
      mproc::Process consumer([&] {
        for (int i = 0; i < 40; ++i)
          if (q.get(10s) != item(next_got + i)) mproc::exit(1);
      });
      consumer.start();
      ASSERT_EQ(exit_code(consumer), 0);
      next_got += 40;
    }
    EXPECT_TRUE(q.empty());
  }
  EXPECT_THROW(q.get_nowait(), mproc::Empty);
}

// Audit: qsize() never wraps below zero. Here a consumer takes an item while its producer is
// stopped between the commit of its put and its wake-up; the count must already include it.
// Likewise task_done() for that item is not "more than items were put".
TEST_F(QueueTest, QsizeAndTaskDoneCountAGetOnlyAfterItsPut) {
  mproc::Event paused, resume;
  g_paused = &paused;
  g_resume = &resume;
  mproc::JoinableQueue<int> q;
  mproc::Process producer([&] {
    pause_at(QueueCheckpoint::put_committed);
    q.put(1);
  });
  producer.start();
  ASSERT_TRUE(paused.wait(20s));
  EXPECT_EQ(q.get(1s), 1);
  EXPECT_EQ(q.qsize(), 0u);
  EXPECT_TRUE(q.empty());
  EXPECT_FALSE(q.full());
  EXPECT_NO_THROW(q.task_done());
  resume.set();
  EXPECT_EQ(exit_code(producer), 0);
  EXPECT_EQ(q.qsize(), 0u);
  EXPECT_TRUE(q.join(1s));
  g_paused = g_resume = nullptr;
}

// Audit: qsize() stays within [0, maxsize] while one producer and one consumer run flat out.
TEST_F(QueueTest, QsizeStaysWithinBoundsUnderLoad) {
  constexpr int kItems = 200'000;
  constexpr long kMax = 4;
  mproc::Queue<int> q(kMax);
  mproc::Process producer([&] {
    for (int i = 0; i < kItems; ++i) q.put(i);
  });
  mproc::Process consumer([&] {
    for (int i = 0; i < kItems; ++i)
      if (q.get(20s) != i) mproc::exit(1);
  });
  producer.start();
  consumer.start();
  std::size_t most = 0;
  long polls = 0;
  do {
    for (int i = 0; i < 1000; ++i, ++polls) most = std::max(most, q.qsize());
  } while (consumer.is_alive());
  EXPECT_LE(most, static_cast<std::size_t>(kMax)) << "after " << polls << " polls";
  EXPECT_EQ(exit_code(producer), 0);
  EXPECT_EQ(exit_code(consumer), 0);
  EXPECT_EQ(q.qsize(), 0u);
}

// Audit: a getter killed while counted asleep stops being counted, so that puts go back to
// their fast path (no futex_wake syscall) instead of paying one forever.
TEST_F(QueueTest, KilledSleeperStopsCostingWakeUps) {
  Probe<mproc::Queue<int>> q;
  mproc::Process sleeper([&] { q.get(); });
  sleeper.start();
  ASSERT_TRUE(mproc::testing::eventually([&] { return q.core().sleepers().getters > 0; }));
  sleeper.kill();
  EXPECT_EQ(exit_code(sleeper), -SIGKILL);
  EXPECT_TRUE(mproc::testing::eventually([&] {
    q.put(1);
    EXPECT_EQ(q.get_nowait(), 1);
    return q.core().sleepers().getters == 0;
  }));
}

// Audit: get_nowait() / put_nowait() never wait for an end another process holds (Python's
// get(block=False) try-acquires its lock), and the timed forms wait for it no longer than
// their timeout. Here the holder is stopped with the mutex held, as a consumer decoding a
// huge item (or a producer copying one) would hold it.
TEST_F(QueueTest, NonBlockingAndTimedCallsDoNotWaitForABusyEnd) {
  mproc::Event paused, resume;
  g_paused = &paused;
  g_resume = &resume;
  {
    mproc::Queue<int> q;
    q.put(1);
    q.put(2);
    mproc::Process consumer([&] {
      pause_at(QueueCheckpoint::get_committed);
      mproc::exit(q.get() == 1 ? 0 : 1);
    });
    consumer.start();
    ASSERT_TRUE(paused.wait(20s));
    auto start = Clock::now();
    EXPECT_THROW(q.get_nowait(), mproc::Empty);
    EXPECT_THROW(q.get(false), mproc::Empty);
    EXPECT_LT(Clock::now() - start, kNoticeBound);
    start = Clock::now();
    EXPECT_THROW(q.get(200ms), mproc::Empty);
    EXPECT_GE(Clock::now() - start, 200ms);
    EXPECT_LT(Clock::now() - start, kNoticeBound);
    resume.set();
    EXPECT_EQ(exit_code(consumer), 0);
    EXPECT_EQ(q.get_nowait(), 2);
  }
  paused.clear();
  resume.clear();
  {
    mproc::Queue<int> q(4);
    mproc::Process producer([&] {
      pause_at(QueueCheckpoint::put_committed);
      q.put(1);
    });
    producer.start();
    ASSERT_TRUE(paused.wait(20s));
    auto start = Clock::now();
    EXPECT_THROW(q.put_nowait(2), mproc::Full);
    EXPECT_THROW(q.put(2, false), mproc::Full);
    EXPECT_LT(Clock::now() - start, kNoticeBound);
    start = Clock::now();
    EXPECT_THROW(q.put(2, 200ms), mproc::Full);
    EXPECT_GE(Clock::now() - start, 200ms);
    EXPECT_LT(Clock::now() - start, kNoticeBound);
    resume.set();
    EXPECT_EQ(exit_code(producer), 0);
    q.put_nowait(2);
    EXPECT_EQ(q.get_nowait(), 1);
    EXPECT_EQ(q.get_nowait(), 2);
  }
  g_paused = g_resume = nullptr;
}

// CPython's test_closed_queue_put_get_exceptions, for JoinableQueue too; and join_thread() /
// cancel_join_thread() exist (and do nothing) so that Python code ports line by line.
TEST_F(QueueTest, ClosedJoinableQueuePutGetThrowAndFeederThreadCallsAreNoOps) {
  mproc::JoinableQueue<int> q;
  q.put(1);
  q.cancel_join_thread();
  q.close();
  q.join_thread();
  EXPECT_THROW(q.put(2), mproc::Error);
  EXPECT_THROW(q.put_nowait(2), mproc::Error);
  EXPECT_THROW(q.get(), mproc::Error);
  EXPECT_THROW(q.get_nowait(), mproc::Error);
  EXPECT_EQ(q.qsize(), 1u);
  mproc::Queue<int> plain;
  plain.join_thread();
  plain.cancel_join_thread();
}

// A value whose serialize code throws. `ok` is encoded first, so decoding (of the values that
// made it into the queue) always succeeds.
struct Picky {
  bool ok = true;
  std::string text;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(ok);
    if (!ok) throw std::runtime_error("Picky: not serializable");
    ar(text);
  }
};

// CPython's test_queue_feeder_donot_stop_onexc: a put whose encoding throws propagates the
// error and leaves the queue usable, in this process and in others (no mutex left held).
TEST_F(QueueTest, PutWhoseEncodingThrowsLeavesTheQueueUsable) {
  mproc::Queue<Picky> q(2);
  EXPECT_THROW(q.put(Picky{false, "no"}), std::runtime_error);
  EXPECT_TRUE(q.empty());
  q.put(Picky{true, "yes"});
  EXPECT_THROW(q.put(Picky{false, "no"}, 1s), std::runtime_error);
  EXPECT_EQ(q.qsize(), 1u);
  mproc::Process child([&] {
    Picky p = q.get(10s);
    q.put(Picky{true, p.text + "!"}, 10s);
  });
  child.start();
  EXPECT_EQ(exit_code(child), 0);
  EXPECT_EQ(q.get(1s).text, "yes!");
}

}  // namespace
