// mproc/connection.hpp — multiprocessing.Pipe, Connection and connection.wait.
//
//   auto [parent_end, child_end] = mproc::Pipe();
//   mproc::Process p([&] { child_end.send(std::vector<int>{1, 2, 3}); });
//   p.start();
//   auto values = parent_end.recv<std::vector<int>>();
//
// Every message is one length-prefixed, checksummed frame (mproc/frame.hpp): it arrives
// whole and in order, 1 byte up to max_message_size (4 GiB by default). A frame that
// is truncated, corrupted or of another type than the one asked for throws
// SerializationError and leaves the connection unusable for further reads (the stream can
// no longer be trusted); a peer that closed its end gives EOFError.
//
// A Connection from Listener::accept() or Client (mproc/listener.hpp) runs over one
// socket and speaks Python's framing instead (a 4-byte big-endian length; -1 then an 8-byte
// length for payloads over 2 GiB), so that Python's own Connection can read what
// send_bytes() writes and the reverse; send<T> puts the same checksummed frame inside it.
//
// Thread safety: one thread may send while another receives; two concurrent senders (or
// two concurrent receivers) on the same Connection must synchronise themselves, as in Python.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/detail/process_target.hpp"
#include "mproc/detail/timeout.hpp"
#include "mproc/frame.hpp"

namespace mproc {

class Connection;
namespace detail {
/// A Connection over a connected stream socket, speaking Python's framing; takes ownership
/// of `fd` (made blocking here). `peer` (an address) is named in its errors. For Listener
/// and Client (and tests).
Connection adopt_stream_socket(int fd, std::string peer = {}) noexcept;
}  // namespace detail

/// One end of a Pipe, or a socket from a Listener or Client. Move-only; closes its
/// descriptors on destruction.
class Connection {
 public:
  /// A closed connection; Pipe() makes open ones.
  Connection() noexcept = default;
  Connection(Connection&& other) noexcept;
  Connection& operator=(Connection&& other) noexcept;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  /// Sends one value of a Serializable type (see mproc/codec.hpp).
  /// Throws: OSError (closed, read-only, peer gone: EPIPE), SerializationError.
  template <class T>
  void send(const T& value) {
    wire::encode_frame(value, send_buffer_);
    send_frame(send_buffer_);
  }

  /// Receives one value sent with send<T>. Blocks until it arrives.
  /// Throws: EOFError (peer closed), SerializationError (corrupt frame, or the frame holds
  /// another type or raw bytes), OSError (closed, write-only).
  template <class T>
  T recv() {
    std::span<const std::byte> payload;
    wire::FrameHeader header = receive_value_frame(payload);
    wire::expect_value_of<T>(header);
    return loads<T>(payload);
  }

  /// Sends raw bytes; the peer reads them with recv_bytes().
  void send_bytes(std::span<const std::byte> bytes);
  void send_bytes(std::string_view bytes) { send_bytes(std::as_bytes(std::span(bytes.data(), bytes.size()))); }

  /// Receives one message sent with send_bytes(). Throws OSError (EMSGSIZE) if it is longer
  /// than `maxlength`, and closes the connection (the stream cannot be resynchronised), as
  /// Python does.
  std::vector<std::byte> recv_bytes(std::optional<std::size_t> maxlength = std::nullopt);
  /// Receives into `buffer`; returns the message length. Throws OSError (EMSGSIZE) and
  /// closes the connection if the message does not fit.
  std::size_t recv_bytes_into(std::span<std::byte> buffer);

  /// True if a message (or end of file) is ready to be received. Never blocks.
  bool poll();
  /// Waits at most `timeout` for a message (or end of file).
  template <class Rep, class Period>
  bool poll(std::chrono::duration<Rep, Period> timeout) {
    return poll_for(detail::to_nanoseconds(timeout));
  }

  /// Closes the descriptors; the peer then sees end of file. Idempotent.
  void close() noexcept;
  bool closed() const noexcept { return bulk_fd_ < 0; }
  bool readable() const noexcept { return readable_; }
  bool writable() const noexcept { return writable_; }
  /// The descriptor that becomes readable when a message (or end of file) arrives — the
  /// one to give poll(2); for a send-only end, the descriptor messages are written to.
  /// Throws OSError if closed.
  int fileno() const;
  /// True if received bytes are buffered here, so that a poll on fileno() could miss them.
  bool has_buffered_data() const noexcept { return buffered_end_ > buffered_begin_; }

  /// Largest message accepted by recv (default 4 GiB); a bigger frame is a SerializationError,
  /// refused from its header before any memory is taken for it.
  void max_message_size(std::uint64_t bytes) noexcept { max_message_size_ = bytes; }

