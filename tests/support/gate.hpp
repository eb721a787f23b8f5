// A gate that a test shares with its workers and children whatever the start method: two
// FIFOs named after the test process's pid. Nothing has to be inherited (a spawned child
// inherits no descriptor and sees the program's initial globals), so a worker finds the
// gate by name: its mproc parent's pid, or its own pid on one of the test's threads.
//
//   Test process                      Worker (child, pool worker, or a test thread)
//   mproc::testing::Gate gate;
//   ... start work ...                Gate::announce();   // "I have started"
//   gate.wait_started();              Gate::pass();       // waits until the gate opens
//   gate.open();
//
// The test process opens both FIFOs read-write, so a worker's open() never blocks (there
// is always a reader and a writer) and a worker waiting in pass() never sees end of file
// while the gate exists; when the gate is destroyed, such a worker sees end of file and
// passes.
#pragma once

#include <cerrno>
#include <chrono>
#include <fcntl.h>
#include <poll.h>
#include <stdexcept>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

#include <mproc/process.hpp>

namespace mproc::testing {

class Gate {
 public:
  /// In the test process: makes and opens the FIFOs. One gate per process at a time.
  Gate() {
    for (int i = 0; i < 2; ++i) {
      std::string path = path_of(::getpid(), kNames[i]);
      ::unlink(path.c_str());  // a leftover of an earlier process that had this pid
      if (::mkfifo(path.c_str(), 0600) != 0) throw std::runtime_error("mkfifo " + path);
      fds_[i] = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
      if (fds_[i] < 0) throw std::runtime_error("open " + path);
    }
  }
  ~Gate() {
    for (int i = 0; i < 2; ++i) {
      ::close(fds_[i]);
      ::unlink(path_of(::getpid(), kNames[i]).c_str());
    }
  }
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;

  /// Waits until `count` more announce() calls have happened; false if `timeout` passed first.
  bool wait_started(int count = 1, std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (int got = 0; got < count;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd entry{fds_[0], POLLIN, 0};
      int ready = ::poll(&entry, 1, left.count() > 0 ? static_cast<int>(left.count()) : 0);
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) return false;
      char byte;
      if (::read(fds_[0], &byte, 1) == 1) ++got;
    }
    return true;
  }

  /// How many announce() calls happened since the last count (or wait): does not wait.
  int take_started() {
    int count = 0;
    pollfd entry{fds_[0], POLLIN, 0};
    char buffer[256];
    while (::poll(&entry, 1, 0) == 1) {
      ssize_t got = ::read(fds_[0], buffer, sizeof buffer);
      if (got <= 0) break;
      count += static_cast<int>(got);
    }
    return count;
  }

  /// Lets `count` waiters pass (a waiter takes one byte).
  void open(int count = 64) {
    std::string bytes(static_cast<std::size_t>(count), 'x');
    if (::write(fds_[1], bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size()))
      throw std::runtime_error("write (gate)");
  }

  /// In a worker: says that it has started.
  static void announce() {
    int fd = ::open(path_of(owner(), kNames[0]).c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error("open (gate, started)");
    char byte = 's';
    ssize_t written = ::write(fd, &byte, 1);
    ::close(fd);
    if (written != 1) throw std::runtime_error("write (gate, started)");
  }

  /// In a worker: waits until the test opens the gate (or destroys it).
  static void pass() {
    int fd = ::open(path_of(owner(), kNames[1]).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error("open (gate, release)");
    char byte;
    while (::read(fd, &byte, 1) < 0 && errno == EINTR) {
    }
    ::close(fd);
  }

 private:
  static constexpr const char* kNames[2] = {"started", "release"};

  // The test process: the mproc parent of a worker, or this process itself.
  static pid_t owner() { return mproc::current_process().parent_pid().value_or(::getpid()); }

  static std::string path_of(pid_t pid, const char* name) {
    return "/tmp/mproc-test-gate-" + std::to_string(pid) + "-" + name;
  }

  int fds_[2] = {-1, -1};
};

}  // namespace mproc::testing
