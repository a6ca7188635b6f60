"""``convolve2d`` and ``correlate2d`` on single 2-D arrays, as ``scipy.signal`` defines them.

Both run on the same C kernels as ``conv2d``: an image is a batch of one single-channel
input, and each mode is a padding of the cross-correlation.

Why convolution flips the kernel and ``conv2d`` does not
--------------------------------------------------------
True convolution slides the kernel *reversed*: ``(a * k)[i, j] = sum_{l,m} a[i-l, j-m] k[l, m]``,
so ``convolve2d(image, k)`` equals ``correlate2d(image, k[::-1, ::-1])`` (up to where each
mode puts its window). Neural networks learn their filters, so flipping them buys
nothing; ``conv2d`` (like every deep-learning "convolution") is the un-flipped
cross-correlation ``y[i, j] = sum_{l,m} x[i+l, j+m] w[l, m]``. For a symmetric kernel the
two agree; for an edge detector they differ in sign::

    >>> import numpy as np, fastconv
    >>> step = np.array([[0., 0., 1., 1.]])
    >>> fastconv.correlate2d(step, np.array([[-1., 1.]]), mode="valid")
    array([[0., 1., 0.]])
    >>> fastconv.convolve2d(step, np.array([[-1., 1.]]), mode="valid")
    array([[ 0., -1.,  0.]])
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from ._spec import as_array, check_ndim, result_dtype
from .functional import conv2d

__all__ = ["convolve2d", "correlate2d"]

_MODES = ("full", "valid", "same")


def _prepare(in1, in2, mode: str) -> Tuple[np.ndarray, np.ndarray, bool]:
    if not isinstance(mode, str) or mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    a, k = as_array(in1, "in1"), as_array(in2, "in2")
    dtype = result_dtype(in1=a, in2=k)
    check_ndim(a, "in1", 2, "(H, W)")
    check_ndim(k, "in2", 2, "(kh, kw)")
    if a.size == 0 or k.size == 0:
        raise ValueError(f"in1 and in2 must not be empty, got shapes {a.shape} and {k.shape}")
    swapped = False
    if mode == "valid":
        in1_larger = a.shape[0] >= k.shape[0] and a.shape[1] >= k.shape[1]
        in2_larger = k.shape[0] >= a.shape[0] and k.shape[1] >= a.shape[1]
        if not (in1_larger or in2_larger):
            raise ValueError("for mode='valid', one of in1 and in2 must be at least as large as the "
                             f"other in every dimension, got shapes {a.shape} and {k.shape}")
        if not in1_larger:  # SciPy swaps the inputs so the larger one slides under the smaller
            a, k, swapped = k, a, True
    return a.astype(dtype, copy=False), k.astype(dtype, copy=False), swapped


def _pads(mode: str, kernel: Tuple[int, int], flipped: bool) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    def one(size: int) -> Tuple[int, int]:
        if mode == "full":
            return size - 1, size - 1
        if mode == "valid":
            return 0, 0
        # "same": the centre of SciPy's full result; the flipped kernel shifts it by one
        # pixel for even sizes.
        before = size // 2 if flipped else (size - 1) // 2
        return before, size - 1 - before

    return one(kernel[0]), one(kernel[1])


def _correlate(a: np.ndarray, k: np.ndarray, pads) -> np.ndarray:
    return conv2d(a[None, None], k[None, None], padding=pads)[0, 0]


def correlate2d(in1: np.ndarray, in2: np.ndarray, mode: str = "full") -> np.ndarray:
    """Cross-correlate two 2-D arrays, as ``scipy.signal.correlate2d`` with zero fill.

    ``z[i, j] = sum_{l, m} in1[i + l - p, j + m - q] * in2[l, m]`` where the offsets ``p, q``
    depend on ``mode``; the kernel is not flipped.

    Parameters
    ----------
    in1 : array_like, 2-D
        The image.
    in2 : array_like, 2-D
        The kernel.
    mode : {"full", "valid", "same"}
        "full": every overlap (shape in1 + in2 - 1); "valid": only full overlaps (for
        "valid" one input must be at least as large as the other in every dimension, and,
        as in SciPy, the inputs are swapped when in2 is the larger); "same": the centre of
        "full" with in1's shape.

    Returns
    -------
    ndarray, 2-D
        float32 when both inputs are float32, else float64.
    """
    a, k, swapped = _prepare(in1, in2, mode)
    z = _correlate(a, k, _pads(mode, k.shape, flipped=False))
    return np.ascontiguousarray(z[::-1, ::-1]) if swapped else z


def convolve2d(in1: np.ndarray, in2: np.ndarray, mode: str = "full") -> np.ndarray:
    """Convolve two 2-D arrays, as ``scipy.signal.convolve2d`` with zero fill.

    ``z[i, j] = sum_{l, m} in1[i - l + p, j - m + q] * in2[l, m]``: the kernel is flipped,
    unlike ``conv2d`` (see the module docstring for why).

    Parameters
    ----------
    in1 : array_like, 2-D
        The image.
    in2 : array_like, 2-D
        The kernel.
    mode : {"full", "valid", "same"}
        As for ``correlate2d``.

    Returns
    -------
    ndarray, 2-D
        float32 when both inputs are float32, else float64.
    """
    a, k, _ = _prepare(in1, in2, mode)  # convolution commutes: a swap changes nothing
    flipped = np.ascontiguousarray(k[::-1, ::-1])
    return _correlate(a, flipped, _pads(mode, k.shape, flipped=True))
