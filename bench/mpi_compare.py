#!/usr/bin/env python3
"""mproc::mpi against mpi4py.futures, same machine, same launcher, same world mode.

    python3 bench/mpi_compare.py [BUILD_DIR] [--ranks N] [--repetitions R]

Runs `mpiexec -n N BUILD_DIR/bench/bench_mpi` (Google Benchmark, R repetitions, medians) and
`mpiexec -n N python3 -m mpi4py.futures bench/python/mpi_futures.py` (R repetitions,
medians), both over loopback TCP (`--mca btl tcp,self`, the transport that crosses
machines), and prints the medians and the ratios. mpi4py is Debian's python3-mpi4py, so the
Python side runs /usr/bin/python3. Standard library only.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def launcher(ranks):
    return ["mpiexec", "--oversubscribe", "--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", "lo",
            "--mca", "oob_tcp_if_include", "lo", "-n", str(ranks)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("build_dir", nargs="?", default="build")
    parser.add_argument("--ranks", type=int, default=3)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--python", default="/usr/bin/python3")
    args = parser.parse_args()
    env = dict(os.environ)
    if os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")

    binary = Path(args.build_dir) / "bench" / "bench_mpi"
    out = subprocess.run(launcher(args.ranks) + [str(binary), "--benchmark_format=json",
                         f"--benchmark_repetitions={args.repetitions}", "--benchmark_report_aggregates_only=true"],
                         env=env, check=True, capture_output=True, text=True).stdout
    medians = {b["run_name"].split("/")[0]: b for b in json.loads(out)["benchmarks"] if b.get("aggregate_name") == "median"}
    ours = {
        "roundtrip": medians["BM_MpiRoundTrip"]["real_time"] * 1e-6,  # microseconds -> seconds
        "burst": medians["BM_MpiBurst"]["items_per_second"],
        "map": medians["BM_MpiMap"]["items_per_second"],
    }

    out = subprocess.run(launcher(args.ranks) + [args.python, "-m", "mpi4py.futures",
                         str(HERE / "python" / "mpi_futures.py"), f"--repetitions={args.repetitions}"],
                         env=env, check=True, capture_output=True, text=True).stdout
    theirs = {name: value["median"] for name, value in json.loads(out.strip().splitlines()[-1]).items()}

    print(f"mproc::mpi vs mpi4py.futures, mpiexec -n {args.ranks} (1 root + {args.ranks - 1} workers), "
          f"medians of {args.repetitions}")
    print(f"{'case':<34}{'mproc::mpi':>14}{'mpi4py':>14}{'ratio':>10}")
    rows = [
        ("round trip submit().result()", "roundtrip", lambda s: f"{s * 1e6:.1f} us", lambda a, b: b / a),
        ("burst of 20,000 submits", "burst", lambda r: f"{r / 1e3:.1f} k/s", lambda a, b: a / b),
        ("map 10^6 items, chunksize 1000", "map", lambda r: f"{r / 1e6:.2f} M/s", lambda a, b: a / b),
    ]
    for label, key, fmt, ratio in rows:
        print(f"{label:<34}{fmt(ours[key]):>14}{fmt(theirs[key]):>14}{ratio(ours[key], theirs[key]):>9.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
