// mproc/future.hpp — concurrent.futures.Future, wait() and as_completed().
//
//   std::vector<mproc::Future<int>> futures;
//   for (int i = 0; i < 10; ++i) futures.push_back(executor.submit(square, i));
//   auto [done, not_done] = mproc::wait(futures, 1s, mproc::FIRST_COMPLETED);
//   for (auto& f : mproc::as_completed(futures)) std::cout << f.result() << '\n';
#pragma once

#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <ranges>
#include <span>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "mproc/detail/result_state.hpp"
#include "mproc/error.hpp"

namespace mproc {

/// Python's concurrent.futures.Future: the result of a task submitted to an executor.
/// Copies share one result. Thread safety: every member may be called from any thread.
template <class R>
class Future {
 public:
  /// A future without a state: valid() is false and every other member is undefined.
  Future() = default;
  explicit Future(std::shared_ptr<detail::ResultState<R>> state) : state_(std::move(state)) {}

  bool valid() const noexcept { return state_ != nullptr; }

  /// Waits for the task and returns its value, or rethrows its exception (the same type for
  /// standard exceptions, RemoteError for others from a process, WorkerLostError when its
  /// worker died, TimeoutError when it ran past its time limit), or CancelledError if it was
  /// cancelled. Can be called again.
  R result() const {
    state_->wait_until(std::nullopt);
    return value();
  }
  /// As result(), waiting at most `timeout`; throws TimeoutError if it is not done by then.
  /// Any duration type: zero or negative only looks, a huge one (hours::max()) has no limit.
  template <class Rep, class Period>
  R result(std::chrono::duration<Rep, Period> timeout) const {
    wait_or_throw(timeout);
    return value();
  }

  /// Waits for the task; returns the exception it ended with, nullptr if it returned a value.
  /// Throws CancelledError if it was cancelled.
  std::exception_ptr exception() const {
    state_->wait_until(std::nullopt);
    return failure();
  }
  /// As exception(), waiting at most `timeout` (TimeoutError).
  template <class Rep, class Period>
  std::exception_ptr exception(std::chrono::duration<Rep, Period> timeout) const {
    wait_or_throw(timeout);
    return failure();
  }

  /// Finished or cancelled.
  bool done() const { return state_->done(); }
  /// Handed to a worker and not done yet.
  bool running() const { return state_->running(); }
  bool cancelled() const { return state_->cancelled(); }
  /// Cancels the task if it has not been handed to a worker yet. Returns true if the future
  /// is (now or already) cancelled; false once it is running or done.
  bool cancel() { return state_->cancel(); }

  /// Calls `fn(future)` (a copy of this future, an lvalue: `fn` may take `Future<R>`,
  /// `Future<R>&`, `const Future<R>&`, `auto`, `auto&` or `const auto&`) once it is done: at
  /// once on this thread if it already is, otherwise on the thread that completes it. An
  /// exception `fn` throws is reported on stderr and does not stop the other callbacks.
  template <class Fn>
  void add_done_callback(Fn fn) {
    static_assert(std::is_invocable_v<Fn&, Future<R>&>,
                  "mproc: add_done_callback needs a callable that takes the future: "
                  "[](mproc::Future<R>& future) { ... } (or auto, auto&, const auto&)");
    if constexpr (std::is_invocable_v<Fn&, Future<R>&>) {  // else: the message above, and no other
      // The callback holds the state weakly: a future never owns itself through its callbacks.
      std::weak_ptr<detail::ResultState<R>> weak = state_;
      state_->add_done_callback([weak, fn = std::move(fn)]() mutable {
        if (auto state = weak.lock()) {
          Future<R> future(std::move(state));
          fn(future);
        }
      });
    }
  }

  /// Internal: the type-independent state (for wait / as_completed).
  detail::StateCore& core() const { return *state_; }

  /// Copies of one future are equal (they share one result), as a Python future is itself;
  /// std::hash<Future<R>> agrees, so a future can key a std::unordered_map — Python's
  /// `{executor.submit(f, x): x for x in inputs}`.
  friend bool operator==(const Future& a, const Future& b) noexcept { return a.state_ == b.state_; }

 private:
  friend struct std::hash<Future>;
  template <class Rep, class Period>
  void wait_or_throw(std::chrono::duration<Rep, Period> timeout) const {
    if (!state_->wait_until(detail::deadline_after(timeout))) throw TimeoutError("the future is not done");
  }
  R value() const {
    if constexpr (std::is_void_v<R>) {
      state_->value();
    } else {
      return state_->value();
    }
  }
  std::exception_ptr failure() const {
    if (state_->cancelled()) throw CancelledError("the task was cancelled");
    return state_->error();
  }

  std::shared_ptr<detail::ResultState<R>> state_;
};

/// When mproc::wait returns (Python's concurrent.futures constants).
enum class ReturnWhen { first_completed, first_exception, all_completed };
inline constexpr ReturnWhen FIRST_COMPLETED = ReturnWhen::first_completed;
inline constexpr ReturnWhen FIRST_EXCEPTION = ReturnWhen::first_exception;
inline constexpr ReturnWhen ALL_COMPLETED = ReturnWhen::all_completed;

namespace detail {

template <class T>
struct IsFuture : std::false_type {};
template <class R>
struct IsFuture<Future<R>> : std::true_type {};

template <class Range>
concept FutureRange = std::ranges::input_range<Range> && IsFuture<std::ranges::range_value_t<Range>>::value;

/// Blocks until `return_when` holds for `states` or the deadline passes.
void wait_for_states(std::span<StateCore* const> states, const Deadline& deadline, ReturnWhen return_when);

/// The bookkeeping of one as_completed iteration, type-independent.
class CompletionOrder {
 public:
  CompletionOrder(std::vector<StateCore*> states, Deadline deadline);
  ~CompletionOrder();
  CompletionOrder(const CompletionOrder&) = delete;
  CompletionOrder& operator=(const CompletionOrder&) = delete;

