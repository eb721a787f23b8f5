// The machine's limits, measured in the same run as the mproc benchmarks so that each
// mproc figure can be read against what the hardware and kernel allow here:
//
//   BM_Limit_ForkExitWaitpid        fork(), the child _exit(0)s, the parent waitpid()s
//   BM_Limit_PipeRoundTrip          an int to a child and back through two pipe(2)s
//   BM_Limit_UnixSocketRoundTrip    the same through one AF_UNIX socketpair (what Pipe uses)
//   BM_Limit_FutexRoundTrip         a futex wait/wake ping-pong in shared memory
//   BM_Limit_Memcpy/<bytes>         memcpy bandwidth for a buffer of that size
//
// Nothing here uses mproc: these are the floors mproc is measured against. Children are
// started once per benchmark run (outside the timed loop) and serve every iteration.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstddef>
#include <cstring>
#include <fcntl.h>
#include <initializer_list>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace {

// Blocking I/O of exactly `n` bytes; false on end of file or error.
bool write_exactly(int fd, const void* data, std::size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t done = ::write(fd, p, n);
    if (done < 0 && errno == EINTR) continue;
    if (done <= 0) return false;
    p += done;
    n -= static_cast<std::size_t>(done);
  }
  return true;
}

bool read_exactly(int fd, void* data, std::size_t n) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    ssize_t done = ::read(fd, p, n);
    if (done < 0 && errno == EINTR) continue;
    if (done <= 0) return false;
    p += done;
    n -= static_cast<std::size_t>(done);
  }
  return true;
}

int wait_for(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

void BM_Limit_ForkExitWaitpid(benchmark::State& state) {
  for (auto _ : state) {
    pid_t pid = ::fork();
    if (pid == 0) ::_exit(0);
    if (pid < 0) {
      state.SkipWithError("fork failed");
      break;
    }
    wait_for(pid);
  }
}
BENCHMARK(BM_Limit_ForkExitWaitpid)->UseRealTime();

// Starts a child that echoes ints from `child_in` to `child_out` until end of file, after
// closing the descriptors in `child_closes` (our ends). Returns its pid, or -1.
pid_t start_echo_child(int child_in, int child_out, std::initializer_list<int> child_closes) {
  pid_t pid = ::fork();
  if (pid != 0) return pid;
  for (int fd : child_closes) ::close(fd);
  int value = 0;
  while (read_exactly(child_in, &value, sizeof value) && write_exactly(child_out, &value, sizeof value)) {
  }
  ::_exit(0);
}

// The timed loop: one int out through `out`, the same int back through `in`.
void echo_round_trips(benchmark::State& state, int out, int in) {
  int value = 0;
  for (auto _ : state) {
    int echoed = -1;
    if (!write_exactly(out, &value, sizeof value) || !read_exactly(in, &echoed, sizeof echoed) || echoed != value) {
      state.SkipWithError("echo failed");
      break;
    }
    ++value;
  }
}

void BM_Limit_PipeRoundTrip(benchmark::State& state) {
  int to_child[2];
  int to_parent[2];
  if (::pipe2(to_child, O_CLOEXEC) != 0 || ::pipe2(to_parent, O_CLOEXEC) != 0) {
    state.SkipWithError("pipe failed");
    return;
  }
  pid_t pid = start_echo_child(to_child[0], to_parent[1], {to_child[1], to_parent[0]});
  ::close(to_child[0]);
  ::close(to_parent[1]);
  if (pid < 0) state.SkipWithError("fork failed");
  else echo_round_trips(state, to_child[1], to_parent[0]);
  ::close(to_child[1]);  // end of file ends the child's loop
  ::close(to_parent[0]);
  if (pid > 0) wait_for(pid);
}
BENCHMARK(BM_Limit_PipeRoundTrip)->UseRealTime();

void BM_Limit_UnixSocketRoundTrip(benchmark::State& state) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    state.SkipWithError("socketpair failed");
    return;
  }
  pid_t pid = start_echo_child(pair[1], pair[1], {pair[0]});
  ::close(pair[1]);
  if (pid < 0) state.SkipWithError("fork failed");
  else echo_round_trips(state, pair[0], pair[0]);
  ::close(pair[0]);
  if (pid > 0) wait_for(pid);
}
BENCHMARK(BM_Limit_UnixSocketRoundTrip)->UseRealTime();

