// Listener, Client and Address: typed values and bytes over TCP (IPv4, IPv6), Unix and
// abstract sockets; authentication (right, wrong and missing keys; Python's two schemes
// against fixed vectors); Python's framing; and hostile peers (garbage, absurd lengths,
// stalled handshakes, half-open and churning connections) with descriptors and memory
// checked after. Interoperation with the real python3 is in tests/python/interop.py.
#include <mproc/mproc.hpp>

#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <netinet/in.h>
#include <poll.h>
#include <string>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "ipc/handshake.hpp"
#include "support/leak_check.hpp"

using namespace std::chrono_literals;
using mproc::Address;
using mproc::Client;
using mproc::Connection;
using mproc::Listener;
using mproc::testing::LeakCheckedTest;

namespace {

class ListenerTest : public LeakCheckedTest {};

struct Job {
  int id = 0;
  std::string name;
  std::vector<double> weights;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(id, name, weights);
  }
  bool operator==(const Job&) const = default;
};

std::vector<std::byte> pattern(std::size_t n, unsigned seed = 7) {
  std::vector<std::byte> bytes(n);
  for (std::size_t i = 0; i < n; ++i) bytes[i] = std::byte(static_cast<unsigned char>((i * 131 + seed) >> 3));
  return bytes;
}

std::string unique_name(const std::string& what) {
  return "mproc-test-" + what + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
}

bool ipv6_available() {
  int fd = ::socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// A raw TCP socket connected to `address` (no handshake, no framing): a hostile peer.
int raw_connect(const Address& address, const char* source = nullptr) {
  int fd = -1;
  if (address.kind() == Address::Kind::tcp) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (source) {
      sockaddr_in from{};
      from.sin_family = AF_INET;
      ::inet_pton(AF_INET, source, &from.sin_addr);
      if (::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0) ADD_FAILURE() << "bind: " << errno;
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(address.port());
    ::inet_pton(AF_INET, address.host().c_str(), &a.sin_addr);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) ADD_FAILURE() << "connect: " << errno;
  }
  return fd;
}

void send_raw(int fd, const void* data, std::size_t n) {
  ASSERT_EQ(::send(fd, data, n, MSG_NOSIGNAL), static_cast<ssize_t>(n));
}

// Reads one Python-framed message from a raw socket (short form only).
std::vector<std::byte> recv_raw_message(int fd) {
  unsigned char prefix[4];
  if (::recv(fd, prefix, 4, MSG_WAITALL) != 4) return {};
  std::size_t n = (std::size_t{prefix[0]} << 24) | (std::size_t{prefix[1]} << 16) | (std::size_t{prefix[2]} << 8) | prefix[3];
  std::vector<std::byte> body(n);
  if (n && ::recv(fd, body.data(), n, MSG_WAITALL) != static_cast<ssize_t>(n)) return {};
  return body;
}

// True once the peer has closed `fd` (everything it sent is drained first).
bool sees_eof(int fd, std::chrono::milliseconds within) {
  auto until = std::chrono::steady_clock::now() + within;
  char sink[512];
  while (std::chrono::steady_clock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    ssize_t got = ::recv(fd, sink, sizeof sink, 0);
    if (got <= 0) return true;
  }
  return false;
}

long max_rss_kib() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

void exchange_everything(const Address& address, const std::optional<std::string>& key) {
  Listener listener(address, {.authkey = key});
  std::thread server([&] {
    Connection c = listener.accept();
    // Typed values both ways.
    Job job = c.recv<Job>();
    job.id += 1;
    c.send(job);
    c.send(std::string("from server"));
    // Bytes of every size, echoed.
    for (;;) {
      std::vector<std::byte> bytes;
      try {
        bytes = c.recv_bytes();
      } catch (const mproc::EOFError&) {
        return;
      }
      c.send_bytes(bytes);
    }
  });
  Connection c = Client(listener.address(), {.authkey = key});
  Job job{41, "job", {0.5, 1.5}};
  c.send(job);
  Job back = c.recv<Job>();
  EXPECT_EQ(back.id, 42);
  EXPECT_EQ(back.weights, job.weights);
  EXPECT_EQ(c.recv<std::string>(), "from server");
  for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{100}, std::size_t{64 * 1024 - 1},
                           std::size_t{64 * 1024}, std::size_t{64 * 1024 + 1}, std::size_t{5 * 1024 * 1024 + 3}}) {
    auto bytes = pattern(size, static_cast<unsigned>(size));
    c.send_bytes(bytes);
    EXPECT_EQ(c.recv_bytes(), bytes) << "size " << size;
  }
  // recv_bytes_into, small and large.
  auto big = pattern(3 * 1024 * 1024);
  std::vector<std::byte> into(big.size());
  c.send_bytes(big);
  EXPECT_EQ(c.recv_bytes_into(into), big.size());
  EXPECT_EQ(into, big);
  c.close();
  server.join();
  ASSERT_TRUE(listener.last_accepted());
  if (address.kind() == Address::Kind::tcp) {
    EXPECT_EQ(listener.last_accepted()->kind(), Address::Kind::tcp);
  }
}

