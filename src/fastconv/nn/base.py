"""The layer protocol every ``fastconv.nn`` layer follows."""

from __future__ import annotations

import os
import sys
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .._spec import as_pair, resolve_padding

__all__ = ["Layer", "param_dtype", "layer_rng"]

Shape = Tuple[Optional[int], ...]


def param_dtype(dtype) -> np.dtype:
    """A layer's parameter dtype: float32 or float64, else a TypeError."""
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def image_shape(layer, input_shape: Sequence[Optional[int]]) -> Tuple[Optional[int], Optional[int], int, int]:
    """``(N, C, H, W)`` of a 4-D input shape in the layer's ``data_format`` (channels_last
    is ``(N, H, W, C)``); a ValueError naming the layer otherwise."""
    if len(input_shape) != 4:
        raise ValueError(f"{layer.name}: expected a 4-D input shape, got {tuple(input_shape)}")
    if layer.data_format == "channels_first":
        n, c, h, w = input_shape
    else:
        n, h, w, c = input_shape
    return n, c, h, w


def int_pair(v, what: str, minimum: int = 1) -> Tuple[int, int]:
    """``3 -> (3, 3)``, ``(2, 3) -> (2, 3)``: ints >= ``minimum`` (not bools, not floats), as the
    functional API takes them; a TypeError or ValueError naming ``what`` otherwise."""
    return as_pair(v.tolist() if isinstance(v, np.ndarray) else v, what, minimum)


def norm_padding(padding, allowed: Tuple[str, ...] = ("valid", "same")):
    """A layer's padding: one of the ``allowed`` strings (any case, returned lower-cased), or
    explicit ints as the functional API takes them (an int, a pair, ((top, bottom), (left,
    right))), checked now rather than at the layer's first call."""
    if isinstance(padding, str):
        if padding.lower() not in allowed:
            raise ValueError(f"padding must be one of {list(allowed)} or explicit ints, got {padding!r}")
        return padding.lower()
    resolve_padding(padding, (1, 1), (1, 1), (1, 1), (1, 1))  # raises on a malformed one
    return padding


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def user_stacklevel() -> int:
    """The ``stacklevel`` for a ``warnings.warn`` in the caller of this function that points at
    the first frame outside fastconv: the user's line, however deep in fit or predict the
    warning arises (Python 3.12's skip_file_prefixes, for the Pythons before it)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def warn_if_other_layout(layer, shape: Sequence[int], data_format: str) -> None:
    """At a layer's first call, where it takes its input channels from the batch: warn when
    the 4-D ``shape`` looks like a square image batch in the other layout, an image's 1, 3 or
    4 channels on the axis this format reads as a spatial one, and two equal sizes of 8 or
    more on the ones it reads as channels and rows (a Keras user's NHWC batch given to a
    channels_first layer would build it for, say, 28 channels of 28 x 1 images and run without
    a word). Square only: a channels_first (N, 16, 100, 1) signal or a deep (N, 64, 16, 4)
    map is what it says. The warning points at the user's line (user_stacklevel)."""
    if len(shape) != 4:  # (Conv1D's batches)
        return
    _, a, b, c = shape
    if data_format == "channels_first":
        looks, other, channels = c in (1, 3, 4) and a == b >= 8, "channels_last", a
    else:
        looks, other, channels = a in (1, 3, 4) and b == c >= 8, "channels_first", c
    if looks:
        warnings.warn(f"{layer.name}: input shape {tuple(shape)} looks like {other} data; this layer is "
                      f"{data_format} and takes it as {channels} input channels. If the data is {other}, "
                      f"pass data_format={other!r} (or transpose it).", UserWarning, stacklevel=user_stacklevel())


