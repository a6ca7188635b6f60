"""The named shape table of the benchmark (issue 5), and what each shape's problem is.

Each entry is one convolution layer in NCHW: batch ``n``, input channels ``c_in``,
image ``h`` x ``w``, output channels ``c_out``, a square ``kernel``, symmetric
``stride``/``padding``/``dilation``, ``groups`` and the dtype.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, List, Sequence, Tuple

import numpy as np

__all__ = ["Shape", "SHAPES", "DEFAULT_SHAPES", "PASSES", "flops", "parse_custom", "select", "with_dtype"]

#: Pass names, as oneDNN names them; the index is fastconv's pass code.
PASSES: Tuple[str, ...] = ("fwd", "bwd_data", "bwd_weights")

_DTYPES = {"f32": np.dtype(np.float32), "f64": np.dtype(np.float64)}


@dataclass(frozen=True)
class Shape:
    """One benchmark layer (NCHW; square kernel; symmetric stride, padding, dilation)."""

    name: str
    n: int
    c_in: int
    h: int
    w: int
    c_out: int
    kernel: int
    stride: int
    padding: int
    dilation: int
    groups: int
    dtype: str  # "f32" or "f64"

    @property
    def np_dtype(self) -> np.dtype:
        return _DTYPES[self.dtype]

    @property
    def input_shape(self) -> Tuple[int, int, int, int]:
        return (self.n, self.c_in, self.h, self.w)

    @property
    def weight_shape(self) -> Tuple[int, int, int, int]:
        return (self.c_out, self.c_in // self.groups, self.kernel, self.kernel)

    @property
    def out_hw(self) -> Tuple[int, int]:
        """(H_out, W_out) = floor((in + 2p - d(k-1) - 1) / s) + 1."""
        eff = self.dilation * (self.kernel - 1) + 1
        return ((self.h + 2 * self.padding - eff) // self.stride + 1,
                (self.w + 2 * self.padding - eff) // self.stride + 1)

    @property
    def output_shape(self) -> Tuple[int, int, int, int]:
        return (self.n, self.c_out, *self.out_hw)

    def conv_args(self) -> Dict[str, int]:
        """The keyword arguments ``stride, padding, dilation, groups`` of a conv2d call."""
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation, "groups": self.groups}

    def row(self) -> Tuple:
        """The table's row: (N, C_in, H, W, C_out, kernel, stride, padding, dilation, groups, dtype)."""
        return (self.n, self.c_in, self.h, self.w, self.c_out, self.kernel, self.stride, self.padding,
                self.dilation, self.groups, self.dtype)


def _shape(name: str, row: str) -> Shape:
    *ints, dtype = row.split(",")
    return Shape(name, *(int(v) for v in ints), dtype)


#: The issue's table, in its order: name -> Shape.
SHAPES: Dict[str, Shape] = {name: _shape(name, row) for name, row in (
    ("mnist_c1", "64,1,28,28,32,3,1,0,1,1,f32"),
    ("mnist_c2", "64,32,26,26,64,3,1,0,1,1,f32"),
    ("mnist_c2_f64", "64,32,26,26,64,3,1,0,1,1,f64"),
    ("cifar_3x3", "32,64,32,32,64,3,1,1,1,1,f32"),
    ("resnet_3x3", "8,128,28,28,128,3,1,1,1,1,f32"),
    ("resnet_stem", "4,3,224,224,64,7,2,3,1,1,f32"),
    ("resnet_1x1", "8,256,14,14,1024,1,1,0,1,1,f32"),
    ("depthwise", "8,128,56,56,128,3,1,1,1,128,f32"),
    ("latency_1img", "1,64,56,56,64,3,1,1,1,1,f32"),
    ("dilated", "8,64,32,32,64,3,1,2,2,1,f32"),
)}

#: The shapes a plain run benchmarks (all of the issue's table).
DEFAULT_SHAPES: Tuple[str, ...] = tuple(SHAPES)

#: Small layers for smoke runs and the harness's own tests; never in a default run.
EXTRA_SHAPES: Dict[str, Shape] = {name: _shape(name, row) for name, row in (
    ("tiny", "2,4,9,9,6,3,1,1,1,2,f32"),
    ("tiny_f64", "2,4,9,9,6,3,2,1,1,1,f64"),
)}


def flops(shape: Shape) -> int:
    """FLOP of one pass: 2 * N * C_out * H_out * W_out * (C_in / groups) * kh * kw (docs/architecture.md)."""
    oh, ow = shape.out_hw
    return 2 * shape.n * shape.c_out * oh * ow * (shape.c_in // shape.groups) * shape.kernel * shape.kernel


def parse_custom(text: str, name: str = "custom") -> Shape:
    """A shape from ``"N,C_in,H,W,C_out,kernel,stride,padding,dilation,groups[,dtype]"`` (dtype f32 by default)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if len(parts) == 10:
        parts.append("f32")
    if len(parts) != 11 or parts[-1] not in _DTYPES:
        raise ValueError("a custom shape is N,C_in,H,W,C_out,kernel,stride,padding,dilation,groups[,f32|f64]; "
                         f"got {text!r}")
    try:
        shape = Shape(name, *(int(p) for p in parts[:10]), parts[10])
    except ValueError:
        raise ValueError(f"a custom shape needs 10 integers then an optional dtype; got {text!r}") from None
    if min(shape.row()[:10]) < 0 or min(shape.n, shape.c_in, shape.h, shape.w, shape.c_out, shape.kernel,
                                        shape.stride, shape.dilation, shape.groups) < 1:
        raise ValueError(f"a custom shape needs positive sizes (padding >= 0); got {text!r}")
    if shape.c_in % shape.groups or shape.c_out % shape.groups:
        raise ValueError(f"groups must divide C_in and C_out; got {text!r}")
    if min(shape.out_hw) < 1:
        raise ValueError(f"the kernel is larger than the padded image; got {text!r}")
    return shape


def select(names: Sequence[str]) -> List[Shape]:
    """The shapes called ``names`` (from the table or the extra small shapes), in that order."""
    known = {**SHAPES, **EXTRA_SHAPES}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown shape(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in names]


def with_dtype(shape: Shape, dtype: str) -> Shape:
    """``shape`` computed in ``dtype`` ("f32" or "f64")."""
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    return shape if shape.dtype == dtype else replace(shape, dtype=dtype)
