#include "mproc/connection.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mproc/error.hpp"
#include "sys/fd.hpp"

namespace mproc {

namespace {

// Reads ahead this much so that a small frame usually costs one read(2) in all.
constexpr std::size_t kReadAheadBytes = 64 * 1024;
// Buffers grown beyond this for one huge message are released after it.
constexpr std::size_t kRetainedBufferBytes = 4 * 1024 * 1024;
// How a large payload's buffer follows its bytes (see read_bulk_to_storage): capacity
// reserved before any byte proves the length, the factor by which it grows after, and the
// bytes made part of the buffer (zeroed, then read into) at a time.
constexpr std::size_t kUnprovenCapacity = 64 * 1024 * 1024;
constexpr std::size_t kCapacityGrowth = 4;
constexpr std::size_t kBulkStep = 4 * 1024 * 1024;

[[noreturn]] void throw_os_error(int negative_errno, const char* call) { throw OSError(-negative_errno, call); }

void release_if_huge(std::vector<std::byte>& buffer) {
  if (buffer.capacity() > kRetainedBufferBytes) std::vector<std::byte>().swap(buffer);
}

constexpr std::size_t kStreamPrefixMax = wire::kStreamPrefixMax;
using wire::write_stream_prefix;

std::uint64_t read_big_endian(const std::byte* in, int bytes) {
  std::uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) value = (value << 8) | static_cast<std::uint64_t>(in[i]);
  return value;
}

}  // namespace

Connection::Connection(Connection&& other) noexcept { *this = std::move(other); }

Connection& Connection::operator=(Connection&& other) noexcept {
  if (this == &other) return *this;
  close();
  in_fd_ = std::exchange(other.in_fd_, -1);
  out_fd_ = std::exchange(other.out_fd_, -1);
  bulk_fd_ = std::exchange(other.bulk_fd_, -1);
  readable_ = other.readable_;
  writable_ = other.writable_;
  broken_ = std::exchange(other.broken_, false);
  stream_ = std::exchange(other.stream_, false);
  peer_ = std::move(other.peer_);
  max_message_size_ = other.max_message_size_;
  send_buffer_ = std::move(other.send_buffer_);
  read_buffer_ = std::move(other.read_buffer_);
  buffered_begin_ = std::exchange(other.buffered_begin_, 0);
  buffered_end_ = std::exchange(other.buffered_end_, 0);
  receive_payload_storage_ = std::move(other.receive_payload_storage_);
  receive_payload_ = std::exchange(other.receive_payload_, nullptr);
  return *this;
}

Connection::~Connection() { close(); }

void Connection::close() noexcept {
  // A stream connection holds its one socket in all three fields: close it once.
  int closed_fds[3];
  int count = 0;
  for (int* fd : {&in_fd_, &out_fd_, &bulk_fd_}) {
    const int value = std::exchange(*fd, -1);
    if (value < 0 || std::find(closed_fds, closed_fds + count, value) != closed_fds + count) continue;
    sys::close_fd(value);
    closed_fds[count++] = value;
  }
  buffered_begin_ = buffered_end_ = 0;
}

void Connection::close_descriptor(int fd) noexcept { sys::close_fd(fd); }

namespace wire {
std::size_t write_stream_prefix(std::byte* out, std::uint64_t length) noexcept {
  auto put = [&](std::size_t offset, std::uint64_t value, int bytes) {
    for (int i = 0; i < bytes; ++i) out[offset + static_cast<std::size_t>(i)] = std::byte(value >> (8 * (bytes - 1 - i)));
  };
  if (length <= kStreamShortLengthMax) {
    put(0, length, 4);
    return 4;
  }
  put(0, 0xffffffffU, 4);  // -1: an 8-byte length follows
  put(4, length, 8);
  return kStreamPrefixMax;
}
}  // namespace wire

namespace detail {
Connection adopt_stream_socket(int fd, std::string peer) noexcept {
  (void)sys::set_nonblocking(fd, false);
  Connection connection(fd, fd, fd);
  connection.stream_ = true;
  connection.peer_ = std::move(peer);
  return connection;
}
}  // namespace detail

std::string Connection::describe(const char* call) const {
  if (peer_.empty()) return call;
  return std::string(call) + " (peer " + peer_ + ")";
}

int Connection::fileno() const {
  if (closed()) throw OSError(EBADF, "connection is closed");
  return readable_ ? in_fd_ : out_fd_;
}

void Connection::check_readable() const {
  if (closed()) throw OSError(EBADF, "connection is closed");
  if (!readable_) throw OSError(EBADF, "connection is write-only");
  if (broken_) throw SerializationError("connection is unusable: an earlier frame was corrupt");
}

