// mproc/detail/engine_calls.hpp — typed tasks for the process engine, shared by the two
// façades over it (Pool and ProcessPoolExecutor): one call of a plain function, and a lazy
// map over chunks of an input range.
#pragma once

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
  static_assert(std::is_constructible_v<Arguments, Args&&...>,
                "mproc: the arguments do not match the task function's parameters");
  return dumps(Arguments(std::forward<Args>(args)...));
}

/// The task running f(args...) once, its outcome going to `state`.
template <class F, class... Args>
TaskSpec call_task(const std::shared_ptr<ResultState<ResultOf<F>>>& state, F f, Args&&... args) {
  require_plain_function<F>();
  TaskSpec task;
  task.invoker = &invoke_call<FunctionPointer<F>>;
  task.function = code_ref(+f);
  task.args = encode_arguments<F>(std::forward<Args>(args)...);
  task.done = complete_into<ResultOf<F>>(state);
  return task;
}

template <class F, bool Star>
using ItemOf = std::conditional_t<Star, ArgumentsOf<F>, std::tuple_element_t<0, ArgumentsOf<F>>>;

/// A lazy map of f over `items` on `engine`, chunk by chunk. `items` is held by reference
/// if it is an lvalue; `engine` must outlive the iterator.
template <bool Star, class F, class Range>
IMapIterator<ResultOf<F>> engine_imap(Engine& engine, F f, Range&& items, std::size_t chunksize, bool ordered,
                                      std::size_t max_in_flight, typename IMapIterator<ResultOf<F>>::Deadline deadline) {
  require_plain_function<F>();
  using R = ResultOf<F>;
  static_assert(!std::is_void_v<R>, "mproc: a lazy map needs a function that returns a value; use map for void functions");
  using Item = ItemOf<F, Star>;
  if (chunksize == 0) throw std::invalid_argument("mproc: chunksize must be at least 1");
  engine.check_caller();
  auto state = std::make_shared<IMapState<R>>();
  auto staged = std::make_shared<std::vector<TaskSpec>>();
  IMapFeed feed;
  feed.stage = [read = chunk_reader<Item>(std::forward<Range>(items), chunksize), staged, state,
                function = code_ref(+f)](std::size_t index) mutable {
    std::vector<Item> chunk;
    if (!read(chunk)) return false;
    TaskSpec task;
    task.invoker = &invoke_chunk<FunctionPointer<F>, Star>;
    task.function = function;
    task.args = dumps(chunk);
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
  feed.flush = [staged, &engine] { engine.submit(std::exchange(*staged, {})); };
  return IMapIterator<R>(std::move(state), std::move(feed), ordered, max_in_flight, deadline);
}

}  // namespace mproc::detail