TEST(AddressTest, Forms) {
  EXPECT_EQ(Address::tcp("127.0.0.1", 80).to_string(), "127.0.0.1:80");
  EXPECT_EQ(Address::tcp("::1", 80).to_string(), "[::1]:80");
  EXPECT_EQ(Address::unix_path("/tmp/x.sock").to_string(), "/tmp/x.sock");
  EXPECT_EQ(Address::abstract("name").to_string(), "@name");
  EXPECT_EQ(Address::tcp("", 1).host(), "0.0.0.0");  // Python's ('', port)
  EXPECT_THROW(Address::unix_path(""), std::invalid_argument);
  EXPECT_THROW(Address::unix_path(std::string(200, 'a')), std::invalid_argument);
  EXPECT_THROW(Address::abstract(std::string(108, 'a')), std::invalid_argument);
  EXPECT_THROW(Address::unix_path(std::string("a\0b", 3)), std::invalid_argument);
}

TEST_F(ListenerTest, EverythingOverTcpIpv4) { exchange_everything(Address::tcp("127.0.0.1", 0), "secret"); }
TEST_F(ListenerTest, EverythingOverTcpWithoutKey) { exchange_everything(Address::tcp("127.0.0.1", 0), std::nullopt); }
TEST_F(ListenerTest, EverythingOverTcpIpv6) {
  if (!ipv6_available()) GTEST_SKIP() << "no IPv6 loopback on this host";
  exchange_everything(Address::tcp("::1", 0), "secret");
}
TEST_F(ListenerTest, EverythingOverUnixPath) {
  exchange_everything(Address::unix_path("/tmp/" + unique_name("unix") + ".sock"), "secret");
}
TEST_F(ListenerTest, EverythingOverAbstractName) { exchange_everything(Address::abstract(unique_name("abstract")), ""); }

TEST_F(ListenerTest, PortZeroIsChosenByTheKernelAndReported) {
  Listener listener(Address::tcp("127.0.0.1", 0));
  EXPECT_NE(listener.address().port(), 0);
  EXPECT_EQ(listener.address().host(), "127.0.0.1");
  EXPECT_FALSE(listener.last_accepted());
}

TEST_F(ListenerTest, AnEmptyHostIsEveryInterfaceAsInPython) {
  // Python's docs serve a manager on ('', 50000); clients reach it by any local address.
  Listener listener(Address::tcp("", 0));
  EXPECT_EQ(listener.address().host(), "0.0.0.0");
  const auto port = listener.address().port();
  std::thread server([&] {
    listener.accept().send(1);
    listener.accept().send(2);
  });
  EXPECT_EQ(Client(Address::tcp("127.0.0.1", port)).recv<int>(), 1);
  EXPECT_EQ(Client(Address::tcp("", port)).recv<int>(), 2);
  server.join();
}

TEST_F(ListenerTest, AHostNameListensOnIpv4WherePythonLooks) {
  Listener listener(Address::tcp("localhost", 0));
  EXPECT_EQ(listener.address().host(), "127.0.0.1");
  std::thread server([&] { listener.accept().send(9); });
  EXPECT_EQ(Client(Address::tcp("localhost", listener.address().port())).recv<int>(), 9);
  server.join();
}

TEST_F(ListenerTest, DualStackListenerTakesIpv4Clients) {
  if (!ipv6_available()) GTEST_SKIP() << "no IPv6 on this host";
  Listener listener(Address::tcp("::", 0), {.authkey = "k"});
  std::thread server([&] { listener.accept().send(std::string("hi")); });
  Connection c = Client(Address::tcp("127.0.0.1", listener.address().port()), {.authkey = "k"});
  EXPECT_EQ(c.recv<std::string>(), "hi");
  server.join();
  ASSERT_TRUE(listener.last_accepted());
  EXPECT_EQ(listener.last_accepted()->host(), "::ffff:127.0.0.1");
}

