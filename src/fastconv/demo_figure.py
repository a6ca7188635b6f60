"""The demo's one-glance figure: what a CNN's first two conv layers learned.

Panels: the first layer's filters before training (glorot_uniform noise, its limit
stated) and after, on one diverging colour scale symmetric around 0; a test digit and
the responses of those filters to it (edge detectors show up as edges); the second
layer's responses to it (its 64x32 3x3 kernels themselves look like noise to the eye;
what they compute does not). Works
for any ``fastconv.nn`` model whose first two :class:`~fastconv.nn.Conv2D` layers are
separated by a ReLU (the fastconv demo network, or a Keras one read with
:func:`fastconv.nn.load_keras`). matplotlib is imported only here.
"""

from __future__ import annotations

import importlib
import math
from typing import Optional, Sequence, Tuple

import numpy as np

from . import nn

__all__ = ["conv_layers", "glorot_limit", "mosaic", "responses", "filters_figure"]


def conv_layers(model: nn.Sequential) -> Tuple[nn.Conv2D, nn.Conv2D]:
    """The first two Conv2D layers of ``model``.

    Raises
    ------
    ValueError
        When the model has fewer than two.
    """
    convs = [layer for layer in model.layers if isinstance(layer, nn.Conv2D)]
    if len(convs) < 2:
        raise ValueError(f"the figure needs a model with two Conv2D layers, got {len(convs)}")
    return convs[0], convs[1]


def glorot_limit(kernel_shape: Sequence[int]) -> float:
    """``sqrt(6 / (fan_in + fan_out))`` for a conv kernel ``(F, C, kh, kw)``."""
    f, c, kh, kw = kernel_shape
    return math.sqrt(6.0 / (c * kh * kw + f * kh * kw))


def mosaic(tiles: np.ndarray, columns: int, gap: int = 1) -> np.ndarray:
    """Tiles ``(n, h, w)`` laid out ``columns`` per row, NaN between them (drawn blank)."""
    n, h, w = tiles.shape
    rows = -(-n // columns)
    out = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap), np.nan)
    for i in range(n):
        r, c = divmod(i, columns)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = tiles[i]
    return out


def _conv(layer: nn.Conv2D, x: np.ndarray) -> np.ndarray:
    """The layer's convolution (no activation) of NCHW ``x``, with fastconv's kernels."""
    fastconv = importlib.import_module("fastconv")
    return fastconv.conv2d(np.ascontiguousarray(x, dtype=layer.dtype), layer.kernel, layer.bias, layer.strides,
                           layer.padding, layer.dilation_rate, layer.groups)


def responses(model: nn.Sequential, image: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The first two conv layers' outputs before their ReLU for one image ``(C, H, W)``.

    Returns
    -------
    r1 : ndarray (F1, H1, W1)
    r2 : ndarray (F2, H2, W2)
        ``conv2(relu(conv1(image)))``.
    """
    c1, c2 = conv_layers(model)
    r1 = _conv(c1, image[None])
    r2 = _conv(c2, np.maximum(r1, 0))
    return r1[0], r2[0]


def _show(fig, ax, img, title, cmap, vmin, vmax, label):
    ax.set_title(title, fontsize=10, loc="left")
    im = ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    bar = fig.colorbar(im, ax=ax, fraction=0.035, pad=0.02)
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=8)
    return im


def filters_figure(model: nn.Sequential, image: np.ndarray, path: str, before: Optional[np.ndarray] = None,
                   title: str = "What the CNN learned", label: Optional[str] = None) -> str:
    """Draw the figure and write it to ``path`` (PNG).

    Parameters
    ----------
    model : fastconv.nn.Sequential
        Trained; its first two Conv2D layers are drawn (kernels in fastconv's
        ``(F, C, kh, kw)`` layout whatever the data format).
    image : ndarray, shape (C, H, W)
        One test image (channels first).
    path : str
    before : ndarray, optional
        The first layer's kernel before training; default: a fresh glorot_uniform draw
        of its shape (what Keras and fastconv start from).
    title : str
    label : str, optional
        The image's class, for the panel title.

    Returns
    -------
    str : ``path``

    Raises
    ------
    ImportError
        Without matplotlib.
    """
    try:
        figure = importlib.import_module("matplotlib.figure")
    except ImportError:
        raise ImportError("the filter figure needs matplotlib: pip install matplotlib "
                          "(or pip install \"fastconv[demo]\")") from None
    from . import initializers

    c1, c2 = conv_layers(model)
    k1 = np.asarray(c1.kernel, dtype=np.float64)
    limit = glorot_limit(k1.shape)
    if before is None:
        before = initializers.get("glorot_uniform")(k1.shape, dtype=np.float64, rng=np.random.default_rng(0))
    before = np.asarray(before, dtype=np.float64)
    f1, cin, kh, kw = k1.shape
    cols = 8
    r1, r2 = responses(model, np.asarray(image))
    k2 = np.asarray(c2.kernel, dtype=np.float64)

    fig = figure.Figure(figsize=(15, 12), layout="constrained")
    fig.suptitle(title, fontsize=14)
    grid = fig.add_gridspec(3, 3, width_ratios=[1, 1, 0.55], height_ratios=[1.1, 0.9, 1.2])
    scale = max(np.abs(k1).max(), limit)
    channel = 0  # a grey-scale input: the first (only) channel of each filter
    _show(fig, fig.add_subplot(grid[0, 0]), mosaic(before[:, channel], cols),
          f"conv1 before training: {f1} filters of {kh}x{kw}, glorot_uniform noise,\n"
          f"uniform in ±sqrt(6/(fan_in+fan_out)) = ±sqrt(6/({cin * kh * kw}+{f1 * kh * kw})) = ±{limit:.3f}",
          "RdBu_r", -scale, scale, "weight")
    _show(fig, fig.add_subplot(grid[0, 1]), mosaic(k1[:, channel], cols),
          f"conv1 after training, same scale (largest |w| {np.abs(k1).max():.3f}):\n"
          "many split into a red and a blue side: edge detectors", "RdBu_r", -scale, scale, "weight")
    ax = fig.add_subplot(grid[0, 2])
    ax.set_title("a test digit" + (f" (a {label})" if label is not None else "") + ",\nwhite 0, black 1",
                 fontsize=10, loc="left")
    ax.imshow(image[0], cmap="gray_r", vmin=0, vmax=max(float(np.max(image)), 1e-12), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    m1 = float(np.abs(r1).max()) or 1.0
    _show(fig, fig.add_subplot(grid[1, :]), mosaic(r1, 16),
          f"conv1's {f1} responses to that digit (before ReLU; same order as the filters above, row by row): "
          "each filter is strongest along the edges of its side and orientation", "RdBu_r", -m1, m1, "response")
    m2 = float(np.abs(r2).max()) or 1.0
    _show(fig, fig.add_subplot(grid[2, :]), mosaic(r2, 16),
          f"conv2's {r2.shape[0]} responses (conv2 of conv1's ReLU'd responses, before its own ReLU): "
          f"each mixes conv1's {k2.shape[1]} edge maps, and only its red parts pass its ReLU",
          "RdBu_r", -m2, m2, "response")
    fig.savefig(path, dpi=80)
    return path
