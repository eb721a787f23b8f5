// mproc/initializer.hpp — a pool's initializer and its initargs (Python's
// Pool(initializer=f, initargs=(a, b)) and ProcessPoolExecutor(initializer, initargs)).
//
//   void init(std::string prefix, int level);
//   mproc::Pool pool({.processes = 4, .initializer = mproc::Initializer(init, "log", 2)});
//   mproc::Pool forked({.initializer = [&] { counter = 0; }});   // any callable, under fork
#pragma once

#include <concepts>
#include <type_traits>
#include <utility>

#include "mproc/detail/process_target.hpp"

namespace mproc {

/// A callable that runs once in each new worker before its first task, with its initargs
/// (decay-copied). Under the fork start method any callable works; under spawn and
/// forkserver it must be a plain function (free, static member, or captureless lambda) with
/// serializable initargs — the pool throws std::invalid_argument otherwise. Initargs may be
/// a Queue, a lock or a shared Value: each worker gets it by descriptor, Python's way of
/// sharing them with pool workers.
class Initializer {
 public:
  /// No initializer.
  Initializer() = default;

  template <class F, class... Args>
    requires(!std::same_as<std::remove_cvref_t<F>, Initializer> &&
             std::is_invocable_v<std::decay_t<F>, std::decay_t<Args>&...>)
  Initializer(F&& initializer, Args&&... initargs)  // NOLINT(google-explicit-constructor): Python's keyword
      : target_(detail::make_process_target(std::forward<F>(initializer), std::forward<Args>(initargs)...)) {}

  explicit operator bool() const noexcept { return static_cast<bool>(target_); }

  /// For mproc's own use: the initializer as a fork runs it and, when nameable, by name.
  const detail::ProcessTarget& target() const noexcept { return target_; }

 private:
  detail::ProcessTarget target_;
};

}  // namespace mproc
