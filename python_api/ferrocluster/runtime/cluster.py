"""The cluster runtime: tasks go through the Redis queue to `python -m ferrocluster worker`
processes. Arguments and results travel as versioned JSON (`codec`), never pickled; arrays
and bytes larger than `inline_max_bytes` travel as blobs kept in Redis.

Fast paths (the queue's no-op round trip is a few Redis round trips): submissions are sent
by a background thread in pipelined batches; every task notifies this client's channel when
it finishes, so `get`/`wait` block on one notification read instead of polling; a small
outcome travels with its notification, and other statuses are read many in one round trip."""

import builtins
import collections
import json
import sys
import threading
import time
import uuid
from typing import Any

from ferrocluster import _core
from ferrocluster.runtime import codec
from ferrocluster.runtime.errors import GetTimeoutError, ObjectLostError, RemoteTaskError, TaskCancelledError
from ferrocluster.runtime.remote import ObjectRef, RemoteFunction

#: The task kind of a Python function call; Rust workers do not serve the Python queues.
KIND = "py.call"

#: The queue's envelope cap (`QueueConfig::max_envelope_bytes`), checked before a task is
#: buffered so that an oversize call fails at `.remote()`.
MAX_ENVELOPE_BYTES = 512 * 1024

#: Ids of finished tasks remembered from notifications (older ones are re-read from Redis),
#: with the outcome their notification carried until it is taken.
_HEARD_MAX = 100_000

#: However quiet the notifications, statuses are re-read this often (a safety net: a task
#: record that expired, or a notification list lost with a Redis that restarted without AOF).
_RECHECK_S = 1.0

_UNFINISHED = ("pending", "running")

#: While this client submits, its sender looks for buffered tasks this often; it sleeps until
#: woken once no task came for `_SENDER_IDLE_S`.
_SENDER_TICK_S = 0.01
_SENDER_IDLE_S = 1.0


class BlobStore:
    """Bytes too large for an envelope, kept in Redis (chunked, expiring with the result).

    Args:
        queue: the queue connection.
        inline_max_bytes: larger arrays and `bytes` go to Redis; smaller ones inline.
    """

    def __init__(self, queue: Any, inline_max_bytes: int) -> None:
        self.queue = queue
        self.inline_max_bytes = inline_max_bytes

    def store(self, ttl_s: int) -> codec.Store:
        """A codec store keeping large bytes for `ttl_s` seconds (0: until deleted)."""

        def keep(data: bytes) -> Any:
            if len(data) <= self.inline_max_bytes:
                return None
            blob_id, size = self.queue.put_blob(data, ttl_s)
            return {"id": blob_id, "size": size}

        return keep

    def load(self, blob: Any) -> bytearray:
        """The bytes of a blob reference.

        Raises:
            ObjectLostError: the blob expired (it lives as long as the result TTL) or was deleted.
        """
        data = self.queue.get_blob(blob["id"], blob["size"])
        if data is None:
            raise ObjectLostError(
                f"blob {blob['id']} ({blob['size']} bytes) is gone from Redis: it expired with its task's "
                "result TTL or was deleted; submit the task again"
            )
        return data


