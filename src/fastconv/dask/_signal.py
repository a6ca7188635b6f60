"""``convolve2d`` / ``correlate2d`` of a large 2-D dask array with a small in-memory kernel.

Each mode of ``scipy.signal`` is a padding of the cross-correlation (``fastconv.signal``),
so both run through :func:`fastconv.dask.conv2d` on a (1, 1, H, W) view of the image.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .._spec import check_ndim, result_dtype
from ..signal import _MODES, _pads
from ._conv import _small, conv2d, require_dask_array

__all__ = ["convolve2d", "correlate2d"]


def _run(in1, in2, mode: str, flip: bool, rechunk: bool, threads_per_task: Optional[int], algorithm: str):
    if not isinstance(mode, str) or mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    a = require_dask_array(in1, "in1", 2, "(H, W)")
    k = _small(in2, "in2")
    check_ndim(k, "in2", 2, "(kh, kw)")
    dtype = result_dtype(in1=a, in2=k)
    if a.size == 0 or k.size == 0:
        raise ValueError(f"in1 and in2 must not be empty, got shapes {a.shape} and {k.shape}")
    if mode == "valid" and (k.shape[0] > a.shape[0] or k.shape[1] > a.shape[1]):
        raise ValueError(f"for mode='valid' the kernel in2 {k.shape} must fit inside the image in1 {a.shape} "
                         "(SciPy would swap them; a dask image is meant to be the large operand)")
    k = k.astype(dtype, copy=False)
    if flip:
        k = np.ascontiguousarray(k[::-1, ::-1])
    y = conv2d(a.astype(dtype)[None, None], k[None, None], padding=_pads(mode, k.shape, flipped=flip),
               algorithm=algorithm, rechunk=rechunk, threads_per_task=threads_per_task)
    return y[0, 0]


def correlate2d(in1, in2: np.ndarray, mode: str = "full", *, algorithm: str = "auto", rechunk: bool = True,
                threads_per_task: Optional[int] = None):
    """``scipy.signal.correlate2d`` (zero fill) of a 2-D dask array with a small kernel; lazy.

    Parameters
    ----------
    in1 : dask.array.Array, 2-D
        The image, chunked any way along both axes (chunks are brought up to the kernel's
        halo, ``kernel - 1`` pixels, when ``rechunk``).
    in2 : ndarray, 2-D
        The kernel, in memory.
    mode : {"full", "valid", "same"}
        As SciPy; for "valid" the kernel must fit inside the image.
    algorithm, rechunk, threads_per_task
        As for :func:`fastconv.dask.conv2d`.

    Returns
    -------
    dask.array.Array, 2-D, float32 when both inputs are float32, else float64
    """
    return _run(in1, in2, mode, False, rechunk, threads_per_task, algorithm)


def convolve2d(in1, in2: np.ndarray, mode: str = "full", *, algorithm: str = "auto", rechunk: bool = True,
               threads_per_task: Optional[int] = None):
    """``scipy.signal.convolve2d`` (zero fill) of a 2-D dask array with a small kernel; lazy.

    The kernel is flipped (true convolution); otherwise as :func:`correlate2d`.
    """
    return _run(in1, in2, mode, True, rechunk, threads_per_task, algorithm)
