#include "sys/signals.hpp"

#include <cerrno>
#include <pthread.h>

namespace mproc::sys {

AllSignalsBlocked::AllSignalsBlocked() noexcept {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous_);
}

AllSignalsBlocked::~AllSignalsBlocked() { pthread_sigmask(SIG_SETMASK, &previous_, nullptr); }

void reset_caught_signals_to_default() noexcept {
  for (int signal = 1; signal < NSIG; ++signal) {
    if (signal == SIGKILL || signal == SIGSTOP) continue;
    struct sigaction current {};
    if (::sigaction(signal, nullptr, &current) != 0) continue;  // reserved by libc (NPTL)
    bool caught = (current.sa_flags & SA_SIGINFO) || (current.sa_handler != SIG_DFL && current.sa_handler != SIG_IGN);
    if (!caught) continue;
    struct sigaction reset {};
    reset.sa_handler = SIG_DFL;
    sigemptyset(&reset.sa_mask);
    ::sigaction(signal, &reset, nullptr);
  }
}

int set_signal_mask(const sigset_t& mask) noexcept {
  int rc = pthread_sigmask(SIG_SETMASK, &mask, nullptr);
  return rc == 0 ? 0 : -rc;
}

void unblock_all_signals() noexcept {
  sigset_t none;
  sigemptyset(&none);
  pthread_sigmask(SIG_SETMASK, &none, nullptr);
}

}  // namespace mproc::sys
