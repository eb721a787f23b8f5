// Managers and proxies (CPython's test_multiprocessing manager tests, ported): dict, list,
// Namespace, Value, Array, Queue, locks, Event, Condition, Barrier proxies; proxies passed to
// child processes and nested in other proxies; atomic updates against the lost-update race;
// restart on the same address; and faults: a client killed holding a Lock, a server killed
// under its clients, an owner killed with SIGKILL, wrong keys and hostile peers.
#include <mproc/mproc.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <map>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "support/leak_check.hpp"

using namespace std::chrono_literals;
using mproc::Manager;
using mproc::testing::LeakCheckedTest;

namespace {

class ManagerTest : public LeakCheckedTest {};

int plus_one(int v) { return v + 1; }
int throws_domain(int) { throw std::domain_error("no update today"); }

TEST_F(ManagerTest, DictProxyMethods) {
  Manager m;
  auto d = m.dict<std::string, int>();
  d.set("a", 1);
  d.set("b", 2);
  EXPECT_EQ(d.get("a"), 1);
  EXPECT_THROW(d.get("zz"), mproc::KeyError);
  EXPECT_EQ(d.get("zz", 7), 7);
  EXPECT_TRUE(d.contains("b"));
  EXPECT_FALSE(d.contains("c"));
  EXPECT_EQ(d.setdefault("c", 3), 3);
  EXPECT_EQ(d.setdefault("c", 4), 3);
  d.update({{"d", 4}, {"a", 10}});
  EXPECT_EQ(d.size(), 4u);
  EXPECT_EQ(d.pop("d"), 4);
  EXPECT_THROW(d.pop("d"), mproc::KeyError);
  auto copy = d.copy();
  EXPECT_EQ(copy, (std::map<std::string, int>{{"a", 10}, {"b", 2}, {"c", 3}}));
  EXPECT_EQ(d.keys().size(), 3u);
  EXPECT_EQ(d.values().size(), 3u);
  EXPECT_EQ(d.items().size(), 3u);
  d.clear();
  EXPECT_EQ(d.size(), 0u);
}

TEST_F(ManagerTest, ListProxyMethods) {
  Manager m;
  auto l = m.list<int>();
  l.append(1);
  l.extend(std::vector<int>{2, 3, 2});
  EXPECT_EQ(l.copy(), (std::vector<int>{1, 2, 3, 2}));
  EXPECT_EQ(l.get(-1), 2);
  EXPECT_THROW(l.get(4), std::out_of_range);
  EXPECT_THROW(l.set(-5, 0), std::out_of_range);
  l.set(0, 9);
  l.insert(1, 8);
  EXPECT_EQ(l.copy(), (std::vector<int>{9, 8, 2, 3, 2}));
  EXPECT_EQ(l.count(2), 2u);
  EXPECT_EQ(l.index(3), 3u);
  EXPECT_THROW(l.index(42), std::invalid_argument);
  l.remove(2);
  EXPECT_THROW(l.remove(42), std::invalid_argument);
  EXPECT_EQ(l.pop(), 2);
  EXPECT_EQ(l.pop(0), 9);
  EXPECT_EQ(l.size(), 2u);
  l.clear();
  EXPECT_THROW(l.pop(), std::out_of_range);
}

TEST_F(ManagerTest, NamespaceValueArray) {
  Manager m;
  auto ns = m.Namespace();
  ns.set("name", std::string("x"));
  ns.set("n", 3);
  EXPECT_EQ(ns.get<std::string>("name"), "x");
  EXPECT_EQ(ns.get<int>("n"), 3);
  EXPECT_THROW(ns.get<int>("missing"), mproc::KeyError);
  EXPECT_THROW(ns.get<double>("n"), mproc::SerializationError);
  auto v = m.Value<double>(1.5);
  EXPECT_EQ(v.get(), 1.5);
  v.set(2.5);
  EXPECT_EQ(v.get(), 2.5);
  auto a = m.Array<int>(4, 7);
  EXPECT_EQ(a.size(), 4u);
  a.set(2, 1);
  EXPECT_EQ(a.copy(), (std::vector<int>{7, 7, 1, 7}));
  EXPECT_THROW(a.get(4), std::out_of_range);
  EXPECT_EQ(m.Array<int>({3, 1, 2}).copy(), (std::vector<int>{3, 1, 2}));  // Python's Array('i', seq)
  EXPECT_EQ(m.Array<double>(std::vector<int>{1, 2}).copy(), (std::vector<double>{1.0, 2.0}));
  EXPECT_EQ(m.Array<int>(std::vector<int>{}).size(), 0u);
  EXPECT_EQ(m.Array<int>({5}).copy(), (std::vector<int>{5}));
  auto count = m.Value<int>(0);
  EXPECT_EQ(count.apply(&plus_one), 1);
  EXPECT_EQ(count.get(), 1);
}

void add_many(mproc::DictProxy<std::string, int> d, mproc::ValueProxy<int> v, int n) {
  for (int i = 0; i < n; ++i) {
    d.update_with("hits", &plus_one);
    v.apply(&plus_one);
  }
}

TEST_F(ManagerTest, AtomicUpdatesFromSeveralProcessesLoseNothing) {
  Manager m;
  auto d = m.dict<std::string, int>();
  auto v = m.Value<int>(0);
  std::vector<mproc::Process> ps;
  for (int i = 0; i < 4; ++i) ps.emplace_back(add_many, d, v, 50);
  for (auto& p : ps) p.start();
  for (auto& p : ps) {
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
  }
  EXPECT_EQ(d.get("hits"), 200);
  EXPECT_EQ(v.get(), 200);
}

TEST_F(ManagerTest, UpdateFunctionExceptionKeepsItsType) {
  Manager m;
  auto d = m.dict<std::string, int>();
  try {
    d.update_with("k", &throws_domain);
    FAIL() << "no exception";
  } catch (const std::domain_error& e) {
    EXPECT_STREQ(e.what(), "no update today");
  }
  EXPECT_FALSE(d.contains("k"));
  d.set("k", 1);  // the server went on
  EXPECT_EQ(d.get("k"), 1);
}

int bump(mproc::DictProxy<std::string, int> d, int n) {
  for (int i = 0; i < n; ++i) d.update_with("hits", &plus_one);
  return n;
}

TEST_F(ManagerTest, ProxiesArePoolTaskArguments) {
  Manager m;
  auto d = m.dict<std::string, int>();
  {
    mproc::Pool pool(2);
    std::vector<mproc::AsyncResult<int>> results;
    for (int i = 0; i < 4; ++i) results.push_back(pool.apply_async(bump, d, 10));
    for (auto& r : results) EXPECT_EQ(r.get(), 10);
  }
  EXPECT_EQ(d.get("hits"), 40);
}

void fill_list(mproc::DictProxy<std::string, mproc::ListProxy<int>> d) {
  auto inner = d.get("inner");
  inner.append(5);
  inner.append(6);
}

TEST_F(ManagerTest, NestedProxiesReferToTheSameObject) {
  Manager m;
  auto d = m.dict<std::string, mproc::ListProxy<int>>();
  {
    auto inner = m.list<int>();
    inner.append(1);
    d.set("inner", inner);
  }  // this process's proxy is gone: the dict's copy keeps the list alive
  mproc::Process p(fill_list, d);
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_EQ(d.get("inner").copy(), (std::vector<int>{1, 5, 6}));
}

void produce(mproc::QueueProxy<int> q, int n) {
  for (int i = 0; i < n; ++i) q.put(i);
}

TEST_F(ManagerTest, QueueBetweenProcesses) {
  Manager m;
  auto q = m.Queue<int>();
  mproc::Process p(produce, q, 100);
  p.start();
  long sum = 0;
  for (int i = 0; i < 100; ++i) sum += q.get();
  p.join();
  EXPECT_EQ(sum, 4950);
  EXPECT_THROW(q.get(false), mproc::Empty);
  EXPECT_THROW(q.get(true, 50ms), mproc::Empty);
  auto bounded = m.Queue<int>(1);
  bounded.put(1);
  EXPECT_TRUE(bounded.full());
  EXPECT_THROW(bounded.put(2, true, 20ms), mproc::Full);
  auto jq = m.JoinableQueue<int>();
  jq.put(1);
  EXPECT_EQ(jq.get(), 1);
  jq.task_done();
  jq.join();
  EXPECT_THROW(jq.task_done(), std::invalid_argument);
  EXPECT_THROW(q.task_done(), mproc::Error);  // a plain Queue refuses
}

void put_and_exit(mproc::QueueProxy<int> q) {
  for (int i = 0; i < 1000; ++i) q.put(i);  // one-way: nothing waits for the server here
}

TEST_F(ManagerTest, OneWayPutsAreDoneWhenTheProducerIsJoined) {
  Manager m;
  auto q = m.Queue<int>();
  mproc::Process p(put_and_exit, q);
  p.start();
  p.join();
  EXPECT_EQ(q.qsize(), 1000u);  // the child's puts were acknowledged before it ended
  std::thread t(put_and_exit, q);
  t.join();
  EXPECT_EQ(q.qsize(), 2000u);  // and a thread's, before it ended
}

TEST_F(ManagerTest, SynchronizationProxies) {
  Manager m;
  auto lock = m.Lock();
  EXPECT_TRUE(lock.acquire());
  EXPECT_FALSE(lock.acquire(false));
  lock.release();
  lock.release();  // one-way: its failure answers the next call, which does not run
  EXPECT_THROW(lock.acquire(false), mproc::Error);
  EXPECT_TRUE(lock.acquire(false));
  lock.release();
  auto rlock = m.RLock();
  EXPECT_TRUE(rlock.acquire());
  EXPECT_TRUE(rlock.acquire());
  rlock.release();
  rlock.release();
  auto sem = m.BoundedSemaphore(2);
  EXPECT_TRUE(sem.acquire());
  EXPECT_EQ(sem.get_value(), 1);
  sem.release();
  EXPECT_THROW(sem.release(), std::invalid_argument);
  auto event = m.Event();
  EXPECT_FALSE(event.wait(20ms));
  std::thread setter([event]() mutable { event.set(); });
  EXPECT_TRUE(event.wait(10s));
  setter.join();
  auto barrier = m.Barrier(2);
  std::thread other([barrier]() mutable { barrier.wait(); });
  barrier.wait();
  other.join();
  std::thread reset_victim([barrier]() mutable { EXPECT_THROW(barrier.wait(), mproc::BrokenBarrierError); });
  ASSERT_TRUE(mproc::testing::eventually([&] { return barrier.n_waiting() == 1; }));
  barrier.reset();
  reset_victim.join();
  EXPECT_FALSE(barrier.broken());
  barrier.abort();
  EXPECT_THROW(barrier.wait(), mproc::BrokenBarrierError);
  auto cond = m.Condition();
  std::atomic<bool> waiting{false};
  std::thread waiter([cond, &waiting]() mutable {
    cond.acquire();
    waiting = true;
    EXPECT_TRUE(cond.wait(10s));
    cond.release();
  });
  while (!waiting) std::this_thread::sleep_for(1ms);
  // The waiter released the lock inside wait(): taking it proves it waits.
  cond.acquire();
  cond.notify();
  cond.release();
  waiter.join();
  // wait_for: the predicate is checked under the lock, before and after each wait.
  auto ready = m.Value<int>(0);
  std::thread setter2([cond, ready]() mutable {
    cond.acquire();
    ready.set(1);
    cond.notify_all();
    cond.release();
  });
  cond.acquire();
  EXPECT_TRUE(cond.wait_for([&] { return ready.get() == 1; }, 10s));
  EXPECT_FALSE(cond.wait_for([] { return false; }, 30ms));
  cond.release();
  setter2.join();
}

void hold_lock_and_hang(mproc::LockProxy lock, mproc::EventProxy held) {
  lock.acquire();
  held.set();
  for (;;) ::pause();
}

TEST_F(ManagerTest, ClientKilledHoldingALockReleasesIt) {
  Manager m;
  auto lock = m.Lock();
  auto held = m.Event();
  mproc::Process p(hold_lock_and_hang, lock, held);
  p.start();
  ASSERT_TRUE(held.wait(30s));
  EXPECT_FALSE(lock.acquire(false));
  p.kill();
  p.join();
  EXPECT_TRUE(lock.acquire(true, 10s));
  lock.release();
}

void count_under(mproc::LockProxy lock, mproc::ValueProxy<int> v, int n, bool reenter) {
  for (int i = 0; i < n; ++i) {
    lock.acquire();
    if (reenter) lock.acquire();  // an RLock's second level
    v.set(v.get() + 1);
    if (reenter) lock.release();
    lock.release();
  }
}

TEST_F(ManagerTest, LocksUnderContentionLoseNoUpdate) {
  // Releases leave a contended lock free for the releaser to take back, or hand it to the
  // first waiter: either way one holder at a time, at the right depth.
  Manager m;
  auto v = m.Value<int>(0);
  for (bool reentrant : {false, true}) {
    auto lock = reentrant ? m.RLock() : m.Lock();
    v.set(0);
    std::vector<mproc::Process> counters;
    for (int i = 0; i < 3; ++i) counters.emplace_back(count_under, lock, v, 200, reentrant);
    for (auto& p : counters) p.start();
    for (auto& p : counters) p.join();
    EXPECT_EQ(v.get(), 600) << (reentrant ? "RLock" : "Lock");
    EXPECT_TRUE(lock.acquire(false)) << "left held";
    lock.release();
  }
}

void take_and_give_back_until(mproc::LockProxy lock, mproc::Event holding, mproc::Event stop) {
  // Held long enough for the parent's acquire to queue behind this client, then taken back
  // at once after each release.
  lock.acquire();
  holding.set();
  std::this_thread::sleep_for(100ms);
  lock.release();
  while (!stop.is_set()) {
    lock.acquire();
    lock.release();
  }
}

TEST_F(ManagerTest, AWaiterIsNotStarvedByAClientThatTakesTheLockBackAtOnce) {
  // The looping client's next acquire reaches the server microseconds after its release,
  // always before the waiter could run: without a bound on overtaking, the waiter would
  // wait as long as the loop runs.
  Manager m;
  auto lock = m.Lock();
  mproc::Event holding, stop;
  mproc::Process hog(take_and_give_back_until, lock, holding, stop);
  hog.start();
  ASSERT_TRUE(holding.wait(30s));
  const bool got = lock.acquire(true, 20s);
  stop.set();
  if (got) lock.release();
  hog.join();
  EXPECT_TRUE(got);
  EXPECT_EQ(hog.exitcode(), 0);
}

void wait_for_lock(mproc::LockProxy lock) { lock.acquire(); }

TEST_F(ManagerTest, ALockHandedToAWaiterThatDiedPassesOn) {
  Manager m;
  auto lock = m.Lock();
  ASSERT_TRUE(lock.acquire());
  for (int i = 0; i < 3; ++i) {
    mproc::Process waiter(wait_for_lock, lock);
    waiter.start();
    std::this_thread::sleep_for(20ms);  // likely queued for the lock by now; correct either way
    waiter.kill();
    waiter.join();
    lock.release();  // may go straight to the dead waiter, whose server thread passes it on
    ASSERT_TRUE(lock.acquire(true, 10s));
  }
  lock.release();
}

void block_in_get(mproc::QueueProxy<int> q) { (void)q.get(); }

TEST_F(ManagerTest, ServerSurvivesClientsKilledMidCall) {
  Manager m;
  auto q = m.Queue<int>();
  for (int i = 0; i < 3; ++i) {
    mproc::Process p(block_in_get, q);
    p.start();
    ASSERT_TRUE(mproc::testing::eventually([&] { return p.is_alive(); }));
    std::this_thread::sleep_for(20ms);
    p.kill();
    p.join();
  }
  q.put(1);
  EXPECT_EQ(q.get(true, 10s), 1);  // the dead getters took nothing
}

TEST_F(ManagerTest, ClientOfADeadServerGetsEOFErrorNotAHang) {
  Manager m;
  auto q = m.Queue<int>();
  std::thread killer([&m] {
    std::this_thread::sleep_for(100ms);
    m.process().kill();
  });
  auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(q.get(), mproc::EOFError);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 20s);
  killer.join();
  EXPECT_THROW(q.put(1), mproc::Error);
}

