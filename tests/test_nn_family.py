"""The Keras-family layers of fastconv.nn (conv_family, normalization, pooling, activations):
every backward against central finite differences in float64, outputs against
definitions built from fastconv.reference / plain NumPy, shapes, layouts and errors."""

import numpy as np
import pytest

from fastconv import nn, reference


def numeric_grad(f, a, eps=1e-6):
    g = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + eps
        fp = f()
        a[i] = old - eps
        fm = f()
        a[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


def check_grads(layer, x, training=False, tol=1e-6, seed=0):
    """backward() against finite differences of sum(forward(x) * G), for x and every param."""
    rng = np.random.default_rng(seed)
    y = layer.forward(x, training=training)
    G = rng.standard_normal(y.shape)
    gx = layer.backward(G)
    grads = {k: v.copy() for k, v in layer.grads.items()}
    assert set(grads) == set(layer.params)

    def f():
        return float(np.sum(layer.forward(x, training=training) * G))

    np.testing.assert_allclose(gx, numeric_grad(f, x), rtol=tol, atol=tol, err_msg="input")
    for key, p in layer.params.items():
        np.testing.assert_allclose(grads[key], numeric_grad(f, p), rtol=tol, atol=tol, err_msg=key)
    return y


F64 = dict(dtype="float64", seed=1, bias_initializer="glorot_uniform")


@pytest.mark.parametrize("layer, shape", [
    (lambda: nn.Conv2DTranspose(3, 3, strides=2, padding="same", **F64), (2, 2, 3, 4)),
    (lambda: nn.Conv2DTranspose(2, (2, 3), strides=(2, 1), padding="valid", activation="tanh", **F64), (1, 3, 3, 3)),
    (lambda: nn.Conv2DTranspose(2, 3, strides=2, padding="same", output_padding=1, data_format="channels_last",
                                **F64), (2, 3, 3, 2)),
    (lambda: nn.Conv2DTranspose(4, 3, strides=2, padding=1, output_padding=1, groups=2, dilation_rate=1, **F64),
     (1, 2, 3, 3)),
    (lambda: nn.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, **F64), (2, 3, 5, 5)),
    (lambda: nn.DepthwiseConv2D(3, dilation_rate=2, data_format="channels_last", activation="sigmoid", **F64),
     (1, 6, 6, 2)),
    (lambda: nn.SeparableConv2D(4, 3, padding="same", depth_multiplier=2, activation="relu", **F64), (2, 3, 5, 4)),
    (lambda: nn.SeparableConv2D(2, 2, strides=2, data_format="channels_last", **F64), (1, 5, 5, 3)),
])
def test_conv_family_gradients(layer, shape):
    layer = layer()
    x = np.random.default_rng(2).standard_normal(shape)
    y = check_grads(layer, x)
    assert y.shape == layer.compute_output_shape(x.shape)


@pytest.mark.parametrize("cfg, shape", [
    (dict(filters=3, kernel_size=3), (2, 7, 2)),
    (dict(filters=4, kernel_size=2, strides=2, padding="same", groups=2), (1, 5, 4)),
    (dict(filters=2, kernel_size=3, padding="causal", dilation_rate=2, activation="elu"), (2, 6, 3)),
    (dict(filters=2, kernel_size=3, padding=1, data_format="channels_first"), (2, 3, 5)),
])
def test_conv1d_gradients_and_definition(cfg, shape):
    layer = nn.Conv1D(**cfg, **F64)
    x = np.random.default_rng(3).standard_normal(shape)
    y = check_grads(layer, x)
    assert y.shape == layer.compute_output_shape(x.shape)
    # definition: a 2-D conv on height-1 images of the channels-first input
    xc = x if layer.data_format == "channels_first" else x.transpose(0, 2, 1)
    k = layer.kernel_size
    pads = {"valid": (0, 0), "same": ((k - 1) * layer.dilation_rate // 2, None), "causal":
            ((k - 1) * layer.dilation_rate, 0)}.get(layer.padding, (layer.padding, layer.padding))
    if pads[1] is None:  # "same" on 1-D: the conv2d "same" of a height-1 image
        want = reference.conv2d(xc[:, :, None], layer.params["kernel"], layer.params["bias"], (1, layer.strides),
                                "same", (1, layer.dilation_rate), layer.groups)[:, :, 0]
    else:
        want = reference.conv2d(xc[:, :, None], layer.params["kernel"], layer.params["bias"], (1, layer.strides),
                                ((0, 0), pads), (1, layer.dilation_rate), layer.groups)[:, :, 0]
    want = layer.activation.forward(want)
    np.testing.assert_allclose(y, want if layer.data_format == "channels_first" else want.transpose(0, 2, 1),
                               rtol=1e-12, atol=1e-12)


def test_depthwise_and_separable_definitions():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 6, 5))
    dw = nn.DepthwiseConv2D(3, depth_multiplier=2, padding="same", **F64)
    y = dw(x)
    k = dw.params["depthwise_kernel"]
    assert k.shape == (6, 1, 3, 3)
    for c in range(3):  # output channel c * m + j is input channel c convolved with its j-th filter
        for j in range(2):
            o = c * 2 + j
            want = reference.conv2d(x[:, c:c + 1], k[o:o + 1], dw.params["bias"][o:o + 1], 1, "same")
            np.testing.assert_allclose(y[:, c * 2 + j:c * 2 + j + 1], want, rtol=1e-12, atol=1e-12)
    sep = nn.SeparableConv2D(4, 3, **F64)
    y = sep(x)
    mid = reference.conv2d(x, sep.params["depthwise_kernel"], None, 1, 0, 1, 3)
    want = reference.conv2d(mid, sep.params["pointwise_kernel"], sep.params["bias"])
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)


