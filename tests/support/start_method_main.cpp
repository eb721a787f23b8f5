// main() of the test executables that run under every start method: ctest runs each of
// them once per method, naming it in MPROC_TEST_START_METHOD (see tests/CMakeLists.txt).
// freeze_support() comes first, as in any program that uses spawn or forkserver: a spawned
// worker of a test runs here.
#include <gtest/gtest.h>
#include <mproc/context.hpp>
#include <mproc/process.hpp>

#include "support/start_method.hpp"

namespace {
void nothing() {}
}  // namespace

int main(int argc, char** argv) {
  mproc::freeze_support(argc, argv);
  mproc::test::use_start_method_of_the_test();
  testing::InitGoogleTest(&argc, argv);
  if (!testing::GTEST_FLAG(list_tests)) {
    // The forkserver starts on first use and lives as long as this process, holding
    // descriptors (its control socket, pidfd and lifeline): started here, before any test
    // records the descriptors it begins with, they are not mistaken for a test's leak (a
    // test of any method may use a forkserver context).
    mproc::Process warm_up({.context = mproc::get_context("forkserver")}, nothing);
    warm_up.start();
    warm_up.join();
  }
  return RUN_ALL_TESTS();
}
