"""Python's multiprocessing.Queue, the counterpart of bench/bench_queue.cpp.

    python3 bench/python/mp_queue.py CASE [--min-time S] [--size BYTES]

small  `q.put(i)` in the parent, `q.get()` in one child; items per second  (BM_Queue_SmallItems)
large  `q.put(buf)`, buf a bytes of --size, `q.get()` in one child; bytes/s (BM_Queue_LargeItems)

As in the C++ benchmark, the child (start method 'fork') is started before the timed loop,
gets exactly as many items as the parent puts, then puts an acknowledgement on a second
queue; the timed loop ends with that acknowledgement, so it covers every item got.
"""

import time

import _common


def _consume(q, done, count):
    for _ in range(count):
        q.get()
    done.put(1)


def one_to_one(args, case, item, count, **report):
    ctx = _common.context()
    q, done = ctx.Queue(), ctx.Queue()
    child = ctx.Process(target=_consume, args=(q, done, count))
    child.start()
    start = time.perf_counter()
    for _ in range(count):
        q.put(item)
    done.get()
    seconds = time.perf_counter() - start
    child.join()
    return seconds


def measure(args, case, item, bytes_per_item=None):
    # Grow the count until one run lasts --min-time (as Google Benchmark does).
    count = 1000
    while True:
        seconds = one_to_one(args, case, item, count)
        if seconds >= args.min_time or count >= 50_000_000:
            break
        count = int(count * min(10.0, max(1.5, 1.2 * args.min_time / max(seconds, 1e-6))))
    _common.report(case, count, seconds, bytes_per_iteration=bytes_per_item, items_per_iteration=1,
                   **({"size": bytes_per_item} if bytes_per_item else {}))


def small(args):
    measure(args, "small", 12345)


def large(args):
    measure(args, "large", b"\x01" * args.size, bytes_per_item=args.size)


CASES = {"small": small, "large": large}

if __name__ == "__main__":
    arguments = _common.parse_args(CASES, __doc__)
    CASES[arguments.case](arguments)
