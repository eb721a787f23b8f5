#include "sys/shm_tracker.hpp"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <linux/futex.h>
#include <mutex>
#include <new>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "sys/fd.hpp"
#include "sys/pidfd.hpp"
#include "sys/signals.hpp"

namespace mproc::sys {

namespace {
constexpr std::size_t kNameCapacity = 1 + 255 + 1;  // '/', the name, NUL
constexpr std::uint32_t kFree = 0;
constexpr std::uint32_t kTracked = 1;
}  // namespace

// Lives in the table mapping: plain data (a zero-filled page is a valid, free slot), the
// state word accessed atomically. Filled and freed by the registering process only; read by
// the tracker only after that process has ended.
struct TrackerSlot {
  std::uint32_t state;  // kFree or kTracked; published last (release), so a slot whose
                        // writer died half-way through filling it is never read as tracked
  FileId id;
  char name[kNameCapacity];
};

namespace {

constexpr std::size_t kSlotsPerTable = 4096;
constexpr std::size_t kMaxTables = 64;

struct Table {
  // Set to 1 by the tracker once it holds nothing of the user's but the pidfd (descriptors
  // closed, signals reset): the creating process waits for it (a futex word).
  std::uint32_t ready;
  // Slots [0, used) have been handed out at least once. The others were never written, and
  // their pages never touched: neither a registration nor the tracker's final scan reads
  // them, so a table costs memory for the peak number of registrations only.
  std::uint32_t used;
  TrackerSlot slots[kSlotsPerTable];
};

constexpr std::size_t kTableBytes = (sizeof(Table) + 4095) / 4096 * 4096;

// The table's words are plain integers accessed atomically (not std::atomic, and not through
// sys/futex, which takes std::atomic): the table is a zero-filled mapping whose slot pages are
// never touched until used, so nothing constructs its objects.
std::uint32_t load_acquire(const std::uint32_t& word) noexcept { return __atomic_load_n(&word, __ATOMIC_ACQUIRE); }
void store_release(std::uint32_t& word, std::uint32_t value) noexcept { __atomic_store_n(&word, value, __ATOMIC_RELEASE); }

// A shared (not FUTEX_PRIVATE) futex on a table word: the tracker and its creating process
// are two processes mapping the same page. Raw syscalls: async-signal-safe in the tracker.
void wake_word(std::uint32_t& word) noexcept { ::syscall(SYS_futex, &word, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0); }
void wait_word(std::uint32_t& word, std::uint32_t expected, const timespec& relative) noexcept {
  ::syscall(SYS_futex, &word, FUTEX_WAIT, expected, &relative, nullptr, 0);
}

// This process's registrations. After a fork the child's copy belongs to the parent: the
// child builds its own (see this_process_tracker).
struct ProcessTracker {
  explicit ProcessTracker(pid_t owner_pid) noexcept : owner(owner_pid) {}
  const pid_t owner;
  std::mutex mutex;  // guards tables, count, and the claiming and filling of slots
  Table* tables[kMaxTables] = {};
  std::size_t count = 0;
};

std::atomic<ProcessTracker*> current_tracker{nullptr};

ProcessTracker* this_process_tracker() noexcept {
  const pid_t self = ::getpid();
  ProcessTracker* tracker = current_tracker.load(std::memory_order_acquire);
  if (tracker != nullptr && tracker->owner == self) return tracker;
  // None yet, or the parent's, inherited through fork: make this process's own. The parent's
  // is left untouched (another parent thread may have held its mutex at fork time) and
  // leaked, a few hundred bytes once per forked child that creates a segment.
  auto* fresh = new (std::nothrow) ProcessTracker(self);
  if (fresh == nullptr) return nullptr;
  if (current_tracker.compare_exchange_strong(tracker, fresh, std::memory_order_acq_rel)) return fresh;
  delete fresh;
  return tracker;  // another thread of this process installed one first
}

// --- The tracker process -----------------------------------------------------------------
//
// It is a fork of a process that may have had other threads, so it inherits their locks
// (malloc's, stdio's) in whatever state they were: from the fork on it makes only
// async-signal-safe calls and never allocates.

// Appends text to a stack buffer written to stderr in one write when full or at the end.
class WarningLine {
 public:
  void add(const char* text) noexcept {
    for (; *text != '\0'; ++text) {
      if (length_ == sizeof buffer_) flush();
      buffer_[length_++] = *text;
    }
  }
  void add(long number) noexcept {
    char digits[24];
    int n = 0;
    do {
      digits[n++] = static_cast<char>('0' + number % 10);
      number /= 10;
    } while (number > 0 && n < 23);
    char text[24];
    for (int i = 0; i < n; ++i) text[i] = digits[n - 1 - i];
    text[n] = '\0';
    add(text);
  }
  void flush() noexcept {
    std::size_t done = 0;
    while (done < length_) {
      ssize_t n = ::write(STDERR_FILENO, buffer_ + done, length_ - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // no stderr: nothing to say it with
      done += static_cast<std::size_t>(n);
    }
    length_ = 0;
  }

 private:
  char buffer_[512];
  std::size_t length_ = 0;
};

void close_descriptors_except(int keep) noexcept {
  // close_range (Linux 5.9); a loop over the descriptor limit otherwise.
  auto close_from_to = [](unsigned first, unsigned last) {
    if (first > last) return;
    if (::close_range(first, last, 0) == 0) return;
    struct rlimit limit{};
    unsigned end = ::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < 65536 ? static_cast<unsigned>(limit.rlim_cur)
                                                                                       : 65536;
    for (unsigned fd = first; fd <= last && fd < end; ++fd) ::close(static_cast<int>(fd));
  };
  const auto kept = static_cast<unsigned>(keep);
  close_from_to(3, kept - 1);
  close_from_to(kept + 1, ~0u);
}

[[noreturn]] void tracker_main(Table* table, int pidfd, pid_t owner) noexcept {
  // Its own session: no terminal's Ctrl-C or hang-up, and no kill() of the user's process
  // group reaches it; a signal meant to end the program ends the program, and the tracker
  // then cleans up after it (Python's tracker ignores SIGINT and SIGTERM for that reason).
  ::setsid();
  if (::chdir("/") != 0) {
    // Stay where we are: only a mount point kept busy.
  }
  ::prctl(PR_SET_NAME, "mproc-tracker", 0, 0, 0);
  // The user's pipes and sockets must see EOF when the user closes them: keep only the pidfd
  // and stderr (for the warning); stdin and stdout become /dev/null. A process that runs
  // with its standard descriptors closed may have got the pidfd as one of them: move it up.
  const int original_pidfd = pidfd;
  if (pidfd <= STDERR_FILENO) {
    int moved = ::fcntl(pidfd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
    if (moved < 0) ::_exit(1);  // cannot watch the process: nothing safe to do
    pidfd = moved;
  }
  int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) {
    ::dup2(null, STDIN_FILENO);
    ::dup2(null, STDOUT_FILENO);
    if (original_pidfd == STDERR_FILENO) ::dup2(null, STDERR_FILENO);
  }
  close_descriptors_except(pidfd);
  // Signals are blocked since before the fork: reset the user's handlers, ignore the
  // termination requests, then unblock.
  reset_caught_signals_to_default();
  struct sigaction ignore{};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  for (int signal : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE}) ::sigaction(signal, &ignore, nullptr);
  unblock_all_signals();
  store_release(table->ready, 1);
  wake_word(table->ready);

