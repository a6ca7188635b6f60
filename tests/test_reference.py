"""Tests that prove the pure-NumPy oracle ``fastconv.reference`` right, without the C code.

Every expected value here comes from something other than the code under test:
a literal 7-deep scalar loop written from the formula, hand-computed TensorFlow
"same" paddings, central finite differences, scipy.signal, and PyTorch (when
installed).
"""

import math
import zlib

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fastconv import reference as ref


# --------------------------------------------------------------------------- independent helpers

def naive_conv2d(x, w, b, stride, pads, dilation, groups):
    """The definition, one scalar at a time. stride/dilation are pairs, pads is
    (top, bottom, left, right); out-of-range reads of x count as zero."""
    N, C, H, W = x.shape
    K, Cg, KH, KW = w.shape
    sh, sw = stride
    dh, dw = dilation
    pt, pb, pl, pr = pads
    OH = (H + pt + pb - dh * (KH - 1) - 1) // sh + 1
    OW = (W + pl + pr - dw * (KW - 1) - 1) // sw + 1
    Kg = K // groups
    xl, wl = np.asarray(x, np.float64).tolist(), np.asarray(w, np.float64).tolist()
    y = np.zeros((N, K, OH, OW))
    for n in range(N):
        for k in range(K):
            g = k // Kg
            for i in range(OH):
                for j in range(OW):
                    acc = 0.0 if b is None else float(b[k])
                    for c in range(Cg):
                        for l in range(KH):
                            for m in range(KW):
                                r = i * sh + l * dh - pt
                                q = j * sw + m * dw - pl
                                if 0 <= r < H and 0 <= q < W:
                                    acc += wl[k][c][l][m] * xl[n][g * Cg + c][r][q]
                    y[n, k, i, j] = acc
    return y


def tf_same_pads(n, k, s, d=1):
    """(lo, hi) padding of TensorFlow's "same", in the modulo form of the TF docs
    (a different formula from the one in reference.py)."""
    keff = (k - 1) * d + 1
    total = max(keff - s, 0) if n % s == 0 else max(keff - n % s, 0)
    return total // 2, total - total // 2


