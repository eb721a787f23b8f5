// sys/lifeline — children die with their parent, whatever kills the parent.
//
// PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process,
// so a Process started from a short-lived thread would be killed early. Instead each child
// gets a "lifeline" pipe: the parent keeps the write end, the child arms the read end so
// that the kernel sends it SIGKILL the moment the last writer disappears — which happens
// when the parent process dies by any means, SIGKILL included, or execs (the write end is
// close-on-exec). The signal comes from the pipe's O_ASYNC notification (F_SETOWN +
// F_SETSIG). The parent closes its copy of the read end and, once the child is reaped, the
// write end.
//
// A child forked later inherits the write ends of its older siblings' lifelines. That does
// not keep them alive after the parent dies: the youngest child's lifeline is held by the
// parent alone, so it dies first, which closes its copies of the older lifelines, and so on
// down — the whole family goes within microseconds.
#pragma once

namespace mproc::sys {

/// One child's lifeline pipe.
struct Lifeline {
  int read_end = -1;   // armed by the child; closed by the parent after fork
  int write_end = -1;  // held by the parent until the child is reaped; close-on-exec
};

/// Creates a lifeline pipe for the next child. Returns 0 or -errno.
int lifeline_create(Lifeline& lifeline) noexcept;

/// In the freshly forked child: closes the inherited write end and arms the read end.
/// Kills the calling process at once if the parent is already gone. Returns the armed
/// descriptor (keep it open for the child's lifetime) or -errno.
int lifeline_arm_in_child(const Lifeline& lifeline) noexcept;

}  // namespace mproc::sys
