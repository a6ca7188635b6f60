"""Transposed 2-D convolution (PyTorch's ``conv_transpose2d``) on fastconv's kernels.

A transposed convolution is the input gradient of a convolution: ``conv_transpose2d(x, w)``
is ``conv2d_input_grad(x, w, out_shape)`` for the convolution that maps ``out_shape`` back
to ``x``'s shape. Its gradients are the other two passes of that convolution: w.r.t. ``x``
its forward (``conv2d(grad_output, w)``), w.r.t. ``w`` its weight gradient with the roles
of input and output swapped. Nothing here has kernels of its own.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ._spec import IntPair, as_array, as_pair, check_ndim, result_dtype

__all__ = ["conv_transpose2d", "conv_transpose2d_backward", "transposed_geometry"]

_IN = "(N, C_in, H, W)"
_WT = "(C_in, C_out/groups, kh, kw)"


def transposed_geometry(in_hw: Tuple[int, int], kernel: Tuple[int, int], stride: IntPair = 1,
                        padding: IntPair = 0, output_padding: IntPair = 0,
                        dilation: IntPair = 1) -> Tuple[Tuple[int, int], Tuple[int, int], tuple]:
    """Output size and the equivalent convolution of a PyTorch-style transposed convolution.

    Parameters
    ----------
    in_hw : (H, W)
        Spatial size of the transposed convolution's input.
    kernel : (kh, kw)
    stride, padding, output_padding, dilation : int or (int, int)
        As ``torch.nn.functional.conv_transpose2d``; ``output_padding`` must be smaller
        than the stride or the dilation (per axis).

    Returns
    -------
    out_hw : (H_out, W_out)
        ``(H - 1) * stride - 2 * padding + dilation * (kh - 1) + output_padding + 1``.
    core_hw : (int, int)
        The leading rows/columns of the output that some input pixel reaches; the rest
        (only when ``output_padding > padding``) are zero before the bias.
    conv_padding : ((top, bottom), (left, right))
        The padding of the convolution from ``core_hw`` back to ``in_hw``.
    """
    s = as_pair(stride, "stride", 1)
    p = as_pair(padding, "padding", 0)
    op = as_pair(output_padding, "output_padding", 0)
    d = as_pair(dilation, "dilation", 1)
    out, core, pads = [], [], []
    for axis in range(2):
        if op[axis] >= max(s[axis], d[axis]):
            raise ValueError(f"output_padding must be smaller than the stride or the dilation "
                             f"(per axis), got output_padding={output_padding!r} with stride={stride!r} "
                             f"and dilation={dilation!r}")
        size = (in_hw[axis] - 1) * s[axis] - 2 * p[axis] + d[axis] * (kernel[axis] - 1) + op[axis] + 1
        if size < 1:
            raise ValueError(f"the output of conv_transpose2d would have size {size} < 1 along "
                             f"{'HW'[axis]} (input {in_hw[axis]}, kernel {kernel[axis]}, stride {s[axis]}, "
                             f"padding {p[axis]}, dilation {d[axis]}); use less padding")
        bottom = p[axis] - op[axis]  # the output_padding rows come off the conv's bottom padding
        out.append(size)
        core.append(size + min(bottom, 0))  # rows past the last window: no input reaches them
        pads.append((p[axis], max(bottom, 0)))
    return (out[0], out[1]), (core[0], core[1]), (pads[0], pads[1])


def _prepare(x, weight, groups, name_x="x"):
    x, weight = as_array(x, name_x), as_array(weight, "weight")
    check_ndim(x, name_x, 4, _IN)
    check_ndim(weight, "weight", 4, _WT)
    if isinstance(groups, (bool, np.bool_)) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    if x.shape[1] != weight.shape[0]:
        raise ValueError(f"weight.shape[0] must be the input channels C_in={x.shape[1]} "
                         f"(weight is {_WT}), got weight shape {weight.shape}")
    return x, weight


def conv_transpose2d(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray] = None,
                     stride: IntPair = 1, padding: IntPair = 0, output_padding: IntPair = 0,
                     groups: int = 1, dilation: IntPair = 1, *, algorithm: str = "auto") -> np.ndarray:
    """2-D transposed convolution, as ``torch.nn.functional.conv_transpose2d``.

    The adjoint of ``conv2d`` with the same ``stride``, ``padding``, ``dilation`` and
    ``groups``: every input pixel scatters ``weight`` (scaled by its value) into the output.

    Parameters
    ----------
    x : array_like, shape (N, C_in, H, W)
    weight : array_like, shape (C_in, C_out/groups, kh, kw)
        PyTorch's ``ConvTranspose2d.weight`` layout.
    bias : array_like, shape (C_out,), optional
    stride, dilation : int or (int, int)
    padding : int or (int, int)
        Removed from both sides of the full output (symmetric, as in PyTorch).
    output_padding : int or (int, int)
        Extra rows/columns added at the bottom/right; must be smaller than the stride or
        the dilation.
    groups : int
    algorithm : {"auto", "direct", "im2col"}

    Returns
    -------
    ndarray, shape (N, C_out, H_out, W_out)
        ``H_out = (H - 1) * stride - 2 * padding + dilation * (kh - 1) + output_padding + 1``.

    Raises
    ------
    ValueError, TypeError
        On bad shapes or options (``output_padding`` too large), naming the argument.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.ones((1, 2, 4, 4), np.float32)
    >>> w = np.ones((2, 3, 3, 3), np.float32)
    >>> fastconv.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1).shape
    (1, 3, 8, 8)
    """
    from . import functional

    x, weight = _prepare(x, weight, groups)
    operands = {"x": x, "weight": weight}
    if bias is not None:
        bias = as_array(bias, "bias")
        operands["bias"] = bias
    dtype = result_dtype(**operands)
    c_out = weight.shape[1] * int(groups)
    if x.shape[1] % groups:
        raise ValueError(f"groups={groups} must divide the input channels C_in={x.shape[1]}")
    if bias is not None and bias.shape != (c_out,):
        raise ValueError(f"bias must have shape (C_out,) = ({c_out},), got {bias.shape}")
    out_hw, core_hw, pads = transposed_geometry(x.shape[2:], weight.shape[2:], stride, padding,
                                                output_padding, dilation)
    if min(core_hw) < 1:  # output_padding > padding on a 1-pixel-wide result: no input reaches it
        core = np.zeros((x.shape[0], c_out, max(core_hw[0], 0), max(core_hw[1], 0)), dtype=dtype)
    else:
        core = functional.conv2d_input_grad(x, weight, (x.shape[0], c_out, *core_hw), stride, pads, dilation,
                                            groups, algorithm=algorithm).astype(dtype, copy=False)
    if core_hw != out_hw:
        y = np.zeros((x.shape[0], c_out, *out_hw), dtype=dtype)
        y[:, :, :core_hw[0], :core_hw[1]] = core
    else:
        y = core
    if bias is not None:
        y += bias.astype(dtype, copy=False).reshape(1, -1, 1, 1)
    return y


def conv_transpose2d_backward(grad_output: np.ndarray, x: np.ndarray, weight: np.ndarray,
                              stride: IntPair = 1, padding: IntPair = 0, output_padding: IntPair = 0,
                              groups: int = 1, dilation: IntPair = 1, *, bias: bool = True,
                              algorithm: str = "auto") -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Gradients of :func:`conv_transpose2d` w.r.t. its input, weight and bias.

    Parameters
    ----------
    grad_output : array_like, shape (N, C_out, H_out, W_out)
    x, weight, stride, padding, output_padding, groups, dilation
        The arguments of the forward call.
    bias : bool
        Whether the forward call had a bias (then its gradient is returned).
    algorithm : {"auto", "direct", "im2col"}

    Returns
    -------
    grad_x : ndarray, shape of ``x``
        ``conv2d(grad_output, weight)`` with the same stride, padding, dilation, groups.
    grad_weight : ndarray, shape of ``weight``
    grad_bias : ndarray of shape (C_out,), or None when ``bias`` is False
    """
    from . import functional

    x, weight = _prepare(x, weight, groups)
    gy = as_array(grad_output, "grad_output")
    check_ndim(gy, "grad_output", 4, "(N, C_out, H_out, W_out)")
    dtype = result_dtype(grad_output=gy, x=x, weight=weight)
    out_hw, core_hw, pads = transposed_geometry(x.shape[2:], weight.shape[2:], stride, padding,
                                                output_padding, dilation)
    expected = (x.shape[0], weight.shape[1] * int(groups), *out_hw)
    if gy.shape != expected:
        raise ValueError(f"grad_output must have the output's shape {expected}, got {gy.shape}")
    gb = gy.astype(dtype, copy=False).sum(axis=(0, 2, 3)) if bias else None
    if min(core_hw) < 1:  # no input reaches the output (see conv_transpose2d)
        return np.zeros(x.shape, dtype), np.zeros(weight.shape, dtype), gb
    gy_core = gy[:, :, :core_hw[0], :core_hw[1]]
    gx = functional.conv2d(gy_core, weight, None, stride, pads, dilation, groups, algorithm=algorithm)
    gw = functional.conv2d_weight_grad(x, gy_core, weight.shape, stride, pads, dilation, groups,
                                       algorithm=algorithm)
    return gx.astype(dtype, copy=False), gw.astype(dtype, copy=False), gb