// Streams range(0)-byte writes over a socketpair to a child that reads each into one
// preallocated buffer: the transport's own ceiling for the bulk workloads (no framing,
// checksum or allocation). Socket buffers as mproc::Pipe sets them (4 MiB asked). As in
// bench_connection.cpp, the last iteration ends with a 1-byte sync the child echoes, so
// the time covers delivery.
void BM_Limit_UnixSocketStream(benchmark::State& state) {
  auto bytes = static_cast<std::size_t>(state.range(0));
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    state.SkipWithError("socketpair failed");
    return;
  }
  int buffer_size = 4 * 1024 * 1024;
  for (int fd : pair) {
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buffer_size, sizeof buffer_size);
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer_size, sizeof buffer_size);
  }
  std::vector<char> message(bytes + 1, 'm');
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(pair[0]);
    // A message is `bytes` bytes, then one byte: 'm' for more, 's' for a sync to echo.
    while (read_exactly(pair[1], message.data(), bytes + 1)) {
      if (message[bytes] == 's' && !write_exactly(pair[1], &message[bytes], 1)) break;
    }
    ::_exit(0);
  }
  ::close(pair[1]);
  if (pid < 0) {
    state.SkipWithError("fork failed");
    ::close(pair[0]);
    return;
  }
  benchmark::IterationCount sent = 0;
  for (auto _ : state) {
    bool last = ++sent == state.max_iterations;
    message[bytes] = last ? 's' : 'm';
    char echo = 0;
    if (!write_exactly(pair[0], message.data(), bytes + 1) || (last && !read_exactly(pair[0], &echo, 1))) {
      state.SkipWithError("stream failed");
      break;
    }
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
  ::close(pair[0]);
  wait_for(pid);
}
BENCHMARK(BM_Limit_UnixSocketStream)->Arg(1 << 20)->UseRealTime();

long futex(int* word, int op, int value) {
  return ::syscall(SYS_futex, word, op, value, nullptr, nullptr, 0);
}

// Ping-pong on one shared word: we set it to 1 and wake the child; the child waits for 1,
// sets it back to 0 and wakes us; -1 tells the child to leave. Both sides block in
// FUTEX_WAIT (no spinning), so each half is one futex wake-up of a sleeping process.
void BM_Limit_FutexRoundTrip(benchmark::State& state) {
  void* page = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) {
    state.SkipWithError("mmap failed");
    return;
  }
  int* word = static_cast<int*>(page);
  *word = 0;
  std::atomic_ref<int> shared(*word);
  pid_t pid = ::fork();
  if (pid < 0) {
    state.SkipWithError("fork failed");
    ::munmap(page, 4096);
    return;
  }
  if (pid == 0) {
    for (;;) {
      int seen = shared.load();
      if (seen == 0) {
        futex(word, FUTEX_WAIT, 0);
        continue;
      }
      if (seen < 0) ::_exit(0);
      shared.store(0);
      futex(word, FUTEX_WAKE, 1);
    }
  }
  for (auto _ : state) {
    shared.store(1);
    futex(word, FUTEX_WAKE, 1);
    while (shared.load() != 0) futex(word, FUTEX_WAIT, 1);
  }
  shared.store(-1);
  futex(word, FUTEX_WAKE, 1);
  wait_for(pid);
  ::munmap(page, 4096);
}
BENCHMARK(BM_Limit_FutexRoundTrip)->UseRealTime();

// One copy of `range(0)` bytes per iteration between two buffers allocated and touched
// beforehand. 1 MiB is the message size of the throughput workloads (cache-resident
// here); 64 MiB shows the DRAM bandwidth.
void BM_Limit_Memcpy(benchmark::State& state) {
  auto bytes = static_cast<std::size_t>(state.range(0));
  std::vector<char> from(bytes, 'a');
  std::vector<char> to(bytes, 'b');
  std::size_t i = 0;
  for (auto _ : state) {
    std::memcpy(to.data(), from.data(), bytes);
    benchmark::DoNotOptimize(to.data());
    benchmark::ClobberMemory();
    from[i++ % bytes] = to[bytes - 1];  // keep every copy observable
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_Limit_Memcpy)->Arg(1 << 20)->Arg(64 << 20);

}  // namespace

BENCHMARK_MAIN();
