// Shared memory: Value / Array / RawValue / RawArray (CPython's _TestValue, _TestArray) and
// SharedMemory (_TestSharedMemory), across processes; nothing may be left in /dev/shm,
// including after a process is killed.
#include <mproc/mproc.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <mutex>
#include <numeric>
#include <ranges>
#include <set>
#include <string>
#include <unistd.h>
#include <vector>

#include "support/leak_check.hpp"

using namespace std::chrono_literals;
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

// Fails a test that leaves anything new in /dev/shm (on top of the fd and zombie checks).
class SharedMemoryTest : public LeakCheckedTest {
 protected:
  void SetUp() override {
    LeakCheckedTest::SetUp();
    shm_before_ = dev_shm_entries();
  }
  void TearDown() override {
    auto after = dev_shm_entries();
    std::vector<std::string> leaked;
    std::ranges::set_difference(after, shm_before_, std::back_inserter(leaked));
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

TEST_F(SharedMemoryTest, KilledCreatorLeavesASegmentThatCanBeUnlinkedByName) {
  // A SIGKILLed creator cannot unlink (no destructor runs); the test cleans up by name, and
  // the fixture checks that nothing is left.
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
  creator.kill();
  creator.join();
  mproc::SharedMemory left(name);
  EXPECT_EQ(left.buf()[0], std::byte{7});
  left.unlink();
  EXPECT_FALSE(in_dev_shm(name));
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
  EXPECT_EQ(dev_shm_entries(), before);
}

}  // namespace
