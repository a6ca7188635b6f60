"""Keras's ``activation=`` argument: named elementwise functions and their derivatives.

Each activation computes ``y = f(x)`` and back-propagates from ``y`` alone (every one
here has a derivative expressible in its output), so a layer keeps only its output.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Union

import numpy as np

from . import _ops
from .base import Layer

__all__ = ["Activation", "get", "NAMES"]


class _Activation:
    """One activation: ``forward(x) -> y`` and ``backward(grad_y, y) -> grad_x``."""

    def __init__(self, name: str, forward: Callable, backward: Callable,
                 forward_owned: Optional[Callable] = None) -> None:
        self.name = name
        self.forward = forward
        self.backward = backward
        self._forward_owned = forward_owned

    def forward_owned(self, x: np.ndarray) -> np.ndarray:
        """``forward`` for an ``x`` the caller owns (a layer's own pre-activation): may
        overwrite it in place, so the activation costs no new array (ReLU does)."""
        return self._forward_owned(x) if self._forward_owned is not None else self.forward(x)

    def __repr__(self) -> str:
        return f"activation {self.name!r}"


def _relu(x):
    return _ops.relu_forward(x) if _ops.native(x) else np.maximum(x, 0)


def _relu_owned(x):
    return _ops.relu_forward(x, out=x) if _ops.native(x) and x.flags.writeable else np.maximum(x, 0)


def _relu_backward(g, y):
    g = np.asarray(g)
    if _ops.native(g, y):  # on fastconv's team, one pass
        return _ops.relu_backward(g, y)
    return g * (y > 0)


def _sigmoid(x):
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def _leaky(x):
    return np.where(x > 0, x, x * x.dtype.type(0.2))


_TABLE: Dict[str, _Activation] = {a.name: a for a in (
    _Activation("linear", lambda x: x, lambda g, y: g),
    _Activation("relu", _relu, _relu_backward, _relu_owned),
    _Activation("sigmoid", _sigmoid, lambda g, y: g * y * (1 - y)),
    _Activation("tanh", np.tanh, lambda g, y: g * (1 - y * y)),
    _Activation("softmax", _softmax, lambda g, y: y * (g - np.sum(g * y, axis=-1, keepdims=True))),
    _Activation("elu", _elu, lambda g, y: np.where(y > 0, g, g * (y + 1))),
    _Activation("leaky_relu", _leaky, lambda g, y: np.where(y > 0, g, g * y.dtype.type(0.2))),
)}

#: The activation names understood (Keras's, with its defaults: leaky_relu slope 0.2, elu alpha 1).
NAMES = tuple(_TABLE)


def get(identifier: Union[None, str, _Activation]) -> _Activation:
    """The activation named ``identifier`` (None means "linear").

    Parameters
    ----------
    identifier : None, str or an activation returned by this function

    Returns
    -------
    activation
        With ``forward(x)`` and ``backward(grad_y, y)``.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones).
    """
    if identifier is None:
        return _TABLE["linear"]
    if isinstance(identifier, _Activation):
        return identifier
    if not isinstance(identifier, str) or identifier.lower() not in _TABLE:
        raise ValueError(f"activation must be None or one of {list(NAMES)}, got {identifier!r}")
    return _TABLE[identifier.lower()]


class Activation(Layer):
    """Keras's ``Activation`` layer: apply a named activation elementwise.

    Parameters
    ----------
    activation : str
        One of :data:`NAMES` (``softmax`` works on the last axis).
    name : str, optional
    """

    def __init__(self, activation: str, name: Optional[str] = None) -> None:
        super().__init__(name or "activation")
        self.activation = get(activation)
        self._y: Optional[np.ndarray] = None

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """``f(x)``."""
        self._y = self.activation.forward(np.asarray(x))
        return self._y

    def take_relu_output(self, y: np.ndarray) -> np.ndarray:
        """For ``Activation("relu")``: be the ReLU whose output ``y`` the layer before
        computed already (``Conv2D.forward_then_relu``); keep it and return it."""
        if self.activation.name != "relu":
            raise ValueError(f"{self.name}: take_relu_output is for a relu activation, not {self.activation.name!r}")
        self._y = y
        return y

    def passed_through(self, grad_output: np.ndarray) -> np.ndarray:
        """For ``Activation("relu")``: the backward when the layer after it has returned its
        input gradient through this ReLU already (``Conv2D.backward_through_relu``)."""
        if self.activation.name != "relu":
            raise ValueError(f"{self.name}: passed_through is for a relu activation, not {self.activation.name!r}")
        self._need_forward(self._y, grad_output, getattr(self._y, "shape", ()))
        return grad_output

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """``f'(x) * grad_output`` (the softmax Jacobian for softmax)."""
        self._need_forward(self._y, grad_output, getattr(self._y, "shape", ()))
        return self.activation.backward(np.asarray(grad_output), self._y)
