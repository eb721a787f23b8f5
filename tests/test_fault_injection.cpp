// Fault injection: the library under resource limits. Each case runs in a helper child (this
// binary re-run), which imposes one limit on itself — descriptors (RLIMIT_NOFILE), processes
// (RLIMIT_NPROC), address space (RLIMIT_AS), a 1 MiB /dev/shm (a tmpfs mounted in a private
// mount namespace), a memory cgroup's limit — then calls Process start, Pipe, Queue,
// SharedMemory, Lock and Value. Every call must either work or throw OSError with the errno
// of the exhausted resource: never a crash, a hang or a kill. Then the limit is lifted and the
// library must work again in the same process. Pools and executors under limits (worker
// replacement) are tested with the engine.
//
// A helper exits 0 when every check held, 1 when one failed (its output says which), and
// kSkip with a reason when this machine cannot impose its limit (not root, no cgroup).
#include <mproc/mproc.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <fcntl.h>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <optional>
#include <sstream>
#include <string>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include <gtest/gtest.h>

#include "support/leak_check.hpp"
#include "sys/memory_cgroup.hpp"

namespace {

constexpr int kSkip = 77;
int g_failures = 0;

void fail(const std::string& what) {
  std::printf("FAILED: %s\n", what.c_str());
  std::fflush(stdout);
  ++g_failures;
}

// Runs `call`; what it threw, if anything. Looks at nothing (see the descriptors helper).
std::exception_ptr attempt(const std::function<void()>& call) {
  try {
    call();
    return nullptr;
  } catch (...) {
    return std::current_exception();
  }
}

// What `attempt` returned must be success or OSError with one of `errnos`. Returns the errno
// (0 for success, -1 for anything else, which is a failure).
int judge(const char* what, std::initializer_list<int> errnos, std::exception_ptr thrown) {
  try {
    if (thrown) std::rethrow_exception(thrown);
    std::printf("%s: ok\n", what);
    return 0;
  } catch (const mproc::OSError& error) {
    std::printf("%s: OSError(%s): %s\n", what, std::strerror(error.errno_value()), error.what());
    if (std::find(errnos.begin(), errnos.end(), error.errno_value()) == errnos.end())
      fail(std::string(what) + ": unexpected errno");
    return error.errno_value();
  } catch (const std::exception& error) {
    fail(std::string(what) + ": not an OSError: " + error.what());
    return -1;
  }
}

int typed_error_or_success(const char* what, std::initializer_list<int> errnos, const std::function<void()>& call) {
  return judge(what, errnos, attempt(call));
}

// As above, but the call must fail.
void expect_failure(const char* what, std::initializer_list<int> errnos, std::exception_ptr thrown) {
  if (judge(what, errnos, thrown) == 0) fail(std::string(what) + ": succeeded under the limit");
}
void expect_os_error(const char* what, std::initializer_list<int> errnos, const std::function<void()>& call) {
  expect_failure(what, errnos, attempt(call));
}

// The library after a limit is lifted: each object made and used once.
void expect_usable(const char* when) {
  const std::string prefix = std::string("after ") + when + ": ";
  try {
    auto [ours, theirs] = mproc::Pipe();
    mproc::Queue<std::vector<char>> queue;
    mproc::Value<int> value(0);
    mproc::Lock lock;
    mproc::Process child([&] {
      std::lock_guard guard(lock);
      value.value() = 42;
      theirs.send(7);
      queue.put(std::vector<char>(std::size_t{2} << 20, 'x'));
    });
    child.start();
    if (ours.recv<int>() != 7) fail(prefix + "pipe");
    if (queue.get().size() != (std::size_t{2} << 20)) fail(prefix + "queue");
    child.join();
    if (child.exitcode() != 0) fail(prefix + "process exit code");
    std::lock_guard guard(lock);
    if (value.value() != 42) fail(prefix + "value");
    mproc::SharedMemory segment(std::nullopt, true, std::size_t{1} << 20);
    segment.buf()[0] = std::byte{1};
    segment.close();
    segment.unlink();
  } catch (const std::exception& error) {
    fail(prefix + error.what());
  }
}

int finish() {
  std::printf("%d failure(s)\n", g_failures);
  return g_failures == 0 ? 0 : 1;
}

int skip(const std::string& reason) {
  std::printf("%s\n", reason.c_str());
  return kSkip;
}

bool set_soft_limit(int resource, rlim_t value) {
  rlimit limit{};
  if (::getrlimit(resource, &limit) != 0) return false;
  limit.rlim_cur = value;
  return ::setrlimit(resource, &limit) == 0;
}

// --- descriptors ------------------------------------------------------------------------------

// Runs `call` with every descriptor the limit allows in use but `spare`, and gives them back
// before its outcome is examined (a report needs descriptors of its own).
//
// Why spares, and why objects are held outside the calls: UBSan's vptr check probes the
// vtable's memory by writing it into a pipe (sanitizer_common's IsAccessibleMemoryRange), so
// with no descriptor left every virtual call — make_shared's control block, a destructor's
// release — is reported as an object with an invalid vptr. It is the probe that fails, not the
// object, and the report cannot be suppressed (the type is unknown then). So the calls that
// must fail for want of a descriptor run with none to spare and make no shared_ptr there; the
// calls that need no descriptor run with two spare, which they do not use either.
std::exception_ptr with_descriptors_exhausted(const std::function<void()>& call, int spare = 0) {
  std::vector<int> fillers;
  for (int fd; (fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) fillers.push_back(fd);
  const bool exhausted = errno == EMFILE;
  for (; spare > 0 && !fillers.empty(); --spare) {
    ::close(fillers.back());
    fillers.pop_back();
  }
  std::exception_ptr thrown = exhausted ? attempt(call) : nullptr;
  for (int fd : fillers) ::close(fd);
  if (!exhausted) fail("could not exhaust descriptors");
  return thrown;
}

MPROC_TEST_HELPER(descriptors) {
  rlimit original{};
  ::getrlimit(RLIMIT_NOFILE, &original);
  if (!set_soft_limit(RLIMIT_NOFILE, 64)) return skip("setrlimit(RLIMIT_NOFILE) refused");
  expect_failure("Pipe", {EMFILE}, with_descriptors_exhausted([] { mproc::Pipe(); }));
  std::optional<mproc::Process> child;
  child.emplace([] {});
  expect_failure("Process::start", {EMFILE}, with_descriptors_exhausted([&] { child->start(); }));
  // SharedMemory's constructor begins with a make_shared: two spare, for UBSan's probe (see
  // above). It needs one descriptor at a time, so it may well work with them.
  judge("SharedMemory(create) with two descriptors", {EMFILE},
        with_descriptors_exhausted([] { mproc::SharedMemory(std::nullopt, true, 4096); }, 2));
  // A Queue holds one descriptor (the memfd of its memory), a Value two (its own and its
  // lock's): with that many and UBSan's two to spare they must work; with fewer, EMFILE.
  std::optional<mproc::Queue<int>> queue;
  judge("Queue", {EMFILE}, with_descriptors_exhausted([&] {
          queue.emplace();
          queue->put(1);
          if (queue->get() != 1) throw std::runtime_error("Queue round trip");
        }, 3));
  std::optional<mproc::Value<int>> value;
  judge("Lock and Value", {EMFILE}, with_descriptors_exhausted([&] {
          value.emplace(1);
          value->get_lock().acquire();
          value->get_lock().release();
        }, 4));
  ::setrlimit(RLIMIT_NOFILE, &original);
  expect_usable("RLIMIT_NOFILE");
  return finish();
}

// --- processes --------------------------------------------------------------------------------

MPROC_TEST_HELPER(processes) {
  // Root is exempt from RLIMIT_NPROC: become nobody (which drops every capability).
  if (::geteuid() != 0) return skip("RLIMIT_NPROC needs root here, to become a user with no other process");
  if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0)
    return skip(std::string("cannot become nobody: ") + std::strerror(errno));
  // This helper is nobody's only process: a limit of 1 leaves no room for a child.
  if (!set_soft_limit(RLIMIT_NPROC, 1)) return skip("setrlimit(RLIMIT_NPROC) refused");
  const int started = typed_error_or_success("Process::start", {EAGAIN}, [] {
    mproc::Process child([] {});
    child.start();
    child.join();
  });
  if (started == 0) return skip("RLIMIT_NPROC is not enforced here");
  // A tracked segment starts the resource tracker, a process.
  expect_os_error("SharedMemory(create) with its tracker", {EAGAIN}, [] {
    mproc::SharedMemory(std::nullopt, true, 4096);
  });
  typed_error_or_success("Queue, Lock, Value, Pipe", {}, [] {
    mproc::Queue<int> queue;
    queue.put(1);
    mproc::Value<int> value(queue.get());
    std::lock_guard guard(value.get_lock());
    auto [a, b] = mproc::Pipe();
    a.send(1);
    if (b.recv<int>() != 1) fail("Pipe round trip");
  });
  if (!set_soft_limit(RLIMIT_NPROC, RLIM_INFINITY)) {
    rlimit limit{};
    ::getrlimit(RLIMIT_NPROC, &limit);
    set_soft_limit(RLIMIT_NPROC, limit.rlim_max);
  }
  expect_usable("RLIMIT_NPROC");
  return finish();
}

// --- address space ----------------------------------------------------------------------------

std::size_t address_space_in_use() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmSize:", 0) == 0) return std::stoull(line.substr(7)) * 1024;
  return 0;
}

