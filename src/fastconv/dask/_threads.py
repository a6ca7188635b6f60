"""How many threads fastconv's kernels use inside a dask task.

A dask worker runs several tasks at once, each in a thread of its own, so a task must not
simply ask for every core: with ``T`` tasks running concurrently in a
process of ``cores`` cores, each uses ``max(1, min(fastconv.get_num_threads(), cores // T))``
threads (one each when ``T >= cores``; never more than the process's own setting, so
``fastconv.set_num_threads(1)`` or ``OMP_NUM_THREADS=1`` still means one). ``T`` is:

- on a ``dask.distributed`` worker: the worker's thread count (``nthreads``),
- on a pool thread of dask's local threaded scheduler: ``dask.config.get("num_workers")``,
  else dask's CPU count (the pool's size),
- in the calling thread (the synchronous scheduler, or outside dask): no change, the
  user's ``fastconv.set_num_threads`` setting applies.

``cores`` is the number of CPUs this process may run on (``os.sched_getaffinity``). A
machine running several worker *processes* should pass ``threads_per_task`` explicitly
(e.g. ``cores // (processes * threads_per_worker)``), since one process cannot see the
others. The count is a ``fastconv.threads`` block of the task's thread: concurrent tasks keep
their own counts, and nothing is left behind when they end.
"""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator, Optional

from .. import _threads

__all__ = ["task_thread_budget", "task_threads"]

def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _worker_nthreads() -> Optional[int]:
    """The thread count of the distributed worker running this task, or None outside one."""
    try:
        from distributed import get_worker
    except ImportError:
        return None
    try:
        worker = get_worker()
    except ValueError:  # not inside a worker
        return None
    state = getattr(worker, "state", None)
    n = getattr(state, "nthreads", None) or getattr(worker, "nthreads", None)
    return int(n) if n else None


def task_thread_budget(threads_per_task: Optional[int] = None) -> Optional[int]:
    """The fastconv thread count for a task running in the current thread.

    Parameters
    ----------
    threads_per_task : int, optional
        An explicit count, returned as is (after validation).

    Returns
    -------
    int or None
        None means "leave fastconv's process-wide setting alone".
    """
    if threads_per_task is not None:
        if isinstance(threads_per_task, bool) or not isinstance(threads_per_task, int) or threads_per_task < 1:
            raise ValueError(f"threads_per_task must be a positive int or None, got {threads_per_task!r}")
        return threads_per_task
    concurrent = _worker_nthreads()
    if concurrent is None and threading.current_thread() is not threading.main_thread():
        import dask
        from dask.system import CPU_COUNT
        concurrent = dask.config.get("num_workers", None) or CPU_COUNT
    if concurrent is None:
        return None
    return max(1, min(_threads.get_num_threads(), _cores() // int(concurrent)))


@contextlib.contextmanager
def task_threads(threads_per_task: Optional[int] = None) -> Iterator[None]:
    """Run the block with :func:`task_thread_budget` threads (a ``fastconv.threads`` block
    of the calling thread).

    Parameters
    ----------
    threads_per_task : int, optional
        See :func:`task_thread_budget`.
    """
    n = task_thread_budget(threads_per_task)
    if n is None:
        yield
        return
    with _threads.threads(n):
        yield
