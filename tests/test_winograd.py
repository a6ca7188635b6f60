"""Winograd F(m x m, 3 x 3), m = 2, 4, 6 (csrc/winograd/): algorithm="winograd" (tile by
rule) and "winograd_f2", "winograd_f4", "winograd_f6".

Checked against ``fastconv.reference`` with Winograd's own documented bound (see
docs/architecture.md, "Winograd's error"): the transforms mix a tile's pixels, so the error
of one output is bounded by its tile's terms, not its own window's; the tests therefore
apply the bound normwise over each result,

    max |result - reference| <= C_m * eps(dtype) * max(sum |x| |w|)

with C_2 = 16 (the suite's DEFAULT_C), C_4 = 128, C_6 = 512: 6-15x above the largest
ratios measured over random problems (F(2): 1.4, F(4): 21, F(6): 36). Outputs are NaN
poisoned and the workspace 0xFF-filled; results are bitwise equal for 1, 2 and 3 threads
and within the bound on every ISA. Non-finite operands must land where the definition
puts them (the driver routes such calls to an exact entry). Problems Winograd cannot run
raise a ValueError naming the reason; "auto" picks it only under set_precision("medium").
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastconv
from fastconv import functional as F
from fastconv import reference as ref
from fastconv._spec import make_spec
from helpers import (ConvCase, eps, nan_filled, poison_workspace, ref_bias_grad, ref_forward, ref_input_grad,
                     ref_weight_grad)

FWD, BWD_DATA, BWD_WEIGHTS = F.FWD, F.BWD_DATA, F.BWD_WEIGHTS
PASSES = (FWD, BWD_DATA, BWD_WEIGHTS)
TILES = {"winograd_f2": 2, "winograd_f4": 4, "winograd_f6": 6, "winograd": 4}
#: Winograd's normwise constants (docs/architecture.md); "winograd" picks F(2) or F(4).
WINOGRAD_C = {2: 16.0, 4: 128.0, 6: 512.0}
ENTRIES = sorted(TILES)
DTYPES = [np.float32, np.float64]


def assert_within_winograd_bound(actual, expected, bound_terms, dtype, m, what):
    dtype = np.dtype(dtype)
    assert actual.dtype == dtype and actual.shape == np.shape(expected), what
    a64 = actual.astype(np.float64)
    assert np.isfinite(a64).all(), f"{what}: non-finite elements (skipped by the kernel?)"
    err = float(np.abs(a64 - expected).max()) if a64.size else 0.0
    limit = WINOGRAD_C[m] * eps(dtype) * float(np.max(bound_terms)) if a64.size else 0.0
    assert err <= limit, f"{what}: max error {err!r} > {WINOGRAD_C[m]} * eps * max bound = {limit!r}"


def Case(name: str, n: int, c_in: int, h: int, w: int, c_out: int, padding: object = 1,
         groups: int = 1) -> ConvCase:
    """A 3x3, stride-1, dilation-1 problem (what Winograd takes)."""
    return ConvCase(name, n, c_in, h, w, c_out, (3, 3), padding, 1, groups)


CASES = [
    Case("valid", 2, 3, 9, 11, 5, 0),
    Case("same_odd", 1, 4, 13, 7, 6, "same"),
    Case("pad2", 2, 5, 6, 6, 4, 2),
    Case("pad3_crop_in_bwd_data", 1, 3, 5, 8, 3, 3),          # transposed padding -1
    Case("asymmetric", 2, 4, 10, 9, 4, ((0, 2), (1, 0))),
    Case("groups", 2, 6, 12, 10, 9, 1, 3),
    Case("one_pixel_image", 3, 2, 1, 1, 3, 1),               # every tile mostly padding
    Case("exact_tiles", 1, 8, 12, 12, 8, 1),                 # output a multiple of 2, 4, 6
    Case("wide_row", 1, 2, 3, 70, 4, 1),                     # many tiles in one row
    Case("many_blocks", 3, 16, 40, 38, 24, 1),               # several blocks, crossing images
    Case("one_channel", 2, 1, 15, 15, 1, 1),
]
IDS = [c.name for c in CASES]


def make_data(rng, case: ConvCase, dtype):
    w_shape = case.w_shape
    spec = make_spec(case.x_shape, w_shape, 1, case.padding, 1, case.groups, np.dtype(dtype))
    x = rng.standard_normal(spec.input_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(case.c_out).astype(dtype)
    gy = rng.standard_normal(spec.output_shape).astype(dtype)
    return spec, x, w, b, gy


def run_pass(pass_, spec, algorithm, x, w, b, gy):
    """One pass into NaN-filled outputs with a 0xFF-filled workspace."""
    code = F.ALGORITHMS[algorithm]
    poison_workspace(F.workspace_bytes(spec, pass_, algorithm))
    if pass_ == FWD:
        out = nan_filled(spec.output_shape, spec.dtype)
        top, bottom, left, right = spec.padding
        return (fastconv.conv2d(x, w, b, 1, ((top, bottom), (left, right)), 1, spec.groups,
                                algorithm=algorithm, out=out),)
    if pass_ == BWD_DATA:
        return (F._input_grad(spec, code, gy, w, gx=nan_filled(spec.input_shape, spec.dtype)),)
    return F._weight_grad(spec, code, gy, x, True, gw=nan_filled(spec.weight_shape, spec.dtype),
                          gb=nan_filled((spec.c_out,), spec.dtype))


def check_pass(pass_, res, spec, x, w, b, gy, m):
    pad = ((spec.padding[0], spec.padding[1]), (spec.padding[2], spec.padding[3]))
    args = (1, pad, 1, spec.groups)
    if pass_ == FWD:
        assert_within_winograd_bound(res[0], *ref_forward(x, w, b, *args), spec.dtype, m, "y")
    elif pass_ == BWD_DATA:
        assert_within_winograd_bound(res[0], *ref_input_grad(gy, w, x.shape, *args), spec.dtype, m, "grad_x")
    else:
        assert_within_winograd_bound(res[0], *ref_weight_grad(gy, x, w.shape, *args), spec.dtype, m, "grad_w")
        gb_ref, gb_bound = ref_bias_grad(gy)
        assert_within_winograd_bound(res[1], gb_ref, gb_bound, spec.dtype, 2, "grad_b")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("algorithm", ENTRIES)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_against_reference(case, algorithm, dtype, rng):
    spec, x, w, b, gy = make_data(rng, case, dtype)
    for pass_ in PASSES:
        assert F.chosen_implementation(spec, pass_, algorithm) == algorithm
        check_pass(pass_, run_pass(pass_, spec, algorithm, x, w, b, gy), spec, x, w, b, gy, TILES[algorithm])


@pytest.mark.parametrize("algorithm", ["winograd_f2", "winograd_f4", "winograd_f6"])
def test_every_isa_and_thread_count(algorithm, isa, rng):
    case = Case("isa", 3, 12, 19, 17, 10, 1, 2)
    for dtype in DTYPES:
        spec, x, w, b, gy = make_data(rng, case, dtype)
        for pass_ in PASSES:
            results = []
            for nt in (1, 2, 3):
                with fastconv.threads(nt):
                    results.append(run_pass(pass_, spec, algorithm, x, w, b, gy))
            check_pass(pass_, results[0], spec, x, w, b, gy, TILES[algorithm])
            for other in results[1:]:
                for a, c in zip(results[0], other):
                    assert np.array_equal(a, c), f"{isa} {algorithm} pass {pass_}: thread counts differ"


@given(data=st.data())
def test_hypothesis_problems(data):
    n = data.draw(st.integers(1, 3))
    groups = data.draw(st.sampled_from([1, 2]))
    cg, kg = data.draw(st.integers(1, 9)), data.draw(st.integers(1, 9))
    h, w = data.draw(st.integers(1, 20)), data.draw(st.integers(1, 20))
    pads = [data.draw(st.integers(0, 3)) for _ in range(4)]
    if h + pads[0] + pads[1] < 3 or w + pads[2] + pads[3] < 3:
        pads = [2, 2, 2, 2]
    algorithm = data.draw(st.sampled_from(ENTRIES))
    dtype = data.draw(st.sampled_from(DTYPES))
    seed = data.draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    case = Case("h", n, cg * groups, h, w, kg * groups, ((pads[0], pads[1]), (pads[2], pads[3])), groups)
    spec, x, wt, b, gy = make_data(rng, case, dtype)
    for pass_ in PASSES:
        check_pass(pass_, run_pass(pass_, spec, algorithm, x, wt, b, gy), spec, x, wt, b, gy, TILES[algorithm])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference's own NaN arithmetic
@pytest.mark.parametrize("algorithm", ["winograd_f4", "winograd_f6"])
def test_non_finite_lands_where_the_definition_puts_it(algorithm, rng):
    """A NaN in one pixel must not spread to its transform tile's neighbours; inf weights
    must meet the padding's zeros (NaN where the window reads padding)."""
    x = rng.standard_normal((2, 4, 14, 13))
    w = rng.standard_normal((5, 4, 3, 3))
    gy = rng.standard_normal((2, 5, 14, 13))
    x_nan = x.copy()
    x_nan[1, 2, 6, 5] = np.nan
    w_inf = w.copy()
    w_inf[3, 1, 0, 2] = np.inf
    gy_nan = gy.copy()
    gy_nan[0, 4, 13, 0] = np.nan
    for xx, ww, gg in ((x_nan, w, gy), (x, w_inf, gy), (x, w, gy_nan)):
        y = fastconv.conv2d(xx, ww, padding=1, algorithm=algorithm)
        y_ref = ref.conv2d(xx, ww, padding=1)
        assert np.array_equal(np.isnan(y), np.isnan(y_ref)) and np.array_equal(np.isinf(y), np.isinf(y_ref))
        gx, gw, _ = fastconv.conv2d_backward(gg, xx, ww, padding=1, algorithm=algorithm)
        rx, rw, _ = ref.conv2d_backward(gg, xx, ww, padding=1)
        for got, want in ((gx, rx), (gw, rw)):
            assert np.array_equal(np.isnan(got), np.isnan(want))
            assert np.array_equal(np.isinf(got), np.isinf(want))
            fin = np.isfinite(want)
            assert np.allclose(got[fin], want[fin], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kwargs, reason", [
    (dict(w_shape=(4, 3, 5, 5)), "3x3 kernel"),
    (dict(w_shape=(4, 3, 3, 2)), "3x3 kernel"),
    (dict(stride=2), "stride 1"),
    (dict(dilation=2), "dilation 1"),
])
@pytest.mark.parametrize("algorithm", ENTRIES)
def test_ineligible_problem_names_the_reason(kwargs, reason, algorithm):
    kwargs = dict(kwargs)
    x = np.ones((1, 3, 12, 12), np.float32)
    w = np.ones(kwargs.pop("w_shape", (4, 3, 3, 3)), np.float32)
    with pytest.raises(ValueError, match=reason):
        fastconv.conv2d(x, w, padding=1, algorithm=algorithm, **kwargs)
    with pytest.raises(ValueError, match=reason):
        fastconv.conv2d_backward(np.ones(fastconv.conv2d(x, w, padding=1, **kwargs).shape, np.float32),
                                 x, w, padding=1, algorithm=algorithm, **kwargs)


