#!/usr/bin/env python3
"""Runs mproc's benchmarks, the machine's limits and Python's multiprocessing on the same
workloads, and prints one comparison table.

    python3 bench/run.py [BUILD_DIR] [--quick] [--repetitions N] [--python-runs N]
    cmake --build build --target bench          # the same, after building the benchmarks

BUILD_DIR (default ./build) is a configured and built mproc tree; the Google Benchmark
binaries are in BUILD_DIR/bench (or --bin-dir). Results go to BUILD_DIR/bench/results.json
and results.md (or --out-dir). Standard library only.

To add a workload, add a Workload to WORKLOADS below: a Google Benchmark case for mproc,
the Python script and case that do the same, and the limit case to read it against.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
PYTHON_DIR = HERE / "python"

TIME = "time"              # lower is better; compared as seconds per operation
THROUGHPUT = "throughput"  # higher is better; compared as bytes per second
RATE = "rate"              # higher is better; items (tasks) per second (gbench SetItemsProcessed)
SPEEDUP = "speedup"        # higher is better; the counter "speedup" (serial time / parallel time)
MEMORY = "memory"          # lower is better; the counter "private_bytes" (bytes of RAM)

HIGHER_IS_BETTER = {THROUGHPUT, RATE, SPEEDUP}
# The metrics read from a user counter of the gbench case (and the same key of the Python JSON).
COUNTER_OF = {SPEEDUP: "speedup", MEMORY: "private_bytes"}


# Where a case runs: None lets the scheduler place both processes (on this 2-CPU machine,
# usually one per CPU); ONE_CPU pins the benchmark and its children to the first usable CPU.
ONE_CPU = "one CPU"


@dataclass(frozen=True)
class Case:
    """A Google Benchmark case: its binary (in the bin dir), its full name as gbench
    reports it (with /real_time when UseRealTime), and where it runs."""
    binary: str
    name: str
    cpus: Optional[str] = None


@dataclass(frozen=True)
class PyCase:
    """A case of a script in bench/python: `python3 SCRIPT CASE --min-time S [ARGS...]`."""
    script: str
    case: str
    cpus: Optional[str] = None
    args: tuple = ()


@dataclass(frozen=True)
class Target:
    """A goal for the row: `against` is "limit" (mproc ÷ limit <= factor), "python"
    (mproc vs Python >= factor, that is mproc `factor` times better) or "absolute" (mproc's own
    figure, in the metric's unit: ns for TIME, items/s for RATE, bytes for MEMORY..., at most
    `factor` where lower is better, at least `factor` where higher is)."""
    against: str
    factor: float


@dataclass(frozen=True)
class Workload:
    name: str
    metric: str                       # TIME, THROUGHPUT, RATE, SPEEDUP or MEMORY
    mproc: Case
    python: Optional[PyCase] = None
    limit: Optional[Case] = None
    target: Optional[Target] = None
    note: str = ""


# ---------------------------------------------------------------------------------------
# The comparison. One entry per row of the table; the mproc, Python and limit cases of a row
# run with the same CPU placement.
WORKLOADS = [
    Workload(
        "Process start + join, no-op target",
        TIME,
        mproc=Case("bench_process", "BM_Process_StartJoin/real_time"),
        python=PyCase("mp_process.py", "start_join"),
        limit=Case("bench_limits", "BM_Limit_ForkExitWaitpid/real_time"),
        target=Target("limit", 1.5),
        note="limit: bare fork + _exit + waitpid"),
    Workload(
        "Pipe round trip of an int, one CPU",
        TIME,
        mproc=Case("bench_connection", "BM_Pipe_RoundTripInt/real_time", ONE_CPU),
        python=PyCase("mp_connection.py", "roundtrip_int", ONE_CPU),
        limit=Case("bench_limits", "BM_Limit_PipeRoundTrip/real_time", ONE_CPU),
        target=Target("limit", 1.3),
        note="limit: raw pipe(2) ping-pong of an int; both processes pinned to one CPU, so the "
             "figures are the software path (syscalls, context switches, codec) without the "
             "cross-CPU wake-up"),
    Workload(
        "Pipe round trip of an int, two CPUs",
        TIME,
        mproc=Case("bench_connection", "BM_Pipe_RoundTripInt/real_time"),
        python=PyCase("mp_connection.py", "roundtrip_int"),
        limit=Case("bench_limits", "BM_Limit_PipeRoundTrip/real_time"),
        note="as above, processes placed by the scheduler: each hop wakes the other CPU, "
             "which on an idle VM costs more than the whole software path"),
    Workload(
        "Pipe 1 MiB send_bytes -> recv_bytes",
        THROUGHPUT,
        mproc=Case("bench_connection", "BM_Pipe_SendBytes/1048576/real_time"),
        python=PyCase("mp_connection.py", "send_bytes"),
        limit=Case("bench_limits", "BM_Limit_Memcpy/67108864"),
        target=Target("python", 1.2),
        note="limit: memcpy bandwidth (64 MiB buffers)"),
    Workload(
        "Pipe 1 MiB send(vector<byte>) -> recv<vector<byte>>",
        THROUGHPUT,
        mproc=Case("bench_connection", "BM_Pipe_SendVector/1048576/real_time"),
        python=PyCase("mp_connection.py", "send_obj"),
        limit=Case("bench_limits", "BM_Limit_Memcpy/67108864"),
        note="Python: send(bytes) / recv(), pickled"),
    # mproc::Listener / Client against multiprocessing.connection's (bench_listener.cpp,
    # python/mp_listener.py), each against a raw socket of the same kind.
    Workload(
        "Listener/Client round trip of an int, Unix socket, one CPU",
        TIME,
        mproc=Case("bench_listener", "BM_Socket_RoundTripInt/0/real_time", ONE_CPU),
        python=PyCase("mp_listener.py", "roundtrip_unix", ONE_CPU),
        limit=Case("bench_listener", "BM_Limit_RawRoundTrip/0/real_time", ONE_CPU),
        target=Target("limit", 1.3),
        note="limit: raw write/read of the same 12 bytes each way on an abstract Unix socket"),
    Workload(
        "Listener/Client round trip of an int, TCP loopback, one CPU",
        TIME,
        mproc=Case("bench_listener", "BM_Socket_RoundTripInt/1/real_time", ONE_CPU),
        python=PyCase("mp_listener.py", "roundtrip_tcp", ONE_CPU),
        limit=Case("bench_listener", "BM_Limit_RawRoundTrip/1/real_time", ONE_CPU),
        target=Target("limit", 1.3),
        note="limit: raw write/read of the same 12 bytes each way over TCP (TCP_NODELAY)"),
    Workload(
        "Listener/Client 1 MiB send_bytes -> recv_bytes, TCP loopback",
        THROUGHPUT,
        mproc=Case("bench_listener", "BM_Socket_SendBytes/1048576/real_time"),
        python=PyCase("mp_listener.py", "send_bytes_tcp"),
        limit=Case("bench_listener", "BM_Limit_RawTcpStream/1048576/real_time"),
        target=Target("limit", 1.5),
        note="limit: the same bytes written raw and read into one reused buffer"),
    # mproc::Pool against multiprocessing.Pool, 2 workers each (bench_pool.cpp, python/mp_pool.py).
    Workload(
        "Pool apply round trip, one CPU",
        TIME,
        mproc=Case("bench_pool", "BM_Pool_Apply/real_time", ONE_CPU),
        python=PyCase("mp_pool.py", "apply", ONE_CPU),
        limit=Case("bench_pool", "BM_Limit_RelayRoundTrip/real_time", ONE_CPU),
        target=Target("absolute", 15_000),
        note="pool.apply(inc, i): caller -> engine thread -> worker -> engine thread -> caller; "
             "limit: BM_Limit_RelayRoundTrip, the same 4 wake-ups with raw syscalls (eventfd to a relay "
             "thread, pipe ping-pong with a child, futex back); BM_Limit_PipeRoundTrip has 2"),
    Workload(
        "Pool apply round trip, two CPUs",
        TIME,
        mproc=Case("bench_pool", "BM_Pool_Apply/real_time"),
        python=PyCase("mp_pool.py", "apply"),
        limit=Case("bench_pool", "BM_Limit_RelayRoundTrip/real_time"),
        target=Target("absolute", 15_000),
        note="as above, placed by the scheduler: every hop may wake the other CPU"),
    Workload(
        "Pool apply_async burst of 100,000 tiny tasks",
        RATE,
        mproc=Case("bench_pool", "BM_Pool_ApplyAsyncBurst/real_time"),
        python=PyCase("mp_pool.py", "apply_async"),
        target=Target("absolute", 500_000),
        note="submit 100,000 apply_async(inc, i), then get() each; tasks/s"),
    Workload(
        "Pool imap chunksize 1, 100,000 tiny tasks",
        RATE,
        mproc=Case("bench_pool", "BM_Pool_IMapChunk1/real_time"),
        python=PyCase("mp_pool.py", "imap"),
        target=Target("absolute", 300_000),
        note="for r in imap(inc, range(100000), chunksize=1); tasks/s"),
    Workload(
        "Pool map of 1,000,000 tiny tasks, default chunksize",
        RATE,
        mproc=Case("bench_pool", "BM_Pool_MapDefault/real_time"),
        python=PyCase("mp_pool.py", "map"),
        target=Target("absolute", 20_000_000),
        note="map(inc, a list of 1,000,000 ints), chunksize by Python's rule (125,000 here); tasks/s"),
    Workload(
        "Pool map of 16 CPU-bound tasks: speed-up over serial",
        SPEEDUP,
        mproc=Case("bench_pool", "BM_Pool_CpuMapSpeedup/1/real_time"),
        python=PyCase("mp_pool.py", "cpu_map"),
        limit=Case("bench_pool", "BM_Limit_ForkSpeedup/real_time"),
        target=Target("absolute", 1.9),
        note="16 tasks of ~30 ms of pure computation (C++: xorshift chain; Python: an LCG loop), "
             "each language's pool time against the same calls run serially in its own process; "
             "before each map, untimed, the pool runs 100 tiny tasks (a pool serving mixed work). "
             "BM_Pool_CpuMapSpeedup/0 in results.md: the same pool running only CPU-bound maps. "
             "limit: the same calls over 2 plain forked children, 8 each"),
    Workload(
        "Pool worker private memory, idle",
        MEMORY,
        mproc=Case("bench_pool", "BM_Pool_WorkerMemory/iterations:20/real_time"),
        python=PyCase("mp_pool.py", "memory"),
        target=Target("absolute", 2 * 1024 * 1024),
        note="Private_Clean + Private_Dirty of /proc/<pid>/smaps_rollup, the larger of the two "
             "workers, after 2,000 tiny tasks and 100 ms idle (Pss in results.json)"),
    # concurrent.futures executors, 2 workers each (bench_futures.cpp, python/cf_executor.py).
    Workload(
        "ProcessPoolExecutor submit -> result round trip, one CPU",
        TIME,
        mproc=Case("bench_futures", "BM_ProcessPoolExecutor_RoundTrip/real_time", ONE_CPU),
        python=PyCase("cf_executor.py", "process_roundtrip", ONE_CPU),
        limit=Case("bench_pool", "BM_Limit_RelayRoundTrip/real_time", ONE_CPU),
        target=Target("absolute", 15_000),
        note="executor.submit(inc, i).result() on an idle executor; the same engine as Pool.apply"),
    Workload(
        "ProcessPoolExecutor submit burst of 100,000 tiny tasks",
        RATE,
        mproc=Case("bench_futures", "BM_ProcessPoolExecutor_SubmitBurst/real_time"),
        python=PyCase("cf_executor.py", "process_burst"),
        target=Target("absolute", 400_000),
        note="100,000 submit(inc, i), then result() of each; tasks/s"),
    Workload(
        "ThreadPoolExecutor submit burst of 100,000 tiny tasks",
        RATE,
        mproc=Case("bench_futures", "BM_ThreadPoolExecutor_SubmitBurst/real_time"),
        python=PyCase("cf_executor.py", "thread_burst"),
        target=Target("absolute", 1_000_000),
        note="as above on 2 threads; tasks/s"),
    # mproc's synchronization primitives against multiprocessing's (bench_synchronize.cpp,
    # python/mp_synchronize.py).
    Workload(
        "Lock acquire + release, uncontended",
        TIME,
        mproc=Case("bench_synchronize", "BM_Lock_Uncontended"),
        python=PyCase("mp_synchronize.py", "lock_uncontended"),
        target=Target("absolute", 50),
        note="lock.acquire(); lock.release() in one process"),
    Workload(
        "RLock acquire + release, uncontended",
        TIME,
        mproc=Case("bench_synchronize", "BM_RLock_Uncontended"),
        python=PyCase("mp_synchronize.py", "rlock_uncontended"),
        note="the lock of a Value / Array (get_lock())"),
    Workload(
        "Value<int64_t> lock-protected increment, 2 processes",
        RATE,
        mproc=Case("bench_synchronize", "BM_Value_LockedIncrement/real_time"),
        python=PyCase("mp_synchronize.py", "value_increment"),
        target=Target("absolute", 5_000_000),
        note="both processes run `with v.get_lock(): v.value += 1` (C++: std::lock_guard on get_lock(), "
             "++value()) 100,000 times per batch, batches started and ended together by two Barriers; "
             "figure: increments of both processes per second (shown as tasks/s)"),
    Workload(
        "Semaphore ping-pong round trip, one CPU",
        TIME,
        mproc=Case("bench_synchronize", "BM_Semaphore_PingPong/real_time", ONE_CPU),
        python=PyCase("mp_synchronize.py", "semaphore_pingpong", ONE_CPU),
        limit=Case("bench_limits", "BM_Limit_FutexRoundTrip/real_time", ONE_CPU),
        note="ping.release(); pong.acquire() against a child doing ping.acquire(); pong.release(); "
             "limit: a raw futex wait/wake round trip between two processes"),
]

# mproc::Queue against multiprocessing.Queue, 1 producer -> 1 consumer process
# (bench_queue.cpp, python/mp_queue.py).
WORKLOADS += [
    Workload(
        "Queue of small items, 1 producer -> 1 consumer process",
        RATE,
        mproc=Case("bench_queue", "BM_Queue_SmallItems/real_time"),
        python=PyCase("mp_queue.py", "small"),
        target=Target("absolute", 5_000_000),
        note="Queue<int64_t>: put(i) in the parent, get() in a child; items/s until the child got them all"),
    Workload(
        "Queue of 1 MiB items, 1 producer -> 1 consumer process",
        THROUGHPUT,
        mproc=Case("bench_queue", "BM_Queue_LargeItems/1048576/real_time"),
        python=PyCase("mp_queue.py", "large"),
        limit=Case("bench_limits", "BM_Limit_Memcpy/67108864"),
        target=Target("absolute", 4e9),
        note="Queue<vector<byte>> of 1 MiB / Python bytes; limit: memcpy bandwidth (64 MiB buffers)"),
]

# Manager proxies against multiprocessing.Manager (bench_managers.cpp, python/mp_managers.py).
WORKLOADS += [
    Workload(
        "Manager dict proxy get, one call",
        TIME,
        mproc=Case("bench_managers", "BM_Manager_DictGet/real_time"),
        python=PyCase("mp_managers.py", "dict_get"),
        limit=Case("bench_listener", "BM_Limit_RawRoundTripPolling/0/real_time"),
        target=Target("limit", 1.3),
        note="d.get(k) / d[k]: one request and reply to the server process; limit: a raw round trip "
             "of 12 bytes on an abstract Unix socket, each side polling briefly before it reads as "
             "the manager's connections do (BM_Limit_RawRoundTrip/0 sleeps in read: ~6x slower on a VM)"),
    Workload(
        "Manager dict proxy set + get",
        TIME,
        mproc=Case("bench_managers", "BM_Manager_DictSetGet/real_time"),
        python=PyCase("mp_managers.py", "dict_set_get"),
        limit=Case("bench_listener", "BM_Limit_RawRoundTripPolling/0/real_time"),
        note="d.set(k, i); d.get(k): two round trips"),
    Workload(
        "Manager Queue proxy, 1 producer -> 1 consumer process",
        RATE,
        mproc=Case("bench_managers", "BM_Manager_QueuePutGet/real_time"),
        python=PyCase("mp_managers.py", "queue_put_get"),
        target=Target("python", 5.0),
        note="10,000 ints put by a child, got by the parent, through the server; items/s"),
    Workload(
        "Manager Lock: 4-process counter",
        RATE,
        mproc=Case("bench_managers", "BM_Manager_LockCounter4/real_time"),
        python=PyCase("mp_managers.py", "lock_counter4"),
        target=Target("python", 5.0),
        note="4 processes x 500 of: acquire; v.set(v.get() + 1); release; increments/s"),
]

# The scaling chart: one gbench family with an argument per worker count (1, 2, 4, ... up to
# the core count, chosen by the binary), and the Python case run once per count with
# `--workers N`. Results go to results.json under "scaling"; bench/chart.py draws them.
@dataclass(frozen=True)
class Scaling:
    description: str
    binary: str
    family: str        # cases FAMILY/<workers>/..., each reporting the counter "speedup"
    python: PyCase     # run with --workers N for each worker count of the gbench cases


SCALING = Scaling(
    "CPU-bound map, fixed total work (~0.25 s serial, 4 tasks per core): speed-up over serial",
    "bench_pool", "BM_Pool_CpuScaling", PyCase("mp_pool.py", "cpu_scaling"))

# Cases that are not rows but explain them; listed with every case in results.md/json.
DIAGNOSTICS = [
    Case("bench_limits", "BM_Limit_UnixSocketRoundTrip/real_time", ONE_CPU),
    Case("bench_limits", "BM_Limit_FutexRoundTrip/real_time", ONE_CPU),
    Case("bench_connection", "BM_Pipe_RoundTripBytes4/real_time", ONE_CPU),
    Case("bench_limits", "BM_Limit_UnixSocketRoundTrip/real_time"),
    Case("bench_limits", "BM_Limit_FutexRoundTrip/real_time"),
    Case("bench_limits", "BM_Limit_UnixSocketStream/1048576/real_time"),
    Case("bench_limits", "BM_Limit_Memcpy/1048576"),
    Case("bench_connection", "BM_Pipe_SendBytesRecvInto/1048576/real_time"),
    Case("bench_pool", "BM_Pool_CpuMapSpeedup/0/real_time"),
]
# ---------------------------------------------------------------------------------------

UNIT_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


@dataclass
class Measure:
    """A median over repetitions or runs; `spread` is the coefficient of variation (gbench)
    or (max - min) / median (Python runs), as a fraction."""
    time_ns: Optional[float] = None
    bytes_per_second: Optional[float] = None
    items_per_second: Optional[float] = None
    counters: dict = field(default_factory=dict)
    counter_spreads: dict = field(default_factory=dict)
    spread: Optional[float] = None
    error: Optional[str] = None
    samples: list = field(default_factory=list)

    def value(self, metric):
        if metric == TIME:
            return self.time_ns
        if metric == THROUGHPUT:
            return self.bytes_per_second
        if metric == RATE:
            return self.items_per_second
        return self.counters.get(COUNTER_OF[metric])

    def spread_of(self, metric):
        if metric in COUNTER_OF:
            return self.counter_spreads.get(COUNTER_OF[metric], self.spread)
        return self.spread


def log(message):
    print(message, file=sys.stderr, flush=True)


# --- machine --------------------------------------------------------------------------

def machine_info(build_dir):
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    build_type = None
    cache = build_dir / "CMakeCache.txt"
    if cache.exists():
        for line in cache.read_text(errors="replace").splitlines():
            if line.startswith("CMAKE_BUILD_TYPE:"):
                build_type = line.split("=", 1)[1] or None
    return {
        "cpu_model": model,
        "cores_online": os.cpu_count(),
        "cores_usable": usable,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "build_type": build_type,
        "load_average_before": load_average(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def first(values):
    return f"{values[0]:.2f}" if values else "?"


def load_average():
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


# --- Google Benchmark -----------------------------------------------------------------

def affinity_for(cpus):
    """The CPU set for a placement, or None to leave the scheduler free."""
    if cpus is None:
        return None
    usable = sorted(os.sched_getaffinity(0))
    if cpus == ONE_CPU:
        return {usable[0]}
    return {int(c) for c in cpus.split(",")}


def run_pinned(command, cpus, **kwargs):
    """subprocess.run with the child (and so its own children) bound to `cpus`."""
    cpu_set = affinity_for(cpus)
    setup = (lambda: os.sched_setaffinity(0, cpu_set)) if cpu_set else None
    return subprocess.run(command, preexec_fn=setup, **kwargs)


def run_gbench(binary_path, names, cpus, repetitions, min_time):
    """Runs the named cases of one binary; returns {name: Measure}."""
    with tempfile.TemporaryDirectory(prefix="mproc-bench-") as tmp:
        out = Path(tmp) / "out.json"
        command = [
            str(binary_path),
            "--benchmark_format=json",
            f"--benchmark_repetitions={repetitions}",
            "--benchmark_report_aggregates_only=true",
            f"--benchmark_out={out}",
            "--benchmark_out_format=json",
            "--benchmark_filter=^(" + "|".join(sorted(names)) + ")$",
        ]
        if min_time is not None:
            command.append(f"--benchmark_min_time={min_time}")
        # The report is read from --benchmark_out, not from stdout: a forked child that
        # flushes stdio could repeat bytes of the parent's unflushed stdout buffer there.
        completed = run_pinned(command, cpus, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if completed.returncode != 0 or not out.exists():
            raise RuntimeError(f"{binary_path.name} failed (exit {completed.returncode}):\n{completed.stderr}")
        report = json.loads(out.read_text())
    results = {}
    standard = {"name", "run_name", "run_type", "repetitions", "repetition_index", "threads", "iterations",
                "real_time", "cpu_time", "time_unit", "family_index", "per_family_instance_index",
                "aggregate_name", "aggregate_unit", "bytes_per_second", "items_per_second",
                "error_occurred", "error_message", "label"}

    def user_counters(entry):
        return {k: v for k, v in entry.items() if k not in standard and isinstance(v, (int, float))}

    for entry in report.get("benchmarks", []):
        name = entry.get("run_name", entry["name"])
        measure = results.setdefault(name, Measure())
        if entry.get("error_occurred"):
            measure.error = entry.get("error_message", "error")
            continue
        aggregate = entry.get("aggregate_name")
        if aggregate == "median" or aggregate is None:
            # Without repetitions gbench reports the single run only.
            measure.time_ns = entry["real_time"] * UNIT_NS[entry.get("time_unit", "ns")]
            measure.bytes_per_second = entry.get("bytes_per_second")
            measure.items_per_second = entry.get("items_per_second")
            measure.counters = user_counters(entry)
        elif aggregate == "cv":
            measure.spread = entry["real_time"]  # already a fraction in gbench's JSON
            measure.counter_spreads = user_counters(entry)
    return results


# --- Python ---------------------------------------------------------------------------

def run_python(case, runs, min_time):
    script = PYTHON_DIR / case.script
    samples = []
    for _ in range(runs):
        completed = run_pinned([sys.executable, "-B", str(script), case.case, "--min-time", str(min_time), *case.args],
                               case.cpus, capture_output=True, text=True)
        if completed.returncode != 0:
            return Measure(error=f"{case.script} {case.case} failed: {completed.stderr.strip()[-500:]}")
        lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
        samples.append(json.loads(lines[-1]))
    times = [s["real_time_ns"] for s in samples]
    rates = [s["bytes_per_second"] for s in samples if s.get("bytes_per_second")]
    items = [s["items_per_second"] for s in samples if s.get("items_per_second")]
    median_time = statistics.median(times)
    counters, counter_spreads = {}, {}
    for key in COUNTER_OF.values():
        values = [s[key] for s in samples if isinstance(s.get(key), (int, float))]
        if values:
            counters[key] = statistics.median(values)
            counter_spreads[key] = (max(values) - min(values)) / counters[key] if counters[key] else None
    return Measure(
        time_ns=median_time,
        bytes_per_second=statistics.median(rates) if rates else None,
        items_per_second=statistics.median(items) if items else None,
        counters=counters,
        counter_spreads=counter_spreads,
        spread=(max(times) - min(times)) / median_time if median_time else None,
        samples=samples)


# --- scaling --------------------------------------------------------------------------

def run_scaling(scaling, bin_dir, repetitions, python_runs, python_min_time):
    """Runs every worker count of the scaling family, then the Python twin at the same counts;
    returns [(workers, mproc Measure, Python Measure)] in worker order."""
    log(f"[bench] {scaling.binary}: {scaling.family}/*, {repetitions} repetitions ...")
    try:
        measures = run_gbench(bin_dir / scaling.binary, [scaling.family + "/.*"], None, repetitions, None)
    except RuntimeError as error:
        log(f"[bench] {error}")
        return []
    by_workers = {int(name.split("/")[1]): measure for name, measure in measures.items()}
    points = []
    for workers in sorted(by_workers):
        case = PyCase(scaling.python.script, scaling.python.case, scaling.python.cpus, ("--workers", str(workers)))
        log(f"[bench] python {case.script} {case.case} --workers {workers}: {python_runs} runs ...")
        points.append((workers, by_workers[workers], run_python(case, python_runs, python_min_time)))
    return points


def build_scaling_table(scaling, points):
    lines = [f"Scaling: {scaling.description}", "",
             "| Workers | mproc | Python | ideal |", "|---:|---:|---:|---:|"]
    for workers, mproc, python in points:
        lines.append(f"| {workers} | {with_spread(format_value(mproc.value(SPEEDUP), SPEEDUP), mproc, SPEEDUP)} | "
                     f"{with_spread(format_value(python.value(SPEEDUP), SPEEDUP), python, SPEEDUP)} | {workers}× |")
    return "\n".join(lines)


# --- the table ------------------------------------------------------------------------

def format_value(value, metric):
    if value is None:
        return "n/a"
    if metric == THROUGHPUT:
        return f"{value / 1e9:.2f} GB/s"
    if metric == RATE:
        for unit, scale in (("M", 1e6), ("k", 1e3)):
            if value >= scale:
                return f"{value / scale:.3g} {unit} tasks/s"
        return f"{value:.3g} tasks/s"
    if metric == SPEEDUP:
        return f"{value:.2f}×"
    if metric == MEMORY:
        for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
            if value >= scale:
                return f"{value / scale:.3g} {unit}"
        return f"{value:.0f} B"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}" if value / scale < 100 else f"{value / scale:.0f} {unit}"
    return f"{value:.3g} ns"


def with_spread(text, measure, metric):
    if measure is None:
        return "—"
    if measure.error:
        return f"error: {measure.error}"
    spread = measure.spread_of(metric)
    if spread is not None and spread >= 0.10:
        return f"{text} (±{spread * 100:.0f}%)"
    return text


def cost(value, metric):
    """Seconds per operation (TIME), seconds per byte (THROUGHPUT), per item (RATE), the
    inverse of a speed-up, bytes of memory: lower is better."""
    if value is None or value == 0:
        return None
    return 1.0 / value if metric in HIGHER_IS_BETTER else value


def evaluate(workload, mproc, python, limit):
    m = cost(mproc.value(workload.metric), workload.metric) if mproc and not mproc.error else None
    p = cost(python.value(workload.metric), workload.metric) if python and not python.error else None
    l = cost(limit.value(workload.metric), workload.metric) if limit and not limit.error else None
    vs_python = p / m if m and p else None  # > 1: mproc is better
    over_limit = m / l if m and l else None  # 1.0: at the limit; 2.0: twice the limit's cost
    met = None
    if workload.target:
        if workload.target.against == "limit" and over_limit is not None:
            met = over_limit <= workload.target.factor
        elif workload.target.against == "python" and vs_python is not None:
            met = vs_python >= workload.target.factor
        elif workload.target.against == "absolute" and m is not None:
            met = m <= cost(workload.target.factor, workload.metric)
    return vs_python, over_limit, met


def describe_target(target, metric=TIME):
    if target is None:
        return ""
    if target.against == "absolute":
        return ("≥ " if metric in HIGHER_IS_BETTER else "≤ ") + format_value(target.factor, metric)
    if target.against == "limit":
        return f"÷ limit ≤ {target.factor:g}"
    return f"vs Python ≥ {target.factor:g}×"


def build_table(rows):
    header = ["Workload", "mproc", "Python", "mproc vs Python", "Machine limit", "mproc ÷ limit", "Target"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * 5 + [":---"]) + "|"]
    for row in rows:
        w = row["workload"]
        target = describe_target(w.target, w.metric)
        if row["target_met"] is not None:
            target += ": " + ("met" if row["target_met"] else "**missed**")
        lines.append("| " + " | ".join([
            w.name,
            with_spread(format_value(row["mproc"].value(w.metric) if row["mproc"] else None, w.metric), row["mproc"], w.metric),
            with_spread(format_value(row["python"].value(w.metric) if row["python"] else None, w.metric), row["python"], w.metric),
            f"{row['vs_python']:.2f}×" if row["vs_python"] else "—",
            with_spread(format_value(row["limit"].value(w.metric) if row["limit"] else None, w.metric), row["limit"], w.metric),
            f"{row['over_limit']:.2f}" if row["over_limit"] else "—",
            target,
        ]) + " |")
    return "\n".join(lines)


def build_case_list(gbench):
    lines = ["| Case | CPUs | Median | CV |", "|---|---|---:|---:|"]
    for case, measure in sorted(gbench.items(), key=lambda item: (item[0].binary, item[0].name, item[0].cpus or "")):
        if measure.error:
            value = f"error: {measure.error}"
        elif measure.bytes_per_second:
            value = f"{format_value(measure.time_ns, TIME)}, {format_value(measure.bytes_per_second, THROUGHPUT)}"
        elif measure.items_per_second:
            value = f"{format_value(measure.time_ns, TIME)}, {format_value(measure.items_per_second, RATE)}"
        else:
            value = format_value(measure.time_ns, TIME)
        if measure.counters:
            value += ", " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(measure.counters.items()))
        spread = f"{measure.spread * 100:.1f}%" if measure.spread is not None else ""
        lines.append(f"| {case.binary}: {case.name} | {case.cpus or 'any'} | {value} | {spread} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("build_dir", nargs="?", default="build", help="the CMake build directory (default ./build)")
    parser.add_argument("--bin-dir", help="where the benchmark binaries are (default BUILD_DIR/bench)")
    parser.add_argument("--out-dir", help="where results.json/md go (default BUILD_DIR/bench)")
    parser.add_argument("--quick", action="store_true", help="3 repetitions and runs, shorter timing loops")
    parser.add_argument("--repetitions", type=int, help="Google Benchmark repetitions (default 5; 3 with --quick)")
    parser.add_argument("--python-runs", type=int, help="runs of each Python case (default 5; 3 with --quick)")
    parser.add_argument("--min-time", type=float,
                        help="seconds per timing loop, C++ and Python (default: gbench's 0.5; 0.2 with --quick)")
    args = parser.parse_args()

    build_dir = Path(args.build_dir).resolve()
    bin_dir = Path(args.bin_dir).resolve() if args.bin_dir else build_dir / "bench"
    out_dir = Path(args.out_dir).resolve() if args.out_dir else build_dir / "bench"
    repetitions = args.repetitions or (3 if args.quick else 5)
    python_runs = args.python_runs or (3 if args.quick else 5)
    min_time = args.min_time if args.min_time is not None else (0.2 if args.quick else None)
    python_min_time = min_time if min_time is not None else 0.5

    cases = list(dict.fromkeys([c for w in WORKLOADS for c in (w.mproc, w.limit) if c] + DIAGNOSTICS))
    binaries = sorted({c.binary for c in cases})
    missing = [b for b in binaries if not (bin_dir / b).exists()]
    if missing:
        sys.exit(f"run.py: missing {', '.join(missing)} in {bin_dir}; build them first "
                 f"(cmake --build {args.build_dir} --target {' '.join(missing)})")

    started = time.monotonic()
    machine = machine_info(build_dir)
    load = machine["load_average_before"]
    if load and load[0] > 0.5:
        log(f"warning: load average {load[0]:.2f}: other work on this machine will disturb the figures")
    if machine["build_type"] not in ("Release", "RelWithDebInfo"):
        log(f"warning: the build type is {machine['build_type'] or 'unset'}; use Release or RelWithDebInfo")

    # One run of a binary per placement, with the cases that need it.
    groups = {}
    for case in cases:
        groups.setdefault((case.binary, case.cpus), []).append(case.name)
    gbench = {}  # Case -> Measure
    for (binary, cpus), names in sorted(groups.items(), key=lambda g: (g[0][0], g[0][1] or "")):
        where = f" on {cpus}" if cpus else ""
        log(f"[bench] {binary}{where}: {len(names)} cases, {repetitions} repetitions ...")
        try:
            measures = run_gbench(bin_dir / binary, names, cpus, repetitions, min_time)
        except RuntimeError as error:  # report the other rows anyway
            log(f"[bench] {error}")
            measures = {name: Measure(error=f"{binary} failed") for name in names}
        for name in names:
            gbench[Case(binary, name, cpus)] = measures.get(name) or Measure(error=f"{binary} did not report {name}")

    python = {}
    for case in dict.fromkeys(w.python for w in WORKLOADS if w.python):
        where = f" on {case.cpus}" if case.cpus else ""
        log(f"[bench] python {case.script} {case.case}{where}: {python_runs} runs ...")
        python[case] = run_python(case, python_runs, python_min_time)

    scaling_points = run_scaling(SCALING, bin_dir, repetitions, python_runs, python_min_time)

    def lookup(case):
        return gbench[case] if case else None

    rows = []
    for workload in WORKLOADS:
        mproc, limit = lookup(workload.mproc), lookup(workload.limit)
        py = python.get(workload.python) if workload.python else None
        vs_python, over_limit, met = evaluate(workload, mproc, py, limit)
        rows.append({"workload": workload, "mproc": mproc, "python": py, "limit": limit,
                     "vs_python": vs_python, "over_limit": over_limit, "target_met": met})

    machine["load_average_after"] = load_average()
    elapsed = time.monotonic() - started
    heading = (f"CPU: {machine['cpu_model']}, {machine['cores_usable']} cores usable "
               f"({machine['cores_online']} online); Linux {machine['kernel']}; Python {machine['python']}; "
               f"build {machine['build_type'] or 'unknown'}")
    settings = (f"{repetitions} gbench repetitions (median), {python_runs} Python runs (median), "
                f"load average {first(machine['load_average_before'])} before, {first(machine['load_average_after'])} after, "
                f"{elapsed:.0f} s in all")
    table = build_table(rows)
    legend = ("mproc vs Python: how many times better mproc is (time ratio Python/mproc, or throughput "
              "ratio mproc/Python); > 1 means mproc is better. mproc ÷ limit: mproc's cost per operation "
              "(or per byte) over the machine limit's; 1.00 is at the limit. tasks/s: tasks completed per "
              "second; speed-up: serial time ÷ pool time in the same language; memory: bytes private "
              "to a worker (MiB = 2^20 bytes), lower is better. (±N%): spread over "
              "repetitions (CV) or runs, shown when 10% or more. GB/s = 10^9 bytes/s.")
    notes = "\n".join(f"- {w.name}: {w.note}" for w in WORKLOADS if w.note)

    print(heading, flush=True)
    print(settings)
    print()
    print(table)
    print()
    scaling_table = build_scaling_table(SCALING, scaling_points)
    print(scaling_table)
    print()
    print(legend, flush=True)

    markdown = "\n\n".join([
        "# mproc benchmarks", heading, settings, table, legend, notes, scaling_table,
        "## Every case (Google Benchmark medians)", build_case_list(gbench)]) + "\n"

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.md").write_text(markdown)

    def measure_json(m):
        if m is None:
            return None
        return {"time_ns": m.time_ns, "bytes_per_second": m.bytes_per_second,
                "items_per_second": m.items_per_second, "counters": m.counters or None, "spread": m.spread,
                "error": m.error, **({"runs": m.samples} if m.samples else {})}

    result = {
        "machine": machine,
        "settings": {"repetitions": repetitions, "python_runs": python_runs, "min_time": min_time,
                     "python_min_time": python_min_time, "elapsed_s": elapsed},
        "workloads": [{
            "name": r["workload"].name,
            "metric": r["workload"].metric,
            "mproc_case": f"{r['workload'].mproc.binary}:{r['workload'].mproc.name}",
            "python_case": (f"{r['workload'].python.script}:{r['workload'].python.case}"
                            if r["workload"].python else None),
            "limit_case": (f"{r['workload'].limit.binary}:{r['workload'].limit.name}"
                           if r["workload"].limit else None),
            "mproc": measure_json(r["mproc"]),
            "python": measure_json(r["python"]),
            "limit": measure_json(r["limit"]),
            "mproc_vs_python": r["vs_python"],
            "mproc_over_limit": r["over_limit"],
            "target": describe_target(r["workload"].target, r["workload"].metric) or None,
            "target_met": r["target_met"],
        } for r in rows],
        "scaling": {
            "description": SCALING.description,
            "mproc_case": f"{SCALING.binary}:{SCALING.family}",
            "python_case": f"{SCALING.python.script}:{SCALING.python.case}",
            "points": [{"workers": workers,
                        "mproc_speedup": mproc.value(SPEEDUP), "python_speedup": python.value(SPEEDUP),
                        "mproc": measure_json(mproc), "python": measure_json(python)}
                       for workers, mproc, python in scaling_points],
        },
        "gbench": [{"binary": c.binary, "name": c.name, "cpus": c.cpus, **measure_json(m)} for c, m in gbench.items()],
    }
    (out_dir / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    log(f"[bench] wrote {out_dir / 'results.md'} and {out_dir / 'results.json'}")

    failed = [r["workload"].name for r in rows if r["mproc"] is None or r["mproc"].error]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