  /// Index (into the constructor's states) of the next completed one, nullopt when all have
  /// been yielded. Throws TimeoutError naming how many are unfinished.
  std::optional<std::size_t> next();

 private:
  std::vector<StateCore*> states_;
  Deadline deadline_;
  std::shared_ptr<CompletionWaiter> waiter_;
  std::unordered_map<const StateCore*, std::size_t> index_of_;
  std::vector<std::size_t> ready_;  // done before the iteration started, not yet yielded
  std::vector<bool> yielded_;
  std::size_t remaining_;
};

}  // namespace detail

/// What mproc::wait returns: `auto [done, not_done] = mproc::wait(...)`.
template <class R>
struct DoneAndNotDone {
  std::vector<Future<R>> done;
  std::vector<Future<R>> not_done;
};

/// Python's concurrent.futures.wait: waits until `return_when` holds (ALL_COMPLETED: every
/// future done; FIRST_COMPLETED: any done; FIRST_EXCEPTION: any finished with an exception,
/// else all done) or `timeout` passes (nullopt: no limit), then splits the futures (duplicates
/// removed, first occurrence kept) into done and not done. Never throws TimeoutError.
template <detail::FutureRange Futures>
auto wait(const Futures& futures, std::optional<std::chrono::nanoseconds> timeout = std::nullopt,
          ReturnWhen return_when = ALL_COMPLETED) {
  using F = std::ranges::range_value_t<Futures>;
  using R = decltype(std::declval<F>().result());
  auto deadline = detail::deadline_after(timeout);
  std::vector<F> unique;
  std::vector<detail::StateCore*> states;
  std::unordered_set<const detail::StateCore*> seen;
  for (const F& future : futures)
    if (seen.insert(&future.core()).second) {
      unique.push_back(future);
      states.push_back(&future.core());
    }
  detail::wait_for_states(states, deadline, return_when);
  DoneAndNotDone<R> split;
  for (auto& future : unique) (future.done() ? split.done : split.not_done).push_back(std::move(future));
  return split;
}
/// As above, with a timeout of any duration type (a huge one, hours::max() say, means no
/// limit rather than an overflow).
template <detail::FutureRange Futures, class Rep, class Period>
auto wait(const Futures& futures, std::chrono::duration<Rep, Period> timeout, ReturnWhen return_when = ALL_COMPLETED) {
  return wait(futures, std::optional(detail::to_nanoseconds(timeout)), return_when);
}

/// The range returned by as_completed. Move-only; iterate it once.
template <class R>
class AsCompleted {
 public:
  AsCompleted(std::vector<Future<R>> futures, detail::Deadline deadline)
      : futures_(std::move(futures)), order_(std::make_unique<detail::CompletionOrder>(cores(futures_), deadline)) {}

  class iterator {
   public:
    using value_type = Future<R>;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(AsCompleted* owner) : owner_(owner) { advance(); }
    const Future<R>& operator*() const { return owner_->futures_[*index_]; }
    iterator& operator++() {
      advance();
      return *this;
    }
    void operator++(int) { advance(); }
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return !it.index_; }

   private:
    void advance() { index_ = owner_->order_->next(); }
    AsCompleted* owner_ = nullptr;
    std::optional<std::size_t> index_;
  };
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }

 private:
  static std::vector<detail::StateCore*> cores(const std::vector<Future<R>>& futures) {
    std::vector<detail::StateCore*> states;
    states.reserve(futures.size());
    for (auto& future : futures) states.push_back(&future.core());
    return states;
  }

  std::vector<Future<R>> futures_;
  std::unique_ptr<detail::CompletionOrder> order_;
};

/// Python's concurrent.futures.as_completed: yields each future (duplicates once) as it
/// completes — those already done first. Iterating past the deadline (counted from this
/// call; nullopt: none) throws TimeoutError "N (of M) futures unfinished".
template <detail::FutureRange Futures>
auto as_completed(const Futures& futures, std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
  using F = std::ranges::range_value_t<Futures>;
  using R = decltype(std::declval<F>().result());
  auto deadline = detail::deadline_after(timeout);
  std::vector<F> unique;
  std::unordered_set<const detail::StateCore*> seen;
  for (const F& future : futures)
    if (seen.insert(&future.core()).second) unique.push_back(future);
  return AsCompleted<R>(std::move(unique), deadline);
}
/// As above, with a timeout of any duration type (saturating, as for wait).
template <detail::FutureRange Futures, class Rep, class Period>
auto as_completed(const Futures& futures, std::chrono::duration<Rep, Period> timeout) {
  return as_completed(futures, std::optional(detail::to_nanoseconds(timeout)));
}

}  // namespace mproc

/// Hashes a future by the result it shares with its copies (see Future's operator==).
template <class R>
struct std::hash<mproc::Future<R>> {
  std::size_t operator()(const mproc::Future<R>& future) const noexcept {
    return std::hash<const void*>{}(future.state_.get());
  }
};
