// Pipe and Connection: Python's _TestConnection behaviours, framing robustness, message
// sizes from 1 byte to 1 GiB, and multiprocessing.connection.wait.
#include <mproc/mproc.hpp>

#include <chrono>
#include <csignal>
#include <cstring>
#include <map>
#include <numeric>
#include <string>
#include <sys/resource.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "support/leak_check.hpp"

using namespace std::chrono_literals;
using mproc::testing::LeakCheckedTest;

namespace {

class ConnectionTest : public LeakCheckedTest {};

struct Point {
  double x = 0;
  double y = 0;
  std::string label;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(x, y, label);
  }
  friend bool operator==(const Point&, const Point&) = default;
};

std::vector<std::byte> pattern(std::size_t size, unsigned seed) {
  std::vector<std::byte> bytes(size);
  for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<std::byte>((i * 131 + seed * 7 + (i >> 12)) & 0xff);
  return bytes;
}

TEST_F(ConnectionTest, SendRecvValuesBothWays) {
  auto [a, b] = mproc::Pipe();
  a.send(42);
  a.send(std::string("text with \0 nul", 15));
  a.send(std::vector<int>{1, 2, 3});
  a.send(std::map<std::string, std::vector<double>>{{"k", {1.5, 2.5}}});
  a.send(Point{1, 2, "p"});
  EXPECT_EQ(b.recv<int>(), 42);
  EXPECT_EQ(b.recv<std::string>(), std::string("text with \0 nul", 15));
  EXPECT_EQ(b.recv<std::vector<int>>(), (std::vector<int>{1, 2, 3}));
  EXPECT_EQ((b.recv<std::map<std::string, std::vector<double>>>().at("k")), (std::vector<double>{1.5, 2.5}));
  EXPECT_EQ(b.recv<Point>(), (Point{1, 2, "p"}));
  b.send(std::string("back"));
  EXPECT_EQ(a.recv<std::string>(), "back");
}

TEST_F(ConnectionTest, AcrossProcesses) {
  auto [parent_end, child_end] = mproc::Pipe();
  mproc::Process echo([&] {
    for (;;) {
      auto value = child_end.recv<std::vector<std::string>>();
      if (value.empty()) return;
      value.push_back("echo");
      child_end.send(value);
    }
  });
  echo.start();
  for (int i = 0; i < 100; ++i) {
    parent_end.send(std::vector<std::string>{std::to_string(i)});
    auto reply = parent_end.recv<std::vector<std::string>>();
    ASSERT_EQ(reply, (std::vector<std::string>{std::to_string(i), "echo"}));
  }
  parent_end.send(std::vector<std::string>{});
  echo.join();
  EXPECT_EQ(echo.exitcode(), 0);
}

TEST_F(ConnectionTest, SimplexRefusesTheWrongDirection) {
  auto [reader, writer] = mproc::Pipe(false);
  EXPECT_TRUE(reader.readable());
  EXPECT_FALSE(reader.writable());
  EXPECT_FALSE(writer.readable());
  EXPECT_TRUE(writer.writable());
  EXPECT_THROW(reader.send(1), mproc::OSError);
  EXPECT_THROW(writer.recv<int>(), mproc::OSError);
  EXPECT_THROW(writer.poll(), mproc::OSError);
  writer.send(5);
  EXPECT_EQ(reader.recv<int>(), 5);
}

TEST_F(ConnectionTest, ClosedPeerGivesEOFError) {
  auto [a, b] = mproc::Pipe();
  a.send(1);
  a.close();
  EXPECT_EQ(b.recv<int>(), 1);  // what was sent before close still arrives
  EXPECT_THROW(b.recv<int>(), mproc::EOFError);
  EXPECT_THROW(b.recv_bytes(), mproc::EOFError);
  EXPECT_TRUE(b.poll());  // end of file counts as ready, as in Python
}

TEST_F(ConnectionTest, PeerProcessExitGivesEOFError) {
  auto [parent_end, child_end] = mproc::Pipe();
  mproc::Process p([&] { child_end.send(std::string("last words")); });
  p.start();
  child_end.close();  // the child holds the only other copy
  p.join();
  EXPECT_EQ(parent_end.recv<std::string>(), "last words");
  EXPECT_THROW(parent_end.recv<std::string>(), mproc::EOFError);
}

