"""fastconv.nn: every layer's backward against central finite differences (float64),
a whole-model gradient check, the C kernels against the reference, layouts and errors."""

import numpy as np
import pytest

from fastconv import nn, reference
from fastconv.nn.conv import resolve_kernels


def _c_kernels_available():
    try:
        resolve_kernels("fastconv")
        return True
    except Exception:  # extension not built yet
        return False


needs_c = pytest.mark.skipif(not _c_kernels_available(), reason="fastconv C extension not built")
KERNELS = ["reference", pytest.param("fastconv", marks=needs_c)]


def numeric_grad(f, a, eps=1e-6):
    """Central differences of the scalar f() w.r.t. every entry of a (changed in place)."""
    g = np.zeros_like(a)
    it = np.nditer(a, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = a[i]
        a[i] = old + eps
        fp = f()
        a[i] = old - eps
        fm = f()
        a[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


def check_layer_grads(layer, x, rng, training=False, tol=1e-6):
    """Compare backward() with finite differences of sum(forward(x) * G) for x and every param."""
    y = layer.forward(x, training=training)
    G = rng.standard_normal(y.shape)
    gx = layer.backward(G)
    grads = {k: v.copy() for k, v in layer.grads.items()}

    def f():
        return float(np.sum(layer.forward(x, training=training) * G))

    np.testing.assert_allclose(gx, numeric_grad(f, x), rtol=tol, atol=tol)
    for key, p in layer.params.items():
        np.testing.assert_allclose(grads[key], numeric_grad(f, p), rtol=tol, atol=tol, err_msg=key)


# ----------------------------------------------------------------------------- Conv2D

CONV_CASES = [
    dict(filters=4, kernel_size=3),
    dict(filters=4, kernel_size=(3, 2), strides=2, padding="same"),
    dict(filters=6, kernel_size=3, dilation_rate=2, groups=3, padding=((1, 0), (2, 1))),
    dict(filters=3, kernel_size=1, use_bias=False, strides=(1, 2)),
]


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("cfg", CONV_CASES)
def test_conv2d_gradients_finite_differences(cfg, kernels):
    rng = np.random.default_rng(0)
    layer = nn.Conv2D(**cfg, dtype="float64", seed=1, kernels=kernels,
                      bias_initializer="glorot_uniform")
    x = rng.standard_normal((2, 3, 7, 6))
    check_layer_grads(layer, x, rng)
    assert set(layer.grads) == ({"kernel", "bias"} if cfg.get("use_bias", True) else {"kernel"})


@pytest.mark.parametrize("cfg", CONV_CASES)
def test_conv2d_output_matches_reference_and_shape(cfg):
    rng = np.random.default_rng(1)
    layer = nn.Conv2D(**cfg, dtype="float64", seed=2, kernels="reference")
    x = rng.standard_normal((2, 3, 9, 8))
    y = layer(x)
    args = (layer.strides, layer.padding, layer.dilation_rate, layer.groups)
    np.testing.assert_allclose(y, reference.conv2d(x, layer.kernel, layer.bias, *args), rtol=1e-12)
    assert y.shape == layer.compute_output_shape(x.shape)
    assert layer.compute_output_shape((None, 3, 9, 8))[0] is None


def test_conv2d_one_backward_call_for_all_gradients():
    calls = []

    class Counting:
        def conv2d(self, *a, **k):
            calls.append("fwd")
            return reference.conv2d(*a, **k)

        def conv2d_backward(self, *a, **k):
            calls.append("bwd")
            return reference.conv2d_backward(*a, **k)

    layer = nn.Conv2D(5, 3, kernels=Counting(), seed=0)
    layer.backward(np.ones_like(layer(np.ones((2, 2, 5, 5), np.float32))))
    assert calls == ["fwd", "bwd"]


@needs_c
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cfg", CONV_CASES)
def test_conv2d_fastconv_equals_reference(cfg, dtype):
    """Forward and all gradients within |err| <= c * eps * sum |a| * |b| of the reference."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 3, 11, 10)).astype(dtype)
    init = dict(bias_initializer="glorot_uniform", seed=4, dtype=dtype)
    fast = nn.Conv2D(**cfg, **init, kernels="fastconv")
    ref = nn.Conv2D(**cfg, **init, kernels="reference")
    y, y_ref = fast(x), ref(x)
    g = rng.standard_normal(y.shape).astype(dtype)
    gx, gx_ref = fast.backward(g), ref.backward(g)
    args = (fast.strides, fast.padding, fast.dilation_rate, fast.groups)
    x64, w64, g64 = (np.abs(a).astype(np.float64) for a in (x, fast.kernel, g))
    eps = np.finfo(dtype).eps
    c = 8.0
    assert y.dtype == np.dtype(dtype) and gx.dtype == np.dtype(dtype)
    b64 = np.abs(fast.bias).astype(np.float64) if fast.use_bias else None
    bound = c * eps * (reference.conv2d(x64, w64, b64, *args) + eps)
    assert np.all(np.abs(y - y_ref) <= bound)
    bound = c * eps * reference.conv2d_input_grad(g64, w64, x.shape, *args) + c * eps
    assert np.all(np.abs(gx - gx_ref) <= bound)
    bound = c * eps * reference.conv2d_weight_grad(g64, x64, fast.kernel.shape, *args) + c * eps
    assert np.all(np.abs(fast.grads["kernel"] - ref.grads["kernel"]) <= bound)
    if fast.use_bias:
        bound = c * eps * np.abs(g64).sum(axis=(0, 2, 3)) + c * eps
        assert np.all(np.abs(fast.grads["bias"] - ref.grads["bias"]) <= bound)


@pytest.mark.parametrize("kernels", KERNELS)
def test_conv2d_channels_last_is_transposed_channels_first(kernels):
    rng = np.random.default_rng(5)
    cfg = dict(filters=4, kernel_size=3, strides=2, padding="same", dtype="float64", kernels=kernels)
    first = nn.Conv2D(**cfg, data_format="channels_first", seed=6)
    last = nn.Conv2D(**cfg, data_format="channels_last", seed=6)
    x = rng.standard_normal((2, 3, 8, 7))
    y = first(x)
    y_last = last(x.transpose(0, 2, 3, 1))
    assert y_last.shape == (2, 4, 4, 4) == last.compute_output_shape((2, 8, 7, 3))
    np.testing.assert_allclose(y_last, y.transpose(0, 2, 3, 1), rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(y.shape)
    gx = first.backward(g)
    gx_last = last.backward(g.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(gx_last, gx.transpose(0, 2, 3, 1), rtol=1e-12, atol=1e-12)
    for k in first.grads:
        np.testing.assert_allclose(last.grads[k], first.grads[k], rtol=1e-12, atol=1e-12)


def test_conv2d_channels_last_gradients():
    rng = np.random.default_rng(7)
    layer = nn.Conv2D(3, 2, data_format="channels_last", dtype="float64", seed=0, kernels="reference")
    check_layer_grads(layer, rng.standard_normal((2, 5, 4, 2)), rng)


def test_conv2d_build_weights_and_dtype():
    layer = nn.Conv2D(8, (3, 5), in_channels=6, groups=2, kernels="reference", seed=0)
    assert layer.built and layer.kernel.shape == (8, 3, 3, 5) and layer.bias.shape == (8,)
    assert layer.kernel.dtype == np.float32
    w = layer.get_weights()
    w[0] += 1.0  # copies: the layer is unchanged
    assert not np.array_equal(w[0], layer.kernel)
    layer.set_weights(w)
    assert np.array_equal(w[0], layer.kernel)
    y = layer(np.ones((1, 6, 7, 7), dtype=np.float64))  # input cast to the layer dtype
    assert y.dtype == np.float32
    fresh = nn.Conv2D(8, (3, 5), groups=2, kernels="reference")
    fresh.set_weights(layer.get_weights())  # builds from the kernel shape
    assert fresh.in_channels == 6
    np.testing.assert_array_equal(fresh(np.ones((1, 6, 7, 7))), y)
    assert nn.Conv2D(2, 3, use_bias=False, in_channels=1).params.keys() == {"kernel"}
    # same seed, same weights; lazily built from the first input
    a, b = nn.Conv2D(4, 3, seed=9, kernels="reference"), nn.Conv2D(4, 3, seed=9, kernels="reference")
    a(np.zeros((1, 2, 5, 5))), b(np.zeros((1, 2, 5, 5)))
    assert np.array_equal(a.kernel, b.kernel)


def test_conv2d_errors():
    layer = nn.Conv2D(4, 3, kernels="reference")
    with pytest.raises(ValueError, match="before forward"):
        layer.backward(np.zeros((1, 4, 3, 3)))
    y = layer(np.zeros((1, 2, 5, 5)))
    with pytest.raises(ValueError, match="expected"):
        layer.backward(np.zeros((1, 4, 4, 3)))
    layer.backward(np.zeros_like(y))
    with pytest.raises(ValueError, match="input channels"):
        layer(np.zeros((1, 3, 5, 5)))
    with pytest.raises(ValueError, match="4-D"):
        layer(np.zeros((2, 5, 5)))
    with pytest.raises(ValueError, match="smaller"):
        layer(np.zeros((1, 2, 2, 2)))
    with pytest.raises(ValueError, match="data_format"):
        nn.Conv2D(4, 3, data_format="NHWC")
    with pytest.raises(ValueError, match="groups"):
        nn.Conv2D(4, 3, groups=3)
    with pytest.raises(ValueError, match="groups"):
        nn.Conv2D(4, 3, groups=2, in_channels=3)
    with pytest.raises(ValueError, match="padding"):
        nn.Conv2D(4, 3, padding="full")
    with pytest.raises(ValueError, match="kernel_size"):
        nn.Conv2D(4, 0)
    with pytest.raises(TypeError):
        nn.Conv2D(4, 3, dtype="int32")
    with pytest.raises(ValueError, match="kernels"):
        nn.Conv2D(4, 3, kernels="torch")(np.zeros((1, 1, 5, 5)))
    with pytest.raises(ValueError, match="no weights"):
        nn.Conv2D(4, 3).kernel


@pytest.mark.parametrize("make,error,pattern", [
    (lambda: nn.Conv2D(4, 3.0), TypeError, "kernel_size must be an int, got 3.0"),
    (lambda: nn.Conv2D(4, True), TypeError, "kernel_size must be an int, got True"),
    (lambda: nn.Conv2D(4, (3,)), ValueError, "kernel_size must be an int or a pair"),
    (lambda: nn.Conv2D(4, 3, strides=2.0), TypeError, "strides must be an int"),
    (lambda: nn.Conv2D(4, 3, dilation_rate=1.0), TypeError, "dilation_rate must be an int"),
    (lambda: nn.Conv2D(4, 3, padding=-1), ValueError, "padding must be >= 0"),
    (lambda: nn.Conv2D(4, 3, padding=1.5), TypeError, "padding must be 'valid', 'same', an int"),
    (lambda: nn.Conv2D(4, 3, algorithm="foo"), ValueError, "algorithm must be one of"),
    (lambda: nn.MaxPool2D(2.0), TypeError, "pool_size must be an int"),
    (lambda: nn.DepthwiseConv2D(3, padding=-2), ValueError, "padding must be >= 0"),
    (lambda: nn.Conv2DTranspose(4, 3.0), TypeError, "kernel_size must be an int"),
    (lambda: nn.Conv1D(4, 3, padding=(1, 2)), ValueError, "an int >= 0 for Conv1D"),
])
def test_layer_arguments_checked_at_construction(make, error, pattern):
    # floats used to fail inside tuple() ("'float' object is not iterable"), and explicit
    # paddings and algorithm names only at the layer's first call
    with pytest.raises(error, match=pattern):
        make()


def test_layer_arguments_accepted_forms():
    assert nn.Conv2D(4, np.array([3, 1])).kernel_size == (3, 1)
    assert nn.Conv2D(4, 3, padding="SAME").padding == "same"
    assert nn.Conv2D(4, 3, padding=((1, 0), (2, 1))).padding == ((1, 0), (2, 1))
    assert nn.Conv2D(4, 3, algorithm="Direct").algorithm == "Direct"


@pytest.mark.parametrize("data_format,shape", [("channels_first", (2, 8, 8, 3)), ("channels_first", (2, 28, 28, 1)),
                                               ("channels_last", (2, 3, 16, 16))])
@pytest.mark.parametrize("layer", [lambda f: nn.Conv2D(4, 3, padding="same", data_format=f),
                                   lambda f: nn.DepthwiseConv2D(3, padding="same", data_format=f)],
                         ids=["Conv2D", "Depthwise"])
def test_first_call_warns_on_the_other_layout(layer, data_format, shape):
    # the layer takes its input channels from the first batch: an NHWC batch would build a
    # channels_first layer for 28 channels of 28 x 1 images, silently
    with pytest.warns(UserWarning, match=f"looks like .* data; this layer is {data_format}"):
        layer(data_format)(np.zeros(shape, np.float32))


@pytest.mark.parametrize("data_format,shape", [("channels_first", (2, 1, 28, 28)), ("channels_first", (2, 3, 32, 32)),
                                               ("channels_first", (2, 16, 8, 8)), ("channels_last", (2, 28, 28, 1)),
                                               ("channels_last", (2, 32, 32, 3)), ("channels_last", (2, 8, 8, 16)),
                                               # what they say: a signal as a column image, deep
                                               # non-square maps (a code review's cases)
                                               ("channels_first", (2, 16, 100, 1)), ("channels_first", (2, 64, 16, 4)),
                                               ("channels_first", (2, 32, 12, 3)), ("channels_last", (2, 1, 100, 16)),
                                               ("channels_last", (2, 4, 16, 64))])
def test_first_call_is_quiet_on_its_own_layout(data_format, shape):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nn.Conv2D(4, 3, padding="same", data_format=data_format)(np.zeros(shape, np.float32))


def test_compile_rejects_a_loss_name():
    model = nn.Sequential([nn.Flatten(), nn.Dense(3)])
    with pytest.raises(TypeError, match="loss must be an object with forward.*'mse'.*loss names"):
        model.compile(nn.Adam(), loss="mse")
    with pytest.raises(TypeError, match="loss must be an object with forward"):
        model.compile(nn.Adam(), loss=42)


def test_float_labels_are_named_as_the_problem():
    model = nn.Sequential([nn.Flatten(), nn.Dense(3)]).compile()
    x = np.zeros((2, 1, 2, 2), np.float32)
    with pytest.raises(TypeError, match="class indices of an integer dtype, got float64"):
        model.train_on_batch(x, np.array([0.5, 1.2]))
    with pytest.raises(ValueError, match=r"integer labels must have shape \(2,\)"):
        model.train_on_batch(x, np.array([0, 1, 2]))


def test_conv2d_is_exported_at_top_level():
    import fastconv
    if not hasattr(fastconv, "Conv2D"):
        pytest.skip("fastconv/__init__.py does not export Conv2D yet")
    assert fastconv.Conv2D is nn.Conv2D


# ----------------------------------------------------------------------------- other layers

def test_relu():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kink for finite differences
    check_layer_grads(nn.ReLU(), x, rng)
    assert np.array_equal(nn.ReLU()(np.array([-1.0, 0.0, 2.0])), [0.0, 0.0, 2.0])


def _maxpool_loops(x, p, s):
    """Naive max pooling, the test's own reference."""
    N, C, H, W = x.shape
    oh, ow = (H - p[0]) // s[0] + 1, (W - p[1]) // s[1] + 1
    y = np.empty((N, C, oh, ow))
    for i in range(oh):
        for j in range(ow):
            y[:, :, i, j] = x[:, :, i * s[0]:i * s[0] + p[0], j * s[1]:j * s[1] + p[1]].max(axis=(2, 3))
    return y


@pytest.mark.parametrize("pool, strides", [(2, None), ((2, 3), None), (3, 2), ((3, 2), 1)])
def test_maxpool_forward_and_gradients(pool, strides):
    rng = np.random.default_rng(1)
    layer = nn.MaxPool2D(pool, strides)
    x = rng.standard_normal((2, 3, 7, 8))
    y = layer(x)
    np.testing.assert_array_equal(y, _maxpool_loops(x, layer.pool_size, layer.strides))
    assert y.shape == layer.compute_output_shape(x.shape)
    check_layer_grads(layer, x, rng)


def test_maxpool_same_padding_and_channels_last():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 7, 5))
    same = nn.MaxPool2D(2, padding="same")
    y = same(x)
    assert y.shape == (2, 3, 4, 3) == same.compute_output_shape(x.shape)
    xp = np.pad(x, ((0, 0), (0, 0), (0, 1), (0, 1)), constant_values=-np.inf)
    np.testing.assert_array_equal(y, _maxpool_loops(xp, (2, 2), (2, 2)))
    check_layer_grads(same, x, rng)
    last = nn.MaxPool2D(3, 2, data_format="channels_last")
    xl = x.transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(last(xl), nn.MaxPool2D(3, 2)(x).transpose(0, 2, 3, 1))
    check_layer_grads(last, np.ascontiguousarray(xl), rng)