def to_pads(padding, H, W, KH, KW, stride, dilation):
    """Explicit (top, bottom, left, right) for any padding form, for the naive loop."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        return tf_same_pads(H, KH, stride[0], dilation[0]) + tf_same_pads(W, KW, stride[1], dilation[1])
    if isinstance(padding, int):
        return (padding,) * 4
    ph, pw = padding
    if isinstance(ph, int):
        return (ph, ph, pw, pw)
    return (*ph, *pw)


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def make(rng, N, C, H, W, K, KH, KW, groups, bias=True):
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((K, C // groups, KH, KW))
    b = rng.standard_normal(K) if bias else None
    return x, w, b


def assert_close(a, b, rtol=1e-12, atol=1e-12):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


# (N, C, H, W, K, KH, KW, stride, padding, dilation, groups)
GRID = {
    "basic":            (2, 3, 6, 6, 4, 3, 3, 1, 0, 1, 1),
    "stride2-pad1":     (2, 2, 7, 6, 3, 3, 3, 2, 1, 1, 1),
    "pair-stride-pad":  (1, 2, 8, 9, 2, 3, 2, (2, 3), (1, 2), 1, 1),
    "asym-pad":         (2, 2, 5, 6, 3, 3, 3, 1, ((0, 2), (1, 0)), 1, 1),
    "asym-pad-stride2": (1, 3, 6, 7, 2, 2, 3, 2, ((2, 1), (0, 3)), 1, 1),
    "same-s1":          (2, 2, 6, 5, 3, 3, 3, 1, "same", 1, 1),
    "same-s1-even-k":   (1, 2, 6, 5, 2, 4, 2, 1, "same", 1, 1),
    "same-s2":          (2, 2, 7, 8, 3, 3, 3, 2, "same", 1, 1),
    "same-s3":          (1, 2, 8, 10, 2, 3, 2, 3, "same", 1, 1),
    "same-s2-dil2":     (1, 2, 9, 6, 2, 3, 3, 2, "same", 2, 1),
    "same-k-gt-in":     (1, 1, 3, 4, 2, 5, 5, 2, "same", 1, 1),
    "valid":            (2, 3, 6, 7, 2, 3, 2, 1, "valid", 1, 1),
    "dilation":         (1, 2, 9, 8, 3, 3, 3, 1, 0, (2, 1), 1),
    "dilation-pad":     (2, 2, 7, 7, 2, 3, 2, 2, 2, 3, 1),
    "groups2":          (2, 4, 6, 5, 6, 3, 3, 1, 1, 1, 2),
    "depthwise":        (2, 3, 6, 6, 3, 3, 3, 1, 1, 1, 3),
    "depthwise-mult2":  (1, 3, 5, 6, 6, 3, 2, 2, 1, 1, 3),
    "N1-Cin1":          (1, 1, 6, 7, 3, 3, 3, 1, 0, 1, 1),
    "1x1":              (2, 3, 5, 4, 4, 1, 1, 1, 0, 1, 1),
    "1x1-stride2-pad":  (1, 3, 5, 6, 2, 1, 1, 2, 1, 1, 1),
    "k-eq-padded-in":   (2, 2, 3, 3, 2, 5, 5, 1, 1, 1, 1),
    "k-eq-in":          (1, 2, 4, 5, 3, 4, 5, 1, 0, 1, 1),
    "stride-gt-k":      (1, 2, 8, 8, 2, 2, 2, 3, 0, 1, 1),
    "unread-tail":      (1, 2, 8, 7, 2, 3, 3, 3, 0, 1, 1),
    "everything":       (2, 4, 9, 8, 4, 2, 3, (2, 1), ((1, 0), (2, 1)), (2, 2), 2),
}


def run_grid_case(name, rng):
    N, C, H, W, K, KH, KW, stride, padding, dilation, groups = GRID[name]
    x, w, b = make(rng, N, C, H, W, K, KH, KW, groups)
    pads = to_pads(padding, H, W, KH, KW, pair(stride), pair(dilation))
    return x, w, b, stride, padding, dilation, groups, pads


# --------------------------------------------------------------------------- forward vs the literal loop

@pytest.mark.parametrize("name", list(GRID))
def test_forward_matches_literal_loop(name):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x, w, b, stride, padding, dilation, groups, pads = run_grid_case(name, rng)
    y = ref.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
    expected = naive_conv2d(x, w, b, pair(stride), pads, pair(dilation), groups)
    assert y.shape == expected.shape
    assert y.dtype == np.float64
    assert_close(y, expected)
    # and without bias
    y0 = ref.conv2d(x, w, None, stride=stride, padding=padding, dilation=dilation, groups=groups)
    assert_close(y0, naive_conv2d(x, w, None, pair(stride), pads, pair(dilation), groups))


def test_tiny_hand_computed_example():
    # 1x1x3x3 input, 2x2 kernel, no padding: every output written out by hand.
    x = np.arange(9.0).reshape(1, 1, 3, 3)         # [[0,1,2],[3,4,5],[6,7,8]]
    w = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    y = ref.conv2d(x, w, np.array([10.0]))
    # y[0,0] = 0*1 + 1*2 + 3*3 + 4*4 + 10 = 37, etc. (cross-correlation: no flip)
    np.testing.assert_array_equal(y, [[[[37.0, 47.0], [67.0, 77.0]]]])


@st.composite
def configs(draw):
    groups = draw(st.integers(1, 3))
    C = groups * draw(st.integers(1, 2))
    K = groups * draw(st.integers(1, 2))
    KH, KW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    H, W = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    form = draw(st.sampled_from(["int", "pair", "explicit", "valid", "same"]))
    if form == "int":
        padding = draw(st.integers(0, 2))
    elif form == "pair":
        padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    elif form == "explicit":
        p = [draw(st.integers(0, 3)) for _ in range(4)]
        padding = ((p[0], p[1]), (p[2], p[3]))
    else:
        padding = form
    pads = to_pads(padding, H, W, KH, KW, stride, dilation)
    # the dilated kernel must fit in the padded input
    assume(H + pads[0] + pads[1] >= (KH - 1) * dilation[0] + 1)
    assume(W + pads[2] + pads[3] >= (KW - 1) * dilation[1] + 1)
    N = draw(st.integers(1, 2))
    seed = draw(st.integers(0, 2**32 - 1))
    return dict(N=N, C=C, H=H, W=W, K=K, KH=KH, KW=KW, stride=stride, padding=padding,
                dilation=dilation, groups=groups, pads=pads, seed=seed)


def _arrays(cfg, bias=True):
    rng = np.random.default_rng(cfg["seed"])
    return make(rng, cfg["N"], cfg["C"], cfg["H"], cfg["W"], cfg["K"], cfg["KH"], cfg["KW"],
                cfg["groups"], bias)


def _kw(cfg):
    return dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"],
                groups=cfg["groups"])


@settings(max_examples=30, deadline=None)
@given(configs())
def test_forward_matches_literal_loop_random(cfg):
    x, w, b = _arrays(cfg)
    y = ref.conv2d(x, w, b, **_kw(cfg))
    expected = naive_conv2d(x, w, b, cfg["stride"], cfg["pads"], cfg["dilation"], cfg["groups"])
    assert y.shape == expected.shape
    assert_close(y, expected)


def test_padding_forms_are_equivalent():
    rng = np.random.default_rng(1)
    x, w, b = make(rng, 2, 2, 6, 7, 3, 3, 3, 1)
    y_int = ref.conv2d(x, w, b, padding=1)
    assert_close(ref.conv2d(x, w, b, padding=(1, 1)), y_int, 0, 0)
    assert_close(ref.conv2d(x, w, b, padding=((1, 1), (1, 1))), y_int, 0, 0)
    assert_close(ref.conv2d(x, w, b, padding="valid"), ref.conv2d(x, w, b, padding=0), 0, 0)
    # stride 1, odd kernel: "same" is symmetric padding k//2
    assert_close(ref.conv2d(x, w, b, padding="same"), y_int, 0, 0)


def test_noncontiguous_and_negative_stride_inputs():
    rng = np.random.default_rng(2)
    x, w, b = make(rng, 2, 3, 7, 6, 2, 3, 2, 1)
    xv = np.asfortranarray(x)[:, ::-1, ::-1]     # F-order, negative strides
    wv = w[:, :, ::-1, :]
    y = ref.conv2d(xv, wv, b, stride=2, padding=1)
    assert_close(y, naive_conv2d(xv, wv, b, (2, 2), (1, 1, 1, 1), (1, 1), 1))


# --------------------------------------------------------------------------- "same" padding

# (in, k, stride, dilation) -> (out, lo, hi), worked out by hand from TF's definition
SAME_TABLE = [
    (5, 3, 1, 1, 5, 1, 1),
    (6, 4, 1, 1, 6, 1, 2),   # odd total: extra pixel at the end
    (5, 3, 2, 1, 3, 1, 1),
    (6, 3, 2, 1, 3, 0, 1),
    (7, 3, 3, 1, 3, 1, 1),
    (8, 3, 3, 1, 3, 0, 1),
    (9, 3, 3, 1, 3, 0, 0),
    (7, 5, 2, 1, 4, 2, 2),
    (5, 3, 1, 2, 5, 2, 2),
    (4, 1, 3, 1, 2, 0, 0),
    (10, 2, 3, 1, 4, 0, 1),
    (3, 5, 2, 1, 2, 2, 2),   # kernel larger than the input
]


@pytest.mark.parametrize("n,k,s,d,out,lo,hi", SAME_TABLE)
def test_same_padding_table(n, k, s, d, out, lo, hi):
    assert tf_same_pads(n, k, s, d) == (lo, hi)      # the test's own helper agrees with the table
    rng = np.random.default_rng(n * 100 + k * 10 + s)
    x = rng.standard_normal((1, 2, n, n + 1))
    w = rng.standard_normal((2, 2, k, 2))
    y = ref.conv2d(x, w, padding="same", stride=(s, 1), dilation=(d, 1))
    assert y.shape[2] == out
    expected = naive_conv2d(x, w, None, (s, 1), (lo, hi) + tf_same_pads(n + 1, 2, 1, 1), (d, 1), 1)
    assert_close(y, expected)


@pytest.mark.parametrize("s", [1, 2, 3])
@pytest.mark.parametrize("H,W", [(7, 7), (8, 8), (7, 10), (9, 4), (1, 2)])
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_same_output_shape_is_ceil(s, H, W, k):
    x = np.ones((1, 1, H, W))
    w = np.ones((1, 1, k, k))
    y = ref.conv2d(x, w, padding="same", stride=s)
    assert y.shape == (1, 1, math.ceil(H / s), math.ceil(W / s))


# --------------------------------------------------------------------------- gradients

def fd_grad(f, a, h=1e-3):
    """Central finite differences of scalar f with respect to every element of a."""
    g = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        old = a[idx]
        a[idx] = old + h
        fp = f()
        a[idx] = old - h
        fm = f()
        a[idx] = old
        g[idx] = (fp - fm) / (2 * h)
    return g


FD_CASES = ["basic", "stride2-pad1", "asym-pad-stride2", "same-s2", "same-s3", "dilation-pad",
            "groups2", "depthwise-mult2", "k-eq-padded-in", "unread-tail", "everything"]


@pytest.mark.parametrize("name", FD_CASES)
def test_gradients_by_finite_differences(name):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x, w, b, stride, padding, dilation, groups, _ = run_grid_case(name, rng)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    gy = rng.standard_normal(ref.conv2d(x, w, b, **kw).shape)

    def loss():
        return float(np.sum(ref.conv2d(x, w, b, **kw) * gy))

    gx, gw, gb = ref.conv2d_backward(gy, x, w, **kw, bias=True)
    assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == b.shape
    assert_close(gx, fd_grad(loss, x), 1e-7, 1e-8)
    assert_close(gw, fd_grad(loss, w), 1e-7, 1e-8)
    assert_close(gb, fd_grad(loss, b), 1e-7, 1e-8)
    # the stand-alone functions agree with conv2d_backward
    assert_close(ref.conv2d_input_grad(gy, w, x.shape, **kw), gx, 0, 0)
    assert_close(ref.conv2d_weight_grad(gy, x, w.shape, **kw), gw, 0, 0)
    _, _, none = ref.conv2d_backward(gy, x, w, **kw, bias=False)
    assert none is None


def test_input_grad_is_zero_on_pixels_no_output_reads():
    # H=8, k=3, stride 3, no padding: outputs read rows 0..5 only, rows 6 and 7 never.
    rng = np.random.default_rng(3)
    w = rng.standard_normal((2, 2, 3, 3))
    gy = rng.standard_normal((1, 2, 2, 2))
    gx = ref.conv2d_input_grad(gy, w, (1, 2, 8, 7), stride=3)
    assert gx.shape == (1, 2, 8, 7)
    assert np.all(gx[:, :, 6:, :] == 0) and np.all(gx[:, :, :, 6:] == 0)
    assert np.all(gx[:, :, :6, :6] != 0)


@settings(max_examples=30, deadline=None)
@given(configs())
def test_adjoint_identities(cfg):
    x, w, _ = _arrays(cfg, bias=False)
    kw = _kw(cfg)
    y = ref.conv2d(x, w, **kw)
    gy = np.random.default_rng(cfg["seed"] + 1).standard_normal(y.shape)
    lhs = np.vdot(y, gy)
    via_x = np.vdot(x, ref.conv2d_input_grad(gy, w, x.shape, **kw))
    via_w = np.vdot(w, ref.conv2d_weight_grad(gy, x, w.shape, **kw))
    scale = np.sum(np.abs(y) * np.abs(gy)) + 1.0
    assert abs(lhs - via_x) <= 1e-12 * scale
    assert abs(lhs - via_w) <= 1e-12 * scale


# --------------------------------------------------------------------------- SciPy

@pytest.mark.parametrize("H,W,kh,kw", [(7, 6, 3, 3), (5, 9, 2, 4), (4, 4, 4, 4), (6, 5, 1, 1)])
def test_single_channel_equals_scipy_correlate2d(H, W, kh, kw):
    signal = pytest.importorskip("scipy.signal", reason="SciPy not installed; comparison skipped")
    rng = np.random.default_rng(H * W + kh)
    x = rng.standard_normal((H, W))
    w = rng.standard_normal((kh, kw))
    y = ref.conv2d(x[None, None], w[None, None])[0, 0]
    assert_close(y, signal.correlate2d(x, w, mode="valid"))
    # "full" is padding k-1 on every side
    yf = ref.conv2d(x[None, None], w[None, None], padding=(kh - 1, kw - 1))[0, 0]
    assert_close(yf, signal.correlate2d(x, w, mode="full"))


# --------------------------------------------------------------------------- PyTorch

TORCH_CASES = [
    # (N, C, H, W, K, KH, KW, stride, padding, dilation, groups)
    (2, 3, 7, 6, 4, 3, 3, 1, 0, 1, 1),
    (2, 2, 8, 9, 3, 3, 2, (2, 3), (1, 2), 1, 1),
    (1, 4, 9, 8, 6, 3, 3, 2, 1, (2, 1), 2),
    (2, 3, 6, 6, 3, 3, 3, 1, 1, 1, 3),
    (1, 2, 5, 7, 2, 5, 7, 1, 0, 1, 1),
    (2, 2, 8, 7, 2, 3, 3, 3, 0, 1, 1),
    (1, 3, 6, 5, 2, 1, 1, 2, 1, 1, 1),
    (2, 2, 6, 7, 3, 3, 3, 1, "valid", 1, 1),
    (2, 2, 6, 7, 3, 3, 3, 1, "same", 1, 1),
    (1, 2, 6, 7, 2, 4, 2, 1, "same", (1, 2), 1),   # even kernel: torch also puts the extra pixel last
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("case", TORCH_CASES, ids=[str(i) for i in range(len(TORCH_CASES))])
def test_matches_torch_forward_and_autograd(case):
    torch = pytest.importorskip("torch")
    N, C, H, W, K, KH, KW, stride, padding, dilation, groups = case
    rng = np.random.default_rng(len(str(case)))
    x, w, b = make(rng, N, C, H, W, K, KH, KW, groups)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch.nn.functional.conv2d(xt, wt, bt, **kw)
    y = ref.conv2d(x, w, b, **kw)
    assert_close(y, yt.detach().numpy())
    gy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(gy))
    gx, gw, gb = ref.conv2d_backward(gy, x, w, **kw)
    assert_close(gx, xt.grad.numpy())
    assert_close(gw, wt.grad.numpy())
    assert_close(gb, bt.grad.numpy())


@pytest.mark.parametrize("name", ["asym-pad", "asym-pad-stride2", "same-s2", "same-s3",
                                  "same-s2-dil2", "everything"])
def test_asymmetric_padding_matches_torch_with_explicit_pad(name):
    """Padding torch's conv2d cannot express: pad with F.pad first (TF "same" pads from the
    test's own helper), then compare forward and autograd gradients."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x, w, b, stride, padding, dilation, groups, (pt, pb, pl, pr) = run_grid_case(name, rng)
    kw = dict(stride=stride, dilation=dilation, groups=groups)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = F.conv2d(F.pad(xt, (pl, pr, pt, pb)), wt, bt, **kw)
    y = ref.conv2d(x, w, b, padding=padding, **kw)
    assert_close(y, yt.detach().numpy())
    gy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(gy))
    gx, gw, gb = ref.conv2d_backward(gy, x, w, padding=padding, **kw)
    assert_close(gx, xt.grad.numpy())
    assert_close(gw, wt.grad.numpy())
    assert_close(gb, bt.grad.numpy())


