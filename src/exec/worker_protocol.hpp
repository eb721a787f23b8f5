// worker_protocol — what the engine and its workers share: the messages on a worker's
// pipes and the words in the memory shared with it. Private to the library.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "mproc/detail/code_identity.hpp"
#include "mproc/detail/task.hpp"

namespace mproc::detail {

// A task on its way to a worker, and its outcome on the way back. id 0 in a result is the
// worker's "ready" message, sent once its initializer has run.
struct WireTask {
  std::uint64_t id = 0;
  std::uint32_t seq = 0;  // this worker's count of tasks handed to it (see WorkerWords::claim)
  CodeRef invoker;
  CodeRef function;
  std::vector<std::byte> args;
  bool direct = false;  // announce the result through WorkerWords (see there)
  template <class Archive>
  void serialize(Archive& archive) {
    archive(id, seq, invoker, function, args, direct);
  }
};

struct WireResult {
  std::uint64_t id = 0;
  bool ok = true;
  bool skipped = false;  // the task was taken back (WorkerWords::claim): it did not run
  std::vector<std::byte> payload;
  RemoteFailure failure;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(id, ok, skipped, payload, failure);
  }
};

// A worker exits with this status when its initializer threw (BSD's EX_SOFTWARE).
constexpr int kInitializerFailedExit = 70;
// A worker exits with this status when it cannot receive a batch of tasks (decoding it
// failed, or ran out of memory): the engine must not hand the same batch to the next worker
// forever (see EngineCore::handle_exit).
constexpr int kBatchUnreadableExit = 71;
// A worker exits with this status after a task in which an allocation failed under the hard
// memory limit (EngineOptions::memory_limit): it is replaced, its heap may be in pieces.
constexpr int kMemoryLimitExit = 72;
// A worker exits with this status when its resident memory passed the soft limit after a
// task (EngineOptions::max_memory_per_child): a planned retirement, not a crash.
constexpr int kMemoryRecycleExit = 73;

// Memory shared with one worker.
// - started: the id of the task it has started. When the worker dies, this tells a task
//   that was running (lost with it) from one that was only queued for it (requeued) — also
//   when the death raced with the dispatch.
// - result_seq / caller_waiting: the direct-result hand-off (see EngineCore::drive_direct).
//   After a task the engine handed over directly, the worker bumps result_seq, then wakes a
//   caller sleeping on it if caller_waiting says one is, else the engine's eventfd. Both
//   sides use sequentially consistent operations: the worker stores result_seq then loads
//   caller_waiting, the caller stores caller_waiting then looks at the pipe, so at least one
//   of them sees the other (no lost wake-up).
// - claim: work queued ahead on a worker can be taken back for another (EngineCore::
//   revoke). Low half: the seq of the last task the worker has claimed (started); high half:
//   the last seq it may claim. Both sides change it only by compare-exchange of the whole
//   word, so a task is either claimed by the worker or taken back by the engine, never both:
//   the worker claims `seq` only while seq <= limit; the engine lowers the limit to what is
//   claimed. Seqs are compared as serial numbers (they wrap after 2^32 tasks).
struct WorkerWords {
  std::atomic<std::uint64_t> started{0};
  std::atomic<std::uint64_t> claim{0};
  std::atomic<std::uint32_t> result_seq{0};
  std::atomic<std::uint32_t> caller_waiting{0};
  // What the worker measures about itself (mproc::WorkerCounters), for insights. Written by
  // the worker alone, relaxed: the engine reads them after the result that follows (the
  // pipe orders them) or after the worker's death, and a stale reading is only a late figure.
  std::atomic<std::uint64_t> working_ns{0};
  std::atomic<std::uint64_t> waiting_ns{0};
  std::atomic<std::uint64_t> initializer_ns{0};
  std::atomic<std::uint64_t> peak_rss_bytes{0};
  // Set by the worker's new-handler when an allocation failed (cleared before each task):
  // tells the engine that a worker that died under a hard memory limit died of it.
  std::atomic<std::uint32_t> out_of_memory{0};
};

constexpr std::uint32_t claimed_of(std::uint64_t claim) { return static_cast<std::uint32_t>(claim); }
constexpr std::uint32_t limit_of(std::uint64_t claim) { return static_cast<std::uint32_t>(claim >> 32); }
constexpr std::uint64_t make_claim(std::uint32_t claimed, std::uint32_t limit) {
  return (std::uint64_t{limit} << 32) | claimed;
}
// a <= b for sequence numbers that wrap.
constexpr bool seq_at_most(std::uint32_t a, std::uint32_t b) { return static_cast<std::int32_t>(b - a) >= 0; }

// In the engine: sets the highest claimable seq to `limit`, or to what the worker has
// claimed so far (taking back the rest); returns what it had claimed at that moment.
inline std::uint32_t set_claim_limit(WorkerWords& words, std::optional<std::uint32_t> limit) {
  std::uint64_t word = words.claim.load(std::memory_order_acquire);
  while (!words.claim.compare_exchange_weak(word, make_claim(claimed_of(word), limit.value_or(claimed_of(word))),
                                            std::memory_order_acq_rel)) {
  }
  return claimed_of(word);
}

// In a worker: claims task `seq`, or learns that the engine took it back.
inline bool claim_task(WorkerWords& words, std::uint32_t seq) {
  std::uint64_t word = words.claim.load(std::memory_order_acquire);
  for (;;) {
    if (!seq_at_most(seq, limit_of(word))) return false;
    if (words.claim.compare_exchange_weak(word, make_claim(seq, limit_of(word)), std::memory_order_acq_rel))
      return true;
  }
}
static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "a process-shared word must be lock-free");

static_assert(sizeof(WorkerWords) <= 64, "the shared words fit one cache line");

}  // namespace mproc::detail
