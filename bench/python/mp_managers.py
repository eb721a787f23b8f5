"""Python's multiprocessing.Manager, the counterpart of bench/bench_managers.cpp.

    python3 bench/python/mp_managers.py CASE [--min-time S]

dict_get        `d["key"]` on a Manager().dict()                         (BM_Manager_DictGet)
dict_set_get    `d["key"] = i; d["key"]`                                  (BM_Manager_DictSetGet)
queue_put_get   a child puts 10,000 ints through Manager().Queue(), the parent gets them
                                                                          (BM_Manager_QueuePutGet)
lock_counter4   4 processes x 500 `with lock: v.value = v.value + 1` on a Manager Lock and
                Value                                                     (BM_Manager_LockCounter4)
"""

import _common

ITEMS = 10_000
INCREMENTS = 500


def dict_get(args):
    with _common.context().Manager() as m:
        d = m.dict()
        d["key"] = 1
        iterations, seconds = _common.run_for(lambda: d["key"], args.min_time, 0.2)
    _common.report("dict_get", iterations, seconds)


def dict_set_get(args):
    with _common.context().Manager() as m:
        d = m.dict()
        counter = [0]

        def step():
            d["key"] = counter[0]
            d["key"]
            counter[0] += 1

        iterations, seconds = _common.run_for(step, args.min_time, 0.2)
    _common.report("dict_set_get", iterations, seconds)


def produce(q):
    for i in range(ITEMS):
        q.put(i)


def queue_put_get(args):
    ctx = _common.context()
    with ctx.Manager() as m:
        q = m.Queue()

        def step():
            p = ctx.Process(target=produce, args=(q,))
            p.start()
            total = 0
            for _ in range(ITEMS):
                total += q.get()
            p.join()

        iterations, seconds = _common.run_for(step, args.min_time, 0.0)
    _common.report("queue_put_get", iterations, seconds, items_per_iteration=ITEMS)


def count_under_lock(lock, v):
    for _ in range(INCREMENTS):
        with lock:
            v.value = v.value + 1


def lock_counter4(args):
    ctx = _common.context()
    with ctx.Manager() as m:
        lock = m.Lock()

        def step():
            v = m.Value("q", 0)
            workers = [ctx.Process(target=count_under_lock, args=(lock, v)) for _ in range(4)]
            for p in workers:
                p.start()
            for p in workers:
                p.join()
            assert v.value == 4 * INCREMENTS

        iterations, seconds = _common.run_for(step, args.min_time, 0.0)
    _common.report("lock_counter4", iterations, seconds, items_per_iteration=4 * INCREMENTS)


CASES = {"dict_get": dict_get, "dict_set_get": dict_set_get, "queue_put_get": queue_put_get,
         "lock_counter4": lock_counter4}

if __name__ == "__main__":
    args = _common.parse_args(CASES, __doc__)
    CASES[args.case](args)
