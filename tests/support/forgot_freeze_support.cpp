// A program whose main() does NOT call mproc::freeze_support() first, for
// test_start_methods. Usage: forgot_freeze_support <method> <start|return|busy> <process|pool>.
// The original starts a child by <method>; the copies it spawns run main again with the
// same environment and, per mode, start a process themselves (start), return from main at
// once (return) or run on without ever reaching mproc (busy). The original prints what
// start() reported and exits 3 when it refused, 4 when the child ran anyway.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

#include <mproc/context.hpp>
#include <mproc/error.hpp>
#include <mproc/pool.hpp>
#include <mproc/process.hpp>

namespace {
void target() {}
int square(int x) { return x * x; }
constexpr char kCopyMarker[] = "FORGOT_FREEZE_SUPPORT_COPY";
}  // namespace

int main(int argc, char** argv) {
  const bool copy = std::getenv(kCopyMarker) != nullptr;
  const char* mode = std::getenv("FORGOT_FREEZE_SUPPORT_MODE");
  if (copy && mode != nullptr && std::strcmp(mode, "return") == 0) return 0;
  if (copy && mode != nullptr && std::strcmp(mode, "busy") == 0)
    for (;;) ::pause();
  const char* method = std::getenv("FORGOT_FREEZE_SUPPORT_METHOD");
  const char* kind = std::getenv("FORGOT_FREEZE_SUPPORT_KIND");
  if (method == nullptr || kind == nullptr) return 2;
  (void)argc;
  (void)argv;
  ::setenv(kCopyMarker, "1", 1);
  try {
    if (std::strcmp(kind, "process") == 0) {
      mproc::Process child({.context = mproc::get_context(method)}, target);
      child.start();
      child.join();
    } else {
      mproc::Pool pool({.processes = 2, .context = mproc::get_context(method)});
      std::printf("result %d\n", pool.apply(square, 3));
    }
  } catch (const mproc::ProcessError& error) {
    std::printf("refused: %s\n", error.what());
    return 3;
  }
  return 4;
}
