"""The C kernels of the non-convolution layers (csrc/nn/nn_ops.c), checked and wrapped.

Each function takes and returns NumPy arrays; the arrays it writes come from the caller
(a layer's buffers, reused across training steps) or are new. The kernels run on
fastconv's own OpenMP team, with ``fastconv.get_num_threads()`` threads, GIL released.
Only float32/float64 C-contiguous native arrays reach C: :func:`native` says whether an
array is one, and the layers fall back to NumPy for anything else.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .. import _core
from .._threads import get_num_threads

_DTYPE_CODE = {np.dtype(np.float32): _core.DTYPE_F32, np.dtype(np.float64): _core.DTYPE_F64}


def native(*arrays: np.ndarray) -> bool:
    """True when every array is a C-contiguous, aligned, native float32/float64 array of one dtype."""
    dtype = arrays[0].dtype
    for a in arrays:
        if not isinstance(a, np.ndarray) or a.dtype != dtype or dtype not in _DTYPE_CODE:
            return False
        if not (a.flags.c_contiguous and a.flags.aligned and a.dtype.isnative):
            return False
    return True


def _writable_like(out: Optional[np.ndarray], shape: Tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if out is not None and out.shape == shape and out.dtype == dtype and out.flags.c_contiguous \
            and out.flags.writeable:
        return out
    return np.empty(shape, dtype=dtype)


def relu_forward(x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """``max(x, 0)`` (NaN kept) into ``out`` (may be ``x`` itself)."""
    y = _writable_like(out, x.shape, x.dtype)
    _core.relu_fwd(_DTYPE_CODE[x.dtype], x, y, get_num_threads())
    return y


def relu_backward(grad: np.ndarray, y: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """``grad`` where the forward output ``y`` is positive, else 0 (``out`` may be ``grad``)."""
    gx = _writable_like(out, grad.shape, grad.dtype)
    _core.relu_bwd(_DTYPE_CODE[grad.dtype], grad, y, gx, get_num_threads())
    return gx


def maxpool_forward(x: np.ndarray, pool: Tuple[int, int], strides: Tuple[int, int],
                    pads: Tuple[int, int, int, int], out_hw: Tuple[int, int],
                    out: Optional[np.ndarray] = None,
                    argmax: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Max pooling of NCHW ``x``; returns ``(y, argmax)`` (argmax: int32 flat index per output)."""
    n, c, h, w = x.shape
    oh, ow = out_hw
    y = _writable_like(out, (n, c, oh, ow), x.dtype)
    arg = _writable_like(argmax, (n, c, oh, ow), np.dtype(np.int32))
    _core.maxpool_fwd(_DTYPE_CODE[x.dtype], x.reshape(n * c, h, w), y.reshape(n * c, oh, ow),
                      arg.reshape(n * c, oh, ow), pool[0], pool[1], strides[0], strides[1],
                      pads[0], pads[2], get_num_threads())
    return y, arg


def maxpool_backward(grad: np.ndarray, argmax: np.ndarray, x_shape: Tuple[int, int, int, int],
                     out: Optional[np.ndarray] = None) -> np.ndarray:
    """Each window's gradient routed to its (first) maximum; zeros elsewhere."""
    n, c, h, w = x_shape
    oh, ow = grad.shape[2:]
    gx = _writable_like(out, tuple(x_shape), grad.dtype)
    _core.maxpool_bwd(_DTYPE_CODE[grad.dtype], argmax.reshape(n * c, oh, ow), grad.reshape(n * c, oh, ow),
                      gx.reshape(n * c, h, w), get_num_threads())
    return gx


def dropout(x: np.ndarray, rate: float, key: int, backward: bool = False,
            out: Optional[np.ndarray] = None) -> np.ndarray:
    """Inverted dropout with the mask of ``key`` (the same in the backward pass)."""
    y = _writable_like(out, x.shape, x.dtype)
    _core.dropout(_DTYPE_CODE[x.dtype], x, y, float(rate), int(key), get_num_threads(), backward)
    return y


def adam_update(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, lr_t: float,
                beta_1: float, beta_2: float, epsilon: float) -> None:
    """One fused Adam step on ``p`` (and its moments ``m``, ``v``), in place."""
    _core.adam_update(_DTYPE_CODE[p.dtype], p, g, m, v, float(lr_t), float(beta_1), float(beta_2),
                      float(epsilon), get_num_threads())


def gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray, trans_a: bool = False, trans_b: bool = False,
         accumulate: bool = False) -> np.ndarray:
    """``out = op(a) @ op(b)`` (``+= `` when ``accumulate``) on fastconv's own GEMM and team."""
    return _core.gemm(a, b, out, trans_a=trans_a, trans_b=trans_b, beta=1 if accumulate else 0,
                      nthreads=get_num_threads())
