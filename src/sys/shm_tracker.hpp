// sys/shm_tracker — Python's resource_tracker for named shared memory: a helper process that
// unlinks the segments its process created and did not unlink, once that process has ended
// by any means (return from main, _exit, an uncaught signal, SIGKILL). errno-level, noexcept.
//
// Design (Python's tracker is one process per program family, started by exec, fed over a
// pipe; this one is per creating process and needs no descriptor in the user's process):
// - A *table* of slots in an anonymous MAP_SHARED mapping: the creating process writes each
//   tracked segment's name and file identity (st_dev, st_ino) into a slot, and frees the
//   slot when it unlinks the segment itself. Registering is a few stores, no system call.
// - A *tracker process* per table, forked (double fork: it is never the user's child, so
//   never the user's zombie, and never blocks a wait(-1)) at the first registration. It
//   shares the table, holds a pidfd of its creating process and nothing else (every other
//   inherited descriptor is closed at once; stdin and stdout become /dev/null; stderr is
//   kept for its warning), sits in its own session with SIGINT/SIGTERM/SIGHUP ignored (a
//   Ctrl-C or a kill of the process group ends the program, not its cleanup), and sleeps in
//   poll() on the pidfd. When the process has ended it unlinks every segment still in the
//   table whose name still names the recorded file — never a newcomer that reused the
//   name — writes one warning line to stderr (as Python's tracker warns about "leaked
//   shared_memory objects"), and exits. It is never orphaned for longer than that.
// - Fork safety: a forked child inherits neither the table (MADV_DONTFORK) nor the right to
//   use the parent's registrations: the first registration in a new process builds a fresh
//   state (never touching the parent's, whose mutex another thread may have held at fork
//   time) and forks that process's own tracker. Slots are freed only by the process that
//   filled them (callers check), so a child can never unregister its parent's names.
// - A table holds kSlotsPerTable registrations; past that a further table and tracker are
//   made, up to kMaxTables.
// Costs: one fork of the creating process at its first tracked segment (~0.1 ms plus ~14 ms
// per GB of its resident memory for the page tables); the tracker's copy-on-write memory is
// never written. Shared mappings the creating process had at that moment stay mapped in the
// tracker until the tracker exits, i.e. until the creating process ends.
#pragma once

#include "sys/shm.hpp"

namespace mproc::sys {

/// One registration (opaque).
struct TrackerSlot;

/// Registers the segment `name` ('/' + 1 to 255 characters) whose file is `id` with the
/// calling process's tracker, starting the tracker at the first registration of this
/// process (then also after a fork, in the child). Thread-safe. Returns 0 and *slot, or
/// -errno: -EINVAL (bad name), -ENOMEM, -ENOSPC (kMaxTables full), or the error that kept
/// the tracker process from starting (pidfd_open, fork).
int shm_track(const char* name, const FileId& id, TrackerSlot** slot) noexcept;

/// Forgets a registration: the segment was unlinked, or is no longer this process's to
/// remove. Only the process that registered `slot` may call it (a forked child's copy of the
/// pointer refers to its parent's registration); thread-safe; null is ignored.
void shm_untrack(TrackerSlot* slot) noexcept;

}  // namespace mproc::sys
