"""The public functions: init, shutdown, get, wait, put, cancel."""

import os
import threading
import time
from typing import Any

from ferrocluster.runtime.remote import ObjectRef

_lock = threading.Lock()
_backend: Any = None


def init(address: str | None = None, *, num_cpus: float | None = None, **cluster_options: Any) -> None:
    """Starts the runtime.

    Args:
        address: None for the embedded runtime (tasks on threads of this process), or a
            Redis URL (`redis://[user:pass@]host:6379/0`; `rediss://` for TLS, see
            docs/queue.md) to send tasks to `python -m ferrocluster worker` processes through
            the queue.
        num_cpus: embedded only: CPUs tasks may use at once (default: all cores).
        cluster_options: cluster only: namespace, lease_ms, block_ms of the queue;
            inline_max_bytes (arrays and bytes larger than this, 64 KiB by default, travel
            as blobs kept in Redis); result_ttl_s (seconds outcomes and blobs are kept, a day).
    Raises:
        RuntimeError: the runtime is already started (call `fc.shutdown()` first).

    Example:
        >>> import ferrocluster as fc
        >>> fc.init(num_cpus=2)
        >>> fc.is_initialized()
        True
        >>> fc.shutdown()
    """
    global _backend
    with _lock:
        if _backend is not None:
            raise RuntimeError("ferrocluster is already initialized: call fc.shutdown() first")
        if address is None:
            if cluster_options:
                raise TypeError(f"{sorted(cluster_options)} only apply to a cluster (init with a Redis URL)")
            from ferrocluster.runtime.embedded import EmbeddedBackend

            _backend = EmbeddedBackend(num_cpus if num_cpus is not None else float(os.cpu_count() or 1))
        else:
            if num_cpus is not None:
                raise TypeError("num_cpus applies to the embedded runtime; a cluster has its workers' --concurrency")
            from ferrocluster.runtime.cluster import ClusterBackend

            _backend = ClusterBackend(address, **cluster_options)


def shutdown() -> None:
    """Stops the runtime: embedded, pending tasks are cancelled and running ones asked to
    stop; cluster, the connection is dropped (tasks already queued still run). Does nothing
    when not initialized."""
    global _backend
    with _lock:
        backend, _backend = _backend, None
    if backend is not None:
        backend.shutdown()


def is_initialized() -> bool:
    """Whether `fc.init` was called (or a `.remote()` call started the runtime)."""
    return _backend is not None


def backend() -> Any:
    """The running backend, starting the embedded one when none is (like Ray's auto-init)."""
    if _backend is None:
        with _lock:
            if _backend is None:
                from ferrocluster.runtime.embedded import EmbeddedBackend

                globals()["_backend"] = EmbeddedBackend(float(os.cpu_count() or 1))
    return _backend


def _deadline(timeout: float | None) -> float | None:
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be >= 0 or None, got {timeout}")
    return None if timeout is None else time.monotonic() + timeout


def _check_refs(refs: Any) -> None:
    for ref in refs:
        if not isinstance(ref, ObjectRef):
            raise TypeError(f"expected ObjectRefs, got {type(ref).__name__}")
        if ref._backend is not _backend:
            raise ValueError(f"{ref} belongs to a runtime that was shut down")


def get(refs: ObjectRef | list[ObjectRef], *, timeout: float | None = None) -> Any:
    """The values of tasks (or of `fc.put`), waiting for them.

    Args:
        refs: one ObjectRef, or a list of them.
        timeout: seconds to wait in all; None waits as long as it takes.
    Returns:
        the value, or the list of values in the order of `refs`.
    Raises:
        GetTimeoutError: not all were ready within `timeout`.
        TaskCancelledError: a task was cancelled.
        Exception: a task's own exception, of its type, with the remote traceback text in
            its notes and `remote_traceback` (cluster: when its class is importable here,
            else RemoteTaskError).

    Example:
        >>> import ferrocluster as fc
        >>> fc.get([fc.put(1), fc.put("a")])
        [1, 'a']
    """
    single = isinstance(refs, ObjectRef)
    items = [refs] if single else list(refs)
    _check_refs(items)
    deadline = _deadline(timeout)
    values = _backend.get(items, deadline)
    return values[0] if single else values


def wait(
    refs: list[ObjectRef], *, num_returns: int = 1, timeout: float | None = None
) -> tuple[list[ObjectRef], list[ObjectRef]]:
    """Waits until `num_returns` of the tasks are finished (succeeded or not), or `timeout`.

    Args:
        refs: ObjectRefs, without duplicates.
        num_returns: how many to wait for, 1..len(refs).
        timeout: seconds; None waits as long as it takes.
    Returns:
        (ready, not_ready): at most `num_returns` finished refs, and the rest, each list in
        the order of `refs`.

    Example:
        >>> import ferrocluster as fc
        >>> a, b = fc.put(1), fc.put(2)
        >>> fc.wait([a, b], num_returns=2) == ([a, b], [])
        True
    """
    refs = list(refs)
    if isinstance(refs, ObjectRef) or len(set(refs)) != len(refs):
        raise ValueError("wait takes a list of distinct ObjectRefs")
    if not 0 <= num_returns <= len(refs):
        raise ValueError(f"num_returns must be between 0 and {len(refs)}, got {num_returns}")
    _check_refs(refs)
    done = _backend.wait(refs, num_returns, _deadline(timeout)) if refs else []
    ready: list[ObjectRef] = []
    not_ready: list[ObjectRef] = []
    for ref, is_done in zip(refs, done):
        (ready if is_done and len(ready) < num_returns else not_ready).append(ref)
    return ready, not_ready


def put(value: Any) -> ObjectRef:
    """A reference to `value`, to pass to tasks or `fc.get` (in cluster mode it is encoded
    once, its large arrays stored in Redis once, and travels with each task it is given to).

    Example:
        >>> import ferrocluster as fc
        >>> fc.get(fc.put([1, 2]))
        [1, 2]
    """
    return backend().put(value)


def cancel(ref: ObjectRef) -> None:
    """Cancels a task: a pending one never runs; a running one is asked to stop and sees
    `fc.is_cancelled()` at its next check. `fc.get` on it then raises TaskCancelledError.
    Cancelling a finished task does nothing.
    """
    _check_refs([ref])
    _backend.cancel(ref)
