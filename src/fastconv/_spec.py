"""Argument normalisation and validation: user arguments in, one immutable ``ConvSpec`` out.

Everything a user can get wrong is caught here, once, with a ``ValueError`` or
``TypeError`` that names the argument; nothing below this module validates again.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from . import _alloc

IntPair = Union[int, Tuple[int, int]]
Padding = Union[str, int, Tuple[int, int], Tuple[Tuple[int, int], Tuple[int, int]]]

# Every element count and byte size the C side computes must stay far from int64
# overflow: 2**62 leaves room for the products of an index with a stride.
_INDEX_LIMIT = 2**62

def _dtype_code(dtype: np.dtype) -> int:
    from . import _core

    return _core.DTYPE_F64 if np.dtype(dtype) == np.float64 else _core.DTYPE_F32


@dataclass(frozen=True)
class ConvSpec:
    """One validated 2-D convolution problem (NCHW, weight (C_out, C_in/groups, kh, kw))."""

    n: int
    c_in: int
    h: int
    w: int
    c_out: int
    kh: int
    kw: int
    oh: int
    ow: int
    stride: Tuple[int, int]
    padding: Tuple[int, int, int, int]  # top, bottom, left, right
    dilation: Tuple[int, int]
    groups: int
    dtype: np.dtype

    @property
    def input_shape(self) -> Tuple[int, int, int, int]:
        return (self.n, self.c_in, self.h, self.w)

    @property
    def weight_shape(self) -> Tuple[int, int, int, int]:
        return (self.c_out, self.c_in // self.groups, self.kh, self.kw)

    @property
    def output_shape(self) -> Tuple[int, int, int, int]:
        return (self.n, self.c_out, self.oh, self.ow)

    @property
    def flops(self) -> int:
        """2 * multiply-adds of one pass (the convention of docs/architecture.md)."""
        return 2 * self.n * self.c_out * self.oh * self.ow * (self.c_in // self.groups) * self.kh * self.kw

    @property
    def is_empty(self) -> bool:
        """True when the output or the batch has no elements (no kernel call needed)."""
        return self.n == 0 or self.c_out == 0

    @cached_property
    def _descs(self) -> Dict[Tuple[int, int], Any]:
        return {}

    def desc(self, nthreads: int, precision: Optional[int] = None) -> Any:
        """The C descriptor (``fastconv._core.ConvDesc``, built by field name). ``precision``:
        what "auto" may pick (default: ``fastconv.get_precision()``). Built once per thread
        count and precision (descriptors are immutable)."""
        from . import _precision

        if precision is None:
            precision = _precision.precision_code()
        key = (nthreads, precision)
        d = self._descs.get(key)
        if d is None:
            d = self._descs[key] = self._build_desc(nthreads, precision)
        return d

    def _build_desc(self, nthreads: int, precision: int) -> Any:
        from . import _core

        return _core.ConvDesc(
            n=self.n, c_in=self.c_in, h=self.h, w=self.w, c_out=self.c_out, kh=self.kh, kw=self.kw,
            oh=self.oh, ow=self.ow, stride_h=self.stride[0], stride_w=self.stride[1],
            pad_top=self.padding[0], pad_bottom=self.padding[1], pad_left=self.padding[2],
            pad_right=self.padding[3], dil_h=self.dilation[0], dil_w=self.dilation[1], groups=self.groups,
            dtype=_dtype_code(self.dtype), nthreads=nthreads, precision=precision)


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}")
    return int(value)


def as_pair(value: Any, name: str, minimum: int) -> Tuple[int, int]:
    """An int or a pair of ints, each >= ``minimum``, as a pair."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        pair = (_as_int(value[0], name), _as_int(value[1], name))
    else:
        v = _as_int(value, name)
        pair = (v, v)
    if min(pair) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    if max(pair) >= _INDEX_LIMIT:
        raise ValueError(f"{name} must be < 2**62, got {value!r}")
    return pair


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> Tuple[int, int]:
    """TensorFlow/Keras "same": output ceil(size/stride), the odd pixel on the bottom/right."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def resolve_padding(padding: Padding, spatial: Tuple[int, int], kernel: Tuple[int, int],
                    stride: Tuple[int, int], dilation: Tuple[int, int]) -> Tuple[int, int, int, int]:
    """Padding in any accepted form as (top, bottom, left, right)."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0, 0, 0)
        if mode == "same":
            return (*_same_padding(spatial[0], kernel[0], stride[0], dilation[0]),
                    *_same_padding(spatial[1], kernel[1], stride[1], dilation[1]))
        raise ValueError(f"padding must be 'valid', 'same', an int, a pair or ((top, bottom), (left, right)); got {padding!r}")
    if isinstance(padding, (tuple, list)) and len(padding) == 2 and all(isinstance(p, (tuple, list)) for p in padding):
        (top, bottom), (left, right) = (as_pair(p, "padding", 0) for p in padding)
        return (top, bottom, left, right)
    try:
        ph, pw = as_pair(padding, "padding", 0)
    except TypeError:
        raise TypeError(f"padding must be 'valid', 'same', an int, a pair or ((top, bottom), (left, right)); got {padding!r}") from None
    return (ph, ph, pw, pw)


