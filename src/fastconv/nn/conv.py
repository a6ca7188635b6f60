"""The trainable, Keras-style ``Conv2D`` layer on fastconv's kernels."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from .. import initializers
from .._spec import resolve_padding  # the one place padding forms are understood
from . import activations
from .base import Layer, Shape, image_shape, int_pair, layer_rng, norm_padding, param_dtype, warn_if_other_layout

__all__ = ["Conv2D", "resolve_kernels"]

IntOrPair = Union[int, Tuple[int, int]]


def _checked_algorithm(algorithm):
    """The name, checked against fastconv's list now rather than at the first call (where the
    C extension is not built, at the first call as before)."""
    try:
        from ..functional import _algorithm_code
    except ImportError:
        return algorithm
    _algorithm_code(algorithm)
    return algorithm


def resolve_kernels(kernels) -> Tuple[ModuleType, bool]:
    """Find the module that provides ``conv2d`` and ``conv2d_backward``.

    Parameters
    ----------
    kernels : None, "fastconv", "reference" or module-like
        None / "fastconv": the C kernels (``fastconv.conv2d``); "reference": the
        pure-NumPy ``fastconv.reference``; anything else with ``conv2d`` and
        ``conv2d_backward`` attributes is used as is.

    Returns
    -------
    module, takes_algorithm : module-like, bool
        Whether ``algorithm=`` may be passed to its functions.
    """
    if kernels is None or kernels == "fastconv":
        # imported on first use so that fastconv.nn loads even before the extension is built
        mod = importlib.import_module("fastconv")
        if not (hasattr(mod, "conv2d") and hasattr(mod, "conv2d_backward")):
            raise RuntimeError("fastconv's C kernels are not available (is the extension built? "
                               "`pip install .` or `python setup.py build_ext --inplace`); "
                               "use kernels='reference' for the pure-NumPy ones")
        return mod, True
    if kernels == "reference":
        return importlib.import_module("fastconv.reference"), False
    if isinstance(kernels, str):
        raise ValueError(f"kernels must be 'fastconv' or 'reference', got {kernels!r}")
    if not (hasattr(kernels, "conv2d") and hasattr(kernels, "conv2d_backward")):
        raise ValueError("kernels must be 'fastconv', 'reference' or an object with "
                         "conv2d and conv2d_backward")
    return kernels, False


class Conv2D(Layer):
    """2D convolution layer with Keras's arguments, trained through fastconv's kernels.

    Parameters
    ----------
    filters : int
        Number of output channels.
    kernel_size : int or (int, int)
    strides : int or (int, int), default 1
    padding : "valid", "same", int, (ph, pw) or ((top, bottom), (left, right))
        ``"same"`` follows Keras/TensorFlow (output ``ceil(in / stride)``).
    dilation_rate : int or (int, int), default 1
    groups : int, default 1
        Both the input channels and ``filters`` must be divisible by it.
    use_bias : bool, default True
    kernel_initializer, bias_initializer : str or callable
        Names from :mod:`fastconv.initializers` or callables ``(shape, dtype, rng)``.
    data_format : {"channels_first", "channels_last"}
        NCHW (fastconv's native layout) or NHWC in and out (Keras's default layout);
        the transposes happen inside the layer.
    algorithm : str, default "auto"
        Passed to fastconv's kernels (ignored by the reference kernels).
    dtype : {"float32", "float64"}
        dtype of the weights and of the computation (inputs are cast to it).
    seed : int, numpy.random.Generator or None
        Seeds the initializers.
    in_channels : int, optional
        Build the weights now instead of on the first call.
    kernels : None, "fastconv", "reference" or module-like
        Which conv implementation to call (see :func:`resolve_kernels`).
    activation : None or str
        Applied to the output, as Keras's ``activation=`` (see
        :mod:`fastconv.nn.activations`); None is linear.

    Attributes
    ----------
    params, grads : dict
        ``"kernel"`` of shape ``(filters, C_in/groups, kh, kw)`` and, with a bias,
        ``"bias"`` of shape ``(filters,)``.

    Examples
    --------
    >>> layer = Conv2D(32, 3, seed=0)
    >>> y = layer(np.zeros((2, 1, 28, 28), np.float32))
    >>> y.shape
    (2, 32, 26, 26)
    """

    def __init__(self, filters: int, kernel_size: IntOrPair, strides: IntOrPair = 1,
                 padding="valid", dilation_rate: IntOrPair = 1, groups: int = 1,
                 use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", data_format: str = "channels_first",
                 algorithm: str = "auto", dtype="float32", seed=None,
                 in_channels: Optional[int] = None, kernels=None,
                 name: Optional[str] = None, activation=None) -> None:
        super().__init__(name or "conv2d")
        self.activation = activations.get(activation)  # applied last in forward, first in backward
        if not isinstance(filters, (int, np.integer)) or filters < 1:
            raise ValueError(f"filters must be a positive int, got {filters!r}")
        if not isinstance(groups, (int, np.integer)) or groups < 1 or filters % groups:
            raise ValueError(f"groups must be a positive int dividing filters={filters}, got {groups!r}")
        if data_format not in ("channels_first", "channels_last"):
            raise ValueError(f"data_format must be 'channels_first' or 'channels_last', got {data_format!r}")
        self.dtype = param_dtype(dtype)
        self.filters = int(filters)
        self.kernel_size = int_pair(kernel_size, "kernel_size")
        self.strides = int_pair(strides, "strides")
        self.padding = norm_padding(padding)
        self.dilation_rate = int_pair(dilation_rate, "dilation_rate")
        self.groups = int(groups)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.data_format = data_format
        self.algorithm = _checked_algorithm(algorithm)
        self.kernels = kernels
        self._rng = layer_rng(seed)
        self._backend: Optional[Tuple[ModuleType, bool]] = None
        self._x: Optional[np.ndarray] = None  # NCHW input of the last forward
        self._y_shape: Optional[tuple] = None  # output shape of the last forward, user's layout
        self.in_channels: Optional[int] = None
        self.built = False
        if in_channels is not None:
            self.build(in_channels)

    # ------------------------------------------------------------------ weights
    def build(self, in_channels: int) -> None:
        """Create the kernel ``(filters, in_channels/groups, kh, kw)`` and the bias.

        Parameters
        ----------
        in_channels : int
            Number of input channels (divisible by ``groups``).
        """
        if not isinstance(in_channels, (int, np.integer)) or in_channels < 1 or in_channels % self.groups:
            raise ValueError(f"{self.name}: input channels must be a positive multiple of "
                             f"groups={self.groups}, got {in_channels!r}")
        self.in_channels = int(in_channels)
        shape = (self.filters, self.in_channels // self.groups, *self.kernel_size)
        kernel = np.asarray(self.kernel_initializer(shape, dtype=self.dtype, rng=self._rng), dtype=self.dtype)
        if kernel.shape != shape:
            raise ValueError(f"{self.name}: kernel_initializer returned shape {kernel.shape}, expected {shape}")
        self.params = {"kernel": np.ascontiguousarray(kernel)}
        if self.use_bias:
            bias = self.bias_initializer((self.filters,), dtype=self.dtype, rng=self._rng)
            self.params["bias"] = np.ascontiguousarray(bias, dtype=self.dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.built = True

    @property
    def kernel(self) -> np.ndarray:
        """The filters, shape ``(filters, C_in/groups, kh, kw)`` (after build)."""
        self._require_built()
        return self.params["kernel"]

    @property
    def bias(self) -> Optional[np.ndarray]:
        """The bias, shape ``(filters,)``, or None without one (after build)."""
        self._require_built()
        return self.params.get("bias")

    def _require_built(self) -> None:
        if not self.built:
            raise ValueError(f"{self.name}: the layer has no weights yet; call it on an input, "
                             "or pass in_channels=")

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Set ``[kernel]`` or ``[kernel, bias]``; builds the layer if needed.

        Parameters
        ----------
        weights : sequence of array_like
            ``kernel`` of shape ``(filters, C_in/groups, kh, kw)`` then, with a bias,
            ``bias`` of shape ``(filters,)``.
        """
        if not self.built:
            if len(weights) == 0 or np.ndim(weights[0]) != 4:
                raise ValueError(f"{self.name}: expected a 4-D kernel first")
            self.build(int(np.shape(weights[0])[1]) * self.groups)
        super().set_weights(weights)

    # ------------------------------------------------------------------ shapes
    def _channel_axis(self) -> int:
        return 1 if self.data_format == "channels_first" else 3

    def compute_output_shape(self, input_shape: Sequence[Optional[int]]) -> Shape:
        """Output shape for ``input_shape`` in the layer's data format.

        Parameters
        ----------
        input_shape : 4 ints (the batch may be None)
            ``(N, C, H, W)`` or, for channels_last, ``(N, H, W, C)``.

        Returns
        -------
        tuple
        """
        n, _, h, w = image_shape(self, input_shape)
        pads = resolve_padding(self.padding, (h, w), self.kernel_size, self.strides, self.dilation_rate)
        out = []
        for axis, size in enumerate((h, w)):
            k, s, d = self.kernel_size[axis], self.strides[axis], self.dilation_rate[axis]
            lo, hi = pads[2 * axis], pads[2 * axis + 1]
            o = (size + lo + hi - d * (k - 1) - 1) // s + 1
            if o < 1:
                raise ValueError(f"{self.name}: input {tuple(input_shape)} is smaller than the "
                                 f"(dilated) kernel {self.kernel_size}")
            out.append(o)
        if self.data_format == "channels_first":
            return (n, self.filters, out[0], out[1])
        return (n, out[0], out[1], self.filters)

    # ------------------------------------------------------------------ passes
    def _kernels(self) -> Tuple[ModuleType, bool]:
        if self._backend is None:
            self._backend = resolve_kernels(self.kernels)
        return self._backend

    def _conv_args(self) -> tuple:
        return (self.strides, self.padding, self.dilation_rate, self.groups)

    def _fuses_relu(self) -> bool:
        """Whether fastconv's kernels can apply a ReLU in this layer's forward (its own
        ``activation="relu"``, or a ReLU layer after it: :meth:`forward_then_relu`)."""
        return self._kernels()[1] and self.data_format == "channels_first"

    def forward_then_relu(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """``max(forward(x), 0)`` for a linear layer that a ReLU layer follows (see
        :meth:`Sequential.forward <fastconv.nn.Sequential.forward>`): the ReLU is the
        kernels' post-op, so the output is written once and not read again. The ReLU layer
        then takes the result with ``take_relu_output``."""
        if self.activation.name != "linear" or not self._fuses_relu():
            raise ValueError(f"{self.name}: forward_then_relu needs a linear layer on fastconv's "
                             f"kernels in channels_first")
        return self._forward(self._nchw_input(x), relu=True)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Convolve a batch (builds the weights on the first call).

        Parameters
        ----------
        x : array_like
            ``(N, C, H, W)`` or, for channels_last, ``(N, H, W, C)``; cast to the layer dtype.
        training : bool
            Unused (kept for the layer protocol).

        Returns
        -------
        y : ndarray
            ``(N, filters, OH, OW)`` or ``(N, OH, OW, filters)``, the layer dtype.
        """
        return self._forward(self._nchw_input(x), relu=False)

    def _nchw_input(self, x: np.ndarray) -> np.ndarray:
        """``x`` checked, in the layer dtype and NCHW (builds the weights on the first call)."""
        x = np.asarray(x, dtype=self.dtype)
        if x.ndim != 4:
            raise ValueError(f"{self.name}: expected a 4-D input, got shape {x.shape}")
        channels = x.shape[self._channel_axis()]
        if not self.built:
            warn_if_other_layout(self, x.shape, self.data_format)
            self.build(channels)
        elif channels != self.in_channels:
            raise ValueError(f"{self.name}: built for {self.in_channels} input channels, got "
                             f"{channels} (input shape {x.shape}, data_format={self.data_format!r})")
        self.compute_output_shape(x.shape)  # clear error for too-small inputs
        if self.data_format == "channels_last":
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return x

    def _forward(self, x: np.ndarray, relu: bool) -> np.ndarray:
        """The convolution of an NCHW ``x``, then the activation (and a ReLU post-op when
        ``relu``: the caller's ReLU layer, this layer being linear)."""
        mod, takes_algorithm = self._kernels()
        extra = {"algorithm": self.algorithm} if takes_algorithm else {}
        if takes_algorithm and self.reuse_buffers and self.data_format == "channels_first":
            extra["out"] = self._buffer("y", self.compute_output_shape(x.shape), self.dtype)
        own_relu = self.activation.name == "relu" and self._fuses_relu()
        if relu or own_relu:  # in the kernels' store, not a pass of its own over y
            extra["activation"] = "relu"
        y = mod.conv2d(x, self.params["kernel"], self.params.get("bias"), *self._conv_args(), **extra)
        if self.data_format == "channels_last":
            y = np.ascontiguousarray(y.transpose(0, 2, 3, 1))
        self._x = x
        self._y_shape = y.shape
        # y is this layer's own array: the activation may work in place
        y = self._y = y if own_relu else self.activation.forward_owned(y)
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """Gradients of the last forward: returns grad_x, stores grads of kernel and bias.

        One call to the kernels' ``conv2d_backward`` gives all three gradients.

        Parameters
        ----------
        grad_output : array_like
            Same shape as the last forward output.

        Returns
        -------
        grad_x : ndarray
            Same shape and layout as the last forward input.
        """
        return self._backward(grad_output, through_relu=False)

    def backward_through_relu(self, grad_output: np.ndarray) -> Optional[np.ndarray]:
        """``backward``, with grad_x returned through the ReLU whose output was this layer's
        input (zero where the input is <= 0): the mask is applied where the kernels store
        grad_x, and that ReLU layer's backward then passes the result on as it is (see
        :meth:`Sequential.backward <fastconv.nn.Sequential.backward>`)."""
        if not self._fuses_relu():
            raise ValueError(f"{self.name}: backward_through_relu needs fastconv's kernels in channels_first")
        return self._backward(grad_output, through_relu=True)

    def backward_after_relu(self, grad_output: np.ndarray, through_relu: bool = False) -> Optional[np.ndarray]:
        """``backward`` for a layer with ``activation="relu"`` whose ReLU the layer after it has
        applied to ``grad_output`` already (returning its own input gradient through it, see
        :meth:`Sequential.backward <fastconv.nn.Sequential.backward>`); ``through_relu`` as
        in :meth:`backward_through_relu`."""
        if self.activation.name != "relu" or (through_relu and not self._fuses_relu()):
            raise ValueError(f"{self.name}: backward_after_relu needs activation='relu' (and fastconv's "
                             f"kernels in channels_first for through_relu)")
        return self._backward(grad_output, through_relu=through_relu, activation_applied=True)

    def _backward(self, grad_output: np.ndarray, through_relu: bool,
                  activation_applied: bool = False) -> Optional[np.ndarray]:
        self._need_forward(self._x, grad_output, self._y_shape or ())
        gy = np.asarray(grad_output, dtype=self.dtype)
        if not activation_applied:
            gy = self.activation.backward(gy, self._y)
        if self.data_format == "channels_last":
            gy = np.ascontiguousarray(gy.transpose(0, 3, 1, 2))
        mod, takes_algorithm = self._kernels()
        extra = {"algorithm": self.algorithm} if takes_algorithm else {}
        if takes_algorithm:  # fastconv's kernels: skip grad_x for a first layer, reuse buffers
            extra["input_grad"] = self.input_grad
            extra["through_relu"] = through_relu
            if self.reuse_buffers:
                gx_buf = self._buffer("gx", self._x.shape, self.dtype) if self.input_grad else None
                extra["out"] = (gx_buf, self._grad_buffer("kernel"), self._grad_buffer("bias"))
        gx, gw, gb = mod.conv2d_backward(gy, self._x, self.params["kernel"], *self._conv_args(),
                                         bias=self.use_bias, **extra)
        self.grads["kernel"] = gw
        if self.use_bias:
            self.grads["bias"] = gb
        if gx is None:
            return None
        if self.data_format == "channels_last":
            gx = np.ascontiguousarray(gx.transpose(0, 2, 3, 1))
        return gx

    def __repr__(self) -> str:
        return (f"Conv2D(filters={self.filters}, kernel_size={self.kernel_size}, strides={self.strides}, "
                f"padding={self.padding!r}, dilation_rate={self.dilation_rate}, groups={self.groups}, "
                f"use_bias={self.use_bias}, data_format={self.data_format!r}, dtype={self.dtype.name!r})")