TEST_F(ConnectionTest, SendToClosedPeerIsEPIPENotSIGPIPE) {
  // Small and bulk payloads take different channels; both must report EPIPE, and the
  // SIGPIPE the pipe raised must not stay pending (it would kill us once unblocked).
  for (std::size_t size : {std::size_t{1000}, std::size_t{1} << 20}) {
    auto [a, b] = mproc::Pipe();
    b.close();
    try {
      a.send(std::vector<char>(size, 'x'));
      FAIL() << "send to a closed peer succeeded";
    } catch (const mproc::OSError& error) {
      EXPECT_EQ(error.errno_value(), EPIPE);
    }
    sigset_t pending;
    sigpending(&pending);
    EXPECT_FALSE(sigismember(&pending, SIGPIPE));
  }
}

TEST_F(ConnectionTest, UseAfterCloseIsAnOSError) {
  auto [a, b] = mproc::Pipe();
  a.close();
  EXPECT_TRUE(a.closed());
  EXPECT_THROW(a.send(1), mproc::OSError);
  EXPECT_THROW(a.recv<int>(), mproc::OSError);
  EXPECT_THROW(a.poll(), mproc::OSError);
  EXPECT_THROW(a.fileno(), mproc::OSError);
  a.close();  // idempotent
}

TEST_F(ConnectionTest, PollWaitsForData) {
  auto [a, b] = mproc::Pipe();
  EXPECT_FALSE(b.poll());
  auto begin = std::chrono::steady_clock::now();
  EXPECT_FALSE(b.poll(50ms));
  EXPECT_GE(std::chrono::steady_clock::now() - begin, 45ms);
  std::thread sender([&a] { a.send(3); });
  EXPECT_TRUE(b.poll(30s));
  sender.join();
  EXPECT_TRUE(b.poll());
  EXPECT_EQ(b.recv<int>(), 3);
  EXPECT_FALSE(b.poll());
}

TEST_F(ConnectionTest, BytesRoundTrip) {
  auto [a, b] = mproc::Pipe();
  a.send_bytes(std::string_view("abc"));
  a.send_bytes(std::span<const std::byte>());
  auto bytes = b.recv_bytes();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()), "abc");
  EXPECT_TRUE(b.recv_bytes().empty());
  a.send_bytes(std::string_view("0123456789"));
  std::array<std::byte, 16> buffer{};
  EXPECT_EQ(b.recv_bytes_into(buffer), 10u);
  EXPECT_EQ(std::memcmp(buffer.data(), "0123456789", 10), 0);
}

TEST_F(ConnectionTest, RecvBytesLongerThanMaxlengthClosesTheConnection) {
  auto [a, b] = mproc::Pipe();
  a.send_bytes(std::string_view("0123456789"));
  try {
    b.recv_bytes(4);
    FAIL() << "maxlength ignored";
  } catch (const mproc::OSError& error) {
    EXPECT_EQ(error.errno_value(), EMSGSIZE);
  }
  EXPECT_TRUE(b.closed());
  auto [c, d] = mproc::Pipe();
  c.send_bytes(std::string_view("0123456789"));
  std::array<std::byte, 4> small{};
  EXPECT_THROW(d.recv_bytes_into(small), mproc::OSError);
}

TEST_F(ConnectionTest, KindAndTypeMismatchesAreSerializationErrors) {
  {
    auto [a, b] = mproc::Pipe();
    a.send(1.5);
    EXPECT_THROW(b.recv<int>(), mproc::SerializationError);
  }
  {
    auto [a, b] = mproc::Pipe();
    a.send_bytes(std::string_view("raw"));
    EXPECT_THROW(b.recv<std::string>(), mproc::SerializationError);
  }
  {
    auto [a, b] = mproc::Pipe();
    a.send(std::string("typed"));
    EXPECT_THROW(b.recv_bytes(), mproc::SerializationError);
  }
}

TEST_F(ConnectionTest, GarbageOnTheStreamIsASerializationErrorAndBreaksTheConnection) {
  auto [b, a] = mproc::Pipe(false);  // a raw write needs the write end
  const char junk[] = "this is not a frame header, just some bytes....";
  ASSERT_EQ(::write(a.fileno(), junk, sizeof junk), static_cast<ssize_t>(sizeof junk));
  EXPECT_THROW(b.recv<int>(), mproc::SerializationError);
  a.send(1);
  EXPECT_THROW(b.recv<int>(), mproc::SerializationError);  // desynchronised: stays broken
}

TEST_F(ConnectionTest, TruncatedFrameIsASerializationError) {
  std::vector<std::byte> frame;
  mproc::wire::encode_frame(std::vector<int>(100, 7), frame);
  for (std::size_t cut : {std::size_t{1}, mproc::wire::kHeaderSize - 1, mproc::wire::kHeaderSize,
                          frame.size() - 1}) {
    auto [b, a] = mproc::Pipe(false);  // a raw write needs the write end
    ASSERT_EQ(::write(a.fileno(), frame.data(), cut), static_cast<ssize_t>(cut));
    a.close();
    EXPECT_THROW(b.recv<std::vector<int>>(), mproc::SerializationError) << "cut at " << cut;
  }
}

