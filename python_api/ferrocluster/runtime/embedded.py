"""The in-process runtime: tasks run on threads of this process, at most `num_cpus` CPUs'
worth at once.

Threads, not processes: arguments and results are shared, never copied or pickled, and a
running task can be cancelled (it sees `fc.is_cancelled()`). Built-in Rust operations
release the GIL, so they use every core; pure-Python tasks share the GIL (use cluster mode,
with worker processes, for CPU-bound Python).
"""

import collections
import concurrent.futures
import threading
import time
import traceback
import uuid
from typing import Any

from ferrocluster.runtime import context
from ferrocluster.runtime.errors import GetTimeoutError, TaskCancelledError
from ferrocluster.runtime.remote import ObjectRef, RemoteFunction, is_retryable


class _Task:
    def __init__(self, fn: RemoteFunction, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]):
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.options = options
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.context = context.TaskContext()


class EmbeddedBackend:
    """Runs tasks on threads, scheduling them in submission order as CPUs free up.

    Args:
        num_cpus: CPUs the tasks may use at once (a task takes its `num_cpus` option).
    """

    def __init__(self, num_cpus: float) -> None:
        self.num_cpus = num_cpus
        self._free = num_cpus
        self._pending: collections.deque[_Task] = collections.deque()
        self._running: set[_Task] = set()
        self._lock = threading.Lock()

    def submit(self, fn: RemoteFunction, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]) -> ObjectRef:
        if options["num_cpus"] > self.num_cpus:
            raise ValueError(f"the task asks for {options['num_cpus']} CPUs; the runtime has {self.num_cpus}")
        task = _Task(fn, args, kwargs, options)
        with self._lock:
            self._pending.append(task)
            self._dispatch()
        return ObjectRef(uuid.uuid4().hex, self, task)

    def put(self, value: Any) -> ObjectRef:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        future.set_result(value)
        task = object.__new__(_Task)
        task.future = future
        return ObjectRef(uuid.uuid4().hex, self, task)

    def _dispatch(self) -> None:
        """Starts pending tasks in order while their CPUs are free (lock held)."""
        while self._pending and self._pending[0].options["num_cpus"] <= self._free:
            task = self._pending.popleft()
            self._free -= task.options["num_cpus"]
            self._running.add(task)
            # Daemon threads: a task that never checks for cancellation cannot block exit.
            threading.Thread(target=self._run, args=(task,), name="ferrocluster-task", daemon=True).start()

    def _run(self, task: _Task) -> None:
        context.enter(task.context)
        try:
            outcome, error = None, None
            for attempt in range(task.options["max_retries"] + 1):
                try:
                    # Only top-level refs are resolved, as in Ray; their errors are the task's.
                    args = [self._resolve(a) for a in task.args]
                    kwargs = {k: self._resolve(v) for k, v in task.kwargs.items()}
                    outcome, error = task.fn.run(tuple(args), kwargs), None
                    break
                except BaseException as e:  # noqa: BLE001 - every failure belongs to the caller
                    error = e
                    if task.context.cancelled.is_set() or not is_retryable(e, task.options["retry_exceptions"]):
                        break
            if task.context.cancelled.is_set():
                error = TaskCancelledError("the task was cancelled while running")
            elif error is not None:
                _attach_traceback(error)
            _settle(task.future, outcome, error)
        finally:
            context.enter(None)
            with self._lock:
                self._running.discard(task)
                self._free += task.options["num_cpus"]
                self._dispatch()

    def _resolve(self, value: Any) -> Any:
        return self._get(value, None) if isinstance(value, ObjectRef) else value

    def get(self, refs: list[ObjectRef], deadline: float | None) -> list[Any]:
        return [self._get(ref, deadline) for ref in refs]

    def _get(self, ref: ObjectRef, deadline: float | None) -> Any:
        future = _future(ref)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not future.done():
            with self._blocked():
                try:
                    return future.result(remaining)
                except concurrent.futures.TimeoutError:
                    raise GetTimeoutError(f"{ref} not ready after the timeout") from None
        return future.result()

    def wait(self, refs: list[ObjectRef], num_returns: int, deadline: float | None) -> list[bool]:
        futures = [_future(r) for r in refs]
        with self._blocked():
            while sum(f.done() for f in futures) < num_returns:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                waiting = [f for f in futures if not f.done()]
                concurrent.futures.wait(waiting, remaining, return_when=concurrent.futures.FIRST_COMPLETED)
        return [f.done() for f in futures]

    def cancel(self, ref: ObjectRef) -> None:
        task = ref._state
        with self._lock:
            if task in self._pending:
                self._pending.remove(task)
                _settle(task.future, None, TaskCancelledError("the task was cancelled before it ran"))
                return
        if getattr(task, "context", None) is not None and not task.future.done():
            task.context.cancelled.set()
            # get() answers at once; the thread stops at its next is_cancelled() check.
            _settle(task.future, None, TaskCancelledError("the task was cancelled while running"))

    def shutdown(self) -> None:
        with self._lock:
            pending, self._pending = list(self._pending), collections.deque()
            running = list(self._running)
        for task in pending + running:
            task.context.cancelled.set()
            _settle(task.future, None, TaskCancelledError("the runtime was shut down"))

    def _blocked(self) -> "_CpusLent":
        return _CpusLent(self)


class _CpusLent:
    """While a task waits in get/wait, its CPUs go to other tasks (as in Ray), so a task
    waiting on tasks it submitted cannot deadlock the pool."""

    def __init__(self, backend: EmbeddedBackend) -> None:
        self.backend = backend
        task_context = context.current()
        self.cpus = 0.0
        if task_context is not None:
            with backend._lock:
                self.cpus = next((t.options["num_cpus"] for t in backend._running if t.context is task_context), 0.0)

    def __enter__(self) -> None:
        with self.backend._lock:
            self.backend._free += self.cpus
            self.backend._dispatch()

    def __exit__(self, *exc: Any) -> None:
        with self.backend._lock:
            self.backend._free -= self.cpus


def _future(ref: ObjectRef) -> "concurrent.futures.Future[Any]":
    return ref._state.future


def _settle(future: "concurrent.futures.Future[Any]", outcome: Any, error: BaseException | None) -> None:
    """Sets a future's outcome unless a cancel already did."""
    try:
        if error is None:
            future.set_result(outcome)
        else:
            future.set_exception(error)
    except concurrent.futures.InvalidStateError:
        pass


def _attach_traceback(error: BaseException) -> None:
    """Keeps the task's traceback text on the exception, as Ray shows the remote one."""
    text = "".join(traceback.format_exception(error))
    error.remote_traceback = text  # type: ignore[attr-defined]
    error.add_note(f"remote traceback:\n{text}")