void Connection::check_writable() const {
  if (closed()) throw OSError(EBADF, "connection is closed");
  if (!writable_) throw OSError(EBADF, "connection is read-only");
}

void Connection::transmit(std::span<const std::byte> header, std::span<const std::byte> payload) {
  check_writable();
  auto part = [](std::span<const std::byte> bytes) { return iovec{const_cast<std::byte*>(bytes.data()), bytes.size()}; };
  if (stream_) {
    // Python's prefix, then whatever mproc puts in the message (its own header for a value;
    // nothing for bytes), then the payload: one sendmsg, never SIGPIPE.
    std::byte prefix[kStreamPrefixMax];
    const std::size_t prefix_size = write_stream_prefix(prefix, header.size() + payload.size());
    iovec parts[3] = {iovec{prefix, prefix_size}, part(header), part(payload)};
    if (int rc = sys::send_all(out_fd_, parts, 3); rc < 0) throw OSError(-rc, describe("send"));
    return;
  }
  if (payload.size() < kBulkThreshold) {
    // Header and payload in one write: the reader finds the whole frame in one read.
    iovec parts[2] = {part(header), part(payload)};
    if (int rc = sys::write_all_nosigpipe(out_fd_, parts, payload.empty() ? 1 : 2); rc < 0) throw_os_error(rc, "write");
    return;
  }
  iovec header_part = part(header);
  if (int rc = sys::write_all_nosigpipe(out_fd_, &header_part, 1); rc < 0) throw_os_error(rc, "write");
  iovec payload_part = part(payload);
  if (int rc = sys::send_all(bulk_fd_, &payload_part, 1); rc < 0) throw_os_error(rc, "send");
}

void Connection::send_frame(std::vector<std::byte>& frame) {
  std::span<const std::byte> whole(frame);
  try {
    transmit(whole.first(wire::kHeaderSize), whole.subspan(wire::kHeaderSize));
  } catch (...) {
    release_if_huge(frame);
    throw;
  }
  release_if_huge(frame);
}

void Connection::send_bytes(std::span<const std::byte> bytes) {
  if (stream_) {
    transmit({}, bytes);  // Python's bytes message: the payload alone after the prefix
    return;
  }
  std::byte header[wire::kHeaderSize];
  wire::write_header(header, wire::FrameKind::bytes, 0, bytes);
  transmit(header, bytes);  // the caller's buffer is written as it is: no copy
}

void Connection::read_exactly(std::byte* out, std::size_t n, bool frame_start) {
  std::size_t done = 0;
  while (done < n) {
    if (buffered_begin_ == buffered_end_) {
      if (read_buffer_.size() < kReadAheadBytes) read_buffer_.resize(kReadAheadBytes);
      ssize_t got = sys::read_some(in_fd_, read_buffer_.data(), read_buffer_.size());
      if (got < 0) throw OSError(static_cast<int>(-got), describe("read"));
      if (got == 0) break;
      buffered_begin_ = 0;
      buffered_end_ = static_cast<std::size_t>(got);
    }
    std::size_t take = std::min(n - done, buffered_end_ - buffered_begin_);
    std::memcpy(out + done, read_buffer_.data() + buffered_begin_, take);
    buffered_begin_ += take;
    done += take;
  }
  if (done == n) return;
  if (frame_start && done == 0) throw EOFError(describe("connection closed by peer"));
  broken_ = true;
  throw SerializationError("truncated frame: the peer closed the connection after " + std::to_string(done) + " of " +
                           std::to_string(n) + " bytes");
}

void Connection::read_bulk(std::byte* out, std::size_t n, std::size_t offset, std::size_t total) {
  std::size_t buffered = 0;
  if (stream_) {
    // The payload's first bytes may have been read ahead with its prefix.
    buffered = std::min(n, buffered_end_ - buffered_begin_);
    if (buffered > 0) std::memcpy(out, read_buffer_.data() + buffered_begin_, buffered);
    buffered_begin_ += buffered;
  }
  ssize_t got = sys::read_full(bulk_fd_, out + buffered, n - buffered);
  if (got < 0) throw OSError(static_cast<int>(-got), describe("read"));
  got += static_cast<ssize_t>(buffered);
  if (static_cast<std::size_t>(got) < n) {
    broken_ = true;
    throw SerializationError("truncated frame: the peer closed the connection after " +
                             std::to_string(offset + static_cast<std::size_t>(got)) + " of " + std::to_string(total) +
                             " payload bytes");
  }
}

