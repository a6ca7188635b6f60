"""One thread count for every contender: fastconv, PyTorch and NumPy's BLAS."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional

import fastconv

__all__ = ["limit_threads", "blas_threads_controllable"]


def blas_threads_controllable() -> bool:
    """True when threadpoolctl is installed, so NumPy's BLAS can be held to n threads."""
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def limit_threads(n: int, torch: Optional[Any] = None) -> Iterator[None]:
    """Run the block with ``n`` threads in fastconv, torch (when given) and NumPy's BLAS.

    NumPy's BLAS is limited through threadpoolctl when it is installed (else it keeps its
    default, stated in the JSON's environment). Previous settings are restored after.
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(fastconv.threads(n))
        if blas_threads_controllable():
            import threadpoolctl

            stack.enter_context(threadpoolctl.threadpool_limits(limits=n, user_api="blas"))
        if torch is not None:
            previous = torch.get_num_threads()
            torch.set_num_threads(n)
            stack.callback(torch.set_num_threads, previous)
        yield
