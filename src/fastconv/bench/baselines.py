"""The peers fastconv is measured against: a NumPy im2col + matmul baseline, and PyTorch.

Both compute exactly what fastconv computes for each pass (no bias in the timed calls:
``fwd`` is y = conv(x, w), ``bwd_data`` is dL/dx, ``bwd_weights`` is dL/dw) and both keep
their scratch memory between calls, as fastconv keeps its workspace.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .shapes import Shape

__all__ = ["NumpyIm2col", "TorchPeer", "import_torch"]


class NumpyIm2col:
    """im2col + ``np.matmul`` for one layer, all three passes, buffers kept between calls.

    Layouts: with ``G`` groups, ``Cg = C_in/G`` and ``Kg = C_out/G`` channels per group,
    ``P = H_out*W_out`` and ``CKK = Cg*kh*kw``:

    - ``fwd``: cols (N, G, CKK, P) copied from a strided view of the zero-padded input in
      one go; ``y = w (G, Kg, CKK) @ cols``, one BLAS GEMM per (image, group), written
      straight into y's (N, C_out, H_out, W_out) layout.
    - ``bwd_data``: ``gcols = w^T @ gy`` (G, CKK, Kg) @ (N, G, Kg, P), then col2im: one
      strided ``+=`` per kernel tap into the zero-padded input gradient, cropped.
    - ``bwd_weights``: cols in (G, CKK, N*P) and gy in (G, Kg, N*P), then one GEMM per
      group ``gw = gy @ cols^T``, contracting over every image and pixel at once.

    Parameters
    ----------
    shape : Shape
        The layer; arrays passed to the passes must have its shapes and dtype.
    """

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        s = shape
        self.g = s.groups
        self.cg, self.kg = s.c_in // s.groups, s.c_out // s.groups
        self.oh, self.ow = s.out_hw
        self.ckk = self.cg * s.kernel * s.kernel
        dt = s.np_dtype
        p = s.padding
        # The zero border of the padded buffer is written once; passes only rewrite the interior.
        padded = (s.n, s.c_in, s.h + 2 * p, s.w + 2 * p)
        self.xp = np.zeros(padded, dtype=dt) if p else None
        self.gxp = np.empty(padded, dtype=dt) if p else None
        self.cols = np.empty(s.n * s.c_in * s.kernel * s.kernel * self.oh * self.ow, dtype=dt)
        self.gy_t = np.empty((self.g, self.kg, s.n, self.oh * self.ow), dtype=dt)

    # ---------------------------------------------------------------- helpers
    def _padded(self, x: np.ndarray) -> np.ndarray:
        if self.xp is None:
            return x
        p = self.shape.padding
        self.xp[:, :, p:p + self.shape.h, p:p + self.shape.w] = x
        return self.xp

    def _taps(self, xp: np.ndarray, batch_inner: bool) -> np.ndarray:
        """Strided view of every (channel, tap, output pixel) read of the padded input:
        (N, G, Cg, kh, kw, OH, OW), or (G, Cg, kh, kw, N, OH, OW) when ``batch_inner``."""
        s = self.shape
        sn, sc, sh, sw = xp.strides
        k = s.kernel
        dims = [(self.g, self.cg * sc), (self.cg, sc), (k, s.dilation * sh), (k, s.dilation * sw),
                (self.oh, s.stride * sh), (self.ow, s.stride * sw)]
        dims.insert(4 if batch_inner else 0, (s.n, sn))
        return as_strided(xp, shape=tuple(d for d, _ in dims), strides=tuple(t for _, t in dims),
                          writeable=False)

    # ---------------------------------------------------------------- passes
    def fwd(self, x: np.ndarray, w: np.ndarray, bias: Optional[np.ndarray] = None,
            out: Optional[np.ndarray] = None) -> np.ndarray:
        """y = conv2d(x, w) (+ bias), into ``out`` when given."""
        s = self.shape
        if out is None:
            out = np.empty(s.output_shape, dtype=s.np_dtype)
        taps = self._taps(self._padded(x), batch_inner=False)
        cols = self.cols.reshape(taps.shape)
        np.copyto(cols, taps)
        np.matmul(w.reshape(self.g, self.kg, self.ckk), cols.reshape(s.n, self.g, self.ckk, -1),
                  out=out.reshape(s.n, self.g, self.kg, -1))
        if bias is not None:
            out += bias.reshape(1, -1, 1, 1)
        return out

    def bwd_data(self, gy: np.ndarray, w: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        """dL/dx for the output gradient ``gy``, into ``out`` when given."""
        s = self.shape
        if out is None:
            out = np.empty(s.input_shape, dtype=s.np_dtype)
        k, p = s.kernel, s.padding
        gcols = self.cols.reshape(s.n, self.g, self.cg, k, k, self.oh, self.ow)
        np.matmul(w.reshape(self.g, self.kg, self.ckk).transpose(0, 2, 1),
                  gy.reshape(s.n, self.g, self.kg, -1), out=gcols.reshape(s.n, self.g, self.ckk, -1))
        target = self.gxp if p else out
        target.fill(0)
        hi, wi = s.stride * (self.oh - 1) + 1, s.stride * (self.ow - 1) + 1
        for l in range(k):
            for m in range(k):
                r0, c0 = l * s.dilation, m * s.dilation
                dst = target[:, :, r0:r0 + hi:s.stride, c0:c0 + wi:s.stride]
                np.add(dst, gcols[:, :, :, l, m].reshape(dst.shape), out=dst)
        if p:
            out[...] = target[:, :, p:p + s.h, p:p + s.w]
        return out

    def bwd_weights(self, gy: np.ndarray, x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        """dL/dw for the output gradient ``gy`` and input ``x``, into ``out`` when given."""
        s = self.shape
        if out is None:
            out = np.empty(s.weight_shape, dtype=s.np_dtype)
        taps = self._taps(self._padded(x), batch_inner=True)
        cols = self.cols.reshape(taps.shape)
        np.copyto(cols, taps)
        np.copyto(self.gy_t, gy.reshape(s.n, self.g, self.kg, -1).transpose(1, 2, 0, 3))
        np.matmul(self.gy_t.reshape(self.g, self.kg, -1),
                  cols.reshape(self.g, self.ckk, -1).transpose(0, 2, 1),
                  out=out.reshape(self.g, self.kg, self.ckk))
        return out


def import_torch() -> Optional[Any]:
    """The ``torch`` module, or None when it is not installed (torch is an optional peer)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