def test_maxpool_ties_go_to_first_and_errors():
    layer = nn.MaxPool2D(2)
    layer(np.ones((1, 1, 2, 2)))
    np.testing.assert_array_equal(layer.backward(np.ones((1, 1, 1, 1)))[0, 0], [[1, 0], [0, 0]])
    # the first maximum in row-major order, as argmax over the flattened window
    x = np.array([[0.0, 5.0, 2.0], [5.0, 1.0, 5.0], [5.0, 5.0, 0.0]])[None, None]
    pool3 = nn.MaxPool2D(3)
    pool3(x)
    np.testing.assert_array_equal(pool3.backward(np.ones((1, 1, 1, 1)))[0, 0], [[0, 1, 0], [0, 0, 0], [0, 0, 0]])
    x = np.array([[0.0, 1.0, 2.0], [5.0, 1.0, 5.0], [5.0, 5.0, 0.0]])[None, None]
    pool3(x)
    np.testing.assert_array_equal(pool3.backward(np.ones((1, 1, 1, 1)))[0, 0], [[0, 0, 0], [1, 0, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="before forward"):
        nn.MaxPool2D(2).backward(np.ones((1, 1, 1, 1)))
    with pytest.raises(ValueError, match="expected"):
        layer.backward(np.ones((1, 1, 2, 1)))
    with pytest.raises(ValueError, match="padding"):
        nn.MaxPool2D(2, padding="full")


def test_dropout():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((200, 100)) + 5.0
    layer = nn.Dropout(0.25, seed=0)
    assert layer(x) is x or np.array_equal(layer(x), x)  # inference: identity
    y = layer(x, training=True)
    dropped = np.mean(y == 0)
    assert 0.23 < dropped < 0.27
    np.testing.assert_allclose(y[y != 0], x[y != 0] / 0.75)
    g = rng.standard_normal(x.shape)
    np.testing.assert_allclose(layer.backward(g), np.where(y != 0, g / 0.75, 0.0), rtol=1e-15)
    a, b = nn.Dropout(0.5, seed=4), nn.Dropout(0.5, seed=4)
    assert np.array_equal(a(x, training=True), b(x, training=True))
    with pytest.raises(ValueError):
        nn.Dropout(1.0)
    with pytest.raises(ValueError, match="before forward"):
        nn.Dropout(0.5).backward(g)


def test_flatten_and_dense():
    rng = np.random.default_rng(4)
    flat = nn.Flatten()
    x = rng.standard_normal((3, 2, 4, 5))
    assert flat(x).shape == (3, 40) == flat.compute_output_shape(x.shape)
    np.testing.assert_array_equal(flat.backward(flat(x)), x)
    dense = nn.Dense(6, dtype="float64", seed=0, bias_initializer="glorot_uniform")
    check_layer_grads(dense, rng.standard_normal((3, 5)), rng)
    assert dense.params["kernel"].shape == (5, 6)
    with pytest.raises(ValueError, match="2-D"):
        dense(x)
    with pytest.raises(ValueError, match="before forward"):
        nn.Dense(3).backward(np.ones((1, 3)))


# ----------------------------------------------------------------------------- loss, optimisers

def test_softmax_cross_entropy():
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((4, 5))
    labels = np.array([0, 3, 4, 1])
    loss = nn.SoftmaxCrossEntropy()
    value = loss(logits, labels)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert value == pytest.approx(-np.mean(np.log(p[np.arange(4), labels])), rel=1e-12)
    g = loss.backward()
    np.testing.assert_allclose(g, numeric_grad(lambda: nn.SoftmaxCrossEntropy()(logits, labels), logits),
                               rtol=1e-6, atol=1e-8)
    assert loss(logits, np.eye(5)[labels]) == pytest.approx(value)
    # numerically stable: huge logits give finite values
    big = np.array([[1e4, 0.0, -1e4], [-1e4, 1e4, 0.0]], dtype=np.float32)
    assert np.isfinite(loss(big, np.array([0, 0])))
    assert loss(big, np.array([0, 1])) == pytest.approx(0.0, abs=1e-6)
    assert np.all(np.isfinite(loss.backward()))
    np.testing.assert_allclose(nn.softmax(big).sum(1), 1.0)
    with pytest.raises(ValueError):
        loss(logits, np.array([0, 1, 2, 5]))
    with pytest.raises(ValueError, match="before forward"):
        nn.SoftmaxCrossEntropy().backward()


def test_sgd_momentum_nesterov():
    g = np.array([1.0, -2.0])
    for momentum, nesterov in [(0.0, False), (0.9, False), (0.9, True)]:
        p = np.array([0.5, 0.5])
        opt = nn.SGD(0.1, momentum=momentum, nesterov=nesterov)
        v, expected = np.zeros(2), p.copy()
        for _ in range(3):
            opt.update({"w": p}, {"w": g})
            v = momentum * v - 0.1 * g
            expected = expected + (momentum * v - 0.1 * g if nesterov else v)
        np.testing.assert_allclose(p, expected, rtol=1e-12)


def test_adam_matches_formula():
    rng = np.random.default_rng(6)
    p = rng.standard_normal(5)
    expected = p.copy()
    opt = nn.Adam(0.01)
    m = v = np.zeros(5)
    for t in range(1, 4):
        g = rng.standard_normal(5)
        opt.update({"w": p}, {"w": g})
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        expected = expected - 0.01 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (np.sqrt(v) + 1e-7)
    np.testing.assert_allclose(p, expected, rtol=1e-10)
    p32 = np.ones(3, np.float32)
    nn.Adam().update({"w": p32}, {"w": np.ones(3)})
    assert p32.dtype == np.float32 and np.all(p32 < 1)


# ----------------------------------------------------------------------------- whole model

def tiny_model(kernels, seed=0):
    return nn.Sequential([
        nn.Conv2D(3, 3, dtype="float64", seed=seed, kernels=kernels, bias_initializer="glorot_uniform"),
        nn.ReLU(),
        nn.MaxPool2D(2),
        nn.Flatten(),
        nn.Dense(4, dtype="float64", seed=seed + 1),
    ])


@pytest.mark.parametrize("kernels", KERNELS)
def test_whole_model_gradient_check(kernels):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 2, 8, 8))
    y = np.array([0, 3, 1])
    model = tiny_model(kernels)
    loss = nn.SoftmaxCrossEntropy()
    loss(model(x, training=True), y)
    gx = model.backward(loss.backward())
    grads = {k: v.copy() for k, v in model.gradients().items()}
    assert set(grads) == {"0.kernel", "0.bias", "4.kernel", "4.bias"}

    def f():
        return nn.SoftmaxCrossEntropy()(model(x, training=True), y)

    for key, p in model.parameters().items():
        np.testing.assert_allclose(grads[key], numeric_grad(f, p), rtol=1e-5, atol=1e-8, err_msg=key)
    np.testing.assert_allclose(gx, numeric_grad(f, x), rtol=1e-5, atol=1e-8)


