"""Python's multiprocessing.Pool(2), the counterpart of bench/bench_pool.cpp.

    python3 bench/python/mp_pool.py CASE [--min-time S]

apply        `pool.apply(inc, (i,))`, one tiny task round trip          (BM_Pool_Apply)
apply_async  100,000 `apply_async(inc, (i,))`, then every `.get()`       (BM_Pool_ApplyAsyncBurst)
imap         `for r in pool.imap(inc, range(100000), chunksize=1)`       (BM_Pool_IMapChunk1)
map          `pool.map(inc, items)`, 1,000,000 ints, default chunksize   (BM_Pool_MapDefault)
cpu_map      `pool.map(burn, 16 tasks of ~30 ms)`; speedup = the same    (BM_Pool_CpuMapSpeedup/1)
             calls run serially in this process / the pool's time; before each map, untimed,
             100 tiny apply_async tasks
cpu_scaling  `pool.map(burn, ...)` of a fixed total of ~0.25 s of computation (BM_Pool_CpuScaling/N)
             split into 4 tasks per CPU, on Pool(--workers N); speedup = serial / pool time;
             3 iterations, like the C++ case
memory       Private_Clean + Private_Dirty (and Pss) of an idle worker   (BM_Pool_WorkerMemory)

As in the C++ benchmarks, one Pool(2) (start method 'fork') is created before the timed loop
and warmed up with a few tasks. The burst cases time whole bursts (one takes seconds here),
after a warm-up burst of 2,000 tasks.
"""

import os
import time

import _common

WORKERS = 2
BURST = 100_000
MAP_ITEMS = 1_000_000
CPU_TASKS = 16
CPU_TASK_SECONDS = 0.030
MASK = (1 << 64) - 1


def inc(x):
    return x + 1


def burn(steps):
    """Pure computation: a 64-bit LCG chain."""
    x = steps
    for _ in range(steps):
        x = (x * 6364136223846793005 + 1442695040888963407) & MASK
    return x


def make_pool():
    pool = _common.context().Pool(WORKERS)
    warm_up(pool)
    return pool


def warm_up(pool, tasks=2000):
    for r in [pool.apply_async(inc, (i,)) for i in range(tasks)]:
        r.get()


def timed_bursts(step, min_time):
    """Runs step() (one burst) until min_time has passed, at least once; (iterations, seconds)."""
    iterations = 0
    start = time.perf_counter()
    now = start
    while iterations == 0 or now - start < min_time:
        step()
        iterations += 1
        now = time.perf_counter()
    return iterations, now - start


def apply(args):
    pool = make_pool()
    counter = [0]

    def step():
        value = counter[0]
        if pool.apply(inc, (value,)) != value + 1:
            raise RuntimeError("wrong result")
        counter[0] = value + 1

    iterations, seconds = _common.run_for(step, args.min_time, warmup_time=min(0.1, args.min_time))
    pool.terminate()
    _common.report("apply", iterations, seconds)


def apply_async(args):
    pool = make_pool()

    def step():
        results = [pool.apply_async(inc, (i,)) for i in range(BURST)]
        total = 0
        for r in results:
            total += r.get()

    iterations, seconds = timed_bursts(step, args.min_time)
    pool.terminate()
    _common.report("apply_async", iterations, seconds, items_per_iteration=BURST)


def imap(args):
    pool = make_pool()

    def step():
        total = 0
        for r in pool.imap(inc, range(BURST), chunksize=1):
            total += r

    iterations, seconds = timed_bursts(step, args.min_time)
    pool.terminate()
    _common.report("imap", iterations, seconds, items_per_iteration=BURST)


def map_(args):
    pool = make_pool()
    items = list(range(MAP_ITEMS))

    def step():
        results = pool.map(inc, items)
        if len(results) != MAP_ITEMS or results[-1] != MAP_ITEMS:
            raise RuntimeError("wrong results")

    step()  # warm-up
    iterations, seconds = timed_bursts(step, args.min_time)
    pool.terminate()
    _common.report("map", iterations, seconds, items_per_iteration=MAP_ITEMS)


def calibrate_burn():
    steps = 10_000
    while True:
        start = time.perf_counter()
        burn(steps)
        elapsed = time.perf_counter() - start
        if elapsed > 0.005:
            return int(steps * CPU_TASK_SECONDS / elapsed)
        steps *= 4


def serial_vs_pool(pool, items):
    """Runs burn over items serially in this process, then pool.map(burn, items); returns
    (serial seconds, pool seconds)."""
    start = time.perf_counter()
    expected = [burn(n) for n in items]
    serial = time.perf_counter() - start
    start = time.perf_counter()
    results = pool.map(burn, items)
    parallel = time.perf_counter() - start
    if results != expected:
        raise RuntimeError("wrong results")
    return serial, parallel


def cpu_map(args):
    pool = _common.context().Pool(WORKERS)
    items = [calibrate_burn()] * CPU_TASKS
    serial = parallel = 0.0
    iterations = 0
    while iterations == 0 or parallel < args.min_time:
        warm_up(pool, 100)  # untimed: a pool that also serves tiny tasks, as BM_Pool_CpuMapSpeedup/1
        serial_seconds, pool_seconds = serial_vs_pool(pool, items)
        serial += serial_seconds
        parallel += pool_seconds
        iterations += 1
    pool.terminate()
    _common.report("cpu_map", iterations, parallel, items_per_iteration=CPU_TASKS,
                   speedup=serial / parallel, task_ms=serial / iterations / CPU_TASKS * 1e3)


SCALING_TOTAL_SECONDS = 0.25
SCALING_ITERATIONS = 3


def cpu_scaling(args):
    workers = args.workers
    pool = _common.context().Pool(workers)
    warm_up(pool, 100)
    tasks = 4 * (os.cpu_count() or 1)  # the C++ case: 4 per hardware thread
    items = [int(calibrate_burn() * SCALING_TOTAL_SECONDS / CPU_TASK_SECONDS / tasks)] * tasks
    times = [serial_vs_pool(pool, items) for _ in range(SCALING_ITERATIONS)]
    serial = sum(t[0] for t in times)
    parallel = sum(t[1] for t in times)
    pool.terminate()
    _common.report("cpu_scaling", SCALING_ITERATIONS, parallel, items_per_iteration=tasks,
                   speedup=serial / parallel, workers=workers, tasks=tasks)


def footprint(pid):
    private = pss = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            fields = line.split()
            if fields[0] in ("Private_Clean:", "Private_Dirty:"):
                private += int(fields[1]) * 1024
            elif fields[0] == "Pss:":
                pss = int(fields[1]) * 1024
    return private, pss


def memory(args):
    pool = make_pool()
    time.sleep(0.1)
    start = time.perf_counter()
    figures = [footprint(p.pid) for p in pool._pool]
    seconds = time.perf_counter() - start
    parent_private = footprint("self")[0]
    pool.terminate()
    _common.report("memory", 1, seconds,
                   private_bytes=max(f[0] for f in figures), pss_bytes=max(f[1] for f in figures),
                   parent_private_bytes=parent_private)


CASES = {"apply": apply, "apply_async": apply_async, "imap": imap, "map": map_, "cpu_map": cpu_map,
         "cpu_scaling": cpu_scaling, "memory": memory}

if __name__ == "__main__":
    arguments = _common.parse_args(CASES, __doc__)
    CASES[arguments.case](arguments)
