// mproc/progress.hpp — a progress bar for a map (mpire's progress_bar=True):
//
//   pool.map(work, items, {}, mproc::Progress{.label = "resizing"});
//   for (auto r : pool.imap(work, items, 16, mproc::Progress{})) use(r);
//   executor.map(work, items, mproc::Progress{});
//
// On a terminal, a bar on stderr with done/total, rate, elapsed time and ETA, redrawn at most
// ten times a second and left in place, with its outcome, when the map ends:
//
//   resizing  45%|#############-----------------| 450/1000 [00:03<00:04, 150.2 items/s]
//
// Anywhere else (stderr is a pipe or a file: a CI log), a plain line every few seconds and
// one at the end. Items are counted, not chunks; an input without a size (an endless range)
// shows no total and no ETA until it ends. Several maps in flight draw one bar each, together.
// A map that fails or is cancelled ends its bar saying so. The bar is drawn by the thread that
// delivers results (the pool's); it moves when results arrive, not by a clock of its own.
// As with any progress bar, other output to the same terminal while a bar is on screen
// breaks the picture: print once the maps' bars have ended.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <ranges>
#include <string>

namespace mproc {

/// How a map shows its progress. A map given no Progress shows none (and costs nothing).
struct Progress {
  enum class Display {
    automatic,  // a bar if `fd` is a terminal, lines otherwise
    bar,        // a bar, redrawn in place (needs a terminal that understands ANSI escapes)
    lines,      // a plain line every `line_interval`, and one at the end
    silent,     // nothing (the map is tracked but not shown)
  };
  Display display = Display::automatic;
  /// Printed before the figures.
  std::string label = {};
  /// Where to draw: stderr by default.
  int fd = 2;
  /// The bar is redrawn at most this often.
  std::chrono::milliseconds bar_interval{100};
  /// Lines mode: a line at most this often.
  std::chrono::milliseconds line_interval{5000};
};

namespace detail {

class ProgressBoard;

/// One map's progress. Thread safety: every member may be called from any thread; the
/// counting is lock-free, drawing takes the board's lock at most every bar_interval.
/// Destroyed before it was finished (its map dropped with work left), it ends as "stopped".
class ProgressTracker {
 public:
  ProgressTracker(Progress options, std::optional<std::size_t> total);
  ~ProgressTracker();
  ProgressTracker(const ProgressTracker&) = delete;
  ProgressTracker& operator=(const ProgressTracker&) = delete;

  /// `items` more are done; at the total, the bar ends as done.
  void advance(std::size_t items) noexcept;
  /// The input ended after `total` items (an unsized input's total is known only then).
  void set_total(std::size_t total) noexcept;
  /// The map failed with `error` (the bar ends saying so), or was cancelled.
  void fail(const std::exception_ptr& error) noexcept;
  void cancel() noexcept;
  /// The map was dropped before its end: the bar ends as "stopped".
  void stop() noexcept;

  std::size_t done() const noexcept { return done_.load(std::memory_order_relaxed); }
  bool finished() const noexcept { return outcome_.load(std::memory_order_acquire) != kRunning; }

  /// The line as drawn now (no terminal escapes); `for_bar` adds the bar itself.
  std::string render(std::chrono::steady_clock::time_point now, bool for_bar, int width) const;

 private:
  enum : int { kRunning = 0, kDone, kFailed, kCancelled, kStopped };
  void end(int outcome, std::string why) noexcept;
  void maybe_draw() noexcept;

  const Progress options_;
  const bool as_bar_;
  const std::chrono::steady_clock::time_point start_;
  std::atomic<std::size_t> done_{0};
  std::atomic<std::size_t> total_;  // kUnknown until known
  std::atomic<std::int64_t> next_draw_ns_;  // steady_clock ticks since epoch
  std::atomic<int> outcome_{kRunning};
  std::atomic<std::int64_t> end_ns_{0};
  std::string why_;  // written once, before outcome_ is published
  std::shared_ptr<ProgressBoard> board_;
  static constexpr std::size_t kUnknown = static_cast<std::size_t>(-1);
  friend class ProgressBoard;
};

/// The size of `items` if the range knows it without being walked: a bar's total.
template <class Range>
std::optional<std::size_t> size_if_known(Range& items) {
  if constexpr (std::ranges::sized_range<Range>)
    return static_cast<std::size_t>(std::ranges::size(items));
  else
    return std::nullopt;
}

/// A tracker for a map with these options, or nullptr for none.
inline std::shared_ptr<ProgressTracker> make_progress(const Progress* options, std::optional<std::size_t> total) {
  if (!options) return nullptr;
  return std::make_shared<ProgressTracker>(*options, total);
}
inline std::shared_ptr<ProgressTracker> make_progress(const std::optional<Progress>& options,
                                                      std::optional<std::size_t> total) {
  return make_progress(options ? &*options : nullptr, total);
}

/// Counts a finished chunk of `items` items into `progress` (nullptr: none): its failure ends
/// the bar, a cancellation (CancelledError) ends it as cancelled.
void progress_chunk_done(ProgressTracker* progress, std::size_t items, const std::exception_ptr& error) noexcept;

}  // namespace detail
}  // namespace mproc