  // Sleep until the process has ended: its pidfd becomes readable when its last thread has
  // exited, however it ended. (Not a pipe's EOF: forked children of the process would keep
  // a pipe's write end open past its death.)
  for (;;) {
    int rc = poll_fd(pidfd, POLLIN, std::nullopt);  // sys/fd: restarts after signals
    if (rc > 0) break;
    if (rc < 0) {
      // Not expected (ENOMEM); never clean up while the process may still run: retry later.
      struct timespec second{1, 0};
      ::nanosleep(&second, nullptr);
    }
  }

  // Everything the process wrote to the table is visible: it has ended.
  WarningLine warning;
  int removed = 0;
  const std::uint32_t used = load_acquire(table->used);
  for (std::uint32_t i = 0; i < used && i < kSlotsPerTable; ++i) {
    const TrackerSlot& slot = table->slots[i];
    if (load_acquire(slot.state) != kTracked) continue;
    if (shm_remove_if(slot.name, slot.id) != 0) continue;  // gone already, or someone else's now
    if (removed++ == 0) {
      warning.add("mproc resource_tracker: process ");
      warning.add(static_cast<long>(owner));
      warning.add(" ended without unlinking its shared_memory objects; unlinked:");
    }
    warning.add(" ");
    warning.add(slot.name);
  }
  if (removed > 0) {
    warning.add("\n");
    warning.flush();
  }
  ::_exit(0);
}

// Starts the tracker process for `table`, watching the calling process, and waits until it
// is set up: when the first tracked segment's constructor returns, the tracker holds none of
// the process's descriptors (a pipe the process closes reaches EOF at once). Returns 0 or
// -errno.
int start_tracker(Table* table) noexcept {
  const pid_t owner = ::getpid();
  // Opened here and inherited: the tracker watches this very process from its first
  // instant, with no window in which the process could die unobserved or its pid be reused.
  int pidfd = pidfd_open(owner);
  if (pidfd < 0) return pidfd;
  int rc = 0;
  {
    // No handler of the user's may run in the helpers before they reset the dispositions.
    AllSignalsBlocked blocked;
    // _Fork, not fork: no pthread_atfork handler (the user's, a library's) runs for these
    // internal helpers, which only ever make async-signal-safe calls.
    pid_t middle = ::_Fork();
    if (middle == 0) {
      // The intermediate process exits at once, so the tracker is re-parented (to init or
      // the nearest subreaper) instead of staying the user's child: never the user's
      // zombie, never in the way of a wait(-1).
      pid_t tracker = ::_Fork();
      if (tracker == 0) tracker_main(table, pidfd, owner);
      ::_exit(tracker < 0 ? 1 : 0);
    }
    if (middle < 0) rc = -errno;
    close_fd(pidfd);
    if (middle > 0) {
      int exitcode = 0;
      // ECHILD: SIGCHLD is ignored (the kernel reaped it) or a waitpid(-1) elsewhere did;
      // the tracker almost surely started.
      if (reap(middle, true, &exitcode) == 1 && exitcode != 0) rc = -EAGAIN;
    }
  }
  // Its set-up is a few dozen system calls; the bound only guards against a tracker killed
  // before it got there (it then cleans nothing up: report it).
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (rc == 0 && load_acquire(table->ready) == 0) {
    const auto left = deadline - Clock::now();
    if (left <= Clock::duration::zero()) return -ETIMEDOUT;
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    wait_word(table->ready, 0, timespec{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)});
  }
  return rc;
}

// A slot of `table` that is free, or null. The caller holds the tracker's mutex.
TrackerSlot* claim(Table& table) noexcept {
  const std::uint32_t used = table.used;
  for (std::uint32_t i = 0; i < used; ++i)
    if (load_acquire(table.slots[i].state) == kFree) return &table.slots[i];
  if (used == kSlotsPerTable) return nullptr;
  store_release(table.used, used + 1);
  return &table.slots[used];
}

}  // namespace

