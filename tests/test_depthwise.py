"""Depthwise convolution (groups == C_in, C_out = multiplier * C_in) through ``"auto"``.

``"auto"`` hands every problem with one input channel per group to the specialised
kernels of ``csrc/depthwise*.c`` (but for one input channel feeding 16 or more outputs: the
forward, and the input gradient at a stride, are GEMMs); these tests check that it does, and
check those kernels
for every pass against ``fastconv.reference`` (the bound of docs/architecture.md,
``|y - y_ref| <= c * eps * sum |x||w|``), with outputs poisoned with NaN and the
workspace with 0xFF bytes, under every ISA, and bitwise equal for 1 and 2 threads.

The cases cover the kernels' special paths: 3x3 / 5x5 / 7x7 at stride 1 and 2 (the
register-tiled instances), other kernels, strides and dilations (the general instance),
row widths around the vector widths (1, 3, 17, 33: partial and overlapping column
vectors), padding wider than the kernel and asymmetric padding (negative padding in the
rotated input gradient), multipliers above 16 (the input gradient summed in several
passes), planes split into several bands, the weight gradient split into several batch
chunks, and outputs large enough to be written with streaming stores.
"""
from __future__ import annotations

import subprocess
import sys
from typing import NamedTuple, Optional, Tuple

import numpy as np
import pytest

import fastconv
from fastconv import _core
from fastconv import functional as F
from fastconv._spec import make_spec
import helpers as H
from helpers import (assert_close_to_reference, nan_filled, poison_workspace, ref_bias_grad,
                     ref_forward, ref_input_grad, ref_weight_grad)

FWD, BWD_DATA, BWD_WEIGHTS = 0, 1, 2
PASSES = (FWD, BWD_DATA, BWD_WEIGHTS)
AUTO = 0
DEPTHWISE = F._algorithm_code("depthwise")
DTYPES = [np.float32, np.float64]
dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])


class DW(NamedTuple):
    name: str
    n: int
    c: int
    h: int
    w: int
    mult: int
    k: Tuple[int, int]
    stride: object = 1
    padding: object = 0
    dilation: object = 1
    bias: bool = True

    @property
    def x_shape(self):
        return (self.n, self.c, self.h, self.w)

    @property
    def w_shape(self):
        return (self.c * self.mult, 1, *self.k)

    @property
    def args(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.c)


CASES = [
    DW("k3_s1", 2, 3, 8, 8, 1, (3, 3), 1, 1),
    DW("k3_s1_mobilenet", 1, 4, 14, 14, 1, (3, 3), 1, 1),
    DW("k3_s2_mobilenet", 1, 4, 14, 14, 1, (3, 3), 2, 1),
    DW("k3_s2_mult2_w33", 1, 2, 17, 33, 2, (3, 3), 2, 1),
    DW("k3_w1", 2, 2, 7, 1, 1, (3, 1), 1, (1, 0)),
    DW("k3_w3", 1, 3, 5, 3, 1, (3, 3), 1, 1, bias=False),
    DW("k5_w17", 2, 2, 9, 17, 1, (5, 5), 1, 2),
    DW("k5_s2_w3", 2, 2, 13, 3, 1, (5, 5), 2, 2),
    DW("k7_w19_mult2", 1, 3, 20, 19, 2, (7, 7), 1, 3),
    DW("k1", 1, 4, 6, 33, 1, (1, 1)),
    DW("k2x4_asym_mult3", 1, 1, 6, 5, 3, (2, 4), (1, 2), ((0, 2), (1, 3)), (2, 1)),
    DW("k3_s3", 1, 2, 11, 12, 1, (3, 3), 3, 1),
    DW("k3_dil2", 1, 2, 15, 16, 1, (3, 3), 1, 2, 2),
    DW("k3_pad_gt_kernel", 1, 2, 6, 7, 1, (3, 3), 1, 4),
    DW("k3_same_s1", 1, 2, 9, 9, 1, (3, 3), 1, "same"),
    DW("k4_same_s2", 1, 2, 9, 10, 1, (4, 4), 2, "same"),
    DW("k3_same_s3", 1, 2, 10, 11, 1, (3, 3), 3, "same"),
    DW("k3_valid_cin1_mult8", 3, 1, 28, 28, 8, (3, 3), 1, "valid"),
    DW("k3_mult20", 1, 2, 9, 9, 20, (3, 3), 1, 1),
    # bwd_weights blocks of 4 outputs per item: pairs, then a single (5 = 4 + 1, 3 = 2 + 1);
    # rows wider than a vector and bands taller than the band budget
    DW("k3_mult5_bands", 2, 2, 40, 37, 5, (3, 3), 1, 1),
    DW("k3_s2_mult3_w40", 2, 1, 23, 40, 3, (3, 3), 2, 1),
    DW("k3_1x1_image", 1, 3, 1, 1, 1, (3, 3), 1, 1),
    DW("k3_bands_chunks", 2, 2, 70, 300, 1, (3, 3), 1, 1),
    DW("k5_s2_bands", 1, 2, 61, 250, 1, (5, 5), 2, 2),
]
IDS = [c.name for c in CASES]


