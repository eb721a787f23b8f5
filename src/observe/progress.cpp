#include "mproc/progress.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>
#include <string_view>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>
#include <vector>

#include "mproc/error.hpp"
#include "sys/fd.hpp"

namespace mproc::detail {

namespace {

using Clock = std::chrono::steady_clock;

std::int64_t ticks(Clock::time_point when) { return when.time_since_epoch().count(); }

void write_text(int fd, const std::string& text) {
  struct iovec piece {const_cast<char*>(text.data()), text.size()};
  // A closed stderr must not kill the program with SIGPIPE, nor fail the map: ignored.
  (void)sys::write_all_nosigpipe(fd, &piece, 1);
}

int terminal_width(int fd) {
  struct winsize size {};
  if (::ioctl(fd, TIOCGWINSZ, &size) == 0 && size.ws_col >= 20) return size.ws_col;
  return 80;
}

std::string clock_text(double seconds) {
  if (!(seconds >= 0) || seconds > 359999) return "--:--";
  const auto total = static_cast<long>(seconds);
  char text[24];
  if (total >= 3600)
    std::snprintf(text, sizeof text, "%ld:%02ld:%02ld", total / 3600, total / 60 % 60, total % 60);
  else
    std::snprintf(text, sizeof text, "%02ld:%02ld", total / 60, total % 60);
  return text;
}

std::string rate_text(double per_second) {
  char text[32];
  if (per_second >= 100)
    std::snprintf(text, sizeof text, "%.0f items/s", per_second);
  else
    std::snprintf(text, sizeof text, "%.1f items/s", per_second);
  return text;
}

}  // namespace

// The bars drawn on one descriptor. On a terminal they form a block that is redrawn in place:
// the cursor goes back to the block's first line, each line is cleared and written again.
// A bar that ends leaves its final line in the block; once every bar of the block has ended,
// the block is left on the screen as it is, and later bars start a new one below it.
class ProgressBoard {
 public:
  explicit ProgressBoard(int fd) : fd_(fd) {}

  static std::shared_ptr<ProgressBoard> of(int fd) {
    static std::mutex registry_mutex;
    // Never destroyed: a bar may still end during static destruction.
    static auto* registry = new std::map<int, std::shared_ptr<ProgressBoard>>();
    std::lock_guard lock(registry_mutex);
    auto& board = (*registry)[fd];
    if (!board) board = std::make_shared<ProgressBoard>(fd);
    return board;
  }

  void add(ProgressTracker* bar) {
    std::lock_guard lock(mutex_);
    entries_.push_back(Entry{bar, {}});
    redraw_locked();
  }
  void redraw() {
    std::lock_guard lock(mutex_);
    redraw_locked();
  }
  // `bar` has ended: its last line stays as `final_line`.
  void finish(ProgressTracker* bar, std::string final_line) {
    std::lock_guard lock(mutex_);
    for (auto& entry : entries_)
      if (entry.bar == bar) {
        entry.bar = nullptr;
        entry.final_line = std::move(final_line);
      }
    redraw_locked();
  }
  void line(const std::string& text) {
    std::lock_guard lock(mutex_);
    write_text(fd_, text + "\n");
  }

 private:
  struct Entry {
    ProgressTracker* bar;  // nullptr once it has ended
    std::string final_line;
  };

  void redraw_locked() {
    const int width = terminal_width(fd_);
    const auto now = Clock::now();
    std::string out;
    // Back to the first line of the block ("cursor previous line" n times).
    if (lines_drawn_ > 0) out += "\r\x1b[" + std::to_string(lines_drawn_) + "F";
    for (const auto& entry : entries_) {
      std::string text = entry.bar ? entry.bar->render(now, true, width) : entry.final_line;
      // Never wider than the terminal: a wrapped line would break the cursor arithmetic.
      if (text.size() >= static_cast<std::size_t>(width)) text.resize(static_cast<std::size_t>(width) - 1);
      out += "\x1b[2K" + text + "\n";
    }
    lines_drawn_ = entries_.size();
    write_text(fd_, out);
    if (std::all_of(entries_.begin(), entries_.end(), [](const Entry& e) { return e.bar == nullptr; })) {
      entries_.clear();
      lines_drawn_ = 0;
    }
  }

  const int fd_;
  std::mutex mutex_;
  std::vector<Entry> entries_;
  std::size_t lines_drawn_ = 0;
};

namespace {
bool wants_bar(const Progress& options) {
  switch (options.display) {
    case Progress::Display::bar: return true;
    case Progress::Display::automatic: return ::isatty(options.fd) == 1;
    default: return false;
  }
}
}  // namespace

ProgressTracker::ProgressTracker(Progress options, std::optional<std::size_t> total)
    : options_(std::move(options)),
      as_bar_(wants_bar(options_)),
      start_(Clock::now()),
      total_(total.value_or(kUnknown)),
      next_draw_ns_(ticks(start_ + (as_bar_ ? options_.bar_interval : options_.line_interval))) {
  if (options_.display != Progress::Display::silent) board_ = ProgressBoard::of(options_.fd);
  if (as_bar_) board_->add(this);
  if (total && *total == 0) end(kDone, {});
}

ProgressTracker::~ProgressTracker() {
  if (!finished()) end(kStopped, {});
}

void ProgressTracker::advance(std::size_t items) noexcept {
  const std::size_t now_done = done_.fetch_add(items, std::memory_order_relaxed) + items;
  const std::size_t total = total_.load(std::memory_order_relaxed);
  if (total != kUnknown && now_done >= total) return end(kDone, {});
  maybe_draw();
}

void ProgressTracker::set_total(std::size_t total) noexcept {
  total_.store(total, std::memory_order_relaxed);
  if (done_.load(std::memory_order_relaxed) >= total) end(kDone, {});
}

void ProgressTracker::fail(const std::exception_ptr& error) noexcept {
  std::string why = "error";
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    why = e.what();
  } catch (...) {
  }
  end(kFailed, std::move(why));
}

