"""conv2d(activation="relu") and conv2d_backward(through_relu=True): a ReLU's forward and
backward in the conv's own stores, and their use by fastconv.nn.

The implicit-GEMM and explicit-GEMM entries apply it where they store a tile; every other
entry gets a pass of the driver's over y. Either way the result must be exactly what a
separate ReLU of the same call's output is (x > 0 or NaN ? x : +0), and within the suite's
bound of the reference's ReLU (ReLU is 1-Lipschitz, so the bound carries over).
"""
from __future__ import annotations

import numpy as np
import pytest

import fastconv
from fastconv import functional as F
from fastconv import nn

from helpers import assert_close_to_reference, ref_forward

# (x shape, C_out, kernel, stride, padding, groups): the entries that fuse (implicit GEMM,
# explicit im2col with K < 72, 1x1) and some that do not (depthwise, strided, grouped)
CASES = [
    ((2, 16, 12, 12), 24, 3, 1, 1, 1),   # implicit GEMM (K = 144)
    ((3, 3, 11, 9), 20, 3, 1, 1, 1),     # explicit im2col (K = 27)
    ((2, 16, 7, 7), 40, 1, 1, 0, 1),     # gemm_1x1
    ((1, 16, 12, 12), 24, 3, 1, 0, 1),   # one image: the explicit GEMM's team mode at 2 threads
    ((2, 8, 10, 10), 16, 3, 2, 1, 2),    # grouped, strided
    ((2, 32, 9, 10), 32, 3, 1, 1, 8),    # 4 channels a group: implicit GEMM packs groups a tile
    ((2, 32, 10, 11), 32, 3, 2, 1, 8),   # the same, strided: the input gradient per stride phase
    ((2, 12, 9, 9), 12, 3, 1, 1, 12),    # depthwise (a pass of the driver's)
    ((1, 64, 5, 5), 96, 3, 1, 1, 1),     # one small image, W^T larger than its band: at 2 threads
                                         # implicit GEMM's work items split the channel blocks
]


def _relu(y):
    return np.where((y > 0) | np.isnan(y), y, np.zeros_like(y))


