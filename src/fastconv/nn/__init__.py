"""A small NumPy toolkit for convolutional networks, built on fastconv's kernels.

Just what the Keras MNIST CNN needs, each layer with ``forward`` and ``backward``:
:class:`Conv2D`, :class:`ReLU`, :class:`MaxPool2D`, :class:`Dropout`, :class:`Flatten`,
:class:`Dense`, the loss :class:`SoftmaxCrossEntropy`, the optimisers :class:`SGD` and
:class:`Adam`, and :class:`Sequential` with ``fit`` / ``evaluate`` / ``predict`` /
``save`` / ``load``.

:class:`Conv2D` runs fastconv's convolution kernels (``kernels="fastconv"``, the default) or
pure NumPy (``kernels="reference"``); ReLU, MaxPool2D, Dropout, Dense and Adam run on the
C kernels of ``csrc/nn/`` and fastconv's GEMM (``_ops``) for float32/float64 arrays, on the
same thread team. Inside a :class:`Sequential` the layers keep and reuse their buffers
across training steps (``Layer.reuse_buffers``).
"""

from .base import Layer
from .conv import Conv2D
from .layers import Dense, Dropout, Flatten, MaxPool2D, ReLU
from .losses import SoftmaxCrossEntropy, log_softmax, softmax
from .model import Sequential
from .optimizers import SGD, Adam, Optimizer

__all__ = [
    "Layer", "Conv2D", "ReLU", "MaxPool2D", "Dropout", "Flatten", "Dense",
    "SoftmaxCrossEntropy", "softmax", "log_softmax", "Optimizer", "SGD", "Adam", "Sequential",
]
