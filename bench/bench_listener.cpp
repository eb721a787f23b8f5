// mproc::Listener / Client benchmarks, against raw sockets of the same kind measured here
// (BM_Limit_Raw*) and Python's multiprocessing.connection Listener/Client
// (bench/python/mp_listener.py).
//
// The parent listens; one forked child connects before the timed loop and serves every
// iteration until the parent closes its end. Arg 0: a Unix socket (abstract name); arg 1:
// TCP over IPv4 loopback. Listener and Client run without authkey: the handshake happens
// once per connection and is not what a round trip costs.
#include <benchmark/benchmark.h>

#include <arpa/inet.h>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <string>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <vector>

#include <mproc/mproc.hpp>

#include "bench_support.hpp"

namespace {

using Bytes = std::vector<std::byte>;
constexpr std::size_t kSync = 1;  // a 1-byte message asks the child to echo: the stream is drained

mproc::Address address_for(std::int64_t kind) {
  if (kind == 0) return mproc::Address::abstract("mproc-bench-" + std::to_string(::getpid()));
  return mproc::Address::tcp("127.0.0.1", 0);
}

// A child connected to `listener` running serve(connection) until the parent closes ours.
template <class Serve>
mproc::Process start_peer(const mproc::Address& address, Serve serve) {
  mproc::Process child([address, serve] {
    mproc::Connection c = mproc::Client(address);
    try {
      serve(c);
    } catch (const mproc::EOFError&) {
    }
  });
  child.start();
  return child;
}

void BM_Socket_RoundTripInt(benchmark::State& state) {
  mproc_bench::guarded(state, [&] {
    mproc::Listener listener(address_for(state.range(0)));
    auto child = start_peer(listener.address(), [](mproc::Connection& c) {
      for (;;) c.send(c.recv<std::int64_t>());
    });
    mproc::Connection c = listener.accept();
    std::int64_t i = 0;
    for (auto _ : state) {
      c.send(i);
      benchmark::DoNotOptimize(c.recv<std::int64_t>());
      ++i;
    }
    c.close();
    child.join();
  });
}
BENCHMARK(BM_Socket_RoundTripInt)->Arg(0)->Arg(1)->UseRealTime();

void BM_Socket_SendBytes(benchmark::State& state) {
  mproc_bench::guarded(state, [&] {
    mproc::Listener listener(address_for(1));
    auto child = start_peer(listener.address(), [](mproc::Connection& c) {
      for (;;) {
        Bytes message = c.recv_bytes();
        if (message.size() == kSync) c.send_bytes(message);
      }
    });
    mproc::Connection c = listener.accept();
    Bytes payload(static_cast<std::size_t>(state.range(0)), std::byte{1});
    Bytes sync(kSync, std::byte{2});
    for (auto _ : state) c.send_bytes(payload);
    c.send_bytes(sync);
    (void)c.recv_bytes();
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
    c.close();
    child.join();
  });
}
BENCHMARK(BM_Socket_SendBytes)->Arg(1 << 20)->UseRealTime();

// ---- the raw references ---------------------------------------------------------------

int raw_listen(std::int64_t kind, sockaddr_storage& where, socklen_t& length) {
  int fd = -1;
  if (kind == 0) {
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    auto* un = reinterpret_cast<sockaddr_un*>(&where);
    std::memset(un, 0, sizeof *un);
    un->sun_family = AF_UNIX;
    std::string name = "mproc-bench-raw-" + std::to_string(::getpid());
    std::memcpy(un->sun_path + 1, name.data(), name.size());
    length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  } else {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    auto* in = reinterpret_cast<sockaddr_in*>(&where);
    std::memset(in, 0, sizeof *in);
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    length = sizeof *in;
  }
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&where), length) != 0 || ::listen(fd, 8) != 0)
    throw mproc::OSError(errno, "raw listen");
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&where), &length);
  return fd;
}

void no_delay(int fd, std::int64_t kind) {
  const int on = 1;
  if (kind == 1) ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
}

bool read_all(int fd, void* buffer, std::size_t n) {
  auto* p = static_cast<char*>(buffer);
  while (n > 0) {
    ssize_t got = ::read(fd, p, n);
    if (got <= 0) return false;
    p += got;
    n -= static_cast<std::size_t>(got);
  }
  return true;
}