void ProgressTracker::cancel() noexcept { end(kCancelled, {}); }
void ProgressTracker::stop() noexcept { end(kStopped, {}); }

void ProgressTracker::maybe_draw() noexcept {
  if (!board_ || finished()) return;
  const auto now = Clock::now();
  std::int64_t next = next_draw_ns_.load(std::memory_order_relaxed);
  if (ticks(now) < next) return;
  const auto interval = as_bar_ ? options_.bar_interval : options_.line_interval;
  // One thread draws per interval; the others go on counting.
  if (!next_draw_ns_.compare_exchange_strong(next, ticks(now + interval), std::memory_order_relaxed)) return;
  try {
    if (as_bar_)
      board_->redraw();
    else
      board_->line(render(now, false, 0));
  } catch (...) {
    // Out of memory while drawing: the map matters, its picture does not.
  }
}

void ProgressTracker::end(int outcome, std::string why) noexcept {
  int expected = kRunning;
  // The first ending wins (a map that failed and is then dropped stays "failed"); the
  // intermediate state keeps others out while why_ is written.
  if (!outcome_.compare_exchange_strong(expected, -1, std::memory_order_acq_rel)) return;
  why_ = std::move(why);
  end_ns_.store(ticks(Clock::now()), std::memory_order_relaxed);
  outcome_.store(outcome, std::memory_order_release);
  if (!board_) return;
  try {
    if (as_bar_)
      board_->finish(this, render(Clock::now(), true, 0));
    else
      board_->line(render(Clock::now(), false, 0));
  } catch (...) {
  }
}

std::string ProgressTracker::render(Clock::time_point now, bool for_bar, int width) const {
  const int outcome = outcome_.load(std::memory_order_acquire);
  const bool ended = outcome > kRunning;
  const auto until = ended ? Clock::time_point(Clock::duration(end_ns_.load(std::memory_order_relaxed))) : now;
  const double elapsed = std::chrono::duration<double>(until - start_).count();
  const std::size_t done = done_.load(std::memory_order_relaxed);
  const std::size_t total = total_.load(std::memory_order_relaxed);
  const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0;
  const bool sized = total != kUnknown;

  std::string counts = std::to_string(done);
  std::string times = "[" + clock_text(elapsed);
  if (sized) {
    counts += "/" + std::to_string(total);
    const double eta = rate > 0 ? static_cast<double>(total - std::min(done, total)) / rate : -1;
    if (!ended) times += "<" + clock_text(eta);
  } else {
    counts += " items";
  }
  times += ", " + rate_text(rate) + "]";

  std::string suffix;
  switch (outcome) {
    case kDone: suffix = " done"; break;
    case kFailed: suffix = " FAILED: " + why_; break;
    case kCancelled: suffix = " cancelled"; break;
    case kStopped: suffix = " stopped"; break;
    default: break;
  }

  std::string label = options_.label;
  if (!for_bar) {
    std::string text = label.empty() ? "" : label + ": ";
    text += counts;
    if (sized && total > 0) text += " (" + std::to_string(done * 100 / total) + "%)";
    return text + " " + times + suffix;
  }
  std::string head = label.empty() ? "" : label + " ";
  if (!sized) return head + counts + " " + times + suffix;
  const std::size_t percent = total > 0 ? std::min<std::size_t>(100, done * 100 / total) : 100;
  char pct[8];
  std::snprintf(pct, sizeof pct, "%3zu%%", percent);
  const std::string tail = " " + counts + " " + times + suffix;
  // The bar takes what the line has left, within reason.
  const int room = (width > 0 ? width : 80) - static_cast<int>(head.size() + 6 + tail.size());
  const std::size_t bar_width = static_cast<std::size_t>(std::clamp(room, 10, 40));
  const std::size_t filled = total > 0 ? std::min(bar_width, done * bar_width / total) : bar_width;
  return head + pct + "|" + std::string(filled, '#') + std::string(bar_width - filled, '-') + "|" + tail;
}

void progress_chunk_done(ProgressTracker* progress, std::size_t items, const std::exception_ptr& error) noexcept {
  if (progress == nullptr) return;
  if (!error) return progress->advance(items);
  try {
    std::rethrow_exception(error);
  } catch (const CancelledError&) {
    progress->cancel();
  } catch (...) {
    progress->fail(error);
  }
}

}  // namespace mproc::detail
