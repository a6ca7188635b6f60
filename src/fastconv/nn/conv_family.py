"""Keras's other convolution layers on fastconv's kernels: Conv2DTranspose,
DepthwiseConv2D, SeparableConv2D and Conv1D.

Kernels are stored in fastconv's (PyTorch's) layouts; ``fastconv.nn.keras_io`` converts
to and from Keras's. Every layer takes Keras's ``data_format`` (default
``"channels_first"``, fastconv's native layout, as :class:`fastconv.nn.Conv2D`) and
``activation`` arguments.
"""

from __future__ import annotations

import importlib
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from .. import initializers
from .._spec import resolve_padding
from . import activations
from .base import Layer, Shape, int_pair, layer_rng, norm_padding, param_dtype, warn_if_other_layout

__all__ = ["Conv2DTranspose", "DepthwiseConv2D", "SeparableConv2D", "Conv1D"]


def _int1_or_zero(v) -> int:
    """Conv1D's explicit padding: an int >= 0 (or a 1-tuple of one), both ends alike."""
    if isinstance(v, (tuple, list)) and len(v) == 1:
        v = v[0]
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 0:
        raise ValueError(f"padding must be 'valid', 'same', 'causal' or an int >= 0 for Conv1D, got {v!r}")
    return int(v)


def _int1(v, what: str) -> int:
    """A positive int, or a 1-tuple of one (Keras writes ``kernel_size=(3,)`` for Conv1D)."""
    if isinstance(v, (tuple, list)) and len(v) == 1:
        v = v[0]
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{what} must be a positive int, got {v!r}")
    return int(v)


def _fc():
    """fastconv's functions, imported on first use (fastconv.nn loads without the extension)."""
    return importlib.import_module("fastconv")


def _check_format(data_format: str) -> str:
    if data_format not in ("channels_first", "channels_last"):
        raise ValueError(f"data_format must be 'channels_first' or 'channels_last', got {data_format!r}")
    return data_format