def make_data(rng, case: DW, dtype):
    spec = make_spec(case.x_shape, case.w_shape, case.stride, case.padding, case.dilation,
                     case.c, np.dtype(dtype))
    x = rng.standard_normal(case.x_shape).astype(dtype)
    w = rng.standard_normal(case.w_shape).astype(dtype)
    b = rng.standard_normal(case.c * case.mult).astype(dtype) if case.bias else None
    gy = rng.standard_normal(spec.output_shape).astype(dtype)
    return spec, x, w, b, gy


def run_pass(pass_, spec, x, w, b, gy, with_bias: bool, poison: bool = True):
    """One pass through "auto" into NaN-filled outputs (and a 0xFF-filled workspace)."""
    if poison:
        poison_workspace(F.workspace_bytes(spec, pass_))
    if pass_ == FWD:
        out = nan_filled(spec.output_shape, spec.dtype)
        y = fastconv.conv2d(x, w, b, spec.stride, spec_padding(spec), spec.dilation, spec.groups,
                            out=out)
        assert y is out
        return (y,)
    if pass_ == BWD_DATA:
        return (F._input_grad(spec, AUTO, gy, w, gx=nan_filled(spec.input_shape, spec.dtype)),)
    gw = nan_filled(spec.weight_shape, spec.dtype)
    gb = nan_filled((spec.c_out,), spec.dtype) if with_bias else None
    return F._weight_grad(spec, AUTO, gy, x, with_bias, gw=gw, gb=gb)


def spec_padding(spec):
    top, bottom, left, right = spec.padding
    return ((top, bottom), (left, right))


def check_pass(pass_, res, case: DW, x, w, b, gy, dtype, what=""):
    args = (case.stride, case.padding, case.dilation, case.c)
    if pass_ == FWD:
        exp, bound = ref_forward(x, w, b, *args)
        assert_close_to_reference(res[0], exp, bound, dtype, what=f"{what}y")
    elif pass_ == BWD_DATA:
        exp, bound = ref_input_grad(gy, w, x.shape, *args)
        assert_close_to_reference(res[0], exp, bound, dtype, what=f"{what}grad_x")
    else:
        exp, bound = ref_weight_grad(gy, x, w.shape, *args)
        assert_close_to_reference(res[0], exp, bound, dtype, what=f"{what}grad_w")
        if case.bias:
            exp, bound = ref_bias_grad(gy)
            assert_close_to_reference(res[1], exp, bound, dtype, what=f"{what}grad_b")
        else:
            assert res[1] is None


# ============================================================================= choice

@pytest.mark.parametrize("case", CASES[:4], ids=IDS[:4])
def test_auto_chooses_depthwise(case):
    spec = make_spec(case.x_shape, case.w_shape, case.stride, case.padding, case.dilation,
                     case.c, np.dtype(np.float32))
    for pass_ in PASSES:
        assert F.chosen_algorithm(spec, pass_) == "depthwise"


def test_one_input_channel_to_many_outputs_is_a_gemm_forward():
    spec = make_spec((64, 1, 28, 28), (32, 1, 3, 3), 1, 0, 1, 1, np.dtype(np.float32))
    assert F.chosen_algorithm(spec, FWD) != "depthwise"
    assert F.chosen_algorithm(spec, BWD_DATA) == "depthwise"
    # its weight gradient runs on direct's pixel-vector kernel where there is one (AVX2,
    # AVX-512: test_direct_pixels.py), else on depthwise
    want = "direct" if _core.active_isa() >= 1 else "depthwise"
    assert F.chosen_algorithm(spec, BWD_WEIGHTS) == want


