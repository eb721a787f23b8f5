"""Interoperation with the real Python: multiprocessing.connection's Client and Listener
against mproc's, both ways, over TCP, Unix and abstract sockets; wrong keys from Python
refused; and Python 3.12's {sha256} handshake played by hand (this python3 may be older).

Usage: interop.py PATH/TO/listener_peer
"""
import hashlib
import hmac
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from multiprocessing.connection import AuthenticationError, Client, Listener

PEER = sys.argv[1]
TIMEOUT = 30
failures = []


def check(condition, what):
    if not condition:
        failures.append(what)
        print("FAIL:", what, flush=True)


def start_server(address, key):
    proc = subprocess.Popen([PEER, "serve", address, key], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().split()
    assert line and line[0] == "READY", line
    return proc, line[1]


def python_address(kind, printed):
    if kind == "tcp":
        host, port = printed.rsplit(":", 1)
        return (host.strip("[]"), int(port))
    if kind == "abstract":
        return "\0" + printed[1:]
    return printed


def sizes():
    return [0, 1, 100, 65535, 65536, 70000, 5 << 20]


def python_client_against_mproc_listener(kind, spec):
    key = b"interop key"
    proc, printed = start_server(spec, key.decode())
    address = python_address(kind, printed)
    try:
        with Client(address, authkey=key) as c:
            for n in sizes():
                data = os.urandom(n)
                c.send_bytes(data)
                check(c.recv_bytes() == data, f"{kind}: echo of {n} bytes")
        # A wrong key from Python: refused on both sides; the listener serves on.
        try:
            Client(address, authkey=b"wrong key")
            check(False, f"{kind}: a wrong key from Python was accepted")
        except AuthenticationError:
            pass
        # No key from Python while the listener wants one: its first bytes are not an answer.
        with Client(address) as c:
            c.send_bytes(b"hello")
            check(c.recv_bytes().startswith(b"#CHALLENGE#{sha256}"), f"{kind}: a keyless client sees the challenge")
            check(c.recv_bytes() == b"#FAILURE#", f"{kind}: a keyless client is refused")
        with Client(address, authkey=key) as c:
            c.send_bytes(b"still serving")
            check(c.recv_bytes() == b"still serving", f"{kind}: served after a wrong key")
            c.send_bytes(b"quit")
        out = proc.stdout.read()
        check(proc.wait(timeout=TIMEOUT) == 0, f"{kind}: server exit status")
        check(out.count("AUTH-FAILED") == 2, f"{kind}: the server reported the wrong and the missing key ({out!r})")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def mproc_client_against_python_listener(kind, address, spec_of):
    key = b"py listener key"
    with Listener(address, authkey=key) as listener:
        spec = spec_of(listener.address)
        proc = subprocess.Popen([PEER, "connect", spec, key.decode()], stdout=subprocess.PIPE, text=True)
        with listener.accept() as c:
            while True:
                data = c.recv_bytes()
                if data == b"quit":
                    break
                c.send_bytes(data)
        out = proc.stdout.read()
        check(proc.wait(timeout=TIMEOUT) == 0 and "CLIENT-OK" in out, f"{kind}: mproc Client to Python Listener: {out!r}")
        # And a wrong key from mproc's side is refused by Python.
        proc = subprocess.Popen([PEER, "connect", spec, "wrong"], stdout=subprocess.PIPE, text=True)
        try:
            listener.accept()
            check(False, f"{kind}: Python accepted mproc's wrong key")
        except AuthenticationError:
            pass
        out = proc.stdout.read()
        check(proc.wait(timeout=TIMEOUT) != 0 and "rejected" in out, f"{kind}: mproc Client with a wrong key: {out!r}")


# ---- Python 3.12's handshake, by hand ---------------------------------------------------

def send_msg(sock, data):
    sock.sendall(struct.pack("!i", len(data)) + data)


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def recv_msg(sock):
    (n,) = struct.unpack("!i", recv_exact(sock, 4))
    return recv_exact(sock, n)


def sha256_client_by_hand(printed):
    key = b"modern key"
    host, port = printed.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=TIMEOUT)
    # 1. mproc delivers b'#CHALLENGE#{sha256}' + 40 random bytes.
    challenge = recv_msg(sock)
    check(challenge.startswith(b"#CHALLENGE#{sha256}") and len(challenge) == 11 + 8 + 40,
          f"mproc delivers the {{sha256}} challenge: {challenge[:30]!r}")
    message = challenge[len(b"#CHALLENGE#"):]
    send_msg(sock, b"{sha256}" + hmac.new(key, message, hashlib.sha256).digest())
    check(recv_msg(sock) == b"#WELCOME#", "mproc welcomes a {sha256} answer")
    # 2. We deliver a 3.12 challenge; mproc must answer {sha256} + HMAC-SHA256 of all of it.
    ours = b"{sha256}" + os.urandom(40)
    send_msg(sock, b"#CHALLENGE#" + ours)
    answer = recv_msg(sock)
    check(answer == b"{sha256}" + hmac.new(key, ours, hashlib.sha256).digest(), "mproc answers {sha256} correctly")
    send_msg(sock, b"#WELCOME#")
    send_msg(sock, b"after the handshake")
    check(recv_msg(sock) == b"after the handshake", "bytes flow after a {sha256} handshake")
    send_msg(sock, b"quit")
    sock.close()


def sha256_server_by_hand():
    key = b"modern key"
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        proc = subprocess.Popen([PEER, "connect", f"tcp:127.0.0.1:{port}", key.decode()], stdout=subprocess.PIPE,
                                text=True)
        sock, _ = server.accept()
        sock.settimeout(TIMEOUT)
        with sock:
            ours = b"{sha256}" + os.urandom(40)
            send_msg(sock, b"#CHALLENGE#" + ours)
            check(recv_msg(sock) == b"{sha256}" + hmac.new(key, ours, hashlib.sha256).digest(),
                  "mproc Client answers a 3.12 server's challenge")
            send_msg(sock, b"#WELCOME#")
            theirs = recv_msg(sock)
            check(theirs.startswith(b"#CHALLENGE#{sha256}"), "mproc Client delivers {sha256}")
            send_msg(sock, b"{sha256}" + hmac.new(key, theirs[11:], hashlib.sha256).digest())
            check(recv_msg(sock) == b"#WELCOME#", "mproc Client welcomes the 3.12 server")
            while True:
                data = recv_msg(sock)
                if data == b"quit":
                    break
                send_msg(sock, data)
        out = proc.stdout.read()
        check(proc.wait(timeout=TIMEOUT) == 0 and "CLIENT-OK" in out, f"mproc Client against 3.12 by hand: {out!r}")


def main():
    tmp = tempfile.mkdtemp()
    python_client_against_mproc_listener("tcp", "tcp:127.0.0.1:0")
    python_client_against_mproc_listener("unix", f"unix:{tmp}/mproc.sock")
    python_client_against_mproc_listener("abstract", f"abstract:mproc-interop-{os.getpid()}")
    mproc_client_against_python_listener("tcp", ("127.0.0.1", 0), lambda a: f"tcp:{a[0]}:{a[1]}")
    mproc_client_against_python_listener("unix", f"{tmp}/py.sock", lambda a: f"unix:{a}")
    proc, printed = start_server("tcp:127.0.0.1:0", "modern key")
    try:
        sha256_client_by_hand(printed)
        check(proc.wait(timeout=TIMEOUT) == 0, "server exit after the by-hand client")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    sha256_server_by_hand()
    print(f"python {sys.version.split()[0]}: {len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
