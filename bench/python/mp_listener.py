"""Python's multiprocessing.connection Listener / Client, the counterpart of
bench/bench_listener.cpp.

    python3 bench/python/mp_listener.py CASE [--min-time S] [--size BYTES]

roundtrip_unix  `c.send(i); c.recv()` over a Unix socket (abstract name), the child doing
                `c.send(c.recv())`                                     (BM_Socket_RoundTripInt/0)
roundtrip_tcp   the same over TCP loopback                             (BM_Socket_RoundTripInt/1)
send_bytes_tcp  `c.send_bytes(buf)` / child `c.recv_bytes()` over TCP, buf of --size
                                                                       (BM_Socket_SendBytes)

The parent listens; one child (start method 'fork') connects before the timed loop and
serves every iteration until the parent closes its end. No authkey, as in the C++ cases.
"""

import os
from multiprocessing.connection import Client, Listener

import _common

SYNC = b"\x02"


def address(kind):
    if kind == "unix":
        return "\0mproc-bench-py-%d" % os.getpid()
    return ("127.0.0.1", 0)


def serve_echo(c):
    while True:
        c.send(c.recv())


def serve_sink(c):
    while True:
        message = c.recv_bytes()
        if len(message) == 1:
            c.send_bytes(message)


def child(where, serve):
    c = Client(where)
    try:
        serve(c)
    except EOFError:
        pass


def with_peer(kind, serve, body):
    listener = Listener(address(kind))
    process = _common.context().Process(target=child, args=(listener.address, serve))
    process.start()
    c = listener.accept()
    try:
        return body(c)
    finally:
        c.close()
        process.join()
        listener.close()


def roundtrip(kind, args):
    def body(c):
        counter = [0]

        def step():
            c.send(counter[0])
            c.recv()
            counter[0] += 1

        return _common.run_for(step, args.min_time, 0.2)

    iterations, seconds = with_peer(kind, serve_echo, body)
    _common.report("roundtrip_" + kind, iterations, seconds)


def send_bytes_tcp(args):
    buf = b"\x01" * args.size

    def body(c):
        iterations, seconds = _common.run_for(lambda: c.send_bytes(buf), args.min_time, 0.2)
        # Drained: the time counts until the child has every byte.
        import time
        start = time.perf_counter()
        c.send_bytes(SYNC)
        c.recv_bytes()
        return iterations, seconds + (time.perf_counter() - start)

    iterations, seconds = with_peer("tcp", serve_sink, body)
    _common.report("send_bytes_tcp", iterations, seconds, bytes_per_iteration=args.size)


CASES = {
    "roundtrip_unix": lambda args: roundtrip("unix", args),
    "roundtrip_tcp": lambda args: roundtrip("tcp", args),
    "send_bytes_tcp": send_bytes_tcp,
}

if __name__ == "__main__":
    arguments = _common.parse_args(CASES, __doc__)
    CASES[arguments.case](arguments)