def test_conv2d_transpose_is_fastconv_conv_transpose2d():
    import fastconv
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 4, 5))
    layer = nn.Conv2DTranspose(4, 3, strides=2, padding=(1, 0), output_padding=(1, 0), **F64)
    want = fastconv.conv_transpose2d(x, layer.build(3) or layer.params["kernel"], layer.params["bias"], 2, (1, 0),
                                     (1, 0))
    np.testing.assert_allclose(layer(x), want, rtol=1e-12)
    assert layer.params["kernel"].shape == (3, 4, 3, 3)
    # Keras's output sizes: valid (in - 1) * s + k, at least in * s; same in * s
    assert nn.Conv2DTranspose(2, 3, strides=2).compute_output_shape((1, 1, 5, 5)) == (1, 2, 11, 11)
    assert nn.Conv2DTranspose(2, 1, strides=3).compute_output_shape((1, 1, 5, 5)) == (1, 2, 15, 15)
    assert nn.Conv2DTranspose(2, 3, strides=2, padding="same").compute_output_shape((1, 1, 5, 5)) == (1, 2, 10, 10)


def test_conv_family_errors():
    with pytest.raises(ValueError, match="output_padding must be >= 0 and smaller than the stride"):
        nn.Conv2DTranspose(2, 3, strides=2, output_padding=2)
    with pytest.raises(ValueError, match="depth_multiplier must be a positive int"):
        nn.DepthwiseConv2D(3, depth_multiplier=0)
    with pytest.raises(ValueError, match="padding must be one of"):
        nn.Conv1D(2, 3, padding="full")
    with pytest.raises(ValueError, match="activation must be None or one of"):
        nn.SeparableConv2D(2, 3, activation="swishy")
    with pytest.raises(ValueError, match="data_format"):
        nn.DepthwiseConv2D(3, data_format="NHWC")
    layer = nn.DepthwiseConv2D(3, in_channels=2)
    with pytest.raises(ValueError, match="built for 2 input channels, got 3"):
        layer(np.zeros((1, 3, 5, 5)))
    with pytest.raises(ValueError, match="backward\\(\\) called before forward"):
        nn.Conv2DTranspose(2, 3).backward(np.zeros((1, 2, 3, 3)))


# ----------------------------------------------------------------------------- activations

@pytest.mark.parametrize("name", nn.activations.NAMES)
def test_activation_gradients(name):
    x = np.random.default_rng(6).standard_normal((3, 5))
    x[np.abs(x) < 1e-3] = 0.5  # keep the kinks of relu/leaky_relu away from the differences
    check_grads(nn.Activation(name), x)


@pytest.mark.parametrize("name", ["relu", "softmax", "sigmoid"])
def test_dense_and_conv2d_activation_argument(name):
    rng = np.random.default_rng(7)
    dense = nn.Dense(4, activation=name, **F64)
    x = rng.standard_normal((3, 5))
    check_grads(dense, x)
    np.testing.assert_allclose(dense(x), nn.activations.get(name).forward(x @ dense.params["kernel"]
                                                                          + dense.params["bias"]))
    conv = nn.Conv2D(3, 2, activation="tanh", **F64)
    check_grads(conv, rng.standard_normal((2, 2, 4, 4)))


# ----------------------------------------------------------------------------- batch norm

@pytest.mark.parametrize("axis, shape", [(None, (4, 3, 2, 2)), (-1, (3, 2, 2, 3)), (None, (5, 3))])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_gradients(axis, shape, training):
    layer = nn.BatchNormalization(axis=axis, dtype="float64")
    x = np.random.default_rng(8).standard_normal(shape) * 2 + 1
    layer.build(shape[1] if axis is None else shape[-1])
    c = layer.channels
    layer.params["gamma"][...] = np.linspace(0.5, 2, c)
    layer.params["beta"][...] = np.linspace(-1, 1, c)
    layer.moving_mean[...] = np.linspace(-0.5, 0.5, c)
    layer.moving_variance[...] = np.linspace(0.5, 3, c)
    check_grads(layer, x, training=training)


