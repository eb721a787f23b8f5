// A manager server as its own program (Python's BaseManager + get_server().serve_forever()):
// it serves two queues to any program that knows its address and key, until one asks it to
// shut down. It prints its address on stdout (the test pipes it into manager_client).
//
//   ./manager_server /tmp/jobs.sock | ./manager_client
#include <cstdio>
#include <string>
#include <unistd.h>

#include "manager_jobs.hpp"

int main(int argc, char** argv) {
  std::string path = argc > 1 ? argv[1] : "/tmp/mproc-manager-example-" + std::to_string(::getpid()) + ".sock";
  mproc::BaseManager manager(mproc::Address::unix_path(path), std::string(kKey));
  register_queues(manager);
  auto server = manager.get_server();
  std::printf("%s\n", server.address().path().c_str());
  std::fflush(stdout);
  server.serve_forever();
  std::fprintf(stderr, "manager_server: shut down by a client\n");
}
