"""fastconv.conv_transpose2d: against PyTorch (when installed), against the reference's
adjoint definition and finite differences (always), and its error messages."""

import numpy as np
import pytest

import fastconv
from fastconv import reference

# (stride, padding, output_padding, groups, dilation): op > padding, op from dilation, groups
CASES = [
    (1, 0, 0, 1, 1),
    (2, 1, 1, 1, 1),
    (2, 0, 1, 2, 1),
    (3, 2, 2, 1, 2),
    (1, 1, 1, 1, 2),
    ((2, 3), (1, 0), (1, 2), 3, (1, 2)),
]


def _problem(rng, groups, dtype=np.float64):
    x = rng.standard_normal((2, 6, 5, 4)).astype(dtype)
    w = rng.standard_normal((6, 2, 3, 2)).astype(dtype)
    b = rng.standard_normal(2 * groups).astype(dtype)
    return x, w, b


@pytest.mark.parametrize("case", CASES)
def test_conv_transpose2d_is_the_adjoint_of_conv2d(case):
    """<conv_transpose2d(x), z> == <x, conv2d(z)> for the reference conv2d."""
    s, p, op, g, d = case
    rng = np.random.default_rng(0)
    x, w, _ = _problem(rng, g)
    y = fastconv.conv_transpose2d(x, w, None, s, p, op, g, d)
    z = rng.standard_normal(y.shape)
    pp = (p, p) if isinstance(p, int) else p
    ops = (op, op) if isinstance(op, int) else op
    # the reference convolution from y's size back to x's: the op rows come off the bottom
    # padding; where op > padding, the last op - padding rows are out of every window
    cut = [max(ops[a] - pp[a], 0) for a in range(2)]
    pads = tuple((pp[a], max(pp[a] - ops[a], 0)) for a in range(2))
    zc = z[:, :, :z.shape[2] - cut[0], :z.shape[3] - cut[1]]
    cz = reference.conv2d(zc, w, None, s, pads, d, g)
    assert np.all(y[:, :, z.shape[2] - cut[0]:] == 0) and np.all(y[..., z.shape[3] - cut[1]:] == 0)
    assert cz.shape == x.shape
    assert np.sum(y * z) == pytest.approx(np.sum(x * cz), rel=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_conv_transpose2d_matches_torch(case):
    torch = pytest.importorskip("torch", reason="PyTorch not installed (pip install torch)")
    s, p, op, g, d = case
    rng = np.random.default_rng(1)
    x, w, b = _problem(rng, g)
    y = fastconv.conv_transpose2d(x, w, b, s, p, op, g, d)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch.nn.functional.conv_transpose2d(xt, wt, bt, s, p, op, g, d)
    assert y.shape == tuple(yt.shape)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    G = rng.standard_normal(y.shape)
    (yt * torch.tensor(G)).sum().backward()
    gx, gw, gb = fastconv.conv_transpose2d_backward(G, x, w, s, p, op, g, d)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gw, wt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gb, bt.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_conv_transpose2d_float32_matches_float64():
    rng = np.random.default_rng(2)
    x, w, b = _problem(rng, 1)
    y64 = fastconv.conv_transpose2d(x, w, b, 2, 1, 1)
    y32 = fastconv.conv_transpose2d(x.astype(np.float32), w.astype(np.float32), b.astype(np.float32), 2, 1, 1)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", [(2, 1, 1, 1, 1), (1, 1, 1, 1, 2), (2, 0, 1, 2, 1)])
def test_conv_transpose2d_gradients_finite_differences(case):
    s, p, op, g, d = case
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 4, 3, 3))
    w = rng.standard_normal((4, 1, 2, 3))
    b = rng.standard_normal(g)
    y = fastconv.conv_transpose2d(x, w, b, s, p, op, g, d)
    G = rng.standard_normal(y.shape)
    gx, gw, gb = fastconv.conv_transpose2d_backward(G, x, w, s, p, op, g, d)
    for a, ga in ((x, gx), (w, gw), (b, gb)):
        num = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            old = a[i]
            a[i] = old + 1e-6
            fp = np.sum(fastconv.conv_transpose2d(x, w, b, s, p, op, g, d) * G)
            a[i] = old - 1e-6
            fm = np.sum(fastconv.conv_transpose2d(x, w, b, s, p, op, g, d) * G)
            a[i] = old
            num[i] = (fp - fm) / 2e-6
        np.testing.assert_allclose(ga, num, rtol=1e-6, atol=1e-6)


