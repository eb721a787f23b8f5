// A client of manager_server, another program: it reads the server's address on stdin,
// connects with the key, and runs a distributed job queue (Python's "using a remote manager"
// example): this program puts jobs, a worker process it starts takes them and puts results,
// and this program collects them; then it shuts the server down.
#include <cstdio>
#include <iostream>
#include <string>

#include "manager_jobs.hpp"

void worker(mproc::Proxy<JobQueue> jobs, mproc::Proxy<JobQueue> results) {
  // A spawned worker would register the typeids first, as the server and this program do.
  for (;;) {
    int job = jobs.call(&JobQueue::get);
    if (job < 0) return;
    results.call(&JobQueue::put, job * job);
  }
}

int main(int argc, char** argv) {
  mproc::freeze_support(argc, argv);
  std::string path;
  if (!std::getline(std::cin, path)) return 2;
  mproc::BaseManager manager(mproc::Address::unix_path(path), std::string(kKey));
  register_queues(manager);
  manager.connect();
  auto jobs = manager.create<JobQueue>("jobs");
  auto results = manager.create<JobQueue>("results");
  mproc::Process p(worker, jobs, results);
  p.start();
  for (int i = 1; i <= 10; ++i) jobs.call(&JobQueue::put, i);
  jobs.call(&JobQueue::put, -1);
  int sum = 0;
  for (int i = 1; i <= 10; ++i) sum += results.call(&JobQueue::get);
  p.join();
  std::printf("10 jobs through the remote manager: sum of squares %d\n", sum);
  manager.shutdown();
}
