"""fastconv.initializers: fans, bounds and variances against Keras's formulas."""

import numpy as np
import pytest

from fastconv import initializers as I
from fastconv.nn import Conv2D, Dense

# (filters, C_in/groups, kh, kw): large enough that sample statistics are tight
CONV = (128, 32, 3, 3)            # fan_in 288, fan_out 1152, 36864 values


def _fans_for(shape):
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    if len(shape) == 2:
        return shape[0], shape[1]
    return shape[1] * receptive, shape[0] * receptive


@pytest.mark.parametrize("shape, fans", [
    ((64, 32, 3, 3), (288, 576)),
    ((64, 8, 3, 3), (72, 576)),     # groups=4 with 32 input channels: C_in/groups per filter
    ((10, 1, 5, 7), (35, 350)),
    ((100, 10), (100, 10)),         # dense (in, out)
    ((7,), (7, 7)),
    ((), (1, 1)),
])
def test_compute_fans(shape, fans):
    assert I.compute_fans(shape) == fans


# name -> (scale, mode) of Keras's VarianceScaling
UNIFORMS = {"glorot_uniform": (1.0, "fan_avg"), "he_uniform": (2.0, "fan_in"), "lecun_uniform": (1.0, "fan_in")}
NORMALS = {"glorot_normal": (1.0, "fan_avg"), "he_normal": (2.0, "fan_in"), "lecun_normal": (1.0, "fan_in")}


def _n(shape, mode):
    fan_in, fan_out = _fans_for(shape)
    return {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]


@pytest.mark.parametrize("name", sorted(UNIFORMS))
@pytest.mark.parametrize("shape", [CONV, (512, 256)])
def test_uniform_bounds_and_variance(name, shape):
    scale, mode = UNIFORMS[name]
    limit = np.sqrt(3 * scale / _n(shape, mode))
    w = I.get(name)(shape, rng=0)
    assert w.shape == shape and w.dtype == np.float32
    assert np.abs(w).max() <= limit * (1 + 1e-6)
    assert np.abs(w).max() >= 0.99 * limit            # the support is used up to the bound
    assert abs(w.mean()) < 0.02 * limit
    # variance of U(-l, l) is l^2/3 = scale/n; relative std error here is < 0.5 %
    assert w.astype(np.float64).var() == pytest.approx(limit ** 2 / 3, rel=0.03)


def test_glorot_uniform_formula():
    shape = (64, 32, 3, 3)
    w = I.glorot_uniform(shape, rng=1)
    limit = np.sqrt(6 / (32 * 9 + 64 * 9))
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit


@pytest.mark.parametrize("name", sorted(NORMALS))
def test_truncated_normal_bounds_and_variance(name):
    scale, mode = NORMALS[name]
    n = _n(CONV, mode)
    std = np.sqrt(scale / n) / 0.87962566103423978   # parameter of the truncated normal
    w = I.get(name)(CONV, dtype="float64", rng=2)
    assert w.dtype == np.float64
    assert np.abs(w).max() <= 2 * std                 # truncated at two stddevs
    assert np.abs(w).max() > 1.9 * std
    assert abs(w.mean()) < 0.02 * std
    # Keras's rescaling makes the variance exactly scale / n
    assert w.var() == pytest.approx(scale / n, rel=0.03)


def test_glorot_normal_keras_scale():
    shape = (128, 32, 3, 3)
    w = I.glorot_normal(shape, dtype="float64", rng=3)
    assert w.std() == pytest.approx(np.sqrt(2 / (288 + 1152)), rel=0.02)


def test_seeding():
    a = I.glorot_uniform(CONV, rng=5)
    assert np.array_equal(a, I.glorot_uniform(CONV, rng=5))
    assert np.array_equal(a, I.glorot_uniform(CONV, rng=np.random.default_rng(5)))
    assert not np.array_equal(a, I.glorot_uniform(CONV, rng=6))
    g = np.random.default_rng(7)
    assert not np.array_equal(I.he_normal(CONV, rng=g), I.he_normal(CONV, rng=g))  # generator advances


def test_constant_zeros_ones():
    assert np.array_equal(I.zeros((2, 3)), np.zeros((2, 3), np.float32))
    assert I.ones((4,), dtype="float64").dtype == np.float64 and I.ones((4,)).sum() == 4
    c = I.constant(0.25)
    assert np.all(c((3, 2), dtype="float64") == 0.25)


def test_get():
    assert I.get("Glorot_Uniform") is I.glorot_uniform
    assert I.get("he_normal") is I.he_normal
    assert I.get(None) is None
    f = I.constant(1.0)
    assert I.get(f) is f
    with pytest.raises(ValueError, match="unknown initializer"):
        I.get("glorot_unifrom")
    with pytest.raises(ValueError):
        I.get(3)
    with pytest.raises(TypeError):
        I.glorot_uniform((3, 3), dtype="int32")


def test_conv2d_layer_uses_keras_fans_with_groups():
    # 64 input channels, 4 groups: kernel (256, 16, 3, 3), fan_in 144, fan_out 2304
    layer = Conv2D(256, 3, groups=4, in_channels=64, seed=0, kernels="reference")
    w = layer.params["kernel"]
    assert w.shape == (256, 16, 3, 3)
    limit = np.sqrt(6 / (16 * 9 + 256 * 9))
    assert np.sqrt(6 / (64 * 9 + 256 * 9)) < 0.95 * limit  # fans over all 64 channels would be caught
    assert np.abs(w).max() <= limit * (1 + 1e-6) and np.abs(w).max() > 0.99 * limit
    assert w.astype(np.float64).var() == pytest.approx(limit ** 2 / 3, rel=0.03)
    assert np.all(layer.params["bias"] == 0)


def test_conv2d_groups_fan_in_distinguishes():
    # he_uniform depends only on fan_in: per-group channels (8*9) vs all channels (32*9) is a 2x bound
    layer = Conv2D(64, 3, groups=4, in_channels=32, kernel_initializer="he_uniform", seed=1,
                   kernels="reference")
    limit = np.sqrt(6 / (8 * 9))
    assert np.abs(layer.params["kernel"]).max() > 0.95 * limit


def test_dense_glorot_uniform():
    layer = Dense(300, in_features=200, seed=0)
    w = layer.params["kernel"]
    limit = np.sqrt(6 / 500)
    assert w.shape == (200, 300)
    assert np.abs(w).max() <= limit * (1 + 1e-6) and np.abs(w).max() > 0.99 * limit
    assert w.astype(np.float64).var() == pytest.approx(limit ** 2 / 3, rel=0.03)
