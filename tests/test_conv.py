"""conv2d and its gradients against the pure-NumPy reference.

Every pass (fwd, bwd_data, bwd_weights with the bias gradient) x dtype (float32, float64)
x algorithm is compared against ``fastconv.reference`` evaluated in float64, with the
per-element error bound of docs/architecture.md (``helpers.assert_close_to_reference``): on a grid of
edge cases, on Hypothesis-generated configurations and on real networks' layers. Outputs
are poisoned with NaN and the workspace with 0xFF bytes before each call, so an element
a kernel skips, or scratch memory it reads before writing, is caught.
"""
from __future__ import annotations

import os
import subprocess
import sys
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastconv
from fastconv import functional
from fastconv import reference as ref
from fastconv._spec import make_spec

import helpers as H

DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["f32", "f64"]
FWD, BWD_DATA, BWD_WEIGHTS = 0, 1, 2


class Case(NamedTuple):
    name: str
    x_shape: tuple
    w_shape: tuple
    stride: object = 1
    padding: object = 0
    dilation: object = 1
    groups: int = 1
    bias: bool = True

    @property
    def args(self):
        return (self.stride, self.padding, self.dilation, self.groups)


# The edge-case grid (issue 2, "Tests"). Channel counts that are not multiples of the
# kernels' channel block (4) and row lengths that are not multiples of a vector appear on
# purpose.
CASES = [
    Case("basic", (2, 3, 7, 8), (4, 3, 3, 3)),
    Case("N1_Cin1", (1, 1, 5, 6), (2, 1, 3, 2)),
    Case("N1_Cin1_Cout1", (1, 1, 4, 4), (1, 1, 2, 2), bias=False),
    Case("1x1", (2, 4, 5, 5), (6, 4, 1, 1)),
    Case("1x1_stride2", (2, 4, 7, 6), (3, 4, 1, 1), stride=2),
    Case("1x1_padded", (1, 2, 3, 3), (3, 2, 1, 1), padding=1),
    Case("kernel_eq_input", (2, 2, 4, 5), (3, 2, 4, 5)),
    Case("kernel_eq_padded_input", (1, 2, 3, 4), (3, 2, 5, 6), padding=1),
    Case("kernel_eq_padded_asym", (2, 2, 3, 3), (2, 2, 4, 5), padding=((1, 0), (2, 0))),
    Case("kernel_eq_dilated", (1, 2, 5, 7), (2, 2, 3, 4), dilation=2),
    Case("stride_gt_kernel", (2, 2, 9, 10), (3, 2, 2, 2), stride=3),
    Case("stride_gt_kernel_1x1", (1, 3, 9, 9), (2, 3, 1, 1), stride=(4, 3)),
    Case("stride_gt_input", (1, 2, 3, 3), (2, 2, 2, 2), stride=5),
    Case("trailing_rows_unread", (1, 2, 8, 8), (2, 2, 3, 3), stride=3),
    Case("dilation2", (2, 2, 9, 9), (3, 2, 3, 3), dilation=2),
    Case("dilation_anisotropic", (1, 2, 10, 8), (2, 2, 3, 2), padding=(2, 1), dilation=(3, 2)),
    Case("depthwise", (2, 4, 7, 7), (4, 1, 3, 3), padding=1, groups=4),
    Case("depthwise_multiplier2", (2, 3, 6, 7), (6, 1, 3, 3), groups=3),
    Case("depthwise_stride2", (1, 5, 9, 8), (5, 1, 3, 3), stride=2, padding="same", groups=5),
    Case("groups2", (2, 4, 6, 6), (6, 2, 3, 3), padding=1, groups=2),
    Case("groups3_stride_dilation", (1, 6, 11, 9), (9, 2, 3, 2), stride=2,
         padding=((1, 2), (0, 1)), dilation=2, groups=3),
    Case("odd_sizes", (3, 5, 7, 9), (7, 5, 3, 5), padding=(1, 2)),
    Case("many_channels", (1, 17, 5, 5), (9, 17, 3, 3), padding=1),
    Case("wide_rows", (1, 2, 3, 41), (3, 2, 2, 5), stride=(1, 2), padding=(0, 2)),
    Case("kernel_1xK", (1, 2, 6, 6), (2, 2, 1, 5), padding=(0, 2)),
    Case("kernel_Kx1", (1, 2, 6, 6), (2, 2, 5, 1), padding=(2, 0)),
    Case("padding_pair", (1, 2, 5, 6), (3, 2, 3, 3), padding=(2, 0)),
    Case("asym_padding", (2, 2, 6, 7), (3, 2, 3, 3), padding=((0, 2), (1, 0))),
    Case("padding_only_rows", (1, 2, 4, 4), (2, 2, 2, 2), padding=((3, 0), (0, 4))),
    Case("same_s1_even_kernel", (2, 2, 6, 7), (3, 2, 2, 4), padding="same"),
    Case("same_s2", (2, 3, 7, 8), (4, 3, 3, 3), stride=2, padding="same"),
    Case("same_s3", (2, 3, 10, 11), (4, 3, 3, 3), stride=3, padding="same"),
    Case("same_s2_dilation2", (1, 2, 9, 8), (3, 2, 3, 3), stride=2, padding="same", dilation=2),
    Case("same_s3_1x1", (1, 2, 7, 8), (3, 2, 1, 1), stride=3, padding="same"),
    Case("same_5x5_on_1x1", (2, 3, 1, 1), (4, 3, 5, 5), padding="same"),
    Case("same_7x7_on_2x2", (1, 2, 2, 2), (3, 2, 7, 7), padding="same"),
    Case("left_padding_wider_than_output", (1, 2, 1, 1), (2, 2, 1, 3), padding=((0, 0), (2, 0))),
    Case("same_s2_s3_mixed", (1, 2, 7, 9), (2, 2, 4, 2), stride=(2, 3), padding="same"),
    Case("valid", (2, 3, 8, 6), (4, 3, 3, 2), stride=2, padding="valid"),
    Case("valid_no_bias", (1, 2, 5, 5), (2, 2, 3, 3), padding="valid", bias=False),
]
CASE_IDS = [c.name for c in CASES]


