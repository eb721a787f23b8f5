"""The Python half of examples/python_server.cpp: plain multiprocessing.connection.

    python3 python_client.py HOST PORT     (or the "HOST PORT" line on stdin)
"""
import sys
from multiprocessing.connection import Client

host, port = sys.argv[1:3] if len(sys.argv) == 3 else sys.stdin.readline().split()
with Client((host, int(port)), authkey=b"example key") as c:
    for command in ["square 7", "sum 1 2 3 4"]:
        c.send_bytes(command.encode())
        print(f"{command} -> {c.recv_bytes().decode()}")
    c.send_bytes(b"bye")
