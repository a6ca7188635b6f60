"""``BatchNormalization`` with Keras's arguments, in training and inference."""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from .base import Layer, param_dtype

__all__ = ["BatchNormalization"]


class BatchNormalization(Layer):
    """Normalise each channel by the batch's statistics (training) or the moving ones.

    Training: ``y = gamma * (x - mean_B) / sqrt(var_B + epsilon) + beta`` with the biased
    batch variance, and ``moving = momentum * moving + (1 - momentum) * batch`` (Keras's
    update; PyTorch's ``momentum`` is ``1 - momentum`` here). Inference uses the moving
    mean and variance.

    Parameters
    ----------
    axis : int or None, default None
        The channel axis. None: axis 1 for 4-D and 3-D inputs (fastconv's channels_first)
        and -1 for 2-D ones; pass ``-1`` for channels_last (Keras's default).
    momentum : float, default 0.99
    epsilon : float, default 1e-3
    center, scale : bool, default True
        Learn ``beta`` / ``gamma`` (else they are 0 / 1 and not trained).
    dtype : {"float32", "float64"}
    name : str, optional

    Attributes
    ----------
    params : dict
        ``"gamma"`` and ``"beta"`` (the trainable ones present), shape ``(C,)``.
    moving_mean, moving_variance : ndarray, shape (C,)
        Not trained by the optimiser; :meth:`get_weights` returns them after
        ``gamma``/``beta``, as Keras does.
    """

    def __init__(self, axis: Optional[int] = None, momentum: float = 0.99, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True, dtype="float32", name: Optional[str] = None) -> None:
        super().__init__(name or "batch_normalization")
        if axis is not None and not isinstance(axis, (int, np.integer)):
            raise TypeError(f"axis must be an int or None, got {axis!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        if not epsilon > 0:
            raise ValueError(f"epsilon must be > 0, got {epsilon}")
        self.axis = None if axis is None else int(axis)
        self.momentum, self.epsilon = float(momentum), float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.dtype = param_dtype(dtype)
        self.moving_mean: Optional[np.ndarray] = None
        self.moving_variance: Optional[np.ndarray] = None
        self.channels: Optional[int] = None
        self.built = False
        self._cache = None

    def _axis(self, ndim: int) -> int:
        axis = self.axis if self.axis is not None else (-1 if ndim == 2 else 1)
        if not -ndim <= axis < ndim:
            raise ValueError(f"{self.name}: axis {axis} out of range for a {ndim}-D input")
        return axis % ndim

    def build(self, channels: int) -> None:
        """Create gamma (ones), beta (zeros), moving mean (zeros) and variance (ones).

        Parameters
        ----------
        channels : int
        """
        self.channels = int(channels)
        self.params = {}
        if self.scale:
            self.params["gamma"] = np.ones(self.channels, self.dtype)
        if self.center:
            self.params["beta"] = np.zeros(self.channels, self.dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.moving_mean = np.zeros(self.channels, self.dtype)
        self.moving_variance = np.ones(self.channels, self.dtype)
        self.built = True

    def build_for_input_shape(self, input_shape: Sequence[Optional[int]]) -> None:
        """Build from an input shape (for ``Sequential.summary``)."""
        if not self.built:
            self.build(int(input_shape[self._axis(len(input_shape))]))

    @property
    def non_trainable(self):
        """``{"moving_mean": ..., "moving_variance": ...}`` (the live arrays; empty before build)."""
        if not self.built:
            return {}
        return {"moving_mean": self.moving_mean, "moving_variance": self.moving_variance}

    def get_weights(self) -> List[np.ndarray]:
        """Copies of ``[gamma, beta, moving_mean, moving_variance]`` (those present), Keras's order."""
        self._require_built()
        return [p.copy() for p in self.params.values()] + [self.moving_mean.copy(), self.moving_variance.copy()]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Set ``[gamma, beta, moving_mean, moving_variance]`` (as :meth:`get_weights`),
        or only the trainable ones; builds the layer if needed."""
        weights = [np.asarray(w) for w in weights]
        if not weights:
            raise ValueError(f"{self.name}: expected gamma/beta and the moving statistics")
        if not self.built:
            self.build(weights[0].shape[0])
        n = len(self.params)
        if len(weights) not in (n, n + 2):
            raise ValueError(f"{self.name}: expected {n} or {n + 2} arrays ({list(self.params)} then "
                             f"moving_mean, moving_variance), got {len(weights)}")
        super().set_weights(weights[:n])
        for target, w in zip((self.moving_mean, self.moving_variance), weights[n:]):
            if w.shape != target.shape:
                raise ValueError(f"{self.name}: moving statistics have shape {target.shape}, got {w.shape}")
            target[...] = w

    def _require_built(self) -> None:
        if not self.built:
            raise ValueError(f"{self.name}: the layer has no weights yet; call it on an input first")

    def _shape(self, x: np.ndarray, axis: int):
        shape = [1] * x.ndim
        shape[axis] = x.shape[axis]
        return shape

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Normalise ``x`` (batch statistics when ``training``, moving ones otherwise)."""
        x = np.asarray(x, dtype=self.dtype)
        axis = self._axis(x.ndim)
        if not self.built:
            self.build(x.shape[axis])
        elif x.shape[axis] != self.channels:
            raise ValueError(f"{self.name}: built for {self.channels} channels on axis {axis}, "
                             f"got input shape {x.shape}")
        shape = self._shape(x, axis)
        gamma = self.params["gamma"] if self.scale else np.ones(self.channels, self.dtype)
        beta = self.params["beta"] if self.center else np.zeros(self.channels, self.dtype)
        if training:
            red = tuple(a for a in range(x.ndim) if a != axis)
            mean = x.mean(axis=red)
            var = x.var(axis=red)
            m = self.dtype.type(self.momentum)
            self.moving_mean *= m
            self.moving_mean += (1 - m) * mean
            self.moving_variance *= m
            self.moving_variance += (1 - m) * var
        else:
            red = None
            mean, var = self.moving_mean, self.moving_variance
        inv = (1.0 / np.sqrt(var + self.dtype.type(self.epsilon))).astype(self.dtype)
        xhat = (x - mean.reshape(shape)) * inv.reshape(shape)
        self._cache = (xhat, inv, gamma, red, shape, axis)
        return xhat * gamma.reshape(shape) + beta.reshape(shape)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """Gradient w.r.t. the input (through the batch statistics after a training
        forward); fills the gamma/beta grads."""
        self._need_forward(self._cache, grad_output, None if self._cache is None else self._cache[0].shape)
        xhat, inv, gamma, red, shape, axis = self._cache
        g = np.asarray(grad_output, dtype=self.dtype)
        all_but = tuple(a for a in range(g.ndim) if a != axis)
        if self.scale:
            self.grads["gamma"] = (g * xhat).sum(axis=all_but)
        if self.center:
            self.grads["beta"] = g.sum(axis=all_but)
        gxhat = g * gamma.reshape(shape)
        if red is None:  # inference: the statistics are constants
            return gxhat * inv.reshape(shape)
        m = g.size / g.shape[axis]
        mean_g = gxhat.sum(axis=red, keepdims=True) / m
        mean_gx = (gxhat * xhat).sum(axis=red, keepdims=True) / m
        return (gxhat - mean_g - xhat * mean_gx) * inv.reshape(shape)