def test_workspace_does_not_grow_with_the_batch():
    for pass_ in PASSES:
        sizes = [F.workspace_bytes(make_spec((n, 64, 28, 28), (64, 64, 3, 3), 1, 1, 1, 1, np.dtype(np.float32)),
                                   pass_, "winograd_f4") for n in (8, 64, 512)]
        assert sizes[0] == sizes[1] == sizes[2], sizes


LAYER = make_spec((8, 128, 28, 28), (128, 128, 3, 3), 1, 1, 1, 1, np.dtype(np.float32))


def test_auto_never_picks_winograd_at_highest_precision():
    assert fastconv.get_precision() == "highest"
    for pass_ in PASSES:
        assert F.chosen_algorithm(LAYER, pass_) != "winograd"


def test_medium_precision_lets_auto_pick_winograd():
    before = fastconv.get_precision()
    try:
        fastconv.set_precision("medium")
        assert [F.chosen_implementation(LAYER, p) for p in PASSES] == ["winograd"] * 3
        pointwise = make_spec((8, 64, 28, 28), (64, 64, 1, 1), 1, 0, 1, 1, np.dtype(np.float32))
        assert F.chosen_algorithm(pointwise, FWD) != "winograd"
    finally:
        fastconv.set_precision(before)
    with pytest.raises(ValueError, match="precision"):
        fastconv.set_precision("low")


def test_precision_environment_variable():
    code = "import fastconv; print(fastconv.get_precision())"
    env = dict(os.environ, FASTCONV_PRECISION="medium")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "medium"
    env["FASTCONV_PRECISION"] = "bogus"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "highest" and "FASTCONV_PRECISION" in out.stderr


def test_every_entry_is_an_algorithm_name():
    for name in ("winograd", "winograd_f2", "winograd_f4", "winograd_f6", "implicit_gemm", "gemm_1x1",
                 "im2col_explicit", "depthwise", "direct", "im2col", "auto"):
        assert name in F.ALGORITHMS