void Connection::read_bulk_to_storage(std::size_t n) {
  std::vector<std::byte>& buffer = receive_payload_storage_;
  release_if_huge(buffer);
  buffer.clear();
  // Memory follows the bytes that arrive, not the length the header claims: a header that
  // announces gigabytes and is followed by nothing (hostile, or a peer that died) must not
  // make this process allocate and zero them. Two measures:
  // - pages are touched only as bytes arrive: the buffer's size grows kBulkStep at a time
  //   (zeroed, then read into), so what is committed is what arrived plus one step;
  // - address space is reserved up to kUnprovenCapacity on the header's word alone, then
  //   kCapacityGrowth times what has arrived: a payload of up to 64 MiB is read without a
  //   copy, as before; a larger one is copied a few times while it grows (a 256 MiB one
  //   once, its first 64 MiB), where doubling from small would copy it all and fault every
  //   page twice.
  std::size_t have = 0;
  while (have < n) {
    const std::size_t next = have + std::min(n - have, kBulkStep);
    if (next > buffer.capacity())
      buffer.reserve(std::min(n, std::max({kUnprovenCapacity, have * kCapacityGrowth, next})));
    buffer.resize(next);
    read_bulk(buffer.data() + have, next - have, have, n);
    have = next;
  }
}

std::uint64_t Connection::read_stream_length() {
  std::byte prefix[8];
  read_exactly(prefix, 4, true);
  const auto short_length = static_cast<std::int32_t>(static_cast<std::uint32_t>(read_big_endian(prefix, 4)));
  std::uint64_t length = 0;
  if (short_length >= 0) {
    length = static_cast<std::uint64_t>(short_length);
  } else if (short_length == -1) {
    read_exactly(prefix, 8, false);
    length = read_big_endian(prefix, 8);
  } else {
    broken_ = true;
    throw SerializationError("invalid message length " + std::to_string(short_length) + " in the stream");
  }
  if (length > max_message_size_) {
    // Refused on the prefix's word alone, before any memory is taken for it.
    broken_ = true;
    throw SerializationError("message of " + std::to_string(length) + " bytes exceeds the limit of " +
                             std::to_string(max_message_size_) + " (Connection::max_message_size)");
  }
  return length;
}

wire::FrameHeader Connection::receive_frame(std::size_t payload_limit, std::byte* bulk_destination) {
  check_readable();
  std::byte header_bytes[wire::kHeaderSize];
  wire::FrameHeader stream_header{wire::kMagic, wire::FrameKind::bytes, 0, 0, 0, 0};
  if (stream_)
    stream_header.length = read_stream_length();
  else
    read_exactly(header_bytes, sizeof header_bytes, true);
  try {
    wire::FrameHeader header = stream_ ? stream_header
                                       : wire::read_header(std::span<const std::byte, wire::kHeaderSize>(header_bytes),
                                                           max_message_size_);
    auto length = static_cast<std::size_t>(header.length);
    if (length > payload_limit) {
      // Refused before the payload is read; the rest of the stream is now unreadable, so
      // the connection closes, as Python's recv_bytes(maxlength) does.
      close();
      throw OSError(EMSGSIZE, "message of " + std::to_string(length) + " bytes exceeds the limit of " +
                                  std::to_string(payload_limit));
    }
    if (bulk_destination && header.kind != wire::FrameKind::bytes)
      throw SerializationError("expected a message sent with send_bytes(), got a value sent with send()");
    if (length >= kBulkThreshold && bulk_destination) {
      read_bulk(bulk_destination, length, 0, length);  // straight into the caller's buffer: no copy
      receive_payload_ = bulk_destination;
    } else if (length >= kBulkThreshold) {
      read_bulk_to_storage(length);
      receive_payload_ = receive_payload_storage_.data();
    } else if (buffered_end_ - buffered_begin_ >= length) {
      // The whole payload is in the read-ahead buffer: decode it in place.
      receive_payload_ = read_buffer_.data() + buffered_begin_;
      buffered_begin_ += length;
    } else {
      receive_payload_storage_.resize(length);
      read_exactly(receive_payload_storage_.data(), length, false);
      receive_payload_ = receive_payload_storage_.data();
    }
    // A stream message has no checksum of its own (Python's has none); a value inside it
    // carries mproc's frame, checked by receive_value_frame.
    if (!stream_) wire::verify_payload(header, std::span<const std::byte>(receive_payload_, length));
    return header;
  } catch (const SerializationError&) {
    broken_ = true;
    throw;
  }
}

wire::FrameHeader Connection::receive_value_frame(std::span<const std::byte>& payload) {
  wire::FrameHeader header = receive_frame();
  std::span<const std::byte> message(receive_payload_, static_cast<std::size_t>(header.length));
  if (!stream_) {
    payload = message;
    return header;
  }
  // The message is whole and the stream still in step: a bad frame inside it spoils only
  // this message, so the connection is not marked broken.
  if (message.size() < wire::kHeaderSize)
    throw SerializationError("expected a value sent with send(), got a " + std::to_string(message.size()) +
                             "-byte message that is not an mproc frame (sent with send_bytes()?)");
  header = wire::detail::check_frame(message);
  payload = message.subspan(wire::kHeaderSize);
  return header;
}