TEST_F(ListenerTest, UnixPathIsRemovedOnCloseAndABusyPathRefused) {
  const std::string path = "/tmp/" + unique_name("path") + ".sock";
  {
    Listener listener(Address::unix_path(path));
    struct stat info {};
    EXPECT_EQ(::stat(path.c_str(), &info), 0);
    try {
      Listener second(Address::unix_path(path));
      ADD_FAILURE() << "a second Listener bound the same path";
    } catch (const mproc::OSError& e) {
      EXPECT_EQ(e.errno_value(), EADDRINUSE);
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
    std::thread server([&] { listener.accept(); });
    Connection c = Client(Address::unix_path(path));
    server.join();
    ASSERT_TRUE(listener.last_accepted());
    EXPECT_EQ(listener.last_accepted()->path(), "");  // an unnamed client, Python's ''
  }
  struct stat info {};
  EXPECT_NE(::stat(path.c_str(), &info), 0) << "close left the socket file behind";
}

TEST_F(ListenerTest, WrongKeyFailsBothSidesAndTheListenerServesOn) {
  Listener listener(Address::tcp("127.0.0.1", 0), {.authkey = "right"});
  std::atomic<int> failures{0};
  std::thread server([&] {
    for (int i = 0; i < 2; ++i) {
      try {
        Connection c = listener.accept();
        c.send(std::string("welcome"));
      } catch (const mproc::AuthenticationError& e) {
        EXPECT_NE(std::string(e.what()).find(listener.address().to_string()), std::string::npos) << e.what();
        failures.fetch_add(1);
        --i;  // a wrong key is not a served connection
        if (failures.load() > 1) return;
      }
    }
  });
  try {
    Client(listener.address(), {.authkey = "wrong"});
    ADD_FAILURE() << "a wrong key was accepted";
  } catch (const mproc::AuthenticationError& e) {
    EXPECT_NE(std::string(e.what()).find("rejected"), std::string::npos) << e.what();
  }
  Connection good = Client(listener.address(), {.authkey = "right"});
  EXPECT_EQ(good.recv<std::string>(), "welcome");
  Connection again = Client(listener.address(), {.authkey = "right"});
  EXPECT_EQ(again.recv<std::string>(), "welcome");
  server.join();
  EXPECT_EQ(failures.load(), 1);
}

TEST_F(ListenerTest, KeyOnOneSideOnly) {
  {
    // The Listener wants a key; the Client sends data instead of an answer.
    Listener listener(Address::tcp("127.0.0.1", 0), {.authkey = "k"});
    std::thread client([&] {
      Connection c = Client(listener.address());
      c.send_bytes(std::string_view("hello"));
      try {
        (void)c.recv_bytes();  // the challenge, then #FAILURE#
        (void)c.recv_bytes();
      } catch (const mproc::Error&) {
      }
    });
    EXPECT_THROW(listener.accept(), mproc::AuthenticationError);
    client.join();
  }
  {
    // The Client wants a key; the Listener has none and sends application data.
    Listener listener(Address::tcp("127.0.0.1", 0));
    std::thread server([&] {
      Connection c = listener.accept();
      c.send_bytes(std::string_view("plain data"));
      try {
        (void)c.recv_bytes();
      } catch (const mproc::Error&) {
      }
    });
    EXPECT_THROW(Client(listener.address(), {.authkey = "k"}), mproc::AuthenticationError);
    server.join();
  }
}

TEST_F(ListenerTest, AcceptFromSeveralThreads) {
  Listener listener(Address::tcp("127.0.0.1", 0), {.authkey = "k"});
  constexpr int kThreads = 4, kClients = 12;
  std::atomic<int> served{0};
  std::vector<std::thread> acceptors;
  for (int t = 0; t < kThreads; ++t)
    acceptors.emplace_back([&] {
      while (served.load() < kClients) {
        auto c = listener.accept(200ms);
        if (!c) continue;
        int n = c->recv<int>();
        c->send(n * 2);
        served.fetch_add(1);
      }
    });
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i)
    clients.emplace_back([&, i] {
      Connection c = Client(listener.address(), {.authkey = "k"});
      c.send(i);
      EXPECT_EQ(c.recv<int>(), 2 * i);
    });
  for (auto& t : clients) t.join();
  for (auto& t : acceptors) t.join();
  EXPECT_EQ(served.load(), kClients);
}

