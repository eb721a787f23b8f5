// mproc/detail/task.hpp — what a pool task is on the wire: which function to run, its
// encoded arguments, and how its result or its exception comes back.
//
// A task names two pieces of code: the user's function and an "invoker", a template
// instantiated for the function's signature that decodes the arguments, calls the
// function and encodes the result. Both travel as CodeRefs (code_identity.hpp): a module's
// build id and an offset, valid in a forked worker and in an exec'd copy of the program.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/detail/code_identity.hpp"
#include "mproc/detail/shared_handle.hpp"

namespace mproc::detail {

/// Decodes arguments from `args`, runs the function at `function`, appends the encoded
/// result to `result`. Throws whatever the function throws, or SerializationError.
using Invoker = void (*)(const CodeRef& function, std::span<const std::byte> args, std::vector<std::byte>& result);

// ---- plain functions -------------------------------------------------------------------

template <class F>
concept PlainFunction = requires(F f) {
  { +f };
} && std::is_pointer_v<decltype(+std::declval<F>())> && std::is_function_v<std::remove_pointer_t<decltype(+std::declval<F>())>>;

template <class Arguments>
inline constexpr bool any_shared_by_descriptor = false;
template <class... P>
inline constexpr bool any_shared_by_descriptor<std::tuple<P...>> = (shared_by_descriptor<P> || ...);

template <class F>
struct TaskTypes;  // defined below, once ArgumentsOf and ResultOf are

/// Rejects, with a readable message, a callable that cannot be named in another process, and
/// a task whose parameters or result are handles to shared state (Queue, Lock, Value...):
/// those reach a child only by descriptor as it starts, never inside a task (Python refuses
/// them too: "Queue objects should only be shared between processes through inheritance").
template <class F>
constexpr void require_plain_function() {
  static_assert(PlainFunction<F>,
                "mproc: a pool task must be a plain function: a free function, a static member function or a "
                "lambda without captures. A capturing lambda or a function object cannot be named in a worker "
                "process; pass what it captures as arguments instead.");
  if constexpr (PlainFunction<F>) {
    static_assert(!TaskTypes<F>::shared_argument,
                  "mproc: a Queue/Lock/Value cannot be a pool task's argument: share it through the pool's "
                  "initializer (mproc::Initializer(init, queue)) or by inheritance (fork), as Python requires");
    static_assert(!TaskTypes<F>::shared_result,
                  "mproc: a Queue/Lock/Value cannot be a pool task's result: it reaches another process only "
                  "as a Process argument or through the pool's initializer (mproc::Initializer(init, queue))");
  }
}

/// Stands in for a callable that is not a plain function, so that the pool's members still
/// match it and their require_plain_function<F>() is the one error the user sees (a
/// substitution failure in a return type would only say "no matching function").
struct NotAPlainFunction {};

template <class F>
struct FunctionPointerOf {
  using type = NotAPlainFunction (*)();
};
template <PlainFunction F>
struct FunctionPointerOf<F> {
  using type = decltype(+std::declval<F>());
};
template <class F>
using FunctionPointer = typename FunctionPointerOf<F>::type;

template <class Fp>
struct Signature;
template <class R, class... P>
struct Signature<R (*)(P...)> {
  using result = R;
  using arguments = std::tuple<std::decay_t<P>...>;
};
template <class R, class... P>
struct Signature<R (*)(P...) noexcept> : Signature<R (*)(P...)> {};

template <class F>
using ResultOf = typename Signature<FunctionPointer<F>>::result;
template <class F>
using ArgumentsOf = typename Signature<FunctionPointer<F>>::arguments;

template <class F>
struct TaskTypes {
  static constexpr bool shared_argument = any_shared_by_descriptor<ArgumentsOf<F>>;
  static constexpr bool shared_result = shared_by_descriptor<std::decay_t<ResultOf<F>>>;
};

/// The wire name of a plain function (an empty CodeRef for anything else, which
/// require_plain_function has already refused).
template <class F>
CodeRef function_ref(F f) {
  if constexpr (PlainFunction<F>) {
    return code_ref(+f);
  } else {
    return {};
  }
}

/// What one map item is: the argument tuple for starmap; for map, the function's only
/// argument (a function of another arity is refused with a readable message).
template <class F, bool Star>
struct MapItem {
  using type = ArgumentsOf<F>;
};
template <class F>
struct MapItem<F, false> {
  static_assert(!PlainFunction<F> || std::tuple_size_v<ArgumentsOf<F>> == 1,
                "mproc: map/imap need a function of exactly one argument; use starmap for several");
  using type = std::conditional_t<std::tuple_size_v<ArgumentsOf<F>> == 1,
                                  std::tuple_element_t<0, std::conditional_t<std::tuple_size_v<ArgumentsOf<F>> == 1,
                                                                             ArgumentsOf<F>, std::tuple<int>>>,
                                  NotAPlainFunction>;
};
template <class F, bool Star>
using ItemOf = typename MapItem<F, Star>::type;

// ---- invokers ----------------------------------------------------------------------------

/// One call: arguments are a tuple of the function's (decayed) parameter types.
template <class Fp>
void invoke_call(const CodeRef& function, std::span<const std::byte> args, std::vector<std::byte>& result) {
  using Sig = Signature<Fp>;
  auto arguments = loads<typename Sig::arguments>(args);
  auto* fn = resolve<std::remove_pointer_t<Fp>>(function);
  if constexpr (std::is_void_v<typename Sig::result>) {
    std::apply(fn, std::move(arguments));
  } else {
    dumps(std::apply(fn, std::move(arguments)), result);
  }
}

/// A chunk of map items: arguments are a vector of single arguments (map) or of argument
/// tuples (starmap); the result is the vector of results, or their count for void.
template <class Fp, bool Star>
void invoke_chunk(const CodeRef& function, std::span<const std::byte> args, std::vector<std::byte>& result) {
  using Sig = Signature<Fp>;
  using Item = std::conditional_t<Star, typename Sig::arguments, std::tuple_element_t<0, typename Sig::arguments>>;
  auto items = loads<std::vector<Item>>(args);
  auto* fn = resolve<std::remove_pointer_t<Fp>>(function);
  auto call = [&](Item& item) -> decltype(auto) {
    if constexpr (Star) {
      return std::apply(fn, std::move(item));
    } else {
      return fn(std::move(item));
    }
  };
  if constexpr (std::is_void_v<typename Sig::result>) {
    for (auto& item : items) call(item);
    dumps(static_cast<std::uint64_t>(items.size()), result);
  } else {
    std::vector<typename Sig::result> results;
    results.reserve(items.size());
    for (auto& item : items) results.push_back(call(item));
    dumps(results, result);
  }
}

// ---- exceptions across the boundary -----------------------------------------------------

/// An exception as it travels back from a worker: the standard types are re-created as the
/// same type in the caller; others become RemoteError with the type name and message.
struct RemoteFailure {
  std::string type_name;
  std::string message;
  std::int32_t pid = 0;
  // A std::system_error's code (and its category's name), to rebuild it as itself.
  std::int32_t code = 0;
  std::string category;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(type_name, message, pid, code, category);
  }
};

/// Describes the exception being handled (call inside a catch block).
RemoteFailure describe_current_exception(std::int32_t pid);
/// Re-creates the exception: the same standard type when there is one, else RemoteError.
std::exception_ptr rebuild_exception(const RemoteFailure& failure);

}  // namespace mproc::detail
