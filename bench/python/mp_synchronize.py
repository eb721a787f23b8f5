"""Python's multiprocessing Lock / RLock / Value / Semaphore, the counterpart of
bench/bench_synchronize.cpp.

    python3 bench/python/mp_synchronize.py CASE [--min-time S]

lock_uncontended   `lock.acquire(); lock.release()`, one process              (BM_Lock_Uncontended)
rlock_uncontended  the same with an RLock                                      (BM_RLock_Uncontended)
value_increment    2 processes, each `with v.get_lock(): v.value += 1` BATCH    (BM_Value_LockedIncrement)
                   times per iteration, batches started and ended together by
                   two Barriers; items/s = the increments of both processes
semaphore_pingpong a turn handed to a child and back through two Semaphores     (BM_Semaphore_PingPong)

Start method 'fork', as mproc. Figures are wall-clock time per iteration (real time).
"""

import _common

BATCH = 100_000


def uncontended(make_lock):
    def run(args):
        lock = make_lock()

        def step():
            lock.acquire()
            lock.release()

        iterations, seconds = _common.run_for(step, args.min_time, warmup_time=min(0.1, args.min_time))
        return iterations, seconds
    return run


def lock_uncontended(args):
    iterations, seconds = uncontended(lambda: _common.context().Lock())(args)
    _common.report("lock_uncontended", iterations, seconds)


def rlock_uncontended(args):
    iterations, seconds = uncontended(lambda: _common.context().RLock())(args)
    _common.report("rlock_uncontended", iterations, seconds)


def _increment_batch(counter):
    for _ in range(BATCH):
        with counter.get_lock():
            counter.value += 1


def _increment_child(counter, start, done, stop):
    while True:
        start.wait()
        if stop.value:
            return
        _increment_batch(counter)
        done.wait()


def value_increment(args):
    ctx = _common.context()
    counter = ctx.Value("q", 0)
    start, done = ctx.Barrier(2), ctx.Barrier(2)
    stop = ctx.RawValue("i", 0)
    child = ctx.Process(target=_increment_child, args=(counter, start, done, stop))
    child.start()

    def step():
        start.wait()
        _increment_batch(counter)
        done.wait()

    # A batch takes a good fraction of a second here: no separate warm-up beyond one batch.
    iterations, seconds = _common.run_for(step, args.min_time, warmup_time=0.0)
    stop.value = 1
    start.wait()
    child.join()
    if counter.value != 2 * BATCH * iterations:
        raise RuntimeError("lost increments")
    _common.report("value_increment", iterations, seconds, items_per_iteration=2 * BATCH)


def _pong_child(ping, pong, stop):
    while True:
        ping.acquire()
        if stop.value:
            return
        pong.release()


def semaphore_pingpong(args):
    ctx = _common.context()
    ping, pong = ctx.Semaphore(0), ctx.Semaphore(0)
    stop = ctx.RawValue("i", 0)
    child = ctx.Process(target=_pong_child, args=(ping, pong, stop))
    child.start()

    def step():
        ping.release()
        pong.acquire()

    iterations, seconds = _common.run_for(step, args.min_time, warmup_time=min(0.1, args.min_time))
    stop.value = 1
    ping.release()
    child.join()
    _common.report("semaphore_pingpong", iterations, seconds)


CASES = {
    "lock_uncontended": lock_uncontended,
    "rlock_uncontended": rlock_uncontended,
    "value_increment": value_increment,
    "semaphore_pingpong": semaphore_pingpong,
}

if __name__ == "__main__":
    arguments = _common.parse_args(CASES, __doc__)
    CASES[arguments.case](arguments)
