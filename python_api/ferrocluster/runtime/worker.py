"""`python -m ferrocluster worker`: runs `py.call` tasks of the Redis queue, but only
functions registered with `@fc.remote` in the modules it was told to import (and the
built-in ops); anything else is dead-lettered with the reason."""

import importlib
import json
import os
import signal
import socket
import threading
import traceback
from typing import Any

from ferrocluster import _core
from ferrocluster.runtime import api, codec, context
from ferrocluster.runtime.cluster import KIND, encode_error
from ferrocluster.runtime.errors import TaskCancelledError
from ferrocluster.runtime.remote import ObjectRef, is_retryable, registered

class Worker:
    """A pool of threads fetching and running tasks, and one heartbeating them.

    Args:
        url: the Redis URL.
        imports: modules whose `@fc.remote` functions this worker runs.
        queues: queue names to serve.
        concurrency: tasks run at once (threads: Python code shares the GIL, so run one
            worker process per core for CPU-bound Python).
        lease_ms: the queue's lease; heartbeats go every third of it.
    """

    def __init__(self, url: str, imports: list[str], queues: list[str], concurrency: int, lease_ms: int) -> None:
        for module in imports:
            importlib.import_module(module)
        # Tasks this worker runs resolve refs and submit tasks through the same cluster.
        api.shutdown()
        api.init(url, lease_ms=lease_ms, block_ms=min(1000, lease_ms))
        self.backend = api.backend()
        name = f"py-{socket.gethostname()}-{os.getpid()}"
        self.consumer = _core.Consumer(self.backend.queue, name, queues)
        self.concurrency = concurrency
        self.lease_s = lease_ms / 1000
        self.stopping = threading.Event()
        self.active: dict[Any, context.TaskContext] = {}
        self.lock = threading.Lock()

    def run(self) -> None:
        """Serves until SIGTERM/SIGINT, then finishes running tasks and leaves the group."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        threads = [threading.Thread(target=self._serve, daemon=True) for _ in range(self.concurrency)]
        threads.append(threading.Thread(target=self._heartbeat, daemon=True))
        for thread in threads:
            thread.start()
        self.stopping.wait()
        for thread in threads:
            thread.join()
        self.consumer.release_all()
        self.consumer.leave()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            for delivery in self.consumer.fetch(1, int(min(1.0, self.lease_s) * 1000)):
                self._handle(delivery)

    def _heartbeat(self) -> None:
        while not self.stopping.wait(self.lease_s / 3) or self.active:
            with self.lock:
                active = list(self.active.items())
            for delivery, task_context in active:
                if self.consumer.heartbeat(delivery) in ("cancel", "lost"):
                    task_context.cancelled.set()
            if self.stopping.is_set() and not active:
                return

    def _handle(self, delivery: Any) -> None:
        if delivery.kind != KIND:
            self.consumer.reject(delivery, f"kind {delivery.kind!r} is not a Python task (this is a Python worker)")
            return
        payload = json.loads(delivery.payload)
        if payload.get("v") != codec.VERSION:
            self.consumer.reject(delivery, f"payload version {payload.get('v')!r}; this worker reads {codec.VERSION}")
            return
        fn = registered(payload.get("fn", ""))
        if fn is None:
            reason = f"function {payload.get('fn')!r} is not registered with @fc.remote in this worker's --import modules"
            self.consumer.reject(delivery, reason)
            return
        task_context = context.TaskContext()
        with self.lock:
            self.active[delivery] = task_context
        context.enter(task_context)
        try:
            self._run(delivery, fn, payload, task_context)
        finally:
            context.enter(None)
            with self.lock:
                del self.active[delivery]

    def _run(self, delivery: Any, fn: Any, payload: dict[str, Any], task_context: context.TaskContext) -> None:
        try:
            args = [self._resolve(a) for a in codec.decode(payload["args"], self.backend.make_ref)]
            kwargs = {k: self._resolve(v) for k, v in codec.decode(payload["kwargs"], self.backend.make_ref).items()}
            result = json.dumps(codec.encode(fn.run(tuple(args), kwargs)), allow_nan=False)
        except BaseException as error:  # noqa: BLE001 - every failure is the task's outcome
            if task_context.cancelled.is_set() or isinstance(error, TaskCancelledError):
                self.consumer.cancelled(delivery)
                return
            retry_on = payload.get("retry_on", False)
            retryable = retry_on if isinstance(retry_on, bool) else _matches(error, retry_on)
            text = "".join(traceback.format_exception(error))
            self.consumer.fail(delivery, encode_error(error, text), retryable and is_retryable(error, True))
            return
        if task_context.cancelled.is_set():
            self.consumer.cancelled(delivery)
        else:
            self.consumer.complete(delivery, result)

    def _resolve(self, value: Any) -> Any:
        return self.backend.get(value, None) if isinstance(value, ObjectRef) else value


def _matches(error: BaseException, names: list[str]) -> bool:
    """Whether `error` is an instance of one of the classes named `module:qualname`."""
    return any(f"{cls.__module__}:{cls.__qualname__}" in names for cls in type(error).__mro__)
