// Idioms a Python program ports with: a braced list to map/starmap (`pool.map(f, [1, 2])`),
// futures as dictionary keys (`{ex.submit(f, x): x for x in xs}`), `with Pool() as pool:`
// terminating on exit (PoolOptions::terminate_on_exit), and a move-only argument handed to a
// Process (`Process(target=f, args=(conn,))`). Runs under every start method.
#include <mproc/mproc.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>
#include <signal.h>

#include "support/gate.hpp"
#include "support/leak_check.hpp"
#include "support/start_method.hpp"

using namespace std::chrono_literals;
using mproc::testing::Gate;
using mproc::testing::LeakCheckedTest;

namespace {

int square(int x) { return x * x; }
long widen(long x) { return x * 2; }
std::string label(const std::string& name, int count) { return name + "=" + std::to_string(count); }
int second_of(std::pair<std::string, int> item) { return item.second; }
int wait_at_gate(int x) {
  Gate::announce();
  Gate::pass();
  return x;
}
void send_through(mproc::Connection connection, int value) { connection.send(value * 3); }

// A move-only value type that is serializable: it is encoded in place under spawn and
// forkserver (never copied) and moved into the call under fork.
struct Ticket {
  std::vector<int> numbers;
  Ticket() = default;
  explicit Ticket(std::vector<int> n) : numbers(std::move(n)) {}
  Ticket(Ticket&&) = default;
  Ticket& operator=(Ticket&&) = default;
  Ticket(const Ticket&) = delete;
  Ticket& operator=(const Ticket&) = delete;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(numbers);
  }
};
void sum_ticket(Ticket ticket, mproc::Connection out) {
  int sum = 0;
  for (int n : ticket.numbers) sum += n;
  out.send(sum);
}

class PythonIdioms : public LeakCheckedTest {};

// ---- braced lists --------------------------------------------------------------------------

TEST_F(PythonIdioms, PoolMapsABracedList) {
  mproc::Pool pool(2);
  EXPECT_EQ(pool.map(square, {1, 2, 3}), (std::vector<int>{1, 4, 9}));
  EXPECT_EQ(pool.map(widen, {1, 2}), (std::vector<long>{2, 4}));   // int elements, long parameter
  EXPECT_EQ(pool.map(square, {}), std::vector<int>{});
  EXPECT_EQ(pool.map(second_of, {{"a", 1}, {"b", 2}}), (std::vector<int>{1, 2}));
  EXPECT_EQ(pool.starmap(label, {{"a", 1}, {"b", 2}}), (std::vector<std::string>{"a=1", "b=2"}));
  EXPECT_EQ(pool.map_async(square, {4}, 1).get(), std::vector<int>{16});
  EXPECT_EQ(pool.starmap_async(label, {{"c", 3}}).get(), std::vector<std::string>{"c=3"});
  std::vector<int> ordered;
  for (int v : pool.imap(square, {1, 2, 3})) ordered.push_back(v);
  EXPECT_EQ(ordered, (std::vector<int>{1, 4, 9}));
  std::multiset<int> unordered;
  for (int v : pool.imap_unordered(square, {1, 2, 3}, 2)) unordered.insert(v);
  EXPECT_EQ(unordered, (std::multiset<int>{1, 4, 9}));
}

// The iterator of a lazy map holds a copy of the list, which dies with the call's full
// expression: iterating after it must still see every element.
TEST_F(PythonIdioms, LazyMapsOfABracedListOutliveTheList) {
  mproc::Pool pool(2);
  auto lazy = pool.imap(square, {5, 6, 7, 8, 9, 10, 11, 12}, 1);
  std::vector<int> got;
  while (auto v = lazy.next()) got.push_back(*v);
  EXPECT_EQ(got, (std::vector<int>{25, 36, 49, 64, 81, 100, 121, 144}));

  mproc::ProcessPoolExecutor executor({.max_workers = 2});
  auto mapped = executor.map(square, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20});
  int sum = 0;
  for (int v : mapped) sum += v;
  EXPECT_EQ(sum, 2870);
  std::vector<int> timed;
  for (int v : executor.map(square, {3, 4}, 30s)) timed.push_back(v);
  EXPECT_EQ(timed, (std::vector<int>{9, 16}));
}

TEST_F(PythonIdioms, ThreadPoolsMapABracedListWithAnyOneSignatureCallable) {
  const int factor = 10;
  mproc::ThreadPool pool(2);
  EXPECT_EQ(pool.map([factor](int x) { return x * factor; }, {1, 2}), (std::vector<int>{10, 20}));
  EXPECT_EQ(pool.starmap([](const std::string& s, int n) { return s.size() + static_cast<std::size_t>(n); },
                         {{"ab", 1}, {"c", 5}}),
            (std::vector<std::size_t>{3, 6}));
  std::vector<int> got;
  for (int v : pool.imap(square, {2, 3})) got.push_back(v);
  EXPECT_EQ(got, (std::vector<int>{4, 9}));
  std::multiset<int> unordered;
  for (int v : pool.imap_unordered(square, {2, 3})) unordered.insert(v);
  EXPECT_EQ(unordered, (std::multiset<int>{4, 9}));

  mproc::ThreadPoolExecutor executor({.max_workers = 2});
  std::vector<std::string> labels;
  for (auto& s : executor.map([](std::pair<std::string, int> p) { return label(p.first, p.second); },
                              {{"x", 1}, {"y", 2}}))
    labels.push_back(s);
  EXPECT_EQ(labels, (std::vector<std::string>{"x=1", "y=2"}));
  // A generic lambda still takes a named range (a braced list has no type to give it).
  EXPECT_EQ(pool.map([](auto x) { return x + 1; }, std::vector{1, 2}), (std::vector<int>{2, 3}));
}