MPROC_TEST_HELPER(address_space) {
  const std::size_t in_use = address_space_in_use();
  if (in_use == 0) return skip("no VmSize in /proc/self/status");
  // Room for small allocations (an exception, a Lock's page), none for big ones.
  if (!set_soft_limit(RLIMIT_AS, in_use + (std::size_t{256} << 20))) return skip("setrlimit(RLIMIT_AS) refused");
  expect_os_error("Queue (reserves 64 GiB of address space)", {ENOMEM}, [] { mproc::Queue<int> queue; });
  expect_os_error("Array of 1 GiB", {ENOMEM}, [] { mproc::Array<char> array(std::size_t{1} << 30); });
  expect_os_error("SharedMemory(create) of 1 GiB", {ENOMEM, ENOSPC}, [] {
    mproc::SharedMemory(std::nullopt, true, std::size_t{1} << 30);
  });
  typed_error_or_success("Lock, Value, Pipe, Process", {ENOMEM}, [] {
    mproc::Value<int> value(1);
    std::lock_guard guard(value.get_lock());
    auto [a, b] = mproc::Pipe();
    mproc::Process child([&] { a.send(1); });
    child.start();
    if (b.recv<int>() != 1) fail("Pipe round trip from a child");
    child.join();
  });
  if (!set_soft_limit(RLIMIT_AS, RLIM_INFINITY)) return skip("cannot lift RLIMIT_AS");
  expect_usable("RLIMIT_AS");
  return finish();
}