TEST_F(ConnectionTest, PeerDyingBetweenHeaderAndBulkPayloadIsATruncatedFrame) {
  std::vector<std::byte> frame;
  mproc::wire::encode_frame(std::vector<char>(mproc::Connection::kBulkThreshold * 2, 'x'), frame);
  auto [b, a] = mproc::Pipe(false);
  // Only the header arrives (on the pipe); the payload, due on the bulk socket, never does.
  ASSERT_EQ(::write(a.fileno(), frame.data(), mproc::wire::kHeaderSize),
            static_cast<ssize_t>(mproc::wire::kHeaderSize));
  a.close();
  EXPECT_THROW(b.recv<std::vector<char>>(), mproc::SerializationError);
}

TEST_F(ConnectionTest, AHeaderClaimingGigabytesCommitsNothingUntilTheBytesArrive) {
  // A valid 32-byte header announcing 3 GiB, then the peer closes. The receiver must fail
  // with SerializationError without having allocated (and zeroed) the 3 GiB it was promised:
  // its memory follows what arrives.
  constexpr std::uint64_t claimed = std::uint64_t{3} << 30;
  for (bool typed : {false, true}) {
    std::byte header[mproc::wire::kHeaderSize];
    if (typed)
      mproc::wire::write_header(header, mproc::wire::FrameKind::value, mproc::type_tag<std::vector<char>>(), {});
    else
      mproc::wire::write_header(header, mproc::wire::FrameKind::bytes, 0, {});
    std::memcpy(header + 16, &claimed, sizeof claimed);  // the length field, then re-checksum
    const std::uint32_t header_sum = mproc::checksum(std::span<const std::byte>(header, 28));
    std::memcpy(header + 28, &header_sum, sizeof header_sum);
    auto [b, a] = mproc::Pipe(false);  // a raw write needs the write end
    ASSERT_EQ(::write(a.fileno(), header, sizeof header), static_cast<ssize_t>(sizeof header));
    a.close();
    rusage before{};
    ASSERT_EQ(getrusage(RUSAGE_SELF, &before), 0);
    try {
      if (typed)
        (void)b.recv<std::vector<char>>();
      else
        (void)b.recv_bytes();
      ADD_FAILURE() << "a truncated frame was accepted";
    } catch (const mproc::SerializationError& e) {
      EXPECT_NE(std::string(e.what()).find("after 0 of 3221225472 payload bytes"), std::string::npos) << e.what();
    }
    rusage after{};
    ASSERT_EQ(getrusage(RUSAGE_SELF, &after), 0);
    EXPECT_LT(after.ru_maxrss - before.ru_maxrss, 64 * 1024) << "KiB of peak memory grew";
  }
}

TEST_F(ConnectionTest, CorruptedPayloadIsDetected) {
  std::vector<std::byte> frame;
  mproc::wire::encode_frame(std::string(1000, 'x'), frame);
  frame[mproc::wire::kHeaderSize + 500] ^= std::byte{0x20};
  auto [b, a] = mproc::Pipe(false);  // a raw write needs the write end
  ASSERT_EQ(::write(a.fileno(), frame.data(), frame.size()), static_cast<ssize_t>(frame.size()));
  EXPECT_THROW(b.recv<std::string>(), mproc::SerializationError);
}

TEST_F(ConnectionTest, OversizedFrameIsRefusedWithoutAllocating) {
  auto [a, b] = mproc::Pipe();
  b.max_message_size(1024);
  a.send(std::vector<char>(4096, 'x'));
  EXPECT_THROW(b.recv<std::vector<char>>(), mproc::SerializationError);
}

TEST_F(ConnectionTest, MessagesOfManySizesArriveWholeAndInOrder) {
  const std::vector<std::size_t> sizes = {1,          2,           31,          32,         33,
                                          4095,       4096,        65535,       65536,      65537,
                                          1u << 20,   (1u << 20) + 1, 3u << 20, (16u << 20) + 7};
  auto [parent_end, child_end] = mproc::Pipe();
  mproc::Process sender([&] {
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      child_end.send_bytes(pattern(sizes[i], static_cast<unsigned>(i)));
      child_end.send(pattern(sizes[i], static_cast<unsigned>(i + 100)));
    }
  });
  sender.start();
  child_end.close();
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    ASSERT_EQ(parent_end.recv_bytes(), pattern(sizes[i], static_cast<unsigned>(i))) << sizes[i];
    ASSERT_EQ(parent_end.recv<std::vector<std::byte>>(), pattern(sizes[i], static_cast<unsigned>(i + 100)))
        << sizes[i];
  }
  EXPECT_THROW(parent_end.recv_bytes(), mproc::EOFError);
  sender.join();
  EXPECT_EQ(sender.exitcode(), 0);
}

