#include "mproc/pool.hpp"

#include "process/start_method.hpp"
#include "observe/watch_options.hpp"

namespace mproc {

namespace {
detail::EngineOptions engine_options(PoolOptions options, std::shared_ptr<detail::InsightsObserver>& insights) {
  if (options.processes && *options.processes <= 0)
    throw std::invalid_argument("mproc::Pool: processes must be at least 1");
  detail::EngineOptions engine;
  engine.processes = options.processes.value_or(cpu_count());
  engine.initializer = std::move(options.initializer);
  engine.max_tasks_per_child = options.maxtasksperchild;
  engine.task_timeout = options.task_timeout;
  engine.start_method = detail::start_method_of(options.context);
  engine.worker_name_prefix = detail::worker_name_prefix(engine.start_method, "PoolWorker");
  detail::apply_watch_options(engine, options.memory_limit, options.memory_limit_backend, options.max_memory_per_child,
                              std::move(options.observers), insights);
  return engine;
}
}  // namespace

Pool::Pool(PoolOptions options)
    : terminate_on_exit_(options.terminate_on_exit), engine_(engine_options(std::move(options), insights_)) {}

Pool::~Pool() {
  // The engine's destructor closes the pool and waits for the accepted tasks (or, after
  // terminate(), for the killed workers).
  if (!terminate_on_exit_) return;
  try {
    engine_.terminate();
  } catch (const Error&) {
    // Not the creating process (a worker's or a forked child's copy of the pool): the
    // pool is not this process's to stop, and the engine's destructor leaves it alone too.
  }
}

}  // namespace mproc
