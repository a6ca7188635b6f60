"""The C kernels of the non-convolution layers (csrc/nn/nn_ops.c) and the training step
that uses them: against brute-force oracles written here, torch where it installs, the
layers' NumPy paths and finite differences; bitwise the same for any thread count; a warm
step allocates nothing; ``out=`` and ``input_grad=False`` of conv2d_backward."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import fastconv
from fastconv import nn
from fastconv.nn import _ops

DTYPES = [np.float32, np.float64]


def _rng(seed=0):
    return np.random.default_rng(seed)


# ----------------------------------------------------------------------------- ReLU
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [0, 1, 1000, 200_003])  # serial, and several chunks on a team
def test_relu_matches_numpy_including_nan_inf(dtype, n):
    x = _rng().standard_normal(n).astype(dtype)
    if n > 10:
        x[:4] = [np.nan, np.inf, -np.inf, 0.0]
    with fastconv.threads(2):
        y = _ops.relu_forward(x)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    g = _rng(1).standard_normal(n).astype(dtype)
    with fastconv.threads(2):
        gx = _ops.relu_backward(g, y)
    np.testing.assert_array_equal(gx, np.where(x > 0, g, 0))


def test_relu_layer_in_a_model_matches_its_numpy_path():
    x = _rng().standard_normal((4, 3, 5, 5))
    layer_c = nn.ReLU()
    y = layer_c.forward(x)
    g = _rng(1).standard_normal(y.shape)
    gx = layer_c.backward(g)
    layer_np = nn.ReLU()
    x16 = x.astype(np.float16)  # not a C dtype: the NumPy path
    np.testing.assert_array_equal(layer_np.forward(x16), np.maximum(x16, 0))
    np.testing.assert_array_equal(gx, g * (x > 0))


# ----------------------------------------------------------------------------- max pooling
def _maxpool_oracle(x, pool, strides, pads, out_hw):
    """Loops over every window: the max and the flat index of its first maximum (NaN wins)."""
    n, c, h, w = x.shape
    oh, ow = out_hw
    y = np.empty((n, c, oh, ow), x.dtype)
    arg = np.empty((n, c, oh, ow), np.int64)
    for a in range(n):
        for b in range(c):
            for i in range(oh):
                for j in range(ow):
                    best, at = -np.inf, None
                    for r in range(i * strides[0] - pads[0], i * strides[0] - pads[0] + pool[0]):
                        for s in range(j * strides[1] - pads[2], j * strides[1] - pads[2] + pool[1]):
                            if 0 <= r < h and 0 <= s < w:
                                v = x[a, b, r, s]
                                if at is None:
                                    at = r * w + s
                                if np.isnan(v) and not np.isnan(best):
                                    best, at = v, r * w + s
                                elif v > best:
                                    best, at = v, r * w + s
                    y[a, b, i, j], arg[a, b, i, j] = best, at
    return y, arg


MAXPOOL_CASES = [  # (x shape, pool, strides, padding)
    ((2, 3, 8, 8), 2, None, "valid"),
    ((2, 3, 7, 9), 2, None, "valid"),       # odd sizes: the last row/column is dropped
    ((1, 2, 7, 7), 3, 2, "valid"),          # overlapping windows
    ((1, 2, 7, 8), 3, 2, "same"),           # -inf padding on each side
    ((2, 1, 5, 6), (2, 3), (1, 2), "same"),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,pool,strides,padding", MAXPOOL_CASES)
def test_maxpool_layer_matches_a_loop_oracle(dtype, shape, pool, strides, padding):
    x = _rng().standard_normal(shape).astype(dtype)
    x.flat[3] = np.nan
    x.flat[5] = x.flat[6]  # a tie inside a window
    layer = nn.MaxPool2D(pool, strides, padding)
    y = layer.forward(x)
    t, b, l, r = layer._pads(*shape[2:])
    y_ref, arg_ref = _maxpool_oracle(x, layer.pool_size, layer.strides, (t, b, l, r), y.shape[2:])
    np.testing.assert_array_equal(y, y_ref)
    g = _rng(1).standard_normal(y.shape).astype(dtype)
    gx = layer.backward(g)
    gx_ref = np.zeros(shape, np.float64)
    for idx in np.ndindex(*y.shape):
        a, c = idx[:2]
        gx_ref[a, c].flat[arg_ref[idx]] += g[idx]
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-6 if dtype == np.float32 else 1e-13, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3, 6, 70), (1, 2, 4, 33), (1, 2, 5, 24), (1, 1, 2, 2)])
def test_maxpool_2x2_vector_path_ties_and_late_nan(dtype, shape, isa):
    """The 2x2/stride-2 kernels under each ISA (AVX-512: 16 windows a step, the row's last
    step masked; AVX2: 8 a step, a row's last ow % 8 one at a time; generic: the portable
    loop): many ties (three values), first maximum in row-major order wins; a NaN in a row's
    last window of one plane (a vector step where ow % 8 == 0, else AVX2's tail) wins its
    window there and leaves the others alone."""
    x = _rng(2).integers(0, 3, size=shape).astype(dtype)
    n, c, h, w = shape
    x[-1, -1, 1, 2 * (w // 2) - 1] = np.nan  # the last window of the first output row
    layer = nn.MaxPool2D(2)
    y = layer.forward(x)
    y_ref, arg_ref = _maxpool_oracle(x, (2, 2), (2, 2), (0, 0, 0, 0), y.shape[2:])
    np.testing.assert_array_equal(y, y_ref)
    g = _rng(3).standard_normal(y.shape).astype(dtype)
    gx = layer.backward(g)
    gx_ref = np.zeros(shape, np.float64)
    for idx in np.ndindex(*y.shape):
        gx_ref[idx[0], idx[1]].flat[arg_ref[idx]] += g[idx]
    np.testing.assert_array_equal(gx, gx_ref.astype(dtype))


def test_maxpool_channels_last_and_torch():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    x = _rng().standard_normal((3, 4, 9, 10)).astype(np.float32)
    layer = nn.MaxPool2D(3, 2)
    y = layer.forward(x)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.max_pool2d(xt, 3, 2)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    g = _rng(1).standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(layer.backward(g), xt.grad.numpy(), rtol=1e-6, atol=1e-7)
    last = nn.MaxPool2D(3, 2, data_format="channels_last")
    np.testing.assert_array_equal(last.forward(x.transpose(0, 2, 3, 1)), y.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(last.backward(g.transpose(0, 2, 3, 1)), xt.grad.numpy().transpose(0, 2, 3, 1),
                               rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------- dropout
@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_mask_rate_scale_and_backward_agree(dtype):
    rate = 0.3
    layer = nn.Dropout(rate, seed=7)
    x = np.ones((64, 50, 50), dtype)
    y = layer.forward(x, training=True)
    kept = y != 0
    frac = kept.mean()
    # binomial: 160000 draws, 6 standard deviations of the kept fraction
    assert abs(frac - (1 - rate)) < 6 * np.sqrt(rate * (1 - rate) / x.size), frac
    np.testing.assert_allclose(y[kept], dtype(1.0 / (1.0 - rate)))
    g = _rng().standard_normal(x.shape).astype(dtype)
    gx = layer.backward(g)
    np.testing.assert_array_equal(gx, np.where(kept, g * dtype(1.0 / (1.0 - rate)), 0))
    # a new call draws a new mask; inference is the identity
    assert (layer.forward(x, training=True) != y).any()
    assert layer.forward(x, training=False) is x


def test_dropout_is_reproducible_from_the_seed_and_independent_of_threads():
    x = _rng().standard_normal((32, 64, 20)).astype(np.float32)
    outs = []
    for t in (1, 2, 3):
        with fastconv.threads(t):
            outs.append(nn.Dropout(0.5, seed=3).forward(x, training=True))
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
    assert not np.array_equal(nn.Dropout(0.5, seed=4).forward(x, training=True), outs[0])


def test_dropout_masks_of_neighbouring_elements_are_uncorrelated():
    keep = nn.Dropout(0.5, seed=1).forward(np.ones(400_000, np.float64), training=True) != 0
    a, b = keep[:-1].astype(float), keep[1:].astype(float)
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.01


# ----------------------------------------------------------------------------- Adam
@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_kernel_matches_the_update_rule_in_float64(dtype):
    rng = _rng()
    p0 = rng.standard_normal(100_001).astype(dtype)
    p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    p64, m64, v64 = p0.astype(np.float64), np.zeros(p0.size), np.zeros(p0.size)
    opt = nn.Adam(1e-2)
    for step in range(1, 4):
        g = rng.standard_normal(p0.size).astype(dtype)
        opt.update({"w": p}, {"w": g})
        b1, b2 = 0.9, 0.999
        m64 += (1 - b1) * (g - m64)
        v64 += (1 - b2) * (g.astype(np.float64) ** 2 - v64)
        lr_t = 1e-2 * np.sqrt(1 - b2 ** step) / (1 - b1 ** step)
        p64 -= lr_t * m64 / (np.sqrt(v64) + 1e-7)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(p, p64, rtol=tol, atol=tol)


# ----------------------------------------------------------------------------- Dense on our GEMM
@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_on_fastconv_gemm_matches_float64_matmul(dtype):
    rng = _rng()
    layer = nn.Dense(37, dtype=dtype, seed=0, in_features=301)
    x = rng.standard_normal((19, 301)).astype(dtype)
    y = layer.forward(x)
    k64, b64 = layer.params["kernel"].astype(np.float64), layer.params["bias"].astype(np.float64)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, x.astype(np.float64) @ k64 + b64, rtol=tol, atol=tol)
    g = rng.standard_normal(y.shape).astype(dtype)
    gx = layer.backward(g)
    np.testing.assert_allclose(gx, g.astype(np.float64) @ k64.T, rtol=tol, atol=tol)
    np.testing.assert_allclose(layer.grads["kernel"], x.astype(np.float64).T @ g, rtol=tol, atol=tol)
    np.testing.assert_allclose(layer.grads["bias"], g.astype(np.float64).sum(0), rtol=tol, atol=tol)


# ----------------------------------------------------------------------------- conv2d_backward out= / input_grad
def test_conv2d_backward_writes_into_out_and_skips_grad_x():
    rng = _rng()
    x = rng.standard_normal((3, 4, 9, 9)).astype(np.float32)
    w = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((3, 5, 9, 9)).astype(np.float32)
    gx0, gw0, gb0 = fastconv.conv2d_backward(gy, x, w, padding=1)
    bufs = (np.full_like(x, np.nan), np.full_like(w, np.nan), np.full(5, np.nan, np.float32))
    gx, gw, gb = fastconv.conv2d_backward(gy, x, w, padding=1, out=bufs)
    assert gx is bufs[0] and gw is bufs[1] and gb is bufs[2]
    np.testing.assert_array_equal(gx, gx0)
    np.testing.assert_array_equal(gw, gw0)
    np.testing.assert_array_equal(gb, gb0)
    none_x, gw2, gb2 = fastconv.conv2d_backward(gy, x, w, padding=1, input_grad=False)
    assert none_x is None
    np.testing.assert_array_equal(gw2, gw0)
    np.testing.assert_array_equal(gb2, gb0)
    with pytest.raises(ValueError, match=r"out\[1\] \(grad_weight\) must have shape"):
        fastconv.conv2d_backward(gy, x, w, padding=1, out=(None, np.empty((5, 4, 3, 2), np.float32), None))
    with pytest.raises(TypeError, match="out must be a tuple"):
        fastconv.conv2d_backward(gy, x, w, padding=1, out=np.empty_like(x))
    gxi = fastconv.conv2d_input_grad(gy, w, x.shape, padding=1, out=np.empty_like(x))
    np.testing.assert_array_equal(gxi, gx0)
    gwi = fastconv.conv2d_weight_grad(gy, x, w.shape, padding=1, out=np.empty_like(w))
    np.testing.assert_array_equal(gwi, gw0)


# ----------------------------------------------------------------------------- the whole step
def _mnist_like(seed=0, dtype="float32"):
    model = nn.Sequential([
        nn.Conv2D(8, 3, seed=seed, dtype=dtype), nn.ReLU(), nn.Conv2D(16, 3, seed=seed + 1, dtype=dtype), nn.ReLU(),
        nn.MaxPool2D(2), nn.Dropout(0.25, seed=seed), nn.Flatten(), nn.Dense(32, seed=seed, dtype=dtype), nn.ReLU(),
        nn.Dropout(0.5, seed=seed + 1), nn.Dense(10, seed=seed + 1, dtype=dtype)])
    return model.compile(nn.Adam(1e-3))


def _data(n=16, seed=0):
    rng = _rng(seed)
    return rng.standard_normal((n, 1, 14, 14)).astype(np.float32), rng.integers(0, 10, n)


def test_training_steps_are_bitwise_the_same_for_any_thread_count():
    x, y = _data()
    results = []
    for t in (1, 2):
        model = _mnist_like()
        with fastconv.threads(t):
            losses = [model.train_on_batch(x, y)[0] for _ in range(3)]
        results.append((losses, [w.copy() for w in model.get_weights()]))
    assert results[0][0] == results[1][0]
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_array_equal(a, b)


def test_a_warm_training_step_allocates_no_new_buffers():
    x, y = _data(64)
    model = _mnist_like()
    for _ in range(2):
        model.train_on_batch(x, y)
    activations = sum(getattr(l, "_buffers", {}).get("y", np.empty(0)).nbytes for l in model.layers)
    assert activations > 200_000  # the kept buffers really exist
    tracemalloc.start()
    try:
        model.train_on_batch(x, y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # what is left: the loss's small (N, classes) arrays and the conv workspace cache hit
    assert peak < activations / 10, (peak, activations)


def test_model_outputs_stay_valid_after_the_next_call():
    x, y = _data()
    model = _mnist_like()
    model.train_on_batch(x, y)  # the layers now hold kept buffers
    a = model.forward(x)
    a_copy = a.copy()
    model.forward(x[::-1].copy())
    model.train_on_batch(x, y)
    np.testing.assert_array_equal(a, a_copy)
    assert all(not layer.reuse_buffers for layer in model.layers)  # only inside the step


def test_concurrent_predicts_on_one_model_do_not_share_buffers():
    import concurrent.futures
    x, y = _data(32)
    model = _mnist_like()
    model.train_on_batch(x, y)
    expected = [model.predict(x[i:i + 8]) for i in range(0, 32, 8)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            got = list(pool.map(lambda i: model.predict(x[i:i + 8]), range(0, 32, 8)))
            for a, b in zip(got, expected):
                np.testing.assert_array_equal(a, b)


def test_reused_buffers_train_like_fresh_ones():
    """A model whose layers return new arrays (reuse off) takes the same steps."""
    x, y = _data()
    fresh, kept = _mnist_like(), _mnist_like()
    fresh.reuse_buffers = False
    for _ in range(3):
        assert fresh.train_on_batch(x, y) == kept.train_on_batch(x, y)
    for a, b in zip(fresh.get_weights(), kept.get_weights()):
        np.testing.assert_array_equal(a, b)