bool write_all(int fd, const void* buffer, std::size_t n) {
  const auto* p = static_cast<const char*>(buffer);
  while (n > 0) {
    ssize_t put = ::send(fd, p, n, MSG_NOSIGNAL);
    if (put <= 0) return false;
    p += put;
    n -= static_cast<std::size_t>(put);
  }
  return true;
}

// A child that connects to the raw listener and runs serve(fd) until end of file.
template <class Serve>
mproc::Process start_raw_peer(std::int64_t kind, const sockaddr_storage& where, socklen_t length, Serve serve) {
  mproc::Process child([kind, where, length, serve] {
    int fd = ::socket(where.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&where), length) != 0) std::_Exit(3);
    no_delay(fd, kind);
    serve(fd);
    ::close(fd);
  });
  child.start();
  return child;
}

// Polls `fd` for up to 20 µs, yielding between polls: the wait a manager connection makes for
// a message it expects before it sleeps (src/managers/manager_spin.hpp).
void poll_briefly(int fd) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(20);
  pollfd p{fd, POLLIN, 0};
  while (::poll(&p, 1, 0) == 0 && std::chrono::steady_clock::now() < end) ::sched_yield();
}

// A raw round trip of the same kind: a 12-byte message (Python's 4-byte length and an
// 8-byte value) each way, one write and one read per hop; with `polling`, each side polls
// briefly before its read, as the manager's connections do.
void raw_round_trips(benchmark::State& state, bool polling) {
  mproc_bench::guarded(state, [&] {
    sockaddr_storage where{};
    socklen_t length = 0;
    int listener = raw_listen(state.range(0), where, length);
    auto child = start_raw_peer(state.range(0), where, length, [polling](int fd) {
      char message[12];
      for (;;) {
        if (polling) poll_briefly(fd);
        if (!read_all(fd, message, sizeof message) || !write_all(fd, message, sizeof message)) return;
      }
    });
    int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    no_delay(fd, state.range(0));
    char message[12] = {0, 0, 0, 8};
    for (auto _ : state) {
      if (!write_all(fd, message, sizeof message)) throw mproc::OSError(EPIPE, "raw round trip");
      if (polling) poll_briefly(fd);
      if (!read_all(fd, message, sizeof message)) throw mproc::OSError(EPIPE, "raw round trip");
    }
    ::close(fd);
    ::close(listener);
    child.join();
  });
}

void BM_Limit_RawRoundTrip(benchmark::State& state) { raw_round_trips(state, false); }
BENCHMARK(BM_Limit_RawRoundTrip)->Arg(0)->Arg(1)->UseRealTime();

// The raw limit for the manager's calls (BM_Manager_DictGet in bench_managers).
void BM_Limit_RawRoundTripPolling(benchmark::State& state) { raw_round_trips(state, true); }
BENCHMARK(BM_Limit_RawRoundTripPolling)->Arg(0)->UseRealTime();

// A raw TCP stream: the same bytes as BM_Socket_SendBytes (a 4-byte length, then the
// payload), read into one reused buffer: no framing logic, no allocation.
void BM_Limit_RawTcpStream(benchmark::State& state) {
  mproc_bench::guarded(state, [&] {
    sockaddr_storage where{};
    socklen_t length = 0;
    int listener = raw_listen(1, where, length);
    const auto size = static_cast<std::size_t>(state.range(0));
    auto child = start_raw_peer(1, where, length, [size](int fd) {
      std::vector<char> buffer(size);
      std::uint32_t prefix = 0;
      while (read_all(fd, &prefix, 4)) {
        const std::uint32_t n = ntohl(prefix);
        if (!read_all(fd, buffer.data(), n)) return;
        if (n == kSync && !write_all(fd, "\0\0\0\1\2", 5)) return;
      }
    });
    int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    no_delay(fd, 1);
    std::vector<char> message(4 + size, 1);
    const std::uint32_t prefix = htonl(static_cast<std::uint32_t>(size));
    std::memcpy(message.data(), &prefix, 4);
    for (auto _ : state)
      if (!write_all(fd, message.data(), message.size())) throw mproc::OSError(EPIPE, "raw stream");
    char sync[5] = {0, 0, 0, 1, 2};
    write_all(fd, sync, 5);
    read_all(fd, sync, 5);
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
    ::close(fd);
    ::close(listener);
    child.join();
  });
}
BENCHMARK(BM_Limit_RawTcpStream)->Arg(1 << 20)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
