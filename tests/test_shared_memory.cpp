// Shared memory: Value / Array / RawValue / RawArray (CPython's _TestValue, _TestArray) and
// SharedMemory (_TestSharedMemory), across processes; nothing may be left in /dev/shm,
// including after a process is killed.
#include <mproc/mproc.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <mutex>
#include <numeric>
#include <optional>
#include <poll.h>
#include <ranges>
#include <set>
#include <spawn.h>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "support/leak_check.hpp"

extern char** environ;

using namespace std::chrono_literals;
using mproc::testing::eventually;
using mproc::testing::LeakCheckedTest;

namespace {

#define CHILD_CHECK(condition)                                                              \
  do {                                                                                      \
    if (!(condition)) {                                                                     \
      std::fprintf(stderr, "child check failed at line %d: %s\n", __LINE__, #condition);    \
      std::fflush(stderr);                                                                  \
      ::_exit(1);                                                                           \
    }                                                                                       \
  } while (false)

std::set<std::string> dev_shm_entries() {
  std::set<std::string> names;
  if (DIR* dir = ::opendir("/dev/shm")) {
    while (dirent* entry = ::readdir(dir))
      if (std::strcmp(entry->d_name, ".") != 0 && std::strcmp(entry->d_name, "..") != 0) names.insert(entry->d_name);
    ::closedir(dir);
  }
  return names;
}

bool in_dev_shm(const std::string& name) { return dev_shm_entries().count(name) != 0; }

// The entries of /dev/shm that are not in `before` and stay. Under `ctest -j` other test
// processes create and remove segments of their own meanwhile: a new entry counts only if
// it is still there a few seconds later. (A test's own segments are gone when it checks:
// the tests that rely on a tracker wait for it.)
std::vector<std::string> lasting_new_entries(const std::set<std::string>& before) {
  std::vector<std::string> appeared;
  std::ranges::set_difference(dev_shm_entries(), before, std::back_inserter(appeared));
  if (!appeared.empty()) eventually([&] { return std::ranges::none_of(appeared, in_dev_shm); }, 5'000);
  std::erase_if(appeared, [](const std::string& name) { return !in_dev_shm(name); });
  return appeared;
}

// Fails a test that leaves anything new in /dev/shm (on top of the fd and zombie checks).
class SharedMemoryTest : public LeakCheckedTest {
 protected:
  void SetUp() override {
    LeakCheckedTest::SetUp();
    shm_before_ = dev_shm_entries();
  }
  void TearDown() override {
    auto leaked = lasting_new_entries(shm_before_);
    EXPECT_TRUE(leaked.empty()) << "left in /dev/shm: " << (leaked.empty() ? "" : leaked.front());
    LeakCheckedTest::TearDown();
  }

  // A name no other test run uses.
  static std::string unique_name(const char* tag) {
    return std::string("mproc_test_") + tag + "_" + std::to_string(::getpid());
  }

 private:
  std::set<std::string> shm_before_;
};

void run_child(const std::function<void()>& body) {
  mproc::Process child(body);
  child.start();
  child.join();
  EXPECT_EQ(child.exitcode(), 0);
}

// --- Value (_TestValue) ------------------------------------------------------------------

struct Point {
  double x;
  std::int32_t y;
};

TEST_F(SharedMemoryTest, ValuesOfSeveralTypesAreSharedWithChildren) {
  mproc::Value<int> i(25);
  mproc::Value<double> d(1.25);
  mproc::Value<char> c('x');
  mproc::Value<Point> p(Point{2.5, -7});
  mproc::Value<std::int64_t> zero;
  EXPECT_EQ(zero.value(), 0);
  run_child([&] {
    CHILD_CHECK(i.value() == 25 && d.value() == 1.25 && c.value() == 'x' && p.value().y == -7);
    i.value() = -i.value();
    d.value() = d.value() * 2;
    c.value() = 'y';
    p.value() = Point{0.5, 9};
  });
  EXPECT_EQ(i.value(), -25);
  EXPECT_EQ(d.value(), 2.5);
  EXPECT_EQ(c.value(), 'y');
  EXPECT_EQ(p.value().x, 0.5);
  EXPECT_EQ(p.value().y, 9);
}

TEST_F(SharedMemoryTest, ValueLockProtectsIncrementsFromSeveralProcesses) {
  mproc::Value<std::int64_t> counter(0);
  constexpr int kChildren = 3, kRounds = 10000;
  std::vector<mproc::Process> children;
  for (int n = 0; n < kChildren; ++n) {
    children.emplace_back([&] {
      for (int k = 0; k < kRounds; ++k) {
        std::lock_guard guard(counter.get_lock());
        counter.value() += 1;
      }
    });
    children.back().start();
  }
  for (int k = 0; k < kRounds; ++k) {
    std::lock_guard guard(counter);  // the Value is Lockable itself
    counter.value() += 1;
  }
  for (auto& child : children) {
    child.join();
    EXPECT_EQ(child.exitcode(), 0);
  }
  EXPECT_EQ(counter.value(), (kChildren + 1) * kRounds);
}

TEST_F(SharedMemoryTest, GetLockAndGetObj) {
  mproc::Value<int> v(1);
  // get_lock() is an RLock, the same one each time.
  EXPECT_EQ(v.get_lock(), v.get_lock());
  v.get_lock().acquire();
  EXPECT_TRUE(v.acquire());  // recursive
  v.release();
  v.release();
  // A lock given at construction is the one used (Python's lock=an_rlock).
  mproc::RLock shared_lock;
  mproc::Value<int> a(1, shared_lock);
  mproc::Array<int> b(4, shared_lock);
  EXPECT_EQ(a.get_lock(), shared_lock);
  EXPECT_EQ(b.get_lock(), shared_lock);
  // get_obj() is the raw object, the same memory.
  mproc::RawValue<int> raw = v.get_obj();
  raw.value() = 42;
  EXPECT_EQ(v.value(), 42);
  mproc::RawValue<int> copy = raw;
  EXPECT_EQ(copy, raw);
}

template <class T>
concept HasGetLock = requires(T t) { t.get_lock(); };
template <class T>
concept HasGetObj = requires(T t) { t.get_obj(); };

TEST_F(SharedMemoryTest, GetLockAndGetObjWithAPlainLockAsCPython) {
  // CPython's _TestValue.test_getobj_getlock: lock=True or None makes a new RLock, lock=a Lock
  // uses that Lock, lock=False is a raw value with neither get_lock() nor get_obj().
  mproc::Value<int> val1(5);
  mproc::Value<int> val2(5);
  EXPECT_NE(val1.get_lock(), val2.get_lock());
  mproc::Lock lock;
  mproc::Value val3(5, lock);  // deduced: Value<int, mproc::Lock>
  static_assert(std::same_as<decltype(val3), mproc::Value<int, mproc::Lock>>);
  static_assert(std::same_as<decltype(val3.get_lock()), mproc::Lock&>);
  EXPECT_EQ(val3.get_lock(), lock);
  EXPECT_EQ(val3.get_obj().value(), 5);
  static_assert(!HasGetLock<mproc::RawValue<int>> && !HasGetObj<mproc::RawValue<int>>);
  static_assert(HasGetLock<mproc::Value<int>> && HasGetObj<mproc::Value<int>>);
  // The Value's lock is the plain Lock: not recursive.
  {
    std::lock_guard guard(val3);
    EXPECT_TRUE(lock.locked());
    EXPECT_FALSE(lock.acquire(false));
    EXPECT_THROW(val3.load(), mproc::Error);  // would wait for itself forever (Python deadlocks)
  }
  EXPECT_FALSE(lock.locked());

  // _TestArray.test_getobj_getlock_obj: the same for Array, also from a list.
  mproc::Array<int> arr1(10);
  mproc::Array<int, mproc::Lock> arr3(10, lock);
  EXPECT_EQ(arr3.get_lock(), lock);
  EXPECT_NE(arr1.get_lock(), mproc::Array<int>(10).get_lock());
  mproc::Array listed({1, 2, 3}, lock);  // deduced: Array<int, mproc::Lock>
  static_assert(std::same_as<decltype(listed), mproc::Array<int, mproc::Lock>>);
  EXPECT_EQ(listed.get_lock(), lock);
  EXPECT_EQ(listed.size(), 3u);
  mproc::RLock rlock;
  mproc::Array<long, mproc::RLock> from_list({4, 5}, rlock);
  EXPECT_EQ(from_list.get_lock(), rlock);
  static_assert(!HasGetLock<mproc::RawArray<int>> && !HasGetObj<mproc::RawArray<int>>);
}

TEST_F(SharedMemoryTest, LoadAndStoreTakeTheLockAcrossProcesses) {
  // Python's v.value and a[i] take the lock for each read and write: load()/store().
  mproc::Lock lock;  // one Lock for both, as Python's lock= allows
  mproc::Value<std::int64_t, mproc::Lock> counter(0, lock);
  mproc::Array<std::int32_t, mproc::Lock> slots(4, lock);
  std::vector<mproc::Process> children;
  for (int n = 0; n < 3; ++n) {
    children.emplace_back([&, n] {
      for (int k = 0; k < 2000; ++k) {
        std::lock_guard guard(counter);  // a read-modify-write needs the lock around both
        counter.value() = counter.value() + 1;
      }
      slots.store(static_cast<std::size_t>(n), n + 100);
      CHILD_CHECK(slots.load(static_cast<std::size_t>(n)) == n + 100);
    });
    children.back().start();
  }
  for (auto& child : children) {
    ASSERT_TRUE(child.join(30s));
    EXPECT_EQ(child.exitcode(), 0);
  }
  EXPECT_EQ(counter.load(), 6000);
  counter.store(-1);
  EXPECT_EQ(counter.value(), -1);
  EXPECT_EQ(slots.load(2), 102);
  EXPECT_EQ(slots.load(3), 0);
  EXPECT_THROW(slots.load(4), std::out_of_range);
  EXPECT_THROW(slots.store(4, 1), std::out_of_range);
  EXPECT_FALSE(lock.locked());
  {
    // store() waits for the lock another process holds.
    mproc::Event stored;
    std::unique_lock held(lock);
    mproc::Process writer([&] {
      slots.store(0, 1);
      stored.set();
    });
    writer.start();
    EXPECT_FALSE(stored.wait(100ms));  // a store that skipped the lock would be done by now
    held.unlock();
    EXPECT_TRUE(stored.wait(10s));
    ASSERT_TRUE(writer.join(30s));
    EXPECT_EQ(slots.load(0), 1);
  }
  // The default RLock nests: load() inside a held lock is fine.
  mproc::Value<double> d(0.5);
  std::lock_guard guard(d);
  d.store(d.load() * 3);
  EXPECT_EQ(d.load(), 1.5);
}

TEST_F(SharedMemoryTest, RawValueHasNoLockAndIsShared) {
  mproc::RawValue<std::uint16_t> raw(7);
  run_child([&] { raw.value() = 65535; });
  EXPECT_EQ(raw.value(), 65535);
}

// --- Array (_TestArray) ------------------------------------------------------------------

static_assert(std::ranges::contiguous_range<mproc::Array<int>>);
static_assert(std::ranges::contiguous_range<mproc::RawArray<double>>);
static_assert(std::ranges::sized_range<mproc::Array<int>>);

TEST_F(SharedMemoryTest, ArrayIsSharedWithChildren) {
  std::vector<int> seq = {681, -35, 361, 9, 0, 17};
  mproc::Array<int> array(seq);
  ASSERT_EQ(array.size(), seq.size());
  EXPECT_TRUE(std::ranges::equal(array, seq));
  run_child([&] {
    std::lock_guard guard(array);
    for (std::size_t i = 1; i < array.size(); ++i) array[i] += array[i - 1];  // prefix sums
  });
  std::partial_sum(seq.begin(), seq.end(), seq.begin());
  EXPECT_TRUE(std::ranges::equal(array, seq));
  EXPECT_EQ(array.at(1), seq[1]);
  EXPECT_THROW(array.at(6), std::out_of_range);
}

TEST_F(SharedMemoryTest, ArrayFromSizeIsZeroed) {
  mproc::Array<double> array(1000);
  EXPECT_EQ(array.size(), 1000u);
  EXPECT_TRUE(std::ranges::all_of(array, [](double x) { return x == 0.0; }));
  mproc::Array<long> listed{1, 2, 3};
  EXPECT_EQ(listed.size(), 3u);
  EXPECT_EQ(listed[2], 3);
  mproc::Array<int> from_view(std::views::iota(0, 5));
  EXPECT_EQ(from_view[4], 4);
  mproc::RawArray<int> empty(std::size_t{0});
  EXPECT_TRUE(empty.empty());
  EXPECT_EQ(empty.begin(), empty.end());
}

TEST_F(SharedMemoryTest, RawArrayAndSeveralWriters) {
  mproc::RawArray<std::int32_t> slots(4);
  std::vector<mproc::Process> children;
  for (int n = 0; n < 4; ++n) {
    children.emplace_back([&, n] { slots[static_cast<std::size_t>(n)] = n * 10 + 1; });
    children.back().start();
  }
  for (auto& child : children) child.join();
  EXPECT_EQ(std::vector<std::int32_t>(slots.begin(), slots.end()), (std::vector<std::int32_t>{1, 11, 21, 31}));
  mproc::Array<std::int32_t> locked(2);
  mproc::RawArray<std::int32_t> raw = locked.get_obj();
  raw[1] = 5;
  EXPECT_EQ(locked[1], 5);
}

// --- SharedMemory (_TestSharedMemory) ----------------------------------------------------

TEST_F(SharedMemoryTest, SharedMemoryBasics) {
  const std::string name = unique_name("basics");
  mproc::SharedMemory block(name, true, 512);
  EXPECT_EQ(block.name(), name);
  EXPECT_EQ(block.size(), 512u);
  EXPECT_EQ(block.buf().size(), 512u);
  EXPECT_TRUE(in_dev_shm(name));
  EXPECT_TRUE(std::ranges::all_of(block.buf(), [](std::byte b) { return b == std::byte{0}; }));
  std::memcpy(block.buf().data(), "howdy", 5);

  // Attach by name (with or without the leading slash): the same bytes, both ways.
  mproc::SharedMemory also(name);
  EXPECT_EQ(also.size(), 512u);
  EXPECT_EQ(std::memcmp(also.buf().data(), "howdy", 5), 0);
  also.buf()[0] = std::byte{'H'};
  EXPECT_EQ(block.buf()[0], std::byte{'H'});
  mproc::SharedMemory slashed("/" + name, false, 12345);  // size ignored when attaching
  EXPECT_EQ(slashed.size(), 512u);

  // Creating an existing name: EEXIST.
  try {
    mproc::SharedMemory clash(name, true, 512);
    ADD_FAILURE() << "created an existing segment";
  } catch (const mproc::OSError& error) {
    EXPECT_EQ(error.errno_value(), EEXIST);
  }
  also.close();
  also.close();  // idempotent
  EXPECT_THROW(also.buf(), mproc::Error);
  block.unlink();
  EXPECT_FALSE(in_dev_shm(name));
  EXPECT_EQ(slashed.buf()[0], std::byte{'H'});  // mappings outlive the name
  try {
    block.unlink();
    ADD_FAILURE() << "unlinked twice";
  } catch (const mproc::OSError& error) {
    EXPECT_EQ(error.errno_value(), ENOENT);
  }
}

TEST_F(SharedMemoryTest, SharedMemoryArgumentErrors) {
  try {
    mproc::SharedMemory missing(unique_name("missing"));
    ADD_FAILURE() << "attached a missing segment";
  } catch (const mproc::OSError& error) {
    EXPECT_EQ(error.errno_value(), ENOENT);
  }
  EXPECT_THROW(mproc::SharedMemory(unique_name("zero"), true, 0), std::invalid_argument);
  EXPECT_THROW(mproc::SharedMemory(std::nullopt, false), std::invalid_argument);
  EXPECT_THROW(mproc::SharedMemory("a/b", true, 10), std::invalid_argument);
  EXPECT_THROW(mproc::SharedMemory("", true, 10), std::invalid_argument);
  EXPECT_THROW(mproc::SharedMemory(std::string(300, 'x'), true, 10), std::invalid_argument);
}

TEST_F(SharedMemoryTest, NameWithEmbeddedNullIsRefusedAsCPython) {
  // CPython's test_shared_memory_name_with_embedded_null: ValueError, here
  // std::invalid_argument — never a segment of the name cut at the null.
  const std::string name = unique_name("null");
  mproc::SharedMemory block(name, true, 512);
  EXPECT_THROW(mproc::SharedMemory(name + std::string("\0a", 2), false, 512), std::invalid_argument);
  EXPECT_THROW(mproc::SharedMemory(name + std::string("\0a", 2), true, 512), std::invalid_argument);
  EXPECT_THROW(mproc::SharedMemory(std::string("\0", 1), true, 512), std::invalid_argument);
}

TEST_F(SharedMemoryTest, CreatorRemovesOnlyTheSegmentItCreated) {
  // Someone unlinks the creator's name and makes a new segment under it: the creator's
  // destructor leaves the newcomer alone.
  const std::string name = unique_name("newcomer");
  std::optional<mproc::SharedMemory> original(std::in_place, name, true, 64);
  original->buf()[0] = std::byte{1};
  mproc::SharedMemory(name).unlink();  // by another handle (could be another process)
  mproc::SharedMemory newcomer(name, true, 128, /*track=*/false);
  newcomer.buf()[0] = std::byte{2};
  original.reset();  // the creator's last handle
  ASSERT_TRUE(in_dev_shm(name));
  mproc::SharedMemory check(name);
  EXPECT_EQ(check.size(), 128u);
  EXPECT_EQ(check.buf()[0], std::byte{2});
  newcomer.unlink();
}

TEST_F(SharedMemoryTest, GeneratedNamesAreUniqueAndTrackedSegmentsGoWithTheirCreator) {
  std::string first_name;
  {
    mproc::SharedMemory first(std::nullopt, true, 100);
    mproc::SharedMemory second(std::nullopt, true, 100);
    first_name = first.name();
    EXPECT_NE(first.name(), second.name());
    EXPECT_EQ(first.name().rfind("psm_", 0), 0u);
    EXPECT_TRUE(in_dev_shm(first_name));
    mproc::SharedMemory copy = first;  // a handle: the copy shares the segment
    EXPECT_EQ(copy, first);
  }
  EXPECT_FALSE(in_dev_shm(first_name));  // the creator's last handle unlinked it
}

TEST_F(SharedMemoryTest, UntrackedSegmentPersistsUntilUnlinked) {
  const std::string name = unique_name("persist");
  { mproc::SharedMemory block(name, true, 64, /*track=*/false); }
  EXPECT_TRUE(in_dev_shm(name));
  mproc::SharedMemory again(name);
  EXPECT_EQ(again.size(), 64u);
  again.unlink();
  EXPECT_FALSE(in_dev_shm(name));
}

TEST_F(SharedMemoryTest, ForkedChildAttachesAndWritesWithoutUnlinking) {
  mproc::SharedMemory block(std::nullopt, true, 4096);
  run_child([&] {
    // The child's copy of the creator's handle never unlinks; an attach by name works too.
    mproc::SharedMemory attached(block.name());
    attached.buf()[10] = std::byte{42};
    block.buf()[11] = std::byte{43};
  });
  EXPECT_TRUE(in_dev_shm(block.name()));
  EXPECT_EQ(block.buf()[10], std::byte{42});
  EXPECT_EQ(block.buf()[11], std::byte{43});
}

// An unrelated process (this binary run again, not a fork) attaches by name.
MPROC_TEST_HELPER(attach_and_write) {
  mproc::SharedMemory block(arg);
  auto bytes = block.buf();
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::byte>(i % 251);
  std::printf("%zu", block.size());
  return 0;
}

TEST_F(SharedMemoryTest, UnrelatedProcessAttachesByName) {
  mproc::SharedMemory block(std::nullopt, true, 10000);
  auto result = mproc::testing::run_helper("attach_and_write", block.name());
  EXPECT_EQ(result.exitcode, 0);
  EXPECT_EQ(result.output, "10000");
  EXPECT_EQ(block.buf()[9999], static_cast<std::byte>(9999 % 251));
}

TEST_F(SharedMemoryTest, KilledCreatorsSegmentIsUnlinkedByItsTracker) {
  // A SIGKILLed creator runs no destructor: its resource tracker unlinks the segment.
  const std::string name = unique_name("killed");
  mproc::Event created;
  mproc::Process creator([&] {
    mproc::SharedMemory block(name, true, 4096);
    block.buf()[0] = std::byte{7};
    created.set();
    ::pause();
  });
  creator.start();
  ASSERT_TRUE(created.wait(10s));
  mproc::SharedMemory attached(name);  // an attacher's mapping outlives the name
  creator.kill();
  creator.join();
  EXPECT_TRUE(eventually([&] { return !in_dev_shm(name); }, 20'000)) << name << " was left behind";
  EXPECT_EQ(attached.buf()[0], std::byte{7});
}

// --- The resource tracker, with an unrelated creator (CPython's
// test_shared_memory_cleaned_after_process_termination) ------------------------------------

// A helper run by exec (not a fork of the test): creates a tracked segment (named `arg`, or
// generated when empty), prints its name, and waits to be killed.
MPROC_TEST_HELPER(create_and_wait) {
  mproc::SharedMemory block(arg.empty() ? std::nullopt : std::optional<std::string>(arg), true, 10);
  std::printf("%s\n", block.name().c_str());
  std::fflush(stdout);
  for (;;) ::pause();
}

// This test binary started again as a helper, its stdout and stderr on pipes; reaped by wait().
class Helper {
 public:
  Helper(const std::string& name, const std::string& arg) {
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
    std::vector<std::string> env_storage;
    for (char** e = environ; *e != nullptr; ++e) env_storage.emplace_back(*e);
    env_storage.push_back("MPROC_TEST_HELPER=" + name);
    env_storage.push_back("MPROC_TEST_HELPER_ARG=" + arg);
    std::vector<char*> env;
    for (auto& entry : env_storage) env.push_back(entry.data());
    env.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);
    char exe[] = "/proc/self/exe";
    char* argv[] = {exe, nullptr};
    int rc = ::posix_spawn(&pid_, exe, &actions, nullptr, argv, env.data());
    posix_spawn_file_actions_destroy(&actions);
    ::close(out[1]);
    ::close(err[1]);
    out_ = out[0];
    err_ = err[0];
    if (rc != 0) throw std::runtime_error("posix_spawn");
  }
  Helper(const Helper&) = delete;
  Helper& operator=(const Helper&) = delete;
  ~Helper() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      wait();
    }
    ::close(out_);
    ::close(err_);
  }

  // One line of its stdout (without the newline); empty at EOF or after the timeout.
  std::string read_line(std::chrono::milliseconds timeout) {
    std::string line;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    char c;
    while (wait_readable(out_, deadline) && ::read(out_, &c, 1) == 1 && c != '\n') line += c;
    return line;
  }
  // Its stderr up to EOF: the end of every process that holds it — the helper and its
  // resource tracker, which keeps stderr for its warning. Empty optional on timeout.
  std::optional<std::string> read_stderr_to_eof(std::chrono::milliseconds timeout) {
    std::string text;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    char buffer[1024];
    for (;;) {
      if (!wait_readable(err_, deadline)) return std::nullopt;
      ssize_t n = ::read(err_, buffer, sizeof buffer);
      if (n == 0) return text;
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return std::nullopt;
      text.append(buffer, static_cast<std::size_t>(n));
    }
  }
  void signal(int signum) { ::kill(pid_, signum); }
  int wait() {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  }

 private:
  static bool wait_readable(int fd, std::chrono::steady_clock::time_point deadline) {
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd entry{fd, POLLIN, 0};
      int rc = ::poll(&entry, 1, static_cast<int>(left.count()));
      if (rc > 0) return true;
      if (rc < 0 && errno != EINTR) return false;
    }
  }
  pid_t pid_ = 0;
  int out_ = -1;
  int err_ = -1;
};

class TrackerAfterSignal : public SharedMemoryTest, public ::testing::WithParamInterface<int> {};

TEST_P(TrackerAfterSignal, SegmentIsUnlinkedWhenItsCreatorIsKilled) {
  Helper helper("create_and_wait", "");
  const std::string name = helper.read_line(20s);
  ASSERT_FALSE(name.empty()) << "the helper printed no name";
  ASSERT_TRUE(in_dev_shm(name));
  // Killing a process abruptly must not leak its segment.
  helper.signal(GetParam());
  EXPECT_EQ(helper.wait(), -GetParam());
  // The tracker exits right after unlinking; its end closes the helper's stderr.
  auto err = helper.read_stderr_to_eof(20s);
  ASSERT_TRUE(err.has_value()) << "the tracker did not finish";
  EXPECT_TRUE(eventually([&] { return !in_dev_shm(name); }, 20'000)) << name << " was leaked";
  // The warning, as Python's tracker gives one about leaked shared_memory objects.
  EXPECT_NE(err->find("mproc resource_tracker: process"), std::string::npos) << *err;
  EXPECT_NE(err->find("/" + name), std::string::npos) << *err;
}

INSTANTIATE_TEST_SUITE_P(Signals, TrackerAfterSignal, ::testing::Values(SIGTERM, SIGKILL),
                         [](const auto& signal) { return std::string(signal.param == SIGTERM ? "SIGTERM" : "SIGKILL"); });

TEST_F(SharedMemoryTest, TrackerLeavesANewcomerUnderTheSameName) {
  const std::string name = unique_name("reused");
  Helper helper("create_and_wait", name);
  ASSERT_EQ(helper.read_line(20s), name);
  // The creator's segment is unlinked by someone else and the name reused, then the creator dies.
  mproc::SharedMemory(name).unlink();
  mproc::SharedMemory newcomer(name, true, 64, /*track=*/false);
  newcomer.buf()[0] = std::byte{9};
  helper.signal(SIGKILL);
  helper.wait();
  auto err = helper.read_stderr_to_eof(20s);
  ASSERT_TRUE(err.has_value()) << "the tracker did not finish";
  EXPECT_TRUE(in_dev_shm(name));  // not the tracker's to remove
  EXPECT_EQ(mproc::SharedMemory(name).buf()[0], std::byte{9});
  EXPECT_EQ(err->find("resource_tracker"), std::string::npos) << *err;  // nothing unlinked
  newcomer.unlink();
}

// Pids of the trackers watching `pid` (holding a pidfd of it).
std::vector<pid_t> trackers_watching(pid_t pid) {
  std::vector<pid_t> found;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return found;
  while (dirent* entry = ::readdir(proc)) {
    const std::string task = entry->d_name;
    if (task.empty() || !std::isdigit(static_cast<unsigned char>(task[0]))) continue;
    std::ifstream comm("/proc/" + task + "/comm");
    std::string command;
    if (!std::getline(comm, command) || command != "mproc-tracker") continue;
    DIR* fds = ::opendir(("/proc/" + task + "/fdinfo").c_str());
    if (fds == nullptr) continue;
    while (dirent* fd = ::readdir(fds)) {
      std::ifstream info("/proc/" + task + "/fdinfo/" + fd->d_name);
      for (std::string line; std::getline(info, line);)
        if (line == "Pid:\t" + std::to_string(pid)) found.push_back(std::stoi(task));
    }
    ::closedir(fds);
  }
  ::closedir(proc);
  return found;
}

std::vector<std::string> descriptors_of(pid_t pid) {
  std::vector<std::string> result;
  const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  if (DIR* fds = ::opendir(dir.c_str())) {
    while (dirent* fd = ::readdir(fds)) {
      if (fd->d_name[0] == '.') continue;
      char target[256] = {};
      ssize_t n = ::readlink((dir + "/" + fd->d_name).c_str(), target, sizeof target - 1);
      result.push_back(std::string(fd->d_name) + " -> " + (n > 0 ? std::string(target, static_cast<std::size_t>(n)) : "?"));
    }
    ::closedir(fds);
  }
  std::sort(result.begin(), result.end());
  return result;
}

TEST_F(SharedMemoryTest, TrackerIsNotOurChildAndHoldsNoneOfOurDescriptors) {
  mproc::SharedMemory block(std::nullopt, true, 64);  // this process's tracker runs from here on
  // Not our child (double fork): a wait for any child finds none, so the tracker never
  // blocks a wait(-1) and never becomes our zombie.
  siginfo_t info{};
  EXPECT_EQ(::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT), -1);
  EXPECT_EQ(errno, ECHILD);
  auto trackers = trackers_watching(::getpid());
  ASSERT_EQ(trackers.size(), 1u);
  // Its descriptors: /dev/null for stdin and stdout, our stderr, the pidfd — nothing else.
  char our_stderr[256] = {};
  ASSERT_GT(::readlink("/proc/self/fd/2", our_stderr, sizeof our_stderr - 1), 0);
  auto fds = descriptors_of(trackers[0]);
  ASSERT_EQ(fds.size(), 4u) << ::testing::PrintToString(fds);
  EXPECT_EQ(fds[0], "0 -> /dev/null");
  EXPECT_EQ(fds[1], "1 -> /dev/null");
  EXPECT_EQ(fds[2], std::string("2 -> ") + our_stderr);
  EXPECT_NE(fds[3].find("pidfd"), std::string::npos) << fds[3];

  // In a child (its own tracker starts at its first segment): a pipe the child made before
  // sees EOF as soon as the child closes its end — the tracker kept no copy.
  mproc::Process child([] {
    int ends[2];
    CHILD_CHECK(::pipe2(ends, O_CLOEXEC) == 0);
    mproc::SharedMemory own(std::nullopt, true, 64);
    ::close(ends[1]);
    pollfd entry{ends[0], POLLIN, 0};
    CHILD_CHECK(::poll(&entry, 1, 10'000) == 1);
    char c;
    CHILD_CHECK(::read(ends[0], &c, 1) == 0);
  });
  child.start();
  ASSERT_TRUE(child.join(30s));
  EXPECT_EQ(child.exitcode(), 0);
}

TEST_F(SharedMemoryTest, ChildCreatedSegmentsGoWithTheChildUnlessUntracked) {
  // The parent has a tracker already; a forked child that creates segments gets its own,
  // and never touches the parent's registrations.
  mproc::SharedMemory parents(std::nullopt, true, 64);
  mproc::RawArray<char> tracked_name(300), untracked_name(300);
  mproc::Process child([&] {
    mproc::SharedMemory tracked(std::nullopt, true, 64);
    mproc::SharedMemory untracked(std::nullopt, true, 64, /*track=*/false);
    untracked.buf()[0] = std::byte{5};
    std::strcpy(tracked_name.data(), tracked.name().c_str());
    std::strcpy(untracked_name.data(), untracked.name().c_str());
    ::_exit(0);  // no destructor runs: the tracked one is left to the child's tracker
  });
  child.start();
  ASSERT_TRUE(child.join(30s));
  ASSERT_EQ(child.exitcode(), 0);
  const std::string tracked = tracked_name.data(), untracked = untracked_name.data();
  ASSERT_FALSE(tracked.empty());
  // The tracked one goes with its creator (Python's tracker would keep it while the family
  // lives); the untracked one is the parent's to attach and unlink.
  EXPECT_TRUE(eventually([&] { return !in_dev_shm(tracked); }, 20'000)) << tracked << " was leaked";
  mproc::SharedMemory handed_over(untracked);
  EXPECT_EQ(handed_over.buf()[0], std::byte{5});
  handed_over.unlink();
  EXPECT_TRUE(in_dev_shm(parents.name()));  // the child's tracker left the parent's alone

  // A child destroying its copy of the parent's handle, or creating and destroying its own,
  // removes nothing of the parent's.
  mproc::Process tidy([&] {
    mproc::SharedMemory copy = parents;
    mproc::SharedMemory own(std::nullopt, true, 64);
  });
  tidy.start();
  ASSERT_TRUE(tidy.join(30s));
  EXPECT_EQ(tidy.exitcode(), 0);
  EXPECT_TRUE(in_dev_shm(parents.name()));
  EXPECT_EQ(parents.buf().size(), 64u);
}

TEST_F(SharedMemoryTest, AttacherKilledLeavesNothingBehind) {
  mproc::SharedMemory block(std::nullopt, true, 4096);
  mproc::Event attached;
  mproc::Process attacher([&] {
    mproc::SharedMemory view(block.name());
    view.buf()[0] = std::byte{1};
    attached.set();
    ::pause();
  });
  attacher.start();
  ASSERT_TRUE(attached.wait(10s));
  attacher.kill();
  attacher.join();
  EXPECT_EQ(block.buf()[0], std::byte{1});
  // The tracked block goes with this handle at the end of the test (fixture checks).
}

TEST_F(SharedMemoryTest, SynchronizationObjectsNeverAppearInDevShm) {
  auto before = dev_shm_entries();
  mproc::Lock lock;
  mproc::RLock rlock;
  mproc::Semaphore sem;
  mproc::Event event;
  mproc::Condition cond;
  mproc::Barrier barrier(2);
  mproc::Value<int> value;
  mproc::Array<int> array(100);
  EXPECT_TRUE(lasting_new_entries(before).empty());
}

}  // namespace