def test_conv_transpose2d_errors():
    x, w = np.ones((1, 2, 4, 4)), np.ones((2, 3, 3, 3))
    with pytest.raises(ValueError, match="output_padding must be smaller than the stride or the dilation"):
        fastconv.conv_transpose2d(x, w, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="output_padding"):
        fastconv.conv_transpose2d(x, w, output_padding=-1)
    with pytest.raises(ValueError, match=r"weight.shape\[0\] must be the input channels C_in=2"):
        fastconv.conv_transpose2d(x, np.ones((3, 3, 3, 3)))
    with pytest.raises(ValueError, match="bias must have shape"):
        fastconv.conv_transpose2d(x, w, np.ones(2))
    with pytest.raises(ValueError, match="would have size"):
        fastconv.conv_transpose2d(x, w, padding=4)
    with pytest.raises(ValueError, match="x must be a 4-D array"):
        fastconv.conv_transpose2d(np.ones((2, 4, 4)), w)
    with pytest.raises(ValueError, match="grad_output must have the output's shape"):
        fastconv.conv_transpose2d_backward(np.ones((1, 3, 5, 5)), x, w)


def test_conv_transpose2d_random_problems_match_torch():
    """Hypothesis-drawn geometries (stride, padding, output_padding, dilation, groups per axis)."""
    torch = pytest.importorskip("torch", reason="PyTorch not installed (pip install torch)")
    from hypothesis import given, settings, strategies as st

    @st.composite
    def problems(draw):
        g = draw(st.integers(1, 3))
        cin, cout = g * draw(st.integers(1, 2)), g * draw(st.integers(1, 2))
        axes = []
        for _ in range(2):
            k, s, d = draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
            size = draw(st.integers(1, 6))
            op = draw(st.integers(0, max(s, d) - 1))
            full = (size - 1) * s + d * (k - 1) + op + 1
            p = draw(st.integers(0, max((full - 1) // 2, 0)))
            axes.append((k, s, d, size, op, p))
        return g, cin, cout, axes, draw(st.integers(0, 2**31 - 1))

    @settings(max_examples=40, deadline=None)
    @given(problems())
    def check(problem):
        g, cin, cout, axes, seed = problem
        (kh, sh, dh, h, oph, ph), (kw, sw, dw, w, opw, pw) = axes
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((2, cin, h, w))
        wt = rng.standard_normal((cin, cout // g, kh, kw))
        args = ((sh, sw), (ph, pw), (oph, opw), g, (dh, dw))
        y = fastconv.conv_transpose2d(x, wt, None, *args)
        want = torch.nn.functional.conv_transpose2d(torch.tensor(x), torch.tensor(wt), None, *args).numpy()
        assert y.shape == want.shape
        np.testing.assert_allclose(y, want, rtol=1e-11, atol=1e-11)
        G = rng.standard_normal(y.shape)
        xt, wtt = torch.tensor(x, requires_grad=True), torch.tensor(wt, requires_grad=True)
        (torch.nn.functional.conv_transpose2d(xt, wtt, None, *args) * torch.tensor(G)).sum().backward()
        gx, gw, _ = fastconv.conv_transpose2d_backward(G, x, wt, *args, bias=False)
        np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(gw, wtt.grad.numpy(), rtol=1e-11, atol=1e-11)

    check()
