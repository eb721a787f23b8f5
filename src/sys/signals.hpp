// sys/signals — signal masks and dispositions around fork.
#pragma once

#include <csignal>

namespace mproc::sys {

/// Blocks every signal on the calling thread for its lifetime and restores the previous
/// mask after. Held across fork() so that no handler of the parent's runs in the child
/// before the child has reset the dispositions.
class AllSignalsBlocked {
 public:
  AllSignalsBlocked() noexcept;
  ~AllSignalsBlocked();
  AllSignalsBlocked(const AllSignalsBlocked&) = delete;
  AllSignalsBlocked& operator=(const AllSignalsBlocked&) = delete;
  /// The mask the thread had before; a forked child restores it after resetting handlers.
  const sigset_t& previous() const noexcept { return previous_; }

 private:
  sigset_t previous_;
};

/// In a freshly forked child: every caught signal goes back to its default action, as
/// execve(2) would do; ignored signals stay ignored (again as execve). Signals must be
/// blocked while this runs.
void reset_caught_signals_to_default() noexcept;

/// Sets the calling thread's signal mask. Returns 0 or -errno.
int set_signal_mask(const sigset_t& mask) noexcept;

/// Unblocks every signal on the calling thread.
void unblock_all_signals() noexcept;

}  // namespace mproc::sys
