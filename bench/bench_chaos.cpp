// Chaos soak: a Pool and a ProcessPoolExecutor run tasks for N seconds while a thread SIGKILLs
// random workers of both. Checks mproc's first promise under fire: every task ends exactly
// once, with its own result or a typed WorkerLostError (the task that was running on a killed
// worker), never lost, never twice, never with another task's result; the pools replace their
// workers and keep going.
//
//   bench_chaos [seconds = 10] [kill interval in ms = 20]
//
// Prints tasks, kills, completed, lost (WorkerLostError), other errors, duplicated, missing
// and wrong results, per pool and in total; exits 1 if any task was duplicated, missing, wrong
// or failed with anything but WorkerLostError. Not a timing benchmark: the figures are counts.
// A 10 s run is a ctest smoke test (label "chaos"); docs/performance.md has a 2-minute run.
//
// Victims are taken from worker_pids(), which lists live children of this process; a pid is
// only reused after its worker was reaped, so a kill can at worst hit a worker just replaced.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <random>
#include <semaphore>
#include <string>
#include <thread>
#include <vector>

#include <mproc/mproc.hpp>

namespace {

using Clock = std::chrono::steady_clock;

// A task that takes a few hundred microseconds to a couple of milliseconds (so kills often land
// on a running task) and returns a value only its own id gives.
std::uint64_t work(std::uint64_t id) {
  const auto until = Clock::now() + std::chrono::microseconds(200 + (id * 7919) % 1800);
  std::uint64_t x = id | 1;
  while (Clock::now() < until) x ^= x << 13, x ^= x >> 7, x ^= x << 17;
  return id * 3 + 1 + (x == 0);  // x is never 0: a xorshift state stays non-zero
}

enum Ending : int { kOk, kLost, kOther, kWrong };

// One pool's ledger: how each task ended, counted per task so a second ending shows.
struct Ledger {
  explicit Ledger(std::size_t capacity) : endings(capacity) {}
  std::vector<std::atomic<int>> endings;  // endings recorded per task id
  std::atomic<std::uint64_t> submitted{0};
  std::atomic<std::uint64_t> counts[4] = {};
  std::counting_semaphore<> in_flight{64};

