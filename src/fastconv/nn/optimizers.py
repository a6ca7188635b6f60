"""SGD (momentum, Nesterov) and Adam with Keras's update rules; params change in place."""

from __future__ import annotations

from typing import Dict, Union

import numpy as np

from . import _ops

__all__ = ["Optimizer", "SGD", "Adam", "get"]


class Optimizer:
    """Base class. :meth:`update` takes dicts of parameters and gradients with the same
    keys (e.g. ``"0.kernel"``) and changes each parameter array in place; per-parameter
    state is kept under the same key.

    Parameters
    ----------
    learning_rate : float
    """

    def __init__(self, learning_rate: float) -> None:
        if learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {learning_rate}")
        self.learning_rate = float(learning_rate)
        self.iterations = 0

    def update(self, params: Dict[str, np.ndarray], grads: Dict[str, np.ndarray]) -> None:
        """One step on every parameter.

        Parameters
        ----------
        params : dict of str to ndarray
            Updated in place.
        grads : dict of str to ndarray
            Same keys and shapes.
        """
        self.iterations += 1
        for key, p in params.items():
            g = np.asarray(grads[key], dtype=p.dtype)
            if g.shape != p.shape:
                raise ValueError(f"gradient of {key} has shape {g.shape}, parameter {p.shape}")
            self._apply(key, p, g)

    def _apply(self, key: str, p: np.ndarray, g: np.ndarray) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent, Keras's form of momentum and Nesterov.

    ``v = momentum * v - lr * g``; then ``p += v`` or, with Nesterov,
    ``p += momentum * v - lr * g``.

    Parameters
    ----------
    learning_rate : float, default 0.01
    momentum : float in [0, 1), default 0
    nesterov : bool, default False
    """

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(learning_rate)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self._velocity: Dict[str, np.ndarray] = {}

    def _apply(self, key: str, p: np.ndarray, g: np.ndarray) -> None:
        lr = p.dtype.type(self.learning_rate)
        if self.momentum == 0.0:
            p -= lr * g
            return
        m = p.dtype.type(self.momentum)
        v = self._velocity.setdefault(key, np.zeros_like(p))
        v *= m
        v -= lr * g
        if self.nesterov:
            p += m * v - lr * g
        else:
            p += v


class Adam(Optimizer):
    """Adam (Kingma & Ba) with Keras's defaults and bias correction folded into the step.

    Parameters
    ----------
    learning_rate : float, default 0.001
    beta_1, beta_2 : float, default 0.9, 0.999
    epsilon : float, default 1e-7
    """

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7) -> None:
        super().__init__(learning_rate)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)
        self._m: Dict[str, np.ndarray] = {}
        self._v: Dict[str, np.ndarray] = {}

    def _apply(self, key: str, p: np.ndarray, g: np.ndarray) -> None:
        t = self.iterations
        b1, b2 = self.beta_1, self.beta_2
        m = self._m.setdefault(key, np.zeros_like(p, order="C"))
        v = self._v.setdefault(key, np.zeros_like(p, order="C"))
        if _ops.native(p, g, m, v) and p.flags.writeable:  # one fused pass on fastconv's team
            lr_t = self.learning_rate * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            _ops.adam_update(p, g, m, v, lr_t, b1, b2, self.epsilon)
            return
        m += (1 - b1) * (g - m)
        v += (1 - b2) * (g * g - v)
        lr_t = self.learning_rate * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        p -= p.dtype.type(lr_t) * m / (np.sqrt(v) + p.dtype.type(self.epsilon))


def get(identifier: Union[str, Optimizer]) -> Optimizer:
    """``"sgd"`` or ``"adam"`` with default settings, or an Optimizer passed through.

    Parameters
    ----------
    identifier : str or Optimizer

    Returns
    -------
    Optimizer
    """
    if isinstance(identifier, Optimizer):
        return identifier
    table = {"sgd": SGD, "adam": Adam}
    if isinstance(identifier, str) and identifier.lower() in table:
        return table[identifier.lower()]()
    raise ValueError(f"unknown optimizer {identifier!r}; use 'sgd', 'adam' or an Optimizer instance")
