"""Shared test helpers: the error bound of docs/architecture.md, NaN poisoning and memory layouts.

Every expected value comes from ``fastconv.reference`` (pure NumPy, tested on its own in
``test_reference.py``) evaluated in float64, never from the code under test.

The error bound (docs/architecture.md, "How correctness is shown")::

    |y - y_ref| <= c * eps(dtype) * sum |x| * |w|        (per output element)

``sum |x| * |w|`` is the same contraction applied to the absolute values of the operands,
so it is computed by the reference itself on ``|x|``, ``|w|`` (``|grad_output|`` for the
gradients), plus ``|b|`` for the forward pass. Where the bound is 0 (an input pixel no
output reads, an output row made of padding only) the result must be exactly 0 (or the
bias).
"""
from __future__ import annotations

from typing import Iterator, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from fastconv import reference as ref

#: Default constant ``c`` of the bound. Rounding errors of a sum of random-signed terms
#: stay around one eps of ``sum |terms|``; 16 leaves room for the reference's own
#: rounding and a reordered summation while still catching one term missing or doubled.
DEFAULT_C = 16.0

F64 = np.float64


class ConvCase(NamedTuple):
    """One named convolution problem of a test table: NCHW input, C_out, kernel (kh, kw) and
    the conv options (as ``fastconv.conv2d`` takes them)."""

    name: str
    n: int
    c_in: int
    h: int
    w: int
    c_out: int
    k: Tuple[int, int] = (1, 1)
    padding: object = 0
    dilation: object = 1
    groups: int = 1
    stride: object = 1

    @property
    def x_shape(self):
        return (self.n, self.c_in, self.h, self.w)

    @property
    def w_shape(self):
        return (self.c_out, self.c_in // self.groups, *self.k)


def eps(dtype) -> float:
    return float(np.finfo(np.dtype(dtype)).eps)


def _f64(a):
    return None if a is None else np.asarray(a, dtype=F64)


def _abs64(a):
    return None if a is None else np.abs(np.asarray(a, dtype=F64))


# ----------------------------------------------------------------------------- oracles

def ref_forward(x, w, b, stride, padding, dilation, groups) -> Tuple[np.ndarray, np.ndarray]:
    """(expected y, bound terms sum|x||w| + |b|), both float64, from the reference."""
    y = ref.conv2d(_f64(x), _f64(w), _f64(b), stride, padding, dilation, groups)
    bound = ref.conv2d(_abs64(x), _abs64(w), _abs64(b), stride, padding, dilation, groups)
    return y, bound


def ref_input_grad(gy, w, input_shape, stride, padding, dilation, groups):
    gx = ref.conv2d_input_grad(_f64(gy), _f64(w), tuple(input_shape), stride, padding, dilation, groups)
    bound = ref.conv2d_input_grad(_abs64(gy), _abs64(w), tuple(input_shape), stride, padding, dilation, groups)
    return gx, bound


def ref_weight_grad(gy, x, weight_shape, stride, padding, dilation, groups):
    gw = ref.conv2d_weight_grad(_f64(gy), _f64(x), tuple(weight_shape), stride, padding, dilation, groups)
    bound = ref.conv2d_weight_grad(_abs64(gy), _abs64(x), tuple(weight_shape), stride, padding, dilation, groups)
    return gw, bound


def ref_bias_grad(gy):
    """The bias gradient is grad_output summed over N, H_out, W_out (bound: sum |gy|)."""
    return _f64(gy).sum(axis=(0, 2, 3)), _abs64(gy).sum(axis=(0, 2, 3))


# ----------------------------------------------------------------------------- the bound

def assert_close_to_reference(actual, expected, bound_terms, dtype, c: float = DEFAULT_C,
                              what: str = "result") -> None:
    """Assert ``|actual - expected| <= c * eps(dtype) * bound_terms`` element-wise.

    Also checks that ``actual`` is an ndarray of ``dtype`` and the expected shape and that
    it holds no NaN/inf (a NaN-poisoned output element the kernel skipped fails here).
    """
    dtype = np.dtype(dtype)
    assert isinstance(actual, np.ndarray), f"{what}: expected an ndarray, got {type(actual).__name__}"
    assert actual.dtype == dtype, f"{what}: dtype {actual.dtype}, expected {dtype}"
    expected = np.asarray(expected, dtype=F64)
    bound_terms = np.asarray(bound_terms, dtype=F64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    a64 = actual.astype(F64)
    finite = np.isfinite(a64)
    if not finite.all():
        idx = np.argwhere(~finite)[:5].tolist()
        raise AssertionError(f"{what}: {int((~finite).sum())} non-finite elements (skipped by the "
                             f"kernel?), first at {idx}")
    err = np.abs(a64 - expected)
    tol = c * eps(dtype) * bound_terms
    bad = err > tol
    if bad.any():
        idx = [tuple(i) for i in np.argwhere(bad)[:5].tolist()]
        ratio = np.max(err / np.where(bound_terms > 0, eps(dtype) * bound_terms, np.inf))
        first = idx[0]
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} elements exceed {c} * eps * sum|x||w|; "
            f"first at {first}: got {a64[first]!r}, expected {expected[first]!r}, "
            f"bound terms {bound_terms[first]!r}; other indices {idx[1:]}; "
            f"max error / (eps * bound) = {ratio}")


