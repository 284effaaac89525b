"""A real redis-server for the cluster-mode tests: a free loopback port, AOF on, its files in a
temporary folder."""

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
requires_redis = pytest.mark.skipif(not os.path.exists(REDIS), reason="redis-server is not installed")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(directory, *args, tls=False):
    """Starts redis-server on a free loopback port (the TLS port with `tls`) with its files and
    log in `directory`, and returns `(process, port)` once that server's own log says it is
    ready: a connect alone would also succeed against whoever took the port first. A taken
    port makes redis exit; a fresh one is tried then."""
    for _ in range(5):
        port = _free_port()
        ports = ["--port", "0", "--tls-port", str(port)] if tls else ["--port", str(port)]
        log = Path(directory) / f"redis-{port}.log"
        process = subprocess.Popen(
            [REDIS, *ports, "--bind", "127.0.0.1", "--dir", str(directory), "--save", "", "--logfile", str(log), *args],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            text = log.read_text() if log.exists() else ""
            if "Ready to accept connections" in text:
                return process, port
            if process.poll() is not None:
                if "Address already in use" in text:
                    break
                raise RuntimeError(f"redis-server exited on port {port}:\n{text}")
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"redis-server did not start on port {port}:\n{text}")
            time.sleep(0.02)
    raise RuntimeError("redis-server found no free port in 5 tries")


@contextlib.contextmanager
def redis_server(directory):
    """Starts redis-server (AOF on) with its files in `directory`, yields its URL once it is
    ready, and stops it on exit."""
    redis, port = start_redis(directory, "--appendonly", "yes")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        redis.terminate()
        redis.wait(10)