  void end(std::uint64_t id, Ending how) {
    endings[id].fetch_add(1);
    counts[how].fetch_add(1);
    in_flight.release();
  }
  void end_with(std::uint64_t id, std::exception_ptr error) {
    try {
      std::rethrow_exception(error);
    } catch (const mproc::WorkerLostError&) {
      end(id, kLost);
    } catch (const std::exception& other) {
      std::fprintf(stderr, "task %llu: unexpected error: %s\n", static_cast<unsigned long long>(id), other.what());
      end(id, kOther);
    }
  }
};

struct Totals {
  std::uint64_t tasks = 0, ok = 0, lost = 0, other = 0, wrong = 0, duplicated = 0, missing = 0;
};

Totals tally(const char* name, Ledger& ledger) {
  Totals t;
  t.tasks = ledger.submitted.load();
  t.ok = ledger.counts[kOk].load();
  t.lost = ledger.counts[kLost].load();
  t.other = ledger.counts[kOther].load();
  t.wrong = ledger.counts[kWrong].load();
  for (std::uint64_t id = 0; id < t.tasks; ++id) {
    const int n = ledger.endings[id].load();
    if (n == 0) ++t.missing;
    if (n > 1) t.duplicated += static_cast<std::uint64_t>(n - 1);
  }
  std::printf("%-20s tasks %9llu  ok %9llu  lost %5llu  other %llu  wrong %llu  duplicated %llu  missing %llu\n", name,
              static_cast<unsigned long long>(t.tasks), static_cast<unsigned long long>(t.ok),
              static_cast<unsigned long long>(t.lost), static_cast<unsigned long long>(t.other),
              static_cast<unsigned long long>(t.wrong), static_cast<unsigned long long>(t.duplicated),
              static_cast<unsigned long long>(t.missing));
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 10.0;
  const int kill_every_ms = argc > 2 ? std::atoi(argv[2]) : 20;
  if (seconds <= 0 || kill_every_ms <= 0) {
    std::fprintf(stderr, "usage: %s [seconds > 0] [kill interval in ms > 0]\n", argv[0]);
    return 2;
  }
  // Room for every task a run can submit: at most one per ~200 µs of work per worker, doubled.
  const auto capacity = static_cast<std::size_t>(seconds * 2 * 2 * 5000) + 1000;
  auto pool_ledger = std::make_unique<Ledger>(capacity);
  auto executor_ledger = std::make_unique<Ledger>(capacity);
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> kills{0};
  {
    mproc::Pool pool(2);
    mproc::ProcessPoolExecutor executor(2);

    std::thread pool_feeder([&] {
      Ledger& ledger = *pool_ledger;
      while (!stop.load()) {
        if (!ledger.in_flight.try_acquire_for(std::chrono::milliseconds(50))) continue;
        const std::uint64_t id = ledger.submitted.load();
        if (id >= ledger.endings.size()) break;
        pool.apply_async(mproc::CallOptions{.callback = [&ledger, id](std::uint64_t r) {
                                              ledger.end(id, r == id * 3 + 1 ? kOk : kWrong);
                                            },
                                            .error_callback = [&ledger, id](std::exception_ptr e) {
                                              ledger.end_with(id, e);
                                            }},
                         work, id);
        ledger.submitted.store(id + 1);
      }
    });
    std::thread executor_feeder([&] {
      Ledger& ledger = *executor_ledger;
      while (!stop.load()) {
        if (!ledger.in_flight.try_acquire_for(std::chrono::milliseconds(50))) continue;
        const std::uint64_t id = ledger.submitted.load();
        if (id >= ledger.endings.size()) break;
        executor.submit(work, id).add_done_callback([&ledger, id](mproc::Future<std::uint64_t> f) {
          if (auto error = f.exception()) ledger.end_with(id, error);
          else ledger.end(id, f.result() == id * 3 + 1 ? kOk : kWrong);
        });
        ledger.submitted.store(id + 1);
      }
    });
    std::thread killer([&] {
      std::mt19937_64 random(12345);
      while (!stop.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(kill_every_ms));
        std::vector<int> pids = random() % 2 ? pool.worker_pids() : executor.worker_pids();
        if (pids.empty()) continue;
        if (::kill(pids[random() % pids.size()], SIGKILL) == 0) kills.fetch_add(1);
      }
    });

    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    stop = true;
    killer.join();
    pool_feeder.join();
    executor_feeder.join();
    // Every task submitted must end now that the killing stopped.
    pool.close();
    pool.join();
    executor.shutdown(true);
  }
  std::printf("chaos soak: %.0f s, a SIGKILL every %d ms, Pool(2) and ProcessPoolExecutor(2)\n", seconds, kill_every_ms);
  const Totals a = tally("Pool", *pool_ledger);
  const Totals b = tally("ProcessPoolExecutor", *executor_ledger);
  const std::uint64_t lost = a.lost + b.lost;
  std::printf("kills %llu  tasks %llu  lost %llu  duplicated %llu  missing %llu  wrong %llu  other errors %llu\n",
              static_cast<unsigned long long>(kills.load()), static_cast<unsigned long long>(a.tasks + b.tasks),
              static_cast<unsigned long long>(lost), static_cast<unsigned long long>(a.duplicated + b.duplicated),
              static_cast<unsigned long long>(a.missing + b.missing), static_cast<unsigned long long>(a.wrong + b.wrong),
              static_cast<unsigned long long>(a.other + b.other));
  const bool sound = a.duplicated + b.duplicated + a.missing + b.missing + a.wrong + b.wrong + a.other + b.other == 0 &&
                     lost <= kills.load();
  std::printf("%s\n", sound ? "OK" : "FAILED");
  return sound ? 0 : 1;
}