def result_dtype(**arrays: Any) -> np.dtype:
    """float32 if every operand is float32, float64 if any is float64 or integer/bool.

    Anything else (complex, float16, object, strings, ...) is a TypeError naming the argument.
    """
    result = None
    for name, a in arrays.items():
        dt = a.dtype
        if dt.kind == "f" and dt.itemsize in (4, 8):
            kind = np.dtype(np.float32) if dt.itemsize == 4 else np.dtype(np.float64)
        elif dt.kind in "biu":
            kind = np.dtype(np.float64)
        else:
            raise TypeError(f"{name} has dtype {dt}; fastconv computes in float32 or float64 "
                            "(ints and bools are promoted to float64)")
        result = kind if result is None else np.promote_types(result, kind)
    if result is None:
        raise ValueError("no operands")  # every caller passes at least one
    return result


def as_array(value: Any, name: str) -> np.ndarray:
    """Any array-like as an ndarray, refusing what cannot be a number."""
    if isinstance(value, np.ndarray):
        return value
    if value is None:
        raise TypeError(f"{name} must be an array, got None")
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"{name} could not be converted to an array: {exc}") from None


def as_operand(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """C-contiguous, aligned, native-endian, of ``dtype``: a view when possible, else a copy."""
    flags = a.flags
    if a.dtype == dtype and flags.c_contiguous and flags.aligned and a.dtype.isnative:
        return a  # the common case, without np.require's argument parsing
    return np.require(a, dtype=dtype, requirements=("C", "A"))


def check_ndim(a: np.ndarray, name: str, ndim: int, layout: str) -> None:
    if a.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array {layout}, got shape {a.shape}")


def _check_size(what: str, *factors: int) -> None:
    if math.prod(factors) >= _INDEX_LIMIT:
        raise MemoryError(f"fastconv: {what} would have {math.prod(factors)} elements, too many to index or allocate")


class _Unkeyable(Exception):
    pass


def _plain(v: Any) -> Any:
    """``v`` when it is an int, a str or a tuple of those (types for which equal values pass
    or fail validation alike; True == 1 but a bool stride is an error), else _Unkeyable."""
    t = type(v)
    if t is int or t is str:
        return v
    if t is tuple:
        for e in v:
            _plain(e)
        return v
    raise _Unkeyable


# Validated problems by their arguments: a training loop or a per-chunk map calls with the
# same few problems again and again, and validating one costs ~7 us (torch's whole call on
# a tiny layer takes about that). Only plain-typed arguments are cached (see _plain).
_SPEC_CACHE: Dict[Tuple[Any, ...], ConvSpec] = {}
_SPEC_CACHE_MAX = 512


def make_spec(input_shape: Sequence[int], weight_shape: Sequence[int], stride: IntPair, padding: Padding,
              dilation: IntPair, groups: int, dtype: np.dtype, *, input_name: str = "x",
              weight_name: str = "weight") -> ConvSpec:
    """Validate one convolution problem and compute its output shape (see _make_spec).
    Equal plain-typed arguments give the same (immutable) ConvSpec object."""
    try:
        key: Optional[Tuple[Any, ...]] = (
            _plain(tuple(input_shape)), _plain(tuple(weight_shape)), _plain(stride), _plain(padding),
            _plain(dilation), _plain(groups), np.dtype(dtype), input_name, weight_name)
    except (_Unkeyable, TypeError):
        key = None  # validated every time (and any error raised) below
    spec = _SPEC_CACHE.get(key) if key is not None else None
    if spec is None:
        spec = _make_spec(input_shape, weight_shape, stride, padding, dilation, groups, dtype,
                          input_name=input_name, weight_name=weight_name)
        if key is not None:
            if len(_SPEC_CACHE) >= _SPEC_CACHE_MAX:
                _SPEC_CACHE.clear()
            _SPEC_CACHE[key] = spec
    return spec


def _make_spec(input_shape: Sequence[int], weight_shape: Sequence[int], stride: IntPair, padding: Padding,
               dilation: IntPair, groups: int, dtype: np.dtype, *, input_name: str = "x",
               weight_name: str = "weight") -> ConvSpec:
    """Validate one convolution problem and compute its output shape.

    Raises
    ------
    ValueError
        For channel mismatches, groups not dividing the channels, stride or dilation < 1,
        negative padding, a kernel larger than the padded input or empty dimensions.
    TypeError
        For non-integer stride, padding, dilation or groups.
    MemoryError
        When a tensor of the problem would have more elements than can be indexed.
    """
    n, c_in, h, w = (int(s) for s in input_shape)
    c_out, cg, kh, kw = (int(s) for s in weight_shape)
    sh, sw = as_pair(stride, "stride", 1)
    dh, dw = as_pair(dilation, "dilation", 1)
    groups = _as_int(groups, "groups")
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    if c_in < 1 or h < 1 or w < 1:
        raise ValueError(f"{input_name} must have C_in, H and W >= 1, got shape {tuple(input_shape)}")
    if cg < 1 or kh < 1 or kw < 1:
        raise ValueError(f"{weight_name} must have C_in/groups, kh and kw >= 1, got shape {tuple(weight_shape)}")
    if c_in % groups:
        raise ValueError(f"groups={groups} must divide the input channels C_in={c_in}")
    if c_out % groups:
        raise ValueError(f"groups={groups} must divide the output channels C_out={c_out} ({weight_name}.shape[0])")
    if cg * groups != c_in:
        raise ValueError(f"{weight_name}.shape[1] must be C_in/groups = {c_in}/{groups} = {c_in // groups}, "
                         f"got {weight_name} shape {tuple(weight_shape)} for {input_name} shape {tuple(input_shape)}")
    pads = resolve_padding(padding, (h, w), (kh, kw), (sh, sw), (dh, dw))
    eff_h, eff_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    padded_h, padded_w = h + pads[0] + pads[1], w + pads[2] + pads[3]
    if eff_h > padded_h or eff_w > padded_w:
        raise ValueError(f"the kernel ({eff_h}x{eff_w} with dilation) is larger than the padded input "
                         f"({padded_h}x{padded_w}); {weight_name} shape {tuple(weight_shape)}, "
                         f"{input_name} shape {tuple(input_shape)}, padding {pads}")
    oh = (padded_h - eff_h) // sh + 1
    ow = (padded_w - eff_w) // sw + 1
    _check_size(input_name, n, c_in, h, w, 8)
    _check_size(weight_name, c_out, cg, kh, kw, 8)
    _check_size("the output", n, c_out, oh, ow, 8)
    # The sizes below also grow with the output plane and the weight; their messages name
    # both, so an empty batch or zero output channels (which pass the checks above) with a
    # huge padding or kernel still get an error that says where the size comes from.
    _check_size("one output plane (H_out x W_out, from the padding)", oh, ow, 8)
    _check_size("the per-tap workspace (weight kh x kw x output width)", 8, kh, kw, ow, 8)
    _check_size("a row of the im2col column matrix (weight C_in/groups x kh x kw x output width)",
                cg, kh, kw, ow, 8)
    _check_size("the im2col column matrix of one image (weight C_in/groups x kh x kw x output plane)",
                cg, kh, kw, oh, ow, 8)
    _check_size("the padded input", padded_h, padded_w, 8)
    return ConvSpec(n, c_in, h, w, c_out, kh, kw, oh, ow, (sh, sw), pads, (dh, dw), groups, np.dtype(dtype))


def shape_tuple(value: Any, name: str) -> Tuple[int, int, int, int]:
    """A 4-tuple of non-negative ints (input_shape / weight_shape arguments)."""
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = value.tolist()
    if isinstance(value, np.ndarray):  # an operand passed where its shape belongs
        raise ValueError(f"{name} must be a tuple of 4 ints, got an array of shape {value.shape} "
                         f"(pass its .shape)")
    if not isinstance(value, (tuple, list)) or len(value) != 4:
        raise ValueError(f"{name} must be a tuple of 4 ints, got {value!r}")
    shape = tuple(_as_int(v, name) for v in value)
    if min(shape) < 0:
        raise ValueError(f"{name} must not have negative sizes, got {value!r}")
    return shape  # type: ignore[return-value]


def check_out(out: Optional[np.ndarray], shape: Tuple[int, ...], dtype: np.dtype,
              *inputs: Optional[np.ndarray], name: str = "out") -> np.ndarray:
    """A user-supplied output array checked for shape, dtype, layout and overlap, or a new one
    (large ones on reused memory, see ``_alloc``)."""
    if out is None:
        return _alloc.empty(shape, dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {out.shape}")
    if out.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype} (the result dtype), got {out.dtype}")
    flags = out.flags
    if not (flags.c_contiguous and flags.aligned and flags.writeable and out.dtype.isnative):
        raise ValueError(f"{name} must be C-contiguous, aligned, writeable and native byte order")
    for a in inputs:
        if a is not None and np.may_share_memory(out, a):
            raise ValueError(f"{name} must not share memory with an input")
    return out