def test_batchnorm_statistics_and_inference():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((8, 3, 4, 4)) * np.array([1, 2, 3]).reshape(1, 3, 1, 1) + 5
    bn = nn.BatchNormalization(dtype="float64", momentum=0.9, epsilon=1e-3)
    y = bn(x, training=True)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    var = x.var(axis=(0, 2, 3))
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), var / (var + 1e-3), rtol=1e-10)
    np.testing.assert_allclose(bn.moving_mean, 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(bn.moving_variance, 0.9 + 0.1 * var, rtol=1e-12)
    y = bn(x, training=False)
    want = (x - bn.moving_mean.reshape(1, 3, 1, 1)) / np.sqrt(bn.moving_variance.reshape(1, 3, 1, 1) + 1e-3)
    np.testing.assert_allclose(y, want, rtol=1e-12)
    assert [w.shape for w in bn.get_weights()] == [(3,)] * 4
    with pytest.raises(ValueError, match="expected 2 or 4 arrays"):
        bn.set_weights([np.ones(3)] * 3)


def test_batchnorm_state_survives_npz_save(tmp_path):
    model = nn.Sequential([nn.Conv2D(2, 3, **F64), nn.BatchNormalization(dtype="float64"), nn.Flatten(),
                           nn.Dense(3, **F64)])
    x = np.random.default_rng(10).standard_normal((4, 1, 5, 5))
    model.forward(x, training=True)
    model.save(tmp_path / "w.npz")
    other = nn.Sequential([nn.Conv2D(2, 3, dtype="float64"), nn.BatchNormalization(dtype="float64"), nn.Flatten(),
                           nn.Dense(3, dtype="float64")])
    other.load(tmp_path / "w.npz")
    np.testing.assert_allclose(other.predict(x), model.predict(x), rtol=1e-12)


# ----------------------------------------------------------------------------- pooling, padding

@pytest.mark.parametrize("cfg, shape", [
    (dict(pool_size=2), (2, 2, 4, 5)),
    (dict(pool_size=3, strides=2, padding="same"), (1, 2, 5, 6)),
    (dict(pool_size=(2, 3), strides=1, padding=1, count_include_pad=True), (1, 1, 4, 4)),
    (dict(pool_size=2, padding=(1, 0), count_include_pad=False, data_format="channels_last"), (1, 3, 4, 2)),
])
def test_average_pooling(cfg, shape):
    layer = nn.AveragePooling2D(**cfg)
    x = np.random.default_rng(11).standard_normal(shape)
    y = check_grads(layer, x)
    assert y.shape == layer.compute_output_shape(x.shape)
    # definition on channels-first data: mean over the window's taps inside the image
    xc = x if layer.data_format == "channels_first" else x.transpose(0, 3, 1, 2)
    t, b, l, r = layer._pads(*xc.shape[2:])
    xp = np.pad(xc, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=np.nan)
    (ph, pw), (sh, sw) = layer.pool_size, layer.strides
    yc = y if layer.data_format == "channels_first" else y.transpose(0, 3, 1, 2)
    include = not isinstance(layer.padding, str) and layer.count_include_pad
    for i in range(yc.shape[2]):
        for j in range(yc.shape[3]):
            win = xp[:, :, i * sh:i * sh + ph, j * sw:j * sw + pw]
            want = np.nansum(win, axis=(2, 3)) / (ph * pw) if include else np.nanmean(win, axis=(2, 3))
            np.testing.assert_allclose(yc[:, :, i, j], want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
def test_global_average_pooling(keepdims, data_format):
    layer = nn.GlobalAveragePooling2D(data_format=data_format, keepdims=keepdims)
    x = np.random.default_rng(12).standard_normal((2, 3, 4, 5))
    y = check_grads(layer, x)
    axes = (2, 3) if data_format == "channels_first" else (1, 2)
    np.testing.assert_allclose(y, x.mean(axis=axes, keepdims=keepdims))
    assert y.shape == layer.compute_output_shape(x.shape)


@pytest.mark.parametrize("padding, data_format", [(1, "channels_first"), ((2, 1), "channels_last"),
                                                  (((1, 0), (0, 2)), "channels_first")])
def test_zero_padding(padding, data_format):
    layer = nn.ZeroPadding2D(padding, data_format=data_format)
    x = np.random.default_rng(13).standard_normal((1, 2, 3, 4))
    y = check_grads(layer, x)
    (t, b), (l, r) = layer.padding
    widths = ((0, 0), (0, 0), (t, b), (l, r)) if data_format == "channels_first" else ((0, 0), (t, b), (l, r), (0, 0))
    np.testing.assert_array_equal(y, np.pad(x, widths))
    assert y.shape == layer.compute_output_shape(x.shape)


def test_summary_builds_the_new_layers():
    model = nn.Sequential([nn.SeparableConv2D(4, 3), nn.BatchNormalization(), nn.Conv2DTranspose(2, 3, strides=2),
                           nn.GlobalAveragePooling2D(), nn.Dense(3)])
    text = model.summary((None, 3, 8, 8))
    # separable: 3*9 depthwise + 4*3 pointwise + 4 bias; BN 2*4; transpose 4*2*9 + 2; dense 2*3 + 3
    assert f"total params: {27 + 12 + 4 + 8 + 74 + 9}" in text
