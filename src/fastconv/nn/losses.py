"""Softmax + cross-entropy, fused and computed with log-sum-exp."""

from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["log_softmax", "softmax", "SoftmaxCrossEntropy"]


def log_softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """``logits - logsumexp(logits)`` without overflow.

    Parameters
    ----------
    logits : ndarray
    axis : int

    Returns
    -------
    ndarray, same shape
    """
    z = np.asarray(logits)
    z = z - z.max(axis=axis, keepdims=True)  # largest exponent is exp(0) = 1: no overflow
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Class probabilities from logits, numerically stable.

    Parameters
    ----------
    logits : ndarray
    axis : int

    Returns
    -------
    ndarray, same shape, summing to 1 along ``axis``
    """
    return np.exp(log_softmax(logits, axis))


class SoftmaxCrossEntropy:
    """Mean cross-entropy of ``softmax(logits)`` against labels, with its gradient.

    Labels are integer classes ``(N,)`` or target distributions ``(N, K)``
    (e.g. one-hot). The gradient w.r.t. the logits is ``(softmax - target) / N``.
    """

    def __init__(self) -> None:
        self._probs: Optional[np.ndarray] = None
        self._target: Optional[np.ndarray] = None

    def _targets(self, labels, n: int, k: int, dtype) -> np.ndarray:
        y = np.asarray(labels)
        if y.ndim == 1:
            if y.shape[0] != n:
                raise ValueError(f"integer labels must have shape ({n},) (one per output row), got {y.shape}")
            if y.dtype.kind not in "iu":
                raise TypeError(f"labels of shape ({n},) must be class indices of an integer dtype, got "
                                f"{y.dtype} (distributions have shape {(n, k)})")
            if y.size and (y.min() < 0 or y.max() >= k):
                raise ValueError(f"labels must lie in [0, {k}), got [{y.min()}, {y.max()}]")
            t = np.zeros((n, k), dtype=dtype)
            t[np.arange(n), y] = 1
            return t
        if y.shape != (n, k):
            raise ValueError(f"target distributions must have shape {(n, k)}, got {y.shape}")
        return y.astype(dtype, copy=False)

    def forward(self, logits: np.ndarray, labels: np.ndarray) -> float:
        """Mean loss over the batch.

        Parameters
        ----------
        logits : ndarray, shape (N, K)
        labels : ndarray, shape (N,) of ints in [0, K), or (N, K) distributions

        Returns
        -------
        float
        """
        z = np.asarray(logits)
        if z.ndim != 2:
            raise ValueError(f"logits must be 2-D (N, classes), got shape {z.shape}")
        n, k = z.shape
        target = self._targets(labels, n, k, z.dtype)
        logp = log_softmax(z)
        self._probs = np.exp(logp)
        self._target = target
        return float(-(target * logp).sum() / max(n, 1))

    __call__ = forward

    def backward(self) -> np.ndarray:
        """Gradient of the last mean loss w.r.t. its logits.

        Returns
        -------
        ndarray, shape (N, K)
        """
        if self._probs is None:
            raise ValueError("SoftmaxCrossEntropy: backward() called before forward()")
        n = self._probs.shape[0]
        return (self._probs - self._target) / max(n, 1)
