"""Remote functions the cluster tests' worker processes import (`--import test_runtime_tasks`)."""

import time

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