def layer_rng(seed) -> np.random.Generator:
    """A layer's generator from an int seed, None or a Generator (used as is)."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


class Layer:
    """Base class: a forward pass that caches what its backward pass needs.

    Attributes
    ----------
    params : dict of str to ndarray
        Trainable arrays, updated in place by the optimisers.
    grads : dict of str to ndarray
        Gradients of the loss w.r.t. ``params``, same keys, written by :meth:`backward`.
    built : bool
        Whether the weights exist (layers without weights are always built).
    reuse_buffers : bool
        When True (``Sequential.train_on_batch`` sets it for the step), the layer writes its
        outputs, input gradients and parameter gradients into arrays it keeps across calls,
        so a warm training step allocates nothing: each call overwrites the arrays the
        previous call returned. False (the default, and always outside a training step)
        returns new arrays.
    input_grad : bool
        When False, :meth:`backward` may skip the gradient w.r.t. the input and return
        None (``Sequential`` clears it on its first layer during a training step).
    """

    reuse_buffers: bool = False
    input_grad: bool = True

    def __init__(self, name: Optional[str] = None) -> None:
        self.name = name or type(self).__name__.lower()
        self.params: Dict[str, np.ndarray] = {}
        self.grads: Dict[str, np.ndarray] = {}
        self.built = True
        self._buffers: Dict[str, np.ndarray] = {}

    def __call__(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Same as :meth:`forward`."""
        return self.forward(x, training=training)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Compute the output for a batch ``x`` and remember what backward needs.

        Parameters
        ----------
        x : ndarray
            Input batch.
        training : bool
            True inside a training step (matters for Dropout).

        Returns
        -------
        ndarray
        """
        raise NotImplementedError

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """Gradient w.r.t. the input of the last :meth:`forward`; fills :attr:`grads`.

        Parameters
        ----------
        grad_output : ndarray
            Gradient of the loss w.r.t. this layer's last output (same shape).

        Returns
        -------
        grad_input : ndarray
        """
        raise NotImplementedError

    def compute_output_shape(self, input_shape: Sequence[Optional[int]]) -> Shape:
        """Output shape for ``input_shape`` (the batch size may be None).

        Parameters
        ----------
        input_shape : sequence of int or None

        Returns
        -------
        tuple
        """
        return tuple(input_shape)

    def get_weights(self) -> List[np.ndarray]:
        """Copies of the trainable arrays, in :attr:`params` order.

        Returns
        -------
        list of ndarray
        """
        return [p.copy() for p in self.params.values()]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Overwrite the trainable arrays in place (shapes must match).

        Parameters
        ----------
        weights : sequence of array_like
            In :attr:`params` order, as returned by :meth:`get_weights`.
        """
        if len(weights) != len(self.params):
            raise ValueError(f"{self.name}: expected {len(self.params)} arrays, got {len(weights)}")
        for (key, p), w in zip(self.params.items(), weights):
            w = np.asarray(w)
            if w.shape != p.shape:
                raise ValueError(f"{self.name}: {key} has shape {p.shape}, got {w.shape}")
            p[...] = w

    def count_params(self) -> int:
        """Number of trainable scalars.

        Returns
        -------
        int
        """
        return int(sum(p.size for p in self.params.values()))

    def _buffer(self, key: str, shape: Tuple[int, ...], dtype) -> Optional[np.ndarray]:
        """The layer's kept array ``key`` of this shape and dtype when :attr:`reuse_buffers`
        is on (made on first use or when the shape changes), else None (the caller then
        allocates a new array)."""
        if not self.reuse_buffers:
            return None
        buffers = self.__dict__.setdefault("_buffers", {})
        buf = buffers.get(key)
        shape = tuple(shape)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = np.empty(shape, dtype=dtype)
            buffers[key] = buf
        return buf

    def _grad_buffer(self, key: str) -> Optional[np.ndarray]:
        """The gradient array of parameter ``key`` to overwrite in place (buffers kept and it
        still fits the parameter), else None: the caller then makes a new one."""
        p, g = self.params.get(key), self.grads.get(key)
        if not self.reuse_buffers or p is None or g is None or g.shape != p.shape or g.dtype != p.dtype \
                or not g.flags.c_contiguous:
            return None
        return g

    def _need_forward(self, cached, grad_output: np.ndarray, expected_shape) -> None:
        """Raise a clear ValueError if backward comes before forward or with a bad shape."""
        if cached is None:
            raise ValueError(f"{self.name}: backward() called before forward()")
        if tuple(np.shape(grad_output)) != tuple(expected_shape):
            raise ValueError(f"{self.name}: grad_output has shape {tuple(np.shape(grad_output))}, "
                             f"expected {tuple(expected_shape)} (the shape of the last forward output)")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