namespace {
void expect_bytes_frame(const wire::FrameHeader& header) {
  if (header.kind != wire::FrameKind::bytes)
    throw SerializationError("expected a message sent with send_bytes(), got a value sent with send()");
}
}  // namespace

std::vector<std::byte> Connection::recv_bytes(std::optional<std::size_t> maxlength) {
  wire::FrameHeader header = receive_frame(maxlength.value_or(SIZE_MAX));
  expect_bytes_frame(header);
  auto length = static_cast<std::size_t>(header.length);
  if (receive_payload_ == receive_payload_storage_.data() && length > 0) {
    // The payload was read into its own buffer: hand it over without copying.
    receive_payload_ = nullptr;
    return std::move(receive_payload_storage_);
  }
  return std::vector<std::byte>(receive_payload_, receive_payload_ + length);
}

std::size_t Connection::recv_bytes_into(std::span<std::byte> buffer) {
  wire::FrameHeader header = receive_frame(buffer.size(), buffer.data());
  expect_bytes_frame(header);
  auto length = static_cast<std::size_t>(header.length);
  if (length > 0 && receive_payload_ != buffer.data()) std::memcpy(buffer.data(), receive_payload_, length);
  return length;
}

bool Connection::poll() { return poll_for(std::chrono::nanoseconds::zero()); }

bool Connection::poll_for(std::chrono::nanoseconds timeout) {
  check_readable();
  if (has_buffered_data()) return true;
  int revents = sys::poll_fd(in_fd_, POLLIN, detail::deadline_after(timeout));
  if (revents < 0) throw_os_error(revents, "poll");
  return revents != 0;
}

namespace {
// Owns descriptors until they are handed to Connections, so a failure half-way leaks none.
struct FdPair {
  sys::UniqueFd first, second;
};

FdPair make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw OSError(errno, "pipe2");
  return {sys::UniqueFd(fds[0]), sys::UniqueFd(fds[1])};
}

FdPair make_bulk_socket_pair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) throw OSError(errno, "socketpair");
  // Larger socket buffers let big payloads stream with fewer context switches; the kernel
  // caps them at net.core.{w,r}mem_max, which is fine.
  int bytes = 4 * 1024 * 1024;
  for (int fd : fds) {
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
  }
  return {sys::UniqueFd(fds[0]), sys::UniqueFd(fds[1])};
}
}  // namespace

std::pair<Connection, Connection> Pipe(bool duplex) {
  FdPair bulk = make_bulk_socket_pair();
  FdPair first_to_second = make_pipe();
  if (!duplex) {
    ::shutdown(bulk.first.get(), SHUT_WR);
    ::shutdown(bulk.second.get(), SHUT_RD);
    return {Connection(first_to_second.first.release(), -1, bulk.first.release()),
            Connection(-1, first_to_second.second.release(), bulk.second.release())};
  }
  FdPair second_to_first = make_pipe();
  return {Connection(second_to_first.first.release(), first_to_second.second.release(), bulk.first.release()),
          Connection(first_to_second.first.release(), second_to_first.second.release(), bulk.second.release())};
}

std::vector<int> wait(std::span<const int> fds, std::optional<std::chrono::nanoseconds> timeout) {
  std::vector<sys::PollEntry> entries;
  entries.reserve(fds.size());
  for (int fd : fds) entries.push_back({fd, POLLIN, 0});
  int ready = sys::poll_fds(entries.data(), entries.size(), detail::deadline_after(timeout));
  if (ready < 0) throw_os_error(ready, "poll");
  std::vector<int> result;
  for (const auto& entry : entries)
    if (entry.revents != 0) result.push_back(entry.fd);
  return result;
}

std::vector<Connection*> wait(std::span<Connection* const> connections, std::optional<std::chrono::nanoseconds> timeout) {
  std::vector<Connection*> ready;
  // Bytes already read ahead are invisible to poll(2): such connections are ready now.
  for (Connection* connection : connections)
    if (connection->has_buffered_data()) ready.push_back(connection);
  if (!ready.empty()) return ready;
  std::vector<int> fds;
  fds.reserve(connections.size());
  for (Connection* connection : connections) fds.push_back(connection->fileno());
  std::vector<int> ready_fds = wait(std::span<const int>(fds), timeout);
  for (Connection* connection : connections)
    if (std::find(ready_fds.begin(), ready_fds.end(), connection->fileno()) != ready_fds.end())
      ready.push_back(connection);
  return ready;
}

}  // namespace mproc