class ClusterBackend:
    """Enqueues tasks and reads their outcomes.

    Args:
        url: the Redis URL.
        inline_max_bytes: arrays and bytes larger than this travel as blobs (default 64 KiB).
        result_ttl_s: seconds outcomes (and blobs) of this client's tasks are kept.
        queue_options: namespace, lease_ms, block_ms of the queue (must match the workers').
    """

    def __init__(self, url: str, *, inline_max_bytes: int = 64 * 1024, result_ttl_s: int = 86_400, **queue_options: Any) -> None:
        if inline_max_bytes < 0 or inline_max_bytes > MAX_ENVELOPE_BYTES // 2:
            raise ValueError(f"inline_max_bytes must be between 0 and {MAX_ENVELOPE_BYTES // 2}, got {inline_max_bytes}")
        self.queue = _core.Queue(url, **queue_options)
        self.blobs = BlobStore(self.queue, inline_max_bytes)
        self.result_ttl_s = result_ttl_s
        self.channel = f"client-{uuid.uuid4().hex}"
        self._listener = _core.Listener(self.queue, self.channel)
        self._heard: collections.OrderedDict[str, dict[str, Any] | None] = collections.OrderedDict()
        self._heard_cond = threading.Condition()
        self._listening = False
        self._outbox: list[tuple[Any, ...]] = []
        self._outbox_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._unsent: dict[str, BaseException] = {}
        self._wake = threading.Event()
        self._last_submit = 0.0
        self._sender_idle = True
        self._closed = False
        self._sender = threading.Thread(target=self._send_loop, name="ferrocluster-submit", daemon=True)
        self._sender.start()

    def submit(self, fn: RemoteFunction, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]) -> ObjectRef:
        payload = encode_call(fn.key, args, kwargs, options["retry_exceptions"], self._ref_id, self.blobs.store(self.result_ttl_s))
        return self.submit_task(options["queue"], KIND, payload, options)

    def submit_task(self, queue: str, kind: str, payload: Any, options: dict[str, Any]) -> ObjectRef:
        """Sends a task of any kind (a Python call, or a built-in kind of the Rust workers such
        as `noop`); its result is read as the codec's JSON.

        Args:
            queue: the queue its workers serve.
            kind: the task kind.
            payload: its JSON-ready input.
            options: max_retries, retry_exceptions (truthy: errors are retried), priority.
        Raises:
            ValueError: the task is over the queue's envelope cap.
        """
        text = json.dumps(payload, allow_nan=False)
        if len(text) > MAX_ENVELOPE_BYTES:
            raise ValueError(
                f"the task's arguments take {len(text)} bytes of JSON, over the queue's {MAX_ENVELOPE_BYTES}-byte "
                "envelope cap: pass large values as numpy arrays or bytes (they travel as blobs)"
            )
        task_id = uuid.uuid4().hex
        task = (queue, kind, text, task_id, options["max_retries"], bool(options["retry_exceptions"]),
                options["priority"], self.result_ttl_s, self.channel)
        with self._outbox_lock:
            self._outbox.append(task)
            waiting = len(self._outbox)
        self._last_submit = time.monotonic()
        # Waking the sender thread for a lone task would cost more than the task's round trip
        # (the threads trade the GIL): a `get` right after sends it itself, else the sender's
        # next tick does. A second buffered task (a burst) wakes it at once.
        if waiting >= 2 or self._sender_idle:
            self._wake.set()
        return ObjectRef(task_id, self, notified=True)

    def _send_loop(self) -> None:
        while True:
            # The outbox is read after `_sender_idle` was set: a task buffered by a submit
            # that saw it unset is seen here, one that saw it set woke this thread.
            asleep = self._sender_idle and not self._outbox
            self._wake.wait(None if asleep else _SENDER_TICK_S)
            self._wake.clear()
            if self._closed:
                return
            self.flush()
            self._sender_idle = time.monotonic() - self._last_submit > _SENDER_IDLE_S

    def flush(self) -> None:
        """Sends every buffered submission, in order, in one pipelined round trip. A failure
        (Redis unreachable past the reconnect timeout) is raised by `get` of those tasks."""
        with self._send_lock:
            with self._outbox_lock:
                batch, self._outbox = self._outbox, []
            if not batch:
                return
            try:
                self.queue.enqueue_many(batch)
            except Exception as error:  # noqa: BLE001 - kept for the tasks' own get()
                for task in batch:
                    self._unsent[task[3]] = error

    def _ref_id(self, value: Any) -> str | None:
        if not isinstance(value, ObjectRef):
            return None
        if value._state is not None:
            raise TypeError("a value from fc.put travels with the task: pass it as a top-level argument")
        return value.task_id

    def put(self, value: Any) -> ObjectRef:
        # Encoded once (large arrays go to Redis once) and sent with each task given it.
        encoded = codec.encode(value, self._ref_id, self.blobs.store(self.result_ttl_s))
        return ObjectRef(uuid.uuid4().hex, self, (value, encoded))

    def make_ref(self, task_id: str) -> ObjectRef:
        return ObjectRef(task_id, self)

    def get(self, refs: list[ObjectRef], deadline: float | None) -> list[Any]:
        queued = [r for r in refs if r._state is None]
        ids = {r.task_id for r in queued}
        statuses = self._finished(queued, len(ids), deadline)
        if len(statuses) < len(ids):
            raise GetTimeoutError(f"{len(ids) - len(statuses)} of {len(ids)} tasks not ready after the timeout")
        return [r._state[0] if r._state is not None else self.outcome(statuses[r.task_id]) for r in refs]

    def wait(self, refs: list[ObjectRef], num_returns: int, deadline: float | None) -> list[bool]:
        queued = [r for r in refs if r._state is None]
        finished = self._finished(queued, num_returns - (len(refs) - len(queued)), deadline)
        return [r._state is not None or r.task_id in finished for r in refs]

    def cancel(self, ref: ObjectRef) -> None:
        if ref._state is None:
            self.flush()
            self.queue.cancel(ref.task_id)

    def shutdown(self) -> None:
        """Sends what is buffered; queued tasks belong to the cluster and still run."""
        self.flush()
        self._closed = True
        self._wake.set()

    def outcome(self, status: dict[str, Any]) -> Any:
        """The value of a finished task, or raises its error."""
        return outcome(status, self.make_ref, self.blobs.load)

    def _finished(self, refs: list[ObjectRef], need: int, deadline: float | None) -> dict[str, dict[str, Any]]:
        """Statuses of finished tasks among `refs`, once `need` of them are (or at the deadline).

        Tasks this client submitted are read once their notification arrives (their records
        are read first only when it already did); others (refs received from elsewhere) are
        polled, from 1 ms backing off to 50 ms."""
        self.flush()
        ids = list(dict.fromkeys(r.task_id for r in refs))
        notified = {r.task_id for r in refs if r._notified}
        finished: dict[str, dict[str, Any]] = {}
        check = [i for i in ids if i not in notified or i in self._heard or i in self._unsent]
        pause = 0.001
        while True:
            for task_id, status in zip(check, self._statuses(check)):
                if status["state"] not in _UNFINISHED:
                    finished[task_id] = status
            remaining = None if deadline is None else deadline - time.monotonic()
            if len(finished) >= need or (remaining is not None and remaining <= 0):
                return finished
            waiting = [i for i in ids if i not in finished]
            polled = any(i not in notified for i in waiting)
            check = self._heard_of(waiting, remaining, pause if polled else _RECHECK_S)
            pause = min(pause * 2, 0.05)

    def _statuses(self, ids: list[str]) -> list[dict[str, Any]]:
        """The statuses of `ids`: outcomes their notifications carried (each taken once, so
        that they do not pile up; a later read goes to Redis), the others read in one round trip."""
        if not ids:
            return []
        with self._heard_cond:
            carried = {i: self._heard[i] for i in ids if self._heard.get(i) is not None}
            for task_id in carried:
                self._heard[task_id] = None
        unread = [i for i in ids if i not in carried]
        records = dict(zip(unread, json.loads(self.queue.statuses(unread)))) if unread else {}
        return [_status(i, carried.get(i) or records.get(i), self._unsent.get(i)) for i in ids]

    def _heard_of(self, waiting: list[str], remaining: float | None, recheck: float) -> list[str]:
        """Which of `waiting` finished, by the notifications: blocks until one did, or for at
        most `recheck` seconds (then all of them are worth re-reading) or `remaining`."""
        limit = recheck if remaining is None else min(recheck, remaining)
        until = time.monotonic() + limit
        with self._heard_cond:
            while True:
                heard = [i for i in waiting if i in self._heard]
                left = until - time.monotonic()
                if heard:
                    return heard
                if left <= 0:
                    return waiting
                if self._listening:
                    self._heard_cond.wait(left)
                    continue
                # This thread reads the channel for every waiter of this client.
                self._listening = True
                self._heard_cond.release()
                try:
                    notes = json.loads(self._listener.next_finished(1000, left))
                finally:
                    self._heard_cond.acquire()
                    self._listening = False
                for note in notes:
                    self._heard[note["id"]] = note if "state" in note else None
                while len(self._heard) > _HEARD_MAX:
                    self._heard.popitem(last=False)
                self._heard_cond.notify_all()