class _ConvBase(Layer):
    """Shared machinery: dtype, data_format transposes, lazy build, bias and activation.

    Subclasses define ``_param_shapes(c_in)`` (name -> (shape, initializer, fan)) and the
    NCHW passes ``_forward(x)`` and ``_backward(gy) -> gx`` (filling :attr:`grads`).
    """

    def __init__(self, name, data_format, activation, use_bias, bias_initializer, dtype, seed,
                 in_channels) -> None:
        super().__init__(name)
        self.data_format = _check_format(data_format)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.bias_initializer = initializers.get(bias_initializer)
        self.dtype = param_dtype(dtype)
        self._rng = layer_rng(seed)
        self._x: Optional[np.ndarray] = None
        self._y: Optional[np.ndarray] = None
        self.in_channels: Optional[int] = None
        self.built = False
        self._in_channels_arg = in_channels

    def _finish_init(self) -> None:
        if self._in_channels_arg is not None:
            self.build(self._in_channels_arg)

    # -- weights
    def _param_shapes(self, c_in: int) -> Dict[str, tuple]:
        raise NotImplementedError

    def _bias_size(self) -> int:
        raise NotImplementedError

    def build(self, in_channels: int) -> None:
        """Create the weights for ``in_channels`` input channels.

        Parameters
        ----------
        in_channels : int
        """
        if not isinstance(in_channels, (int, np.integer)) or in_channels < 1:
            raise ValueError(f"{self.name}: input channels must be a positive int, got {in_channels!r}")
        self.in_channels = int(in_channels)
        self.params = {}
        for key, (shape, init) in self._param_shapes(self.in_channels).items():
            w = np.asarray(init(shape, dtype=self.dtype, rng=self._rng), dtype=self.dtype)
            self.params[key] = np.ascontiguousarray(w)
        if self.use_bias:
            b = self.bias_initializer((self._bias_size(),), dtype=self.dtype, rng=self._rng)
            self.params["bias"] = np.ascontiguousarray(b, dtype=self.dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.built = True

    def build_for_input_shape(self, input_shape: Sequence[Optional[int]]) -> None:
        """Build from an input shape in the layer's data format (for ``Sequential.summary``)."""
        if not self.built:
            self.build(int(input_shape[self._channel_axis(len(input_shape))]))

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Set the arrays in :attr:`params` order; builds the layer from the first if needed."""
        if not self.built:
            if len(weights) == 0:
                raise ValueError(f"{self.name}: expected the kernel first")
            self.build(self._channels_from_kernel(np.shape(weights[0])))
        super().set_weights(weights)

    def _channels_from_kernel(self, shape) -> int:
        raise NotImplementedError

    # -- layout
    def _channel_axis(self, ndim: int = 4) -> int:
        return 1 if self.data_format == "channels_first" else ndim - 1

    def _to_nchw(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if self.data_format == "channels_last" else x

    def _from_nchw(self, y: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(y.transpose(0, 2, 3, 1)) if self.data_format == "channels_last" else y

    def _spatial(self, input_shape) -> Tuple[int, int]:
        return tuple(input_shape[2:4]) if self.data_format == "channels_first" else tuple(input_shape[1:3])

    def _shape_out(self, n, c, hw) -> Shape:
        return (n, c, *hw) if self.data_format == "channels_first" else (n, *hw, c)

    # -- passes
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Apply the layer to a 4-D batch in its data format (builds on the first call)."""
        x = np.asarray(x, dtype=self.dtype)
        if x.ndim != 4:
            raise ValueError(f"{self.name}: expected a 4-D input, got shape {x.shape}")
        c = x.shape[self._channel_axis()]
        if not self.built:
            warn_if_other_layout(self, x.shape, self.data_format)
            self.build(c)
        elif c != self.in_channels:
            raise ValueError(f"{self.name}: built for {self.in_channels} input channels, got {c} "
                             f"(input shape {x.shape}, data_format={self.data_format!r})")
        self._x = self._to_nchw(x)
        y = self._forward(self._x)
        if self.use_bias:
            y += self.params["bias"].reshape(1, -1, 1, 1)
        self._y = self.activation.forward(self._from_nchw(y))
        return self._y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """Gradient w.r.t. the last input; fills :attr:`grads`."""
        self._need_forward(self._x, grad_output, getattr(self._y, "shape", ()))
        g = self.activation.backward(np.asarray(grad_output, dtype=self.dtype), self._y)
        gy = self._to_nchw(np.asarray(g, dtype=self.dtype))
        if self.use_bias:
            self.grads["bias"] = gy.sum(axis=(0, 2, 3))
        return self._from_nchw(self._backward(gy))


class Conv2DTranspose(_ConvBase):
    """Transposed 2-D convolution with Keras's arguments (and PyTorch's explicit padding).

    Parameters
    ----------
    filters : int
        Output channels.
    kernel_size, strides, dilation_rate : int or (int, int)
    padding : "valid", "same", int or (int, int)
        ``"valid"``/``"same"``: Keras's (TensorFlow's) semantics, output
        ``(in - 1) * s + k`` (at least ``in * s``) or ``in * s`` without ``output_padding``.
        An int or a pair: PyTorch's ``ConvTranspose2d`` padding.
    output_padding : None, int or (int, int)
        Extra rows/columns at the bottom/right; smaller than the stride (or dilation).
    groups : int, default 1
    data_format, activation, use_bias, kernel_initializer, bias_initializer, dtype, seed, in_channels, name
        As :class:`fastconv.nn.Conv2D`.

    Attributes
    ----------
    params : dict
        ``"kernel"`` ``(C_in, filters/groups, kh, kw)`` (PyTorch's layout; Keras's is
        ``(kh, kw, filters, C_in)``) and ``"bias"`` ``(filters,)``.
    """

    def __init__(self, filters: int, kernel_size, strides=1, padding="valid", output_padding=None,
                 data_format: str = "channels_first", dilation_rate=1, groups: int = 1,
                 activation=None, use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", dtype="float32", seed=None,
                 in_channels: Optional[int] = None, name: Optional[str] = None) -> None:
        super().__init__(name or "conv2d_transpose", data_format, activation, use_bias,
                         bias_initializer, dtype, seed, in_channels)
        if not isinstance(filters, (int, np.integer)) or filters < 1:
            raise ValueError(f"filters must be a positive int, got {filters!r}")
        if not isinstance(groups, (int, np.integer)) or groups < 1 or filters % groups:
            raise ValueError(f"groups must be a positive int dividing filters={filters}, got {groups!r}")
        self.filters, self.groups = int(filters), int(groups)
        self.kernel_size = int_pair(kernel_size, "kernel_size")
        self.strides = int_pair(strides, "strides")
        self.dilation_rate = int_pair(dilation_rate, "dilation_rate")
        self.padding = norm_padding(padding)
        self.output_padding = None if output_padding is None else (
            (int(output_padding),) * 2 if isinstance(output_padding, (int, np.integer)) else tuple(output_padding))
        if self.output_padding is not None:
            for a in range(2):
                if not 0 <= self.output_padding[a] < max(self.strides[a], self.dilation_rate[a]):
                    raise ValueError(f"output_padding must be >= 0 and smaller than the stride or the dilation, "
                                     f"got output_padding={output_padding!r} with strides={self.strides}")
        if not isinstance(self.padding, str):
            self._int_padding()
        self.kernel_initializer = initializers.get(kernel_initializer)
        self._finish_init()

    def _param_shapes(self, c_in):
        if c_in % self.groups:
            raise ValueError(f"{self.name}: input channels {c_in} not divisible by groups={self.groups}")
        return {"kernel": ((c_in, self.filters // self.groups, *self.kernel_size), self.kernel_initializer)}

    def _bias_size(self):
        return self.filters

    def _channels_from_kernel(self, shape):
        return int(shape[0])

    def _out_hw(self, hw) -> Tuple[int, int]:
        """Keras's ``compute_conv_transpose_output_shape`` (string padding) or PyTorch's."""
        out = []
        for a in range(2):
            k = (self.kernel_size[a] - 1) * self.dilation_rate[a] + 1
            s = self.strides[a]
            op = None if self.output_padding is None else self.output_padding[a]
            if isinstance(self.padding, str):
                if op is None:
                    n = hw[a] * s + (max(k - s, 0) if self.padding == "valid" else 0)
                else:
                    pad = k // 2 if self.padding == "same" else 0
                    n = (hw[a] - 1) * s + k - 2 * pad + op
            else:
                p = self._int_padding()[a]
                n = (hw[a] - 1) * s - 2 * p + k + (op or 0)
            out.append(n)
        return out[0], out[1]

    def compute_output_shape(self, input_shape):
        """Output shape for a 4-D ``input_shape`` in the layer's data format."""
        return self._shape_out(input_shape[0], self.filters, self._out_hw(self._spatial(input_shape)))

    def _int_padding(self) -> Tuple[int, int]:
        p = self.padding
        t = (p, p) if isinstance(p, (int, np.integer)) else tuple(p)
        if len(t) != 2 or not all(isinstance(i, (int, np.integer)) and i >= 0 for i in t):
            raise ValueError(f"padding must be 'valid', 'same', an int or a pair of ints >= 0, got {p!r}")
        return int(t[0]), int(t[1])

    def _torch_args(self):
        return (self.strides, self._int_padding(), self.output_padding or 0, self.groups, self.dilation_rate)

    def _forward(self, x):
        fc = _fc()
        if not isinstance(self.padding, str):
            return fc.conv_transpose2d(x, self.params["kernel"], None, *self._torch_args())
        out = (x.shape[0], self.filters, *self._out_hw(x.shape[2:]))
        try:
            return fc.conv2d_input_grad(x, self.params["kernel"], out, self.strides, self.padding,
                                        self.dilation_rate, self.groups)
        except ValueError as exc:
            raise ValueError(f"{self.name}: output size {out[2:]} does not map back to the input "
                             f"{x.shape[2:]} with padding {self.padding!r}: {exc}") from None

    def _backward(self, gy):
        fc = _fc()
        w = self.params["kernel"]
        if not isinstance(self.padding, str):
            gx, gw, _ = fc.conv_transpose2d_backward(gy, self._x, w, *self._torch_args(), bias=False)
        else:
            args = (self.strides, self.padding, self.dilation_rate, self.groups)
            gx = fc.conv2d(gy, w, None, *args)
            gw = fc.conv2d_weight_grad(self._x, gy, w.shape, *args)
        self.grads["kernel"] = gw
        return gx


class DepthwiseConv2D(_ConvBase):
    """Depthwise 2-D convolution (Keras's): each input channel convolved with its own
    ``depth_multiplier`` filters; output channel ``c * depth_multiplier + m``.

    Parameters
    ----------
    kernel_size, strides, dilation_rate : int or (int, int)
    padding : "valid", "same", int, pair or ((top, bottom), (left, right))
    depth_multiplier : int, default 1
    data_format, activation, use_bias, bias_initializer, dtype, seed, in_channels, name
        As :class:`fastconv.nn.Conv2D`.
    depthwise_initializer : str or callable, default "glorot_uniform"

    Attributes
    ----------
    params : dict
        ``"depthwise_kernel"`` ``(C_in * depth_multiplier, 1, kh, kw)`` (a grouped conv2d
        weight; Keras's is ``(kh, kw, C_in, depth_multiplier)``) and ``"bias"``.
    """

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier: int = 1,
                 data_format: str = "channels_first", dilation_rate=1, activation=None,
                 use_bias: bool = True, depthwise_initializer="glorot_uniform", bias_initializer="zeros",
                 dtype="float32", seed=None, in_channels: Optional[int] = None,
                 name: Optional[str] = None) -> None:
        super().__init__(name or "depthwise_conv2d", data_format, activation, use_bias,
                         bias_initializer, dtype, seed, in_channels)
        if not isinstance(depth_multiplier, (int, np.integer)) or depth_multiplier < 1:
            raise ValueError(f"depth_multiplier must be a positive int, got {depth_multiplier!r}")
        self.depth_multiplier = int(depth_multiplier)
        self.kernel_size = int_pair(kernel_size, "kernel_size")
        self.strides = int_pair(strides, "strides")
        self.dilation_rate = int_pair(dilation_rate, "dilation_rate")
        self.padding = norm_padding(padding)
        self.depthwise_initializer = initializers.get(depthwise_initializer)
        self._finish_init()

    def _param_shapes(self, c_in):
        return {"depthwise_kernel": ((c_in * self.depth_multiplier, 1, *self.kernel_size),
                                     self.depthwise_initializer)}

    def _bias_size(self):
        return self.in_channels * self.depth_multiplier

    def _channels_from_kernel(self, shape):
        return int(shape[0]) // self.depth_multiplier

    def _args(self):
        return (self.strides, self.padding, self.dilation_rate, self.in_channels)

    def compute_output_shape(self, input_shape):
        """Output shape for a 4-D ``input_shape`` in the layer's data format."""
        c = input_shape[self._channel_axis()]
        return self._shape_out(input_shape[0], c * self.depth_multiplier,
                               _conv_out_hw(self._spatial(input_shape), self.kernel_size, self.strides,
                                            self.padding, self.dilation_rate))

    def _forward(self, x):
        return _fc().conv2d(x, self.params["depthwise_kernel"], None, *self._args())

    def _backward(self, gy):
        gx, gw, _ = _fc().conv2d_backward(gy, self._x, self.params["depthwise_kernel"], *self._args(), bias=False)
        self.grads["depthwise_kernel"] = gw
        return gx


def _conv_out_hw(hw, kernel, strides, padding, dilation) -> Tuple[int, int]:
    pads = resolve_padding(padding, hw, kernel, strides, dilation)
    return tuple((hw[a] + pads[2 * a] + pads[2 * a + 1] - dilation[a] * (kernel[a] - 1) - 1) // strides[a] + 1
                 for a in range(2))


class SeparableConv2D(_ConvBase):
    """Depthwise then pointwise (1x1) convolution, Keras's ``SeparableConv2D``.

    Parameters
    ----------
    filters : int
    kernel_size, strides, padding, dilation_rate, depth_multiplier
        Of the depthwise step (as :class:`DepthwiseConv2D`).
    data_format, activation, use_bias, bias_initializer, dtype, seed, in_channels, name
        As :class:`fastconv.nn.Conv2D`.
    depthwise_initializer, pointwise_initializer : str or callable

    Attributes
    ----------
    params : dict
        ``"depthwise_kernel"`` ``(C_in * depth_multiplier, 1, kh, kw)``,
        ``"pointwise_kernel"`` ``(filters, C_in * depth_multiplier, 1, 1)`` and ``"bias"``
        (Keras: ``(kh, kw, C_in, dm)``, ``(1, 1, C_in * dm, filters)``).
    """

    def __init__(self, filters: int, kernel_size, strides=1, padding="valid", data_format: str = "channels_first",
                 dilation_rate=1, depth_multiplier: int = 1, activation=None, use_bias: bool = True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", dtype="float32", seed=None, in_channels: Optional[int] = None,
                 name: Optional[str] = None) -> None:
        super().__init__(name or "separable_conv2d", data_format, activation, use_bias,
                         bias_initializer, dtype, seed, in_channels)
        if not isinstance(filters, (int, np.integer)) or filters < 1:
            raise ValueError(f"filters must be a positive int, got {filters!r}")
        if not isinstance(depth_multiplier, (int, np.integer)) or depth_multiplier < 1:
            raise ValueError(f"depth_multiplier must be a positive int, got {depth_multiplier!r}")
        self.filters, self.depth_multiplier = int(filters), int(depth_multiplier)
        self.kernel_size = int_pair(kernel_size, "kernel_size")
        self.strides = int_pair(strides, "strides")
        self.dilation_rate = int_pair(dilation_rate, "dilation_rate")
        self.padding = norm_padding(padding)
        self.depthwise_initializer = initializers.get(depthwise_initializer)
        self.pointwise_initializer = initializers.get(pointwise_initializer)
        self._mid: Optional[np.ndarray] = None
        self._finish_init()

    def _param_shapes(self, c_in):
        m = c_in * self.depth_multiplier
        return {"depthwise_kernel": ((m, 1, *self.kernel_size), self.depthwise_initializer),
                "pointwise_kernel": ((self.filters, m, 1, 1), self.pointwise_initializer)}

    def _bias_size(self):
        return self.filters

    def _channels_from_kernel(self, shape):
        return int(shape[0]) // self.depth_multiplier

    def compute_output_shape(self, input_shape):
        """Output shape for a 4-D ``input_shape`` in the layer's data format."""
        return self._shape_out(input_shape[0], self.filters,
                               _conv_out_hw(self._spatial(input_shape), self.kernel_size, self.strides,
                                            self.padding, self.dilation_rate))

    def _args(self):
        return (self.strides, self.padding, self.dilation_rate, self.in_channels)

    def _forward(self, x):
        fc = _fc()
        self._mid = fc.conv2d(x, self.params["depthwise_kernel"], None, *self._args())
        return fc.conv2d(self._mid, self.params["pointwise_kernel"])

    def _backward(self, gy):
        fc = _fc()
        g_mid, gpw, _ = fc.conv2d_backward(gy, self._mid, self.params["pointwise_kernel"], bias=False)
        gx, gdw, _ = fc.conv2d_backward(g_mid, self._x, self.params["depthwise_kernel"], *self._args(), bias=False)
        self.grads["pointwise_kernel"], self.grads["depthwise_kernel"] = gpw, gdw
        return gx


class Conv1D(_ConvBase):
    """1-D convolution (Keras's ``Conv1D``), run on the 2-D kernels with a height of 1.

    Parameters
    ----------
    filters : int
    kernel_size, strides, dilation_rate : int
    padding : "valid", "same", "causal" or int
        ``"causal"`` pads ``dilation_rate * (kernel_size - 1)`` on the left only.
    groups : int, default 1
    data_format : {"channels_last", "channels_first"}, default "channels_last"
        ``(N, steps, C)`` as Keras, or ``(N, C, steps)`` as PyTorch.
    activation, use_bias, kernel_initializer, bias_initializer, dtype, seed, in_channels, name
        As :class:`fastconv.nn.Conv2D`.

    Attributes
    ----------
    params : dict
        ``"kernel"`` ``(filters, C_in/groups, 1, k)`` (Keras: ``(k, C_in/groups, filters)``)
        and ``"bias"`` ``(filters,)``.
    """

    def __init__(self, filters: int, kernel_size, strides=1, padding="valid", data_format: str = "channels_last",
                 dilation_rate=1, groups: int = 1, activation=None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", dtype="float32", seed=None,
                 in_channels: Optional[int] = None, name: Optional[str] = None) -> None:
        super().__init__(name or "conv1d", data_format, activation, use_bias, bias_initializer, dtype,
                         seed, in_channels)
        if not isinstance(filters, (int, np.integer)) or filters < 1:
            raise ValueError(f"filters must be a positive int, got {filters!r}")
        if not isinstance(groups, (int, np.integer)) or groups < 1 or filters % groups:
            raise ValueError(f"groups must be a positive int dividing filters={filters}, got {groups!r}")
        self.filters, self.groups = int(filters), int(groups)
        self.kernel_size = _int1(kernel_size, "kernel_size")
        self.strides = _int1(strides, "strides")
        self.dilation_rate = _int1(dilation_rate, "dilation_rate")
        # one length axis: one int, not norm_padding's pairs
        self.padding = norm_padding(padding, ("valid", "same", "causal")) if isinstance(padding, str) \
            else _int1_or_zero(padding)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self._finish_init()

    def _param_shapes(self, c_in):
        if c_in % self.groups:
            raise ValueError(f"{self.name}: input channels {c_in} not divisible by groups={self.groups}")
        return {"kernel": ((self.filters, c_in // self.groups, 1, self.kernel_size), self.kernel_initializer)}

    def _bias_size(self):
        return self.filters

    def _channels_from_kernel(self, shape):
        return int(shape[1]) * self.groups

    def _pad2d(self):
        if self.padding == "causal":
            return ((0, 0), (self.dilation_rate * (self.kernel_size - 1), 0))
        if isinstance(self.padding, str):
            return self.padding
        p = int(self.padding)
        return ((0, 0), (p, p))

    def _args(self):
        return ((1, self.strides), self._pad2d(), (1, self.dilation_rate), self.groups)

    def _channel_axis(self, ndim: int = 3) -> int:
        return 1 if self.data_format == "channels_first" else ndim - 1

    def compute_output_shape(self, input_shape):
        """Output shape for a 3-D ``input_shape`` in the layer's data format."""
        steps = input_shape[2] if self.data_format == "channels_first" else input_shape[1]
        _, ow = _conv_out_hw((1, steps), (1, self.kernel_size), (1, self.strides), self._pad2d(),
                             (1, self.dilation_rate))
        n = input_shape[0]
        return (n, self.filters, ow) if self.data_format == "channels_first" else (n, ow, self.filters)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Convolve a 3-D batch ``(N, steps, C)`` (or ``(N, C, steps)``)."""
        x = np.asarray(x, dtype=self.dtype)
        if x.ndim != 3:
            raise ValueError(f"{self.name}: expected a 3-D input, got shape {x.shape}")
        c = x.shape[self._channel_axis()]
        if not self.built:
            warn_if_other_layout(self, x.shape, self.data_format)
            self.build(c)
        elif c != self.in_channels:
            raise ValueError(f"{self.name}: built for {self.in_channels} input channels, got {c}")
        ncl = x if self.data_format == "channels_first" else x.transpose(0, 2, 1)
        self._x = np.ascontiguousarray(ncl[:, :, None])  # (N, C, 1, steps)
        y = _fc().conv2d(self._x, self.params["kernel"], self.params.get("bias"), *self._args())[:, :, 0]
        self._y = self.activation.forward(y if self.data_format == "channels_first"
                                          else np.ascontiguousarray(y.transpose(0, 2, 1)))
        return self._y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """Gradient w.r.t. the last input; fills :attr:`grads`."""
        self._need_forward(self._x, grad_output, getattr(self._y, "shape", ()))
        g = self.activation.backward(np.asarray(grad_output, dtype=self.dtype), self._y)
        g = g if self.data_format == "channels_first" else g.transpose(0, 2, 1)
        gy = np.ascontiguousarray(g[:, :, None])
        gx, gw, gb = _fc().conv2d_backward(gy, self._x, self.params["kernel"], *self._args(), bias=self.use_bias)
        self.grads["kernel"] = gw
        if self.use_bias:
            self.grads["bias"] = gb
        gx = gx[:, :, 0]
        return gx if self.data_format == "channels_first" else np.ascontiguousarray(gx.transpose(0, 2, 1))
