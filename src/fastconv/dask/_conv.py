"""``conv2d`` and ``conv2d_backward`` on dask arrays chunked along N, H and W.

Layout of the graph (see ``_halo.py`` for the index arithmetic):

forward
    ``x`` (C in one chunk, spatial chunks >= the halo) -> ``dask.array.overlap`` with a
    one-sided halo of ``(k-1)*dilation`` pixels on H and W -> one ``map_blocks`` task per
    block calling ``fastconv.conv2d`` on its input slice with that block's explicit
    padding. Output chunks: the batch chunks of ``x``, C_out whole, the input chunk
    boundaries divided by the stride (rounded up).
input gradient
    per block, ``fastconv.conv2d_input_grad`` of the block's grad_output rows on the
    block's overlapped region; the halo parts are added into the next chunk
    (an ``overlap`` of depth (halo, 0), then a sum), along H then W.
weight and bias gradient
    per block, ``fastconv.conv2d_weight_grad`` and the sum of grad_output over N, H, W,
    packed in one vector; ``dask.array.sum`` with ``split_every`` sums the vectors in a
    tree of fixed shape over the blocks in index order, so a fixed chunking gives the
    same bits under every scheduler.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Tuple

import numpy as np

from .. import functional as F
from .._spec import ConvSpec, IntPair, Padding, as_array, check_ndim, make_spec, result_dtype
from ._halo import AxisPiece, AxisPlan, min_chunk_violations, plan_axis
from ._threads import task_threads

__all__ = ["conv2d", "conv2d_backward", "is_dask_array", "require_dask_array"]


def is_dask_array(a: Any) -> bool:
    """True for a dask collection with chunks (a ``dask.array.Array``), without importing dask."""
    return hasattr(a, "__dask_graph__") and hasattr(a, "chunks")


def require_dask_array(a: Any, name: str, ndim: int, layout: str):
    """``a`` checked to be a dask array of ``ndim`` dimensions with known chunk sizes."""
    if not is_dask_array(a):
        raise TypeError(f"{name} must be a dask.array.Array {layout}, got {type(a).__module__}.{type(a).__name__}; "
                        f"wrap NumPy data with dask.array.from_array({name}, chunks=...) or call the "
                        "in-memory fastconv function instead")
    if a.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D dask array {layout}, got shape {a.shape}")
    if any(isinstance(c, float) and math.isnan(c) for dim in a.chunks for c in dim):
        raise ValueError(f"{name} has unknown (NaN) chunk sizes {a.chunks}; call {name}.compute_chunk_sizes() "
                         "(or build it with known chunks) first")
    return a


def _small(a: Any, name: str) -> np.ndarray:
    """A weight/bias operand: an in-memory array (these are small and go into every task)."""
    if is_dask_array(a):
        raise TypeError(f"{name} must be a NumPy array (it is sent whole to every task), got a dask array; "
                        f"call {name}.compute() first")
    return as_array(a, name)


def _prepare(x, spec: ConvSpec, rechunk: bool, name: str = "x"):
    """``x`` with C in one chunk and every spatial chunk >= the halo, rechunking if allowed."""
    from dask.array.overlap import ensure_minimum_chunksize

    chunks = list(x.chunks)
    if len(chunks[1]) > 1:
        if not rechunk:
            raise ValueError(f"{name} is chunked along C {chunks[1]}; each task needs every channel: "
                             "pass rechunk=True or rechunk it to one chunk along axis 1")
        chunks[1] = (x.shape[1],)
    for axis, k, d in ((2, spec.kh, spec.dilation[0]), (3, spec.kw, spec.dilation[1])):
        halo = (k - 1) * d
        if min_chunk_violations(chunks[axis], halo):
            if not rechunk:
                raise ValueError(f"{name} has chunks {chunks[axis]} along axis {axis}, some smaller than the "
                                 f"halo of {halo} pixels ((kernel-1)*dilation); pass rechunk=True or "
                                 f"rechunk to chunks of at least {halo}")
            chunks[axis] = ensure_minimum_chunksize(halo, chunks[axis])
    wanted = tuple(tuple(c) for c in chunks)
    return x if wanted == x.chunks else x.rechunk(wanted)


def _plans(x, spec: ConvSpec) -> Tuple[AxisPlan, AxisPlan]:
    t, b, l, r = spec.padding
    return (plan_axis(spec.h, x.chunks[2], spec.kh, spec.stride[0], spec.dilation[0], t, b),
            plan_axis(spec.w, x.chunks[3], spec.kw, spec.stride[1], spec.dilation[1], l, r))


def _overlapped(x, ph: AxisPlan, pw: AxisPlan):
    """Each block extended by the first ``halo`` pixels of the next chunk along H and W.

    An axis of one chunk needs no halo (the plan's block is the whole axis).
    """
    dh = ph.halo if len(ph.in_chunks) > 1 else 0
    dw = pw.halo if len(pw.in_chunks) > 1 else 0
    if dh == 0 and dw == 0:
        return x
    from dask.array.overlap import overlap
    return overlap(x, depth={0: 0, 1: 0, 2: (0, dh), 3: (0, dw)}, boundary="none")


def _sub_input(xb: np.ndarray, ph: AxisPiece, pw: AxisPiece):
    """The block's input slice and explicit padding; zeros of the window when it reads only padding."""
    if ph.reads_image and pw.reads_image:
        return xb[:, :, ph.local, pw.local], (ph.pads, pw.pads)
    shape = (xb.shape[0], xb.shape[1], ph.window_stop - ph.window_start, pw.window_stop - pw.window_start)
    return np.zeros(shape, xb.dtype), ((0, 0), (0, 0))


# ----------------------------------------------------------------------------- block tasks

def _forward_block(xb, weight, bias, *, plans, conv, algorithm, activation, threads_per_task, out_dtype,
                   block_id=None):
    ph, pw = plans[0].pieces[block_id[2]], plans[1].pieces[block_id[3]]
    if ph.n_out == 0 or pw.n_out == 0 or xb.shape[0] == 0:
        return np.zeros((xb.shape[0], weight.shape[0], ph.n_out, pw.n_out), out_dtype)
    sub, pads = _sub_input(xb, ph, pw)
    with task_threads(threads_per_task):
        return F.conv2d(sub, weight, bias, conv[0], pads, conv[1], conv[2], algorithm=algorithm,
                        activation=activation)


def _relu_mask_block(gb, xb):
    """grad where x > 0, else 0: the ReLU's backward (as fastconv's)."""
    return np.where(xb > 0, gb, np.zeros((), gb.dtype))


def _input_grad_block(gyb, weight, *, plans, conv, algorithm, threads_per_task, c_in, out_dtype, block_id=None):
    ph, pw = plans[0].pieces[block_id[2]], plans[1].pieces[block_id[3]]
    n = gyb.shape[0]
    z = np.zeros((n, c_in, ph.block_len, pw.block_len), out_dtype)
    if n and ph.reads_image and pw.reads_image:
        shape = (n, c_in, ph.in_stop - ph.in_start, pw.in_stop - pw.in_start)
        with task_threads(threads_per_task):
            z[:, :, ph.local, pw.local] = F.conv2d_input_grad(gyb, weight, shape, conv[0], (ph.pads, pw.pads),
                                                              conv[1], conv[2], algorithm=algorithm)
    return z


def _fold_block(zb, *, axis, halo, own_chunks, block_id=None):
    """Own chunk plus the halo the previous block computed for it (zb = [prev tail, own block])."""
    j = block_id[axis]
    c = own_chunks[j]
    idx = [slice(None)] * zb.ndim
    if j == 0:
        idx[axis] = slice(0, c)
        return zb[tuple(idx)].copy()
    idx[axis] = slice(halo, halo + c)
    own = zb[tuple(idx)].copy()
    idx[axis] = slice(0, halo)
    tail = zb[tuple(idx)]
    idx[axis] = slice(0, halo)
    own[tuple(idx)] += tail
    return own


def _weight_grad_block(gyb, xb, *, plans, conv, algorithm, threads_per_task, weight_shape, out_dtype, block_id=None):
    ph, pw = plans[0].pieces[block_id[1]], plans[1].pieces[block_id[2]]
    size = math.prod(weight_shape)
    packed = np.zeros((1, 1, 1, size + weight_shape[0]), out_dtype)
    if gyb.shape[0] and ph.reads_image and pw.reads_image:
        sub, pads = xb[:, :, ph.local, pw.local], (ph.pads, pw.pads)
        with task_threads(threads_per_task):
            gw = F.conv2d_weight_grad(gyb, sub, weight_shape, conv[0], pads, conv[1], conv[2], algorithm=algorithm)
        packed[0, 0, 0, :size] = gw.ravel()
    packed[0, 0, 0, size:] = gyb.sum(axis=(0, 2, 3), dtype=out_dtype)
    return packed


# ----------------------------------------------------------------------------- public

def _setup(x, weight, bias, stride, padding, dilation, groups, rechunk, extra_dtypes=None):
    x = require_dask_array(x, "x", 4, "(N, C_in, H, W)")
    weight = _small(weight, "weight")
    operands = {"x": x, "weight": weight}
    if bias is not None:
        bias = _small(bias, "bias")
        operands["bias"] = bias
    operands.update(extra_dtypes or {})
    dtype = result_dtype(**operands)
    check_ndim(weight, "weight", 4, "(C_out, C_in/groups, kh, kw)")
    spec = make_spec(x.shape, weight.shape, stride, padding, dilation, groups, dtype)
    if bias is not None and bias.shape != (spec.c_out,):
        raise ValueError(f"bias must have shape (C_out,) = ({spec.c_out},), got {bias.shape}")
    x = _prepare(x, spec, rechunk)
    return x, weight, bias, spec, _plans(x, spec)


def conv2d(x, weight: np.ndarray, bias: Optional[np.ndarray] = None, stride: IntPair = 1, padding: Padding = 0,
           dilation: IntPair = 1, groups: int = 1, *, algorithm: str = "auto", rechunk: bool = True,
           threads_per_task: Optional[int] = None, activation: Optional[str] = None):
    """``fastconv.conv2d`` of a dask array chunked along N, H and W; lazy.

    Parameters
    ----------
    x : dask.array.Array, shape (N, C_in, H, W)
        Any chunking along N, H and W with known chunk sizes. C is brought to one chunk.
    weight : ndarray, shape (C_out, C_in/groups, kh, kw)
        In memory (sent whole to every task).
    bias : ndarray, shape (C_out,), optional
    stride, padding, dilation, groups, algorithm, activation
        As for :func:`fastconv.conv2d`, including "same" and asymmetric padding; the
        padding is applied at the image border only.
    rechunk : bool, default True
        Allow bringing C to one chunk and spatial chunks up to the halo
        ``(k-1)*dilation``; with False such inputs raise ``ValueError``.
    threads_per_task : int, optional
        fastconv threads per task; default: see ``fastconv.dask._threads``.

    Returns
    -------
    dask.array.Array, shape (N, C_out, H_out, W_out)
        Chunks: x's batch chunks, C_out whole, and spatial chunks aligned to the stride
        (``ceil(input chunk boundary + pad_before) / stride``; some may be empty).
        Each chunk is computed by one ``fastconv.conv2d`` call; with an explicit
        ``algorithm`` it is bitwise equal to the in-memory call.

    Raises
    ------
    TypeError
        When ``x`` is not a dask array or ``weight``/``bias`` are.
    ValueError
        Unknown chunk sizes, chunks smaller than the halo with ``rechunk=False``, a
        kernel larger than the padded image, and every error of ``fastconv.conv2d``.
    """
    F._algorithm_code(algorithm)
    F._post_op(activation)  # its ValueError now, not in a task
    x, weight, bias, spec, plans = _setup(x, weight, bias, stride, padding, dilation, groups, rechunk)
    xo = _overlapped(x, *plans)
    chunks = (x.chunks[0], (spec.c_out,), plans[0].out_chunks, plans[1].out_chunks)
    return xo.map_blocks(
        _forward_block, weight, bias, plans=plans, conv=(spec.stride, spec.dilation, spec.groups),
        algorithm=algorithm, activation=activation, threads_per_task=threads_per_task, out_dtype=spec.dtype,
        dtype=spec.dtype, chunks=chunks, meta=np.empty((0, 0, 0, 0), spec.dtype), token="fastconv-conv2d")


def conv2d_backward(grad_output, x, weight: np.ndarray, stride: IntPair = 1, padding: Padding = 0,
                    dilation: IntPair = 1, groups: int = 1, *, bias: bool = True, algorithm: str = "auto",
                    rechunk: bool = True, split_every: Optional[int] = 4,
                    threads_per_task: Optional[int] = None, through_relu: bool = False):
    """Gradients of :func:`conv2d` for dask arrays: ``(grad_x, grad_weight, grad_bias)``, lazy.

    Parameters
    ----------
    grad_output : dask.array.Array or ndarray, shape (N, C_out, H_out, W_out)
        Any chunking; it is rechunked to the forward's output chunks.
    x : dask.array.Array, shape (N, C_in, H, W)
    weight : ndarray
    stride, padding, dilation, groups, bias, algorithm, rechunk, threads_per_task
        As for :func:`conv2d` and :func:`fastconv.conv2d_backward`.
    split_every : int, optional
        Fan-in of the tree that sums the per-chunk weight and bias gradients
        (``dask.array.sum``'s ``split_every``); the tree's shape depends only on the
        chunking, so the result does not depend on the scheduler.
    through_relu : bool, default False
        As for :func:`fastconv.conv2d_backward`: ``x`` is a ReLU's output and ``grad_x``
        is returned through it. Applied per chunk after the halos are summed (a chunk's
        input gradient is complete only then), so not in the kernels' store.

    Returns
    -------
    grad_x : dask.array.Array
        Chunked like ``x``.
    grad_weight : dask.array.Array, shape of ``weight`` (one chunk)
    grad_bias : dask.array.Array of shape (C_out,), or None when ``bias`` is False
    """
    F._algorithm_code(algorithm)
    F._check_flag(bias, "bias", "whether the forward had a bias, whose gradient is then returned; "
                                "conv2d_backward does not need the bias array")
    F._check_flag(through_relu, "through_relu", "whether y was ReLU'd in the forward")
    import dask.array as da

    gy_dtype = {"grad_output": grad_output} if hasattr(grad_output, "dtype") else {}
    original_chunks = x.chunks if is_dask_array(x) else None
    x, weight, _, spec, plans = _setup(x, weight, None, stride, padding, dilation, groups, rechunk, gy_dtype)
    if is_dask_array(grad_output):
        gy = require_dask_array(grad_output, "grad_output", 4, "(N, C_out, H_out, W_out)")
    else:
        gy = as_array(grad_output, "grad_output")
        check_ndim(gy, "grad_output", 4, "(N, C_out, H_out, W_out)")
    if tuple(gy.shape) != spec.output_shape:
        raise ValueError(f"grad_output must have the output's shape {spec.output_shape}, got {tuple(gy.shape)}")
    out_chunks = (x.chunks[0], (spec.c_out,), plans[0].out_chunks, plans[1].out_chunks)
    gy = gy.rechunk(out_chunks) if is_dask_array(gy) else da.from_array(gy, chunks=out_chunks)
    conv = (spec.stride, spec.dilation, spec.groups)
    common = dict(plans=plans, conv=conv, algorithm=algorithm, threads_per_task=threads_per_task, out_dtype=spec.dtype)
    meta4 = np.empty((0, 0, 0, 0), spec.dtype)

    # input gradient: per block on its overlapped region, then the halos folded back
    z = gy.map_blocks(_input_grad_block, weight, c_in=spec.c_in, **common,
                      chunks=(x.chunks[0], (spec.c_in,), plans[0].block_lens, plans[1].block_lens),
                      dtype=spec.dtype, meta=meta4, token="fastconv-input-grad")
    for axis, plan in ((2, plans[0]), (3, plans[1])):
        if plan.halo == 0 or len(plan.in_chunks) == 1:
            continue
        from dask.array.overlap import overlap
        zo = overlap(z, depth={0: 0, 1: 0, 2: 0, 3: 0, axis: (plan.halo, 0)}, boundary="none")
        chunks = list(z.chunks)
        chunks[axis] = plan.in_chunks
        z = zo.map_blocks(_fold_block, axis=axis, halo=plan.halo, own_chunks=plan.in_chunks,
                          chunks=tuple(chunks), dtype=spec.dtype, meta=meta4, token="fastconv-fold-halo")
    if through_relu:  # on the folded (complete) chunks, which x's chunks match
        z = da.map_blocks(_relu_mask_block, z, x.rechunk(z.chunks), dtype=spec.dtype, meta=meta4,
                          token="fastconv-through-relu")
    grad_x = z if z.chunks == original_chunks else z.rechunk(original_chunks)

    # weight and bias gradients: one packed vector per block, summed by a fixed tree
    wshape = spec.weight_shape
    size = math.prod(wshape)
    xo = _overlapped(x, *plans)
    nb = (len(x.chunks[0]), len(plans[0].in_chunks), len(plans[1].in_chunks))
    packed = da.map_blocks(
        _weight_grad_block, gy, xo, weight_shape=wshape, **common, drop_axis=1, new_axis=3,
        chunks=((1,) * nb[0], (1,) * nb[1], (1,) * nb[2], (size + spec.c_out,)), dtype=spec.dtype,
        meta=np.empty((0, 0, 0, 0), spec.dtype), token="fastconv-weight-grad")
    total = packed.sum(axis=(0, 1, 2), split_every=split_every, dtype=spec.dtype)
    grad_weight = total[:size].reshape(wshape)
    grad_bias = total[size:] if bias else None
    return grad_x, grad_weight, grad_bias
