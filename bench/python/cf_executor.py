"""Python's concurrent.futures, the counterpart of bench/bench_futures.cpp.

    python3 bench/python/cf_executor.py CASE [--min-time S]

process_roundtrip  `executor.submit(inc, i).result()` on ProcessPoolExecutor(2)  (BM_ProcessPoolExecutor_RoundTrip)
process_burst      100,000 `submit(inc, i)`, then every `.result()`               (BM_ProcessPoolExecutor_SubmitBurst)
thread_burst       the same on ThreadPoolExecutor(2)                              (BM_ThreadPoolExecutor_SubmitBurst)

The process executor uses the 'fork' context, as mproc. Each executor is created before the
timed loop and warmed up with 2,000 tasks.
"""

import concurrent.futures as cf

import _common

WORKERS = 2
BURST = 100_000


def inc(x):
    return x + 1


def warm_up(executor, tasks=2000):
    for f in [executor.submit(inc, i) for i in range(tasks)]:
        f.result()


def process_executor():
    executor = cf.ProcessPoolExecutor(WORKERS, mp_context=_common.context())
    warm_up(executor)
    return executor


def process_roundtrip(args):
    executor = process_executor()
    counter = [0]

    def step():
        value = counter[0]
        if executor.submit(inc, value).result() != value + 1:
            raise RuntimeError("wrong result")
        counter[0] = value + 1

    iterations, seconds = _common.run_for(step, args.min_time, warmup_time=min(0.1, args.min_time))
    executor.shutdown()
    _common.report("process_roundtrip", iterations, seconds)


def burst(executor, name, args):
    warm_up(executor)

    def step():
        total = 0
        for f in [executor.submit(inc, i) for i in range(BURST)]:
            total += f.result()

    iterations, seconds = _common.run_for(step, args.min_time, warmup_time=0)
    executor.shutdown()
    _common.report(name, iterations, seconds, items_per_iteration=BURST)


def process_burst(args):
    burst(cf.ProcessPoolExecutor(WORKERS, mp_context=_common.context()), "process_burst", args)


def thread_burst(args):
    burst(cf.ThreadPoolExecutor(WORKERS), "thread_burst", args)


CASES = {"process_roundtrip": process_roundtrip, "process_burst": process_burst, "thread_burst": thread_burst}

if __name__ == "__main__":
    arguments = _common.parse_args(CASES, __doc__)
    CASES[arguments.case](arguments)
