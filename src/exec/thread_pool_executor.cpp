#include "mproc/thread_pool_executor.hpp"

#include <algorithm>
#include <stdexcept>

#include "mproc/process.hpp"

namespace mproc {

namespace detail {
int default_thread_workers() {
  // Python 3.8+: min(32, cpu_count + 4) — I/O-bound work wants more threads than cores.
  return std::min(32, cpu_count() + 4);
}
}  // namespace detail

namespace {
detail::ThreadWorkersOptions workers_options(ThreadPoolExecutorOptions options) {
  if (options.max_workers && *options.max_workers <= 0)
    throw std::invalid_argument("mproc::ThreadPoolExecutor: max_workers must be at least 1");
  return {options.max_workers.value_or(detail::default_thread_workers()), std::move(options.initializer),
          options.thread_name_prefix.empty() ? std::string("ThreadPoolExecutor") : std::move(options.thread_name_prefix)};
}
}  // namespace

ThreadPoolExecutor::ThreadPoolExecutor(ThreadPoolExecutorOptions options) : workers_(workers_options(std::move(options))) {}

// ~ThreadWorkers is close() + join(), made safe for a destructor that runs on one of the
// executor's own threads; shutdown(true) here would throw there.
ThreadPoolExecutor::~ThreadPoolExecutor() = default;

void ThreadPoolExecutor::shutdown(bool wait, bool cancel_futures) {
  if (cancel_futures) workers_.cancel_pending();
  workers_.close();
  if (wait) workers_.join();
}

}  // namespace mproc
