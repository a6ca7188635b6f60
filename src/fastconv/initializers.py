"""Weight initializers with Keras's names, formulas and fan conventions.

Every initializer is a callable ``initializer(shape, dtype="float32", rng=None) -> ndarray``.
``rng`` is a :class:`numpy.random.Generator`, an int seed, or None (fresh entropy).

Fans follow Keras (``keras.initializers.VarianceScaling``), translated to fastconv's
kernel layout:

- conv kernel ``(filters, C_in/groups, kh, kw)``: ``fan_in = C_in/groups * kh * kw``,
  ``fan_out = filters * kh * kw`` (Keras also uses the per-group input channels
  for ``fan_in`` and all filters for ``fan_out`` when ``groups > 1``);
- dense kernel ``(in, out)``: ``fan_in = in``, ``fan_out = out``;
- 1-D shapes: ``fan_in = fan_out = shape[0]``; scalars: 1 and 1.

The ``*_normal`` initializers draw, as Keras does, from a normal truncated at two
standard deviations whose stddev is divided by 0.87962566103423978 (the stddev of
a standard normal truncated to [-2, 2]), so the result has exactly the variance
``scale / n``.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = [
    "Initializer", "compute_fans", "variance_scaling",
    "glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
    "lecun_uniform", "lecun_normal", "zeros", "ones", "constant", "get",
]

RngLike = Union[None, int, np.random.Generator]
Initializer = Callable[..., np.ndarray]

# stddev of a standard normal truncated to [-2, 2] (Keras's constant)
_TRUNC_STD = 0.87962566103423978


def _as_rng(rng: RngLike) -> np.random.Generator:
    """Turn a Generator, an int seed or None into a Generator."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def _float_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise TypeError(f"initializers produce floating arrays, got dtype {dt}")
    return dt


def compute_fans(shape: Sequence[int]) -> Tuple[int, int]:
    """Fan-in and fan-out of a weight of ``shape``, as Keras computes them.

    Parameters
    ----------
    shape : sequence of int
        ``(filters, C_in/groups, kh, kw)`` for a conv kernel (any number of trailing
        spatial dims), ``(in, out)`` for a dense kernel, ``(n,)`` for a vector.

    Returns
    -------
    fan_in, fan_out : int
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[2:]))
    return shape[1] * receptive, shape[0] * receptive


def _truncated_normal(rng: np.random.Generator, shape, std: float, dtype) -> np.ndarray:
    """Normal(0, std) resampled until every value lies within two stddevs."""
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2.0
    while bad.any():  # each round keeps ~95.4 %, so a handful of rounds at most
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2.0
    return (out * std).astype(dtype, copy=False)


def variance_scaling(scale: float = 1.0, mode: str = "fan_in",
                     distribution: str = "truncated_normal") -> Initializer:
    """Keras's ``VarianceScaling``: variance ``scale / n`` with ``n`` picked by ``mode``.

    Parameters
    ----------
    scale : float
        Target variance times ``n``.
    mode : {"fan_in", "fan_out", "fan_avg"}
        ``n`` is fan_in, fan_out or their mean.
    distribution : {"truncated_normal", "uniform"}
        Truncated normal (at 2 std, rescaled) or ``U(-l, l)`` with ``l = sqrt(3 scale / n)``.

    Returns
    -------
    initializer : callable ``(shape, dtype="float32", rng=None) -> ndarray``
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    if mode not in ("fan_in", "fan_out", "fan_avg"):
        raise ValueError(f"mode must be 'fan_in', 'fan_out' or 'fan_avg', got {mode!r}")
    if distribution not in ("truncated_normal", "uniform"):
        raise ValueError(f"distribution must be 'truncated_normal' or 'uniform', got {distribution!r}")

    def init(shape: Sequence[int], dtype="float32", rng: RngLike = None) -> np.ndarray:
        dt = _float_dtype(dtype)
        fan_in, fan_out = compute_fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[mode]
        n = max(1.0, float(n))
        gen = _as_rng(rng)
        if distribution == "uniform":
            limit = np.sqrt(3.0 * scale / n)
            return gen.uniform(-limit, limit, size=tuple(shape)).astype(dt, copy=False)
        return _truncated_normal(gen, tuple(shape), np.sqrt(scale / n) / _TRUNC_STD, dt)

    return init


