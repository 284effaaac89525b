"""The Ray-style runtime, embedded (in-process) mode: ordering, timeouts, errors, retries,
cancel, wait, put, refs as arguments, options, auto-init, shutdown."""

import threading
import time

import numpy as np
import pytest

import ferrocluster as fc
from ferrocluster.runtime import codec


@pytest.fixture(autouse=True)
def runtime():
    fc.shutdown()
    fc.init(num_cpus=4)
    yield
    fc.shutdown()


@fc.remote
def echo(value, delay=0.0):
    time.sleep(delay)
    return value


class Boom(ValueError):
    pass


@fc.remote
def boom():
    raise Boom("kaboom")


def test_get_keeps_order_whatever_finishes_first():
    refs = [echo.remote(i, delay=0.02 * (5 - i)) for i in range(5)]
    assert fc.get(refs) == [0, 1, 2, 3, 4]
    assert fc.get(refs[2]) == 2


def test_get_times_out_with_a_timeout_error():
    ref = echo.remote(1, delay=0.5)
    start = time.monotonic()
    with pytest.raises(fc.GetTimeoutError) as info:
        fc.get(ref, timeout=0.05)
    assert isinstance(info.value, TimeoutError)
    assert time.monotonic() - start < 0.4
    assert fc.get(ref) == 1


def test_errors_are_raised_with_their_own_type_and_the_remote_traceback():
    with pytest.raises(Boom, match="kaboom") as info:
        fc.get(boom.remote())
    assert "in boom" in info.value.remote_traceback
    assert any("remote traceback" in note for note in info.value.__notes__)


def test_retry_exceptions_and_max_retries():
    calls = []

    @fc.remote(max_retries=2, retry_exceptions=True)
    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise OSError("transient")
        return len(calls)

    assert fc.get(flaky.remote()) == 3
    calls.clear()
    with pytest.raises(OSError):
        fc.get(flaky.options(max_retries=1).remote())
    assert len(calls) == 2


def test_errors_are_not_retried_by_default_nor_when_not_listed():
    calls = []

    @fc.remote
    def fails():
        calls.append(1)
        raise KeyError("x")

    with pytest.raises(KeyError):
        fc.get(fails.remote())
    with pytest.raises(KeyError):
        fc.get(fails.options(retry_exceptions=[OSError]).remote())
    assert len(calls) == 2
    with pytest.raises(KeyError):
        fc.get(fails.options(retry_exceptions=[KeyError], max_retries=2).remote())
    assert len(calls) == 5


def test_cancel_pending_task_never_runs():
    fc.shutdown()
    fc.init(num_cpus=1)
    ran = []

    @fc.remote
    def mark():
        ran.append(1)

    blocker = echo.remote(None, delay=0.2)
    pending = mark.remote()
    fc.cancel(pending)
    with pytest.raises(fc.TaskCancelledError):
        fc.get(pending)
    fc.get(blocker)
    time.sleep(0.05)
    assert ran == []


def test_cancel_running_task_is_seen_at_its_next_check():
    started, saw_cancel = threading.Event(), threading.Event()

    @fc.remote
    def long_loop():
        started.set()
        while not fc.is_cancelled():
            time.sleep(0.005)
        saw_cancel.set()
        return "finished"

    ref = long_loop.remote()
    assert started.wait(2)
    fc.cancel(ref)
    with pytest.raises(fc.TaskCancelledError):
        fc.get(ref, timeout=1)
    assert saw_cancel.wait(2)


def test_cancel_built_in_extract_stops_between_chunks(textures):
    images, _ = textures
    config = fc.FeatureConfig(size=(32, 32))
    ref = fc.extract_features.remote(list(images) * 50, config)
    fc.cancel(ref)
    with pytest.raises(fc.TaskCancelledError):
        fc.get(ref)


