// observer_hub — where the engine's worker events wait between the point the engine sees them
// (under its lock) and their delivery to the observers (outside it). Private to the library.
#pragma once

#include <memory>
#include <mutex>
#include <vector>

#include "mproc/observer.hpp"

namespace mproc::detail {

/// Thread safety: queue(), take() and queued() require the engine's lock, which guards the
/// queue; deliver() requires the lock hold_delivery() returns, which keeps deliveries from
/// overlapping and in order (take and deliver under one hold).
class ObserverHub {
 public:
  using Callback = void (Observer::*)(const WorkerEvent&);
  struct Pending {
    Callback callback;
    WorkerEvent event;
  };

  explicit ObserverHub(std::vector<std::shared_ptr<Observer>> observers) : observers_(std::move(observers)) {}

  /// Whether anyone listens: with no observer nothing is queued.
  bool active() const noexcept { return !observers_.empty(); }
  void queue(Callback callback, const WorkerEvent& event) { queued_.push_back(Pending{callback, event}); }
  std::size_t queued() const noexcept { return queued_.size(); }
  std::vector<Pending> take() { return std::exchange(queued_, {}); }

  std::unique_lock<std::mutex> hold_delivery() { return std::unique_lock(delivery_mutex_); }
  /// Calls every observer for every event; an observer's exception is swallowed (its failure
  /// is not the pool's).
  void deliver(const std::vector<Pending>& events) const noexcept {
    for (const auto& pending : events)
      for (const auto& observer : observers_) {
        try {
          ((*observer).*pending.callback)(pending.event);
        } catch (...) {
        }
      }
  }

 private:
  const std::vector<std::shared_ptr<Observer>> observers_;
  std::vector<Pending> queued_;
  std::mutex delivery_mutex_;
};

}  // namespace mproc::detail