def _stripes(n, rng):
    """Two classes of 6x6 images: a bright horizontal or vertical bar, plus noise."""
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 0.3, (n, 1, 6, 6))
    pos = rng.integers(1, 5, n)
    x[y == 0, 0, pos[y == 0], :] += 2.0
    x[y == 1, 0, :, pos[y == 1]] += 2.0
    return x.astype(np.float32), y


def test_sequential_fit_evaluate_predict_save_load(tmp_path):
    rng = np.random.default_rng(8)
    x, y = _stripes(96, rng)
    xv, yv = _stripes(32, rng)

    def make():
        return nn.Sequential([nn.Conv2D(4, 3, kernels="reference", seed=0), nn.ReLU(), nn.MaxPool2D(2),
                              nn.Flatten(), nn.Dropout(0.1, seed=1), nn.Dense(2, seed=2)])

    model = make().compile(nn.Adam(0.02))
    before = model.evaluate(xv, yv)
    hist = model.fit(x, y, epochs=6, batch_size=16, validation_data=(xv, yv), seed=0, verbose=0)
    assert set(hist) == {"loss", "accuracy", "time", "images_per_s", "val_loss", "val_accuracy"}
    assert all(len(v) == 6 for v in hist.values())
    assert hist["loss"][-1] < hist["loss"][0]
    after = model.evaluate(xv, yv)
    assert after["loss"] < before["loss"] and after["accuracy"] >= 0.9
    assert model.predict(xv, batch_size=5).shape == (32, 2)
    assert [layer.name for layer in model.layers][:1] == ["conv2d"]

    path = tmp_path / "weights.npz"
    model.save(path)
    clone = make()  # unbuilt: load builds every layer from the saved shapes
    clone.load(path)
    np.testing.assert_array_equal(clone.predict(xv), model.predict(xv))
    wrong = nn.Sequential([nn.Conv2D(4, 3), nn.ReLU(), nn.Flatten(), nn.Dense(2)])
    with pytest.raises(ValueError, match="do not match"):
        wrong.load(path)


