// Watching and bounding the workers: observers of the engine's worker events, worker
// insights, progress bars (their non-terminal form, read through a pipe; the terminal form is
// tests/progress_in_tmux.sh), and memory caps (soft recycle, hard limit) at 1, 2 and 4 workers.
#include <mproc/mproc.hpp>
#include <mproc/insights.hpp>
#include <mproc/observer.hpp>
#include <mproc/progress.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <poll.h>
#include <ranges>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "support/leak_check.hpp"
#include "support/runaway.hpp"
#include "support/start_method.hpp"
#include "sys/procstat.hpp"

using namespace std::chrono_literals;
using mproc::testing::LeakCheckedTest;

namespace {

int square(int x) { return x * x; }
int fail_on_seven(int x) {
  if (x == 7) throw std::runtime_error("seven is refused");
  return x;
}
int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
int exit_now(int code) { ::_exit(code); }
void slow_initializer() { std::this_thread::sleep_for(50ms); }

// Keeps `mib` MiB, touched (resident), for the rest of the worker's life: a leak.
int leak_mib(int mib) {
  static std::vector<std::unique_ptr<char[]>> kept;
  const std::size_t bytes = static_cast<std::size_t>(mib) << 20;
  auto block = std::make_unique<char[]>(bytes);
  std::memset(block.get(), 1, bytes);
  kept.push_back(std::move(block));
  return static_cast<int>(::getpid());
}

using mproc::testing::runaway;

// Dies of its allocation failure: a bad_alloc that leaves a noexcept function terminates.
void allocate_or_die() noexcept { runaway(0); }
int die_allocating(int) {
  std::signal(SIGABRT, SIG_DFL);  // a sanitizer build's handler would report it otherwise
  allocate_or_die();
  return 0;
}

// ---- a pipe that stands in for stderr ---------------------------------------------------

class Capture {
 public:
  Capture() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    read_ = fds[0];
    write_ = fds[1];
    ::fcntl(read_, F_SETFL, O_NONBLOCK);
    ::fcntl(write_, F_SETPIPE_SZ, 1 << 20);
  }
  ~Capture() {
    ::close(read_);
    ::close(write_);
  }
  int fd() const { return write_; }
  // Everything written so far.
  const std::string& text() {
    char buffer[4096];
    for (;;) {
      ssize_t n = ::read(read_, buffer, sizeof buffer);
      if (n <= 0) break;
      text_.append(buffer, static_cast<std::size_t>(n));
    }
    return text_;
  }
  // Waits (up to 20 s) until `needle` was written.
  bool wait_for(const std::string& needle) {
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (text().find(needle) == std::string::npos) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      struct pollfd entry {read_, POLLIN, 0};
      ::poll(&entry, 1, 100);
    }
    return true;
  }

 private:
  int read_, write_;
  std::string text_;
};

mproc::Progress lines_to(int fd, std::string label = "work") {
  return mproc::Progress{.display = mproc::Progress::Display::lines, .label = std::move(label), .fd = fd,
                         .line_interval = 1ms};
}

