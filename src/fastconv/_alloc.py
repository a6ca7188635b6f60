"""Output arrays that do not start on fresh pages: a small cache of large blocks.

A convolution's output is written by every thread of the team. When it lands on pages the
process has never touched -- what glibc hands out for a large array once it has returned
the previous one to the OS, as it keeps doing in a training loop full of NumPy temporaries
-- each thread first takes a page fault per page, and those are serialised in the kernel:
at 2 threads the forward of the MNIST CNN's second layer took 15.8 ms in a user's NumPy
loop instead of 8.4 ms (the same call on reused memory).

So the outputs fastconv allocates (``out=None``) of at least ``MIN_BYTES`` are views into
blocks kept here. A block is handed out again only when nothing but this cache refers to
it (its reference count says so: every view of it, however derived, holds a reference), so
an array a caller still holds is never reused. At most ``FASTCONV_OUTPUT_CACHE_MB``
(default 256) MiB of blocks nobody uses is kept; 0 turns the cache off.
"""
from __future__ import annotations

import math
import os
import sys
import threading
from typing import List, Tuple

import numpy as np

MIN_BYTES = 1 << 20


def _limit_from_env() -> int:
    try:
        return max(0, int(float(os.environ.get("FASTCONV_OUTPUT_CACHE_MB", "256")) * (1 << 20)))
    except ValueError:
        return 256 << 20


class OutputCache:
    """Blocks (uint8 arrays) reused for large outputs; see the module docstring."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self._blocks: List[np.ndarray] = []  # most recently used first
        self._lock = threading.Lock()

    def _free(self, i: int) -> bool:
        # Block i is free when the list holds the only reference: getrefcount then says 2
        # (the list's and its own argument's). Every view of a block, however derived,
        # holds a reference to it (NumPy keeps the owner as the base).
        return sys.getrefcount(self._blocks[i]) == 2

    def empty(self, shape: Tuple[int, ...], dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        if self.limit <= 0 or nbytes < MIN_BYTES or nbytes > self.limit:
            return np.empty(shape, dtype=dtype)
        with self._lock:
            chosen = None
            for i in range(len(self._blocks)):
                if nbytes <= self._blocks[i].nbytes <= 2 * nbytes and self._free(i):
                    chosen = self._blocks.pop(i)
                    break
            if chosen is None:
                chosen = np.empty(nbytes, dtype=np.uint8)
            self._blocks.insert(0, chosen)
            self._evict()
            view = chosen[:nbytes].view(dtype).reshape(shape)
        return view

    def _evict(self) -> None:
        total = sum(b.nbytes for b in self._blocks)
        i = len(self._blocks) - 1
        while total > self.limit and i > 0:  # never the block just handed out (index 0)
            if self._free(i):
                total -= self._blocks[i].nbytes
                del self._blocks[i]
            i -= 1

    def cached_bytes(self) -> int:
        """Bytes of blocks held (in use or not)."""
        with self._lock:
            return sum(b.nbytes for b in self._blocks)

    def clear(self) -> None:
        """Drop every block (arrays still in use keep theirs alive)."""
        with self._lock:
            self._blocks.clear()


outputs = OutputCache(_limit_from_env())


def empty(shape: Tuple[int, ...], dtype) -> np.ndarray:
    """``np.empty(shape, dtype)``, on reused memory when the array is large."""
    return outputs.empty(tuple(shape), dtype)
