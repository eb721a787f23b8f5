"""Shared timing and reporting for the Python side of mproc's benchmarks.

Each script measures one case per invocation and prints one JSON object on stdout:

    {"case": ..., "iterations": N, "seconds": S, "real_time_ns": S / N * 1e9,
     "bytes_per_second": ... or null, "items_per_second": ... or null, "python": "3.11.7",
     "start_method": "fork", ...case-specific figures (e.g. "speedup", "private_bytes")}

Standard library only. The timing mirrors Google Benchmark's UseRealTime(): wall-clock
time of a loop run for at least --min-time seconds, after an untimed warm-up.
"""

import argparse
import json
import multiprocessing
import platform
import sys
import time

START_METHOD = "fork"


def context():
    """The multiprocessing context every case uses: start method 'fork', as mproc."""
    return multiprocessing.get_context(START_METHOD)


def run_for(step, min_time, warmup_time):
    """Calls step() until min_time seconds have passed; returns (iterations, seconds).

    An untimed warm-up of warmup_time seconds comes first (imports, allocator, caches).
    """
    clock = time.perf_counter
    end = clock() + warmup_time
    while clock() < end:
        step()
    iterations = 0
    start = clock()
    end = start + min_time
    now = start
    while now < end:
        step()
        iterations += 1
        now = clock()
    return iterations, now - start


def parse_args(cases, description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("case", choices=sorted(cases), help="which case to measure")
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds of timed loop (default 0.5)")
    parser.add_argument("--size", type=int, default=1 << 20, help="message size in bytes for bulk cases (default 1 MiB)")
    parser.add_argument("--workers", type=int, default=2, help="pool size for the scaling cases (default 2)")
    return parser.parse_args()


def report(case, iterations, seconds, bytes_per_iteration=None, items_per_iteration=None, **extra):
    result = {
        "case": case,
        "iterations": iterations,
        "seconds": seconds,
        "real_time_ns": seconds / iterations * 1e9 if iterations else None,
        "bytes_per_second": (bytes_per_iteration * iterations / seconds) if bytes_per_iteration and seconds > 0 else None,
        "items_per_second": (items_per_iteration * iterations / seconds) if items_per_iteration and seconds > 0 else None,
        "python": platform.python_version(),
        "start_method": START_METHOD,
    }
    result.update(extra)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