void start_manager_and_hang(mproc::Connection report) {
  Manager m;
  report.send(m.process().pid());
  for (;;) ::pause();
}

TEST_F(ManagerTest, ServerDiesWithItsOwnerEvenBySigkill) {
  auto reaper = mproc::testing::become_subreaper();
  auto before = mproc::testing::child_pids();
  auto [mine, theirs] = mproc::Pipe(false);
  mproc::Process owner(start_manager_and_hang, std::move(theirs));
  owner.start();
  theirs.close();
  pid_t server = mine.recv<pid_t>();
  ASSERT_TRUE(mproc::testing::process_running(server));
  owner.kill();
  owner.join();
  EXPECT_TRUE(mproc::testing::eventually([&] { return !mproc::testing::process_running(server); }));
  mproc::testing::reap_orphans(before);
}

TEST_F(ManagerTest, WrongKeyRefusedAndHostilePeersDoNotHurtTheServer) {
  Manager m;
  auto d = m.dict<int, int>();
  d.set(1, 1);
  EXPECT_THROW(mproc::Client(m.address(), {.authkey = std::string("wrong")}), mproc::AuthenticationError);
  {
    // Authenticated, then garbage and an absurd frame length.
    auto c = mproc::Client(m.address(), {.authkey = m.authkey()});
    c.send_bytes(std::string_view("\x01\x02garbage"));
  }
  {
    auto c = mproc::Client(m.address(), {.authkey = m.authkey()});
    int fd = c.fileno();
    const unsigned char huge[4] = {0x7f, 0xff, 0xff, 0xff};
    (void)!::send(fd, huge, sizeof huge, MSG_NOSIGNAL);
  }
  {
    // A well-formed request for an object that does not exist, an unknown operation.
    auto c = mproc::Client(m.address(), {.authkey = m.authkey()});
    mproc::detail::manager::Request r;
    r.id = 999;
    r.op = mproc::detail::manager::Op::d_get;
    c.send(r);
    EXPECT_NE(c.recv<mproc::detail::manager::Reply>().status, mproc::detail::manager::Status::ok);
    r.id = d.id();
    r.op = mproc::detail::manager::Op::b_wait;  // not a method of a dict
    c.send(r);
    EXPECT_EQ(c.recv<mproc::detail::manager::Reply>().status, mproc::detail::manager::Status::refused);
  }
  EXPECT_EQ(d.get(1), 1);
}