def _named(name: str, init: Initializer, doc: str) -> Initializer:
    init.__name__ = init.__qualname__ = name
    init.__doc__ = doc
    return init


_SIG = """

Parameters
----------
shape : sequence of int
    Weight shape, ``(filters, C_in/groups, kh, kw)`` or ``(in, out)``.
dtype : numpy dtype, default "float32"
rng : numpy.random.Generator, int seed or None

Returns
-------
ndarray of ``shape`` and ``dtype``.
"""

glorot_uniform = _named("glorot_uniform", variance_scaling(1.0, "fan_avg", "uniform"),
                        "U(-l, l) with l = sqrt(6 / (fan_in + fan_out)) (Keras's default)." + _SIG)
glorot_normal = _named("glorot_normal", variance_scaling(1.0, "fan_avg", "truncated_normal"),
                       "Truncated normal, variance 2 / (fan_in + fan_out)." + _SIG)
he_uniform = _named("he_uniform", variance_scaling(2.0, "fan_in", "uniform"),
                    "U(-l, l) with l = sqrt(6 / fan_in)." + _SIG)
he_normal = _named("he_normal", variance_scaling(2.0, "fan_in", "truncated_normal"),
                   "Truncated normal, variance 2 / fan_in." + _SIG)
lecun_uniform = _named("lecun_uniform", variance_scaling(1.0, "fan_in", "uniform"),
                       "U(-l, l) with l = sqrt(3 / fan_in)." + _SIG)
lecun_normal = _named("lecun_normal", variance_scaling(1.0, "fan_in", "truncated_normal"),
                      "Truncated normal, variance 1 / fan_in." + _SIG)


def constant(value: float = 0.0) -> Initializer:
    """An initializer filling every weight with ``value``.

    Parameters
    ----------
    value : float

    Returns
    -------
    initializer : callable ``(shape, dtype="float32", rng=None) -> ndarray``
    """
    def init(shape: Sequence[int], dtype="float32", rng: RngLike = None) -> np.ndarray:
        return np.full(tuple(shape), value, dtype=_float_dtype(dtype))

    return _named("constant", init, f"Every weight equal to {value!r}." + _SIG)


def zeros(shape: Sequence[int], dtype="float32", rng: RngLike = None) -> np.ndarray:
    """All zeros (Keras's default bias initializer)."""
    return np.zeros(tuple(shape), dtype=_float_dtype(dtype))


def ones(shape: Sequence[int], dtype="float32", rng: RngLike = None) -> np.ndarray:
    """All ones."""
    return np.ones(tuple(shape), dtype=_float_dtype(dtype))


zeros.__doc__ = (zeros.__doc__ or "") + _SIG
ones.__doc__ = (ones.__doc__ or "") + _SIG


_BY_NAME: Dict[str, Initializer] = {
    f.__name__: f for f in (glorot_uniform, glorot_normal, he_uniform, he_normal,
                            lecun_uniform, lecun_normal, zeros, ones)
}
# Keras's aliases
_BY_NAME.update(xavier_uniform=glorot_uniform, xavier_normal=glorot_normal)


def get(identifier: Union[str, Initializer, None]) -> Optional[Initializer]:
    """Look up an initializer by name, or pass a callable through.

    Parameters
    ----------
    identifier : str, callable or None
        A name such as ``"glorot_uniform"`` (case-insensitive), or any callable
        ``(shape, dtype, rng) -> ndarray``. None returns None.

    Returns
    -------
    initializer : callable or None

    Raises
    ------
    ValueError
        For an unknown name or an object that is neither a string nor callable.
    """
    if identifier is None or callable(identifier):
        return identifier
    if isinstance(identifier, str):
        key = identifier.lower()
        if key in _BY_NAME:
            return _BY_NAME[key]
        raise ValueError(f"unknown initializer {identifier!r}; choose one of {sorted(_BY_NAME)} "
                         "or pass a callable (e.g. fastconv.initializers.constant(0.1))")
    raise ValueError(f"initializer must be a name or a callable, got {type(identifier).__name__}")
