// Tests that run under every start method (tests/support/start_method_main.cpp) ask here
// which one this run uses, to skip what only fork can do (a capturing lambda as a target).
#pragma once

#include <cstdlib>
#include <string>

#include <gtest/gtest.h>
#include <mproc/context.hpp>

namespace mproc::test {

/// The environment variable naming the start method of this run (set by ctest).
inline constexpr char kStartMethodVariable[] = "MPROC_TEST_START_METHOD";

/// Sets the start method named in MPROC_TEST_START_METHOD, if any: in the test main, and
/// first thing in a helper program (which runs before main, from static initialisation).
inline void use_start_method_of_the_test() {
  if (const char* method = std::getenv(kStartMethodVariable); method != nullptr && *method != '\0')
    mproc::set_start_method(method, true);
}

inline bool running_under_fork() { return mproc::get_start_method() == "fork"; }

}  // namespace mproc::test

/// Skips the current test unless the start method is fork: it needs what only a fork has
/// (a capturing lambda as a target or initializer, the parent's memory as the child's).
#define MPROC_FORK_ONLY()                                                                   \
  do {                                                                                      \
    if (!::mproc::test::running_under_fork())                                               \
      GTEST_SKIP() << "needs the fork start method (a capturing callable or inherited memory)"; \
  } while (false)