TEST_F(ManagerTest, RestartOnTheSameAddress) {
  std::string path = "/tmp/mproc-test-manager-" + std::to_string(::getpid()) + ".sock";
  {
    Manager m({.address = mproc::Address::unix_path(path), .authkey = std::string("k")});
    m.dict<int, int>().set(1, 2);
  }
  Manager again({.address = mproc::Address::unix_path(path), .authkey = std::string("k")});
  auto d = again.dict<int, int>();
  EXPECT_EQ(d.size(), 0u);
  d.set(3, 4);
  EXPECT_EQ(d.get(3), 4);
}

}  // namespace

// ---- BaseManager: registered types, a client in another program -------------------------

namespace {

class Counter {
 public:
  void add(int n) {
    std::lock_guard lock(mutex_);
    total_ += n;
  }
  int total() const {
    std::lock_guard lock(mutex_);
    return total_;
  }
  std::string greet(const std::string& who, int times) const {
    std::string out;
    for (int i = 0; i < times; ++i) out += "hello " + who + ";";
    return out;
  }
  int fail(int code) {
    if (code == 1) throw std::out_of_range("code one");
    throw std::runtime_error("code other");
  }
  int hidden() { return 42; }

 private:
  mutable std::mutex mutex_;
  int total_ = 0;
};

std::shared_ptr<Counter> make_counter() { return std::make_shared<Counter>(); }
// Python's register('get_shared', callable=lambda: shared): every create() is the same object.
std::shared_ptr<Counter> the_shared_counter() {
  static auto shared = std::make_shared<Counter>();
  return shared;
}

void register_counters(mproc::BaseManager& mgr) {
  mgr.register_type<Counter>("Counter", &make_counter, &Counter::add, &Counter::total, &Counter::greet, &Counter::fail);
  mgr.register_type<Counter>("SharedCounter", &the_shared_counter, &Counter::add, &Counter::total);
}

std::string test_key() { return "base manager key"; }

}  // namespace

