"""Keras 3 files: ``.keras`` models and ``.weights.h5`` weights, read and written without Keras.

A ``.keras`` file is a zip of ``config.json`` (the model's architecture), ``metadata.json``
and ``model.weights.h5``, an HDF5 file with one group per layer,
``layers/<layer name>/vars/<i>``, holding the layer's variables in Keras's layouts.
``.weights.h5`` is that HDF5 file alone. h5py is imported only inside these functions
(``pip install "fastconv[keras]"``); Keras itself is never needed.

Layouts (Keras -> fastconv): Conv2D ``(kh, kw, C_in/g, F) -> (F, C_in/g, kh, kw)``;
Conv2DTranspose ``(kh, kw, F, C_in) -> (C_in, F, kh, kw)``; DepthwiseConv2D
``(kh, kw, C_in, m) -> (C_in*m, 1, kh, kw)``; SeparableConv2D depthwise as that and
pointwise ``(1, 1, C_in*m, F) -> (F, C_in*m, 1, 1)``; Conv1D ``(k, C_in/g, F) ->
(F, C_in/g, 1, k)``; Dense ``(in, units)`` and BatchNormalization ``gamma, beta,
moving_mean, moving_variance`` as they are.
"""

from __future__ import annotations

import datetime
import importlib
import io
import json
import os
import re
import warnings
import zipfile
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .._spec import resolve_padding  # the one place padding forms are understood
from .activations import Activation
from .base import Layer, user_stacklevel
from .conv import Conv2D
from .conv_family import Conv1D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D
from .layers import Dense, Dropout, Flatten, MaxPool2D, ReLU
from .normalization import BatchNormalization
from .pooling import AveragePooling2D, GlobalAveragePooling2D, ZeroPadding2D

__all__ = ["load_keras", "save_keras", "load_weights", "save_weights", "h5_paths", "layers_from_config",
           "SUPPORTED_KERAS_LAYERS"]

PathLike = Union[str, os.PathLike]


def _h5py():
    try:
        return importlib.import_module("h5py")
    except ImportError:
        raise ImportError("reading and writing Keras files needs h5py: pip install h5py "
                          "(or pip install \"fastconv[keras]\")") from None


# ----------------------------------------------------------------------------- layouts

def _conv_kernel_in(k):   # Keras Conv2D / Conv2DTranspose / SeparableConv2D pointwise
    return np.ascontiguousarray(np.asarray(k).transpose(3, 2, 0, 1))


def _conv_kernel_out(k):
    return np.ascontiguousarray(np.asarray(k).transpose(2, 3, 1, 0))


def _depthwise_in(k):
    kh, kw, c, m = k.shape
    return np.ascontiguousarray(np.asarray(k).transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw))


