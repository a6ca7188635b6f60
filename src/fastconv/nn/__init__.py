"""A small NumPy toolkit for convolutional networks, built on fastconv's kernels.

What Keras CNNs are made of, each layer with ``forward`` and ``backward``:
:class:`Conv2D`, :class:`Conv2DTranspose`, :class:`DepthwiseConv2D`,
:class:`SeparableConv2D`, :class:`Conv1D`, :class:`BatchNormalization`, :class:`ReLU`,
:class:`Activation` (and ``activation=`` on the conv and Dense layers), :class:`MaxPool2D`,
:class:`AveragePooling2D`, :class:`GlobalAveragePooling2D`, :class:`ZeroPadding2D`,
:class:`Dropout`, :class:`Flatten`, :class:`Dense`; the loss :class:`SoftmaxCrossEntropy`,
the optimisers :class:`SGD` and :class:`Adam`, and :class:`Sequential` with ``fit`` /
``evaluate`` / ``predict`` / ``save`` / ``load``.

Other frameworks' models: :func:`load_keras` reads a Keras 3 ``.keras`` file and
``Sequential.save_keras`` writes one (``load_weights`` / ``save_weights`` for
``.weights.h5``; :mod:`fastconv.nn.keras_io`, needs h5py); :func:`from_torch` converts a
``torch.nn.Sequential`` and ``Sequential.load_state_dict`` reads its weights without torch
(:mod:`fastconv.nn.torch_io`).

:class:`Conv2D` runs fastconv's convolution kernels (``kernels="fastconv"``, the default) or
pure NumPy (``kernels="reference"``); ReLU, MaxPool2D, Dropout, Dense and Adam run on the
C kernels of ``csrc/nn/`` and fastconv's GEMM (``_ops``) for float32/float64 arrays, on the
same thread team. Inside a :class:`Sequential` the layers keep and reuse their buffers
across training steps (``Layer.reuse_buffers``).
"""

from .activations import Activation
from .base import Layer
from .conv import Conv2D
from .conv_family import Conv1D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D
from .keras_io import load_keras
from .layers import Dense, Dropout, Flatten, MaxPool2D, ReLU
from .normalization import BatchNormalization
from .pooling import AveragePooling2D, GlobalAveragePooling2D, ZeroPadding2D
from .torch_io import from_torch
from .losses import SoftmaxCrossEntropy, log_softmax, softmax
from .model import Sequential
from .optimizers import SGD, Adam, Optimizer

__all__ = [
    "Layer", "Conv2D", "ReLU", "MaxPool2D", "Dropout", "Flatten", "Dense",
    "SoftmaxCrossEntropy", "softmax", "log_softmax", "Optimizer", "SGD", "Adam", "Sequential",
    "Conv2DTranspose", "DepthwiseConv2D", "SeparableConv2D", "Conv1D", "BatchNormalization",
    "AveragePooling2D", "GlobalAveragePooling2D", "ZeroPadding2D", "Activation", "load_keras", "from_torch",
]