TEST_F(ListenerTest, CloseFromAnotherThreadUnblocksAccept) {
  const std::string path = "/tmp/" + unique_name("close") + ".sock";
  Listener listener(Address::unix_path(path), {.authkey = "k"});
  std::atomic<bool> threw{false};
  std::thread acceptor([&] {
    try {
      listener.accept();
    } catch (const mproc::OSError& e) {
      threw = e.errno_value() == EBADF;
    }
  });
  std::this_thread::sleep_for(50ms);  // not a correctness wait: close works whether or not accept has begun
  listener.close();
  acceptor.join();
  EXPECT_TRUE(threw.load());
  EXPECT_TRUE(listener.closed());
  EXPECT_THROW(listener.accept(), mproc::OSError);
  struct stat info {};
  EXPECT_NE(::stat(path.c_str(), &info), 0);
}

TEST_F(ListenerTest, AcceptWithTimeoutReturnsNothing) {
  Listener listener(Address::tcp("127.0.0.1", 0));
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(listener.accept(100ms));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 100ms);
}

TEST_F(ListenerTest, RefusedAndUnreachableGiveOSErrorWithTheAddress) {
  Address closed_port = [] {
    Listener l(Address::tcp("127.0.0.1", 0));
    return l.address();
  }();
  try {
    Client(closed_port);
    ADD_FAILURE() << "connected to a closed port";
  } catch (const mproc::OSError& e) {
    EXPECT_EQ(e.errno_value(), ECONNREFUSED);
    EXPECT_NE(std::string(e.what()).find(closed_port.to_string()), std::string::npos) << e.what();
  }
  try {
    Client(Address::unix_path("/tmp/" + unique_name("absent") + ".sock"));
    ADD_FAILURE();
  } catch (const mproc::OSError& e) {
    EXPECT_EQ(e.errno_value(), ENOENT);
  }
  // A host that never answers: a listener whose queue is full drops further SYNs, as a
  // black-holed host would (a routed-away address is not testable in every sandbox).
  int full = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in any{};
  any.sin_family = AF_INET;
  any.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(full, reinterpret_cast<sockaddr*>(&any), sizeof any), 0);
  ASSERT_EQ(::listen(full, 0), 0);
  socklen_t length = sizeof any;
  ::getsockname(full, reinterpret_cast<sockaddr*>(&any), &length);
  const Address silent = Address::tcp("127.0.0.1", ntohs(any.sin_port));
  std::vector<int> fillers;
  for (int i = 0; i < 4; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    ::connect(fd, reinterpret_cast<sockaddr*>(&any), sizeof any);
    fillers.push_back(fd);
  }
  auto start = std::chrono::steady_clock::now();
  try {
    for (int i = 0; i < 4; ++i) Client(silent, {.timeout = 300ms});  // the first may still fit the queue
    ADD_FAILURE() << "every connection to a full queue went through";
  } catch (const mproc::OSError& e) {
    EXPECT_EQ(e.errno_value(), ETIMEDOUT) << e.what();
    EXPECT_NE(std::string(e.what()).find(silent.to_string()), std::string::npos) << e.what();
  }
  for (int fd : fillers) ::close(fd);
  ::close(full);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST_F(ListenerTest, PeerCloseIsEOFErrorAndSendingToItNeverRaisesSIGPIPE) {
  Listener listener(Address::tcp("127.0.0.1", 0), {.authkey = "k"});
  std::thread server([&] { listener.accept().close(); });
  Connection c = Client(listener.address(), {.authkey = "k"});
  server.join();
  try {
    c.recv_bytes();
    ADD_FAILURE() << "no EOFError";
  } catch (const mproc::EOFError& e) {
    EXPECT_NE(std::string(e.what()).find(listener.address().to_string()), std::string::npos) << e.what();
  }
  // The first send may still be buffered; a later one meets the reset (EPIPE/ECONNRESET).
  auto payload = pattern(1 << 20);
  EXPECT_THROW(
      {
        for (int i = 0; i < 64; ++i) c.send_bytes(payload);
      },
      mproc::OSError);
}

TEST_F(ListenerTest, WaitOverPipesAndSocketsMixed) {
  Listener listener(Address::abstract(unique_name("wait")));
  std::thread server([&] {
    Connection c = listener.accept();
    c.send(7);
    (void)c.recv<int>();
  });
  Connection socket_end = Client(listener.address());
  auto [a, b] = mproc::Pipe();
  Connection* both[] = {&a, &socket_end};
  auto ready = mproc::wait(std::span<Connection* const>(both), 5s);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0], &socket_end);
  EXPECT_EQ(socket_end.recv<int>(), 7);
  b.send(1);
  ready = mproc::wait(std::span<Connection* const>(both), 5s);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0], &a);
  socket_end.send(0);
  server.join();
}

