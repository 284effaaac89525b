"""`python -m ferrocluster worker`: runs `py.call` tasks of the Redis queue, but only
functions registered with `@fc.remote` in the modules it was told to import (and the
built-in ops); anything else is dead-lettered with the reason.

Each serving thread fetches a batch of tasks, runs them one after the other and records
their results in one round trip. A batch that runs long hands its unstarted tasks back, so
that idle workers take them, and the next fetch takes fewer."""

import importlib
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Any

from ferrocluster import _core
from ferrocluster.runtime import api, codec, context
from ferrocluster.runtime.cluster import KIND, encode_error
from ferrocluster.runtime.errors import TaskCancelledError
from ferrocluster.runtime.remote import ObjectRef, is_retryable, registered

#: A batch holds results (and unstarted tasks) at most this long before recording them.
BATCH_HOLD_S = 0.02


class Worker:
    """A pool of threads fetching and running tasks, and one heartbeating and sweeping.

    Args:
        url: the Redis URL.
        imports: modules whose `@fc.remote` functions this worker runs.
        queues: queue names to serve.
        concurrency: tasks run at once (threads: Python code shares the GIL, so run one
            worker process per core for CPU-bound Python).
        lease_ms: the queue's lease; heartbeats go every third of it, sweeps every half.
        grace_ms: on SIGTERM, how long running tasks may take to finish before they are
            handed back to the queue.
        batch: most tasks one thread fetches at once.
        namespace: the queue's key prefix.
    """

    def __init__(
        self, url: str, imports: list[str], queues: list[str], concurrency: int, lease_ms: int,
        grace_ms: int = 10_000, batch: int = 16, namespace: str = "fc",
    ) -> None:
        # First, so that a SIGTERM during start-up stops the worker cleanly.
        self.stopping = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        for module in imports:
            importlib.import_module(module)
        # Tasks this worker runs resolve refs and submit tasks through the same cluster.
        api.shutdown()
        api.init(url, namespace=namespace, lease_ms=lease_ms, block_ms=min(1000, lease_ms))
        self.backend = api.backend()
        name = f"py-{socket.gethostname()}-{os.getpid()}"
        self.consumer = _core.Consumer(self.backend.queue, name, queues)
        self.queues = queues
        self.concurrency = concurrency
        self.lease_s = lease_ms / 1000
        self.grace_s = grace_ms / 1000
        self.batch = max(1, batch)
        self.active: dict[Any, context.TaskContext] = {}
        self.fetching: set[threading.Thread] = set()
        self.lock = threading.Lock()

    def run(self) -> None:
        """Serves until SIGTERM/SIGINT; then lets running tasks finish for the grace period,
        hands back what it still holds and leaves the group."""
        servers = [threading.Thread(target=self._serve, daemon=True) for _ in range(self.concurrency)]
        keeper = threading.Thread(target=self._keep_leases, daemon=True)
        for thread in [*servers, keeper]:
            thread.start()
        _log(f"serving queues {self.queues} with {self.concurrency} threads")
        self.stopping.wait()
        until = time.monotonic() + self.grace_s
        for thread in servers:
            thread.join(max(0.0, until - time.monotonic()))
        # Threads still in a blocking fetch return within the block time; a task handed back
        # while one still reads would go straight back to this dying worker.
        for thread in servers:
            while thread.is_alive() and thread in self.fetching:
                thread.join(0.01)
        # Tasks still running are handed back (fenced: their late results will be refused).
        released = self.consumer.release_all()
        self.consumer.leave()
        _log(f"stopped; handed back {released} tasks")

    def _serve(self) -> None:
        size = self.batch
        me = threading.current_thread()
        while True:
            try:
                self.fetching.add(me)
                try:
                    # Checked after joining `fetching`, which run() looks at after stopping.
                    if self.stopping.is_set():
                        return
                    batch = self.consumer.fetch(size, int(min(1.0, self.lease_s) * 1000))
                finally:
                    self.fetching.discard(me)
                if batch:
                    finished_all = self._run_batch(batch)
                    # Long tasks: fetch one at a time; short ones: batches again.
                    size = min(self.batch, size * 2) if finished_all else 1
            except OSError as error:
                # Redis unreachable past the reconnect timeout: what this thread held comes
                # back to the queue after its lease.
                _log(f"serving failed, retrying in 1 s: {error}")
                self.stopping.wait(1.0)

    def _run_batch(self, batch: list[Any]) -> bool:
        """Runs a batch, recording results together; hands back the unstarted rest once it
        has taken `BATCH_HOLD_S`. Returns whether it ran all of them."""
        with self.lock:
            for delivery in batch:
                self.active[delivery] = context.TaskContext()
        results: list[tuple[Any, str]] = []
        started = time.monotonic()
        ran = 0
        for delivery in batch:
            if self.stopping.is_set() or (ran and time.monotonic() - started > BATCH_HOLD_S):
                break
            result = self._handle(delivery)
            ran += 1
            if result is not None:
                results.append((delivery, result))
            if time.monotonic() - started > BATCH_HOLD_S:
                self._complete(results)
                results = []
        self._complete(results)
        for delivery in batch[ran:]:
            self.consumer.release(delivery)
        with self.lock:
            for delivery in batch:
                del self.active[delivery]
        return ran == len(batch)

    def _complete(self, results: list[tuple[Any, str]]) -> None:
        if results:
            self.consumer.complete_many(results)

    def _keep_leases(self) -> None:
        """Heartbeats held tasks every third of the lease (cancel requests arrive this way)
        and sweeps the queue every half lease (reclaims tasks of dead workers, promotes
        retries whose backoff passed)."""
        swept = 0.0
        while True:
            if self.stopping.is_set():
                # Tasks finishing in the grace period keep their leases.
                time.sleep(self.lease_s / 3)
            else:
                self.stopping.wait(self.lease_s / 3)
            with self.lock:
                active = list(self.active.items())
            try:
                for delivery, task_context in active:
                    if self.consumer.heartbeat(delivery) in ("cancel", "lost"):
                        task_context.cancelled.set()
                if not self.stopping.is_set() and time.monotonic() - swept >= self.lease_s / 2:
                    self.backend.queue.sweep()
                    swept = time.monotonic()
            except OSError as error:
                _log(f"heartbeat or sweep failed, retrying: {error}")
            if self.stopping.is_set() and not active:
                return

    def _handle(self, delivery: Any) -> str | None:
        """Runs one task; returns its result (JSON text) to record, or None when its outcome
        is already recorded (failed, cancelled, refused)."""
        if delivery.kind != KIND:
            self.consumer.reject(delivery, f"kind {delivery.kind!r} is not a Python task (this is a Python worker)")
            return None
        payload = json.loads(delivery.payload)
        version = payload.get("v") if isinstance(payload, dict) else None
        if version != codec.VERSION:
            self.consumer.reject(delivery, f"payload version {version!r}; this worker reads {codec.VERSION}")
            return None
        fn = registered(payload.get("fn", ""))
        if fn is None:
            reason = f"function {payload.get('fn')!r} is not registered with @fc.remote in this worker's --import modules"
            self.consumer.reject(delivery, reason)
            return None
        task_context = self.active[delivery]
        context.enter(task_context)
        try:
            return self._run(delivery, fn, payload, task_context)
        finally:
            context.enter(None)

    def _run(self, delivery: Any, fn: Any, payload: dict[str, Any], task_context: context.TaskContext) -> str | None:
        blobs = self.backend.blobs
        try:
            args = codec.decode(payload["args"], self.backend.make_ref, blobs.load)
            kwargs = codec.decode(payload["kwargs"], self.backend.make_ref, blobs.load)
            resolved = self._resolve(args, kwargs)
            value = fn.run(tuple(resolved[: len(args)]), dict(zip(kwargs, resolved[len(args):])))
            result = json.dumps(codec.encode(value, store=blobs.store(delivery.result_ttl_s)), allow_nan=False)
        except BaseException as error:  # noqa: BLE001 - every failure is the task's outcome
            if task_context.cancelled.is_set() or isinstance(error, TaskCancelledError):
                self.consumer.cancelled(delivery)
                return None
            retry_on = payload.get("retry_on", False)
            retryable = retry_on if isinstance(retry_on, bool) else _matches(error, retry_on)
            text = "".join(traceback.format_exception(error))
            self.consumer.fail(delivery, encode_error(error, text), retryable and is_retryable(error, True))
            return None
        if task_context.cancelled.is_set():
            self.consumer.cancelled(delivery)
            return None
        return result

    def _resolve(self, args: list[Any], kwargs: dict[str, Any]) -> list[Any]:
        """Top-level refs replaced by their values (all read in one wait), args then kwargs."""
        values = [*args, *kwargs.values()]
        refs = [v for v in values if isinstance(v, ObjectRef)]
        if not refs:
            return values
        got = iter(self.backend.get(refs, None))
        return [next(got) if isinstance(v, ObjectRef) else v for v in values]


def _log(message: str) -> None:
    print(f"ferrocluster worker {os.getpid()}: {message}", file=sys.stderr, flush=True)


def _matches(error: BaseException, names: list[str]) -> bool:
    """Whether `error` is an instance of one of the classes named `module:qualname`."""
    return any(f"{cls.__module__}:{cls.__qualname__}" in names for cls in type(error).__mro__)