def make_data(rng, case: Case, dtype):
    """x, w, b (or None) and grad_output for ``case`` in ``dtype``; y's shape from the reference."""
    x = rng.standard_normal(case.x_shape).astype(dtype)
    w = rng.standard_normal(case.w_shape).astype(dtype)
    b = rng.standard_normal(case.w_shape[0]).astype(dtype) if case.bias else None
    out_shape = ref.conv2d(np.zeros(case.x_shape), np.zeros(case.w_shape), None, *case.args).shape
    gy = rng.standard_normal(out_shape).astype(dtype)
    return x, w, b, gy


def check_forward(y, x, w, b, args, dtype, what="y"):
    exp, bound = H.ref_forward(x, w, b, *args)
    H.assert_close_to_reference(y, exp, bound, dtype, what=what)


def check_input_grad(gx, gy, w, x_shape, args, dtype, what="grad_x"):
    exp, bound = H.ref_input_grad(gy, w, x_shape, *args)
    H.assert_close_to_reference(gx, exp, bound, dtype, what=what)


def check_weight_grad(gw, gy, x, w_shape, args, dtype, what="grad_weight"):
    exp, bound = H.ref_weight_grad(gy, x, w_shape, *args)
    H.assert_close_to_reference(gw, exp, bound, dtype, what=what)


def check_bias_grad(gb, gy, dtype, what="grad_bias"):
    exp, bound = H.ref_bias_grad(gy)
    H.assert_close_to_reference(gb, exp, bound, dtype, what=what)


def spec_of(case_or_shapes, dtype, args=None):
    if isinstance(case_or_shapes, Case):
        return make_spec(case_or_shapes.x_shape, case_or_shapes.w_shape, *case_or_shapes.args, np.dtype(dtype))
    x_shape, w_shape = case_or_shapes
    return make_spec(x_shape, w_shape, *args, np.dtype(dtype))


# ============================================================================= crash guard

# Problems where a kernel column's first valid output column lies beyond the output
# width (left padding wider than the output, e.g. a 5x5 "same" convolution of a 1x1 map).
# Run in a subprocess first, so a segfault is reported as a failure with its input
# instead of killing the test run.
_CRASH_PROBES = [
    ((1, 1, 1, 1), (1, 1, 1, 3), ((0, 0), (2, 0))),
    ((2, 2, 3, 3), (2, 2, 4, 5), ((1, 0), (2, 0))),
    ((1, 1, 1, 1), (1, 1, 5, 5), "same"),
    ((1, 1, 2, 2), (1, 1, 7, 7), "same"),
    ((2, 8, 1, 1), (8, 8, 5, 5), "same"),
]

_PROBE_SCRIPT = """
import sys, numpy as np, fastconv
algorithm, x_shape, w_shape, padding = sys.argv[1], *map(eval, sys.argv[2:5])
x, w = np.ones(x_shape), np.ones(w_shape)
for which in sys.argv[5].split(","):
    print("running", which, flush=True)
    if which == "fwd":
        y = fastconv.conv2d(x, w, np.zeros(w_shape[0]), padding=padding, algorithm=algorithm)
        gy = np.ones(y.shape)
    elif which == "bwd_data":
        fastconv.conv2d_input_grad(gy, w, x_shape, padding=padding, algorithm=algorithm)
    else:
        fastconv.conv2d_weight_grad(gy, x, w_shape, padding=padding, algorithm=algorithm)
print("ok")
"""


@pytest.mark.parametrize("probe", _CRASH_PROBES, ids=[f"{p[0]}-{p[1]}-{p[2]}" for p in _CRASH_PROBES])
def test_left_padding_wider_than_output_does_not_crash(probe, algorithm_or_auto):
    x_shape, w_shape, padding = probe
    env = H.child_env(drop=())
    proc = subprocess.run([sys.executable, "-c", _PROBE_SCRIPT, algorithm_or_auto, repr(x_shape),
                           repr(w_shape), repr(padding), "fwd,bwd_data,bwd_weights"],
                          capture_output=True, text=True, env=env, timeout=120)
    last = proc.stdout.strip().splitlines()[-1:] or ["(nothing)"]
    assert proc.returncode == 0 and last == ["ok"], (
        f"conv2d(ones{x_shape}, ones{w_shape}, padding={padding!r}, algorithm={algorithm_or_auto!r}) "
        f"and its gradients: exit status {proc.returncode}, last step {last[0]!r}; stderr: {proc.stderr[-500:]}")