TEST_F(ConnectionTest, ManySmallMessagesKeepTheirOrder) {
  auto [parent_end, child_end] = mproc::Pipe(false);
  mproc::Process sender([&] {
    for (int i = 0; i < 20000; ++i) child_end.send(std::pair<int, std::string>(i, std::string(i % 50, 'a')));
  });
  sender.start();
  child_end.close();
  for (int i = 0; i < 20000; ++i) {
    auto [sequence, text] = parent_end.recv<std::pair<int, std::string>>();
    ASSERT_EQ(sequence, i);
    ASSERT_EQ(text.size(), static_cast<std::size_t>(i % 50));
  }
  sender.join();
}

TEST_F(ConnectionTest, OneGibibyteMessageArrivesWhole) {
  constexpr std::size_t kSize = std::size_t{1} << 30;
  auto [parent_end, child_end] = mproc::Pipe();
  mproc::Process sender([&] {
    std::vector<std::byte> big(kSize);
    for (std::size_t i = 0; i < kSize; i += 4096) big[i] = static_cast<std::byte>((i >> 12) & 0xff);
    big.back() = std::byte{0x5a};
    child_end.send_bytes(big);
  });
  sender.start();
  child_end.close();
  auto received = parent_end.recv_bytes();
  ASSERT_EQ(received.size(), kSize);
  for (std::size_t i = 0; i < kSize; i += 4096)
    ASSERT_EQ(received[i], static_cast<std::byte>((i >> 12) & 0xff)) << i;
  EXPECT_EQ(received.back(), std::byte{0x5a});
  sender.join();
  EXPECT_EQ(sender.exitcode(), 0);
}

TEST_F(ConnectionTest, WaitReturnsTheReadyConnections) {
  auto [b1, a1] = mproc::Pipe(false);  // a raw write needs the write end
  auto [a2, b2] = mproc::Pipe();
  auto [a3, b3] = mproc::Pipe();
  std::vector<mproc::Connection*> readers = {&b1, &b2, &b3};
  EXPECT_TRUE(mproc::wait(readers, 20ms).empty());
  a2.send(2);
  auto ready = mproc::wait(readers, 30s);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0], &b2);
  // Two frames written in one write(2) are read ahead in one read(2): the second is then
  // only in b1's buffer, which poll(2) cannot see; wait() must still report it.
  std::vector<std::byte> first, second;
  mproc::wire::encode_frame(10, first);
  mproc::wire::encode_frame(11, second);
  first.insert(first.end(), second.begin(), second.end());
  ASSERT_EQ(::write(a1.fileno(), first.data(), first.size()), static_cast<ssize_t>(first.size()));
  EXPECT_EQ(b1.recv<int>(), 10);
  ASSERT_TRUE(b1.has_buffered_data());
  ready = mproc::wait(std::vector<mproc::Connection*>{&b1, &b3}, 0ms);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0], &b1);
  EXPECT_TRUE(b1.poll());
  EXPECT_EQ(b1.recv<int>(), 11);
}

TEST_F(ConnectionTest, WaitWakesOnAnotherProcessSending) {
  auto [parent_end, child_end] = mproc::Pipe();
  auto [idle_parent, idle_child] = mproc::Pipe();
  mproc::Process p([&] { child_end.send(std::string("ping")); });
  p.start();
  std::vector<mproc::Connection*> readers = {&idle_parent, &parent_end};
  auto ready = mproc::wait(readers, 30s);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0], &parent_end);
  EXPECT_EQ(parent_end.recv<std::string>(), "ping");
  p.join();
}

TEST_F(ConnectionTest, MoveTransfersOwnership) {
  auto [a, b] = mproc::Pipe();
  mproc::Connection moved = std::move(a);
  EXPECT_TRUE(a.closed());
  moved.send(9);
  EXPECT_EQ(b.recv<int>(), 9);
}

TEST_F(ConnectionTest, ManyPipesLeakNothing) {
  for (int i = 0; i < 200; ++i) {
    auto [a, b] = mproc::Pipe(i % 2 == 0);
    if (i % 2 == 0) a.send(i); else b.send(i);
    EXPECT_EQ(i % 2 == 0 ? b.recv<int>() : a.recv<int>(), i);
  }
}

}  // namespace