@pytest.mark.parametrize("stride", [2, 3, (1, 2)], ids=["s2", "s3", "s1x2"])
@dtypes
def test_one_input_channel_strided_input_gradient_is_explicit_im2col(stride, dtype, rng):
    """One input channel feeding 16 or more outputs at a stride: its input gradient runs on
    explicit im2col (depthwise scattered each grad_y plane back through the stride, 2-7x
    slower), right against the reference; at stride 1, and with fewer outputs, depthwise
    keeps it, and it keeps the weight gradient."""
    case = DW("cin1_strided", 3, 1, 23, 30, 16, (3, 3), stride, 1)
    spec, x, w, b, gy = make_data(rng, case, dtype)
    assert F.chosen_implementation(spec, BWD_DATA) == "im2col_explicit"
    check_pass(BWD_DATA, run_pass(BWD_DATA, spec, x, w, b, gy, True), case, x, w, b, gy, dtype)
    assert F.chosen_algorithm(spec, BWD_WEIGHTS) == "depthwise"
    few = make_spec(case.x_shape, (8, 1, 3, 3), stride, 1, 1, 1, np.dtype(dtype))
    assert F.chosen_algorithm(few, BWD_DATA) == "depthwise"
    unit = make_spec(case.x_shape, case.w_shape, 1, 1, 1, 1, np.dtype(dtype))
    assert F.chosen_algorithm(unit, BWD_DATA) == "depthwise"


def test_grouped_but_not_depthwise_is_not_depthwise():
    spec = make_spec((1, 4, 8, 8), (4, 2, 3, 3), 1, 1, 1, 2, np.dtype(np.float32))
    for pass_ in PASSES:
        assert F.chosen_algorithm(spec, pass_) != "depthwise"


def test_pathological_width_goes_to_the_general_algorithms(rng):
    """A 6-million-pixel-wide output row of a 1-row image: a band buffer would break the
    memory bound, so "auto" declines depthwise, and the result is still right."""
    case = DW("wide_pad", 1, 2, 1, 1, 1, (1, 1), 1, ((0, 0), (3_000_000, 3_000_000)))
    spec, x, w, b, gy = make_data(rng, case, np.float32)
    for pass_ in (FWD, BWD_WEIGHTS):  # (bwd_data's band rows are 1 pixel wide: accepted)
        assert F.chosen_algorithm(spec, pass_) != "depthwise"
    for pass_ in PASSES:
        check_pass(pass_, run_pass(pass_, spec, x, w, b, gy, True, poison=False), case, x, w, b,
                   gy, np.float32)


# ============================================================================= correctness

@pytest.mark.parametrize("case", CASES, ids=IDS)
@dtypes
def test_every_pass_against_reference(case, dtype, rng):
    spec, x, w, b, gy = make_data(rng, case, dtype)
    for pass_ in PASSES:
        res = run_pass(pass_, spec, x, w, b, gy, case.bias)
        check_pass(pass_, res, case, x, w, b, gy, dtype)


def test_public_backward_matches_reference(rng):
    case = CASES[3]
    spec, x, w, b, gy = make_data(rng, case, np.float32)
    gx, gw, gb = fastconv.conv2d_backward(gy, x, w, **case.args, bias=True)
    check_pass(BWD_DATA, (gx,), case, x, w, b, gy, np.float32)
    check_pass(BWD_WEIGHTS, (gw, gb), case, x, w, b, gy, np.float32)


ISA_CASES = [c for c in CASES if c.name in (
    "k3_s1", "k3_s2_mult2_w33", "k3_w1", "k5_w17", "k5_s2_w3", "k7_w19_mult2",
    "k2x4_asym_mult3", "k3_dil2", "k3_mult20", "k3_pad_gt_kernel")]


@pytest.mark.parametrize("case", ISA_CASES, ids=[c.name for c in ISA_CASES])
@dtypes
def test_every_pass_under_each_isa(isa, case, dtype, rng):
    spec, x, w, b, gy = make_data(rng, case, dtype)
    for pass_ in PASSES:
        res = run_pass(pass_, spec, x, w, b, gy, case.bias)
        check_pass(pass_, res, case, x, w, b, gy, dtype, what=f"{isa}: ")


# ============================================================================= NaN / inf

SPECIAL_CASES = [c for c in CASES if c.name in (
    "k3_s1", "k3_s2_mult2_w33", "k3_w3", "k5_s2_w3", "k7_w19_mult2", "k2x4_asym_mult3",
    "k3_valid_cin1_mult8")]


def with_specials(rng, a, count=3):
    a = a.copy()
    flat = a.reshape(-1)
    idx = rng.integers(0, flat.size, size=count)
    flat[idx] = rng.choice(np.array([np.nan, np.inf, -np.inf], dtype=a.dtype), size=count)
    return a


