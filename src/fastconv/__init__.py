"""fastconv: fast CPU 2-D convolution and its gradients for NumPy.

C/OpenMP kernels (direct, and im2col + fastconv's own GEMM) behind PyTorch's ``conv2d``
semantics, SciPy's ``convolve2d``/``correlate2d``, and a trainable Keras-style ``Conv2D``.
"""
__version__ = "0.1.0"

from . import _config, initializers, nn
from ._config import show_config
from ._threads import get_num_threads, set_num_threads, threads
from .functional import conv2d, conv2d_backward, conv2d_input_grad, conv2d_weight_grad
from .nn import Conv2D
from .signal import convolve2d, correlate2d
from .transpose import conv_transpose2d, conv_transpose2d_backward

_config.apply_isa_from_env()

__all__ = [
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
    "show_config",
    "Conv2D",
    "initializers",
    "nn",
]
