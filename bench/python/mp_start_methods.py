"""Python's start methods, the counterpart of bench/bench_start_methods.cpp.

    python3 bench/python/mp_start_methods.py CASE --method {fork,forkserver,spawn} [--gib N] [--min-time S]

worker_start        Pool(2) made, the first apply(inc, (i,)) waited for, close() + join()
                    (BM_WorkerStart/<method>/<N>GiB); first_result_us = construction -> result,
                    cpu_us = CPU time of this process and its reaped children per cycle (a
                    forkserver's children are the server's: not counted)
process_start_join  Process(target=noop).start(); join()     (BM_ProcessStartJoin/<method>/<N>GiB)
replace_latency     Pool(2, maxtasksperchild=1): --tasks times apply_async(inc, (i,)).get(), one
                    in flight; p50_us, p99_us, max_us, mean_us of submit -> result
                    (BM_ReplaceLatency/<method>/2GiB)
apply               pool.apply(inc, (i,)) on a warmed Pool(2)  (BM_Apply/<method>)
map                 pool.map(inc, 1,000,000 ints), default chunksize (BM_Map/<method>)

--gib N: before measuring, this process holds a bytearray of N GiB with every page written
(the parent's private memory). Under spawn and forkserver every worker is a fresh
interpreter (spawn) or a fork of the forkserver (which imported this module): this module
allocates nothing at import. As in the C++ cases, an untimed cycle comes first (it starts the
forkserver).
"""

import argparse
import json
import math
import multiprocessing
import platform
import resource
import statistics
import sys
import time

WORKERS = 2
MAP_ITEMS = 1_000_000


def inc(x):
    return x + 1


def noop():
    pass


def hold_ballast(gib):
    """N GiB of private memory, every page written; kept alive by the caller."""
    if gib <= 0:
        return None
    return bytearray(b"\x5a") * (gib << 30)


def timed(step, min_time):
    """Calls step() until min_time seconds have passed, at least once; (iterations, seconds)."""
    iterations = 0
    start = time.perf_counter()
    now = start
    while iterations == 0 or now - start < min_time:
        step()
        iterations += 1
        now = time.perf_counter()
    return iterations, now - start


def cpu_us():
    """CPU time (user + system) of this process and its reaped children, in µs."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total * 1e6


def timed_cpu(step, min_time):
    """timed(), plus the CPU time per iteration (this process and reaped children)."""
    start = cpu_us()
    iterations, seconds = timed(step, min_time)
    return iterations, seconds, (cpu_us() - start) / iterations


def percentile(values, p):
    ordered = sorted(values)
    rank = min(max(math.ceil(p * len(ordered)), 1), len(ordered))
    return ordered[rank - 1]


def worker_start(ctx, args):
    first_result = []

    def cycle():
        start = time.perf_counter()
        pool = ctx.Pool(WORKERS)
        if pool.apply(inc, (len(first_result),)) != len(first_result) + 1:
            raise RuntimeError("wrong result")
        first_result.append(time.perf_counter() - start)
        pool.close()
        pool.join()

    cycle()  # untimed: starts the forkserver
    first_result.clear()
    iterations, seconds, cpu = timed_cpu(cycle, args.min_time)
    return iterations, seconds, {"first_result_us": statistics.mean(first_result) * 1e6, "cpu_us": cpu}


def process_start_join(ctx, args):
    def cycle():
        process = ctx.Process(target=noop)
        process.start()
        process.join()
        if process.exitcode != 0:
            raise RuntimeError("the child failed")

    cycle()
    iterations, seconds, cpu = timed_cpu(cycle, args.min_time)
    return iterations, seconds, {"cpu_us": cpu}


def replace_latency(ctx, args):
    pool = ctx.Pool(WORKERS, maxtasksperchild=1)
    for i in range(2 * WORKERS):
        pool.apply(inc, (i,))
    latencies = []
    clock = time.perf_counter
    start_all = clock()
    for i in range(args.tasks):
        start = clock()
        if pool.apply_async(inc, (i,)).get() != i + 1:
            raise RuntimeError("wrong result")
        latencies.append((clock() - start) * 1e6)
    seconds = clock() - start_all
    pool.close()
    pool.join()
    return args.tasks, seconds, {
        "p50_us": percentile(latencies, 0.50), "p99_us": percentile(latencies, 0.99),
        "max_us": max(latencies), "mean_us": statistics.mean(latencies)}


def warm_up(pool, tasks=2000):
    for r in [pool.apply_async(inc, (i,)) for i in range(tasks)]:
        r.get()


def apply(ctx, args):
    pool = ctx.Pool(WORKERS)
    warm_up(pool)
    counter = [0]

    def step():
        value = counter[0]
        if pool.apply(inc, (value,)) != value + 1:
            raise RuntimeError("wrong result")
        counter[0] = value + 1

    for _ in range(1000):
        step()
    iterations, seconds = timed(step, args.min_time)
    pool.terminate()
    return iterations, seconds, {}


def map_(ctx, args):
    pool = ctx.Pool(WORKERS)
    warm_up(pool)
    items = list(range(MAP_ITEMS))

    def step():
        results = pool.map(inc, items)
        if len(results) != MAP_ITEMS or results[-1] != MAP_ITEMS:
            raise RuntimeError("wrong results")

    step()  # warm-up
    iterations, seconds = timed(step, args.min_time)
    pool.terminate()
    return iterations, seconds, {"items_per_iteration": MAP_ITEMS}


CASES = {"worker_start": worker_start, "process_start_join": process_start_join,
         "replace_latency": replace_latency, "apply": apply, "map": map_}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("--method", choices=["fork", "forkserver", "spawn"], default="fork")
    parser.add_argument("--gib", type=int, default=0, help="GiB of touched memory the parent holds (default 0)")
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds of timed loop (default 0.5)")
    parser.add_argument("--tasks", type=int, default=200, help="tasks of replace_latency (default 200)")
    args = parser.parse_args()
    ctx = multiprocessing.get_context(args.method)
    ballast = hold_ballast(args.gib)
    iterations, seconds, extra = CASES[args.case](ctx, args)
    items = extra.pop("items_per_iteration", None)
    result = {
        "case": args.case,
        "iterations": iterations,
        "seconds": seconds,
        "real_time_ns": seconds / iterations * 1e9,
        "bytes_per_second": None,
        "items_per_second": items * iterations / seconds if items else None,
        "python": platform.python_version(),
        "start_method": args.method,
        "parent_gib": args.gib,
        **extra,
    }
    del ballast
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