def error_ratio(actual, expected, bound_terms, dtype) -> float:
    """max |actual - expected| / (eps * bound) (inf where the bound is 0 and the error is not)."""
    err = np.abs(np.asarray(actual, F64) - np.asarray(expected, F64))
    b = eps(dtype) * np.asarray(bound_terms, F64)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(b > 0, err / np.where(b > 0, b, 1), np.where(err > 0, np.inf, 0.0))
    return float(r.max()) if r.size else 0.0


# ----------------------------------------------------------------------------- poisoning

def nan_filled(shape: Sequence[int], dtype) -> np.ndarray:
    """A C-contiguous output array every element of which is NaN."""
    return np.full(tuple(shape), np.nan, dtype=np.dtype(dtype))


def poison_workspace(nbytes: int, byte: int = 0xFF) -> Optional[np.ndarray]:
    """Fill fastconv's cached workspace (this thread's) with ``byte`` before a call.

    ``0xFF`` bytes read as NaN in float32 and float64 and as -1 in int64 index tables,
    so a kernel that reads scratch memory it did not first write is caught. Returns the
    buffer (None when the call needs no workspace) so the test can check it was reused.
    """
    from fastconv import functional

    buf = functional._workspace.get(nbytes)
    if buf is not None:
        buf.fill(byte)
    return buf


# ----------------------------------------------------------------------------- layouts

def memory_layouts(a: np.ndarray) -> Iterator[Tuple[str, np.ndarray]]:
    """Yield ``(name, view)``: arrays equal to ``a`` in unusual memory layouts.

    - ``fortran``: transposed-then-contiguous, viewed back (all axes reversed in memory)
    - ``channels_last``: axis 1 moved innermost in memory (NHWC storage viewed as NCHW)
    - ``step_slices``: every other element of a larger NaN/garbage-filled array
    - ``negative_strides``: a reversed copy viewed reversed again
    - ``misaligned``: a view at a 1-byte offset into a uint8 buffer (not aligned)
    - ``byteswapped``: the non-native byte order
    - ``readonly``: a copy with ``writeable=False``
    """
    a = np.ascontiguousarray(a)
    nd = a.ndim

    rev = tuple(range(nd))[::-1]
    yield "fortran", np.ascontiguousarray(a.transpose(rev)).transpose(rev)

    if nd >= 3:
        perm = (0, *range(2, nd), 1)              # NCHW -> NHWC
        inv = tuple(int(i) for i in np.argsort(perm))
        yield "channels_last", np.ascontiguousarray(a.transpose(perm)).transpose(inv)

    fill = np.nan if a.dtype.kind == "f" else (1 if a.dtype.kind == "b" else 77)
    big = np.full(tuple(2 * s + 1 for s in a.shape), fill, dtype=a.dtype)
    sl = tuple(slice(1, None, 2) for _ in a.shape)
    big[sl] = a
    yield "step_slices", big[sl]

    flip_all = tuple(slice(None, None, -1) for _ in a.shape)
    yield "negative_strides", a[flip_all].copy()[flip_all]

    if a.dtype.itemsize > 1 and a.size > 0:
        buf = np.zeros(a.nbytes + a.dtype.itemsize, dtype=np.uint8)
        mis = buf[1:1 + a.nbytes].view(a.dtype).reshape(a.shape)
        mis[...] = a
        yield "misaligned", mis

    if a.dtype.itemsize > 1:
        yield "byteswapped", a.astype(a.dtype.newbyteorder("S"))

    ro = a.copy()
    ro.flags.writeable = False
    yield "readonly", ro


LAYOUT_NAMES = ("fortran", "channels_last", "step_slices", "negative_strides", "misaligned",
                "byteswapped", "readonly")


def layout(a: np.ndarray, name: str) -> np.ndarray:
    """The one ``memory_layouts`` variant called ``name``, checked to hold ``a``'s values
    and to really have that layout. Where the layout does not exist for ``a`` (channels
    last of a 1-D bias, a misaligned bool), ``a`` itself is returned."""
    for n, v in memory_layouts(a):
        if n == name:
            assert v.shape == a.shape and np.array_equal(v, a)
            if name in ("step_slices", "negative_strides") and a.size > 1:
                assert not v.flags.c_contiguous
            if name == "negative_strides":
                assert min(v.strides) < 0
            if name == "misaligned":
                assert not v.flags.aligned
            if name == "byteswapped":
                assert not v.dtype.isnative
            if name == "readonly":
                assert not v.flags.writeable
            return v
    if name not in LAYOUT_NAMES:
        raise KeyError(name)
    assert (name == "channels_last" and a.ndim < 3) or (name in ("misaligned", "byteswapped")
                                                        and a.dtype.itemsize == 1)
    return a


def child_env(drop=("OMP_NUM_THREADS", "FASTCONV_ISA"), **update) -> dict:
    """Environment for a child Python that imports the same fastconv as this process
    (the installed package in CI, the in-place build during development)."""
    import os

    import fastconv

    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(update)
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([pkg_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env
