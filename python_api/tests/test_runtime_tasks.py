"""Remote functions the cluster tests' worker processes import (`--import test_runtime_tasks`)."""

import builtins
import os
import time

import numpy as np

import ferrocluster as fc


class TaskFailure(ValueError):
    pass


@fc.remote
def add(a, b):
    return a + b


@fc.remote
def sleepy(value, delay):
    time.sleep(delay)
    return value


@fc.remote
def fail(message):
    raise TaskFailure(message)


@fc.remote
def loop_until_cancelled():
    while not fc.is_cancelled():
        time.sleep(0.01)
    return "not cancelled"


@fc.remote
def scale(array, factor):
    return array * factor


@fc.remote
def ones(n):
    return np.ones(n, dtype=np.float32)


@fc.remote
def flaky(path, failures, error):
    """Fails (with `error`, a builtin exception name) its first `failures` runs, counted in a
    file; then returns how many runs it took."""
    with open(path, "a") as runs:
        runs.write("x")
    with open(path) as runs:
        count = len(runs.read())
    if count <= failures:
        raise getattr(builtins, error)(f"run {count} fails")
    return count


@fc.remote
def pid_after(delay):
    time.sleep(delay)
    return os.getpid()


@fc.remote
def kmeans_on_cluster(path, n_clusters):
    """A long k-means fit on the cluster's Rust workers from a .npy file (tol=0, so it runs
    until no label changes): what a cancel has to stop between iterations."""
    return fc.KMeans(n_clusters, init="k-means||", max_iter=100_000, tol=0.0, distributed=True).fit(path).n_iter_
