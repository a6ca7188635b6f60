"""The thread count the C kernels use: process-wide, or for one Python thread in a block.

Each call hands its team size to C explicitly (OpenMP's ``num_threads`` clause) instead of
calling ``omp_set_num_threads``, whose setting would apply only to the calling thread.
``set_num_threads`` sets the process's count. ``threads(n)`` overrides it inside the block:
for the code that opened it (its Python thread, or asyncio task), and for threads that have
no block of their own, such as a pool's workers started inside it, which take the innermost
block open in the process. Blocks in different Python threads (a server's requests, dask's
tasks) keep their own counts, and each block's exit removes only its own: a process-wide
value saved and restored by each block was undone by overlapping blocks of other threads,
the last to exit restoring a stale count for everyone.

Fork safety: GNU libgomp's thread pool does not survive ``fork()``. A child forked after
fastconv's team has started (``os.fork``, ``multiprocessing`` with the "fork" start method)
runs every kernel on its calling thread -- bitwise the same results, never a hang -- and
``get_num_threads()`` says 1 there. Children forked before any team started, and processes
started by "spawn" or "forkserver", keep their threads. The switch lives in C
(``csrc/threads.c``, a ``pthread_atfork`` handler), so it holds for forks from C code too.
"""
from __future__ import annotations

import contextlib
import contextvars
import numbers
import os
import threading
from typing import Iterator, Optional, Tuple

from . import _core

# An OpenMP team size is a C int; far fewer threads than that are ever useful.
MAX_THREADS = 4096

_lock = threading.Lock()
_num_threads: Optional[int] = None


class _Block:
    """One open threads() block: its count (None: OpenMP's default)."""
    __slots__ = ("n",)

    def __init__(self, n: Optional[int]) -> None:
        self.n = n


# The innermost block of the running code (a context variable: per Python thread, and per
# asyncio task, whose context is a copy), and every block open in the process, in order of
# entry, for threads without one of their own.
_own: contextvars.ContextVar[Optional[_Block]] = contextvars.ContextVar("fastconv_threads_block", default=None)
_open: Tuple[_Block, ...] = ()  # replaced whole under _lock, read without it (one reference)


def _after_fork_in_child() -> None:
    # a fork while another thread held _lock would leave the child's copy locked for good,
    # and the child has only the forking thread: the other threads' blocks are gone
    global _lock, _open
    _lock = threading.Lock()
    own = _own.get()
    _open = (own,) if own is not None else ()


os.register_at_fork(after_in_child=_after_fork_in_child)


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
    block = _own.get()
    if block is None:
        blocks = _open  # no lock on the calls' path (a forked child never waits here)
        block = blocks[-1] if blocks else None
    n = block.n if block is not None else _num_threads
    return n if n is not None else max(1, _core.omp_max_threads())


@contextlib.contextmanager
def threads(n: Optional[int]) -> Iterator[None]:
    """Context manager: fastconv calls use ``n`` threads inside the block (None: OpenMP's
    default), those of the calling Python thread (or asyncio task) and of threads without a
    block of their own (a pool started inside it); other threads' blocks, and the code after
    the block, keep their counts.

    Parameters
    ----------
    n : int or None
        A positive thread count, or None for OpenMP's default.

    Examples
    --------
    >>> with fastconv.threads(1):
    ...     y = fastconv.conv2d(x, w)
    """
    global _open
    block = _Block(_checked(n))
    token = _own.set(block)
    with _lock:
        _open = _open + (block,)
    try:
        yield
    finally:
        with _lock:  # this block, wherever it is: blocks may close out of order
            _open = tuple(b for b in _open if b is not block)
        _own.reset(token)
