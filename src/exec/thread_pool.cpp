#include "mproc/thread_pool.hpp"

#include "mproc/process.hpp"

namespace mproc {

namespace {
detail::ThreadWorkersOptions workers_options(ThreadPoolOptions options) {
  if (options.processes && *options.processes <= 0)
    throw std::invalid_argument("mproc::ThreadPool: processes must be at least 1");
  return {options.processes.value_or(cpu_count()), std::move(options.initializer), "ThreadPool"};
}
}  // namespace

ThreadPool::ThreadPool(ThreadPoolOptions options) : workers_(workers_options(std::move(options))) {}

void ThreadPool::terminate() {
  workers_.close();
  workers_.fail_pending(std::make_exception_ptr(CancelledError("the pool was terminated before the task started")));
}

}  // namespace mproc
