// sys/robust_mutex — a mutex in shared memory that survives its owner's death.
//
// Why glibc's pthread mutex and not a hand-rolled futex word: the kernel's robust-futex
// list (set_robust_list) is the only mechanism that releases a lock held by a process that
// died by SIGKILL, and each thread has exactly one list — glibc's. A PTHREAD_MUTEX_ROBUST |
// PTHREAD_PROCESS_SHARED mutex is on that list: when its owner dies, the kernel marks the
// word FUTEX_OWNER_DIED and wakes a waiter, who gets the lock with EOWNERDEAD. Condition
// variables are *not* taken from glibc (a killed waiter corrupts a pthread_cond_t); they are
// futex words (sys/futex.hpp) next to this mutex.
#pragma once

#include <pthread.h>

#include "sys/fd.hpp"  // Deadline

namespace mproc::sys {

/// Result of a successful lock whose previous owner died holding it; the mutex has already
/// been marked consistent again, so the caller owns a usable lock.
inline constexpr int kOwnerDied = 1;

/// Initializes `mutex` (in shared memory) as robust and process-shared. Returns 0 or -errno.
int robust_mutex_init(pthread_mutex_t* mutex) noexcept;

/// Locks, waiting until the deadline (nullopt: forever). Returns 0, kOwnerDied, -ETIMEDOUT,
/// or -errno (EDEADLK when this thread already holds it).
int robust_mutex_lock(pthread_mutex_t* mutex, const Deadline& deadline) noexcept;

/// Locks without waiting. Returns 0, kOwnerDied, -EBUSY, or -errno.
int robust_mutex_try_lock(pthread_mutex_t* mutex) noexcept;

/// Unlocks. Returns 0, or -EPERM when the calling thread does not own the mutex.
int robust_mutex_unlock(pthread_mutex_t* mutex) noexcept;

/// True when some thread (of any process) holds the mutex now; a snapshot. Reads the lock
/// word without taking the lock, so it never makes a concurrent try-lock fail. A mutex whose
/// owner died and that nobody has taken over since reads as unlocked (the kernel cleared
/// the owner's thread id from the word).
bool robust_mutex_locked(const pthread_mutex_t* mutex) noexcept;

/// Destroys an unlocked mutex. Returns 0 or -errno.
int robust_mutex_destroy(pthread_mutex_t* mutex) noexcept;

}  // namespace mproc::sys