def test_sequential_fit_is_seeded_and_summary():
    rng = np.random.default_rng(9)
    x, y = _stripes(40, rng)
    runs = []
    for _ in range(2):
        m = nn.Sequential([nn.Conv2D(2, 3, kernels="reference", seed=0), nn.ReLU(), nn.Flatten(),
                           nn.Dense(2, seed=1)]).compile(nn.SGD(0.05, momentum=0.9, nesterov=True))
        runs.append(m.fit(x, y, epochs=2, batch_size=8, seed=3, verbose=0)["loss"])
    assert runs[0] == runs[1]
    text = m.summary((None, 1, 6, 6))
    assert "(None, 2, 4, 4)" in text and "total params: 86" in text  # 2*9+2 + 32*2+2
    names = [layer.name for layer in nn.Sequential([nn.ReLU(), nn.ReLU(), nn.ReLU()]).layers]
    assert names == ["relu", "relu_1", "relu_2"]


def test_fit_prints_epoch_lines_without_tqdm(monkeypatch, capsys):
    import sys
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    x, y = _stripes(16, np.random.default_rng(10))
    m = nn.Sequential([nn.Flatten(), nn.Dense(2, seed=0)])
    m.fit(x, y, epochs=2, batch_size=8, verbose=1)
    out = capsys.readouterr().out
    assert "epoch 1/2" in out and "epoch 2/2" in out and "images/s" in out


