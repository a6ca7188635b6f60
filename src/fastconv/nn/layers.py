"""The non-convolution layers of the Keras MNIST CNN: ReLU, MaxPool2D, Dropout, Flatten, Dense.

float32/float64 C-contiguous arrays run on fastconv's C kernels (``_ops``: ReLU, max
pooling, dropout; Dense on fastconv's own GEMM), on the same OpenMP team as the
convolutions, so that no second thread pool (NumPy's BLAS) wakes and spins against it in a
training step. Anything else takes the vectorised NumPy path kept beside each kernel,
which is also the tests' second oracle.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from .. import initializers
from . import _ops, activations
from .base import Layer, Shape, image_shape, int_pair, layer_rng, param_dtype

__all__ = ["ReLU", "MaxPool2D", "Dropout", "Flatten", "Dense"]


class ReLU(Layer):
    """``max(x, 0)``; the gradient is passed where ``x > 0``.

    Parameters
    ----------
    name : str, optional
    """

    def __init__(self, name: Optional[str] = None) -> None:
        super().__init__(name or "relu")
        self._mask: Optional[np.ndarray] = None
        self._y: Optional[np.ndarray] = None  # the C path's output: y > 0 is the mask

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """``max(x, 0)`` elementwise (see :meth:`Layer.forward`)."""
        x = np.asarray(x)
        if _ops.native(x):
            self._mask = None
            self._y = _ops.relu_forward(x, self._buffer("y", x.shape, x.dtype))
            return self._y
        self._y = None
        self._mask = x > 0
        return np.maximum(x, 0)  # np.maximum is ~10x faster than np.where here

    def take_relu_output(self, y: np.ndarray) -> np.ndarray:
        """Be the ReLU whose output ``y`` the layer before computed already
        (``Conv2D.forward_then_relu``): keep it for the backward pass and return it."""
        self._mask = None
        self._y = y
        return y

    def passed_through(self, grad_output: np.ndarray) -> np.ndarray:
        """The backward when the layer after it has returned its input gradient through this
        ReLU already (``Conv2D.backward_through_relu``): ``grad_output`` as it is."""
        self._need_forward(self._y, grad_output, getattr(self._y, "shape", ()))
        return grad_output

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """``grad_output`` where the input was positive, 0 elsewhere."""
        cached = self._y if self._y is not None else self._mask
        self._need_forward(cached, grad_output, getattr(cached, "shape", ()))
        g = np.asarray(grad_output)
        if self._y is not None and _ops.native(g, self._y):
            return _ops.relu_backward(g, self._y, self._buffer("gx", g.shape, g.dtype))
        mask = self._mask if self._y is None else self._y > 0
        return g * mask


class MaxPool2D(Layer):
    """Max pooling over windows of ``pool_size`` (Keras's arguments).

    Parameters
    ----------
    pool_size : int or (int, int), default 2
    strides : int, (int, int) or None
        Defaults to ``pool_size`` (non-overlapping windows).
    padding : {"valid", "same"}
        ``"same"`` pads with -inf as TensorFlow does (output ``ceil(in / stride)``).
    data_format : {"channels_first", "channels_last"}
    name : str, optional

    Notes
    -----
    The gradient of each window goes to its first maximum (ties: the first in
    row-major order), as in TensorFlow and PyTorch.
    """

    def __init__(self, pool_size=2, strides=None, padding: str = "valid",
                 data_format: str = "channels_first", name: Optional[str] = None) -> None:
        super().__init__(name or "max_pool2d")
        self.pool_size = int_pair(pool_size, "pool_size")
        self.strides = self.pool_size if strides is None else int_pair(strides, "strides")
        self.padding = padding.lower() if isinstance(padding, str) else padding
        if self.padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
        if data_format not in ("channels_first", "channels_last"):
            raise ValueError(f"data_format must be 'channels_first' or 'channels_last', got {data_format!r}")
        self.data_format = data_format
        self._cache = None

    def _pads(self, h: int, w: int) -> Tuple[int, int, int, int]:
        if self.padding == "valid":
            return 0, 0, 0, 0
        return same_pool_pads(h, w, self.pool_size, self.strides)

    def compute_output_shape(self, input_shape: Sequence[Optional[int]]) -> Shape:
        """Output shape for a 4-D ``input_shape`` in the layer's data format."""
        return pool_output_shape(self, input_shape)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Max over each window (see :meth:`Layer.forward`).

        Separable: the max over each window's columns, then over its rows. Each step
        loops over the ``pw`` (then ``ph``) window taps, each a strided view of the
        whole batch, never over pixels.
        """
        x = np.asarray(x)
        if x.ndim != 4:
            raise ValueError(f"{self.name}: expected a 4-D input, got shape {x.shape}")
        if self.data_format == "channels_last":
            x = x.transpose(0, 3, 1, 2)
            if x.dtype in (np.float32, np.float64):  # the C kernel wants NCHW in one piece
                x = np.ascontiguousarray(x)
        N, C, H, W = x.shape
        if _ops.native(x):
            return self._forward_c(x)
        self._c_cache = None
        t, b, l, r = self._pads(H, W)
        if t or b or l or r:
            x = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=-np.inf)
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        Hp, Wp = x.shape[2:]
        oh, ow = (Hp - ph) // sh + 1, (Wp - pw) // sw + 1
        if oh < 1 or ow < 1:
            raise ValueError(f"{self.name}: input {x.shape} smaller than pool {self.pool_size}")
        col_max, col_arg = _max_over_taps(x, 3, pw, sw, ow)    # (N, C, Hp, ow)
        y, row_arg = _max_over_taps(col_max, 2, ph, sh, oh)    # (N, C, oh, ow)
        self._cache = (col_arg, row_arg, (N, C, Hp, Wp), (t, b, l, r))
        if self.data_format == "channels_last":
            y = y.transpose(0, 2, 3, 1)
        return np.ascontiguousarray(y)

    def _forward_c(self, x: np.ndarray) -> np.ndarray:
        N, C, H, W = x.shape
        t, b, l, r = self._pads(H, W)
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        oh, ow = (H + t + b - ph) // sh + 1, (W + l + r - pw) // sw + 1
        if oh < 1 or ow < 1:
            raise ValueError(f"{self.name}: input {x.shape} smaller than pool {self.pool_size}")
        shape = (N, C, oh, ow)
        y, arg = _ops.maxpool_forward(x, self.pool_size, self.strides, (t, b, l, r), (oh, ow),
                                      self._buffer("y", shape, x.dtype), self._buffer("argmax", shape, np.int32))
        self._cache = None
        self._c_cache = (arg, x.shape)
        # for backward_through_relu (NCHW only: x is then the input itself, never a copy)
        self._x, self._y = (x, y) if self.data_format == "channels_first" else (None, None)
        if self.data_format == "channels_last":
            return np.ascontiguousarray(y.transpose(0, 2, 3, 1))
        return y

    def fuses_relu_backward(self) -> bool:
        """Whether the last forward ran the C kernel on NCHW (``backward_through_relu`` needs it)."""
        return getattr(self, "_c_cache", None) is not None and self.data_format == "channels_first"

    def backward_through_relu(self, grad_output: np.ndarray) -> np.ndarray:
        """``backward``, returned through the ReLU whose output was this layer's input: a
        window's maximum is that ReLU's output at the position the gradient goes to, so
        the gradient is kept where the pooled output is > 0 before it is routed, a pass over
        the pooled (a quarter-size) array instead of the ReLU's over the full one."""
        if not self.fuses_relu_backward():
            raise ValueError(f"{self.name}: backward_through_relu needs the C kernels' NCHW forward")
        g = np.asarray(grad_output)
        self._need_forward(self._y, g, self._y.shape)  # before the mask reads self._y
        if _ops.native(g, self._y):
            g = _ops.relu_backward(g, self._y, self._buffer("g_relu", g.shape, g.dtype))
        else:
            g = np.where(self._y > 0, g, 0).astype(g.dtype, copy=False)
        return self.backward(g)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """Route each window's gradient to its first maximum (see :meth:`Layer.backward`)."""
        c_cache = getattr(self, "_c_cache", None)
        if c_cache is not None:
            arg, x_shape = c_cache
            n, c, oh, ow = arg.shape
            expected = (n, c, oh, ow) if self.data_format == "channels_first" else (n, oh, ow, c)
            self._need_forward(arg, grad_output, expected)
            gy = np.asarray(grad_output, dtype=np.result_type(grad_output))
            if self.data_format == "channels_last":
                gy = gy.transpose(0, 3, 1, 2)
            gy = np.ascontiguousarray(gy)
            if _ops.native(gy):
                gx = _ops.maxpool_backward(gy, arg, x_shape, self._buffer("gx", x_shape, gy.dtype))
            else:  # an unusual gradient dtype: scatter in NumPy
                gx = np.zeros(x_shape, dtype=np.result_type(gy.dtype, np.float32))
                flat = gx.reshape(n * c, -1)
                np.add.at(flat, (np.arange(n * c)[:, None], arg.reshape(n * c, -1)), gy.reshape(n * c, -1))
            if self.data_format == "channels_last":
                return np.ascontiguousarray(gx.transpose(0, 2, 3, 1))
            return gx
        expected = None
        if self._cache is not None:
            n, c, oh, ow = self._cache[1].shape
            expected = (n, c, oh, ow) if self.data_format == "channels_first" else (n, oh, ow, c)
        self._need_forward(self._cache, grad_output, expected)
        col_arg, row_arg, (N, C, Hp, Wp), (t, b, l, r) = self._cache
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        gy = np.asarray(grad_output)
        if self.data_format == "channels_last":
            gy = gy.transpose(0, 3, 1, 2)
        g_col = np.zeros(col_arg.shape, dtype=gy.dtype)
        for i in range(ph):  # += so that overlapping windows (stride < pool) add up
            _tap(g_col, 2, i, sh, row_arg.shape[2])[...] += gy * (row_arg == i)
        gx = np.zeros((N, C, Hp, Wp), dtype=gy.dtype)
        for j in range(pw):
            _tap(gx, 3, j, sw, col_arg.shape[3])[...] += g_col * (col_arg == j)
        gx = gx[:, :, t:Hp - b, l:Wp - r]
        if self.data_format == "channels_last":
            gx = gx.transpose(0, 2, 3, 1)
        return np.ascontiguousarray(gx)


def same_pool_pads(h: int, w: int, pool_size: Tuple[int, int],
                   strides: Tuple[int, int]) -> Tuple[int, int, int, int]:
    """(top, bottom, left, right) of TensorFlow's "same" pooling: output ceil(in / stride),
    the odd pixel of padding at the bottom/right."""
    pads = []
    for n, p, s in ((h, pool_size[0], strides[0]), (w, pool_size[1], strides[1])):
        total = max((-(-n // s) - 1) * s + p - n, 0)
        pads += [total // 2, total - total // 2]
    return pads[0], pads[1], pads[2], pads[3]


def pool_output_shape(layer, input_shape: Sequence[Optional[int]]) -> Shape:
    """Output shape of a pooling layer (``pool_size``, ``strides``, ``_pads``, ``data_format``)."""
    n, c, h, w = image_shape(layer, input_shape)
    t, b, l, r = layer._pads(h, w)
    oh = (h + t + b - layer.pool_size[0]) // layer.strides[0] + 1
    ow = (w + l + r - layer.pool_size[1]) // layer.strides[1] + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"{layer.name}: input {tuple(input_shape)} smaller than pool {layer.pool_size}")
    return (n, c, oh, ow) if layer.data_format == "channels_first" else (n, oh, ow, c)


def _tap(a: np.ndarray, axis: int, tap: int, stride: int, n_out: int) -> np.ndarray:
    """Strided view of ``a``: the element that window tap ``tap`` reads for each of the
    ``n_out`` outputs along ``axis``."""
    index = [slice(None)] * a.ndim
    index[axis] = slice(tap, tap + stride * (n_out - 1) + 1, stride)
    return a[tuple(index)]


def _max_over_taps(a: np.ndarray, axis: int, k: int, stride: int, n_out: int):
    """Max over windows of ``k`` taps along ``axis``, and the first tap that holds it."""
    best = _tap(a, axis, 0, stride, n_out).copy()
    arg = np.zeros(best.shape, dtype=np.int8 if k < 128 else np.int32)
    for tap in range(1, k):
        v = _tap(a, axis, tap, stride, n_out)
        better = v > best  # strict: ties keep the earlier tap, as argmax does
        np.maximum(best, v, out=best)
        arg *= ~better  # this arithmetic is ~10x faster than np.copyto(arg, tap, where=better)
        arg += better.astype(arg.dtype) * arg.dtype.type(tap)
    return best, arg


class Dropout(Layer):
    """Inverted dropout: in training, zero each value with probability ``rate`` and
    scale the rest by ``1 / (1 - rate)``; identity at inference.

    Parameters
    ----------
    rate : float in [0, 1)
    seed : int, numpy.random.Generator or None
    name : str, optional
    """

    def __init__(self, rate: float, seed=None, name: Optional[str] = None) -> None:
        super().__init__(name or "dropout")
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"rate must be in [0, 1), got {rate}")
        self.rate = float(rate)
        self._rng = layer_rng(seed)
        self._mask: Optional[np.ndarray] = None
        self._key: Optional[int] = None  # the C path's mask, recomputed from this key
        self._shape: Optional[tuple] = None

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Drop and rescale when ``training`` (see :meth:`Layer.forward`).

        On the C path the mask comes from a counter-based generator keyed by one draw
        from the layer's ``seed`` per call; it is never stored (backward recomputes it).
        """
        x = np.asarray(x)
        self._shape = x.shape
        self._key = None
        if not training or self.rate == 0.0:
            self._mask = None
            return x
        if _ops.native(x):
            self._mask = None
            self._key = int(self._rng.integers(0, 2**63, dtype=np.int64))
            return _ops.dropout(x, self.rate, self._key, out=self._buffer("y", x.shape, x.dtype))
        keep = self._rng.random(x.shape) >= self.rate
        self._mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - self.rate))
        return x * self._mask

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """The same mask and scale applied to the gradient."""
        self._need_forward(self._shape, grad_output, self._shape or ())
        g = np.asarray(grad_output)
        if self._key is not None:
            g = np.ascontiguousarray(g)
            if not _ops.native(g):
                g = g.astype(np.float64)
            return _ops.dropout(g, self.rate, self._key, backward=True,
                                out=self._buffer("gx", g.shape, g.dtype))
        return g if self._mask is None else g * self._mask


class Flatten(Layer):
    """Reshape ``(N, ...)`` to ``(N, prod(...))`` (C order).

    Parameters
    ----------
    name : str, optional
    """

    def __init__(self, name: Optional[str] = None) -> None:
        super().__init__(name or "flatten")
        self._shape: Optional[tuple] = None

    def compute_output_shape(self, input_shape: Sequence[Optional[int]]) -> Shape:
        """``(N, prod(input_shape[1:]))``."""
        return (input_shape[0], int(np.prod(input_shape[1:])))

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Flatten all but the batch axis."""
        x = np.asarray(x)
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """Reshape the gradient back to the input shape."""
        expected = None if self._shape is None else (self._shape[0], int(np.prod(self._shape[1:])))
        self._need_forward(self._shape, grad_output, expected)
        return np.asarray(grad_output).reshape(self._shape)


class Dense(Layer):
    """Fully connected layer ``y = x @ kernel + bias`` with Keras's arguments.

    Parameters
    ----------
    units : int
        Output features.
    use_bias : bool, default True
    kernel_initializer, bias_initializer : str or callable
        Default glorot_uniform (fans ``in``, ``units``) and zeros, as in Keras.
    dtype : {"float32", "float64"}
    seed : int, numpy.random.Generator or None
    in_features : int, optional
        Build the weights now instead of on the first call.
    name : str, optional
    activation : None or str
        Applied to the output, as Keras's ``activation=`` (see
        :mod:`fastconv.nn.activations`); None is linear.

    Attributes
    ----------
    params, grads : dict
        ``"kernel"`` of shape ``(in, units)`` and ``"bias"`` of shape ``(units,)``.
    """

    def __init__(self, units: int, use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", dtype="float32", seed=None,
                 in_features: Optional[int] = None, name: Optional[str] = None, activation=None) -> None:
        super().__init__(name or "dense")
        self.activation = activations.get(activation)  # applied last in forward, first in backward
        if not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"units must be a positive int, got {units!r}")
        self.units = int(units)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.dtype = param_dtype(dtype)
        self._rng = layer_rng(seed)
        self._x: Optional[np.ndarray] = None
        self.in_features: Optional[int] = None
        self.built = False
        if in_features is not None:
            self.build(in_features)

    def build(self, in_features: int) -> None:
        """Create ``kernel (in_features, units)`` and ``bias (units,)``.

        Parameters
        ----------
        in_features : int
        """
        self.in_features = int(in_features)
        shape = (self.in_features, self.units)
        self.params = {"kernel": np.ascontiguousarray(
            self.kernel_initializer(shape, dtype=self.dtype, rng=self._rng), dtype=self.dtype)}
        if self.use_bias:
            self.params["bias"] = np.ascontiguousarray(
                self.bias_initializer((self.units,), dtype=self.dtype, rng=self._rng), dtype=self.dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.built = True

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Set ``[kernel]`` or ``[kernel, bias]``; builds the layer if needed."""
        if not self.built:
            if len(weights) == 0 or np.ndim(weights[0]) != 2:
                raise ValueError(f"{self.name}: expected a 2-D kernel first")
            self.build(int(np.shape(weights[0])[0]))
        super().set_weights(weights)

    def compute_output_shape(self, input_shape: Sequence[Optional[int]]) -> Shape:
        """``(N, units)``."""
        if len(input_shape) != 2:
            raise ValueError(f"{self.name}: expected a 2-D input shape, got {tuple(input_shape)}")
        return (input_shape[0], self.units)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """``x @ kernel + bias`` for ``x`` of shape ``(N, in)``."""
        x = np.asarray(x, dtype=self.dtype)
        if x.ndim != 2:
            raise ValueError(f"{self.name}: expected a 2-D input (N, features), got shape {x.shape} "
                             "(put a Flatten before Dense)")
        if not self.built:
            self.build(x.shape[1])
        elif x.shape[1] != self.in_features:
            raise ValueError(f"{self.name}: built for {self.in_features} features, got {x.shape[1]}")
        self._x = x
        kernel = self.params["kernel"]
        if _ops.native(x, kernel):  # fastconv's GEMM on its own team: no BLAS pool wakes up
            y = self._buffer("y", (x.shape[0], self.units), x.dtype)
            y = _ops.gemm(x, kernel, np.empty((x.shape[0], self.units), x.dtype) if y is None else y)
        else:
            y = x @ kernel
        if self.use_bias:
            y += self.params["bias"]
        y = self._y = self.activation.forward_owned(y)  # y is this layer's own array
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """Store kernel/bias grads; return ``grad_output @ kernel.T``."""
        expected = None if self._x is None else (self._x.shape[0], self.units)
        self._need_forward(self._x, grad_output, expected)
        g = np.ascontiguousarray(self.activation.backward(np.asarray(grad_output, dtype=self.dtype), self._y))
        kernel = self.params["kernel"]
        if _ops.native(g, self._x, kernel):
            gw = self._grad_buffer("kernel")
            self.grads["kernel"] = _ops.gemm(self._x, g, np.empty_like(kernel) if gw is None else gw, trans_a=True)
            if self.use_bias:
                self.grads["bias"] = np.sum(g, axis=0, out=self._grad_buffer("bias"))
            if not self.input_grad:
                return None
            gx = self._buffer("gx", self._x.shape, self.dtype)
            return _ops.gemm(g, kernel, gx if gx is not None else np.empty(self._x.shape, self.dtype),
                             trans_b=True)
        self.grads["kernel"] = self._x.T @ g
        if self.use_bias:
            self.grads["bias"] = g.sum(axis=0)
        return g @ kernel.T