// --- a small /dev/shm -------------------------------------------------------------------------

MPROC_TEST_HELPER(small_dev_shm) {
  // A private mount namespace: the 1 MiB tmpfs covers /dev/shm for this helper only.
  if (::unshare(CLONE_NEWNS) != 0) return skip(std::string("unshare(CLONE_NEWNS): ") + std::strerror(errno));
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    return skip(std::string("making mounts private: ") + std::strerror(errno));
  if (::mount("mproc-test", "/dev/shm", "tmpfs", 0, "size=1m") != 0)
    return skip(std::string("mounting a tmpfs on /dev/shm: ") + std::strerror(errno));
  expect_os_error("SharedMemory(create) of 4 MiB", {ENOSPC}, [] {
    mproc::SharedMemory(std::nullopt, true, std::size_t{4} << 20);
  });
  {
    mproc::SharedMemory half(std::nullopt, true, std::size_t{512} << 10);
    expect_os_error("SharedMemory(create) past what is left", {ENOSPC}, [] {
      mproc::SharedMemory(std::nullopt, true, std::size_t{768} << 10);
    });
    half.close();
    half.unlink();
  }
  // Queues, locks and values do not live in /dev/shm.
  typed_error_or_success("Queue, Lock, Value", {}, [] {
    mproc::Queue<std::vector<char>> queue;
    queue.put(std::vector<char>(std::size_t{4} << 20, 'q'));
    mproc::Value<std::size_t> value(queue.get().size());
    std::lock_guard guard(value.get_lock());
  });
  if (::umount2("/dev/shm", MNT_DETACH) != 0) return skip("cannot unmount the small /dev/shm");
  expect_usable("a full /dev/shm");
  return finish();
}

// --- a memory cgroup's limit ------------------------------------------------------------------

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream file(path);
  file << text;
  file.flush();
  return static_cast<bool>(file);
}