def _depthwise_out(k, m):
    cm, _, kh, kw = k.shape
    return np.ascontiguousarray(k.reshape(cm // m, m, kh, kw).transpose(2, 3, 0, 1))


def _to_fastconv(layer: Layer, arrays: List[np.ndarray]) -> List[np.ndarray]:
    """Keras's variables of ``layer`` in fastconv's layouts and order."""
    if isinstance(layer, (Conv2D, Conv2DTranspose)):
        return [_conv_kernel_in(arrays[0]), *arrays[1:]]
    if isinstance(layer, DepthwiseConv2D):
        return [_depthwise_in(arrays[0]), *arrays[1:]]
    if isinstance(layer, SeparableConv2D):
        return [_depthwise_in(arrays[0]), _conv_kernel_in(arrays[1]), *arrays[2:]]
    if isinstance(layer, Conv1D):
        return [np.ascontiguousarray(np.asarray(arrays[0]).transpose(2, 1, 0)[:, :, None, :]), *arrays[1:]]
    return list(arrays)


def _to_keras(layer: Layer) -> List[np.ndarray]:
    """``layer``'s variables in Keras's layouts and order."""
    w = layer.get_weights()
    if isinstance(layer, (Conv2D, Conv2DTranspose)):
        return [_conv_kernel_out(w[0]), *w[1:]]
    if isinstance(layer, DepthwiseConv2D):
        return [_depthwise_out(w[0], layer.depth_multiplier), *w[1:]]
    if isinstance(layer, SeparableConv2D):
        return [_depthwise_out(w[0], layer.depth_multiplier), _conv_kernel_out(w[1]), *w[2:]]
    if isinstance(layer, Conv1D):
        return [np.ascontiguousarray(w[0][:, :, 0, :].transpose(2, 1, 0)), *w[1:]]
    return w


# ----------------------------------------------------------------------------- config -> layers

def _activation(value) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):  # a serialised function: {"class_name": "function", "config": "relu"}
        cfg = value.get("config")
        return cfg if isinstance(cfg, str) else value.get("class_name")
    return str(value)


def _padding(value):
    return value.lower() if isinstance(value, str) else value


def _dtype(cfg) -> str:
    d = cfg.get("dtype")
    if isinstance(d, dict):
        d = (d.get("config") or {}).get("name", "float32")
    return "float64" if d == "float64" else "float32"


def _common(cfg) -> Dict[str, Any]:
    return dict(name=cfg["name"], dtype=_dtype(cfg))


def _conv2d(cfg):
    return Conv2D(cfg["filters"], tuple(cfg["kernel_size"]), strides=tuple(cfg.get("strides", (1, 1))),
                  padding=_padding(cfg.get("padding", "valid")), dilation_rate=tuple(cfg.get("dilation_rate", (1, 1))),
                  groups=cfg.get("groups", 1), use_bias=cfg.get("use_bias", True),
                  data_format=cfg.get("data_format") or "channels_last",
                  activation=_activation(cfg.get("activation")), **_common(cfg))


def _conv2d_transpose(cfg):
    op = cfg.get("output_padding")
    return Conv2DTranspose(cfg["filters"], tuple(cfg["kernel_size"]), strides=tuple(cfg.get("strides", (1, 1))),
                           padding=_padding(cfg.get("padding", "valid")),
                           output_padding=None if op is None else tuple(op),
                           data_format=cfg.get("data_format") or "channels_last",
                           dilation_rate=tuple(cfg.get("dilation_rate", (1, 1))), use_bias=cfg.get("use_bias", True),
                           activation=_activation(cfg.get("activation")), **_common(cfg))


def _depthwise(cfg):
    return DepthwiseConv2D(tuple(cfg["kernel_size"]), strides=tuple(cfg.get("strides", (1, 1))),
                           padding=_padding(cfg.get("padding", "valid")),
                           depth_multiplier=cfg.get("depth_multiplier", 1),
                           data_format=cfg.get("data_format") or "channels_last",
                           dilation_rate=tuple(cfg.get("dilation_rate", (1, 1))), use_bias=cfg.get("use_bias", True),
                           activation=_activation(cfg.get("activation")), **_common(cfg))


def _separable(cfg):
    return SeparableConv2D(cfg["filters"], tuple(cfg["kernel_size"]), strides=tuple(cfg.get("strides", (1, 1))),
                           padding=_padding(cfg.get("padding", "valid")),
                           data_format=cfg.get("data_format") or "channels_last",
                           dilation_rate=tuple(cfg.get("dilation_rate", (1, 1))),
                           depth_multiplier=cfg.get("depth_multiplier", 1), use_bias=cfg.get("use_bias", True),
                           activation=_activation(cfg.get("activation")), **_common(cfg))


def _conv1d(cfg):
    first = (lambda v: v[0] if isinstance(v, (list, tuple)) else v)
    return Conv1D(cfg["filters"], first(cfg["kernel_size"]), strides=first(cfg.get("strides", 1)),
                  padding=_padding(cfg.get("padding", "valid")), data_format=cfg.get("data_format") or "channels_last",
                  dilation_rate=first(cfg.get("dilation_rate", 1)), groups=cfg.get("groups", 1),
                  use_bias=cfg.get("use_bias", True), activation=_activation(cfg.get("activation")), **_common(cfg))


def _dense(cfg):
    return Dense(cfg["units"], use_bias=cfg.get("use_bias", True), activation=_activation(cfg.get("activation")),
                 **_common(cfg))


def _batchnorm(cfg):
    axis = cfg.get("axis", -1)
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            raise ValueError(f"layer {cfg['name']!r} (BatchNormalization): only one axis is supported, got {axis}")
        axis = axis[0]
    return BatchNormalization(axis=axis, momentum=cfg.get("momentum", 0.99), epsilon=cfg.get("epsilon", 1e-3),
                              center=cfg.get("center", True), scale=cfg.get("scale", True), **_common(cfg))


def _pool_args(cfg):
    strides = cfg.get("strides")
    return dict(pool_size=tuple(cfg.get("pool_size", (2, 2))), strides=None if strides is None else tuple(strides),
                padding=_padding(cfg.get("padding", "valid")), data_format=cfg.get("data_format") or "channels_last",
                name=cfg["name"])


def _flatten(cfg):
    if cfg.get("data_format") == "channels_first":
        raise ValueError(f"layer {cfg['name']!r} (Flatten): data_format='channels_first' is not supported")
    return Flatten(name=cfg["name"])


def _relu(cfg):
    if cfg.get("max_value") is not None or cfg.get("negative_slope", 0) or cfg.get("threshold", 0):
        raise ValueError(f"layer {cfg['name']!r} (ReLU): only max_value=None, negative_slope=0, "
                         "threshold=0 are supported")
    return ReLU(name=cfg["name"])


_FROM_KERAS: Dict[str, Callable[[dict], Layer]] = {
    "Conv2D": _conv2d, "Convolution2D": _conv2d,
    "Conv2DTranspose": _conv2d_transpose, "Convolution2DTranspose": _conv2d_transpose,
    "DepthwiseConv2D": _depthwise, "SeparableConv2D": _separable, "SeparableConvolution2D": _separable,
    "Conv1D": _conv1d, "Convolution1D": _conv1d,
    "Dense": _dense, "BatchNormalization": _batchnorm,
    "MaxPooling2D": lambda cfg: MaxPool2D(**_pool_args(cfg)), "MaxPool2D": lambda cfg: MaxPool2D(**_pool_args(cfg)),
    "AveragePooling2D": lambda cfg: AveragePooling2D(**_pool_args(cfg)),
    "AvgPool2D": lambda cfg: AveragePooling2D(**_pool_args(cfg)),
    "GlobalAveragePooling2D": lambda cfg: GlobalAveragePooling2D(
        data_format=cfg.get("data_format") or "channels_last", keepdims=cfg.get("keepdims", False), name=cfg["name"]),
    "GlobalAvgPool2D": lambda cfg: GlobalAveragePooling2D(
        data_format=cfg.get("data_format") or "channels_last", keepdims=cfg.get("keepdims", False), name=cfg["name"]),
    "ZeroPadding2D": lambda cfg: ZeroPadding2D(tuple(tuple(p) for p in cfg.get("padding", ((1, 1), (1, 1)))),
                                               data_format=cfg.get("data_format") or "channels_last", name=cfg["name"]),
    "Flatten": _flatten, "Dropout": lambda cfg: Dropout(cfg.get("rate", 0.5), name=cfg["name"]),
    "Activation": lambda cfg: Activation(_activation(cfg["activation"]), name=cfg["name"]),
    "ReLU": _relu,
}

#: Keras layer classes :func:`load_keras` understands.
SUPPORTED_KERAS_LAYERS = tuple(sorted(_FROM_KERAS))


def layers_from_config(config: dict) -> Tuple[List[Layer], Optional[tuple]]:
    """fastconv layers for a Keras ``Sequential`` config (the parsed ``config.json``).

    Returns
    -------
    layers : list of Layer
    batch_shape : tuple or None
        The InputLayer's shape, batch first, when the config has one.
    class_names : list of str
        The Keras class of each layer (they name its weights' groups, see :func:`h5_paths`).

    Raises
    ------
    ValueError
        For a model that is not a Sequential, or a layer fastconv does not have (the
        message names the layer and its class).
    """
    if config.get("class_name") != "Sequential":
        raise ValueError(f"only Keras Sequential models can be loaded, got a {config.get('class_name')!r} "
                         "(rebuild it as keras.Sequential, or load its weights with load_weights)")
    layers, batch_shape, classes = [], None, []
    for entry in config["config"]["layers"]:
        cls, cfg = entry["class_name"], entry["config"]
        if cls == "InputLayer":
            shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
            batch_shape = None if shape is None else tuple(shape)
            continue
        if cls not in _FROM_KERAS:
            raise ValueError(f"layer {cfg.get('name')!r} of class {cls!r} is not supported by fastconv.nn; "
                             f"supported: {', '.join(SUPPORTED_KERAS_LAYERS)}")
        if batch_shape is None and "batch_shape" in cfg:
            batch_shape = tuple(cfg["batch_shape"])
        built_for = (entry.get("build_config") or {}).get("input_shape") or []
        if cls == "Dense" and len(built_for) > 2:  # Keras applies it along the last axis of images
            raise ValueError(f"layer {cfg.get('name')!r} of class 'Dense' takes a {len(built_for)}-D input "
                             f"{tuple(built_for)}; fastconv's Dense takes (N, features): put a Flatten before it")
        try:
            layers.append(_FROM_KERAS[cls](cfg))
        except (ValueError, TypeError) as exc:  # an argument fastconv lacks, e.g. activation="gelu"
            raise ValueError(f"layer {cfg.get('name')!r} of class {cls!r}: {exc}") from None
        classes.append(cls)
    return layers, batch_shape, classes


# ----------------------------------------------------------------------------- weights

_KERAS_CLASS = {Conv2D: "Conv2D", Conv2DTranspose: "Conv2DTranspose", DepthwiseConv2D: "DepthwiseConv2D",
                SeparableConv2D: "SeparableConv2D", Conv1D: "Conv1D", Dense: "Dense",
                BatchNormalization: "BatchNormalization", MaxPool2D: "MaxPooling2D",
                AveragePooling2D: "AveragePooling2D", GlobalAveragePooling2D: "GlobalAveragePooling2D",
                ZeroPadding2D: "ZeroPadding2D", Flatten: "Flatten", Dropout: "Dropout", ReLU: "ReLU",
                Activation: "Activation"}


def _snake(name: str) -> str:
    """Keras's ``naming.to_snake_case``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def h5_paths(class_names: Sequence[str]) -> List[str]:
    """The HDF5 groups Keras keeps a Sequential's layers in: ``layers/<snake_case class>``
    numbered per class in order (``conv2d``, ``conv2d_1``, ...), never the layer names."""
    used: Dict[str, int] = {}
    paths = []
    for cls in class_names:
        name = _snake(cls)
        if name in used:
            used[name] += 1
            name = f"{name}_{used[name]}"
        else:
            used[name] = 0
        paths.append(f"layers/{name}")
    return paths


def _model_paths(model) -> List[str]:
    classes = []
    for layer in model.layers:
        cls = next((c for t, c in _KERAS_CLASS.items() if type(layer) is t), None)
        if cls is None:
            raise ValueError(f"layer {layer.name!r} of class {type(layer).__name__} has no Keras equivalent")
        classes.append(cls)
    return h5_paths(classes)


def _read_h5_weights(model, h5, paths: Optional[Sequence[str]] = None) -> None:
    paths = _model_paths(model) if paths is None else paths
    for layer, path in zip(model.layers, paths):
        group = h5.get(path)
        if group is None or "vars" not in group or len(group["vars"]) == 0:
            if layer.params or not getattr(layer, "built", True):
                found = sorted(h5["layers"]) if "layers" in h5 else []
                raise ValueError(f"no weights for layer {layer.name!r} ({type(layer).__name__}) in the file "
                                 f"(looked for {path}/vars; the file has layers {found})")
            continue
        v = group["vars"]
        arrays = [np.asarray(v[str(i)]) for i in range(len(v))]
        try:
            layer.set_weights(_to_fastconv(layer, arrays))
        except ValueError as exc:
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}): the file's weights "
                             f"{[a.shape for a in arrays]} do not fit: {exc}") from None


def load_keras(path: PathLike, dtype: Optional[str] = None):
    """Read a Keras 3 ``.keras`` file of a ``Sequential`` model into ``fastconv.nn``.

    The layers are built with Keras's ``data_format`` (``channels_last`` unless the file
    says otherwise), so the model takes and returns what the Keras model does
    (``(N, H, W, C)`` images) and predicts the same.

    Parameters
    ----------
    path : str or path-like
    dtype : {"float32", "float64"}, optional
        Override the layers' dtype (default: the file's).

    Returns
    -------
    fastconv.nn.Sequential

    Raises
    ------
    ValueError
        For a model that is not Sequential, an unsupported layer (named, with its class)
        or weights that do not fit.
    ImportError
        Without h5py.
    """
    from .model import Sequential

    h5py = _h5py()
    if not os.path.isfile(path):  # (is_zipfile says False for a missing file too)
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a Keras 3 .keras file (a zip archive). A legacy HDF5 model "
                         "(model.save('m.h5')) is not read: re-save it from Keras 3 as 'm.keras'; a "
                         "weights file (.weights.h5) goes into a model built in fastconv.nn with "
                         "load_weights")
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        if "config.json" not in names or "model.weights.h5" not in names:
            raise ValueError(f"{path}: not a Keras 3 .keras file (it has {names}, expected config.json "
                             "and model.weights.h5)")
        config = json.loads(z.read("config.json"))
        weights = z.read("model.weights.h5")
    layers, batch_shape, classes = layers_from_config(config)
    if dtype is not None:
        for layer in layers:
            if hasattr(layer, "dtype"):
                layer.dtype = np.dtype(dtype)
    model = Sequential(layers, name=config["config"].get("name"))
    model.input_shape = batch_shape
    with h5py.File(io.BytesIO(weights), "r") as h5:
        _read_h5_weights(model, h5, h5_paths(classes))
    return model


def load_weights(model, path: PathLike) -> None:
    """Read a Keras ``.weights.h5`` file (``model.save_weights``) into ``model``.

    Layers are matched as Keras matches them: by position among the layers of the same
    Keras class (the file's groups are ``layers/conv2d``, ``layers/conv2d_1``, ...,
    whatever the layers' names); every layer with weights must find its group.

    Parameters
    ----------
    model : fastconv.nn.Sequential
    path : str or path-like
        A ``.weights.h5`` file, or a ``.keras`` file (its weights are read).
    """
    h5py = _h5py()
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            data = io.BytesIO(z.read("model.weights.h5"))
            config = json.loads(z.read("config.json")) if "config.json" in z.namelist() else None
        _warn_flatten_order(model, None if config is None else _config_format_before_flatten(config))
        with h5py.File(data, "r") as h5:
            _read_h5_weights(model, h5)
        return
    with h5py.File(path, "r") as h5:
        said = h5.attrs.get(FLATTEN_FORMAT_ATTR)
        _warn_flatten_order(model, said.decode() if isinstance(said, bytes) else said)
        _read_h5_weights(model, h5)


#: Root attribute of the .weights.h5 files save_weights writes: the data_format of the image
#: layers before the model's Flatten (Keras ignores it; load_weights reads it back).
FLATTEN_FORMAT_ATTR = "fastconv_flatten_input_format"


def _format_before_flatten(layers) -> Optional[str]:
    """The data_format of the image layers a Flatten followed by a Dense flattens, or None."""
    fmt = None
    for i, layer in enumerate(layers):
        if isinstance(layer, Flatten):
            return fmt if any(isinstance(later, Dense) for later in layers[i + 1:]) else None
        fmt = getattr(layer, "data_format", fmt)
    return None


def _config_format_before_flatten(config: dict) -> str:
    """The same, of a Keras config (Keras's default channels_last where no layer says)."""
    fmt = "channels_last"
    for entry in config.get("config", {}).get("layers", []):
        if entry.get("class_name") == "Flatten":
            break
        fmt = entry.get("config", {}).get("data_format") or fmt
    return fmt


def _warn_flatten_order(model, source_format: Optional[str]) -> None:
    """Warn where ``model`` flattens channels_first images into a Dense while the weights' model
    was channels_last (``source_format``; None: a weights file that does not say, so Keras's
    default): the Dense kernel's rows follow the Flatten's order, (H, W, C) in Keras's default
    layout against (C, H, W) here, so the weights would load without error and predict wrongly."""
    if _format_before_flatten(model.layers) != "channels_first" or source_format == "channels_first":
        return
    keras = "channels_last" if source_format else "channels_last (Keras's default; a weights file does not say)"
    warnings.warn(f"the model flattens channels_first images into a Dense, but the Keras model was {keras}: "
                  "its Dense rows are in (H, W, C) order, these in (C, H, W), so the loaded model would "
                  "predict differently. Build the image layers with data_format='channels_last' (and "
                  "feed NHWC batches), or use load_keras, which does.", UserWarning, stacklevel=user_stacklevel())


def _write_h5_weights(model, f) -> None:
    f.create_group("vars").attrs["name"] = model.name
    f.create_group("layers")
    for layer, path in zip(model.layers, _model_paths(model)):
        v = f.create_group(path).create_group("vars")
        v.attrs["name"] = layer.name
        if layer.params or isinstance(layer, BatchNormalization):
            for i, a in enumerate(_to_keras(layer)):
                v.create_dataset(str(i), data=a)


def save_weights(model, path: PathLike) -> None:
    """Write ``model``'s weights as a Keras ``.weights.h5`` file (``keras_model.load_weights`` reads it).

    Parameters
    ----------
    model : fastconv.nn.Sequential
    path : str or path-like
        Keras requires the name to end in ``.weights.h5``.
    """
    if not str(path).endswith(".weights.h5"):
        raise ValueError(f"path must end in '.weights.h5' (Keras's rule), got {str(path)!r}")
    _unbuilt(model)
    h5py = _h5py()
    with h5py.File(path, "w") as f:
        _write_h5_weights(model, f)
        fmt = _format_before_flatten(model.layers)
        if fmt is not None:  # so that load_weights knows the Dense rows' order (Keras ignores it)
            f.attrs[FLATTEN_FORMAT_ATTR] = fmt


# ----------------------------------------------------------------------------- layers -> config

def _keras_padding(layer, padding):
    if isinstance(padding, str):
        return padding
    if resolve_padding(padding, (1, 1), (1, 1), (1, 1), (1, 1)) == (0, 0, 0, 0):  # as from_torch writes
        return "valid"                                                                # torch's padding=0
    raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) has padding={padding!r}; Keras has only "
                     "'valid' and 'same' (put a ZeroPadding2D before it)")