void echo_over_socket(Connection c) { c.send(c.recv<std::string>() + " and back"); }

TEST_F(ListenerTest, ASocketConnectionReachesASpawnedChildByDescriptor) {
  Listener listener(Address::tcp("127.0.0.1", 0), {.authkey = "k"});
  std::thread server([&] {
    Connection c = listener.accept();
    c.send(std::string("there"));
    EXPECT_EQ(c.recv<std::string>(), "there and back");
  });
  Connection ours = Client(listener.address(), {.authkey = "k"});
  mproc::Process child({.context = mproc::get_context("spawn")}, echo_over_socket, std::move(ours));
  child.start();
  child.join();
  server.join();
  EXPECT_EQ(child.exitcode(), 0);
}

TEST_F(ListenerTest, PythonLengthPrefixShortAndLongForms) {
  std::byte prefix[mproc::wire::kStreamPrefixMax];
  ASSERT_EQ(mproc::wire::write_stream_prefix(prefix, 0x7fffffff), 4u);
  EXPECT_EQ(prefix[0], std::byte{0x7f});
  EXPECT_EQ(prefix[3], std::byte{0xff});
  ASSERT_EQ(mproc::wire::write_stream_prefix(prefix, 0x80000000ULL), 12u);
  const unsigned char expected[12] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x80, 0, 0, 0};
  EXPECT_EQ(std::memcmp(prefix, expected, 12), 0);

  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  Connection c = mproc::detail::adopt_stream_socket(fds[0]);
  // The long form for a short payload: Python's reader accepts it, so must we.
  const unsigned char long_form[] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'};
  send_raw(fds[1], long_form, sizeof long_form);
  auto got = c.recv_bytes();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(got.data()), got.size()), "hello");
  // What send_bytes writes is Python's short form.
  c.send_bytes(std::string_view("abc"));
  auto raw = recv_raw_message(fds[1]);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(raw.data()), raw.size()), "abc");
  // A value sent with send() is mproc's frame inside one message; bytes are not a value.
  c.send(std::string("v"));
  raw = recv_raw_message(fds[1]);
  EXPECT_EQ(raw.size(), mproc::wire::kHeaderSize + 1 + 8);  // header, then the encoded string
  const unsigned char not_a_frame[] = {0, 0, 0, 3, 'x', 'y', 'z'};
  send_raw(fds[1], not_a_frame, sizeof not_a_frame);
  EXPECT_THROW(c.recv<std::string>(), mproc::SerializationError);
  // ... and that spoils nothing: the next message reads fine.
  send_raw(fds[1], not_a_frame, sizeof not_a_frame);
  EXPECT_EQ(c.recv_bytes().size(), 3u);
  // A negative length other than -1 is refused.
  const unsigned char negative[] = {0xff, 0xff, 0xff, 0xfe};
  send_raw(fds[1], negative, sizeof negative);
  EXPECT_THROW(c.recv_bytes(), mproc::SerializationError);
  ::close(fds[1]);
}

long available_memory_mib() {
  FILE* info = std::fopen("/proc/meminfo", "r");
  if (!info) return 0;
  char line[256];
  long kib = 0;
  while (std::fgets(line, sizeof line, info))
    if (std::sscanf(line, "MemAvailable: %ld kB", &kib) == 1) break;
  std::fclose(info);
  return kib / 1024;
}

TEST_F(ListenerTest, AMessageOverTwoGibibytesUsesTheLongForm) {
  // The receiver commits the 2 GiB (a sanitizer's shadow memory multiplies that): skip
  // where it would crowd the machine. The sender's payload is untouched anonymous memory
  // (the kernel's zero page) but for its first and last bytes, so it costs next to nothing.
  if (available_memory_mib() < 12 * 1024) GTEST_SKIP() << "needs 12 GiB of available memory";
  const std::size_t size = (std::size_t{1} << 31) + 16;
  Listener listener(Address::abstract(unique_name("big")));
  std::thread server([&] {
    Connection c = listener.accept();
    void* region = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(region, MAP_FAILED);
    std::span<std::byte> payload(static_cast<std::byte*>(region), size);
    payload.front() = std::byte{0xab};
    payload.back() = std::byte{0xcd};
    c.send_bytes(payload);
    ::munmap(region, size);
  });
  Connection c = Client(listener.address());
  // The first 12 bytes on the wire are Python's long form: -1, then the 8-byte length.
  std::byte peek[12];
  ASSERT_EQ(::recv(c.fileno(), peek, sizeof peek, MSG_PEEK | MSG_WAITALL), 12);
  const unsigned char expected[12] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x80, 0, 0, 0x10};
  EXPECT_EQ(std::memcmp(peek, expected, 12), 0);
  std::vector<std::byte> got = c.recv_bytes();
  server.join();
  ASSERT_EQ(got.size(), size);
  EXPECT_EQ(got.front(), std::byte{0xab});
  EXPECT_EQ(got.back(), std::byte{0xcd});
}

