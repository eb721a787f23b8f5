"""mpi4py.futures, the counterpart of bench/bench_mpi.cpp (mproc::mpi).

    mpiexec -n 3 python3 -m mpi4py.futures bench/python/mpi_futures.py [--repetitions N]

Under `-m mpi4py.futures`, rank 0 runs this script and MPIPoolExecutor() uses ranks 1..N-1
(the same world mode as mproc::mpi::PoolExecutor under `mpiexec -n N`). Prints JSON:
for each case, the per-repetition figures and their median.

roundtrip  `executor.submit(inc, i).result()`          (BM_MpiRoundTrip; seconds per call)
burst      20,000 `submit(inc, i)`, then every result  (BM_MpiBurst; tasks per second)
map        `map(inc, range(10**6), chunksize=1000)`    (BM_MpiMap; items per second)
"""

import argparse
import json
import statistics
import time

from mpi4py.futures import MPIPoolExecutor

BURST = 20_000
MAP_ITEMS = 1_000_000
MAP_CHUNK = 1_000
ROUNDTRIPS = 2_000


def inc(x):
    return x + 1


def roundtrip(executor):
    start = time.perf_counter()
    for i in range(ROUNDTRIPS):
        executor.submit(inc, i).result()
    return (time.perf_counter() - start) / ROUNDTRIPS


def burst(executor):
    start = time.perf_counter()
    futures = [executor.submit(inc, i) for i in range(BURST)]
    for f in futures:
        f.result()
    return BURST / (time.perf_counter() - start)


def map_items(executor):
    start = time.perf_counter()
    total = sum(executor.map(inc, range(MAP_ITEMS), chunksize=MAP_CHUNK))
    assert total == MAP_ITEMS * (MAP_ITEMS + 1) // 2
    return MAP_ITEMS / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repetitions", type=int, default=5)
    args = parser.parse_args()
    results = {}
    with MPIPoolExecutor() as executor:
        for f in [executor.submit(inc, i) for i in range(2000)]:  # warm-up, as bench_mpi.cpp
            f.result()
        for name, case in (("roundtrip", roundtrip), ("burst", burst), ("map", map_items)):
            runs = [case(executor) for _ in range(args.repetitions)]
            results[name] = {"runs": runs, "median": statistics.median(runs)}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