int shm_track(const char* name, const FileId& id, TrackerSlot** slot) noexcept {
  const std::size_t length = name != nullptr ? std::strlen(name) : 0;
  if (length < 2 || length >= kNameCapacity || name[0] != '/') return -EINVAL;
  ProcessTracker* tracker = this_process_tracker();
  if (tracker == nullptr) return -ENOMEM;
  std::lock_guard guard(tracker->mutex);
  for (std::size_t t = 0;; ++t) {
    if (t == tracker->count) {
      if (t == kMaxTables) return -ENOSPC;
      void* mapped = ::mmap(nullptr, kTableBytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
      if (mapped == MAP_FAILED) return -errno;
      auto* table = static_cast<Table*>(mapped);  // zero-filled: every slot free, used = 0
      if (int rc = start_tracker(table); rc < 0) {
        ::munmap(mapped, kTableBytes);
        return rc;
      }
      // The tracker has its mapping; children forked from now on do not inherit the table
      // (they could only corrupt it), nor pin its memory.
      ::madvise(mapped, kTableBytes, MADV_DONTFORK);
      tracker->tables[t] = table;
      ++tracker->count;
    }
    if (TrackerSlot* free_slot = claim(*tracker->tables[t])) {
      std::memcpy(free_slot->name, name, length + 1);
      free_slot->id = id;
      store_release(free_slot->state, kTracked);
      *slot = free_slot;
      return 0;
    }
  }
}

void shm_untrack(TrackerSlot* slot) noexcept {
  if (slot != nullptr) store_release(slot->state, kFree);
}

}  // namespace mproc::sys
