// ported_worker_queues — worker processes fed through a task queue and stopped by 'STOP'
// sentinels, from the multiprocessing documentation's examples (Python original:
// ported_worker_queues.py).
//
//   Python                                      mproc
//   task_queue.put((mul, (i, 7)))               a function cannot travel in a queue (it would
//                                               be an address): name it, here an enum, and
//                                               look it up in the worker
//   task_queue.put('STOP')                      a sentinel of the queue's own type: a
//                                               std::optional<Task> whose nullopt is STOP
//   for func, args in iter(input.get, 'STOP'):  while (auto task = input.get()) { ... }
//   '%s says that %s%s = %s' % ...              std::format-like snprintf
//   freeze_support()                            mproc::freeze_support() (needed for spawn /
//                                               forkserver; harmless under fork)
#include <mproc/mproc.hpp>

#include <chrono>
#include <cstdio>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

enum class Func { mul, plus };
struct Task {
  Func func;
  int a;
  int b;
};
using TaskOrStop = std::optional<Task>;     // nullopt: 'STOP'
constexpr std::nullopt_t STOP = std::nullopt;

void short_random_sleep() {
  thread_local std::mt19937 random(std::random_device{}());
  std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, 5000)(random)));
}
int mul(int a, int b) {
  short_random_sleep();
  return a * b;
}
int plus(int a, int b) {
  short_random_sleep();
  return a + b;
}

std::string calculate(const Task& task) {
  const bool is_mul = task.func == Func::mul;
  int result = is_mul ? mul(task.a, task.b) : plus(task.a, task.b);
  char line[160];
  std::snprintf(line, sizeof line, "%s says that %s(%d, %d) = %d", mproc::current_process().name().c_str(),
                is_mul ? "mul" : "plus", task.a, task.b, result);
  return line;
}

void worker(mproc::Queue<TaskOrStop> input, mproc::Queue<std::string> output) {
  while (TaskOrStop task = input.get()) output.put(calculate(*task));
}

void test() {
  constexpr int NUMBER_OF_PROCESSES = 4;
  std::vector<Task> TASKS1, TASKS2;
  for (int i = 0; i < 20; ++i) TASKS1.push_back({Func::mul, i, 7});
  for (int i = 0; i < 10; ++i) TASKS2.push_back({Func::plus, i, 8});

  // Create queues
  mproc::Queue<TaskOrStop> task_queue;
  mproc::Queue<std::string> done_queue;

  // Submit tasks
  for (const Task& task : TASKS1) task_queue.put(task);

  // Start worker processes
  for (int i = 0; i < NUMBER_OF_PROCESSES; ++i) mproc::Process(worker, task_queue, done_queue).start();

  // Get and print results
  std::printf("Unordered results:\n");
  for (std::size_t i = 0; i < TASKS1.size(); ++i) std::printf("\t %s\n", done_queue.get().c_str());

  // Add more tasks using put()
  for (const Task& task : TASKS2) task_queue.put(task);

  // Get and print some more results
  for (std::size_t i = 0; i < TASKS2.size(); ++i) std::printf("\t %s\n", done_queue.get().c_str());

  // Tell child processes to stop
  for (int i = 0; i < NUMBER_OF_PROCESSES; ++i) task_queue.put(STOP);
}

}  // namespace

int main() {
  mproc::freeze_support();
  test();
  return 0;   // the workers read their STOP and exit; returning from main joins them
}
