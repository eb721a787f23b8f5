#!/usr/bin/env python3
"""Compares the start methods (fork, forkserver, spawn) of mproc and of Python's
multiprocessing on the same workloads, in one run, and prints one markdown table.

    python3 bench/start_methods.py [BUILD_DIR] [--quick] [--repetitions N] [--python-runs N]
    cmake --build build --target bench_start_methods_compare     # the same, after building

BUILD_DIR (default ./build) is a configured and built mproc tree with bench_start_methods and
bench_limits in BUILD_DIR/bench (or --bin-dir). Results go to BUILD_DIR/bench/start_methods.md
and start_methods.json (or --out-dir). Standard library only; the measuring and formatting
helpers are run.py's.

The workloads (bench/bench_start_methods.cpp, bench/python/mp_start_methods.py):
  a. worker start: Pool(2) + first apply + destroy, parent holding 0, 1, 4 GiB of touched memory;
     Process start + join, 0 and 4 GiB; limit: bare fork + _exit + waitpid (bench_limits)
  b. apply_async latency (submit -> result, one in flight) with maxtasksperchild=1, 2 GiB parent
  c. Pool apply round trip and map of 1,000,000 tiny tasks
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import run as common  # bench/run.py: Measure, run_gbench, run_python, machine_info, format_value ...

METHODS = ("fork", "forkserver", "spawn")
START_GIB = (0, 1, 4)
PROCESS_GIB = (0, 4)
LATENCY_GIB = 2
LATENCY_TASKS = 200
BINARY = "bench_start_methods"
LIMIT = common.Case("bench_limits", "BM_Limit_ForkExitWaitpid/real_time")
SCRIPT = "mp_start_methods.py"

TIME, RATE = common.TIME, common.RATE


class Row:
    """One line of the table: a workload under one method."""

    def __init__(self, group, label, method, metric, gbench, python_case, python_args, counter=None):
        self.group, self.label, self.method, self.metric = group, label, method, metric
        self.gbench = gbench              # the gbench case name (with /real_time)
        self.python_case = python_case    # the case of mp_start_methods.py, or None
        self.python_args = python_args    # its arguments
        self.counter = counter            # read this counter (µs) instead of the time per iteration
        self.mproc = self.python = None   # filled in: the figure (ns, or items/s), its spread
        self.mproc_cpu = self.python_cpu = None  # start rows: CPU time per cycle (ns)


def build_rows():
    rows = []
    for gib in START_GIB:
        for method in METHODS:
            rows.append(Row("start", f"Pool(2) start + first apply + destroy, {gib} GiB parent", method, TIME,
                            f"BM_WorkerStart/{method}/{gib}GiB/real_time", "worker_start",
                            ("--method", method, "--gib", str(gib))))
    for gib in PROCESS_GIB:
        for method in METHODS:
            rows.append(Row("process", f"Process start + join, no-op, {gib} GiB parent", method, TIME,
                            f"BM_ProcessStartJoin/{method}/{gib}GiB/real_time", "process_start_join",
                            ("--method", method, "--gib", str(gib))))
    for counter in ("p50_us", "p99_us"):
        for method in METHODS:
            rows.append(Row("latency", f"apply_async latency {counter[:3]}, maxtasksperchild=1, {LATENCY_GIB} GiB parent",
                            method, TIME, f"BM_ReplaceLatency/{method}/{LATENCY_GIB}GiB/iterations:{LATENCY_TASKS}/real_time",
                            "replace_latency",
                            ("--method", method, "--gib", str(LATENCY_GIB), "--tasks", str(LATENCY_TASKS)), counter))
    for method in METHODS:
        rows.append(Row("apply", "Pool apply round trip", method, TIME, f"BM_Apply/{method}/real_time", "apply",
                        ("--method", method)))
    for method in METHODS:
        rows.append(Row("map", "Pool map of 1,000,000 tiny tasks", method, RATE, f"BM_Map/{method}/real_time", "map",
                        ("--method", method)))
    return rows


# --- reading the measures ------------------------------------------------------------------

def gbench_figure(measure, row):
    """(value, spread) of a gbench median: ns per operation, items/s, or a µs counter in ns."""
    if measure is None or measure.error:
        return None, None
    if row.counter:
        value = measure.counters.get(row.counter)
        spread = measure.counter_spreads.get(row.counter)
        return (value * 1e3 if value is not None else None), spread
    return measure.value(row.metric), measure.spread


def cpu_figure(measure, samples=None):
    """The median cpu_us counter (gbench Measure) or over Python samples, in ns; or None."""
    if samples is not None:
        values = [s["cpu_us"] for s in samples if isinstance(s.get("cpu_us"), (int, float))]
        return statistics.median(values) * 1e3 if values else None
    if measure is None or measure.error or "cpu_us" not in measure.counters:
        return None
    return measure.counters["cpu_us"] * 1e3


def python_figure(measure, row):
    """(median, (max - min) / median) over the Python runs, in the same units."""
    if measure is None or measure.error:
        return None, None
    if row.counter:
        values = [s[row.counter] * 1e3 for s in measure.samples if s.get(row.counter) is not None]
    elif row.metric == RATE:
        values = [s["items_per_second"] for s in measure.samples if s.get("items_per_second")]
    else:
        values = [s["real_time_ns"] for s in measure.samples]
    if not values:
        return None, None
    median = statistics.median(values)
    return median, ((max(values) - min(values)) / median if median else None)


def cost(value, metric):
    return common.cost(value, metric)


def fmt(value, spread, metric):
    if value is None:
        return "n/a"
    text = common.format_value(value, metric)
    if spread is not None and spread >= 0.10:
        text += f" (±{spread * 100:.0f}%)"
    return text


# --- the expectations ----------------------------------------------------------------------

def find(rows, group, method, label_part=None):
    for row in rows:
        if row.group == group and row.method == method and (label_part is None or label_part in row.label):
            return row
    return None


def figure(rows, group, method, label_part=None, side="mproc"):
    row = find(rows, group, method, label_part)
    pair = (row.mproc if side == "mproc" else row.python) if row else None
    return pair[0] if pair else None


def ratio(a, b):
    return a / b if a is not None and b else None


def expectations(rows, limit_ns):
    """[(expectation, the figures, met)]; met is None when a figure is missing."""
    checks = []

    def check(text, value, bound, figures, at_most=True):
        met = None if value is None else (value <= bound if at_most else value >= bound)
        checks.append((text, figures, met))

    for method in ("forkserver", "spawn"):
        small = figure(rows, "start", method, "0 GiB")
        large = figure(rows, "start", method, "4 GiB")
        r = ratio(large, small)
        check(f"{method}: Pool(2) start flat in the parent's size (4 GiB ÷ 0 GiB ≤ 1.2)", r, 1.2,
              f"{common.format_value(small, TIME)} → {common.format_value(large, TIME)}: "
              f"{r:.2f}×" if r else "n/a")
    fs_process = figure(rows, "process", "forkserver", "0 GiB")
    r = ratio(fs_process, limit_ns)
    check("forkserver: one Process start + join within 2× of a bare fork + _exit + waitpid of a small process", r, 2.0,
          f"{common.format_value(fs_process, TIME)} vs {common.format_value(limit_ns, TIME)}: {r:.2f}×" if r else "n/a")
    fs_pool = figure(rows, "start", "forkserver", "0 GiB")
    fork_pool = figure(rows, "start", "fork", "0 GiB")
    r = ratio(fs_pool, fork_pool)
    check("forkserver: Pool(2) start within 2× of fork's in a small (0 GiB) parent", r, 2.0,
          f"{common.format_value(fs_pool, TIME)} vs {common.format_value(fork_pool, TIME)}: {r:.2f}×" if r else "n/a")
    def with_cpu(group):
        row = find(rows, group, "spawn", "0 GiB")
        value = row.mproc[0] if row and row.mproc else None
        cpu = row.mproc_cpu if row else None
        return value, (f"{common.format_value(value, TIME)} (CPU {common.format_value(cpu, TIME)})"
                       if cpu else common.format_value(value, TIME))

    spawn_pool, text = with_cpu("start")
    check("spawn: Pool(2) start + first apply + destroy under 2 ms (0 GiB parent)", spawn_pool, 2e6, text)
    spawn_process, text = with_cpu("process")
    check("spawn: one Process start + join under 2 ms (0 GiB parent)", spawn_process, 2e6, text)
    fork_p99 = figure(rows, "latency", "fork", "p99")
    fs_p99 = figure(rows, "latency", "forkserver", "p99")
    r = ratio(fork_p99, fs_p99)
    check(f"forkserver: apply_async p99 with workers replaced ({LATENCY_GIB} GiB parent) at least 5× below fork's",
          r, 5.0, f"fork {common.format_value(fork_p99, TIME)}, forkserver {common.format_value(fs_p99, TIME)}: "
          f"{r:.1f}×" if r else "n/a", at_most=False)
    for group, name, metric in (("apply", "apply round trip", TIME), ("map", "map throughput", RATE)):
        base = figure(rows, group, "fork")
        for method in ("forkserver", "spawn"):
            value = figure(rows, group, method)
            r = ratio(cost(value, metric), cost(base, metric))
            check(f"{method}: Pool {name} within 10% of fork's", abs(r - 1) if r else None, 0.10,
                  f"{common.format_value(value, metric)} vs {common.format_value(base, metric)}: "
                  f"cost {r:.2f}× fork's" if r else "n/a")
    return checks


# --- the table -----------------------------------------------------------------------------

def build_table(rows, limit):
    header = ["Workload", "Method", "mproc", "mproc cost ÷ fork's", "mproc CPU", "Python", "Python cost ÷ fork's",
              "Python CPU", "mproc vs Python"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---", "---"] + ["---:"] * 7) + "|"]
    fork_of = {}
    for row in rows:
        if row.method == "fork":
            fork_of[row.label] = row
    for row in rows:
        base = fork_of.get(row.label)
        m, p = row.mproc or (None, None), row.python or (None, None)
        m_vs_fork = ratio(cost(m[0], row.metric), cost(base.mproc[0], row.metric)) if base and base.mproc else None
        p_vs_fork = ratio(cost(p[0], row.metric), cost(base.python[0], row.metric)) if base and base.python else None
        vs_python = ratio(cost(p[0], row.metric), cost(m[0], row.metric))
        lines.append("| " + " | ".join([
            row.label if row.method == "fork" else "",
            row.method,
            fmt(m[0], m[1], row.metric),
            f"{m_vs_fork:.2f}" if m_vs_fork else "—",
            common.format_value(row.mproc_cpu, TIME) if row.mproc_cpu else "",
            fmt(p[0], p[1], row.metric),
            f"{p_vs_fork:.2f}" if p_vs_fork else "—",
            common.format_value(row.python_cpu, TIME) if row.python_cpu else "",
            f"{vs_python:.1f}×" if vs_python else "—",
        ]) + " |")
    lines.append("| Bare fork + _exit + waitpid (the limit, no mproc) | — | "
                 f"{fmt(limit[0], limit[1], TIME)} | | | | | | |")
    return "\n".join(lines)


def thp_mode():
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
        return text[text.index("[") + 1:text.index("]")]
    except (OSError, ValueError):
        return "unknown"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("build_dir", nargs="?", default="build")
    parser.add_argument("--bin-dir", help="where the benchmark binaries are (default BUILD_DIR/bench)")
    parser.add_argument("--out-dir", help="where start_methods.md/json go (default BUILD_DIR/bench)")
    parser.add_argument("--quick", action="store_true", help="3 repetitions and runs, shorter loops")
    parser.add_argument("--repetitions", type=int, help="Google Benchmark repetitions (default 5; 3 with --quick)")
    parser.add_argument("--python-runs", type=int, help="runs of each Python case (default 5; 3 with --quick)")
    parser.add_argument("--min-time", type=float, help="seconds per timing loop (default 0.5; 0.2 with --quick)")
    parser.add_argument("--no-python", action="store_true", help="mproc only")
    args = parser.parse_args()

    build_dir = Path(args.build_dir).resolve()
    bin_dir = Path(args.bin_dir).resolve() if args.bin_dir else build_dir / "bench"
    out_dir = Path(args.out_dir).resolve() if args.out_dir else build_dir / "bench"
    repetitions = args.repetitions or (3 if args.quick else 5)
    python_runs = args.python_runs or (3 if args.quick else 5)
    min_time = args.min_time if args.min_time is not None else (0.2 if args.quick else 0.5)
    for binary in (BINARY, LIMIT.binary):
        if not (bin_dir / binary).exists():
            sys.exit(f"start_methods.py: missing {binary} in {bin_dir}; build it first "
                     f"(cmake --build {args.build_dir} --target {BINARY} {LIMIT.binary})")

    started = time.monotonic()
    machine = common.machine_info(build_dir)
    machine["transparent_hugepage"] = thp_mode()
    load = machine["load_average_before"]
    if load and load[0] > 0.5:
        common.log(f"warning: load average {load[0]:.2f}: other work on this machine will disturb the figures")

    rows = build_rows()
    names = [row.gbench for row in rows]
    common.log(f"[start-methods] {BINARY}: {len(set(names))} cases, {repetitions} repetitions ...")
    try:
        measures = common.run_gbench(bin_dir / BINARY, list(dict.fromkeys(names)), None, repetitions, min_time)
    except RuntimeError as error:
        common.log(f"[start-methods] {error}")
        measures = {}
    common.log(f"[start-methods] {LIMIT.binary}: {LIMIT.name}, {repetitions} repetitions ...")
    limit_measure = common.run_gbench(bin_dir / LIMIT.binary, [LIMIT.name], None, repetitions, min_time).get(LIMIT.name)
    limit = (limit_measure.time_ns, limit_measure.spread) if limit_measure and not limit_measure.error else (None, None)

    python = {}
    if not args.no_python:
        for row in rows:
            key = (row.python_case, row.python_args)
            if key in python:
                continue
            common.log(f"[start-methods] python {SCRIPT} {row.python_case} {' '.join(row.python_args)}: "
                       f"{python_runs} runs ...")
            python[key] = common.run_python(common.PyCase(SCRIPT, row.python_case, None, row.python_args),
                                            python_runs, min_time)
            if python[key].error:
                common.log(f"[start-methods] {python[key].error}")
    for row in rows:
        measure = measures.get(row.gbench)
        if measure is None:
            measure = common.Measure(error=f"{BINARY} did not report {row.gbench}")
        row.mproc = gbench_figure(measure, row)
        row.python = python_figure(python.get((row.python_case, row.python_args)), row)
        row.mproc_error = measure.error
        row.mproc_cpu = cpu_figure(measure)
        py = python.get((row.python_case, row.python_args))
        row.python_cpu = cpu_figure(None, py.samples) if py and not py.error else None

    machine["load_average_after"] = common.load_average()
    elapsed = time.monotonic() - started
    heading = (f"CPU: {machine['cpu_model']}, {machine['cores_usable']} cores usable ({machine['cores_online']} online); "
               f"Linux {machine['kernel']}, transparent huge pages: {machine['transparent_hugepage']}; "
               f"Python {machine['python']}; build {machine['build_type'] or 'unknown'}; {machine['date']}")
    loads = lambda values: "/".join(f"{v:.2f}" for v in values) if values else "?"
    settings = (f"{repetitions} gbench repetitions (median), {python_runs} Python runs (median), min time {min_time} s; "
                f"load average (1/5/15 min) {loads(machine['load_average_before'])} before, "
                f"{loads(machine['load_average_after'])} after; {elapsed:.0f} s in all")
    table = build_table(rows, limit)
    checks = expectations(rows, limit[0])
    check_lines = ["| Expectation | Figures | Met |", "|---|---|---|"]
    for text, figures, met in checks:
        check_lines.append(f"| {text} | {figures} | {'n/a' if met is None else ('met' if met else '**missed**')} |")
    check_table = "\n".join(check_lines)
    legend = ("Times are medians of wall-clock time per operation; CPU: user + system time per cycle of the "
              "benchmark process and its reaped children (under forkserver the workers are the server's "
              "children and are not counted); latency rows are the median over repetitions "
              "(runs) of each one's percentile of per-task submit → result times; map is tasks/s. cost ÷ fork's: "
              "the method's time (or 1/throughput) over fork's on the same row and parent size; 1.00 is fork's "
              "cost. mproc vs Python: Python's cost ÷ mproc's. (±N%): spread over repetitions (gbench CV) or runs "
              "((max - min) / median), shown when 10% or more.")

    print(heading, flush=True)
    print(settings)
    print()
    print(table)
    print()
    print(check_table)
    print()
    print(legend, flush=True)

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "start_methods.md").write_text("\n\n".join(
        ["# mproc start methods", heading, settings, table, check_table, legend]) + "\n")
    result = {
        "machine": machine,
        "settings": {"repetitions": repetitions, "python_runs": python_runs, "min_time": min_time,
                     "elapsed_s": elapsed},
        "limit_fork_exit_waitpid_ns": limit[0],
        "rows": [{"workload": r.label, "method": r.method, "gbench": f"{BINARY}:{r.gbench}",
                  "counter": r.counter, "python_case": f"{SCRIPT} {r.python_case} {' '.join(r.python_args)}",
                  "mproc": r.mproc[0], "mproc_spread": r.mproc[1], "mproc_error": r.mproc_error,
                  "python": r.python[0], "python_spread": r.python[1],
                  "python_runs": (python[(r.python_case, r.python_args)].samples
                                  if (r.python_case, r.python_args) in python else None)} for r in rows],
        "gbench": {name: {"time_ns": m.time_ns, "items_per_second": m.items_per_second, "counters": m.counters,
                          "spread": m.spread, "error": m.error} for name, m in measures.items()},
        "expectations": [{"expectation": t, "figures": f, "met": m} for t, f, m in checks],
    }
    (out_dir / "start_methods.json").write_text(json.dumps(result, indent=2) + "\n")
    common.log(f"[start-methods] wrote {out_dir / 'start_methods.md'} and {out_dir / 'start_methods.json'}")
    return 0 if all(r.mproc[0] is not None for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
