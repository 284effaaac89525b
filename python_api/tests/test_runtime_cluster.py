"""The Ray-style runtime over a real redis-server and real `python -m ferrocluster worker`
processes: results, ordering, errors, retries, cancel, hand-back on SIGTERM, large values by
reference, notifications, and refusal of unregistered functions."""

import json
import signal
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

import ferrocluster as fc
from redis_support import redis_server, requires_redis
import test_runtime_tasks as tasks

pytestmark = requires_redis


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A redis-server on a free loopback port and two Python workers (lease 600 ms)."""
    tmp = tmp_path_factory.mktemp("redis")
    with redis_server(tmp) as url:
        workers = [_worker(url, tmp) for _ in range(2)]
        for worker in workers:
            _wait_serving(worker)
        yield url
        for worker in workers:
            worker.terminate()
        for worker in workers:
            assert worker.wait(10) == 0


def _worker(url, logs, *options):
    """A `python -m ferrocluster worker` process serving the test tasks (lease 600 ms), its
    log in the folder `logs`."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    command = [sys.executable, "-m", "ferrocluster", "worker", "--redis", url, "--import", "test_runtime_tasks",
               "--concurrency", "2", "--lease-ms", "600", *options]
    log = Path(tempfile.mkstemp(prefix="worker-", suffix=".log", dir=logs)[1])
    with log.open("w") as stderr:
        worker = subprocess.Popen(command, env=env, stderr=stderr)
    worker.log = log
    return worker


def _wait_serving(worker):
    """Waits until `worker` serves (a loaded machine takes seconds to start Python)."""
    for _ in range(1200):
        if "serving queues" in worker.log.read_text():
            return
        assert worker.poll() is None, worker.log.read_text()
        time.sleep(0.05)
    raise TimeoutError(f"worker {worker.pid} did not start: {worker.log.read_text()}")


def _redis(url, *command):
    """A command through redis-cli (to look at or damage what the queue stored)."""
    out = subprocess.run(["redis-cli", "-u", url, "--no-raw", *command], capture_output=True, text=True)
    return out.stdout


def _counter(url, namespace, name):
    return int(_redis(url, "--raw", "HGET", f"{namespace}:stats", name).strip() or 0)


def _blob_keys(url):
    return [k for k in _redis(url, "--raw", "KEYS", "fc:blob:*").split() if k]


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


def test_get_of_a_list_waits_for_all_and_raises_the_first_error_in_order(client):
    slow, fast = tasks.sleepy.remote("slow", 0.6), tasks.add.remote(1, 1)
    with pytest.raises(fc.GetTimeoutError):
        fc.get([fast, slow], timeout=0.2)
    assert fc.get([slow, fast], timeout=20) == ["slow", 2]
    failing = [tasks.sleepy.remote(0, 0.3), tasks.fail.remote("first"), tasks.fail.remote("second")]
    with pytest.raises(tasks.TaskFailure, match="first"):
        fc.get(failing, timeout=20)
    ready, not_ready = fc.wait(failing, num_returns=3, timeout=20)
    assert ready == failing and not_ready == []


def test_retries_follow_max_retries_and_retry_exceptions(client, tmp_path):
    recovers = tasks.flaky.options(max_retries=2, retry_exceptions=[OSError])
    assert fc.get(recovers.remote(str(tmp_path / "a"), 2, "OSError"), timeout=30) == 3
    with pytest.raises(OSError, match="run 3 fails"):
        fc.get(recovers.remote(str(tmp_path / "b"), 5, "OSError"), timeout=30)
    assert (tmp_path / "b").read_text() == "xxx"
    # Not a listed type: no retry.
    with pytest.raises(KeyError):
        fc.get(recovers.remote(str(tmp_path / "c"), 1, "KeyError"), timeout=30)
    assert (tmp_path / "c").read_text() == "x"
    # Ray's default: retry_exceptions=False.
    with pytest.raises(OSError):
        fc.get(tasks.flaky.remote(str(tmp_path / "d"), 1, "OSError"), timeout=30)
    assert (tmp_path / "d").read_text() == "x"
    assert fc.get(tasks.flaky.options(retry_exceptions=True).remote(str(tmp_path / "e"), 1, "KeyError"), timeout=30) == 2


def test_cancel_pending_task_never_runs(client, tmp_path):
    # A queue no worker serves keeps the task pending.
    ref = tasks.flaky.options(queue="nobody").remote(str(tmp_path / "runs"), 0, "OSError")
    fc.cancel(ref)
    with pytest.raises(fc.TaskCancelledError):
        fc.get(ref, timeout=5)
    ready, _ = fc.wait([ref], timeout=5)
    assert ready == [ref]
    assert not (tmp_path / "runs").exists()


