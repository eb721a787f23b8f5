#include "mproc/listener.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cerrno>
#include <mutex>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "ipc/handshake.hpp"
#include "mproc/error.hpp"
#include "ipc/socket_address.hpp"
#include "sys/fd.hpp"
#include "sys/random.hpp"
#include "sys/socket.hpp"

namespace mproc {

namespace {

using Clock = std::chrono::steady_clock;

// Handshakes in progress at once; beyond it new connections wait in the kernel's backlog
// until one finishes or times out, so a flood of stalled peers costs bounded memory.
constexpr std::size_t kMaxPendingHandshakes = 256;
// Connections taken from the backlog per wake-up, so pending handshakes are served too.
constexpr int kAcceptBatch = 16;

enum class Step { waiting, done, failed, dropped };

// Advances a handshake over a socket as far as the bytes already there allow, sending what
// it produces (small: it fits the fresh socket's buffer; `deadline` bounds it anyway).
// failed: the peer's key or protocol was wrong (`why` says how); dropped: the peer closed,
// reset or stalled a send (`error` holds the errno, 0 for end of file).
Step advance(int fd, detail::Handshake& handshake, detail::HandshakeReader& reader, const sys::Deadline& deadline,
             std::string& why, int& error) {
  for (;;) {
    for (const auto& message : handshake.take_outgoing()) {
      auto framed = detail::frame_handshake_message(message);
      if (int rc = sys::send_all_until(fd, framed.data(), framed.size(), deadline); rc < 0) {
        // A peer that refused our key has often gone by the time the #FAILURE# goes out.
        if (handshake.failed()) break;
        error = -rc;
        return Step::dropped;
      }
    }
    if (handshake.failed()) {
      why = handshake.error();
      return Step::failed;
    }
    if (handshake.done()) return Step::done;
    std::byte buffer[detail::kMaxHandshakeMessage + 4];
    long got = sys::recv_now(fd, buffer, std::min(reader.wanted(), sizeof buffer));
    if (got == -EAGAIN) return Step::waiting;
    if (got <= 0) {
      error = static_cast<int>(-got);
      return Step::dropped;
    }
    if (!reader.feed(std::span<const std::byte>(buffer, static_cast<std::size_t>(got)), why)) return Step::failed;
    if (reader.complete()) {
      handshake.on_message(reader.message());
      reader.reset();
    }
  }
}

std::array<std::byte, detail::kChallengeRandomBytes> challenge_random() {
  std::array<std::byte, detail::kChallengeRandomBytes> random;
  if (int rc = sys::fill_random(random.data(), random.size()); rc < 0) throw OSError(-rc, "getrandom");
  return random;
}

// `peer` names the other end in the connection's errors; `listening` is given for an
// accepted connection, whose Unix peer usually has no name.
Connection finish_connection(sys::UniqueFd fd, const Address& peer, const Address* listening = nullptr) {
  // Each message is one write: Nagle's algorithm could only delay it.
  (void)sys::set_no_delay(fd.get());
  std::string name = peer.to_string();
  if (name.empty() && listening) name = "a client of " + listening->to_string();
  return detail::adopt_stream_socket(fd.release(), std::move(name));
}

}  // namespace

struct Listener::State {
  struct Pending {
    sys::UniqueFd fd;
    Address peer;
    detail::Handshake handshake;
    detail::HandshakeReader reader;
    Clock::time_point deadline;
  };

  Address address = Address::unnamed_unix();
  ListenerOptions options;
  sys::UniqueFd fd;
  sys::UniqueFd wake;  // eventfd: close() from another thread interrupts the poll
  std::atomic<bool> closed{false};
  // One thread at a time drives the listening socket and the pending handshakes (it holds
  // the turn); the others wait for the turn with their own deadline. The holder blocks only
  // in poll, which close() interrupts. (A mutex+condition rather than a timed_mutex held
  // across the poll: ThreadSanitizer cannot follow pthread_mutex_clocklock.)
  std::mutex turn_mutex;
  std::condition_variable turn_free;
  bool turn_taken = false;                        // guarded by turn_mutex
  std::vector<std::unique_ptr<Pending>> pending;  // owned by the turn's holder
  mutable std::mutex last_mutex;
  std::optional<Address> last_accepted;  // guarded by last_mutex
  // The Unix socket file this Listener created (to remove on close, only if it is still ours).
  bool owns_path = false;
  dev_t path_dev = 0;
  ino_t path_ino = 0;