# ============================================================================= edge-case grid

grid = pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)


@grid
@dtypes
def test_forward_grid(case, dtype, algorithm_or_auto, rng):
    x, w, b, _ = make_data(rng, case, dtype)
    y = fastconv.conv2d(x, w, b, *case.args, algorithm=algorithm_or_auto)
    assert y.flags.c_contiguous
    check_forward(y, x, w, b, case.args, dtype)


@grid
@dtypes
def test_input_grad_grid(case, dtype, algorithm_or_auto, rng):
    x, w, _, gy = make_data(rng, case, dtype)
    gx = fastconv.conv2d_input_grad(gy, w, x.shape, *case.args, algorithm=algorithm_or_auto)
    check_input_grad(gx, gy, w, x.shape, case.args, dtype)


@grid
@dtypes
def test_weight_grad_grid(case, dtype, algorithm_or_auto, rng):
    x, w, _, gy = make_data(rng, case, dtype)
    gw = fastconv.conv2d_weight_grad(gy, x, w.shape, *case.args, algorithm=algorithm_or_auto)
    check_weight_grad(gw, gy, x, w.shape, case.args, dtype)


@grid
@dtypes
def test_backward_grid(case, dtype, algorithm_or_auto, rng):
    """conv2d_backward: all three gradients against the reference, and bitwise equal to
    conv2d_input_grad / conv2d_weight_grad (the same kernels on the same operands)."""
    x, w, _, gy = make_data(rng, case, dtype)
    gx, gw, gb = fastconv.conv2d_backward(gy, x, w, *case.args, bias=case.bias, algorithm=algorithm_or_auto)
    check_input_grad(gx, gy, w, x.shape, case.args, dtype)
    check_weight_grad(gw, gy, x, w.shape, case.args, dtype)
    if case.bias:
        check_bias_grad(gb, gy, dtype)
    else:
        assert gb is None
    gx2 = fastconv.conv2d_input_grad(gy, w, x.shape, *case.args, algorithm=algorithm_or_auto)
    gw2 = fastconv.conv2d_weight_grad(gy, x, w.shape, *case.args, algorithm=algorithm_or_auto)
    np.testing.assert_array_equal(gx, gx2)
    np.testing.assert_array_equal(gw, gw2)


# ============================================================================= NaN poisoning

def _poisoned_pass(pass_, spec, algorithm, x, w, b, gy, with_bias):
    """Run one pass with NaN-filled outputs and a 0xFF-poisoned workspace; return outputs."""
    dtype = spec.dtype
    nbytes = functional.workspace_bytes(spec, pass_, algorithm)
    buf = H.poison_workspace(nbytes)
    code = functional.ALGORITHMS[algorithm]
    if pass_ == FWD:
        out = H.nan_filled(spec.output_shape, dtype)
        y = fastconv.conv2d(x, w, b, spec.stride, ((spec.padding[0], spec.padding[1]),
                                                   (spec.padding[2], spec.padding[3])),
                            spec.dilation, spec.groups, algorithm=algorithm, out=out)
        assert y is out
        result = (y,)
    elif pass_ == BWD_DATA:
        gx = H.nan_filled(spec.input_shape, dtype)
        got = functional._input_grad(spec, code, gy, w, gx)
        assert got is gx
        result = (gx,)
    else:
        gw = H.nan_filled(spec.weight_shape, dtype)
        gb = H.nan_filled((spec.c_out,), dtype) if with_bias else None
        got_w, got_b = functional._weight_grad(spec, code, gy, x, with_bias, gw, gb)
        assert got_w is gw and got_b is gb
        result = (gw, gb)
    if buf is not None:  # the poisoned buffer is the one the call used
        assert functional._workspace.buffer is buf
    return result


@grid
@dtypes
@pytest.mark.parametrize("pass_", [FWD, BWD_DATA, BWD_WEIGHTS], ids=["fwd", "bwd_data", "bwd_weights"])
def test_poisoned_outputs_and_workspace(case, dtype, pass_, algorithm_or_auto, rng):
    x, w, b, gy = make_data(rng, case, dtype)
    spec = spec_of(case, dtype)
    res = _poisoned_pass(pass_, spec, algorithm_or_auto, x, w, b, gy, case.bias)
    if pass_ == FWD:
        check_forward(res[0], x, w, b, case.args, dtype)
    elif pass_ == BWD_DATA:
        check_input_grad(res[0], gy, w, x.shape, case.args, dtype)
    else:
        check_weight_grad(res[0], gy, x, w.shape, case.args, dtype)
        if case.bias:
            check_bias_grad(res[1], gy, dtype)
        else:
            assert res[1] is None


