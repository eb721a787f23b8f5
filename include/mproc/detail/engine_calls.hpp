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
#include "mproc/progress.hpp"

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

// ---- a call's arguments against the function's parameters --------------------------------
// Each refusal names its culprit in the type whose static_assert fires, which the compiler
// prints: 'argument_narrows<1, int, double>' is argument 1 (counting from 1), a double, for a
// parameter of type int.

template <std::size_t Parameters, std::size_t Arguments>
struct wrong_number_of_arguments {
  static_assert(Parameters == Arguments,
                "mproc: the task function takes a different number of arguments than were passed: see "
                "'mproc::detail::wrong_number_of_arguments<parameters, arguments>' above");
};

template <std::size_t Position, class Parameter, class Argument>
struct argument_does_not_convert {
  static_assert(dependent_false<Argument>,
                "mproc: an argument cannot initialise the task function's parameter, as it could not in a "
                "direct call: see 'mproc::detail::argument_does_not_convert<position, parameter, argument>' above");
};

template <std::size_t Position, class Parameter, class Argument>
struct argument_narrows {
  static_assert(dependent_false<Argument>,
                "mproc: a floating-point argument would be narrowed to the task function's parameter type "
                "(3.7 passed for an int would arrive as 3): see 'mproc::detail::argument_narrows<position, "
                "parameter, argument>' above. Convert it explicitly, e.g. static_cast<int>(x).");
};

// What a direct call f(arg) would accept: copy-initialisation of the parameter.
template <class Parameter, class Argument>
concept initialises = std::is_convertible_v<Argument, Parameter>;
// List-initialisation's notion of narrowing (the library's std::variant uses the same trick).
template <class Parameter, class Argument>
concept initialises_without_narrowing = requires(Argument&& argument) {
  std::type_identity_t<Parameter[1]>{std::forward<Argument>(argument)};
};

// Why only floating-point arguments are held to no narrowing: a call would silently drop a
// fraction or precision (the -Wfloat-conversion cases) where the user most likely meant
// otherwise, whereas an integer literal for a std::size_t or a double parameter is what C++
// code writes every day, and a direct call accepts it too.
template <std::size_t Index, class Parameter, class Argument>
constexpr bool check_argument() {
  if constexpr (!initialises<Parameter, Argument>) {
    (void)sizeof(argument_does_not_convert<Index + 1, Parameter, std::remove_cvref_t<Argument>>);
    return false;
  } else if constexpr (std::is_floating_point_v<std::remove_cvref_t<Argument>> &&
                       !initialises_without_narrowing<Parameter, Argument>) {
    (void)sizeof(argument_narrows<Index + 1, Parameter, std::remove_cvref_t<Argument>>);
    return false;
  } else {
    return true;
  }
}

template <class Parameters, class... Args, std::size_t... Index>
constexpr bool check_arguments(std::index_sequence<Index...>) {
  // `&`, not `&&`: every bad argument is reported, not only the first.
  return (true & ... & check_argument<Index, std::tuple_element_t<Index, Parameters>, Args>());
}

template <class F, class... Args>
std::vector<std::byte> encode_arguments(Args&&... args) {
  using Parameters = ArgumentsOf<F>;
  constexpr std::size_t arity = std::tuple_size_v<Parameters>;
  if constexpr (!PlainFunction<F>) {
    return {};  // refused by require_plain_function
  } else if constexpr (arity != sizeof...(Args)) {
    (void)sizeof(wrong_number_of_arguments<arity, sizeof...(Args)>);
    return {};
  } else if constexpr (!check_arguments<Parameters, Args&&...>(std::index_sequence_for<Args...>{})) {
    return {};  // each bad argument has been reported; nothing more to say
  } else {
    return dumps(Parameters(std::forward<Args>(args)...));
  }
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
/// `Backend` is the process Engine or another backend with its check_caller() and
/// open_stream() (mproc::mpi's dispatcher).
template <bool Star, class F, class Range, class Backend>
IMapIterator<ResultOf<F>> engine_imap(Backend& engine, F f, Range&& items, std::size_t chunksize, bool ordered,
                                      std::size_t max_in_flight, typename IMapIterator<ResultOf<F>>::Deadline deadline,
                                      bool cancel_on_abandon = false,
                                      std::shared_ptr<ProgressTracker> progress = nullptr) {
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
  if (progress) {
    // A map given up (its started iterator dropped, its deadline passed) ends its bar at
    // once, on the consumer's thread: what the consumer prints next must not be drawn over.
    feed.abandon = [abandon = std::move(feed.abandon), progress, cancel_on_abandon] {
      if (abandon) abandon();
      cancel_on_abandon ? progress->cancel() : progress->stop();
    };
  }
  feed.stage = [read = chunk_reader<Item>(std::forward<Range>(items), chunksize), staged, state, abandoned,
                function = function_ref(f), progress, items_read = std::size_t{0}](std::size_t index) mutable {
    // An abandoned map reads no further (shutdown(cancel_futures) must not drain its input).
    if (abandoned && abandoned->load(std::memory_order_relaxed)) return false;
    std::vector<Item> chunk;
    if (!read(chunk)) {
      if (progress) progress->set_total(items_read);  // an unsized input's total, known at last
      return false;
    }
    items_read += chunk.size();
    TaskSpec task;
    task.invoker = code_ref(&invoke_chunk<FunctionPointer<F>, Star>);
    task.function = function;
    task.args = dumps(chunk);
    task.abandoned = abandoned;
    task.done = [state, index, progress, items = chunk.size()](std::span<const std::byte> payload,
                                                               std::exception_ptr error) {
      std::vector<R> values;
      if (!error) {
        try {
          values = loads<std::vector<R>>(payload);
        } catch (...) {
          error = std::current_exception();
        }
      }
      // Counted before the consumer can see the result: the bar is final when the map returns.
      progress_chunk_done(progress.get(), items, error);
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
