// sys/lifeline — children die with their parent, whatever kills the parent.
//
// PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process,
// so a Process started from a short-lived thread would be killed early. Instead each
// parent owns a "lifeline" pipe: the parent keeps the only write end (every child closes
// its inherited copy first thing), and each child arms the read end so that the kernel
// sends it SIGKILL the moment the last writer disappears — which happens when the parent
// process dies by any means, SIGKILL included, or execs (the write end is close-on-exec).
// The signal comes from the pipe's O_ASYNC notification (F_SETOWN + F_SETSIG).
#pragma once

namespace mproc::sys {

/// A parent's lifeline pipe.
struct Lifeline {
  int read_end = -1;   // inherited by children, which arm it
  int write_end = -1;  // held by the parent alone, close-on-exec
};

/// Creates a lifeline pipe. Returns 0 or -errno.
int lifeline_create(Lifeline& lifeline) noexcept;

/// In a freshly forked child of the parent owning `parents`: closes the inherited write
/// end, arms a private open file description of the read end (the O_ASYNC owner lives in
/// the open file description, which all siblings would otherwise share) and closes the
/// inherited read end. Exits immediately if the parent is already gone. Returns the armed
/// descriptor (keep it open for the child's lifetime) or -errno.
int lifeline_arm_in_child(const Lifeline& parents) noexcept;

}  // namespace mproc::sys
