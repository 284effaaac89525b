"""What a running task can ask about itself: whether it was cancelled."""

import threading

from ferrocluster import _core
from ferrocluster.runtime.errors import TaskCancelledError

_current = threading.local()


class TaskContext:
    """The running task's cancel flag, set by `fc.cancel` (embedded) or by the worker when
    its heartbeat reports a cancel request (cluster). The native fits the task runs check
    the same flag between their steps."""

    def __init__(self) -> None:
        self.cancelled = _core.CancelFlag()


def current() -> TaskContext | None:
    """The context of the task running on this thread, if any."""
    return getattr(_current, "task", None)


def enter(context: TaskContext | None) -> None:
    """Makes `context` the current task of this thread (None: no task)."""
    _current.task = context


def is_cancelled() -> bool:
    """Whether the task running on this thread was asked to stop; False outside a task.

    Long tasks check it between chunks of work: cancellation is cooperative.

    Example:
        >>> import ferrocluster as fc
        >>> fc.is_cancelled()
        False
    """
    context = current()
    return context is not None and context.cancelled.is_set()


def check_cancelled() -> None:
    """Raises `TaskCancelledError` when the running task was asked to stop.

    Raises:
        TaskCancelledError: the task was cancelled.
    """
    if is_cancelled():
        raise TaskCancelledError("the task was cancelled")