  [[noreturn]] void throw_closed() const {
    throw OSError(EBADF, "accept on " + address.to_string() + ": listener is closed");
  }
};

Listener::Listener(const Address& address, ListenerOptions options) : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.options = std::move(options);
  if (s.options.backlog < 0) s.options.backlog = 0;
  int last_error = EADDRNOTAVAIL;
  for (const sys::SocketAddress& candidate : detail::resolve(address, true)) {
    if (int rc = sys::listen_on(candidate, s.options.backlog, s.fd); rc < 0) {
      last_error = -rc;
      continue;
    }
    break;
  }
  if (!s.fd) throw OSError(last_error, "listen on " + address.to_string());
  sys::SocketAddress bound;
  if (int rc = sys::local_address(s.fd.get(), bound); rc < 0) throw OSError(-rc, "getsockname " + address.to_string());
  s.address = address.kind() == Address::Kind::tcp ? detail::to_address(bound) : address;
  if (address.kind() == Address::Kind::unix_path) {
    struct stat info {};
    if (::stat(address.path().c_str(), &info) == 0) {
      s.owns_path = true;
      s.path_dev = info.st_dev;
      s.path_ino = info.st_ino;
    }
  }
  s.wake.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!s.wake) {
    const int error = errno;
    close();
    throw OSError(error, "eventfd");
  }
  if (int rc = sys::set_nonblocking(s.fd.get(), true); rc < 0) {
    close();
    throw OSError(-rc, "fcntl");
  }
}

Listener::Listener(Listener&&) noexcept = default;

Listener& Listener::operator=(Listener&& other) noexcept {
  if (this != &other) {
    close();
    state_ = std::move(other.state_);
  }
  return *this;
}

Listener::~Listener() { close(); }

bool Listener::closed() const noexcept { return !state_ || state_->closed.load(std::memory_order_acquire); }

const Address& Listener::address() const {
  if (!state_) throw OSError(EBADF, "listener was moved from");
  return state_->address;
}

std::optional<Address> Listener::last_accepted() const {
  if (!state_) return std::nullopt;
  std::lock_guard lock(state_->last_mutex);
  return state_->last_accepted;
}

void Listener::close() noexcept {
  if (!state_) return;
  State& s = *state_;
  if (s.closed.exchange(true, std::memory_order_acq_rel)) return;
  if (s.wake) {
    const std::uint64_t one = 1;
    (void)!::write(s.wake.get(), &one, sizeof one);
  }
  // Wait for the thread polling on the descriptors to leave before closing them: closing a
  // descriptor another thread polls could let a new one take its number under it. Then keep
  // the turn for good.
  {
    std::unique_lock lock(s.turn_mutex);
    s.turn_free.wait(lock, [&] { return !s.turn_taken; });
    s.turn_taken = true;
    s.turn_free.notify_all();  // waiters see closed and leave
  }
  s.pending.clear();
  s.fd.reset();
  if (s.owns_path) {
    // Remove the file only if it is still the one we bound: another server may have
    // replaced it since.
    struct stat info {};
    if (::stat(s.address.path().c_str(), &info) == 0 && info.st_dev == s.path_dev && info.st_ino == s.path_ino)
      ::unlink(s.address.path().c_str());
  }
}

Connection Listener::accept() { return *accept_until(std::nullopt); }

