"""The cluster runtime: tasks go through the Redis queue to `python -m ferrocluster worker`
processes. Arguments and results travel as versioned JSON (`codec`), never pickled."""

import builtins
import json
import sys
import time
import uuid
from typing import Any

from ferrocluster import _core
from ferrocluster.runtime import codec
from ferrocluster.runtime.errors import GetTimeoutError, RemoteTaskError, TaskCancelledError
from ferrocluster.runtime.remote import ObjectRef, RemoteFunction

#: The task kind of a Python function call; Rust workers do not serve the Python queues.
KIND = "py.call"

class ClusterBackend:
    """Enqueues tasks and reads their outcomes.

    Args:
        url: the Redis URL.
        namespace, lease_ms, block_ms: the queue's settings (must match the workers').
    """

    def __init__(self, url: str, **queue_options: Any) -> None:
        self.queue = _core.Queue(url, **queue_options)

    def submit(self, fn: RemoteFunction, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]) -> ObjectRef:
        payload = encode_call(fn.key, args, kwargs, options["retry_exceptions"], self._ref_id)
        task_id = uuid.uuid4().hex
        self.queue.enqueue(
            options["queue"],
            KIND,
            json.dumps(payload, allow_nan=False),
            id=task_id,
            max_retries=options["max_retries"],
            retry_on_error=bool(options["retry_exceptions"]),
            priority=options["priority"],
        )
        return ObjectRef(task_id, self)

    def _ref_id(self, value: Any) -> str | None:
        if not isinstance(value, ObjectRef):
            return None
        if value._state is not None:
            raise TypeError("a value from fc.put travels inline: pass it as a top-level argument")
        return value.task_id

    def put(self, value: Any) -> ObjectRef:
        # Held here and sent inline with the tasks it is given to: the queue has no object store.
        return ObjectRef(uuid.uuid4().hex, self, (value,))

    def get(self, ref: ObjectRef, deadline: float | None) -> Any:
        if ref._state is not None:
            return ref._state[0]
        while True:
            remaining = 1.0 if deadline is None else min(1.0, max(0.0, deadline - time.monotonic()))
            status = json.loads(self.queue.wait([ref.task_id], remaining))[0]
            if status["state"] not in ("pending", "running"):
                return outcome(status, self.make_ref)
            if deadline is not None and time.monotonic() >= deadline:
                raise GetTimeoutError(f"{ref} not ready after the timeout")

    def make_ref(self, task_id: str) -> ObjectRef:
        return ObjectRef(task_id, self)

    def wait(self, refs: list[ObjectRef], num_returns: int, deadline: float | None) -> list[bool]:
        pause = 0.001
        while True:
            queued = [r.task_id for r in refs if r._state is None]
            states = iter(json.loads(self.queue.wait(queued, 0.0)) if queued else [])
            done = [r._state is not None or next(states)["state"] not in ("pending", "running") for r in refs]
            if sum(done) >= num_returns or (deadline is not None and time.monotonic() >= deadline):
                return done
            time.sleep(pause if deadline is None else min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 0.05)

    def cancel(self, ref: ObjectRef) -> None:
        if ref._state is None:
            self.queue.cancel(ref.task_id)

    def shutdown(self) -> None:
        """Nothing to stop: queued tasks belong to the cluster."""


def encode_call(
    key: str, args: tuple[Any, ...], kwargs: dict[str, Any], retry_exceptions: Any, ref_id: Any
) -> dict[str, Any]:
    """The payload of a `py.call` task: the function's registry key and encoded arguments.
    Values from `fc.put` given as top-level arguments are sent inline."""
    def arg(value: Any) -> Any:
        if isinstance(value, ObjectRef) and value._state is not None:
            value = value._state[0]
        return codec.encode(value, ref_id)

    retry_on = retry_exceptions if isinstance(retry_exceptions, bool) else [_type_name(t) for t in retry_exceptions]
    return {
        "v": codec.VERSION,
        "fn": key,
        "args": [arg(a) for a in args],
        "kwargs": {k: arg(v) for k, v in kwargs.items()},
        "retry_on": retry_on,
    }


def _type_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def encode_error(error: BaseException, text: str) -> str:
    """The error record of a failed task: its type, message and traceback text."""
    return json.dumps({"v": codec.VERSION, "type": _type_name(type(error)), "message": str(error), "traceback": text})


def outcome(status: dict[str, Any], make_ref: Any) -> Any:
    """The value of a finished task, or raises its error."""
    state = status["state"]
    if state == "succeeded":
        return codec.decode(status["result"], make_ref)
    if state == "cancelled":
        raise TaskCancelledError(f"task {status['id']} was cancelled")
    message = status.get("error") or ""
    if state == "dead":
        raise RemoteTaskError(f"task {status['id']} was refused by the workers: {message}")
    try:
        record = json.loads(message)
    except ValueError:
        raise RemoteTaskError(message) from None
    error = _rebuild(record)
    error.remote_traceback = record["traceback"]  # type: ignore[attr-defined]
    error.add_note(f"remote traceback:\n{record['traceback']}")
    raise error


def _rebuild(record: dict[str, Any]) -> BaseException:
    """The task's exception as its own type when that class is already loaded here (never
    imports a module named by the queue), else a RemoteTaskError naming it."""
    module, _, qualname = record["type"].partition(":")
    owner: Any = builtins if module == "builtins" else sys.modules.get(module)
    for part in qualname.split("."):
        owner = getattr(owner, part, None)
    if isinstance(owner, type) and issubclass(owner, Exception):
        try:
            return owner(record["message"])
        except Exception:  # noqa: BLE001 - a constructor with other arguments: fall back
            pass
    return RemoteTaskError(f"{record['type']}: {record['message']}")