// The argument: "<the new cgroup's directory>|<the cgroup to return to>".
MPROC_TEST_HELPER(memory_cgroup) {
  // Unbuffered: if the OOM killer strikes, what was printed before it still arrives.
  std::setvbuf(stdout, nullptr, _IONBF, 0);
  const std::string limited = arg.substr(0, arg.find('|'));
  const std::string home = arg.substr(arg.find('|') + 1);
  if (!write_file(limited + "/cgroup.procs", std::to_string(::getpid()))) return skip("cannot join the cgroup");
  const std::uint64_t headroom = mproc::sys::memory_cgroup_headroom();
  std::printf("headroom in the cgroup: %llu KiB\n", static_cast<unsigned long long>(headroom >> 10));
  if (headroom == mproc::sys::kNoMemoryLimit) fail("the cgroup's limit is not seen");
  {
    // A trivially copyable item of 1 MiB: put copies it straight into the queue and get back
    // onto the stack, so only the queue's memory grows. (A heap copy per item would meet the
    // limit first under a sanitizer, whose allocator keeps freed blocks in quarantine.)
    struct Item {
      char bytes[std::size_t{1} << 20];
    };
    static Item value;
    std::memset(value.bytes, 'm', sizeof value.bytes);
    mproc::Queue<Item> queue;
    std::size_t put = 0;
    std::exception_ptr thrown;
    for (; put < 1024 && !thrown; ++put) thrown = attempt([&] { queue.put(value); });
    if (thrown) --put;
    const int error = judge("Queue.put of 1 MiB, until it refuses", {ENOMEM}, thrown);
    std::printf("put %zu MiB before OSError\n", put);
    if (error != ENOMEM) fail("Queue.put never refused under the cgroup's limit");
    if (put < 8) fail("Queue.put refused far below the limit");
    // The queue stays consistent: everything put comes out, and a put fits again.
    for (std::size_t i = 0; i < put; ++i)
      if (std::memcmp(queue.get_nowait().bytes, value.bytes, sizeof value.bytes) != 0) fail("an item came back damaged");
    typed_error_or_success("Queue.put after draining", {}, [&] { queue.put(value); });
  }
  expect_os_error("SharedMemory(create) over the limit", {ENOMEM}, [] {
    mproc::SharedMemory(std::nullopt, true, std::size_t{64} << 20);
  });
  if (!write_file(home + "/cgroup.procs", std::to_string(::getpid()))) fail("cannot leave the cgroup");
  expect_usable("leaving the memory cgroup");
  return finish();
}

// --- the tests --------------------------------------------------------------------------------

class FaultInjection : public ::testing::TestWithParam<const char*> {};

TEST_P(FaultInjection, TypedErrorsUnderTheLimitAndAUsableLibraryAfter) {
  const auto result = mproc::testing::run_helper(GetParam());
  if (result.exitcode == kSkip) GTEST_SKIP() << result.output;
  EXPECT_EQ(result.exitcode, 0) << "(a negative code is the signal that killed it)\n" << result.output;
}

INSTANTIATE_TEST_SUITE_P(Limits, FaultInjection,
                         ::testing::Values("descriptors", "processes", "address_space", "small_dev_shm"),
                         [](const ::testing::TestParamInfo<const char*>& param) { return std::string(param.param); });

// The limit containers run under: without mproc's own check, committing the queue's shared pages
// over it gets the process OOM-killed (the kernel returns no error). A cgroup of 32 MiB is made
// beside this process's own and the helper moves into it.
TEST(FaultInjectionCgroup, QueuePutAndSharedMemoryRefuseUnderAMemoryLimit) {
  char dir[4096], root[4096];
  bool v2 = false;
  if (int rc = mproc::sys::memory_cgroup_dir(dir, sizeof dir, root, sizeof root, v2); rc < 0)
    GTEST_SKIP() << "no memory cgroup visible: " << std::strerror(-rc);
  const std::string home = dir;
  const std::string limited = home + "/mproc_fault_" + std::to_string(::getpid());
  if (::mkdir(limited.c_str(), 0755) != 0)
    GTEST_SKIP() << "cannot create a memory cgroup under " << home << ": " << std::strerror(errno);
  const bool limited_ok = write_file(limited + (v2 ? "/memory.max" : "/memory.limit_in_bytes"), std::to_string(32 << 20));
  if (v2) write_file(limited + "/memory.swap.max", "0");
  mproc::testing::HelperResult result{};
  if (limited_ok) result = mproc::testing::run_helper("memory_cgroup", limited + "|" + home);
  // The helper has left (or died): the empty cgroup can go. A killed one may take a moment to leave.
  mproc::testing::eventually([&] { return ::rmdir(limited.c_str()) == 0 || errno == ENOENT; });
  if (!limited_ok) GTEST_SKIP() << "cannot set a memory limit on " << limited;
  if (result.exitcode == kSkip) GTEST_SKIP() << result.output;
  EXPECT_EQ(result.exitcode, 0) << "(-9: OOM-killed)\n" << result.output;
}

}  // namespace