std::vector<int> numbers(int n) {
  std::vector<int> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

// ---- observers ----------------------------------------------------------------------------

struct Recorder final : mproc::Observer {
  std::mutex mutex;
  std::map<std::string, int> counts;
  std::vector<mproc::WorkerEvent> deaths, replacements;
  std::thread::id thread;
  void count(const char* what) {
    std::lock_guard lock(mutex);
    ++counts[what];
    thread = std::this_thread::get_id();
  }
  void on_worker_started(const mproc::WorkerEvent&) override { count("started"); }
  void on_worker_ready(const mproc::WorkerEvent&) override { count("ready"); }
  void on_tasks_sent(const mproc::WorkerEvent& e) override {
    std::lock_guard lock(mutex);
    counts["sent"] += static_cast<int>(e.tasks);
  }
  void on_task_finished(const mproc::WorkerEvent&) override { count("finished"); }
  void on_worker_waiting(const mproc::WorkerEvent&) override { count("waiting"); }
  void on_worker_died(const mproc::WorkerEvent& e) override {
    count("died");
    std::lock_guard lock(mutex);
    deaths.push_back(e);
  }
  void on_worker_replaced(const mproc::WorkerEvent& e) override {
    count("replaced");
    std::lock_guard lock(mutex);
    replacements.push_back(e);
  }
};

using Observers = LeakCheckedTest;

TEST_F(Observers, SeeEveryWorkerEventOffTheCallersThread) {
  auto recorder = std::make_shared<Recorder>();
  {
    mproc::Pool pool({.processes = 2, .observers = {recorder}});
    EXPECT_EQ(pool.map(square, numbers(100), 10).size(), 100u);
    pool.close();
    pool.join();
  }
  std::lock_guard lock(recorder->mutex);
  EXPECT_EQ(recorder->counts["started"], 2);
  EXPECT_EQ(recorder->counts["ready"], 2);
  // Ten chunks, each sent once, or more than once when a loaded machine stalls a worker and
  // the engine hands the chunks queued behind it to the other; each finishes once.
  EXPECT_GE(recorder->counts["sent"], 10);
  EXPECT_EQ(recorder->counts["finished"], 10);
  EXPECT_GE(recorder->counts["waiting"], 1);
  ASSERT_EQ(recorder->deaths.size(), 2u);
  for (const auto& death : recorder->deaths) EXPECT_EQ(death.exit, mproc::WorkerExit::retired);
  EXPECT_NE(recorder->thread, std::this_thread::get_id());
}

TEST_F(Observers, SeeADeathWithItsCauseAndTheReplacement) {
  auto recorder = std::make_shared<Recorder>();
  mproc::Pool pool({.processes = 1, .observers = {recorder}});
  EXPECT_THROW(pool.apply(exit_now, 3), mproc::WorkerLostError);
  EXPECT_EQ(pool.apply(square, 4), 16);  // the replacement serves
  pool.close();
  pool.join();
  std::lock_guard lock(recorder->mutex);
  ASSERT_EQ(recorder->deaths.size(), 2u);
  EXPECT_EQ(recorder->deaths[0].exit, mproc::WorkerExit::crashed);
  EXPECT_EQ(recorder->deaths[0].exitcode, 3);
  ASSERT_EQ(recorder->replacements.size(), 1u);
  EXPECT_EQ(recorder->replacements[0].replaces, recorder->deaths[0].worker);
  EXPECT_NE(recorder->replacements[0].worker, recorder->deaths[0].worker);
}

TEST_F(Observers, OneThatThrowsDoesNotStopThePool) {
  struct Thrower final : mproc::Observer {
    void on_task_finished(const mproc::WorkerEvent&) override { throw std::runtime_error("observer"); }
  };
  mproc::Pool pool({.processes = 1, .observers = {std::make_shared<Thrower>()}});
  EXPECT_EQ(pool.map(square, numbers(10), 1).back(), 81);
}

// ---- insights -----------------------------------------------------------------------------

using Insights = LeakCheckedTest;

TEST_F(Insights, CountTasksTimesAndMemoryPerWorker) {
  mproc::Pool pool({.processes = 2, .initializer = slow_initializer});
  EXPECT_EQ(pool.map(sleep_ms, std::vector<int>(20, 5), 1).size(), 20u);
  pool.close();
  pool.join();
  mproc::Insights insights = pool.insights();
  ASSERT_EQ(insights.workers.size(), 2u);
  EXPECT_EQ(insights.total.tasks, 20u);
  EXPECT_EQ(insights.exits[mproc::WorkerExit::retired], 2u);
  for (const auto& worker : insights.workers) {
    EXPECT_GT(worker.pid, 0);
    EXPECT_GE(worker.initializer, 40ms);
    EXPECT_GT(worker.startup, 0ns);
    EXPECT_GT(worker.peak_rss_bytes, 1u << 20);
    EXPECT_GT(worker.feeding, 0ns);
  }
  // Twenty 5 ms sleeps: at least 100 ms of work between them.
  EXPECT_GE(insights.total.working, 90ms);
  EXPECT_EQ(insights.memory_limits, "none");
  std::ostringstream printed;
  printed << insights;
  for (const char* column : {"worker insights", "start-up", "working", "waiting", "peak RSS", "total", "retired"})
    EXPECT_NE(printed.str().find(column), std::string::npos) << column << " in\n" << printed.str();
}

TEST_F(Insights, TheProcessExecutorHasThemToo) {
  mproc::ProcessPoolExecutor executor({.max_workers = 2});
  for (int r : executor.map(square, numbers(10))) (void)r;
  executor.shutdown();
  EXPECT_EQ(executor.insights().total.tasks, 10u);
  EXPECT_EQ(executor.insights().exits[mproc::WorkerExit::retired], 2u);
}

TEST_F(Insights, CountFailedTasksAndTerminatedWorkers) {
  mproc::Pool pool(2);
  EXPECT_THROW(pool.map(fail_on_seven, numbers(10), 1), std::runtime_error);
  pool.terminate();
  pool.join();
  auto insights = pool.insights();
  EXPECT_EQ(insights.total.failed, 1u);
  EXPECT_EQ(insights.exits[mproc::WorkerExit::terminated], 2u);
}

TEST_F(Insights, ThreadPoolsHaveThemPerThread) {
  mproc::ThreadPoolExecutor executor({.max_workers = 2, .initializer = slow_initializer});
  for (int r : executor.map(sleep_ms, std::vector<int>(10, 5))) EXPECT_EQ(r, 5);
  executor.shutdown();
  auto insights = executor.insights();
  ASSERT_GE(insights.workers.size(), 1u);
  ASSERT_LE(insights.workers.size(), 2u);
  EXPECT_EQ(insights.total.tasks, 10u);
  EXPECT_GE(insights.total.working, 45ms);
  for (const auto& thread : insights.workers) {
    EXPECT_EQ(thread.pid, ::getpid());
    EXPECT_GE(thread.initializer, 40ms);
  }
  mproc::ThreadPool pool(2);
  pool.map([](int x) { return x; }, numbers(100), 10);
  pool.close();
  pool.join();  // a thread counts a job once it has let go of it, after its result is out
  EXPECT_EQ(pool.insights().total.tasks, 10u);
  EXPECT_NE(pool.insights().table().find("threads share"), std::string::npos);
}

TEST_F(Insights, TellTimeoutsAndRetirementsApart) {
  mproc::Pool pool({.processes = 1, .maxtasksperchild = 2, .task_timeout = 200ms});
  EXPECT_THROW(pool.apply(sleep_ms, 5000), mproc::TimeoutError);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(pool.apply(square, i), i * i);
  pool.close();
  pool.join();
  auto insights = pool.insights();
  EXPECT_EQ(insights.exits[mproc::WorkerExit::timed_out], 1u) << insights;
  // Two workers reached maxtasksperchild; a third, started before close(), may have retired too.
  EXPECT_GE(insights.exits[mproc::WorkerExit::retired], 2u) << insights;
  EXPECT_EQ(insights.total.tasks, 4u);  // the killed task never finished
}

// ---- progress (not a terminal) -------------------------------------------------------------

using ProgressLines = LeakCheckedTest;

TEST_F(ProgressLines, MapEndsWithItsItemsNotItsChunks) {
  Capture out;
  mproc::Pool pool(2);
  auto squares = pool.map(square, numbers(1000), 100, lines_to(out.fd(), "squares"));
  EXPECT_EQ(squares.size(), 1000u);
  // The bar is final when map returns.
  EXPECT_NE(out.text().find("squares: 1000/1000 (100%)"), std::string::npos) << out.text();
  EXPECT_NE(out.text().find(" done"), std::string::npos) << out.text();
  // Progress lines only ever show whole chunks of items.
  for (std::size_t at = out.text().find("squares: "); at != std::string::npos; at = out.text().find("squares: ", at + 1))
    EXPECT_EQ(std::stoi(out.text().substr(at + 9)) % 100, 0) << out.text();
}

TEST_F(ProgressLines, EveryMapFormTakesOne) {
  Capture out;
  mproc::Pool pool(2);
  std::vector<std::tuple<int>> tuples{{1}, {2}, {3}};
  pool.map_async(square, numbers(10), 3, lines_to(out.fd(), "map_async")).get();
  pool.starmap(square, tuples, lines_to(out.fd(), "starmap"));
  pool.starmap_async(square, tuples, 1, lines_to(out.fd(), "starmap_async")).get();
  for (int r : pool.imap(square, numbers(10), lines_to(out.fd(), "imap"))) (void)r;
  for (int r : pool.imap_unordered(square, numbers(10), 2, lines_to(out.fd(), "imap_unordered"))) (void)r;
  mproc::ProcessPoolExecutor executor({.max_workers = 2});
  for (int r : executor.map(square, numbers(10), lines_to(out.fd(), "executor"))) (void)r;
  for (const char* label : {"map_async: 10/10", "starmap: 3/3", "starmap_async: 3/3", "imap: 10/10",
                            "imap_unordered: 10/10", "executor: 10/10"})
    EXPECT_TRUE(out.wait_for(std::string(label) + " (100%)")) << label << " in\n" << out.text();
}

TEST_F(ProgressLines, ThreadPoolsTakeOneToo) {
  Capture out;
  mproc::ThreadPool pool(2);
  std::vector<std::tuple<int, int>> pairs{{1, 2}, {3, 4}};
  auto add = [](int a, int b) { return a + b; };
  pool.map([](int x) { return x; }, numbers(10), 3, lines_to(out.fd(), "tmap"));
  pool.map_async([](int x) { return x; }, numbers(10), 3, lines_to(out.fd(), "tmap_async")).get();
  pool.starmap(add, pairs, lines_to(out.fd(), "tstarmap"));
  for (int r : pool.imap([](int x) { return x; }, numbers(10), lines_to(out.fd(), "timap"))) (void)r;
  for (int r : pool.imap_unordered([](int x) { return x; }, numbers(10), 4, lines_to(out.fd(), "timap_unordered")))
    (void)r;
  mproc::ThreadPoolExecutor executor(2);
  for (int r : executor.map([](int x) { return x; }, numbers(10), lines_to(out.fd(), "texecutor"))) (void)r;
  EXPECT_THROW(pool.map(fail_on_seven, numbers(10), 1, lines_to(out.fd(), "tfailed")), std::runtime_error);
  for (const char* label : {"tmap: 10/10 (100%)", "tmap_async: 10/10 (100%)", "tstarmap: 2/2 (100%)",
                            "timap: 10/10 (100%)", "timap_unordered: 10/10 (100%)", "texecutor: 10/10 (100%)",
                            "FAILED: seven is refused"})
    EXPECT_TRUE(out.wait_for(label)) << label << " in\n" << out.text();
}

TEST_F(ProgressLines, AnEndlessInputHasNoTotal) {
  Capture out;
  mproc::Pool pool(2);
  int taken = 0;
  {
    auto results = pool.imap(square, std::views::iota(0), 5, lines_to(out.fd(), "endless"));
    for (int r : results) {
      (void)r;
      if (++taken == 50) break;
    }
  }
  // Dropped with work left: once what it submitted is done, the bar says it stopped.
  ASSERT_TRUE(out.wait_for(" stopped")) << out.text();
  EXPECT_NE(out.text().find(" items ["), std::string::npos) << out.text();
  EXPECT_EQ(out.text().find("endless: 5/"), std::string::npos) << out.text();
}

TEST_F(ProgressLines, AFailedMapSaysSo) {
  Capture out;
  mproc::Pool pool(2);
  EXPECT_THROW(pool.map(fail_on_seven, numbers(20), 2, lines_to(out.fd(), "checked")), std::runtime_error);
  ASSERT_TRUE(out.wait_for("FAILED: ")) << out.text();
  EXPECT_NE(out.text().find("seven is refused"), std::string::npos) << out.text();
}

TEST_F(ProgressLines, ACancelledMapSaysSo) {
  Capture out;
  mproc::ProcessPoolExecutor executor({.max_workers = 1});
  auto results = executor.map(sleep_ms, std::vector<int>(10, 100), lines_to(out.fd(), "slow"), 50ms);
  EXPECT_THROW(results.next(), mproc::TimeoutError);
  ASSERT_TRUE(out.wait_for(" cancelled")) << out.text();
}

TEST_F(ProgressLines, SilentWritesNothing) {
  Capture out;
  mproc::Pool pool(1);
  pool.map(square, numbers(100), 1,
           mproc::Progress{.display = mproc::Progress::Display::silent, .fd = out.fd(), .line_interval = 1ms});
  EXPECT_EQ(out.text(), "");
}

TEST_F(ProgressLines, TwoBarsInFlightShareTheBlock) {
  Capture out;
  mproc::Pool pool(2);
  auto bar = [&](std::string label) {
    return mproc::Progress{.display = mproc::Progress::Display::bar, .label = std::move(label), .fd = out.fd(),
                           .bar_interval = 0ms};
  };
  auto first = pool.imap(square, numbers(40), 2, bar("first"));
  auto second = pool.imap(square, numbers(30), 3, bar("second"));
  int sum = 0;
  for (int r : first) sum += r;
  for (int r : second) sum += r;
  EXPECT_GT(sum, 0);
  ASSERT_TRUE(out.wait_for("30/30")) << out.text();
  ASSERT_TRUE(out.wait_for("40/40")) << out.text();
  const std::string& text = out.text();
  // Both bars are redrawn in place, each on its own line of one block.
  EXPECT_NE(text.find("\x1b[2K"), std::string::npos);
  EXPECT_NE(text.find("\x1b[2F"), std::string::npos) << "the cursor goes back over both lines";
  EXPECT_NE(text.find("first 100%|"), std::string::npos) << text;
  EXPECT_NE(text.find("second 100%|"), std::string::npos) << text;
}

// ---- memory caps ---------------------------------------------------------------------------

class MemoryCaps : public ::testing::TestWithParam<int> {};

std::uint64_t resident_now() {
  std::uint64_t bytes = 0;
  mproc::sys::current_rss_bytes(bytes);
  return bytes;
}

// A sanitizer build maps terabytes of shadow memory as private data, which a data-size limit
// counts: the hard limit cannot work there (Pool refuses it), so its tests skip.
bool data_size_is_reasonable() {
  std::uint64_t data = 0;
  return mproc::sys::data_size_bytes(data) == 0 && data < (std::uint64_t{4} << 30);
}

TEST_P(MemoryCaps, ALeakingWorkerIsRecycledAtTheSoftLimit) {
  const int workers = GetParam();
  const std::uint64_t limit = resident_now() + (std::uint64_t{64} << 20);
  mproc::Pool pool({.processes = workers, .max_memory_per_child = limit});
  std::vector<mproc::AsyncResult<int>> results;
  for (int i = 0; i < 4 * workers; ++i) results.push_back(pool.apply_async(leak_mib, 48));
  for (auto& result : results) EXPECT_GT(result.get(), 0);  // every leaking task completes
  EXPECT_EQ(pool.map(square, numbers(20), 1).back(), 361);   // and the pool serves on
  pool.close();
  pool.join();
  auto insights = pool.insights();
  // No worker can hold two leaks under the limit: at least one in two tasks recycled one.
  EXPECT_GE(insights.exits[mproc::WorkerExit::recycled], static_cast<std::uint64_t>(workers)) << insights;
  EXPECT_EQ(insights.exits[mproc::WorkerExit::crashed], 0u) << insights;
  EXPECT_NE(insights.memory_limits.find("soft"), std::string::npos);
}

TEST_P(MemoryCaps, ARunawayAllocationStopsAtTheHardLimit) {
  if (!data_size_is_reasonable()) GTEST_SKIP() << "this build reserves more private memory than any limit allows";
  const int workers = GetParam();
  std::uint64_t data = 0;
  ASSERT_EQ(mproc::sys::data_size_bytes(data), 0);
  const std::uint64_t limit = data + (std::uint64_t{256} << 20);
  mproc::Pool pool(
      {.processes = workers, .memory_limit = limit, .memory_limit_backend = mproc::MemoryLimitBackend::rlimit});
  auto ordinary = pool.map_async(square, numbers(200), 1);
  try {
    pool.apply(runaway, 0);
    ADD_FAILURE() << "the runaway allocation was not stopped";
  } catch (const mproc::MemoryLimitError& error) {
    EXPECT_EQ(error.limit(), limit);
    EXPECT_NE(std::string(error.what()).find("memory limit"), std::string::npos) << error.what();
  }
  EXPECT_EQ(ordinary.get().back(), 199 * 199);  // nothing else was lost
  EXPECT_EQ(pool.apply(square, 12), 144);       // and the pool serves on
  pool.close();
  pool.join();
  auto insights = pool.insights();
  EXPECT_EQ(insights.exits[mproc::WorkerExit::memory_limit], 1u) << insights;
  EXPECT_NE(insights.memory_limits.find("RLIMIT_DATA"), std::string::npos);
}

TEST_P(MemoryCaps, AWorkerThatDiesOfItsAllocationFailureReportsTheLimit) {
  if (!data_size_is_reasonable()) GTEST_SKIP() << "this build reserves more private memory than any limit allows";
  std::uint64_t data = 0;
  ASSERT_EQ(mproc::sys::data_size_bytes(data), 0);
  mproc::Pool pool({.processes = GetParam(), .memory_limit = data + (std::uint64_t{128} << 20),
                     .memory_limit_backend = mproc::MemoryLimitBackend::rlimit});
  EXPECT_THROW(pool.apply(die_allocating, 0), mproc::MemoryLimitError);
  EXPECT_EQ(pool.apply(square, 5), 25);
}

INSTANTIATE_TEST_SUITE_P(Workers, MemoryCaps, ::testing::Values(1, 2, 4));

TEST(MemoryCapOptions, AreChecked) {
  EXPECT_THROW(mproc::Pool({.memory_limit = 0}), std::invalid_argument);
  EXPECT_THROW(mproc::Pool({.max_memory_per_child = 0}), std::invalid_argument);
  EXPECT_THROW(mproc::Pool({.memory_limit = 1 << 20}), std::invalid_argument);
  EXPECT_THROW(mproc::ProcessPoolExecutor({.memory_limit = 0}), std::invalid_argument);
}

}  // namespace