def _algorithms_for(call):
    """Every entry (plus "auto") with which ``call(algorithm=name)`` runs."""
    runs = []
    for name in ["auto"] + sorted(F.ALGORITHMS):
        try:
            call(algorithm=name)
        except ValueError:
            continue
        runs.append(name)
    return runs


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}->{c[1]}k{c[2]}s{c[3]}g{c[5]}" for c in CASES])
def test_relu_post_op_equals_relu_of_the_output(case, dtype, threads, isa, rng):
    """Under each ISA (the implicit kernels' post-op is written per ISA and dtype)."""
    shape, c_out, k, stride, padding, groups = case
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((c_out, shape[1] // groups, k, k)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    expected, bound = ref_forward(x, w, b, stride, padding, 1, groups)
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(threads)
    try:
        algorithms = _algorithms_for(lambda **kw: fastconv.conv2d(x, w, None, stride, padding, 1, groups, **kw))
        assert "auto" in algorithms and len(algorithms) >= 3
        for name in algorithms:
            plain = fastconv.conv2d(x, w, b, stride, padding, 1, groups, algorithm=name)
            out = np.full(plain.shape, np.nan, dtype=dtype)  # an element left unwritten fails
            got = fastconv.conv2d(x, w, b, stride, padding, 1, groups, algorithm=name, out=out,
                                  activation="relu")
            assert got is out
            np.testing.assert_array_equal(got, _relu(plain), err_msg=name)
            assert not np.signbit(got).any(), f"{name}: a negative zero or negative value"
            tol = 256 if "winograd" in name else 16
            assert_close_to_reference(got, np.maximum(expected, 0), bound, dtype, c=tol, what=name)
    finally:
        fastconv.set_num_threads(before)


@pytest.mark.parametrize("algorithm", ["implicit_gemm", "im2col_explicit", "direct"])
def test_relu_post_op_keeps_nan_and_inf(algorithm, rng):
    if algorithm == "implicit_gemm" and fastconv._core.implicit_tile(fastconv._core.DTYPE_F32) is None:
        pytest.skip("implicit_gemm needs AVX2 or AVX-512 (FASTCONV_ISA=generic or another CPU)")
    x = rng.standard_normal((2, 16, 8, 8)).astype(np.float32)
    w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    x[0, 3, 4, 4] = np.nan
    x[1, 5, 2, 2] = np.inf
    plain = fastconv.conv2d(x, w, None, 1, 1, algorithm=algorithm)
    got = fastconv.conv2d(x, w, None, 1, 1, algorithm=algorithm, activation="relu")
    assert np.isnan(plain).any() and np.isinf(plain).any()
    np.testing.assert_array_equal(got, _relu(plain))  # NaN where plain is NaN, +inf kept, -inf -> 0


@pytest.mark.parametrize("bad", ["tanh", "relu6", 1, True])
def test_activation_must_be_none_or_relu(bad):
    x = np.ones((1, 1, 4, 4), np.float32)
    w = np.ones((1, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"activation must be None or 'relu'"):
        fastconv.conv2d(x, w, activation=bad)


def test_core_rejects_an_unknown_post_op():
    x = np.ones((1, 2, 5, 5), np.float32)
    w = np.ones((3, 2, 3, 3), np.float32)
    spec = fastconv._spec.make_spec(x.shape, w.shape, 1, 0, 1, 1, np.float32)
    y = np.empty(spec.output_shape, np.float32)
    with pytest.raises(ValueError, match=r"post must be 0 \(none\) or 1 \(relu\), got 2"):
        fastconv._core.conv_fwd(spec.desc(1), 0, x, w, None, y, None, 2)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}->{c[1]}k{c[2]}s{c[3]}g{c[5]}" for c in CASES])
def test_input_grad_through_relu_equals_the_relu_backward(case, dtype, threads, isa, rng):
    """conv2d_backward(through_relu=True): grad_x where x > 0, else 0, bitwise the separate
    ReLU backward of the same entry's grad_x; the weight and bias gradients unchanged."""
    shape, c_out, k, stride, padding, groups = case
    x = np.maximum(rng.standard_normal(shape), 0).astype(dtype)  # a ReLU's output
    x[0, 0, 0, :2] = np.nan  # NaN is not > 0: its gradient is 0, as the ReLU layer's
    w = rng.standard_normal((c_out, shape[1] // groups, k, k)).astype(dtype)
    gy = rng.standard_normal(fastconv.conv2d(x, w, None, stride, padding, 1, groups).shape).astype(dtype)
    before = fastconv.get_num_threads()
    fastconv.set_num_threads(threads)
    try:
        args = (gy, x, w, stride, padding, 1, groups)
        algorithms = _algorithms_for(lambda **kw: fastconv.conv2d_backward(*args, **kw))
        assert "auto" in algorithms and len(algorithms) >= 3
        for name in algorithms:
            gx, gw, gb = fastconv.conv2d_backward(*args, algorithm=name)
            out = (np.full(x.shape, np.nan, dtype=dtype), None, None)
            fx, fw, fb = fastconv.conv2d_backward(*args, algorithm=name, through_relu=True, out=out)
            assert fx is out[0]
            np.testing.assert_array_equal(fx, np.where(x > 0, gx, 0), err_msg=name)
            np.testing.assert_array_equal(fw, gw, err_msg=name)
            np.testing.assert_array_equal(fb, gb, err_msg=name)
    finally:
        fastconv.set_num_threads(before)


def test_through_relu_must_be_a_bool():
    x = np.ones((1, 1, 4, 4), np.float32)
    w = np.ones((1, 1, 3, 3), np.float32)
    with pytest.raises(TypeError, match=r"through_relu must be a bool \(.*\), got str"):
        fastconv.conv2d_backward(np.ones((1, 1, 2, 2), np.float32), x, w, through_relu="yes")


RELUS = (1, 3)  # the ReLU layers of _net: after a conv, then before a conv and before a pool


def _net(kernels, relu_kind):
    def relu():
        return nn.ReLU() if relu_kind == "layer" else nn.Activation("relu")

    layers = [nn.Conv2D(8, 3, padding="same", seed=1, kernels=kernels), relu(),
              nn.Conv2D(6, 3, padding="same", seed=2, kernels=kernels), relu(), nn.MaxPool2D(2),
              nn.Conv2D(4, 3, padding="same", seed=3, kernels=kernels, activation="relu"),
              nn.Flatten(), nn.Dense(10, seed=4)]
    return nn.Sequential(layers).compile(optimizer="sgd")


@pytest.mark.parametrize("relu_kind", ["layer", "activation"])
def test_sequential_conv_then_relu_matches_the_reference_layers(relu_kind, rng, monkeypatch):
    """The fused pairs (conv then ReLU in the forward, ReLU then conv in the backward, and
    Conv2D(activation="relu")) give the reference kernels' forward and gradients; the ReLU
    layer keeps the conv's output rather than a copy, and its own backward never runs."""
    x = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, 4)
    fused, ref_net = _net(None, relu_kind), _net("reference", relu_kind)
    np.testing.assert_allclose(fused.forward(x), ref_net.forward(x), rtol=1e-5, atol=1e-5)
    def not_called(*args, **kwargs):
        raise AssertionError("the ReLU's own backward ran: the conv after it should have applied it")

    for i in RELUS:
        monkeypatch.setattr(fused.layers[i], "backward", not_called)
    fused.train_on_batch(x, y)
    ref_net.train_on_batch(x, y)
    for i in RELUS:  # one array: the conv wrote the ReLU's output
        assert fused.layers[i]._y is fused.layers[i - 1]._y
    for key, g in ref_net.gradients().items():
        np.testing.assert_allclose(fused.gradients()[key], g, rtol=1e-4, atol=1e-5, err_msg=key)


def _keras_net():
    """The Keras MNIST example's shape: the ReLUs are the convs' own activations."""
    return nn.Sequential([nn.Conv2D(8, 3, seed=1, activation="relu"), nn.MaxPool2D(2),
                          nn.Conv2D(6, 3, seed=2, activation="relu"),
                          nn.Conv2D(5, 3, padding="same", seed=3, activation="relu"), nn.MaxPool2D(2),
                          nn.Flatten(), nn.Dense(10, seed=4)]).compile(optimizer="sgd")


class _NoBackward:
    """A layer's activation whose backward must not run (the layer after it applied it)."""

    def __init__(self, act):
        self._act = act
        self.name = act.name

    def forward(self, x):
        return self._act.forward(x)

    def forward_owned(self, x):
        return self._act.forward_owned(x)

    def backward(self, g, y):
        raise AssertionError("the conv's own ReLU backward ran: the layer after it should have applied it")


@pytest.mark.parametrize("style", ["layer", "activation", "keras"])
def test_sequential_fused_is_bitwise_the_layer_by_layer_step(style, rng, monkeypatch):
    """Fusion changes where the ReLU runs, not what it computes: with the pairing turned off
    (every layer's own forward and backward), the same step gives the same bits."""
    x = rng.standard_normal((4, 3, 12, 12)).astype(np.float32)
    y = rng.integers(0, 10, 4)
    build = _keras_net if style == "keras" else (lambda: _net(None, style))
    fused, plain = build(), build()
    if style == "keras":  # every conv's ReLU is applied by the pool or conv after it
        for i in (0, 2, 3):
            monkeypatch.setattr(fused.layers[i], "activation", _NoBackward(fused.layers[i].activation))
    outs_fused = [fused.forward(x)]
    for _ in range(2):  # a second step: kept buffers and identities of the first must not leak
        fused.train_on_batch(x, y)
        outs_fused.append(fused.forward(x))
    monkeypatch.undo()
    import fastconv.nn.model as model
    monkeypatch.setattr(model, "relu_fuses", lambda a, b: False)
    monkeypatch.setattr(model, "relu_feeds", lambda a, b: False)
    monkeypatch.setattr(nn.Conv2D, "_fuses_relu", lambda self: False)  # activation="relu" too
    np.testing.assert_array_equal(plain.forward(x), outs_fused[0])
    for step in range(2):
        plain.train_on_batch(x, y)
        np.testing.assert_array_equal(plain.forward(x), outs_fused[step + 1])
    for key, g in plain.gradients().items():
        np.testing.assert_array_equal(fused.gradients()[key], g, err_msg=key)


@pytest.mark.parametrize("pool, strides, padding", [(2, None, "valid"), (3, 2, "same"), (3, 1, "valid")])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_maxpool_backward_through_relu_is_the_relu_backward_after_it(pool, strides, padding, dtype, rng):
    x = np.maximum(rng.standard_normal((3, 4, 9, 8)), 0).astype(dtype)  # zeros: ties
    x[0, 0, :3, :3] = 0  # windows of zeros: their gradient stops at the ReLU
    fused = nn.MaxPool2D(pool, strides=strides, padding=padding)
    plain = nn.MaxPool2D(pool, strides=strides, padding=padding)
    out = fused.forward(x)
    np.testing.assert_array_equal(out, plain.forward(x))
    g = rng.standard_normal(out.shape).astype(dtype)
    expected = np.where(x > 0, plain.backward(g), 0)
    np.testing.assert_array_equal(fused.backward_through_relu(g), expected)
    assert expected[0, 0, 0, 0] == 0 and np.count_nonzero(expected) > 0
    with pytest.raises(ValueError, match="shape"):
        fused.backward_through_relu(np.ones((3, 4, out.shape[2] + 1, out.shape[3]), dtype))


def test_layers_that_do_not_pair_with_a_relu():
    """Pairing needs a fastconv NCHW Conv2D (or MaxPool2D) right next to the very ReLU array."""
    import fastconv.nn.model as model
    x = np.maximum(np.random.default_rng(0).standard_normal((2, 3, 8, 8)), 0).astype(np.float32)
    nhwc = nn.Conv2D(4, 3, data_format="channels_last")
    ref_conv = nn.Conv2D(4, 3, kernels="reference")
    tanh_conv = nn.Conv2D(4, 3, activation="tanh")
    relu = nn.ReLU()
    assert not model.relu_fuses(nhwc, relu) and not model.relu_fuses(ref_conv, relu)
    assert not model.relu_fuses(tanh_conv, relu) and not model.relu_fuses(nn.Dropout(0.5), relu)
    conv = nn.Conv2D(4, 3)
    h = relu.forward(x)
    conv.forward(h)
    assert model.relu_feeds(relu, conv)
    conv.forward(h.copy())  # the same values in another array: not the ReLU's output
    assert not model.relu_feeds(relu, conv)
    conv.input_grad = False  # a first layer computes no input gradient to mask
    conv.forward(h)
    assert not model.relu_feeds(relu, conv)
    pool_nhwc = nn.MaxPool2D(2, data_format="channels_last")
    pool_nhwc.forward(h)
    assert not model.relu_feeds(relu, pool_nhwc)


def test_forward_then_relu_needs_a_linear_fastconv_layer():
    layer = nn.Conv2D(4, 3, activation="tanh")
    with pytest.raises(ValueError, match="forward_then_relu needs a linear layer"):
        layer.forward_then_relu(np.ones((1, 2, 5, 5), np.float32))
    ref_layer = nn.Conv2D(4, 3, kernels="reference")
    with pytest.raises(ValueError, match="forward_then_relu needs a linear layer"):
        ref_layer.forward_then_relu(np.ones((1, 2, 5, 5), np.float32))


def test_activation_name_in_any_case():
    # as padding= and algorithm=, and as nn's activation names
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    expected = np.maximum(fastconv.reference.conv2d(x, w, padding=1), 0)
    for name in ("RELU", "Relu"):
        np.testing.assert_allclose(fastconv.conv2d(x, w, padding=1, activation=name), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="activation must be None or 'relu', got 'tanh'"):
        fastconv.conv2d(x, w, activation="tanh")
