// mproc/detail/braced_items.hpp — the element type of a braced list given to a map:
// `pool.map(f, {1, 2, 3})`, `pool.starmap(g, {{"a", 1}, {"b", 2}})`. A braced list has no
// type of its own, so the pools' initializer_list overloads take it from the function's
// parameters (Python's `pool.map(f, [1, 2, 3])` needs no such help).
#pragma once

#include <tuple>
#include <type_traits>

namespace mproc::detail {

/// The parameter types of a callable with one call signature: a function (pointer), or a
/// class with one non-template operator() (a lambda, capturing or not). No `type` for a
/// generic lambda or an overloaded call operator.
template <class F>
struct CallableArguments {};
template <class R, class... P>
struct CallableArguments<R (*)(P...)> {
  using type = std::tuple<std::decay_t<P>...>;
};
template <class R, class... P>
struct CallableArguments<R (*)(P...) noexcept> : CallableArguments<R (*)(P...)> {};

template <class M>
struct CallOperatorArguments {};
template <class C, class R, class... P>
struct CallOperatorArguments<R (C::*)(P...)> : CallableArguments<R (*)(P...)> {};
template <class C, class R, class... P>
struct CallOperatorArguments<R (C::*)(P...) const> : CallableArguments<R (*)(P...)> {};
template <class C, class R, class... P>
struct CallOperatorArguments<R (C::*)(P...) noexcept> : CallableArguments<R (*)(P...)> {};
template <class C, class R, class... P>
struct CallOperatorArguments<R (C::*)(P...) const noexcept> : CallableArguments<R (*)(P...)> {};

template <class F>
  requires std::is_class_v<F> && requires { &F::operator(); }
struct CallableArguments<F> : CallOperatorArguments<decltype(&F::operator())> {};

/// What each element of the braced list converts to: the only parameter (map, imap), or the
/// tuple of parameters (starmap). No `type` when it cannot be known — a generic lambda, or a
/// map of a function of several parameters — which removes the braced-list overloads from
/// the call, leaving the range overloads and their messages.
template <class Arguments, bool Star>
struct BracedItemFor {
  using type = Arguments;
};
template <class... P>
struct BracedItemFor<std::tuple<P...>, false> {};
template <class P>
struct BracedItemFor<std::tuple<P>, false> {
  using type = P;
};

template <class F, bool Star>
struct BracedItem {};
template <class F, bool Star>
  requires requires { typename CallableArguments<F>::type; }
struct BracedItem<F, Star> : BracedItemFor<typename CallableArguments<F>::type, Star> {};

template <class F, bool Star>
using BracedItemOf = typename BracedItem<F, Star>::type;

}  // namespace mproc::detail