@dtypes
def test_poisoning_with_reused_larger_workspace(dtype, algorithm_or_auto, rng):
    """A big call leaves a large poisoned cache; a small call after it must not read the
    stale tail (the workspace is reused, not reallocated)."""
    big = Case("big", (2, 8, 12, 12), (8, 8, 5, 5), padding=2)
    small = Case("small", (1, 3, 5, 6), (5, 3, 3, 2), stride=2, padding=((1, 0), (0, 1)))
    xb, wb, bb, gyb = make_data(rng, big, dtype)
    fastconv.conv2d_backward(gyb, xb, wb, *big.args, algorithm=algorithm_or_auto)
    x, w, b, gy = make_data(rng, small, dtype)
    spec = spec_of(small, dtype)
    for pass_ in (FWD, BWD_DATA, BWD_WEIGHTS):
        buf = functional._workspace.buffer
        assert buf is not None
        buf.fill(0xFF)
        res = _poisoned_pass(pass_, spec, algorithm_or_auto, x, w, b, gy, True)
        if pass_ == FWD:
            check_forward(res[0], x, w, b, small.args, dtype)
        elif pass_ == BWD_DATA:
            check_input_grad(res[0], gy, w, x.shape, small.args, dtype)
        else:
            check_weight_grad(res[0], gy, x, w.shape, small.args, dtype)
            check_bias_grad(res[1], gy, dtype)


# ============================================================================= ISA

ISA_INDEX = {"generic": 0, "avx2": 1, "avx512": 2}

ISA_SUBSET = [c for c in CASES if c.name in (
    "basic", "1x1_stride2", "kernel_eq_padded_input", "stride_gt_kernel", "dilation_anisotropic",
    "depthwise_multiplier2", "groups3_stride_dilation", "many_channels", "wide_rows",
    "asym_padding", "same_s3", "valid")]


@pytest.mark.parametrize("case", ISA_SUBSET, ids=[c.name for c in ISA_SUBSET])
@dtypes
def test_every_pass_under_each_isa(isa, case, dtype, algorithm_or_auto, rng):
    x, w, b, gy = make_data(rng, case, dtype)
    spec = spec_of(case, dtype)
    assert fastconv._core.active_isa() == ISA_INDEX[isa]
    for pass_ in (FWD, BWD_DATA, BWD_WEIGHTS):
        res = _poisoned_pass(pass_, spec, algorithm_or_auto, x, w, b, gy, case.bias)
        what = f"{isa}:{pass_}"
        if pass_ == FWD:
            check_forward(res[0], x, w, b, case.args, dtype, what=what)
        elif pass_ == BWD_DATA:
            check_input_grad(res[0], gy, w, x.shape, case.args, dtype, what=what)
        else:
            check_weight_grad(res[0], gy, x, w.shape, case.args, dtype, what=what)
            if case.bias:
                check_bias_grad(res[1], gy, dtype, what=what)


# ============================================================================= hypothesis

