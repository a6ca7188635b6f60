"""PyTorch models and weights into ``fastconv.nn``: ``from_torch`` and ``load_state_dict``.

:func:`from_torch` converts a ``torch.nn.Sequential`` module by module (one fastconv layer
per torch module, so the indices of ``state_dict`` keys stay the same).
:func:`load_state_dict` needs no torch: it takes any mapping of ``"<index>.<name>"`` to
arrays, e.g. ``safetensors.numpy.load_file("model.safetensors")``.

Layouts: fastconv's conv kernels are PyTorch's (``Conv2d.weight`` ``(C_out, C_in/g, kh, kw)``,
``ConvTranspose2d.weight`` ``(C_in, C_out/g, kh, kw)``); ``Linear.weight`` ``(out, in)`` is
the transpose of ``Dense``'s kernel; ``BatchNorm2d``'s ``weight, bias, running_mean,
running_var`` are ``gamma, beta, moving_mean, moving_variance`` (``momentum`` becomes
``1 - momentum``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping

import numpy as np

from .activations import Activation
from .base import Layer
from .conv import Conv2D
from .conv_family import Conv1D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D
from .layers import Dense, Dropout, Flatten, MaxPool2D, ReLU
from .normalization import BatchNormalization
from .pooling import AveragePooling2D

__all__ = ["from_torch", "load_state_dict", "SUPPORTED_TORCH_MODULES"]

SUPPORTED_TORCH_MODULES = ("Conv2d", "ConvTranspose2d", "Conv1d", "BatchNorm2d", "BatchNorm1d", "ReLU",
                           "MaxPool2d", "AvgPool2d", "Flatten", "Linear", "Dropout", "Tanh", "Sigmoid")


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _dtype(module) -> str:
    w = getattr(module, "weight", None)
    return "float64" if w is not None and str(w.dtype) == "torch.float64" else "float32"


def _unsupported(index: int, module, why: str) -> ValueError:
    return ValueError(f"module {index} ({type(module).__name__}): {why}")


def _conv_padding(index, module):
    if getattr(module, "padding_mode", "zeros") != "zeros":
        raise _unsupported(index, module, f"padding_mode={module.padding_mode!r}; only 'zeros' is supported")
    p = module.padding
    return p if isinstance(p, str) else tuple(int(v) for v in p)


def _layer_for(index: int, module) -> Layer:
    kind = type(module).__name__
    if kind == "Conv2d":
        p = _conv_padding(index, module)
        return Conv2D(module.out_channels, tuple(module.kernel_size), strides=tuple(module.stride),
                      padding=p if isinstance(p, str) else ((p[0], p[0]), (p[1], p[1])),
                      dilation_rate=tuple(module.dilation), groups=module.groups, use_bias=module.bias is not None,
                      dtype=_dtype(module), in_channels=module.in_channels)
    if kind == "Conv1d":
        p = _conv_padding(index, module)
        return Conv1D(module.out_channels, module.kernel_size[0], strides=module.stride[0],
                      padding=p if isinstance(p, str) else p[0], data_format="channels_first",
                      dilation_rate=module.dilation[0], groups=module.groups, use_bias=module.bias is not None,
                      dtype=_dtype(module), in_channels=module.in_channels)
    if kind == "ConvTranspose2d":
        _conv_padding(index, module)
        return Conv2DTranspose(module.out_channels, tuple(module.kernel_size), strides=tuple(module.stride),
                               padding=tuple(module.padding), output_padding=tuple(module.output_padding),
                               dilation_rate=tuple(module.dilation), groups=module.groups,
                               use_bias=module.bias is not None, dtype=_dtype(module),
                               in_channels=module.in_channels)
    if kind in ("BatchNorm2d", "BatchNorm1d"):
        if not module.track_running_stats:
            raise _unsupported(index, module, "track_running_stats=False (no running statistics to infer with)")
        momentum = 0.9 if module.momentum is None else 1.0 - module.momentum
        layer = BatchNormalization(axis=1, momentum=momentum, epsilon=module.eps, center=module.affine,
                                   scale=module.affine, dtype=_dtype(module))
        layer.build(module.num_features)
        return layer
    if kind == "ReLU":
        return ReLU()
    if kind in ("Tanh", "Sigmoid"):
        return Activation(kind.lower())
    if kind in ("MaxPool2d", "AvgPool2d"):
        pair = (lambda v: (v, v) if isinstance(v, int) else tuple(v))
        if module.ceil_mode:
            raise _unsupported(index, module, "ceil_mode=True is not supported")
        k, s, p = pair(module.kernel_size), pair(module.stride or module.kernel_size), pair(module.padding)
        if kind == "MaxPool2d":
            if pair(module.dilation) != (1, 1) or p != (0, 0):
                raise _unsupported(index, module, "only padding=0 and dilation=1 are supported")
            return MaxPool2D(k, s)
        if getattr(module, "divisor_override", None) is not None:
            raise _unsupported(index, module, "divisor_override is not supported")
        return AveragePooling2D(k, s, padding="valid" if p == (0, 0) else p,
                                count_include_pad=module.count_include_pad)
    if kind == "Flatten":
        if module.start_dim != 1 or module.end_dim != -1:
            raise _unsupported(index, module, "only Flatten(start_dim=1, end_dim=-1) is supported")
        return Flatten()
    if kind == "Linear":
        return Dense(module.out_features, use_bias=module.bias is not None, dtype=_dtype(module),
                     in_features=module.in_features)
    if kind == "Dropout":
        return Dropout(module.p)
    raise ValueError(f"module {index} of class {kind} is not supported by fastconv.nn.from_torch; "
                     f"supported: {', '.join(SUPPORTED_TORCH_MODULES)}")


def from_torch(module):
    """Convert a ``torch.nn.Sequential`` into a ``fastconv.nn.Sequential`` with its weights.

    The result takes NCHW input as the torch module does and, in inference mode
    (``predict`` / ``forward(training=False)``), gives its ``eval()`` outputs.

    Parameters
    ----------
    module : torch.nn.Sequential
        Of the modules in :data:`SUPPORTED_TORCH_MODULES`.

    Returns
    -------
    fastconv.nn.Sequential

    Raises
    ------
    TypeError
        When ``module`` is not a ``torch.nn.Sequential``.
    ValueError
        For an unsupported module or option (the message names the module's index and class).
    """
    from .model import Sequential

    try:
        import torch
        sequential = isinstance(module, torch.nn.Sequential)  # subclasses too
    except ImportError:  # pragma: no cover - a torch module without torch
        sequential = False
    if not sequential:
        raise TypeError(f"module must be a torch.nn.Sequential, got {type(module).__name__}")
    # _modules, not named_children(), which yields a module used twice (one ReLU instance at
    # two places) once and so dropped a layer
    children = [(name, child) for name, child in module._modules.items() if child is not None]
    layers = [_layer_for(i, child) for i, (_, child) in enumerate(children)]
    model = Sequential(layers)
    # children named through an OrderedDict ("conv1", "fc") key their parameters by name:
    # the layers take them by position
    index = {name: str(i) for i, (name, _) in enumerate(children)}
    state = {}
    for key, value in module.state_dict().items():
        head, _, rest = key.partition(".")
        state[f"{index.get(head, head)}.{rest}"] = value
    load_state_dict(model, state)
    return model


def _layer_arrays(layer: Layer, params: Dict[str, np.ndarray], index: int) -> List[np.ndarray]:
    """The torch parameters of one module, in the layer's ``set_weights`` order and layout."""
    def take(*names):
        missing = [n for n in names if n not in params]
        if missing:
            raise KeyError(f"state dict has no {', '.join(f'{index}.{n}' for n in missing)} "
                           f"for layer {index} ({type(layer).__name__})")
        return [params.pop(n) for n in names]

    bias = ["bias"] if getattr(layer, "use_bias", False) else []
    if isinstance(layer, Dense):
        w = take("weight", *bias)
        return [w[0].T.copy(), *w[1:]]
    if isinstance(layer, Conv1D):
        w = take("weight", *bias)
        return [w[0][:, :, None, :], *w[1:]]
    if isinstance(layer, (Conv2D, Conv2DTranspose, DepthwiseConv2D)):
        return take("weight", *bias)
    if isinstance(layer, BatchNormalization):
        params.pop("num_batches_tracked", None)
        affine = ["weight", "bias"] if layer.scale else []
        return take(*affine, "running_mean", "running_var")
    if isinstance(layer, SeparableConv2D):
        raise ValueError(f"layer {index} (SeparableConv2D) has no PyTorch module to load from")
    return []


def load_state_dict(model, state: Mapping[str, Any], strict: bool = True) -> None:
    """Load a PyTorch ``state_dict`` (keys ``"<layer index>.<name>"``) into ``model``.

    No torch is needed: values may be NumPy arrays (``safetensors.numpy.load_file``) or
    torch tensors. Layer ``i`` of ``model`` takes the keys of torch module ``i``, so the
    model must list its layers as the torch ``Sequential`` does (ReLU, pooling and
    Flatten count). Unbuilt layers are built from the arrays' shapes.

    Parameters
    ----------
    model : fastconv.nn.Sequential
    state : mapping of str to array
    strict : bool, default True
        Raise on keys no layer takes (missing keys always raise).

    Raises
    ------
    KeyError
        For a missing key, or an unexpected one when ``strict``.
    ValueError
        For arrays whose shapes do not fit (naming the layer).
    """
    heads = {key.partition(".")[0] for key in state}
    if heads and not any(h.isdigit() for h in heads):
        raise KeyError(f"the state dict's keys name modules ({', '.join(sorted(heads)[:4])}, ...), not layer "
                       "indices: from a Sequential with named children (convert the module itself with "
                       "from_torch), or with a prefix such as 'module.' or 'features.' (strip it); the keys "
                       "must be '<index>.<name>' in the order of the Sequential's children")
    by_layer: Dict[int, Dict[str, np.ndarray]] = {}
    unexpected = []
    for key, value in state.items():
        head, _, name = key.partition(".")
        if not head.isdigit() or not name or int(head) >= len(model.layers):
            unexpected.append(key)
            continue
        by_layer.setdefault(int(head), {})[name] = _numpy(value)
    for i, layer in enumerate(model.layers):
        params = by_layer.get(i, {})
        arrays = _layer_arrays(layer, params, i)
        if arrays:
            try:
                layer.set_weights(arrays)
            except ValueError as exc:
                raise ValueError(f"layer {i} ({type(layer).__name__}): {exc}") from None
        elif layer.params or not getattr(layer, "built", True):
            raise KeyError(f"state dict has no weights for layer {i} ({type(layer).__name__})")
        unexpected += [f"{i}.{n}" for n in params]
    if strict and unexpected:
        raise KeyError(f"unexpected keys in the state dict: {sorted(unexpected)}")