// ---- hostile peers -------------------------------------------------------------------

TEST_F(ListenerTest, GarbageAndHugeLengthsBeforeAuthenticationAreRefused) {
  Listener listener(Address::tcp("127.0.0.1", 0), {.authkey = "k"});
  const long rss_before = max_rss_kib();
  // A length of 2 GiB - 1 where a 256-byte answer belongs, then the 8-byte form, then bytes.
  const unsigned char huge[] = {0x7f, 0xff, 0xff, 0xff, 1, 2, 3};
  const unsigned char long_form[] = {0xff, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 0, 0, 0};
  const std::string garbage = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  for (const auto& bytes : {std::string(reinterpret_cast<const char*>(huge), sizeof huge),
                            std::string(reinterpret_cast<const char*>(long_form), sizeof long_form), garbage}) {
    int fd = raw_connect(listener.address());
    send_raw(fd, bytes.data(), bytes.size());
    try {
      listener.accept();
      ADD_FAILURE() << "a hostile peer was accepted";
    } catch (const mproc::AuthenticationError& e) {
      EXPECT_NE(std::string(e.what()).find("127.0.0.1"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(sees_eof(fd, 5s));
    ::close(fd);
  }
  EXPECT_LT(max_rss_kib() - rss_before, 64 * 1024) << "a claimed length was allocated";
  // Still serving.
  std::thread server([&] { listener.accept().send(1); });
  EXPECT_EQ(Client(listener.address(), {.authkey = "k"}).recv<int>(), 1);
  server.join();
}

TEST_F(ListenerTest, HugeLengthsAfterAuthenticationAreRefusedWithoutTakingTheMemory) {
  Listener listener(Address::tcp("127.0.0.1", 0), {.authkey = "k"});
  std::thread client_side;
  int raw_fd = -1;
  {
    std::atomic<int> fd_ready{-1};
    Connection client;
    client_side = std::thread([&] {
      client = Client(listener.address(), {.authkey = "k"});
      fd_ready = client.fileno();
    });
    Connection server = listener.accept();
    client_side.join();
    raw_fd = fd_ready.load();
    const long rss_before = max_rss_kib();
    // 1 TiB in the 8-byte form: over max_message_size, refused on the prefix.
    const unsigned char absurd[] = {0xff, 0xff, 0xff, 0xff, 0, 0, 1, 0, 0, 0, 0, 0};
    send_raw(raw_fd, absurd, sizeof absurd);
    EXPECT_THROW(server.recv_bytes(), mproc::SerializationError);
    EXPECT_THROW(server.recv_bytes(), mproc::SerializationError);  // the stream is unusable now
    server.close();

    // 3 GiB claimed (under the limit), 1 MiB sent, then the peer goes: memory followed the
    // bytes that came, not the claim.
    Connection server2;
    Connection client2;
    client_side = std::thread([&] { client2 = Client(listener.address(), {.authkey = "k"}); });
    server2 = listener.accept();
    client_side.join();
    const unsigned char claim[] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0xc0, 0, 0, 0};
    send_raw(client2.fileno(), claim, sizeof claim);
    auto chunk = pattern(1 << 20);
    send_raw(client2.fileno(), chunk.data(), chunk.size());
    client2.close();
    EXPECT_THROW(server2.recv_bytes(), mproc::SerializationError);  // truncated
    EXPECT_LT(max_rss_kib() - rss_before, 128 * 1024) << "the claimed 3 GiB were committed";
  }
}

TEST_F(ListenerTest, SlowlorisDelaysNoOneAndIsDroppedAfterTheLimit) {
  Listener listener(Address::tcp("127.0.0.1", 0), {.authkey = "k", .handshake_timeout = 1500ms});
  std::vector<int> stalled;
  for (int i = 0; i < 20; ++i) {
    int fd = raw_connect(listener.address());
    if (i % 2) {
      const unsigned char partial[] = {0, 0};  // half a length prefix, then silence
      send_raw(fd, partial, sizeof partial);
    }
    stalled.push_back(fd);
  }
  // An honest client behind them is served while they stall.
  std::atomic<bool> stop{false};
  std::atomic<int> served{0};
  std::thread server([&] {
    while (!stop.load()) {
      try {
        if (auto c = listener.accept(50ms)) {
          c->send(5);
          served.fetch_add(1);
        }
      } catch (const mproc::AuthenticationError&) {
      }
    }
  });
  auto start = std::chrono::steady_clock::now();
  Connection c = Client(listener.address(), {.authkey = "k"});
  EXPECT_EQ(c.recv<int>(), 5);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1500ms) << "the honest client waited for the stallers";
  // The stallers are dropped once their time is up.
  for (int fd : stalled) {
    EXPECT_TRUE(sees_eof(fd, 10s));
    ::close(fd);
  }
  stop = true;
  server.join();
  EXPECT_EQ(served.load(), 1);
}

TEST_F(ListenerTest, HalfOpenAndVanishingPeersAreDroppedQuietly) {
  Listener listener(Address::tcp("127.0.0.1", 0), {.authkey = "k"});
  int half = raw_connect(listener.address());
  ::shutdown(half, SHUT_WR);  // half-open: reads on, writes done
  int gone = raw_connect(listener.address());
  ::close(gone);
  std::thread client([&] { Client(listener.address(), {.authkey = "k"}).send(3); });
  Connection c = listener.accept();  // neither of the others surfaces here
  EXPECT_EQ(c.recv<int>(), 3);
  client.join();
  EXPECT_TRUE(sees_eof(half, 5s));
  ::close(half);
}

TEST_F(ListenerTest, AThousandConnectDisconnectCyclesLeakNothing) {
  Listener listener(Address::tcp("127.0.0.1", 0), {.authkey = "k"});
  const auto fds_before = mproc::testing::open_fds().size();
  const long rss_before = max_rss_kib();
  std::atomic<bool> stop{false};
  std::atomic<int> accepted{0};
  std::thread server([&] {
    while (!stop.load()) {
      try {
        if (auto c = listener.accept(20ms)) accepted.fetch_add(1);
      } catch (const mproc::Error& e) {
        ADD_FAILURE() << e.what();
      }
    }
  });
  for (int i = 0; i < 1000; ++i) {
    if (i % 2) {
      Client(listener.address(), {.authkey = "k"});  // a full handshake, then close
    } else {
      ::close(raw_connect(listener.address()));  // gone before the handshake
    }
  }
  // Every full handshake is accepted; then the descriptors are what they were.
  EXPECT_TRUE(mproc::testing::eventually([&] { return accepted.load() == 500; })) << accepted.load();
  stop = true;
  server.join();
  EXPECT_EQ(mproc::testing::open_fds().size(), fds_before);
  EXPECT_LT(max_rss_kib() - rss_before, 32 * 1024);
}

// ---- the handshake against fixed vectors ---------------------------------------------

std::vector<std::byte> bytes_of(std::string_view s) {
  auto b = std::as_bytes(std::span(s.data(), s.size()));
  return {b.begin(), b.end()};
}

std::vector<std::byte> from_hex(std::string_view hex) {
  std::vector<std::byte> out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(std::byte(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  return out;
}

std::array<std::byte, mproc::detail::kChallengeRandomBytes> counting_random() {
  std::array<std::byte, mproc::detail::kChallengeRandomBytes> r;
  for (std::size_t i = 0; i < r.size(); ++i) r[i] = std::byte(i);
  return r;
}

// Expected values computed with Python's hmac module:
//   hmac.new(b'k3y', b'{sha256}' + bytes(range(40)), 'sha256').hexdigest()
//   hmac.new(b'k3y', b'{sha256}' + bytes(range(40)), 'md5').hexdigest()
//   hmac.new(b'k3y', bytes(range(100, 120)), 'md5').hexdigest()
constexpr std::string_view kSha256 = "daab014035629df90b1616f001567cdfd502345e79eced4636d539437805ac61";
constexpr std::string_view kMd5OfModern = "d919025ad34584a643204df2f9685173";
constexpr std::string_view kMd5OfLegacy = "49f67251376dff40d95b61ea04292a5e";

TEST(HandshakeTest, ModernChallengeAsPython312DeliversIt) {
  using mproc::detail::Handshake;
  Handshake server(Handshake::Role::deliver, "k3y", counting_random());
  auto out = server.take_outgoing();
  ASSERT_EQ(out.size(), 1u);
  auto expected = bytes_of("#CHALLENGE#{sha256}");
  for (int i = 0; i < 40; ++i) expected.push_back(std::byte(i));
  EXPECT_EQ(out[0], expected);
  // A 3.12 client's answer: {sha256} + HMAC-SHA256 over the whole message.
  auto answer = bytes_of("{sha256}");
  for (auto b : from_hex(kSha256)) answer.push_back(b);
  server.on_message(answer);
  EXPECT_TRUE(server.done());
  EXPECT_EQ(server.take_outgoing().at(0), bytes_of("#WELCOME#"));
}

TEST(HandshakeTest, LegacyMd5AnswerToTheModernChallengeIsAccepted) {
  using mproc::detail::Handshake;
  Handshake server(Handshake::Role::deliver, "k3y", counting_random());
  (void)server.take_outgoing();
  server.on_message(from_hex(kMd5OfModern));  // what Python 3.11's answer_challenge sends
  EXPECT_TRUE(server.done());
}

TEST(HandshakeTest, WrongAnswerGetsFailure) {
  using mproc::detail::Handshake;
  Handshake server(Handshake::Role::deliver, "k3y", counting_random());
  (void)server.take_outgoing();
  auto wrong = from_hex(kMd5OfModern);
  wrong[3] ^= std::byte{1};
  server.on_message(wrong);
  EXPECT_TRUE(server.failed());
  EXPECT_EQ(server.take_outgoing().at(0), bytes_of("#FAILURE#"));
  Handshake other(Handshake::Role::deliver, "k3y", counting_random());
  (void)other.take_outgoing();
  other.on_message(bytes_of("{sha512}0123456789"));  // not a digest Python allows
  EXPECT_TRUE(other.failed());
}

TEST(HandshakeTest, AnswersBothSchemes) {
  using mproc::detail::Handshake;
  {
    Handshake client(Handshake::Role::answer, "k3y", counting_random());
    auto challenge = bytes_of("#CHALLENGE#{sha256}");
    for (int i = 0; i < 40; ++i) challenge.push_back(std::byte(i));
    client.on_message(challenge);
    auto expected = bytes_of("{sha256}");
    for (auto b : from_hex(kSha256)) expected.push_back(b);
    EXPECT_EQ(client.take_outgoing().at(0), expected);
    client.on_message(bytes_of("#WELCOME#"));
    EXPECT_TRUE(client.done());
  }
  {
    Handshake client(Handshake::Role::answer, "k3y", counting_random());
    auto challenge = bytes_of("#CHALLENGE#");
    for (int i = 100; i < 120; ++i) challenge.push_back(std::byte(i));  // a 3.11 server's 20 bytes
    client.on_message(challenge);
    EXPECT_EQ(client.take_outgoing().at(0), from_hex(kMd5OfLegacy));
    client.on_message(bytes_of("#FAILURE#"));
    EXPECT_TRUE(client.failed());
  }
  {
    Handshake client(Handshake::Role::answer, "k3y", counting_random());
    client.on_message(bytes_of("#CHALLENGE#short"));
    EXPECT_TRUE(client.failed());
  }
}

TEST(HandshakeTest, ReaderRefusesLongMessagesBeforeReadingThem) {
  mproc::detail::HandshakeReader reader;
  std::string why;
  EXPECT_EQ(reader.wanted(), 4u);
  const std::byte ok[] = {std::byte{0}, std::byte{0}, std::byte{1}, std::byte{0}};  // 256: the limit
  EXPECT_TRUE(reader.feed(ok, why));
  EXPECT_EQ(reader.wanted(), 256u);
  reader.reset();
  const std::byte too_long[] = {std::byte{0}, std::byte{0}, std::byte{1}, std::byte{1}};
  EXPECT_FALSE(reader.feed(too_long, why));
  reader.reset();
  const std::byte minus_one[] = {std::byte{0xff}, std::byte{0xff}, std::byte{0xff}, std::byte{0xff}};
  EXPECT_FALSE(reader.feed(minus_one, why));
}

TEST_F(ListenerTest, DeliverAndAnswerChallengeOverAPipe) {
  auto [a, b] = mproc::Pipe();
  std::thread other([&] {
    mproc::answer_challenge(b, "pipe key");
    mproc::deliver_challenge(b, "pipe key");
  });
  mproc::deliver_challenge(a, "pipe key");
  mproc::answer_challenge(a, "pipe key");
  other.join();
  std::thread wrong([&] { EXPECT_THROW(mproc::answer_challenge(b, "other key"), mproc::AuthenticationError); });
  EXPECT_THROW(mproc::deliver_challenge(a, "pipe key"), mproc::AuthenticationError);
  wrong.join();
}

}  // namespace
