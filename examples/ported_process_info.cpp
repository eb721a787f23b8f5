// ported_process_info — the multiprocessing documentation's first Process example, line by
// line beside its Python original (ported_process_info.py).
//
//   Python                                      mproc
//   p = Process(target=f, args=('bob',))        mproc::Process p(f, std::string("bob"));
//   p.start(); p.join()                         p.start(); p.join();
//   current_process().name                      mproc::current_process().name()
//   parent_process().pid                        mproc::current_process().parent_pid()
//   p.exitcode (an int, None while running)     p.exitcode() (std::optional<int>)
//
// `if __name__ == '__main__':` has no counterpart under fork (the default): a child starts
// from a copy of the parent, not by importing the program again. Under spawn/forkserver its
// counterpart is mproc::freeze_support() as main's first statement.
#include <mproc/mproc.hpp>

#include <cstdio>
#include <string>
#include <unistd.h>

namespace {

void info(const char* title) {
  const mproc::CurrentProcess me = mproc::current_process();
  std::printf("%s\n", title);
  std::printf("process name: %s\n", me.name().c_str());
  std::printf("parent process: %d\n", static_cast<int>(me.parent_pid().value_or(::getppid())));
  std::printf("process id: %d\n", static_cast<int>(me.pid()));
}

void f(const std::string& name) {
  info("function f");
  std::printf("hello %s\n", name.c_str());
}

}  // namespace

int main() {
  info("main line");
  mproc::Process p(f, std::string("bob"));
  p.start();   // stdout is flushed first, as Python does, so nothing buffered is printed twice
  p.join();
  std::printf("exit code: %d\n", p.exitcode().value());
  return p.exitcode() == 0 ? 0 : 1;
}
