"""Python's multiprocessing.Pipe / Connection, the counterpart of bench/bench_connection.cpp.

    python3 bench/python/mp_connection.py CASE [--min-time S] [--size BYTES]

roundtrip_int  `a.send(i); a.recv()`, the child doing `b.send(b.recv())`   (BM_Pipe_RoundTripInt)
send_bytes     `a.send_bytes(buf)` / child `b.recv_bytes()`, buf of --size (BM_Pipe_SendBytes)
send_obj       `a.send(buf)` / child `b.recv()`: a pickled bytes object     (BM_Pipe_SendVector)

As in the C++ benchmarks, one child (start method 'fork') is started before the timed loop
and serves every iteration; it leaves on EOFError when the parent closes its end. In the bulk
cases a 1-byte message is a sync request the child echoes: the timed loop ends with one, so
it stops only when the child has received every byte.
"""

import time

import _common

SYNC = b"\x02"


class Peer:
    """A child at the other end of a Pipe, running serve(its_end) until we close ours."""

    def __init__(self, serve):
        ctx = _common.context()
        self.ours, theirs = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=Peer._child, args=(serve, self.ours, theirs))
        self.process.start()
        theirs.close()

    @staticmethod
    def _child(serve, ours, theirs):
        ours.close()  # else the child would hold our end open and never see EOF
        try:
            serve(theirs)
        except EOFError:
            pass

    def finish(self):
        self.ours.close()
        self.process.join()
        if self.process.exitcode != 0:
            raise RuntimeError(f"child exited with {self.process.exitcode}")


def serve_echo(end):
    while True:
        end.send(end.recv())


def serve_bytes(end):
    while True:
        message = end.recv_bytes()
        if len(message) == len(SYNC):
            end.send_bytes(message)


def serve_objects(end):
    while True:
        message = end.recv()
        if len(message) == len(SYNC):
            end.send(message)


def roundtrip_int(args):
    peer = Peer(serve_echo)
    conn = peer.ours
    counter = [0]

    def step():
        value = counter[0]
        conn.send(value)
        if conn.recv() != value:
            raise RuntimeError("echoed a different value")
        counter[0] = value + 1

    iterations, seconds = _common.run_for(step, args.min_time, warmup_time=min(0.1, args.min_time))
    peer.finish()
    _common.report("roundtrip_int", iterations, seconds)


def bulk(args, case, serve, send, recv):
    peer = Peer(serve)
    conn = peer.ours
    message = b"\x01" * args.size
    send_message = getattr(conn, send)
    receive = getattr(conn, recv)

    def sync():
        send_message(SYNC)
        receive()

    # Warm-up, drained by a sync so that the timed loop starts with empty socket buffers.
    _common.run_for(lambda: send_message(message), 0.0, warmup_time=min(0.05, args.min_time))
    sync()
    # The timed loop ends with a sync round trip: the bytes are not delivered before it.
    start = time.perf_counter()
    iterations, _ = _common.run_for(lambda: send_message(message), args.min_time, warmup_time=0.0)
    sync()
    seconds = time.perf_counter() - start
    peer.finish()
    _common.report(case, iterations, seconds, bytes_per_iteration=args.size, size=args.size)


def send_bytes(args):
    bulk(args, "send_bytes", serve_bytes, "send_bytes", "recv_bytes")


def send_obj(args):
    bulk(args, "send_obj", serve_objects, "send", "recv")


CASES = {"roundtrip_int": roundtrip_int, "send_bytes": send_bytes, "send_obj": send_obj}

if __name__ == "__main__":
    arguments = _common.parse_args(CASES, __doc__)
    CASES[arguments.case](arguments)
