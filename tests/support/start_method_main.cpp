// main() of the test executables that run under every start method: ctest runs each of
// them once per method, naming it in MPROC_TEST_START_METHOD (see tests/CMakeLists.txt).
// freeze_support() comes first, as in any program that uses spawn or forkserver: a spawned
// worker of a test runs here.
#include <cstdlib>

#include <gtest/gtest.h>
#include <mproc/context.hpp>
#include <mproc/process.hpp>

namespace {
void nothing() {}
}  // namespace

int main(int argc, char** argv) {
  mproc::freeze_support(argc, argv);
  if (const char* method = std::getenv("MPROC_TEST_START_METHOD"); method != nullptr && *method != '\0')
    mproc::set_start_method(method);
  testing::InitGoogleTest(&argc, argv);
  // The forkserver lives as long as this process, with its descriptors, as Python's does:
  // start it before any test takes its snapshot of open descriptors.
  if (!testing::GTEST_FLAG(list_tests)) {
    mproc::Process warm_up({.context = mproc::get_context("forkserver")}, nothing);
    warm_up.start();
    warm_up.join();
  }
  return RUN_ALL_TESTS();
}
