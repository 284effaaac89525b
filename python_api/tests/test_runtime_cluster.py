"""The Ray-style runtime over a real redis-server and real `python -m ferrocluster worker`
processes: results, ordering, errors, cancel, and refusal of unregistered functions."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import ferrocluster as fc
import test_runtime_tasks as tasks

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
pytestmark = pytest.mark.skipif(not os.path.exists(REDIS), reason="redis-server is not installed")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A redis-server on a free loopback port and two Python workers (lease 600 ms)."""
    tmp = tmp_path_factory.mktemp("redis")
    port = _free_port()
    redis = subprocess.Popen(
        [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp), "--save", "", "--appendonly", "yes"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "ferrocluster", "worker", "--redis", url, "--import", "test_runtime_tasks",
             "--concurrency", "2", "--lease-ms", "600"],
            env=env,
        )
        for _ in range(2)
    ]
    yield url
    for worker in workers:
        worker.terminate()
    for worker in workers:
        assert worker.wait(10) == 0
    redis.terminate()
    redis.wait(10)


@pytest.fixture
def client(cluster):
    fc.shutdown()
    fc.init(cluster, lease_ms=600)
    yield cluster
    fc.shutdown()


def test_results_in_order_with_arrays_and_refs(client):
    refs = [tasks.sleepy.remote(i, 0.05 * (4 - i)) for i in range(4)]
    assert fc.get(refs, timeout=20) == [0, 1, 2, 3]
    total = tasks.add.remote(tasks.add.remote(1, 2), fc.put(np.arange(3, dtype=np.float32)))
    np.testing.assert_array_equal(fc.get(total, timeout=20), np.array([3, 4, 5], dtype=np.float32))


def test_errors_keep_their_type_and_remote_traceback(client):
    with pytest.raises(tasks.TaskFailure, match="bad input") as info:
        fc.get(tasks.fail.remote("bad input"), timeout=20)
    assert "in fail" in info.value.remote_traceback


def test_get_timeout_and_wait(client):
    slow, fast = tasks.sleepy.remote(1, 1.0), tasks.add.remote(1, 1)
    with pytest.raises(fc.GetTimeoutError):
        fc.get(slow, timeout=0.1)
    ready, not_ready = fc.wait([slow, fast], num_returns=1, timeout=20)
    assert ready == [fast] and not_ready == [slow]


def test_cancel_running_task(client):
    ref = tasks.loop_until_cancelled.remote()
    time.sleep(0.5)
    fc.cancel(ref)
    with pytest.raises(fc.TaskCancelledError):
        fc.get(ref, timeout=20)


def test_unregistered_function_is_refused(client):
    from ferrocluster.runtime.api import backend

    queue = backend().queue
    payload = {"v": 1, "fn": "os:system", "args": ["echo pwned"], "kwargs": {}, "retry_on": False}
    task_id, _ = queue.enqueue("py", "py.call", json.dumps(payload), id="evil-1")
    status = json.loads(queue.wait([task_id], 20.0))[0]
    assert status["state"] == "dead"
    assert "not registered" in status["error"]
    with pytest.raises(fc.RemoteTaskError, match="not registered"):
        fc.get(fc.ObjectRef(task_id, backend()), timeout=5)