# --------------------------------------------------------------------------- dtypes

def test_float32_stays_float32_and_is_accurate():
    rng = np.random.default_rng(4)
    x, w, b = make(rng, 2, 4, 9, 8, 6, 3, 3, 2)
    x32, w32, b32 = (a.astype(np.float32) for a in (x, w, b))
    kw = dict(stride=2, padding="same", groups=2)
    y32 = ref.conv2d(x32, w32, b32, **kw)
    assert y32.dtype == np.float32
    # error bound of docs/architecture.md: |y - y_exact| <= c * eps * sum|x||w|, exact from the float64 loop
    pads = to_pads("same", 9, 8, 3, 3, (2, 2), (1, 1))
    exact = naive_conv2d(x32, w32, b32, (2, 2), pads, (1, 1), 2)
    bound = naive_conv2d(np.abs(x32), np.abs(w32), np.abs(b32), (2, 2), pads, (1, 1), 2)
    assert np.all(np.abs(y32 - exact) <= 4 * np.finfo(np.float32).eps * bound)

    gy32 = rng.standard_normal(y32.shape).astype(np.float32)
    gx, gw, gb = ref.conv2d_backward(gy32, x32, w32, **kw)
    assert gx.dtype == gw.dtype == gb.dtype == np.float32
    assert ref.conv2d_input_grad(gy32, w32, x.shape, **kw).dtype == np.float32
    assert ref.conv2d_weight_grad(gy32, x32, w.shape, **kw).dtype == np.float32
    gx64, gw64, gb64 = ref.conv2d_backward(gy32.astype(np.float64), x32.astype(np.float64),
                                           w32.astype(np.float64), **kw)
    assert_close(gx, gx64, 1e-5, 1e-5)
    assert_close(gw, gw64, 1e-5, 1e-5)
    assert_close(gb, gb64, 1e-5, 1e-5)


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.bool_])
def test_int_and_bool_promote_to_float64(dtype):
    rng = np.random.default_rng(5)
    x = rng.integers(0, 3, (1, 2, 5, 6)).astype(dtype)
    w = rng.integers(0, 3, (3, 2, 2, 3)).astype(dtype)
    y = ref.conv2d(x, w, padding=1)
    assert y.dtype == np.float64
    # exact: small integers, computed in float64 (no int8 / uint8 overflow or bool "or")
    np.testing.assert_array_equal(y, naive_conv2d(x.astype(np.float64), w.astype(np.float64), None,
                                                  (1, 1), (1, 1, 1, 1), (1, 1), 1))
    gy = np.ones(y.shape, dtype=dtype)
    gx, gw, gb = ref.conv2d_backward(gy, x, w, padding=1)
    assert gx.dtype == gw.dtype == gb.dtype == np.float64