def assert_same_nonfinite(actual, expected, bound, dtype, what):
    """NaN and +-inf exactly where the reference has them; finite elements within the bound."""
    a = np.asarray(actual, np.float64)
    bad = ((np.isnan(a) != np.isnan(expected)) | (np.isinf(a) != np.isinf(expected))
           | (np.isinf(a) & np.isinf(expected) & (np.sign(a) != np.sign(expected))))
    assert not bad.any(), (f"{what}: NaN/inf differ from the reference at {int(bad.sum())} places, "
                           f"first {tuple(np.argwhere(bad)[0])}")
    fin = np.isfinite(expected)
    err = np.abs(np.where(fin, a, 0) - np.where(fin, expected, 0))
    assert (err <= 16 * np.finfo(dtype).eps * np.where(fin, bound, 0)).all(), what


@pytest.mark.parametrize("case", SPECIAL_CASES, ids=[c.name for c in SPECIAL_CASES])
@pytest.mark.parametrize("where", ["x", "w", "gy"])
@dtypes
def test_nan_and_inf_land_where_the_reference_puts_them(case, where, dtype, rng):
    """Padding zeros multiply like the reference's (0 * inf = NaN in the forward pass and
    the weight gradient, where the reference pads x), and no kernel adds a product the
    reference does not have (a masked lane, an upsampling zero times an infinite weight)."""
    spec, x, w, b, gy = make_data(rng, case, dtype)
    if where == "x":
        x = with_specials(rng, x)
    elif where == "w":
        w = with_specials(rng, w)
    else:
        gy = with_specials(rng, gy)
    args = (case.stride, case.padding, case.dilation, case.c)
    # Straight into the C driver (algorithm="depthwise", which "auto" takes here but for one
    # input channel's weight gradient on AVX2 / AVX-512: direct's pixel-vector kernel, checked
    # in test_direct_pixels.py), past functional.py's own NaN/inf rerouting, so that it is the
    # depthwise kernels that are checked.
    for pass_ in PASSES:
        assert F.chosen_algorithm(spec, pass_, "depthwise") == "depthwise"
    y = nan_filled(spec.output_shape, dtype)
    gx = nan_filled(spec.input_shape, dtype)
    gw = nan_filled(spec.weight_shape, dtype)
    gb = nan_filled((spec.c_out,), dtype) if case.bias else None
    with np.errstate(invalid="ignore", over="ignore"):
        F._run(FWD, spec, DEPTHWISE, x, w, b, y)
        exp, bound = ref_forward(x, w, b, *args)
        assert_same_nonfinite(y, exp, bound, dtype, "y")
        F._run(BWD_DATA, spec, DEPTHWISE, gy, w, gx)
        exp, bound = ref_input_grad(gy, w, x.shape, *args)
        assert_same_nonfinite(gx, exp, bound, dtype, "grad_x")
        F._run(BWD_WEIGHTS, spec, DEPTHWISE, gy, x, gw, gb)
        exp, bound = ref_weight_grad(gy, x, w.shape, *args)
        assert_same_nonfinite(gw, exp, bound, dtype, "grad_w")
        if case.bias:
            exp, bound = ref_bias_grad(gy)
            assert_same_nonfinite(gb, exp, bound, dtype, "grad_b")


# ============================================================================= determinism

THREAD_CASES = [
    DW("k3_s1_big", 2, 8, 40, 40, 1, (3, 3), 1, 1),
    DW("k3_s2_mult2", 2, 4, 33, 35, 2, (3, 3), 2, 1),
    DW("k5_cin1_mult3_chunks", 4, 1, 60, 37, 3, (5, 5), 1, 2),
    DW("k3_dil2_bands", 1, 3, 64, 260, 1, (3, 3), 1, 2, 2),
]


@pytest.mark.parametrize("case", THREAD_CASES, ids=[c.name for c in THREAD_CASES])
@dtypes
def test_bitwise_equal_for_one_and_two_threads(case, dtype, rng):
    spec, x, w, b, gy = make_data(rng, case, dtype)
    results = {}
    for n in (1, 2):
        with fastconv.threads(n):
            results[n] = [run_pass(p, spec, x, w, b, gy, case.bias) for p in PASSES]
    for p in PASSES:
        for a1, a2 in zip(results[1][p], results[2][p]):
            assert a1.tobytes() == a2.tobytes(), f"pass {p} differs between 1 and 2 threads"
    for p in PASSES:  # and the result is right
        check_pass(p, results[2][p], case, x, w, b, gy, dtype)