def test_sigterm_hands_a_long_task_back_and_it_runs_elsewhere_once(client, tmp_path):
    from ferrocluster.runtime.api import backend

    # A namespace of its own, with a lease long enough that a loaded machine cannot make a
    # worker lose it: the task must come back by hand-back, not by reclaim.
    options = ("--namespace", "handoff", "--queues", "handoff", "--lease-ms", "5000")
    fc.shutdown()
    fc.init(client, namespace="handoff", lease_ms=5000)
    first = _worker(client, tmp_path, *options, "--grace-ms", "200")
    second = None
    try:
        _wait_serving(first)
        ref = tasks.pid_after.options(queue="handoff").remote(3.0)
        fc.wait([ref], timeout=0)  # sends it (.remote() buffers)
        for _ in range(600):
            status = json.loads(backend().queue.status(ref.task_id))
            if status["state"] == "running":
                break
            time.sleep(0.05)
        assert status["state"] == "running" and str(first.pid) in status["worker"]
        first.send_signal(signal.SIGTERM)
        assert first.wait(10) == 0
        # Handed back at once (not reclaimed after a lease): pending, its delivery not counted.
        status = json.loads(backend().queue.status(ref.task_id))
        assert (status["state"], status["deliveries"]) == ("pending", 0)
        second = _worker(client, tmp_path, *options)
        assert fc.get(ref, timeout=60) == second.pid
        status = json.loads(backend().queue.status(ref.task_id))
        assert (status["deliveries"], status["attempts"]) == (1, 0)
        assert _counter(client, "handoff", "succeeded") == 1
        assert _counter(client, "handoff", "refused") == 0
    finally:
        for worker in (first, second):
            if worker is not None:
                worker.terminate()
                assert worker.wait(10) == 0


def test_large_arrays_travel_as_blobs_both_ways(client):
    big = np.random.default_rng(0).random((600, 500))  # 2.4 MB: over the 512 KiB envelope cap
    before = set(_blob_keys(client))
    doubled = fc.get(tasks.scale.remote(big, 2.0), timeout=30)
    np.testing.assert_array_equal(doubled, big * 2.0)
    assert doubled.flags.writeable
    # The argument and the result: one blob each.
    assert len(set(_blob_keys(client)) - before) == 2
    # 20 MB: over one 16 MiB chunk.
    huge = fc.get(tasks.ones.remote(5_000_000), timeout=60)
    assert huge.shape == (5_000_000,) and huge.dtype == np.float32 and huge.sum() == 5_000_000
    blob_ttl = int(_redis(client, "--raw", "TTL", sorted(set(_blob_keys(client)) - before)[0]).strip())
    assert 0 < blob_ttl <= 86_400


def test_put_uploads_once_and_a_vanished_blob_is_a_clear_error(client):
    big = np.arange(200_000, dtype=np.float64)
    before = set(_blob_keys(client))
    shared = fc.put(big)
    (added,) = set(_blob_keys(client)) - before
    results = fc.get([tasks.scale.remote(shared, k) for k in range(3)], timeout=30)
    for k, result in enumerate(results):
        np.testing.assert_array_equal(result, big * k)
    _redis(client, "DEL", added)
    with pytest.raises(fc.ObjectLostError, match="gone from Redis"):
        fc.get(tasks.scale.remote(shared, 1), timeout=30)


def test_finished_tasks_notify_their_channel(client):
    from ferrocluster import _core
    from ferrocluster.runtime.api import backend

    queue = backend().queue
    listener = _core.Listener(queue, "test-channel")
    payload = {"v": 1, "fn": "test_runtime_tasks:add", "args": [1, 2], "kwargs": {}, "retry_on": False}
    done, _ = queue.enqueue("py", "py.call", json.dumps(payload), notify="test-channel")
    refused, _ = queue.enqueue("py", "py.call", json.dumps({**payload, "fn": "os:getcwd"}), notify="test-channel")
    heard = []
    for _ in range(50):
        heard += listener.next(10, 0.5)
        if len(heard) == 2:
            break
    assert sorted(heard) == sorted([done, refused])
    assert listener.next(10, 0.01) == []
    with pytest.raises(ValueError, match="channel"):
        _core.Listener(queue, "has space")


def test_notifications_carry_the_outcome_the_record_holds(client):
    from ferrocluster import _core
    from ferrocluster.runtime.api import backend

    queue = backend().queue
    listener = _core.Listener(queue, "outcome-channel")
    payload = {"v": 1, "fn": "test_runtime_tasks:add", "args": [2, 3], "kwargs": {}, "retry_on": False}
    done, new = queue.enqueue("py", "py.call", json.dumps(payload), notify="outcome-channel")
    assert new
    heard = []
    for _ in range(50):
        heard += json.loads(listener.next_finished(10, 0.5))
        if heard:
            break
    [note] = heard
    record = json.loads(queue.statuses([done]))[0]
    assert (note["id"], note["state"], note["result"]) == (done, "succeeded", record["result"])


def test_oversize_calls_and_bad_blob_threshold_fail_at_once(client):
    with pytest.raises(ValueError, match="envelope cap"):
        tasks.add.remote(list(range(200_000)), [])  # ~1.3 MB of JSON: plain lists are not blobs
    fc.shutdown()
    with pytest.raises(ValueError, match="inline_max_bytes"):
        fc.init(client, inline_max_bytes=10**9)


def test_a_lone_submit_is_sent_without_a_get(client):
    from ferrocluster.runtime.api import backend

    # The first submit wakes the idle sender; the next lone one waits for its tick.
    assert fc.get(tasks.add.remote(1, 1), timeout=20) == 2
    ref = tasks.add.remote(2, 3)
    for _ in range(200):
        if json.loads(backend().queue.statuses([ref.task_id]))[0] is not None:
            break
        time.sleep(0.01)
    assert json.loads(backend().queue.statuses([ref.task_id]))[0] is not None, "sent by the background sender"
    assert fc.get(ref, timeout=20) == 5