def _act_name(layer) -> str:
    return getattr(getattr(layer, "activation", None), "name", "linear")


def _layer_config(layer: Layer, input_shape: Sequence[Optional[int]]) -> Tuple[str, dict]:
    """(Keras class name, its config) for one fastconv layer taking ``input_shape``."""
    name = layer.name
    dt = getattr(layer, "dtype", np.dtype("float32"))
    base = {"name": name, "trainable": True, "dtype": np.dtype(dt).name}
    if isinstance(layer, Conv2D):
        return "Conv2D", {**base, "filters": layer.filters, "kernel_size": list(layer.kernel_size),
                          "strides": list(layer.strides), "padding": _keras_padding(layer, layer.padding),
                          "data_format": layer.data_format, "dilation_rate": list(layer.dilation_rate),
                          "groups": layer.groups, "activation": _act_name(layer), "use_bias": layer.use_bias}
    if isinstance(layer, Conv2DTranspose):
        if layer.groups != 1:
            raise ValueError(f"layer {name!r} (Conv2DTranspose) has groups={layer.groups}; Keras's has no groups")
        return "Conv2DTranspose", {
            **base, "filters": layer.filters, "kernel_size": list(layer.kernel_size), "strides": list(layer.strides),
            "padding": _keras_padding(layer, layer.padding),
            "output_padding": None if layer.output_padding is None else list(layer.output_padding),
            "data_format": layer.data_format, "dilation_rate": list(layer.dilation_rate),
            "activation": _act_name(layer), "use_bias": layer.use_bias}
    if isinstance(layer, DepthwiseConv2D):
        return "DepthwiseConv2D", {
            **base, "kernel_size": list(layer.kernel_size), "strides": list(layer.strides),
            "padding": _keras_padding(layer, layer.padding), "depth_multiplier": layer.depth_multiplier,
            "data_format": layer.data_format, "dilation_rate": list(layer.dilation_rate),
            "activation": _act_name(layer), "use_bias": layer.use_bias}
    if isinstance(layer, SeparableConv2D):
        return "SeparableConv2D", {
            **base, "filters": layer.filters, "kernel_size": list(layer.kernel_size), "strides": list(layer.strides),
            "padding": _keras_padding(layer, layer.padding), "depth_multiplier": layer.depth_multiplier,
            "data_format": layer.data_format, "dilation_rate": list(layer.dilation_rate),
            "activation": _act_name(layer), "use_bias": layer.use_bias}
    if isinstance(layer, Conv1D):
        return "Conv1D", {**base, "filters": layer.filters, "kernel_size": [layer.kernel_size],
                          "strides": [layer.strides], "padding": _keras_padding(layer, layer.padding),
                          "data_format": layer.data_format, "dilation_rate": [layer.dilation_rate],
                          "groups": layer.groups, "activation": _act_name(layer), "use_bias": layer.use_bias}
    if isinstance(layer, Dense):
        return "Dense", {**base, "units": layer.units, "activation": _act_name(layer), "use_bias": layer.use_bias}
    if isinstance(layer, BatchNormalization):
        # axis None is the channel axis of fastconv's layout: 1 on images (NCHW), -1 on
        # features; Keras's default -1 would be the width of an NCHW batch
        axis = layer.axis if layer.axis is not None else (-1 if len(input_shape) == 2 else 1)
        return "BatchNormalization", {**base, "axis": axis,
                                      "momentum": layer.momentum, "epsilon": layer.epsilon,
                                      "center": layer.center, "scale": layer.scale}
    if isinstance(layer, (MaxPool2D, AveragePooling2D)):
        cls = "MaxPooling2D" if isinstance(layer, MaxPool2D) else "AveragePooling2D"
        if isinstance(layer, AveragePooling2D) and not isinstance(layer.padding, str):
            _keras_padding(layer, layer.padding)
        return cls, {**base, "pool_size": list(layer.pool_size), "strides": list(layer.strides),
                     "padding": layer.padding, "data_format": layer.data_format}
    if isinstance(layer, GlobalAveragePooling2D):
        return "GlobalAveragePooling2D", {**base, "data_format": layer.data_format, "keepdims": layer.keepdims}
    if isinstance(layer, ZeroPadding2D):
        return "ZeroPadding2D", {**base, "padding": [list(p) for p in layer.padding], "data_format": layer.data_format}
    if isinstance(layer, Flatten):
        return "Flatten", {**base, "data_format": "channels_last"}  # flattens the array as it is, like fastconv
    if isinstance(layer, Dropout):
        return "Dropout", {**base, "rate": layer.rate}
    if isinstance(layer, ReLU):
        return "ReLU", {**base}
    if isinstance(layer, Activation):
        return "Activation", {**base, "activation": layer.activation.name}
    raise ValueError(f"layer {name!r} of class {type(layer).__name__} has no Keras equivalent in save_keras")


