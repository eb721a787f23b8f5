// manager_spin — waiting for the next message on a manager connection without paying for a
// wake-up when it comes soon.
//
// A manager call is a round trip between a client and a thread of the server process, each
// asleep in read() while the other works. On a virtual machine an idle vCPU that is woken
// costs 20–30 µs (the hypervisor's wake-up), several times the work of the call itself: a
// dict get cost 37 µs, of which ~30 were two wake-ups. So the side that expects a message
// soon — a client that sent a request, a server thread that just answered — first polls for
// it for a few microseconds, yielding between polls so that when clients outnumber cores the
// thread it waits for can run on this CPU; only then does it sleep. The spin is bounded:
// an idle connection costs at most one window of CPU per message, then sleeps as before.
// Measured with bench_managers (docs/performance.md): dict get 37 → 9 µs, Queue 1 → 1
// 35 k → 96 k items/s, 4-process Lock counter 14 k → 25 k increments/s.
#pragma once

#include <chrono>
#include <sched.h>

#include "mproc/connection.hpp"

namespace mproc::detail::manager {

/// How long a manager connection polls for a message it expects before it sleeps.
inline constexpr auto kSpinWindow = std::chrono::microseconds(20);

/// Effects: polls `c` until a message (or EOF) is readable or kSpinWindow has passed, yielding
/// the CPU between polls. Returns whether one is readable. Throws what Connection::poll does.
inline bool message_within_spin_window(Connection& c) {
  const auto end = std::chrono::steady_clock::now() + kSpinWindow;
  for (;;) {
    if (c.poll()) return true;
    if (std::chrono::steady_clock::now() >= end) return false;
    ::sched_yield();
  }
}

}  // namespace mproc::detail::manager
