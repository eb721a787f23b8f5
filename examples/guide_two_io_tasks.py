# The Python side of guide_two_io_tasks.cpp: two I/O tasks as two Processes and on a
# Pool(2), the pool's time split into start-up, tasks and shutdown; medians of 21 runs.
# Run: python3 examples/guide_two_io_tasks.py
import os
import statistics
import time
from multiprocessing import Pool, Process


def io_task(index):
    path = '/tmp/mproc_guide_io_py_%d_%d' % (os.getpid(), index)
    with open(path, 'w') as f:
        f.write('x' * 4096)
    os.remove(path)
    return index


if __name__ == '__main__':
    rows = []
    for run in range(26):
        t0 = time.perf_counter()
        ps = [Process(target=io_task, args=(i,)) for i in range(2)]
        for p in ps:
            p.start()
        for p in ps:
            p.join()
        processes = time.perf_counter() - t0

        t1 = time.perf_counter()
        pool = Pool(2)
        started = time.perf_counter() - t1
        t2 = time.perf_counter()
        pool.map(io_task, [0, 1], 1)
        tasks = time.perf_counter() - t2
        pool.close()
        pool.join()
        total = time.perf_counter() - t1
        if run >= 5:
            rows.append((processes, total, started, tasks, total - started - tasks))
    med = [statistics.median(r[i] for r in rows) * 1e3 for i in range(5)]
    print('two I/O tasks: 2 Processes %.2f ms; Pool(2) %.2f ms = start-up %.2f ms + tasks %.2f ms + '
          'shutdown %.2f ms' % tuple(med))
