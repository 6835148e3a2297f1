"""Loopback helpers shared by the transport benchmarks: ports, child roles, the raw TCP baseline."""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(script: str, *args: str) -> dict:
    """Run ``script`` in a child process and return the JSON object of its last output line."""
    out = subprocess.run([sys.executable, script, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def role_tcp_sender(port: int, path: Path, chunk: int) -> None:
    """Child role: send ``path`` over one TCP connection; print the time until the receiver is done."""
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock, path.open("rb") as f:
        while data := f.read(chunk):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        sock.recv(1)  # the receiver's "done" after its write finished
    print(json.dumps({"seconds": time.perf_counter() - start, "rss_mib": peak_rss_mib()}))


def tcp_copy(script: str, path: Path, target: Path, chunk: int) -> dict:
    """Baseline: a child (``script --role tcp``) sends ``path``; this process writes it to ``target``."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def receive() -> None:
        conn, _ = server.accept()
        with conn, target.open("wb") as out:
            while data := conn.recv(chunk):
                out.write(data)
            out.flush()
            conn.sendall(b"k")

    thread = threading.Thread(target=receive)
    thread.start()
    port = str(server.getsockname()[1])
    result = child(script, "--role", "tcp", "--port", port, "--bag", str(path), "--chunk", str(chunk))
    thread.join()
    server.close()
    return result
