"""The Ray-style runtime: `@fc.remote`, `.remote()` → ObjectRef, `fc.get/wait/put/cancel`,
in-process (embedded, the default) or across machines through the Redis queue.

Example:
    >>> import ferrocluster as fc
    >>> @fc.remote
    ... def add(a, b):
    ...     return a + b
    >>> fc.get(add.remote(fc.put(1), 2))
    3
"""

from ferrocluster.runtime.api import cancel, get, init, is_initialized, put, shutdown, wait
from ferrocluster.runtime.context import check_cancelled, is_cancelled
from ferrocluster.runtime.errors import GetTimeoutError, ObjectLostError, RemoteTaskError, TaskCancelledError
from ferrocluster.runtime.remote import BuiltinOp, ObjectRef, RemoteFunction, remote

__all__ = [
    "BuiltinOp",
    "GetTimeoutError",
    "ObjectRef",
    "RemoteFunction",
    "ObjectLostError",
    "RemoteTaskError",
    "TaskCancelledError",
    "cancel",
    "check_cancelled",
    "get",
    "init",
    "is_cancelled",
    "is_initialized",
    "put",
    "remote",
    "shutdown",
    "wait",
]