// ---- futures as keys -----------------------------------------------------------------------

TEST_F(PythonIdioms, FuturesKeyAnUnorderedMapBackToTheirInputs) {
  mproc::ProcessPoolExecutor executor({.max_workers = 2});
  std::unordered_map<mproc::Future<int>, int> input_of;
  for (int x : {3, 4, 5, 6}) input_of.emplace(executor.submit(square, x), x);
  ASSERT_EQ(input_of.size(), 4u);
  std::vector<mproc::Future<int>> futures;
  for (auto& [future, input] : input_of) futures.push_back(future);
  int seen = 0;
  for (auto& future : mproc::as_completed(futures, 30s)) {
    auto found = input_of.find(future);   // a copy finds its original
    ASSERT_NE(found, input_of.end());
    EXPECT_EQ(future.result(), found->second * found->second);
    ++seen;
  }
  EXPECT_EQ(seen, 4);

  // Copies are equal and hash alike; different submissions differ.
  auto a = executor.submit(square, 1);
  auto copy = a;
  auto b = executor.submit(square, 1);
  std::hash<mproc::Future<int>> hash;
  EXPECT_EQ(a, copy);
  EXPECT_EQ(hash(a), hash(copy));
  EXPECT_NE(a, b);
  std::unordered_set<mproc::Future<int>> set{a, copy, b};
  EXPECT_EQ(set.size(), 2u);
  EXPECT_EQ(hash(mproc::Future<int>{}), hash(mproc::Future<int>{}));

  mproc::ThreadPoolExecutor threads({.max_workers = 1});
  std::unordered_map<mproc::Future<void>, std::string> names;
  names.emplace(threads.submit([] {}), "first");
  EXPECT_EQ(names.begin()->second, "first");
}

// ---- `with Pool() as pool:` ----------------------------------------------------------------

TEST_F(PythonIdioms, TerminateOnExitStopsTheWorkersAndCancelsWhatIsUnfinished) {
  Gate gate;
  std::optional<mproc::AsyncResult<int>> blocked;
  std::optional<mproc::AsyncResult<int>> queued;
  std::vector<int> workers;
  {
    mproc::Pool pool({.processes = 1, .terminate_on_exit = true});
    workers = pool.worker_pids();
    EXPECT_EQ(pool.apply(square, 7), 49);
    blocked = pool.apply_async(wait_at_gate, 1);
    queued = pool.apply_async(square, 2);
    ASSERT_TRUE(gate.wait_started());
  }  // the gate is never opened: without terminate() the destructor would wait for ever
  EXPECT_THROW(blocked->get(5s), mproc::CancelledError);
  EXPECT_THROW(queued->get(5s), mproc::CancelledError);
  for (int pid : workers) EXPECT_EQ(::kill(pid, 0), -1) << "worker " << pid << " still exists";  // killed and reaped
}

TEST_F(PythonIdioms, TheDefaultDestructorStillFinishesAcceptedWork) {
  Gate gate;
  std::optional<mproc::AsyncResult<int>> waiting;
  std::thread opener;
  {
    mproc::Pool pool(1);
    waiting = pool.apply_async(wait_at_gate, 11);
    ASSERT_TRUE(gate.wait_started());
    opener = std::thread([&gate] { gate.open(); });
  }  // waits for the task, which the opener lets through
  opener.join();
  EXPECT_EQ(waiting->get(5s), 11);
}

// ---- move-only Process arguments -----------------------------------------------------------

// A Connection by value, moved in: Python's Process(target=f, args=(child_conn,)). Under
// spawn and forkserver it crosses by descriptor.
TEST_F(PythonIdioms, AMoveOnlyConnectionIsAProcessArgument) {
  auto [parent_end, child_end] = mproc::Pipe();
  mproc::Process child(send_through, std::move(child_end), 14);
  child.start();
  EXPECT_EQ(parent_end.recv<int>(), 42);
  child.join();
  EXPECT_EQ(child.exitcode(), 0);
}

TEST_F(PythonIdioms, AMoveOnlySerializableValueIsAProcessArgument) {
  auto [parent_end, child_end] = mproc::Pipe();
  mproc::Process child(sum_ticket, Ticket({1, 2, 3, 36}), std::move(child_end));
  child.start();
  EXPECT_EQ(parent_end.recv<int>(), 42);
  child.join();
  EXPECT_EQ(child.exitcode(), 0);
}

// Under fork any move-only argument works, serializable or not, and so does a lambda.
TEST_F(PythonIdioms, AnyMoveOnlyArgumentWorksUnderFork) {
  MPROC_FORK_ONLY();
  auto [parent_end, child_end] = mproc::Pipe();
  mproc::Process child(
      [](std::unique_ptr<int> value, mproc::Connection out) { out.send(*value + 1); }, std::make_unique<int>(41),
      std::move(child_end));
  child.start();
  EXPECT_EQ(parent_end.recv<int>(), 42);
  child.join();
  EXPECT_EQ(child.exitcode(), 0);
}

}  // namespace