// Another program (this binary run again): connects by address and key alone.
MPROC_TEST_HELPER(remote_client) {
  mproc::BaseManager mgr(mproc::Address::unix_path(arg), test_key());
  register_counters(mgr);
  mgr.connect();
  auto c = mgr.create<Counter>("SharedCounter");
  c.call(&Counter::add, 5);
  c.call(&Counter::add, 6);
  std::printf("remote total %d\n", c.call(&Counter::total));
  return 0;
}

namespace {

TEST_F(ManagerTest, BaseManagerRegisteredTypeFromAnotherProgram) {
  std::string path = "/tmp/mproc-test-basemanager-" + std::to_string(::getpid()) + ".sock";
  mproc::BaseManager mgr(mproc::Address::unix_path(path), test_key());
  register_counters(mgr);
  mgr.start();
  auto c = mgr.create<Counter>("Counter");
  c.call(&Counter::add, 2);
  c.call(&Counter::add, 3);
  EXPECT_EQ(c.call(&Counter::total), 5);
  EXPECT_EQ(c.call(&Counter::greet, std::string("ann"), 2), "hello ann;hello ann;");
  EXPECT_THROW(c.call(&Counter::hidden), mproc::Error);  // not exposed: refused here
  EXPECT_THROW(c.call(&Counter::fail, 1), std::out_of_range);
  EXPECT_THROW(c.call(&Counter::fail, 2), std::runtime_error);
  {
    // The server refuses too, whatever a client sends.
    auto raw = mproc::Client(mgr.address(), {.authkey = test_key()});
    mproc::detail::manager::Request r;
    r.id = c.id();
    r.op = mproc::detail::manager::Op::call_method;
    r.number = 17;
    r.args = {mproc::dumps(std::tuple<>{})};
    raw.send(r);
    auto reply = raw.recv<mproc::detail::manager::Reply>();
    EXPECT_EQ(reply.status, mproc::detail::manager::Status::refused);
    EXPECT_NE(reply.message.find("not exposed"), std::string::npos);
  }
  auto shared = mgr.create<Counter>("SharedCounter");
  auto result = mproc::testing::run_helper("remote_client", path);
  EXPECT_EQ(result.exitcode, 0);
  EXPECT_NE(result.output.find("remote total 11"), std::string::npos) << result.output;
  EXPECT_EQ(shared.call(&Counter::total), 11);
  mproc::BaseManager wrong(mproc::Address::unix_path(path), std::string("wrong"));
  EXPECT_THROW(wrong.connect(), mproc::AuthenticationError);
  mgr.shutdown();
  EXPECT_THROW(c.call(&Counter::total), mproc::Error);
}

void add_through_proxy(mproc::Proxy<Counter> c) {
  // A spawned child starts with no registrations (Python's child re-imports the module that
  // registers them); a forked one has its parent's already.
  mproc::BaseManager registrations(c.endpoint().address, c.endpoint().authkey);
  register_counters(registrations);
  c.call(&Counter::add, 7);
}

TEST_F(ManagerTest, BaseManagerProxyIsAProcessArgumentAndServeForeverWorks) {
  mproc::BaseManager mgr(mproc::Address::tcp("127.0.0.1", 0), test_key());
  register_counters(mgr);
  auto server = mgr.get_server();
  EXPECT_NE(server.address().port(), 0);
  std::thread serving([&server] { server.serve_forever(); });
  {
    auto c = mgr.create<Counter>("Counter");
    mproc::Process p(add_through_proxy, c);
    p.start();
    p.join();
    EXPECT_EQ(p.exitcode(), 0);
    EXPECT_EQ(c.call(&Counter::total), 7);
  }
  mgr.shutdown();  // a client's shutdown request ends serve_forever
  serving.join();
}

}  // namespace