def test_repeated_calls_are_bitwise_equal(rng):
    case = THREAD_CASES[0]
    spec, x, w, b, gy = make_data(rng, case, np.float32)
    for p in PASSES:
        first = run_pass(p, spec, x, w, b, gy, True)
        again = run_pass(p, spec, x, w, b, gy, True, poison=False)
        for a1, a2 in zip(first, again):
            assert a1.tobytes() == a2.tobytes()


# ============================================================================= large

STREAM_CHILD = r"""
import sys
import numpy as np
import fastconv
from fastconv import _core, functional as F
from fastconv._spec import make_spec
d = dict(np.load(sys.argv[1]))
x, w, b, gy = d["x"], d["w"], d["b"], d["gy"]
c = x.shape[1]
spec = make_spec(x.shape, w.shape, 1, 1, 1, c, x.dtype)
y = np.full(spec.output_shape, np.nan, x.dtype)
fastconv.conv2d(x, w, b, padding=1, groups=c, out=y)
gx = F.conv2d_input_grad(gy, w, x.shape, padding=1, groups=c, out=np.full(x.shape, np.nan, x.dtype))
np.savez(sys.argv[2], y=y, gx=gx, l3=_core.cpu_info()["l3"],
         ws=[F.workspace_bytes(spec, p) for p in (0, 1)])
"""


def test_streaming_stores_past_the_l3(rng, tmp_path):
    """Outputs of >= 4 MiB whose pass (input and output) exceeds half the L3 are built in
    scratch and written with streaming stores; otherwise they are stored plainly, left in
    cache. Both ways, in child processes told an L3 of 1 MiB and 1 GiB (this layer's pass
    reads and writes 8 MiB): the same bits, the reference's values, and the streaming scratch
    only where it streams."""
    dtype = np.float32
    case = DW("k3_stream", 4, 16, 128, 128, 1, (3, 3), 1, 1)
    spec, x, w, b, gy = make_data(rng, case, dtype)
    np.savez(tmp_path / "in.npz", x=x, w=w, b=b, gy=gy)
    out = {}
    for l3 in ("1M", "1024M"):
        env = H.child_env(FASTCONV_CPU_L3=l3)
        proc = subprocess.run([sys.executable, "-c", STREAM_CHILD, str(tmp_path / "in.npz"),
                               str(tmp_path / f"out_{l3}.npz")], capture_output=True, text=True,
                              env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-4000:]
        out[l3] = np.load(tmp_path / f"out_{l3}.npz")
    assert int(out["1M"]["l3"]) == 1 << 20 and int(out["1024M"]["l3"]) == 1 << 30
    # the streaming plan adds a per-thread band of scratch to the workspace
    assert all(s > p for s, p in zip(out["1M"]["ws"], out["1024M"]["ws"])), (out["1M"]["ws"], out["1024M"]["ws"])
    for name in ("y", "gx"):
        assert out["1M"][name].tobytes() == out["1024M"][name].tobytes(), name
    check_pass(FWD, (out["1M"]["y"],), case, x, w, b, gy, dtype)
    check_pass(BWD_DATA, (out["1M"]["gx"],), case, x, w, b, gy, dtype)


# ============================================================================= memory

@pytest.mark.parametrize("case", [CASES[0], CASES[8], CASES[18], THREAD_CASES[3]],
                         ids=["k3", "k7_mult2", "mult20", "bands"])
@dtypes
def test_workspace_does_not_grow_with_the_batch(case, dtype):
    shapes = [((n, *case.x_shape[1:]), case.w_shape) for n in (1, 1 << 16, 1 << 22)]
    for pass_ in PASSES:
        sizes = []
        for xs, ws in shapes:
            spec = make_spec(xs, ws, case.stride, case.padding, case.dilation, case.c, np.dtype(dtype))
            sizes.append(F.workspace_bytes(spec, pass_))
        # (a tiny batch may run on one thread, and a small output needs no streaming scratch)
        assert sizes[0] <= sizes[1] == sizes[2], (pass_, sizes)
        spec = make_spec(shapes[0][0], shapes[0][1], case.stride, case.padding, case.dilation,
                         case.c, np.dtype(dtype))
        io = (np.prod(spec.input_shape) + np.prod(spec.output_shape)) * np.dtype(dtype).itemsize
        assert sizes[2] <= max(16 << 20, io // 10), (pass_, sizes[2])