def _status(task_id: str, record: dict[str, Any] | None, unsent: BaseException | None) -> dict[str, Any]:
    if unsent is not None:
        return {"id": task_id, "state": "unsent", "error": unsent}
    if record is None:
        return {"id": task_id, "state": "lost"}
    return record


def encode_call(
    key: str, args: tuple[Any, ...], kwargs: dict[str, Any], retry_exceptions: Any, ref_id: Any, store: codec.Store | None = None
) -> dict[str, Any]:
    """The payload of a `py.call` task: the function's registry key and encoded arguments.
    Values from `fc.put` given as top-level arguments are sent as they were encoded."""
    def arg(value: Any) -> Any:
        if isinstance(value, ObjectRef) and value._state is not None:
            return value._state[1]
        return codec.encode(value, ref_id, store)

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


def outcome(status: dict[str, Any], make_ref: Any, load: codec.Load | None = None) -> Any:
    """The value of a finished task, or raises its error."""
    state = status["state"]
    if state == "succeeded":
        return codec.decode(status["result"], make_ref, load)
    if state == "cancelled":
        raise TaskCancelledError(f"task {status['id']} was cancelled")
    if state == "unsent":
        raise status["error"]
    if state == "lost":
        raise ObjectLostError(
            f"task {status['id']} has no record in Redis: its outcome expired after the result TTL, or it was "
            "never enqueued on this queue"
        )
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
