"""The thread count the C kernels use: process-wide, or for one Python thread in a block.

Each call hands its team size to C explicitly (OpenMP's ``num_threads`` clause) instead of
calling ``omp_set_num_threads``, whose setting would apply only to the calling thread.
``set_num_threads`` sets the process's count; ``threads(n)`` overrides it for the calling
Python thread inside the block only, so blocks in different Python threads (a server's
requests, dask's tasks) neither see nor undo each other's counts.

Fork safety: GNU libgomp's thread pool does not survive ``fork()``. A child forked after
fastconv's team has started (``os.fork``, ``multiprocessing`` with the "fork" start method)
runs every kernel on its calling thread -- bitwise the same results, never a hang -- and
``get_num_threads()`` says 1 there. Children forked before any team started, and processes
started by "spawn" or "forkserver", keep their threads. The switch lives in C
(``csrc/threads.c``, a ``pthread_atfork`` handler), so it holds for forks from C code too.
"""
from __future__ import annotations

import contextlib
import numbers
import threading
from typing import Iterator, Optional

from . import _core

# An OpenMP team size is a C int; far fewer threads than that are ever useful.
MAX_THREADS = 4096

_lock = threading.Lock()
_num_threads: Optional[int] = None
# threads() blocks of the calling Python thread, innermost last: their counts (None: OpenMP's
# default). A process-wide value saved and restored by each block was undone by overlapping
# blocks in other Python threads: the last to exit restored a stale count for everyone.
_blocks = threading.local()


def _checked(n: Optional[int]) -> Optional[int]:
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"n must be a positive int or None, got {n!r}")
        if n > MAX_THREADS:
            raise ValueError(f"n must be at most {MAX_THREADS} threads, got {n!r}")
        n = int(n)
    return n


def set_num_threads(n: Optional[int]) -> None:
    """Set how many threads fastconv's kernels use, process-wide.

    Inside a :func:`threads` block the block's count applies to its Python thread instead.

    Parameters
    ----------
    n : int or None
        A positive thread count, or None to return to OpenMP's default
        (``OMP_NUM_THREADS`` when set, else the number of cores).
    """
    global _num_threads
    n = _checked(n)
    with _lock:
        _num_threads = n


def get_num_threads() -> int:
    """The number of threads the calling Python thread's next fastconv call will use."""
    if _core.fork_serial():
        return 1  # a forked child of a process whose team had started (module docstring)
    stack = getattr(_blocks, "stack", None)
    n = stack[-1] if stack else _num_threads
    return n if n is not None else max(1, _core.omp_max_threads())


@contextlib.contextmanager
def threads(n: Optional[int]) -> Iterator[None]:
    """Context manager: the calling Python thread's fastconv calls use ``n`` threads inside
    the block (None: OpenMP's default); other Python threads, and the code after the block,
    keep their counts.

    Parameters
    ----------
    n : int or None
        A positive thread count, or None for OpenMP's default.

    Examples
    --------
    >>> with fastconv.threads(1):
    ...     y = fastconv.conv2d(x, w)
    """
    n = _checked(n)
    stack = _blocks.__dict__.setdefault("stack", [])
    stack.append(n)
    try:
        yield
    finally:
        stack.pop()
