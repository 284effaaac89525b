"""Exceptions of the Ray-style runtime."""


class GetTimeoutError(TimeoutError):
    """`fc.get` waited `timeout` seconds and the task had not finished."""


class TaskCancelledError(Exception):
    """The task was cancelled with `fc.cancel` before it finished."""


class RemoteTaskError(RuntimeError):
    """A task failed with an exception this process cannot rebuild (its class is not
    importable here), or a worker refused to run it (for instance, a function name that no
    worker registered). The message names the original type and carries the remote text."""


class ObjectLostError(RuntimeError):
    """A value is gone from Redis: a task's record, or an argument or result passed by
    reference (a blob), outlived its time to live (the result TTL) or was deleted."""
