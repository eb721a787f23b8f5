// The always-on insights' cost, measured as CPU time rather than wall time (which a shared
// machine's load swamps): a pool of 2 workers runs `rounds` imaps of 100,000 one-item tasks
// (inc, chunksize 1); the program prints the CPU time (user + system) of the parent and of
// the workers (RUSAGE_CHILDREN, after the pool has joined them) per task. It uses only API
// that predates insights, so the same file builds against the commit before them:
//
//   g++ -O2 -std=c++20 -I<tree>/include bench/observe_cost.cpp <build>/src/libmproc.a -pthread -o cost
//   ./cost 10
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ranges>
#include <sys/resource.h>

#include <mproc/mproc.hpp>

namespace {

int inc(int x) { return x + 1; }

double cpu_seconds(int who) {
  struct rusage usage {};
  getrusage(who, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 10;
  constexpr int kTasks = 100'000;
  const double self_before = cpu_seconds(RUSAGE_SELF);
  const auto start = std::chrono::steady_clock::now();
  long long sum = 0;
  {
    mproc::Pool pool(2);
    for (int round = 0; round < rounds; ++round)
      for (int r : pool.imap(inc, std::views::iota(0, kTasks), 1)) sum += r;
    pool.close();
    pool.join();
  }
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double tasks = static_cast<double>(rounds) * kTasks;
  std::printf("tasks %.0f  wall %.0f ns/task  parent CPU %.0f ns/task  workers CPU %.0f ns/task  (sum %lld)\n", tasks,
              wall * 1e9 / tasks, (cpu_seconds(RUSAGE_SELF) - self_before) * 1e9 / tasks,
              cpu_seconds(RUSAGE_CHILDREN) * 1e9 / tasks, sum);
}