def test_wait_num_returns_timeout_and_order():
    slow, fast1, fast2 = echo.remote(0, delay=0.5), echo.remote(1), echo.remote(2)
    ready, not_ready = fc.wait([slow, fast1, fast2], num_returns=2, timeout=2)
    assert ready == [fast1, fast2] and not_ready == [slow]
    ready, not_ready = fc.wait([slow, fast1], num_returns=1)
    assert ready == [fast1] and not_ready == [slow]
    ready, not_ready = fc.wait([slow], timeout=0.01)
    assert ready == [] and not_ready == [slow]
    with pytest.raises(ValueError):
        fc.wait([fast1], num_returns=2)


def test_put_and_refs_as_arguments_top_level_only():
    @fc.remote
    def describe(x, nested):
        return x, isinstance(nested[0], fc.ObjectRef), fc.get(nested[0])

    data = fc.put(np.arange(3))
    x, is_ref, value = fc.get(describe.remote(data, [echo.remote(5)]))
    assert x.tolist() == [0, 1, 2] and is_ref and value == 5


def test_task_waiting_on_its_own_tasks_does_not_deadlock_a_small_pool():
    fc.shutdown()
    fc.init(num_cpus=1)

    @fc.remote
    def outer():
        return sum(fc.get([echo.remote(i) for i in range(3)]))

    assert fc.get(outer.remote(), timeout=5) == 3


def test_num_cpus_limits_concurrency():
    running, peak, lock = [0], [0], threading.Lock()

    @fc.remote(num_cpus=2)
    def heavy():
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1

    fc.get([heavy.remote() for _ in range(6)])
    assert peak[0] == 2
    with pytest.raises(ValueError, match="CPUs"):
        heavy.options(num_cpus=8).remote()


def test_options_are_validated_and_do_not_change_the_original():
    with pytest.raises(TypeError):
        echo.options(bogus=1)
    with pytest.raises(ValueError):
        echo.options(max_retries=-1)
    assert echo.options(max_retries=0)._options["max_retries"] == 0
    assert echo._options["max_retries"] == 3
    with pytest.raises(TypeError, match="remote"):
        echo(1)


def test_auto_init_shutdown_and_reinit():
    fc.shutdown()
    assert not fc.is_initialized()
    ref = echo.remote(7)
    assert fc.is_initialized() and fc.get(ref) == 7
    fc.shutdown()
    with pytest.raises(ValueError, match="shut down"):
        fc.get(ref)
    fc.init(num_cpus=1)
    with pytest.raises(RuntimeError):
        fc.init()
    assert fc.get(echo.remote(8)) == 8


def test_built_in_ops_match_their_direct_calls(textures):
    images, _ = textures
    config = fc.FeatureConfig(size=(32, 32))
    direct = fc.extract_features(images, config)
    np.testing.assert_array_equal(fc.get(fc.extract_features.remote(images, config)), direct)
    km = fc.KMeans(n_clusters=4, random_state=0, n_init=1).fit(direct)
    labels = fc.get(fc.kmeans_predict.remote(km.cluster_centers_, direct))
    np.testing.assert_array_equal(labels, km.predict(direct))


def test_codec_round_trips_without_pickle():
    value = {
        "a": np.arange(6, dtype=np.float32).reshape(2, 3),
        "s": np.int64(3),
        "t": (1, "x", None),
        "nan": float("inf"),
        1: b"raw",
        "cfg": fc.FeatureConfig(size=(16, 16)),
    }
    back = codec.decode(codec.encode(value))
    np.testing.assert_array_equal(back["a"], value["a"])
    assert back["a"].dtype == np.float32 and back["a"].flags.writeable
    assert back["s"] == 3 and back["s"].dtype == np.int64
    assert back["t"] == (1, "x", None) and back["nan"] == float("inf") and back[1] == b"raw"
    assert back["cfg"] == value["cfg"]
    with pytest.raises(TypeError, match="no pickle"):
        codec.encode(object())
    with pytest.raises(ValueError):
        codec.decode({"__fc__": "object", "type": "os:system", "json": "x"})
