#include "sys/robust_mutex.hpp"

#include <cerrno>
#include <linux/futex.h>
#include <time.h>

// ThreadSanitizer (GCC's __SANITIZE_THREAD__, Clang's feature test): see robust_mutex_lock.
#if defined(__SANITIZE_THREAD__)
#define MPROC_THREAD_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MPROC_THREAD_SANITIZER 1
#endif
#endif
#ifdef MPROC_THREAD_SANITIZER
#include <sanitizer/tsan_interface.h>
#endif

namespace mproc::sys {

int robust_mutex_init(pthread_mutex_t* mutex) noexcept {
  pthread_mutexattr_t attributes;
  if (int rc = ::pthread_mutexattr_init(&attributes); rc != 0) return -rc;
  int rc = ::pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
  if (rc == 0) rc = ::pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
  // Error checking: unlocking a mutex this thread does not hold reports EPERM instead of
  // corrupting it — the public Lock turns that into Python's "release unlocked lock" error.
  if (rc == 0) rc = ::pthread_mutexattr_settype(&attributes, PTHREAD_MUTEX_ERRORCHECK);
  if (rc == 0) rc = ::pthread_mutex_init(mutex, &attributes);
  ::pthread_mutexattr_destroy(&attributes);
  return -rc;
}

namespace {
// Maps a pthread lock result to ours; EOWNERDEAD: we own it now, repair it for the next one.
int acquired(pthread_mutex_t* mutex, int rc) noexcept {
  if (rc == 0) return 0;
  if (rc == EOWNERDEAD) {
    ::pthread_mutex_consistent(mutex);
    return kOwnerDied;
  }
  return -rc;
}
}  // namespace

int robust_mutex_lock(pthread_mutex_t* mutex, const Deadline& deadline) noexcept {
  if (!deadline) return acquired(mutex, ::pthread_mutex_lock(mutex));
  timespec absolute = monotonic_timespec(*deadline);
#ifdef MPROC_THREAD_SANITIZER
  // ThreadSanitizer's runtime intercepts pthread_mutex_timedlock but not clocklock (GCC 12):
  // unannotated, a timed acquisition is invisible to it, so it misses what the lock orders
  // and reports the release as an unlock of an unlocked mutex. Annotate as its interceptor
  // for timedlock does (a lock that may fail).
  __tsan_mutex_pre_lock(mutex, __tsan_mutex_try_lock);
  const int rc = ::pthread_mutex_clocklock(mutex, CLOCK_MONOTONIC, &absolute);
  const bool owned = rc == 0 || rc == EOWNERDEAD;
  __tsan_mutex_post_lock(mutex, __tsan_mutex_try_lock | (owned ? 0u : __tsan_mutex_try_lock_failed), 0);
  return acquired(mutex, rc);
#else
  return acquired(mutex, ::pthread_mutex_clocklock(mutex, CLOCK_MONOTONIC, &absolute));
#endif
}

int robust_mutex_try_lock(pthread_mutex_t* mutex) noexcept {
  return acquired(mutex, ::pthread_mutex_trylock(mutex));
}

int robust_mutex_unlock(pthread_mutex_t* mutex) noexcept {
  return -::pthread_mutex_unlock(mutex);
}

bool robust_mutex_locked(const pthread_mutex_t* mutex) noexcept {
#ifdef __GLIBC__
  // A robust mutex's futex word (glibc: __data.__lock, public in <bits/struct_mutex.h> and
  // part of the ABI) holds the owner's thread id, plus the FUTEX_WAITERS and
  // FUTEX_OWNER_DIED flags; 0 in the id bits means free. Read atomically, as the kernel and
  // glibc write it.
  return (__atomic_load_n(&mutex->__data.__lock, __ATOMIC_ACQUIRE) & FUTEX_TID_MASK) != 0;
#else
  // No known layout: probe with a try-lock and give a lock we took back.
  auto* writable = const_cast<pthread_mutex_t*>(mutex);
  int rc = ::pthread_mutex_trylock(writable);
  if (rc == EOWNERDEAD) ::pthread_mutex_consistent(writable);
  if (rc == 0 || rc == EOWNERDEAD) {
    ::pthread_mutex_unlock(writable);
    return false;
  }
  return true;  // EBUSY, or EDEADLK: the caller holds it
#endif
}

int robust_mutex_destroy(pthread_mutex_t* mutex) noexcept {
  return -::pthread_mutex_destroy(mutex);
}

}  // namespace mproc::sys
