// mproc/detail/process_target.hpp — what a new process runs, in the two forms the start
// methods need: a callable to run in a fork of this process, and, when the callable is a
// plain function with serializable arguments, its name and encoded arguments, which an
// exec'd copy of the program (spawn, forkserver) can run. Descriptors inside the arguments
// (a Connection, a Queue...) travel beside them as SCM_RIGHTS (PassedFd).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/detail/code_identity.hpp"
#include "mproc/detail/task.hpp"

namespace mproc::detail {

// ---- descriptors inside values ------------------------------------------------------------

/// While a child's start message is encoded: adds `fd` to the descriptors sent with it and
/// returns its index there. Throws SerializationError anywhere else (a pool task's
/// arguments, a pipe): a descriptor names nothing in another process unless it is passed.
std::uint32_t export_fd(int fd);
/// While a start message is decoded in the child: a new descriptor (close-on-exec, owned by
/// the caller) for the index'th one received. Throws SerializationError.
int import_fd(std::uint32_t index);
/// Ends the decoding of a start message: the received descriptors not imported are closed,
/// and import_fd() throws from now on (a descriptor index read from a pipe names nothing).
void end_fd_import() noexcept;

/// A descriptor as a member of a value that may be passed to a child being started. Does
/// not own the descriptor.
struct PassedFd {
  int fd = -1;
  template <class Archive>
  void save(Archive& archive) const {
    archive(export_fd(fd));
  }
  template <class Archive>
  void load(Archive& archive) {
    std::uint32_t index = 0;
    archive(index);
    fd = import_fd(index);
  }
};

// ---- named calls --------------------------------------------------------------------------

/// A function and its encoded arguments, by name (CodeRef): what an exec'd child runs.
struct NamedCall {
  CodeRef invoker;   // an Invoker
  CodeRef function;
  std::vector<std::byte> args;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(invoker, function, args);
  }
};

/// Runs `call` (its invoker resolves and decodes; a result is dropped). Throws what the
/// function throws, SerializationError when a name does not resolve or decoding fails.
inline void run_named_call(const NamedCall& call) {
  std::vector<std::byte> ignored;
  resolve<std::remove_pointer_t<Invoker>>(call.invoker)(call.function, call.args, ignored);
}

/// The Invoker of a process target: decodes the arguments and calls the function with each
/// as its parameter wants it (an lvalue for a reference parameter, moved for a value one);
/// the target's return value is dropped, as Python drops run()'s.
template <class Fp>
struct TargetInvoker;
template <class R, class... P>
struct TargetInvoker<R (*)(P...)> {
  static void invoke(const CodeRef& function, std::span<const std::byte> args, std::vector<std::byte>&) {
    auto arguments = loads<std::tuple<std::decay_t<P>...>>(args);
    end_fd_import();
    auto* fn = resolve<R(P...)>(function);
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      fn(static_cast<P&&>(std::get<I>(arguments))...);
    }(std::index_sequence_for<P...>{});
  }
};
template <class R, class... P>
struct TargetInvoker<R (*)(P...) noexcept> : TargetInvoker<R (*)(P...)> {};

/// Whether an argument of type A can be encoded as parameter type P (decayed): A itself, encoded
/// in place (a move-only Connection is never copied), or converted to P first.
template <class P, class A>
inline constexpr bool encodable_as = std::is_same_v<P, A> || std::is_constructible_v<P, const A&>;

template <class Arguments, class... Args>
inline constexpr bool encodable_arguments = false;
template <class... P, class... Args>
  requires(sizeof...(P) == sizeof...(Args))
inline constexpr bool encodable_arguments<std::tuple<P...>, Args...> = (encodable_as<P, Args> && ...);

/// The encoding of std::tuple<P...>{args...} (a tuple is its members in order), without
/// copying an argument that already has its parameter's type.
template <class... P, class... Args>
std::vector<std::byte> encode_arguments(std::type_identity<std::tuple<P...>>, const Args&... args) {
  std::vector<std::byte> out;
  Encoder encoder(out);
  auto one = [&encoder]<class Param, class Arg>(std::type_identity<Param>, const Arg& arg) {
    if constexpr (std::is_same_v<Param, Arg>) {
      mproc::encode(encoder, arg);
    } else {
      mproc::encode(encoder, Param(arg));
    }
  };
  (one(std::type_identity<P>{}, args), ...);
  (void)one;  // unused when there are no arguments
  return out;
}

/// Whether f(args...) can run in an exec'd copy of the program.
template <class F, class... Args>
inline constexpr bool nameable_call = [] {
  if constexpr (PlainFunction<F>) {
    using Arguments = ArgumentsOf<F>;
    return Serializable<Arguments> && encodable_arguments<Arguments, Args...>;
  } else {
    return false;
  }
}();

/// What a new process runs (see the header comment).
struct ProcessTarget {
  /// Runs the target in a fork of this process.
  std::function<void()> local;
  /// Names the target and encodes its arguments (call it while export_fd may be used);
  /// empty when the target is not a plain function with serializable arguments.
  std::function<NamedCall()> named;

  explicit operator bool() const noexcept { return static_cast<bool>(local); }
};

/// Binds `f` to copies of `args` (decay-copied, as std::thread does).
template <class F, class... Args>
ProcessTarget make_process_target(F&& f, Args&&... args) {
  using Fn = std::decay_t<F>;
  auto bound = std::make_shared<std::tuple<Fn, std::decay_t<Args>...>>(std::forward<F>(f), std::forward<Args>(args)...);
  ProcessTarget target;
  // A fork runs the target once: an argument that cannot be passed as an lvalue (a move-only
  // Connection taken by value) is moved into the call, as std::thread passes its arguments.
  target.local = [bound] {
    std::apply(
        [](auto& fn, auto&... a) {
          if constexpr (std::is_invocable_v<Fn&, std::decay_t<Args>&...>) {
            std::invoke(fn, a...);
          } else {
            std::invoke(std::move(fn), std::move(a)...);
          }
        },
        *bound);
  };
  if constexpr (nameable_call<Fn, std::decay_t<Args>...>) {
    target.named = [bound] {
      NamedCall call;
      call.invoker = code_ref(&TargetInvoker<FunctionPointer<Fn>>::invoke);
      call.function = code_ref(+std::get<0>(*bound));
      call.args = std::apply(
          [](const auto&, const auto&... a) { return encode_arguments(std::type_identity<ArgumentsOf<Fn>>{}, a...); },
          *bound);
      return call;
    };
  }
  return target;
}

}  // namespace mproc::detail