std::optional<Connection> Listener::accept_until(const detail::Deadline& deadline) {
  if (!state_) throw OSError(EBADF, "accept on a moved-from listener");
  State& s = *state_;
  {
    std::unique_lock lock(s.turn_mutex);
    auto my_turn = [&] { return !s.turn_taken || s.closed.load(std::memory_order_acquire); };
    if (!deadline) {
      s.turn_free.wait(lock, my_turn);
    } else if (!s.turn_free.wait_until(lock, *deadline, my_turn)) {
      return std::nullopt;
    }
    if (s.closed.load(std::memory_order_acquire)) s.throw_closed();
    s.turn_taken = true;
  }
  // Gives the turn back however this call ends. Everyone waiting is woken: one of them may
  // be close(), and another a caller that will leave without taking the turn.
  struct TurnRelease {
    State& s;
    ~TurnRelease() {
      std::lock_guard lock(s.turn_mutex);
      s.turn_taken = false;
      s.turn_free.notify_all();
    }
  } release{s};
  std::vector<sys::PollEntry> entries;
  for (;;) {
    if (s.closed.load(std::memory_order_acquire)) s.throw_closed();
    const auto now = Clock::now();
    // Stalled handshakes: dropped at their deadline (a slowloris peer holds a slot, never
    // a thread, and only for handshake_timeout).
    std::erase_if(s.pending, [&](const auto& p) { return p->deadline <= now; });

    entries.clear();
    entries.push_back({s.wake.get(), POLLIN, 0});
    const bool room = s.pending.size() < kMaxPendingHandshakes;
    entries.push_back({room ? s.fd.get() : -1, POLLIN, 0});
    sys::Deadline wake_at = deadline;
    for (const auto& p : s.pending) {
      entries.push_back({p->fd.get(), POLLIN, 0});
      if (!wake_at || p->deadline < *wake_at) wake_at = p->deadline;
    }
    int ready = sys::poll_fds(entries.data(), entries.size(), wake_at);
    if (ready < 0) throw OSError(-ready, "poll on " + s.address.to_string());
    if (ready == 0) {
      if (deadline && Clock::now() >= *deadline) return std::nullopt;
      continue;
    }
    if (entries[0].revents != 0) continue;  // close(): seen at the top

    // Handshakes that progressed. Entries 2.. follow pending's order at poll time.
    for (std::size_t i = 2, index = 0; i < entries.size(); ++i) {
      auto& p = s.pending[index];
      if (entries[i].revents == 0) {
        ++index;
        continue;
      }
      std::string why;
      int error = 0;
      Step step = advance(p->fd.get(), p->handshake, p->reader, p->deadline, why, error);
      if (step == Step::waiting) {
        ++index;
        continue;
      }
      std::unique_ptr<State::Pending> finished = std::move(p);
      s.pending.erase(s.pending.begin() + static_cast<std::ptrdiff_t>(index));
      if (step == Step::dropped) continue;
      if (step == Step::failed)
        throw AuthenticationError("authentication of " + finished->peer.to_string() + " on " + s.address.to_string() +
                                  " failed: " + why);
      {
        std::lock_guard info(s.last_mutex);
        s.last_accepted = finished->peer;
      }
      return finish_connection(std::move(finished->fd), finished->peer, &s.address);
    }

    if (entries[1].revents == 0) continue;
    for (int taken = 0; taken < kAcceptBatch && s.pending.size() < kMaxPendingHandshakes; ++taken) {
      sys::UniqueFd fd;
      sys::SocketAddress peer_address;
      int rc = sys::accept_pending(s.fd.get(), fd, peer_address);
      if (rc == -EAGAIN) break;
      if (rc < 0) {
        // Out of descriptors or memory: the connection stays queued; say so rather than
        // spin on a socket that keeps polling readable.
        throw OSError(-rc, "accept on " + s.address.to_string());
      }
      Address peer = Address::unnamed_unix();
      try {
        peer = detail::to_address(peer_address);
      } catch (const Error&) {
      }
      if (!s.options.authkey) {
        std::lock_guard info(s.last_mutex);
        s.last_accepted = peer;
        return finish_connection(std::move(fd), peer, &s.address);
      }
      auto p = std::make_unique<State::Pending>(State::Pending{
          std::move(fd), std::move(peer),
          detail::Handshake(detail::Handshake::Role::server, *s.options.authkey, challenge_random()),
          detail::HandshakeReader{}, detail::saturating_add(Clock::now(), s.options.handshake_timeout)});
      std::string why;
      int error = 0;
      // Sends the challenge. On loopback the peer may answer before the next read, and the
      // whole handshake finish here.
      switch (advance(p->fd.get(), p->handshake, p->reader, p->deadline, why, error)) {
        case Step::waiting:
          s.pending.push_back(std::move(p));
          break;
        case Step::failed:
          throw AuthenticationError("authentication of " + p->peer.to_string() + " on " + s.address.to_string() +
                                    " failed: " + why);
        case Step::done: {
          std::lock_guard info(s.last_mutex);
          s.last_accepted = p->peer;
          return finish_connection(std::move(p->fd), p->peer, &s.address);
        }
        case Step::dropped:
          break;
      }
    }
  }
}

Connection Client(const Address& address, ClientOptions options) {
  const sys::Deadline deadline = detail::deadline_after(options.timeout);
  sys::UniqueFd fd;
  int last_error = EADDRNOTAVAIL;
  for (const sys::SocketAddress& candidate : detail::resolve(address, false)) {
    int rc = sys::connect_to(candidate, deadline, fd);
    if (rc == 0) break;
    last_error = -rc;
    if (rc == -ETIMEDOUT) break;  // the time is spent for every other address too
  }
  if (!fd) {
    if (last_error == ETIMEDOUT)
      throw OSError(ETIMEDOUT, "connect to " + address.to_string() + ": no answer within the timeout");
    throw OSError(last_error, "connect to " + address.to_string());
  }
  if (!options.authkey) return finish_connection(std::move(fd), address);

  detail::Handshake handshake(detail::Handshake::Role::client, *options.authkey, challenge_random());
  detail::HandshakeReader reader;
  for (;;) {
    std::string why;
    int error = 0;
    switch (advance(fd.get(), handshake, reader, deadline, why, error)) {
      case Step::done:
        return finish_connection(std::move(fd), address);
      case Step::failed:
        throw AuthenticationError("authentication with " + address.to_string() + " failed: " + why);
      case Step::dropped:
        if (error == 0) throw EOFError("connection to " + address.to_string() + " closed during the handshake");
        throw OSError(error, "handshake with " + address.to_string());
      case Step::waiting:
        break;
    }
    int revents = sys::poll_fd(fd.get(), POLLIN, deadline);
    if (revents < 0) throw OSError(-revents, "poll on " + address.to_string());
    if (revents == 0)
      throw AuthenticationError("authentication with " + address.to_string() +
                                " failed: the handshake did not finish within the timeout");
  }
}

}  // namespace mproc
