"""Pure-NumPy reference 2D convolution: the oracle every fastconv test compares against.

This module is written straight from the definition and favours being obviously
right over being fast. It imports nothing but NumPy (not even the rest of the
package), so it can be read and trusted on its own.

Definition (PyTorch's ``conv2d``: cross-correlation, NCHW, weight
``(C_out, C_in/groups, kh, kw)``)::

    y[n, k, i, j] = b[k] + sum_{c, l, m} w[k, c, l, m]
                           * x[n, g*Cg + c, i*sh + l*dh - pad_top, j*sw + m*dw - pad_left]

with ``g = k // (C_out/groups)``, ``Cg = C_in/groups``, ``c < Cg``, ``l < kh``,
``m < kw``; reads of ``x`` outside the image are zero. For explicit padding the
output size is ``floor((in + pad_lo + pad_hi - dilation*(k-1) - 1) / stride) + 1``.
``padding="same"`` follows TensorFlow/Keras for every stride: ``out = ceil(in/stride)``,
total padding ``max((out-1)*stride + (k-1)*dilation + 1 - in, 0)``, of which
``total // 2`` goes top/left and the rest (the odd pixel) bottom/right.

Implementation: pad ``x`` with zeros, then for every kernel tap ``(l, m)`` the
pixels it reads form one strided slice of the padded input,
``xp[:, :, l*dh + i*sh, m*dw + j*sw]`` over all outputs ``(i, j)``. The forward
pass sums ``w[:, :, l, m] @ slice`` over taps; the input gradient adds
``w[:, :, l, m].T @ grad_y`` back into the same slices; the weight gradient is
``grad_y @ slice.T``. Only the loop over taps runs in Python.

dtypes: float32 and float64 are computed in their own precision; integer and
bool inputs, and mixed float32/float64, are computed in float64.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["conv2d", "conv2d_backward", "conv2d_input_grad", "conv2d_weight_grad"]

IntOrPair = Union[int, Tuple[int, int]]
Padding = Union[str, int, Tuple[int, int], Tuple[Tuple[int, int], Tuple[int, int]]]


# --------------------------------------------------------------------------- helpers

def _pair(v) -> Tuple[int, int]:
    """``3 -> (3, 3)``; ``(2, 3) -> (2, 3)``."""
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


def _pads_and_shape(in_hw, k_hw, stride, padding, dilation):
    """Resolve stride, dilation and padding to pairs / 4 pads and the output size.

    Returns ``((sh, sw), (dh, dw), (top, bottom, left, right), (OH, OW))``.
    No heavy validation: the reference assumes valid arguments, but nonsense
    that would silently give a wrong answer raises ValueError.
    """
    (H, W), (KH, KW) = in_hw, k_hw
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    if min(sh, sw, dh, dw) < 1:
        raise ValueError("stride and dilation must be >= 1")
    if isinstance(padding, str):
        if padding == "valid":
            pads = (0, 0, 0, 0)
        elif padding == "same":  # TensorFlow/Keras, any stride
            pads = ()
            for n, k, s, d in ((H, KH, sh, dh), (W, KW, sw, dw)):
                out = -(-n // s)  # ceil(n / s)
                total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
                pads += (total // 2, total - total // 2)
        else:
            raise ValueError(f"padding string must be 'valid' or 'same', got {padding!r}")
    elif isinstance(padding, (int, np.integer)):
        pads = (int(padding),) * 4
    else:
        ph, pw = padding  # (ph, pw) or ((top, bottom), (left, right))
        pads = (*_pair(ph), *_pair(pw))
    if min(pads) < 0:
        raise ValueError("padding must be >= 0")
    top, bottom, left, right = pads
    OH = (H + top + bottom - dh * (KH - 1) - 1) // sh + 1
    OW = (W + left + right - dw * (KW - 1) - 1) // sw + 1
    if OH < 1 or OW < 1:
        raise ValueError("kernel (dilated) is larger than the padded input")
    return (sh, sw), (dh, dw), pads, (OH, OW)


def _compute_dtype(*arrays) -> np.dtype:
    """float32 stays float32, float64 stays float64; ints, bools and mixes -> float64."""
    dt = np.result_type(*[np.asarray(a) for a in arrays if a is not None])
    if dt.kind in "biu":
        return np.dtype(np.float64)
    if dt in (np.float32, np.float64):
        return dt
    raise TypeError(f"unsupported dtype {dt}")


def _tap(l: int, m: int, stride, dilation, out_hw):
    """Index of the pixels of the padded input ``xp`` that kernel tap ``(l, m)`` reads
    for all outputs: ``xp[:, :, l*dh + i*sh, m*dw + j*sw]`` for i < OH, j < OW."""
    (sh, sw), (dh, dw), (OH, OW) = stride, dilation, out_hw
    rows = slice(l * dh, l * dh + sh * (OH - 1) + 1, sh)
    cols = slice(m * dw, m * dw + sw * (OW - 1) + 1, sw)
    return (slice(None), slice(None), rows, cols)


def _check_groups(C: int, K: int, Cg: int, groups: int) -> None:
    if groups < 1 or C % groups or K % groups or C // groups != Cg:
        raise ValueError(
            f"channels do not match: C_in={C}, C_out={K}, weight C_in/groups={Cg}, groups={groups}")


# --------------------------------------------------------------------------- forward

def conv2d(x, weight, bias=None, stride: IntOrPair = 1, padding: Padding = 0,
           dilation: IntOrPair = 1, groups: int = 1) -> np.ndarray:
    """2D cross-correlation over an NCHW batch, as ``torch.nn.functional.conv2d``.

    Parameters
    ----------
    x : array_like, shape (N, C_in, H, W)
        Input batch.
    weight : array_like, shape (C_out, C_in // groups, kh, kw)
        Filters.
    bias : array_like, shape (C_out,), optional
        Added to every output pixel of channel ``k``.
    stride : int or (int, int)
        Step between output pixels, (sh, sw).
    padding : int, (ph, pw), ((top, bottom), (left, right)), "valid" or "same"
        Zero padding. ``"same"`` follows TensorFlow/Keras for every stride
        (output ``ceil(in / stride)``, the odd pixel at the bottom/right).
    dilation : int or (int, int)
        Spacing between kernel taps, (dh, dw).
    groups : int
        Input and output channels are split into ``groups`` independent groups.

    Returns
    -------
    y : ndarray, shape (N, C_out, OH, OW)
        float32 if all inputs are float32, else float64.
    """
    dt = _compute_dtype(x, weight, bias)
    x = np.asarray(x, dtype=dt)
    w = np.asarray(weight, dtype=dt)
    N, C, H, W = x.shape
    K, Cg, KH, KW = w.shape
    _check_groups(C, K, Cg, groups)
    G, Kg = groups, K // groups
    s, d, (pt, pb, pl, pr), (OH, OW) = _pads_and_shape((H, W), (KH, KW), stride, padding, dilation)

    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    wg = w.reshape(G, Kg, Cg, KH, KW)
    y = np.zeros((N, G, Kg, OH * OW), dtype=dt)
    for l in range(KH):
        for m in range(KW):
            xs = xp[_tap(l, m, s, d, (OH, OW))].reshape(N, G, Cg, OH * OW)
            y += wg[:, :, :, l, m] @ xs            # (G,Kg,Cg) @ (N,G,Cg,P) -> (N,G,Kg,P)
    y = y.reshape(N, K, OH, OW)
    if bias is not None:
        y += np.asarray(bias, dtype=dt).reshape(1, K, 1, 1)
    return y


# --------------------------------------------------------------------------- gradients

def conv2d_input_grad(grad_output, weight, input_shape: Sequence[int], stride: IntOrPair = 1,
                      padding: Padding = 0, dilation: IntOrPair = 1,
                      groups: int = 1) -> np.ndarray:
    """Gradient of ``sum(conv2d(x, weight, ...) * grad_output)`` with respect to ``x``.

    Parameters
    ----------
    grad_output : array_like, shape (N, C_out, OH, OW)
        Gradient of the loss with respect to the forward output.
    weight : array_like, shape (C_out, C_in // groups, kh, kw)
        Filters used in the forward pass.
    input_shape : sequence of 4 ints
        ``(N, C_in, H, W)``, the shape of the forward input.
    stride, padding, dilation, groups
        As in :func:`conv2d`.

    Returns
    -------
    grad_x : ndarray, shape ``input_shape``
        Each output gradient is spread back onto the input pixels it read
        (pixels read by no output, e.g. trailing rows a stride skips, get 0).
    """
    dt = _compute_dtype(grad_output, weight)
    gy = np.asarray(grad_output, dtype=dt)
    w = np.asarray(weight, dtype=dt)
    N, C, H, W = (int(v) for v in input_shape)
    K, Cg, KH, KW = w.shape
    _check_groups(C, K, Cg, groups)
    G, Kg = groups, K // groups
    s, d, (pt, pb, pl, pr), (OH, OW) = _pads_and_shape((H, W), (KH, KW), stride, padding, dilation)
    if gy.shape != (N, K, OH, OW):
        raise ValueError(f"grad_output has shape {gy.shape}, expected {(N, K, OH, OW)}")

    gxp = np.zeros((N, C, H + pt + pb, W + pl + pr), dtype=dt)
    gyg = gy.reshape(N, G, Kg, OH * OW)
    wt = w.reshape(G, Kg, Cg, KH, KW).transpose(0, 2, 1, 3, 4)  # (G, Cg, Kg, kh, kw)
    for l in range(KH):
        for m in range(KW):
            contrib = wt[:, :, :, l, m] @ gyg       # (G,Cg,Kg) @ (N,G,Kg,P) -> (N,G,Cg,P)
            gxp[_tap(l, m, s, d, (OH, OW))] += contrib.reshape(N, C, OH, OW)
    return np.ascontiguousarray(gxp[:, :, pt:pt + H, pl:pl + W])


def conv2d_weight_grad(grad_output, x, weight_shape: Sequence[int], stride: IntOrPair = 1,
                       padding: Padding = 0, dilation: IntOrPair = 1,
                       groups: int = 1) -> np.ndarray:
    """Gradient of ``sum(conv2d(x, weight, ...) * grad_output)`` with respect to ``weight``.

    Parameters
    ----------
    grad_output : array_like, shape (N, C_out, OH, OW)
        Gradient of the loss with respect to the forward output.
    x : array_like, shape (N, C_in, H, W)
        Input of the forward pass.
    weight_shape : sequence of 4 ints
        ``(C_out, C_in // groups, kh, kw)``, the shape of the filters.
    stride, padding, dilation, groups
        As in :func:`conv2d`.

    Returns
    -------
    grad_weight : ndarray, shape ``weight_shape``
        ``grad_weight[k, c, l, m] = sum_{n,i,j} grad_output[n,k,i,j] * x[n, g*Cg + c,
        i*sh + l*dh - pad_top, j*sw + m*dw - pad_left]``.
    """
    dt = _compute_dtype(grad_output, x)
    gy = np.asarray(grad_output, dtype=dt)
    x = np.asarray(x, dtype=dt)
    N, C, H, W = x.shape
    K, Cg, KH, KW = (int(v) for v in weight_shape)
    _check_groups(C, K, Cg, groups)
    G, Kg = groups, K // groups
    s, d, (pt, pb, pl, pr), (OH, OW) = _pads_and_shape((H, W), (KH, KW), stride, padding, dilation)
    if gy.shape != (N, K, OH, OW):
        raise ValueError(f"grad_output has shape {gy.shape}, expected {(N, K, OH, OW)}")

    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    gyg = gy.reshape(N, G, Kg, OH * OW)
    gw = np.zeros((G, Kg, Cg, KH, KW), dtype=dt)
    for l in range(KH):
        for m in range(KW):
            xs = xp[_tap(l, m, s, d, (OH, OW))].reshape(N, G, Cg, OH * OW)
            gw[:, :, :, l, m] = np.einsum("ngkp,ngcp->gkc", gyg, xs)
    return gw.reshape(K, Cg, KH, KW)


def conv2d_backward(grad_output, x, weight, stride: IntOrPair = 1, padding: Padding = 0,
                    dilation: IntOrPair = 1, groups: int = 1, *, bias: bool = True
                    ) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """All three gradients of ``sum(conv2d(x, weight, b, ...) * grad_output)``.

    Parameters
    ----------
    grad_output : array_like, shape (N, C_out, OH, OW)
        Gradient of the loss with respect to the forward output.
    x : array_like, shape (N, C_in, H, W)
        Input of the forward pass.
    weight : array_like, shape (C_out, C_in // groups, kh, kw)
        Filters of the forward pass.
    stride, padding, dilation, groups
        As in :func:`conv2d`.
    bias : bool, keyword-only
        Whether the forward pass had a bias; if False, ``grad_bias`` is None.

    Returns
    -------
    grad_x : ndarray, shape of ``x``
    grad_weight : ndarray, shape of ``weight``
    grad_bias : ndarray, shape (C_out,), or None
        ``grad_output`` summed over N, OH and OW.
        All three share one dtype (float32 only if all inputs are float32).
    """
    dt = _compute_dtype(grad_output, x, weight)
    gy = np.asarray(grad_output, dtype=dt)
    x = np.asarray(x, dtype=dt)
    w = np.asarray(weight, dtype=dt)
    args = (stride, padding, dilation, groups)
    grad_x = conv2d_input_grad(gy, w, x.shape, *args)
    grad_w = conv2d_weight_grad(gy, x, w.shape, *args)
    grad_b = gy.sum(axis=(0, 2, 3)) if bias else None
    return grad_x, grad_w, grad_b