  /// A Connection passed to a Process started by spawn or the forkserver reaches the child
  /// by descriptor (Python pickles a Connection the same way); the child's copy is a new
  /// end on the same channel. Encoding it anywhere else (a pool task, a pipe) throws
  /// SerializationError. Bytes already read ahead into this end's buffer are not passed.
  template <class Archive>
  void save(Archive& archive) const {
    archive(detail::PassedFd{in_fd_}, detail::PassedFd{out_fd_}, detail::PassedFd{bulk_fd_}, max_message_size_, stream_, peer_);
  }
  template <class Archive>
  void load(Archive& archive) {
    detail::PassedFd in, out, bulk;
    std::uint64_t max_message_size = 0;
    bool stream = false;
    std::string peer;
    archive(in, out, bulk, max_message_size, stream, peer);
    if (stream) {
      // Three descriptors arrived for the one socket; keep one.
      for (int extra : {out.fd, bulk.fd})
        if (extra >= 0 && extra != in.fd) close_descriptor(extra);
      *this = detail::adopt_stream_socket(in.fd, std::move(peer));
    } else {
      *this = Connection(in.fd, out.fd, bulk.fd);
    }
    max_message_size_ = max_message_size;
  }

  /// Payloads of at least this many bytes travel over the bulk channel (see below).
  static constexpr std::size_t kBulkThreshold = 64 * 1024;

 private:
  friend std::pair<Connection, Connection> Pipe(bool duplex);
  friend Connection detail::adopt_stream_socket(int fd, std::string peer) noexcept;
  // `call`, and the peer's address for a socket connection: what an error message names.
  std::string describe(const char* call) const;
  static void close_descriptor(int fd) noexcept;
  Connection(int in_fd, int out_fd, int bulk_fd) noexcept
      : in_fd_(in_fd), out_fd_(out_fd), bulk_fd_(bulk_fd), readable_(in_fd >= 0), writable_(out_fd >= 0) {}

  void send_frame(std::vector<std::byte>& frame);
  void transmit(std::span<const std::byte> header, std::span<const std::byte> payload);
  // Reads and validates the next frame; its payload is then at receive_payload_. A bulk
  // payload goes to `bulk_destination` when given (it must hold payload_limit bytes).
  wire::FrameHeader receive_frame(std::size_t payload_limit = SIZE_MAX, std::byte* bulk_destination = nullptr);
  // Reads a message's length as Python writes it (stream connections).
  std::uint64_t read_stream_length();
  // Receives the next frame sent with send<T>; `payload` is then the encoded value.
  wire::FrameHeader receive_value_frame(std::span<const std::byte>& payload);
  void read_exactly(std::byte* out, std::size_t n, bool frame_start);
  // Reads n payload bytes, which are bytes [offset, offset + n) of a `total`-byte payload.
  void read_bulk(std::byte* out, std::size_t n, std::size_t offset, std::size_t total);
  // Reads an n-byte payload into receive_payload_storage_, growing it as the bytes arrive.
  void read_bulk_to_storage(std::size_t n);
  bool poll_for(std::chrono::nanoseconds timeout);
  void check_readable() const;
  void check_writable() const;

  // Two channels. Every frame header, and every payload under kBulkThreshold, goes through
  // a pipe: the cheapest round trip the kernel offers for small messages. Larger payloads
  // follow their header on a socket pair, which moves big buffers faster than a pipe. The
  // reader decides where a payload is from its header's length, so order is never in doubt.
  // A stream connection (a socket from Listener/Client) has one descriptor in all three
  // fields and uses Python's framing; its bytes are read ahead into read_buffer_ likewise.
  int in_fd_ = -1;    // pipe read end (readable ends)
  int out_fd_ = -1;   // pipe write end (writable ends)
  int bulk_fd_ = -1;  // AF_UNIX stream socket shared by both directions; -1 once closed
  bool readable_ = false;
  bool writable_ = false;
  bool broken_ = false;  // a corrupt frame desynchronised the stream
  bool stream_ = false;  // one socket, Python's framing
  std::string peer_;     // a socket connection's peer address, for errors; empty for pipes
  std::uint64_t max_message_size_ = wire::kDefaultMaxFrame;
  std::vector<std::byte> send_buffer_;
  // Bytes read ahead of the current frame: small frames usually arrive in one read.
  std::vector<std::byte> read_buffer_;
  std::size_t buffered_begin_ = 0;
  std::size_t buffered_end_ = 0;
  // The payload of the last received frame.
  std::vector<std::byte> receive_payload_storage_;
  const std::byte* receive_payload_ = nullptr;
};

/// multiprocessing.Pipe(duplex): a connected pair. With duplex = false the first end only
/// receives and the second only sends, as in Python. Throws OSError.
std::pair<Connection, Connection> Pipe(bool duplex = true);

/// multiprocessing.connection.wait: blocks until at least one connection is ready to
/// receive (a message or end of file) or `timeout` passes; returns the ready ones (empty on
/// timeout). nullopt waits forever. Throws OSError.
std::vector<Connection*> wait(std::span<Connection* const> connections,
                              std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
/// The same for raw descriptors (Process::sentinel(), sockets): returns the ready ones.
std::vector<int> wait(std::span<const int> fds, std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
/// Both of the above with a timeout of any duration type (hours::max() means no limit).
template <class Rep, class Period>
std::vector<Connection*> wait(std::span<Connection* const> connections, std::chrono::duration<Rep, Period> timeout) {
  return wait(connections, std::optional(detail::to_nanoseconds(timeout)));
}
template <class Rep, class Period>
std::vector<int> wait(std::span<const int> fds, std::chrono::duration<Rep, Period> timeout) {
  return wait(fds, std::optional(detail::to_nanoseconds(timeout)));
}

}  // namespace mproc
