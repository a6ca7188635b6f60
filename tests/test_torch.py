"""Optional: forward and autograd gradients against torch.nn.functional.conv2d.

Skipped when PyTorch is not installed. Asymmetric padding goes through ``F.pad`` on the
torch side and ``((top, bottom), (left, right))`` on ours. Errors are judged with DESIGN's
bound (both sides round, so the bound is on |ours - torch|).
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest

import fastconv

import helpers as H

torch = pytest.importorskip("torch", reason="PyTorch is not installed (optional comparison)")
F = torch.nn.functional

# (name, x shape, w shape, stride, padding as ours, dilation, groups, bias)
CONFIGS = [
    ("plain", (2, 3, 8, 9), (4, 3, 3, 3), 1, 0, 1, 1, True),
    ("padding_int", (2, 3, 8, 9), (5, 3, 3, 3), 1, 1, 1, 1, True),
    ("padding_pair_stride_pair", (2, 3, 9, 8), (4, 3, 3, 2), (2, 1), (1, 2), 1, 1, True),
    ("dilation", (1, 2, 11, 10), (3, 2, 3, 3), 1, 2, (2, 3), 1, False),
    ("groups", (2, 6, 7, 7), (9, 2, 3, 3), 2, 1, 1, 3, True),
    ("depthwise", (2, 8, 9, 9), (8, 1, 3, 3), 2, 1, 1, 8, False),
    ("depthwise_multiplier", (1, 4, 6, 7), (8, 1, 5, 3), 1, (2, 1), 1, 4, True),
    ("1x1_stride3", (2, 5, 10, 7), (3, 5, 1, 1), 3, 0, 1, 1, True),
    ("stem_7x7_s2", (1, 3, 20, 18), (8, 3, 7, 7), 2, 3, 1, 1, False),
    ("asymmetric", (2, 3, 7, 8), (4, 3, 3, 3), 1, ((0, 2), (1, 0)), 1, 1, True),
    ("asymmetric_stride2_groups", (1, 4, 9, 8), (6, 2, 2, 3), 2, ((1, 0), (0, 2)), (2, 1), 2, True),
    ("kernel_eq_padded_input", (1, 2, 3, 4), (3, 2, 5, 6), 1, 1, 1, 1, True),
    ("stride_gt_kernel", (2, 2, 10, 11), (3, 2, 2, 2), 4, 0, 1, 1, True),
]


def _torch_conv(x, w, b, stride, padding, dilation, groups):
    if isinstance(padding, tuple) and isinstance(padding[0], tuple):
        (t, bo), (l, r) = padding
        x = F.pad(x, (l, r, t, bo))  # F.pad takes the last dimension first
        padding = 0
    return F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)


@pytest.mark.parametrize("cfg", CONFIGS, ids=[c[0] for c in CONFIGS])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_forward_and_gradients_match_torch(cfg, dtype, algorithm):
    name, xs, ws, stride, padding, dilation, groups, with_bias = cfg
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype) if with_bias else None

    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True) if with_bias else None
    ty = _torch_conv(tx, tw, tb, stride, padding, dilation, groups)
    gy = rng.standard_normal(tuple(ty.shape)).astype(dtype)
    ty.backward(torch.tensor(gy))

    args = (stride, padding, dilation, groups)
    y = fastconv.conv2d(x, w, b, *args, algorithm=algorithm)
    gx, gw, gb = fastconv.conv2d_backward(gy, x, w, *args, bias=with_bias, algorithm=algorithm)

    _, bound = H.ref_forward(x, w, b, *args)
    H.assert_close_to_reference(y, ty.detach().numpy(), bound, dtype, what="y vs torch")
    _, bound = H.ref_input_grad(gy, w, x.shape, *args)
    H.assert_close_to_reference(gx, tx.grad.numpy(), bound, dtype, what="grad_x vs torch")
    _, bound = H.ref_weight_grad(gy, x, w.shape, *args)
    H.assert_close_to_reference(gw, tw.grad.numpy(), bound, dtype, what="grad_weight vs torch")
    if with_bias:
        _, bound = H.ref_bias_grad(gy)
        H.assert_close_to_reference(gb, tb.grad.numpy(), bound, dtype, what="grad_bias vs torch")
    else:
        assert gb is None


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("hw", [(7, 8), (9, 9), (10, 6)])
def test_same_padding_matches_torch_where_torch_has_it(stride, hw, algorithm):
    """torch's padding="same" exists for stride 1 only; for stride 1 with an odd kernel
    TF/Keras "same" and torch's agree. For strides 2 and 3 compare with TF's formula
    applied through F.pad."""
    rng = np.random.default_rng(stride * 100 + hw[0])
    x = rng.standard_normal((1, 2, *hw))
    w = rng.standard_normal((3, 2, 3, 4))
    y = fastconv.conv2d(x, w, stride=stride, padding="same", algorithm=algorithm)
    pads = []
    for size, k in zip(hw, (3, 4)):
        out = -(-size // stride)
        total = max((out - 1) * stride + k - size, 0)
        pads.append((total // 2, total - total // 2))
    ty = _torch_conv(torch.tensor(x), torch.tensor(w), None, stride, tuple(pads), 1, 1)
    assert y.shape == tuple(ty.shape) == (1, 3, -(-hw[0] // stride), -(-hw[1] // stride))
    _, bound = H.ref_forward(x, w, None, stride, tuple(pads), 1, 1)
    H.assert_close_to_reference(y, ty.numpy(), bound, np.float64)
    if stride == 1:
        w3 = w[:, :, :, :3].copy()
        ty3 = F.conv2d(torch.tensor(x), torch.tensor(w3), padding="same")
        y3 = fastconv.conv2d(x, w3, padding="same", algorithm=algorithm)
        _, bound = H.ref_forward(x, w3, None, 1, "same", 1, 1)
        H.assert_close_to_reference(y3, ty3.numpy(), bound, np.float64)
