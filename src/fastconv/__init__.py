"""fastconv: fast CPU 2-D convolution and its gradients for NumPy.

C/OpenMP kernels (direct, and im2col + fastconv's own GEMM) behind PyTorch's ``conv2d``
semantics, SciPy's ``convolve2d``/``correlate2d``, and a trainable Keras-style ``Conv2D``.

Every name of the README's API table is reachable after a plain ``import fastconv``:
``fastconv.reference``, ``fastconv.nn``, ``fastconv.initializers`` and
``fastconv.functional`` are imported here; the heavier or optional parts
(``fastconv.bench``, ``fastconv.dask``, ``fastconv.datasets``, ``fastconv.demo``) load on
first access.
"""
from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__
from . import _config, functional, initializers, nn, reference, signal
from ._config import show_config
from ._precision import get_precision, set_precision
from . import _precision
from ._threads import get_num_threads, set_num_threads, threads
from .functional import conv2d, conv2d_backward, conv2d_input_grad, conv2d_weight_grad
from .nn import Conv2D
from .signal import convolve2d, correlate2d
from .transpose import conv_transpose2d, conv_transpose2d_backward

_config.apply_isa_from_env()
_precision.apply_precision_from_env()

# Submodules imported on first attribute access (PEP 562): they pull in optional
# dependencies or cost import time that most users never need.
_LAZY_SUBMODULES = ("bench", "dask", "datasets", "demo")

__all__ = [
    "__version__",
    "conv2d",
    "conv2d_backward",
    "conv2d_input_grad",
    "conv2d_weight_grad",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "convolve2d",
    "correlate2d",
    "set_num_threads",
    "get_num_threads",
    "threads",
    "set_precision",
    "get_precision",
    "show_config",
    "Conv2D",
    "functional",
    "initializers",
    "nn",
    "reference",
    "signal",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'fastconv' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))