class TorchPeer:
    """PyTorch's CPU kernels for one layer: ``F.conv2d``, ``nn.grad.conv2d_input`` and
    ``nn.grad.conv2d_weight`` (each one ``aten`` call computing only the asked-for gradient).

    NumPy arrays are wrapped with ``torch.from_numpy`` (no copy) once, before timing.
    """

    def __init__(self, torch: Any, shape: Shape) -> None:
        self.torch = torch
        self.shape = shape
        self.args = (shape.stride, shape.padding, shape.dilation, shape.groups)

    def tensor(self, a: np.ndarray) -> Any:
        return self.torch.from_numpy(a)

    def fwd(self, x: Any, w: Any) -> Any:
        return self.torch.nn.functional.conv2d(x, w, None, *self.args)

    def bwd_data(self, gy: Any, w: Any) -> Any:
        return self.torch.nn.grad.conv2d_input(self.shape.input_shape, w, gy, *self.args)

    def bwd_weights(self, gy: Any, x: Any) -> Any:
        return self.torch.nn.grad.conv2d_weight(x, self.shape.weight_shape, gy, *self.args)

    def bound(self, pass_: str, a: np.ndarray, b: np.ndarray) -> Callable[[], Any]:
        """A no-argument call of ``pass_`` on the two NumPy operands, wrapped once."""
        fn = getattr(self, pass_)
        ta, tb = self.tensor(a), self.tensor(b)
        return lambda: fn(ta, tb)
