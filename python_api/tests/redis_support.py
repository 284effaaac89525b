"""A real redis-server for the cluster-mode tests: a free loopback port, AOF on, its files in a
temporary folder."""

import contextlib
import os
import shutil
import socket
import subprocess
import time

import pytest

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
requires_redis = pytest.mark.skipif(not os.path.exists(REDIS), reason="redis-server is not installed")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port):
    """Waits (up to 5 s) until something accepts connections on the loopback `port`."""
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)


@contextlib.contextmanager
def redis_server(directory):
    """Starts redis-server with its files in `directory`, yields its URL once it accepts
    connections, and stops it on exit."""
    port = _free_port()
    redis = subprocess.Popen(
        [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", "", "--appendonly", "yes"],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        redis.terminate()
        redis.wait(10)
