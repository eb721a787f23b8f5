#include "mproc/process_pool_executor.hpp"

#include <stdexcept>

#include "mproc/process.hpp"
#include "process/start_method.hpp"
#include "observe/watch_options.hpp"

namespace mproc {

namespace {
detail::EngineOptions engine_options(ProcessPoolExecutorOptions options,
                                     std::shared_ptr<detail::InsightsObserver>& insights) {
  if (options.max_workers && *options.max_workers <= 0)
    throw std::invalid_argument("mproc::ProcessPoolExecutor: max_workers must be at least 1");
  if (options.max_tasks_per_child && *options.max_tasks_per_child <= 0)
    throw std::invalid_argument("mproc::ProcessPoolExecutor: max_tasks_per_child must be at least 1");
  detail::EngineOptions engine;
  engine.processes = options.max_workers.value_or(cpu_count());
  engine.initializer = std::move(options.initializer);
  engine.max_tasks_per_child = options.max_tasks_per_child;
  engine.task_timeout = options.task_timeout;
  engine.start_method = detail::start_method_of(options.mp_context);
  engine.worker_name_prefix = detail::worker_name_prefix(engine.start_method, "Process");
  detail::apply_watch_options(engine, options.memory_limit, options.memory_limit_backend, options.max_memory_per_child,
                              std::move(options.observers), insights);
  return engine;
}
}  // namespace

ProcessPoolExecutor::ProcessPoolExecutor(ProcessPoolExecutorOptions options)
    : engine_(engine_options(std::move(options), insights_)) {}

// shutdown(true) is the engine's own destructor policy (it also knows not to wait when the
// executor is dropped by one of its own callbacks, nor in a forked worker).
ProcessPoolExecutor::~ProcessPoolExecutor() { shut_down_.store(true, std::memory_order_release); }

void ProcessPoolExecutor::check_open() const {
  engine_.check_caller();
  if (shut_down_.load(std::memory_order_acquire)) throw Error("cannot schedule new futures after shutdown");
}

void ProcessPoolExecutor::shutdown(bool wait, bool cancel_futures) {
  engine_.check_caller();
  shut_down_.store(true, std::memory_order_release);
  if (cancel_futures) engine_.cancel_pending();
  engine_.close();
  if (wait) engine_.join();
}

}  // namespace mproc