@st.composite
def conv_configs(draw):
    """A random valid convolution problem: shapes, stride, padding (every accepted form),
    dilation, groups and whether there is a bias."""
    n = draw(st.integers(1, 2))
    groups = draw(st.integers(1, 3))
    cg = draw(st.integers(1, 3))
    kg = draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    kind = draw(st.sampled_from(["int", "pair", "explicit", "same", "valid"]))
    if kind == "int":
        p = draw(st.integers(0, 2))
        padding, pads = p, (p, p, p, p)
    elif kind == "pair":
        ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
        padding, pads = (ph, pw), (ph, ph, pw, pw)
    elif kind == "explicit":
        pads = tuple(draw(st.integers(0, 3)) for _ in range(4))
        padding = ((pads[0], pads[1]), (pads[2], pads[3]))
    else:
        padding, pads = kind, (0, 0, 0, 0)  # "same" fits any size; only its minimum matters
    eff_h, eff_w = (kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1
    min_h = 1 if kind == "same" else max(1, eff_h - pads[0] - pads[1])
    min_w = 1 if kind == "same" else max(1, eff_w - pads[2] - pads[3])
    h = draw(st.integers(min_h, min_h + 7))
    w = draw(st.integers(min_w, min_w + 7))
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    return Case("hypothesis", (n, groups * cg, h, w), (groups * kg, cg, kh, kw), stride, padding,
                dilation, groups, bias), seed


@given(cfg=conv_configs())
def test_random_configurations(cfg, algorithm_or_auto):
    case, seed = cfg
    rng = np.random.default_rng(seed)
    for dtype in DTYPES:
        x, w, b, gy = make_data(rng, case, dtype)
        out = H.nan_filled(gy.shape, dtype)
        y = fastconv.conv2d(x, w, b, *case.args, algorithm=algorithm_or_auto, out=out)
        assert y is out
        check_forward(y, x, w, b, case.args, dtype)
        gx, gw, gb = fastconv.conv2d_backward(gy, x, w, *case.args, bias=case.bias,
                                              algorithm=algorithm_or_auto)
        check_input_grad(gx, gy, w, x.shape, case.args, dtype)
        check_weight_grad(gw, gy, x, w.shape, case.args, dtype)
        if case.bias:
            check_bias_grad(gb, gy, dtype)
        else:
            assert gb is None


@given(cfg=conv_configs())
def test_random_configurations_poisoned(cfg, algorithm_or_auto):
    case, seed = cfg
    rng = np.random.default_rng(seed)
    dtype = np.float32 if seed % 2 else np.float64
    x, w, b, gy = make_data(rng, case, dtype)
    spec = spec_of(case, dtype)
    (gx,) = _poisoned_pass(BWD_DATA, spec, algorithm_or_auto, x, w, b, gy, case.bias)
    check_input_grad(gx, gy, w, x.shape, case.args, dtype)
    gw, gb = _poisoned_pass(BWD_WEIGHTS, spec, algorithm_or_auto, x, w, b, gy, case.bias)
    check_weight_grad(gw, gy, x, w.shape, case.args, dtype)
    if case.bias:
        check_bias_grad(gb, gy, dtype)


# ============================================================================= real networks

NETWORK_LAYERS = [
    # Keras MNIST CNN: Conv2D(32, 3, relu) on 28x28x1, MaxPool, Conv2D(64, 3, relu) on 13x13x32.
    Case("mnist_conv1", (2, 1, 28, 28), (32, 1, 3, 3), padding="valid"),
    Case("mnist_conv2", (2, 32, 13, 13), (64, 32, 3, 3), padding="valid"),
    # ResNet: 7x7 stride-2 stem, a 3x3 basic-block conv, bottleneck 1x1s, stride-2 1x1 shortcut.
    Case("resnet_stem_7x7_s2", (1, 3, 32, 32), (64, 3, 7, 7), stride=2, padding=3, bias=False),
    Case("resnet_3x3", (2, 64, 8, 8), (64, 64, 3, 3), padding=1, bias=False),
    Case("resnet_1x1_reduce", (2, 256, 6, 6), (64, 256, 1, 1), bias=False),
    Case("resnet_1x1_expand", (2, 64, 6, 6), (256, 64, 1, 1), bias=False),
    Case("resnet_1x1_s2_shortcut", (2, 64, 8, 8), (128, 64, 1, 1), stride=2, bias=False),
    # MobileNet: depthwise 3x3 stride 2 (Keras pads ((0,1),(0,1)) then "valid"; also "same").
    Case("mobilenet_dw_s2_keras_pad", (2, 32, 16, 16), (32, 1, 3, 3), stride=2,
         padding=((0, 1), (0, 1)), groups=32, bias=False),
    Case("mobilenet_dw_s2_same", (2, 32, 15, 15), (32, 1, 3, 3), stride=2, padding="same",
         groups=32, bias=False),
    Case("mobilenet_dw_s1", (2, 64, 8, 8), (64, 1, 3, 3), padding=1, groups=64, bias=False),
    Case("mobilenet_pw", (2, 32, 8, 8), (64, 32, 1, 1), bias=False),
]


@pytest.mark.parametrize("case", NETWORK_LAYERS, ids=[c.name for c in NETWORK_LAYERS])
@dtypes
def test_network_layers(case, dtype, algorithm_or_auto, rng):
    x, w, b, gy = make_data(rng, case, dtype)
    spec = spec_of(case, dtype)
    y = fastconv.conv2d(x, w, b, *case.args, algorithm=algorithm_or_auto)
    check_forward(y, x, w, b, case.args, dtype)
    gx, gw, gb = fastconv.conv2d_backward(gy, x, w, *case.args, bias=case.bias, algorithm=algorithm_or_auto)
    check_input_grad(gx, gy, w, x.shape, case.args, dtype)
    check_weight_grad(gw, gy, x, w.shape, case.args, dtype)
    if case.bias:
        check_bias_grad(gb, gy, dtype)
    else:
        assert gb is None
    # Poisoned output and workspace, padding given in its explicit form: the same bits.
    (yp,) = _poisoned_pass(FWD, spec, algorithm_or_auto, x, w, b, gy, case.bias)
    np.testing.assert_array_equal(yp, y)


# ============================================================================= large: tiling

# The im2col path lowers a tile of output rows at a time within a fixed byte budget
# (several MiB); these problems are large enough to need several tiles per image (with a
# partial last tile), in both its one-image-per-thread and its whole-team modes.
TILED = [
    Case("tiled_batch1", (1, 128, 48, 48), (4, 128, 3, 3), padding=1),
    Case("tiled_batch3_stride", (3, 128, 49, 47), (5, 128, 3, 3), stride=(1, 2), padding=((1, 0), (2, 1))),
]


@pytest.mark.parametrize("case", TILED, ids=[c.name for c in TILED])
@dtypes
def test_problems_needing_several_tiles(case, dtype, algorithm_or_auto, rng):
    x, w, b, gy = make_data(rng, case, dtype)
    spec = spec_of(case, dtype)
    with fastconv.threads(2):
        for pass_ in (FWD, BWD_DATA, BWD_WEIGHTS):
            res = _poisoned_pass(pass_, spec, algorithm_or_auto, x, w, b, gy, case.bias)
            if pass_ == FWD:
                check_forward(res[0], x, w, b, case.args, dtype)
            elif pass_ == BWD_DATA:
                check_input_grad(res[0], gy, w, x.shape, case.args, dtype)
            else:
                check_weight_grad(res[0], gy, x, w.shape, case.args, dtype)
                check_bias_grad(res[1], gy, dtype)


# ============================================================================= out=

@dtypes
def test_out_is_written_and_returned(dtype, algorithm_or_auto, rng):
    case = Case("out", (2, 3, 6, 7), (4, 3, 3, 2), stride=(2, 1), padding=((1, 0), (0, 1)))
    x, w, b, gy = make_data(rng, case, dtype)
    out = H.nan_filled(gy.shape, dtype)
    y = fastconv.conv2d(x, w, b, *case.args, algorithm=algorithm_or_auto, out=out)
    assert y is out
    check_forward(out, x, w, b, case.args, dtype)
    # Writing into the same out again (now holding old values) overwrites, not accumulates.
    y2 = fastconv.conv2d(x, w, b, *case.args, algorithm=algorithm_or_auto, out=out)
    assert y2 is out
    check_forward(out, x, w, b, case.args, dtype)
    np.testing.assert_array_equal(out, fastconv.conv2d(x, w, b, *case.args, algorithm=algorithm_or_auto))


def test_out_with_promoted_dtype(rng):
    x = rng.integers(-3, 4, size=(1, 2, 5, 5))
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    out = H.nan_filled((1, 3, 3, 3), np.float64)
    y = fastconv.conv2d(x, w, out=out)
    assert y is out
    check_forward(out, x, w, None, (1, 0, 1, 1), np.float64)


# ============================================================================= empty problems

@dtypes
def test_batch_of_zero(dtype, algorithm_or_auto):
    x = np.zeros((0, 4, 6, 5), dtype)
    w = np.ones((6, 2, 3, 2), dtype)
    b = np.ones(6, dtype)
    y = fastconv.conv2d(x, w, b, 1, 1, 1, 2, algorithm=algorithm_or_auto)
    assert y.shape == (0, 6, 6, 6) and y.dtype == dtype
    gy = np.zeros((0, 6, 6, 6), dtype)
    gx, gw, gb = fastconv.conv2d_backward(gy, x, w, 1, 1, 1, 2, algorithm=algorithm_or_auto)
    assert gx.shape == (0, 4, 6, 5) and gx.dtype == dtype
    assert gw.shape == (6, 2, 3, 2) and gw.dtype == dtype
    np.testing.assert_array_equal(gw, np.zeros((6, 2, 3, 2)))
    assert gb.shape == (6,) and gb.dtype == dtype
    np.testing.assert_array_equal(gb, np.zeros(6))
    gw2 = fastconv.conv2d_weight_grad(gy, x, (6, 2, 3, 2), 1, 1, 1, 2, algorithm=algorithm_or_auto)
    np.testing.assert_array_equal(gw2, np.zeros((6, 2, 3, 2)))
    gx2 = fastconv.conv2d_input_grad(gy, w, (0, 4, 6, 5), 1, 1, 1, 2, algorithm=algorithm_or_auto)
    assert gx2.shape == (0, 4, 6, 5)
    # Poisoned outputs of the private hooks are zeroed for an empty problem.
    spec = make_spec((0, 4, 6, 5), (6, 2, 3, 2), 1, 1, 1, 2, np.dtype(dtype))
    pw, pb = H.nan_filled((6, 2, 3, 2), dtype), H.nan_filled((6,), dtype)
    functional._weight_grad(spec, functional.ALGORITHMS[algorithm_or_auto], gy, x, True, pw, pb)
    np.testing.assert_array_equal(pw, np.zeros((6, 2, 3, 2)))
    np.testing.assert_array_equal(pb, np.zeros(6))


@dtypes
def test_zero_output_channels(dtype, algorithm_or_auto):
    x = np.ones((2, 3, 5, 5), dtype)
    w = np.zeros((0, 3, 3, 3), dtype)
    b = np.zeros(0, dtype)
    y = fastconv.conv2d(x, w, b, padding="same", algorithm=algorithm_or_auto)
    assert y.shape == (2, 0, 5, 5) and y.dtype == dtype
    out = np.empty((2, 0, 5, 5), dtype)
    assert fastconv.conv2d(x, w, out=out, padding="same", algorithm=algorithm_or_auto) is out
    gy = np.zeros((2, 0, 5, 5), dtype)
    gx, gw, gb = fastconv.conv2d_backward(gy, x, w, padding="same", algorithm=algorithm_or_auto)
    assert gx.shape == (2, 3, 5, 5) and gx.dtype == dtype
    np.testing.assert_array_equal(gx, np.zeros((2, 3, 5, 5)))  # no output depends on x
    assert gw.shape == (0, 3, 3, 3) and gb.shape == (0,)
    gx2 = fastconv.conv2d_input_grad(gy, w, (2, 3, 5, 5), padding="same", algorithm=algorithm_or_auto)
    np.testing.assert_array_equal(gx2, np.zeros((2, 3, 5, 5)))
    spec = make_spec((2, 3, 5, 5), (0, 3, 3, 3), 1, "same", 1, 1, np.dtype(dtype))
    pgx = H.nan_filled((2, 3, 5, 5), dtype)
    functional._input_grad(spec, functional.ALGORITHMS[algorithm_or_auto], gy, w, pgx)
    np.testing.assert_array_equal(pgx, np.zeros((2, 3, 5, 5)))


# ============================================================================= dtypes

PROMOTIONS = [
    # (x dtype, w dtype, bias dtype or None, expected result dtype)
    ("float32", "float32", "float32", np.float32),
    ("float32", "float32", None, np.float32),
    ("float64", "float64", "float64", np.float64),
    ("float32", "float64", None, np.float64),
    ("float64", "float32", "float32", np.float64),
    ("float32", "float32", "float64", np.float64),
    ("int64", "int64", None, np.float64),
    ("int32", "float32", None, np.float64),
    ("float32", "int8", "int16", np.float64),
    ("uint8", "float64", None, np.float64),
    ("bool", "bool", None, np.float64),
    ("bool", "float32", "bool", np.float64),
]


def _values(rng, shape, dt):
    dt = np.dtype(dt)
    if dt.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    if dt.kind in "iu":
        return rng.integers(0 if dt.kind == "u" else -3, 4, size=shape).astype(dt)
    return rng.standard_normal(shape).astype(dt)


@pytest.mark.parametrize("xd,wd,bd,expected", PROMOTIONS, ids=[f"{a}-{b}-{c}" for a, b, c, _ in PROMOTIONS])
def test_dtype_promotion_forward(xd, wd, bd, expected, algorithm_or_auto, rng):
    args = (2, ((1, 0), (0, 1)), 1, 1)
    x = _values(rng, (2, 2, 6, 5), xd)
    w = _values(rng, (3, 2, 3, 2), wd)
    b = None if bd is None else _values(rng, (3,), bd)
    y = fastconv.conv2d(x, w, b, *args, algorithm=algorithm_or_auto)
    assert y.dtype == expected
    check_forward(y, x, w, b, args, expected)


@pytest.mark.parametrize("gd,xd,wd,expected", [
    ("float32", "float32", "float32", np.float32),
    ("float64", "float32", "float32", np.float64),
    ("float32", "int64", "float32", np.float64),
    ("int32", "int32", "bool", np.float64),
])
def test_dtype_promotion_gradients(gd, xd, wd, expected, algorithm_or_auto, rng):
    args = (1, 1, 1, 1)
    x = _values(rng, (2, 2, 5, 4), xd)
    w = _values(rng, (3, 2, 3, 3), wd)
    gy = _values(rng, (2, 3, 5, 4), gd)
    gx, gw, gb = fastconv.conv2d_backward(gy, x, w, *args, algorithm=algorithm_or_auto)
    assert gx.dtype == gw.dtype == gb.dtype == expected
    check_input_grad(gx, gy, w, x.shape, args, expected)
    check_weight_grad(gw, gy, x, w.shape, args, expected)
    check_bias_grad(gb, gy, expected)
    gx1 = fastconv.conv2d_input_grad(gy, w, x.shape, *args, algorithm=algorithm_or_auto)
    assert gx1.dtype == np.result_type(np.float32 if gd == wd == "float32" else np.float64)
    check_input_grad(gx1, gy, w, x.shape, args, gx1.dtype)
    gw1 = fastconv.conv2d_weight_grad(gy, x, w.shape, *args, algorithm=algorithm_or_auto)
    assert gw1.dtype == np.result_type(np.float32 if gd == xd == "float32" else np.float64)
    check_weight_grad(gw1, gy, x, w.shape, args, gw1.dtype)


def test_array_likes_are_accepted(rng):
    x = rng.integers(-2, 3, size=(1, 1, 4, 4))
    w = rng.integers(-2, 3, size=(2, 1, 2, 2))
    y = fastconv.conv2d(x.tolist(), w.tolist(), [1, -1])
    assert y.dtype == np.float64
    check_forward(y, x, w, np.array([1, -1]), (1, 0, 1, 1), np.float64)


# ============================================================================= memory layouts

LAYOUT_CASE = Case("layouts", (2, 4, 7, 6), (6, 2, 3, 3), stride=(1, 2), padding=((1, 0), (2, 1)),
                   groups=2)


@pytest.mark.parametrize("name", H.LAYOUT_NAMES)
@dtypes
def test_memory_layouts_give_the_contiguous_result(name, dtype, algorithm_or_auto, rng):
    case, algo = LAYOUT_CASE, algorithm_or_auto
    x, w, b, gy = make_data(rng, case, dtype)
    y0 = fastconv.conv2d(x, w, b, *case.args, algorithm=algo)
    check_forward(y0, x, w, b, case.args, dtype)
    gx0, gw0, gb0 = fastconv.conv2d_backward(gy, x, w, *case.args, algorithm=algo)
    check_input_grad(gx0, gy, w, x.shape, case.args, dtype)
    check_weight_grad(gw0, gy, x, w.shape, case.args, dtype)

    lx, lw, lb, lgy = (H.layout(a, name) for a in (x, w, b, gy))
    for label, args in (("x", (lx, w, b)), ("weight", (x, lw, b)), ("bias", (x, w, lb)), ("all", (lx, lw, lb))):
        y = fastconv.conv2d(*args, *case.args, algorithm=algo)
        assert y.dtype == dtype and y.flags.c_contiguous
        np.testing.assert_array_equal(y, y0, err_msg=f"conv2d with {label} {name}")
    for label, args in (("grad_output", (lgy, x, w)), ("x", (gy, lx, w)), ("weight", (gy, x, lw)),
                        ("all", (lgy, lx, lw))):
        gx, gw, gb = fastconv.conv2d_backward(*args, *case.args, algorithm=algo)
        np.testing.assert_array_equal(gx, gx0, err_msg=f"grad_x with {label} {name}")
        np.testing.assert_array_equal(gw, gw0, err_msg=f"grad_weight with {label} {name}")
        np.testing.assert_array_equal(gb, gb0, err_msg=f"grad_bias with {label} {name}")
    np.testing.assert_array_equal(fastconv.conv2d_input_grad(lgy, lw, x.shape, *case.args, algorithm=algo), gx0)
    np.testing.assert_array_equal(fastconv.conv2d_weight_grad(lgy, lx, w.shape, *case.args, algorithm=algo), gw0)


def test_inputs_are_not_modified(rng):
    x, w, b, gy = make_data(rng, LAYOUT_CASE, np.float64)
    copies = [a.copy() for a in (x, w, b, gy)]
    fastconv.conv2d(x, w, b, *LAYOUT_CASE.args)
    fastconv.conv2d_backward(gy, x, w, *LAYOUT_CASE.args)
    fastconv.conv2d_input_grad(gy, w, x.shape, *LAYOUT_CASE.args)
    fastconv.conv2d_weight_grad(gy, x, w.shape, *LAYOUT_CASE.args)
    for a, c in zip((x, w, b, gy), copies):
        np.testing.assert_array_equal(a, c)


# ============================================================================= padding forms

def test_padding_forms_agree(algorithm_or_auto, rng):
    """int, pair and explicit forms of the same padding, and "valid" == 0, give one result;
    "same" matches TF/Keras's padding computed by hand."""
    x = rng.standard_normal((1, 2, 7, 8))
    w = rng.standard_normal((3, 2, 3, 4))
    a = algorithm_or_auto
    y_int = fastconv.conv2d(x, w, padding=1, algorithm=a)
    np.testing.assert_array_equal(fastconv.conv2d(x, w, padding=(1, 1), algorithm=a), y_int)
    np.testing.assert_array_equal(fastconv.conv2d(x, w, padding=((1, 1), (1, 1)), algorithm=a), y_int)
    np.testing.assert_array_equal(fastconv.conv2d(x, w, padding=[[1, 1], [1, 1]], algorithm=a), y_int)
    np.testing.assert_array_equal(fastconv.conv2d(x, w, padding=np.int64(1), algorithm=a), y_int)
    np.testing.assert_array_equal(fastconv.conv2d(x, w, padding="valid", algorithm=a),
                                  fastconv.conv2d(x, w, padding=0, algorithm=a))
    # TF "same", stride 2 on 7x8 with a 3x4 kernel: out 4x4; total pad rows (4-1)*2+3-7 = 2
    # -> (1, 1); cols (4-1)*2+4-8 = 2 -> (1, 1).
    y_same = fastconv.conv2d(x, w, stride=2, padding="same", algorithm=a)
    assert y_same.shape == (1, 3, 4, 4)
    np.testing.assert_array_equal(y_same, fastconv.conv2d(x, w, stride=2, padding=((1, 1), (1, 1)), algorithm=a))
    # stride 3 on 7x8 with 3x4: out 3x3; rows (3-1)*3+3-7 = 2 -> (1,1); cols (3-1)*3+4-8 = 2 -> (1,1)
    # stride 1 with the 3x4 kernel: rows 2 -> (1,1); cols 3 -> (1,2): the odd pixel right.
    y_same1 = fastconv.conv2d(x, w, padding="same", algorithm=a)
    assert y_same1.shape == (1, 3, 7, 8)
    np.testing.assert_array_equal(y_same1, fastconv.conv2d(x, w, padding=((1, 1), (1, 2)), algorithm=a))
    # stride 2 on 8 columns with a 1-wide kernel: total pad max((4-1)*2+1-8, 0) = 0.
    y_s2k1 = fastconv.conv2d(x, w[:, :, :1, :1].copy(), stride=2, padding="same", algorithm=a)
    assert y_s2k1.shape == (1, 3, 4, 4)
    np.testing.assert_array_equal(y_s2k1, fastconv.conv2d(x, w[:, :, :1, :1].copy(), stride=2, padding=0,
                                                          algorithm=a))