def test_int8_does_not_overflow():
    x = np.full((1, 4, 3, 3), 100, dtype=np.int8)
    w = np.full((1, 4, 3, 3), 100, dtype=np.int8)
    assert ref.conv2d(x, w)[0, 0, 0, 0] == 36 * 100 * 100


def test_accepts_nested_lists():
    y = ref.conv2d([[[[1, 2], [3, 4]]]], [[[[1.0, -1.0]]]], [0.5])
    np.testing.assert_array_equal(y, [[[[-0.5], [-0.5]]]])
    assert y.dtype == np.float64


def test_mixed_float32_float64_promotes_to_float64():
    rng = np.random.default_rng(6)
    x, w, b = make(rng, 1, 2, 5, 5, 2, 3, 3, 1)
    assert ref.conv2d(x.astype(np.float32), w).dtype == np.float64
    assert ref.conv2d(x, w.astype(np.float32)).dtype == np.float64
    assert ref.conv2d(x.astype(np.float32), w.astype(np.float32), b).dtype == np.float64
    gy = np.ones((1, 2, 3, 3), dtype=np.float32)
    assert all(g.dtype == np.float64 for g in ref.conv2d_backward(gy, x, w.astype(np.float32)))


# --------------------------------------------------------------------------- nonsense

@pytest.mark.parametrize("kwargs", [
    dict(padding=-1),
    dict(padding="full"),
    dict(stride=0),
    dict(dilation=0),
    dict(groups=2),          # weight has C_in/groups = 2 but C_in = 2 gives 1
    dict(padding=0, dilation=3),   # dilated kernel (7) larger than the input (5)
])
def test_nonsense_raises_value_error(kwargs):
    x = np.zeros((1, 2, 5, 5))
    w = np.zeros((2, 2, 3, 3))
    with pytest.raises(ValueError):
        ref.conv2d(x, w, **kwargs)