def _unbuilt(model) -> None:
    for layer in model.layers:
        if not getattr(layer, "built", True):
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) has no weights yet: run the model "
                             "on one batch (or summary(input_shape)) before saving")


def model_config(model, input_shape: Sequence[Optional[int]]) -> dict:
    """The Keras ``config.json`` of ``model`` for inputs of ``input_shape`` (batch first)."""
    batch_shape = [None, *list(input_shape)[1:]]
    layers = [{"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
               "config": {"batch_shape": batch_shape, "dtype": "float32", "sparse": False,
                          "name": "input_layer"}}]
    shape = tuple(batch_shape)
    for layer in model.layers:
        cls, cfg = _layer_config(layer, shape)
        layers.append({"module": "keras.layers", "class_name": cls, "config": cfg, "registered_name": None,
                       "build_config": {"input_shape": list(shape)}})
        shape = layer.compute_output_shape(shape)
    return {"module": "keras", "class_name": "Sequential", "registered_name": None,
            "config": {"name": model.name, "trainable": True, "dtype": "float32", "layers": layers},
            "build_config": {"input_shape": batch_shape}, "compile_config": None}


def save_keras(model, path: PathLike, input_shape: Optional[Sequence[Optional[int]]] = None) -> None:
    """Write ``model`` as a Keras 3 ``.keras`` file that ``keras.saving.load_model`` opens.

    Parameters
    ----------
    model : fastconv.nn.Sequential
        Every layer built and of a kind Keras has (``padding`` "valid"/"same").
    path : str or path-like
        Should end in ``.keras`` (Keras's rule for ``load_model``).
    input_shape : sequence, optional
        The model's input shape, batch first (the batch may be None), in the layers'
        data format; default: the shape a model from :func:`load_keras` was read with.
    """
    if input_shape is None:
        input_shape = getattr(model, "input_shape", None)
    if input_shape is None:
        raise ValueError("input_shape is needed (batch first, e.g. (None, 28, 28, 1)) to write a Keras model")
    _unbuilt(model)
    h5py = _h5py()
    config = model_config(model, input_shape)
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        _write_h5_weights(model, f)
    meta = {"keras_version": "3.0.0", "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
            "saved_by": "fastconv"}
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", json.dumps(meta))
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", buffer.getvalue())