def test_training_a_softmax_output_warns_once():
    # the built-in loss takes logits: a Keras classifier's softmax output trains on softmax twice
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((8, 1, 4, 4)).astype(np.float32), rng.integers(0, 3, 8)
    model = nn.Sequential([nn.Flatten(), nn.Dense(3, activation="softmax", seed=0)]).compile()
    with pytest.warns(UserWarning, match=r"applies softmax.*training would take the softmax twice"):
        model.train_on_batch(x, y)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.train_on_batch(x, y)   # once a model
        nn.Sequential([nn.Flatten(), nn.Dense(3, seed=0)]).compile().train_on_batch(x, y)


def test_warnings_point_at_the_users_line():
    # however deep in fit/predict they arise (Python 3.11 has no skip_file_prefixes)
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((4, 8, 8, 3)).astype(np.float32), rng.integers(0, 2, 4)
    model = nn.Sequential([nn.Conv2D(2, 3, padding="same"), nn.Flatten(), nn.Dense(2, activation="softmax")])
    with pytest.warns(UserWarning) as record:
        model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert {r.filename for r in record} == {__file__}
    assert {"looks like channels_last", "applies softmax"} <= {
        key for r in record for key in ("looks like channels_last", "applies softmax") if key in str(r.message)}
    with pytest.warns(UserWarning) as record:
        nn.Conv2D(2, 3, padding="same")(x)
    assert [r.filename for r in record] == [__file__]
