"""Python's multiprocessing.Process, the counterpart of bench/bench_process.cpp.

    python3 bench/python/mp_process.py start_join [--min-time S]

start_join: `p = Process(target=noop); p.start(); p.join()` per iteration (start method
'fork'), the counterpart of BM_Process_StartJoin.
"""

import _common


def noop():
    pass


def start_join(args):
    ctx = _common.context()

    def step():
        process = ctx.Process(target=noop)
        process.start()
        process.join()
        if process.exitcode != 0:
            raise RuntimeError(f"child exited with {process.exitcode}")

    iterations, seconds = _common.run_for(step, args.min_time, warmup_time=min(0.1, args.min_time))
    _common.report("start_join", iterations, seconds)


CASES = {"start_join": start_join}

if __name__ == "__main__":
    arguments = _common.parse_args(CASES, __doc__)
    CASES[arguments.case](arguments)
