"""`@fc.remote`: remote functions, their options, object references and the registry of
functions workers may run."""

import functools
from typing import Any, Callable

_REGISTRY: dict[str, "RemoteFunction"] = {}

_OPTIONS = {"num_cpus": 1, "max_retries": 3, "retry_exceptions": False, "queue": "py", "priority": "normal"}


def function_key(fn: Callable[..., Any]) -> str:
    """The registry key of a function: `module:qualname`."""
    return f"{fn.__module__}:{fn.__qualname__}"


def registered(key: str) -> "RemoteFunction | None":
    """The remote function registered under `key` by an imported module, if any."""
    return _REGISTRY.get(key)


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """Validates task options, filling defaults.

    Args:
        options: any of num_cpus (>= 0; 0 for tasks that only wait), max_retries (>= 0),
            retry_exceptions (bool or a list of exception types), queue and priority (cluster
            mode: which queue the task goes to and its priority).
    Returns:
        the complete options.
    Raises:
        TypeError: an unknown option.
        ValueError: a bad value.
    """
    unknown = set(options) - set(_OPTIONS)
    if unknown:
        raise TypeError(f"unknown task options {sorted(unknown)}; known: {sorted(_OPTIONS)}")
    merged = {**_OPTIONS, **options}
    if not isinstance(merged["num_cpus"], (int, float)) or merged["num_cpus"] < 0:
        raise ValueError(f"num_cpus must be a number >= 0, got {merged['num_cpus']!r}")
    if not isinstance(merged["max_retries"], int) or merged["max_retries"] < 0:
        raise ValueError(f"max_retries must be an int >= 0, got {merged['max_retries']!r}")
    retry = merged["retry_exceptions"]
    if not isinstance(retry, bool):
        retry = list(retry)
        if not all(isinstance(t, type) and issubclass(t, BaseException) for t in retry):
            raise ValueError("retry_exceptions must be a bool or a list of exception types")
        merged["retry_exceptions"] = retry
    if merged["priority"] not in ("high", "normal", "low"):
        raise ValueError(f"priority must be 'high', 'normal' or 'low', got {merged['priority']!r}")
    return merged


def is_retryable(error: BaseException, retry_exceptions: bool | list[type]) -> bool:
    """Whether `retry_exceptions` allows retrying `error` (Ray's rule)."""
    if isinstance(retry_exceptions, bool):
        return retry_exceptions and isinstance(error, Exception)
    return isinstance(error, tuple(retry_exceptions))


class ObjectRef:
    """A reference to a task's result (or a value given to `fc.put`); `fc.get` reads it.

    Passed as a top-level argument of a `.remote()` call, it is replaced by its value before
    the task runs; nested in a list or dict it stays a reference (Ray's rule).
    """

    def __init__(self, task_id: str, backend: Any, state: Any = None, notified: bool = False) -> None:
        self.task_id = task_id
        self._backend = backend
        self._state = state
        # Cluster: its backend submitted it, so it is told when it finishes (no polling).
        self._notified = notified

    def __repr__(self) -> str:
        return f"ObjectRef({self.task_id})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and other.task_id == self.task_id

    def __hash__(self) -> int:
        return hash(self.task_id)


class RemoteFunction:
    """A function made remote by `@fc.remote`: `.remote(*args, **kwargs)` runs it as a task.

    Example:
        >>> import ferrocluster as fc
        >>> @fc.remote
        ... def square(x):
        ...     return x * x
        >>> fc.get([square.remote(i) for i in range(4)])
        [0, 1, 4, 9]
    """

    def __init__(self, fn: Callable[..., Any], options: dict[str, Any], key: str | None = None) -> None:
        self._fn = fn
        self._options = check_options(options)
        self.key = key or function_key(fn)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"remote function {self.key} cannot be called directly: use {self.__name__}.remote(...)")

    def remote(self, *args: Any, **kwargs: Any) -> ObjectRef:
        """Submits a task running the function on `args` and `kwargs`.

        Returns:
            an ObjectRef to its result.
        """
        from ferrocluster.runtime import api

        return api.backend().submit(self, args, kwargs, self._options)

    def options(self, **options: Any) -> "RemoteFunction":
        """The same function with some options changed for the calls made through it.

        Example:
            >>> import ferrocluster as fc
            >>> @fc.remote
            ... def one():
            ...     return 1
            >>> fc.get(one.options(num_cpus=0.5, max_retries=0).remote())
            1
        """
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__)
        copy._options = check_options({**self._options, **options})
        return copy

    def run(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Runs the function here (what a worker does with a task)."""
        return self._fn(*args, **kwargs)


class BuiltinOp(RemoteFunction):
    """A built-in operation: callable directly (as before) and with `.remote()` as a task,
    which runs `task_fn`, a variant that checks for cancellation between chunks."""

    def __init__(self, direct: Callable[..., Any], task_fn: Callable[..., Any]) -> None:
        super().__init__(task_fn, {}, key=function_key(task_fn))
        functools.update_wrapper(self, direct)
        self._direct = direct
        _REGISTRY[self.key] = self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._direct(*args, **kwargs)


def remote(fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    """Makes a function remote, registering it (by `module:qualname`) for cluster workers.

    Args:
        fn: the function (when used as `@fc.remote` without parentheses).
        options: default task options: num_cpus (1), max_retries (3), retry_exceptions
            (False, True, or a list of exception types), queue ("py"), priority ("normal").
    Returns:
        a RemoteFunction, or a decorator making one.

    Example:
        >>> import ferrocluster as fc
        >>> @fc.remote(max_retries=1, retry_exceptions=[OSError])
        ... def read(path):
        ...     return open(path).read()
    """
    def wrap(f: Callable[..., Any]) -> RemoteFunction:
        if not callable(f) or isinstance(f, type):
            raise TypeError("@fc.remote takes a function (classes/actors are not supported)")
        rf = RemoteFunction(f, options)
        _REGISTRY[rf.key] = rf
        return rf

    return wrap(fn) if fn is not None else wrap
