"""Keras's AveragePooling2D, GlobalAveragePooling2D and ZeroPadding2D (vectorised NumPy)."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from .base import Layer, Shape, int_pair
from .layers import pool_output_shape, same_pool_pads

__all__ = ["AveragePooling2D", "GlobalAveragePooling2D", "ZeroPadding2D"]


def _check_format(data_format: str) -> str:
    if data_format not in ("channels_first", "channels_last"):
        raise ValueError(f"data_format must be 'channels_first' or 'channels_last', got {data_format!r}")
    return data_format


def _tap(a: np.ndarray, i: int, j: int, s: Tuple[int, int], out: Tuple[int, int]) -> np.ndarray:
    """The strided view of NCHW ``a`` that window tap ``(i, j)`` reads for every output."""
    return a[:, :, i:i + s[0] * (out[0] - 1) + 1:s[0], j:j + s[1] * (out[1] - 1) + 1:s[1]]


class AveragePooling2D(Layer):
    """Mean over windows of ``pool_size`` (Keras's arguments).

    Parameters
    ----------
    pool_size : int or (int, int)
    strides : int, (int, int) or None
        Defaults to ``pool_size``.
    padding : "valid", "same", int or (int, int)
        ``"same"``: TensorFlow's (output ``ceil(in / stride)``); the mean is over the
        window's pixels inside the image. (Keras's torch backend agrees where the padding
        is symmetric; where TensorFlow pads one side more, that backend averages replicated
        edge pixels instead.) An int or a pair: PyTorch's symmetric zero
        padding, counted in the mean when ``count_include_pad``.
    data_format : {"channels_first", "channels_last"}
    count_include_pad : bool, default True
        Only for integer padding (PyTorch's ``AvgPool2d`` default).
    name : str, optional
    """

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format: str = "channels_first",
                 count_include_pad: bool = True, name: Optional[str] = None) -> None:
        super().__init__(name or "average_pooling2d")
        self.pool_size = int_pair(pool_size, "pool_size")
        self.strides = self.pool_size if strides is None else int_pair(strides, "strides")
        if isinstance(padding, str):
            padding = padding.lower()
            if padding not in ("valid", "same"):
                raise ValueError(f"padding must be 'valid', 'same' or ints, got {padding!r}")
        else:
            padding = int_pair(padding, "padding", 0)
        self.padding = padding
        self.data_format = _check_format(data_format)
        self.count_include_pad = bool(count_include_pad)
        self._cache = None

    def _pads(self, h: int, w: int) -> Tuple[int, int, int, int]:
        if self.padding == "valid":
            return 0, 0, 0, 0
        if self.padding == "same":
            return same_pool_pads(h, w, self.pool_size, self.strides)
        ph, pw = self.padding
        return ph, ph, pw, pw

    def compute_output_shape(self, input_shape: Sequence[Optional[int]]) -> Shape:
        """Output shape for a 4-D ``input_shape`` in the layer's data format."""
        return pool_output_shape(self, input_shape)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Window means (see :meth:`Layer.forward`)."""
        x = np.asarray(x)
        if x.ndim != 4:
            raise ValueError(f"{self.name}: expected a 4-D input, got shape {x.shape}")
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float64)
        out_shape = self.compute_output_shape(x.shape)
        if self.data_format == "channels_last":
            x = x.transpose(0, 3, 1, 2)
        N, C, H, W = x.shape
        t, b, l, r = self._pads(H, W)
        xp = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r))) if (t or b or l or r) else x
        out = out_shape[2:] if self.data_format == "channels_first" else out_shape[1:3]
        ph, pw = self.pool_size
        total = np.zeros((N, C, *out), dtype=x.dtype)
        for i in range(ph):
            for j in range(pw):
                total += _tap(xp, i, j, self.strides, out)
        if self.padding == "valid" or (not isinstance(self.padding, str) and self.count_include_pad):
            count = np.full((1, 1, *out), ph * pw, dtype=x.dtype)
        else:  # only the pixels inside the image count
            inside = np.pad(np.ones((1, 1, H, W), x.dtype), ((0, 0), (0, 0), (t, b), (l, r)))
            count = sum(_tap(inside, i, j, self.strides, out) for i in range(ph) for j in range(pw))
        y = total / count
        self._cache = (count, xp.shape, (t, b, l, r), out, x.shape)
        if self.data_format == "channels_last":
            y = y.transpose(0, 2, 3, 1)
        return np.ascontiguousarray(y)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """Each window's gradient spread evenly over the pixels it averaged."""
        expected = None
        if self._cache is not None:
            n, c = self._cache[4][:2]
            oh, ow = self._cache[3]
            expected = (n, c, oh, ow) if self.data_format == "channels_first" else (n, oh, ow, c)
        self._need_forward(self._cache, grad_output, expected)
        count, padded, (t, b, l, r), out, _ = self._cache
        g = np.asarray(grad_output)
        if self.data_format == "channels_last":
            g = g.transpose(0, 3, 1, 2)
        g = g / count
        gx = np.zeros(padded, dtype=g.dtype)
        for i in range(self.pool_size[0]):
            for j in range(self.pool_size[1]):
                _tap(gx, i, j, self.strides, out)[...] += g
        gx = gx[:, :, t:padded[2] - b, l:padded[3] - r]
        if self.data_format == "channels_last":
            gx = gx.transpose(0, 2, 3, 1)
        return np.ascontiguousarray(gx)


class GlobalAveragePooling2D(Layer):
    """Mean over the spatial axes: ``(N, C, H, W) -> (N, C)`` (or ``(N, 1, 1, C)``-style
    with ``keepdims``).

    Parameters
    ----------
    data_format : {"channels_first", "channels_last"}
    keepdims : bool, default False
    name : str, optional
    """

    def __init__(self, data_format: str = "channels_first", keepdims: bool = False,
                 name: Optional[str] = None) -> None:
        super().__init__(name or "global_average_pooling2d")
        self.data_format = _check_format(data_format)
        self.keepdims = bool(keepdims)
        self._shape: Optional[tuple] = None

    def _axes(self) -> Tuple[int, int]:
        return (2, 3) if self.data_format == "channels_first" else (1, 2)

    def compute_output_shape(self, input_shape: Sequence[Optional[int]]) -> Shape:
        """``(N, C)``, or the input shape with ones for H and W when ``keepdims``."""
        if self.keepdims:
            return tuple(1 if a in self._axes() else s for a, s in enumerate(input_shape))
        c = input_shape[1] if self.data_format == "channels_first" else input_shape[3]
        return (input_shape[0], c)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Spatial mean of each channel."""
        x = np.asarray(x)
        if x.ndim != 4:
            raise ValueError(f"{self.name}: expected a 4-D input, got shape {x.shape}")
        self._shape = x.shape
        return x.mean(axis=self._axes(), keepdims=self.keepdims)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """The gradient spread evenly over every pixel."""
        expected = None if self._shape is None else self.compute_output_shape(self._shape)
        self._need_forward(self._shape, grad_output, expected)
        h, w = (self._shape[a] for a in self._axes())
        g = np.asarray(grad_output) / (h * w)
        if not self.keepdims:
            g = np.expand_dims(g, self._axes())
        return np.ascontiguousarray(np.broadcast_to(g, self._shape))


class ZeroPadding2D(Layer):
    """Pad rows and columns of zeros (Keras's ``ZeroPadding2D``).

    Parameters
    ----------
    padding : int, (ph, pw) or ((top, bottom), (left, right)), default 1
    data_format : {"channels_first", "channels_last"}
    name : str, optional
    """

    def __init__(self, padding=1, data_format: str = "channels_first", name: Optional[str] = None) -> None:
        super().__init__(name or "zero_padding2d")
        if isinstance(padding, (tuple, list)) and len(padding) == 2 and all(
                isinstance(p, (tuple, list)) for p in padding):
            (t, b), (l, r) = (int_pair(p, "padding", 0) for p in padding)
        else:
            (t, l) = int_pair(padding, "padding", 0)
            b, r = t, l
        self.padding = ((t, b), (l, r))
        self.data_format = _check_format(data_format)
        self._shape: Optional[tuple] = None

    def _widths(self):
        (t, b), (l, r) = self.padding
        if self.data_format == "channels_first":
            return ((0, 0), (0, 0), (t, b), (l, r))
        return ((0, 0), (t, b), (l, r), (0, 0))

    def compute_output_shape(self, input_shape: Sequence[Optional[int]]) -> Shape:
        """The input shape with the padding added to H and W."""
        return tuple(None if s is None else s + lo + hi for s, (lo, hi) in zip(input_shape, self._widths()))

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """``x`` with zero rows/columns around it."""
        x = np.asarray(x)
        if x.ndim != 4:
            raise ValueError(f"{self.name}: expected a 4-D input, got shape {x.shape}")
        self._shape = x.shape
        return np.pad(x, self._widths())

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """The gradient with the padding cut off."""
        expected = None if self._shape is None else self.compute_output_shape(self._shape)
        self._need_forward(self._shape, grad_output, expected)
        index = tuple(slice(lo, lo + s) for (lo, _), s in zip(self._widths(), self._shape))
        return np.ascontiguousarray(np.asarray(grad_output)[index])
