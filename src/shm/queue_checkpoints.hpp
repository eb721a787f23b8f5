// queue_checkpoints.hpp — private test instrumentation of src/shm/queue.cpp (not installed).
#pragma once

namespace mproc::detail {

/// Test instrumentation (tests/test_queue.cpp), off unless a test installs a hook: the points
/// where a process that stops or dies leaves work undone for the others — a wake-up, a count,
/// the second half of linking a segment. Tests pause a child at one, or kill it there, and
/// check that the other processes recover. Each point costs one load and a never-taken branch.
enum class QueueCheckpoint {
  put_committed,      // an item is in the queue; the producers' mutex is held, the wake-up not made
  put_unlocked,       // the producers' mutex is released; getters not yet woken
  get_committed,      // an item is taken; the consumers' mutex is held, the count not yet made
  get_unlocked,       // the consumers' mutex is released; blocked putters not yet woken
  segment_linked,     // a new segment is linked after the tail, the tail not yet moved to it
  task_done_counted,  // task_done() counted; join() not yet woken
};
using QueueCheckpointHook = void (*)(QueueCheckpoint point) noexcept;
/// Installs `hook` for every queue of this process (nullptr: none). For mproc's tests only.
void set_queue_checkpoint_hook(QueueCheckpointHook hook) noexcept;

}  // namespace mproc::detail
