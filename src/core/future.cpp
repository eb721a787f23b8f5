#include "mproc/future.hpp"

#include <algorithm>

namespace mproc::detail {

namespace {

bool failed(const StateCore& state) { return !state.cancelled() && state.error() != nullptr; }

// Whether `return_when` is met, given that `done` of `total` states are done and whether
// one of them failed.
bool satisfied(ReturnWhen return_when, std::size_t done, std::size_t total, bool any_failed) {
  switch (return_when) {
    case ReturnWhen::first_completed:
      return done > 0 || total == 0;
    case ReturnWhen::first_exception:
      return any_failed || done == total;
    case ReturnWhen::all_completed:
      break;
  }
  return done == total;
}

}  // namespace

void wait_for_states(std::span<StateCore* const> states, const Deadline& deadline, ReturnWhen return_when) {
  // One waiter hears of every completion; states already done are counted up front.
  auto waiter = std::make_shared<CompletionWaiter>();
  std::vector<StateCore*> registered;
  std::size_t done = 0;
  bool any_failed = false;
  for (StateCore* state : states) {
    if (state->add_waiter(waiter)) {
      registered.push_back(state);
    } else {
      ++done;
      any_failed = any_failed || failed(*state);
    }
  }
  while (!satisfied(return_when, done, states.size(), any_failed)) {
    StateCore* finished = waiter->next(deadline);
    if (finished == nullptr) break;  // timed out: the caller reports what is done
    ++done;
    any_failed = any_failed || failed(*finished);
  }
  for (StateCore* state : registered) state->remove_waiter(waiter.get());
}

CompletionOrder::CompletionOrder(std::vector<StateCore*> states, Deadline deadline)
    : states_(std::move(states)),
      deadline_(deadline),
      waiter_(std::make_shared<CompletionWaiter>()),
      yielded_(states_.size(), false),
      remaining_(states_.size()) {
  for (std::size_t i = 0; i < states_.size(); ++i) {
    index_of_.emplace(states_[i], i);
    if (!states_[i]->add_waiter(waiter_)) ready_.push_back(i);
  }
  std::reverse(ready_.begin(), ready_.end());  // popped from the back, in input order
}

CompletionOrder::~CompletionOrder() {
  for (std::size_t i = 0; i < states_.size(); ++i)
    if (!yielded_[i]) states_[i]->remove_waiter(waiter_.get());
}

std::optional<std::size_t> CompletionOrder::next() {
  if (remaining_ == 0) return std::nullopt;
  std::size_t index;
  if (!ready_.empty()) {
    index = ready_.back();
    ready_.pop_back();
  } else {
    StateCore* finished = waiter_->next(deadline_);
    if (finished == nullptr)
      throw TimeoutError(std::to_string(remaining_) + " (of " + std::to_string(states_.size()) +
                         ") futures unfinished");
    index = index_of_.at(finished);
  }
  yielded_[index] = true;
  --remaining_;
  return index;
}

}  // namespace mproc::detail
