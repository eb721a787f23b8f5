// mproc/detail/engine_calls.hpp — typed tasks for the process engine, shared by the two
// façades over it (Pool and ProcessPoolExecutor): one call of a plain function, and a lazy
// map over chunks of an input range.
#pragma once

#include <atomic>
#include <cstddef>
#include <exception>
#include <memory>
#include <optional>
#include <ranges>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/detail/engine.hpp"
#include "mproc/detail/result_state.hpp"
#include "mproc/detail/task.hpp"
#include "mproc/imap_iterator.hpp"

namespace mproc::detail {

/// A completion that decodes the task's result into `state` (or stores its exception).
template <class R>
Completion complete_into(std::shared_ptr<ResultState<R>> state) {
  return [state = std::move(state)](std::span<const std::byte> payload, std::exception_ptr error) {
    if (error) return state->set_error(std::move(error));
    try {
      if constexpr (std::is_void_v<R>) {
        state->set_value({});
      } else {
        state->set_value(loads<R>(payload));
      }
    } catch (...) {
      state->set_error(std::current_exception());
    }
  };
}

template <class F, class... Args>
std::vector<std::byte> encode_arguments(Args&&... args) {
  using Arguments = ArgumentsOf<F>;
  static_assert(!PlainFunction<F> || std::is_constructible_v<Arguments, Args&&...>,
                "mproc: the arguments do not match the task function's parameters");
  return dumps(Arguments(std::forward<Args>(args)...));
}

/// The task running f(args...) once, its outcome going to `state`.
template <class F, class... Args>
TaskSpec call_task(const std::shared_ptr<ResultState<ResultOf<F>>>& state, F f, Args&&... args) {
  require_plain_function<F>();
  TaskSpec task;
  task.invoker = code_ref(&invoke_call<FunctionPointer<F>>);
  task.function = function_ref(f);
  task.args = encode_arguments<F>(std::forward<Args>(args)...);
  task.done = complete_into<ResultOf<F>>(state);
  task.control = state;
  // Python runs AsyncResult callbacks on the pool's thread: a result with callbacks must not
  // be completed by the thread that waits for it.
  task.caller_may_complete = !state->callback && !state->error_callback;
  return task;
}

/// A lazy map of f over `items` on `engine`, chunk by chunk. `items` is held by reference
/// if it is an lvalue. The map holds the engine's stream, not the engine: once the pool is
/// gone, reading further input throws Error. With `cancel_on_abandon` (executors), chunks
/// not yet started are dropped when the iterator is destroyed early or times out.
template <bool Star, class F, class Range>
IMapIterator<ResultOf<F>> engine_imap(Engine& engine, F f, Range&& items, std::size_t chunksize, bool ordered,
                                      std::size_t max_in_flight, typename IMapIterator<ResultOf<F>>::Deadline deadline,
                                      bool cancel_on_abandon = false) {
  require_plain_function<F>();
  using R = ResultOf<F>;
  static_assert(!std::is_void_v<R>, "mproc: a lazy map needs a function that returns a value; use map for void functions");
  using Item = ItemOf<F, Star>;
  if (chunksize == 0) throw std::invalid_argument("mproc: chunksize must be at least 1");
  engine.check_caller();
  auto state = std::make_shared<IMapState<R>>();
  auto staged = std::make_shared<std::vector<TaskSpec>>();
  IMapFeed feed;
  auto abandoned = abandon_flag(feed, cancel_on_abandon);
  feed.stage = [read = chunk_reader<Item>(std::forward<Range>(items), chunksize), staged, state, abandoned,
                function = function_ref(f)](std::size_t index) mutable {
    // An abandoned map reads no further (shutdown(cancel_futures) must not drain its input).
    if (abandoned && abandoned->load(std::memory_order_relaxed)) return false;
    std::vector<Item> chunk;
    if (!read(chunk)) return false;
    TaskSpec task;
    task.invoker = code_ref(&invoke_chunk<FunctionPointer<F>, Star>);
    task.function = function;
    task.args = dumps(chunk);
    task.abandoned = abandoned;
    task.done = [state, index](std::span<const std::byte> payload, std::exception_ptr error) {
      std::vector<R> values;
      if (!error) {
        try {
          values = loads<std::vector<R>>(payload);
        } catch (...) {
          error = std::current_exception();
        }
      }
      state->deliver(index, std::move(values), std::move(error));
    };
    staged->push_back(std::move(task));
    return true;
  };
  // The stream lives in the feed: released when the input ends or the iterator goes.
  auto source = IMapSource::connected(std::move(feed), staged,
                  [&](std::function<void(bool)> drain, std::function<void()> abandon) {
                    return engine.open_stream(std::move(drain), std::move(abandon));
                  });
  return IMapIterator<R>(std::move(state), std::move(source), ordered, max_in_flight, deadline);
}

}  // namespace mproc::detail
