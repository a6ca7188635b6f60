"""The pointwise weight gradient on the implicit-GEMM micro-kernels (csrc/pointwise_wgrad.c).

The gemm_1x1 entry computes a 1x1, stride-1, unpadded layer's weight gradient without
packing the wider operand where the narrower one (input or output channels per group) fills
at least 3/4 of the micro-kernel's panel and is at most 128 rows: grad_y's rows are
broadcast against x transposed (expand layers), or x's rows against grad_y transposed
(projection layers). These tests check which shapes take it, and check it against
``fastconv.reference`` in the regimes its driver distinguishes: both orientations, groups,
rows that do not fill the tile, images split into several pixel chunks, images smaller than
a vector; outputs NaN-poisoned, the workspace 0xFF-filled, results bitwise equal for 1, 2 and
3 threads, and the same results through ``algorithm="gemm_1x1"``, ``"im2col"`` and
``"auto"``.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastconv
from fastconv import _core
from fastconv import functional as F
from fastconv._spec import make_spec
from helpers import (ConvCase, assert_close_to_reference, nan_filled, poison_workspace, ref_bias_grad,
                     ref_weight_grad)

BWD_WEIGHTS = 2
GEMM_1X1 = F.ALGORITHMS["gemm_1x1"]


Case = ConvCase  # 1x1 kernels, unpadded, stride 1


# All take the micro-kernel path on AVX2 and AVX-512 (test_shapes_take_the_path checks it).
CASES = [
    Case("expand", 3, 24, 9, 11, 144),             # grad_y broadcast, x^T packed
    Case("projection", 3, 144, 7, 9, 24),          # x broadcast, grad_y^T packed
    Case("rows_not_filling_the_tile", 2, 48, 5, 7, 100),  # 100 rows: 12.5 tiles of 8 (16.7 of 6)
    Case("groups", 2, 96, 6, 6, 192, groups=2),           # 48 -> 96 channels per group
    Case("groups_projection", 2, 192, 6, 5, 96, groups=4),
    Case("image_smaller_than_a_vector", 4, 48, 2, 3, 64),
    Case("several_pixel_chunks", 1, 24, 160, 160, 48),  # a 25600-pixel panel exceeds half of any L2
]
IDS = [c.name for c in CASES]


def spec_of(case: Case, dtype=np.float32):
    return make_spec(case.x_shape, case.w_shape, 1, 0, 1, case.groups, np.dtype(dtype))


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_shapes_take_the_path(case, dtype, implicit_isa):
    spec = spec_of(case, dtype)
    before = _core.active_isa()
    try:
        assert F.chosen_implementation(spec, BWD_WEIGHTS) == "gemm_1x1"
        assert _core.pointwise_wgrad_runs(spec.desc(1))
        _core.set_isa(0)  # the generic build has no micro-kernels: the GEMM
        assert not _core.pointwise_wgrad_runs(spec.desc(1))
    finally:
        _core.set_isa(before)


@pytest.mark.parametrize("shape", [
    ((2, 40, 8, 8), (80, 20, 1, 1), 2),     # 20 channels per group: 3/8 of a 32-column panel wasted
    ((2, 256, 7, 7), (512, 256, 1, 1), 1),  # both sides wide: the GEMM's packing is amortised
])
def test_shapes_that_stay_on_the_gemm(shape, implicit_isa):
    x_shape, w_shape, groups = shape
    spec = make_spec(x_shape, w_shape, 1, 0, 1, groups, np.dtype(np.float32))
    assert F.chosen_implementation(spec, BWD_WEIGHTS) == "gemm_1x1"
    assert not _core.pointwise_wgrad_runs(spec.desc(1))


def weight_grad(spec, gy, x, algorithm):
    poison_workspace(F.workspace_bytes(spec, BWD_WEIGHTS, algorithm))
    return F._weight_grad(spec, F.ALGORITHMS[algorithm], gy, x, True,
                          gw=nan_filled(spec.weight_shape, spec.dtype),
                          gb=nan_filled((spec.c_out,), spec.dtype))


def checked_across_threads(case, spec, dtype, rng):
    """gemm_1x1's weight and bias gradients at 1, 2 and 3 threads: against the reference,
    bitwise equal. Returns (the results, grad_y, x)."""
    x = rng.standard_normal(case.x_shape).astype(dtype)
    gy = rng.standard_normal(spec.output_shape).astype(dtype)
    results = []
    for threads in (1, 2, 3):
        with fastconv.threads(threads):
            results.append(weight_grad(spec, gy, x, "gemm_1x1"))
    gw, gb = results[0]
    assert_close_to_reference(gw, *ref_weight_grad(gy, x, case.w_shape, 1, 0, 1, case.groups), dtype,
                              what="grad_w")
    assert_close_to_reference(gb, *ref_bias_grad(gy), dtype, what="grad_b")
    for other in results[1:]:
        for a, o in zip(results[0], other):
            assert np.array_equal(a, o), "results differ between thread counts"
    return results, gy, x


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_against_reference_and_bitwise_across_threads(case, dtype, isa, rng):
    """Under each ISA: the micro-kernels of AVX2 and AVX-512, the GEMM of the generic build."""
    spec = spec_of(case, dtype)
    results, gy, x = checked_across_threads(case, spec, dtype, rng)
    for algorithm in ("im2col", "auto"):
        for a, o in zip(results[0], weight_grad(spec, gy, x, algorithm)):
            assert np.array_equal(a, o), f"algorithm={algorithm!r} ran another implementation"


@pytest.mark.parametrize("bad", [np.inf, np.nan])
@pytest.mark.parametrize("where", ["x", "grad_y"])
def test_non_finite_operands_propagate_as_the_definition(bad, where, implicit_isa, rng):
    """Every product of the definition is formed (the padded panel columns and tile rows are
    dropped), so one non-finite element spoils exactly the weights the reference says."""
    case = CASES[0]
    spec = spec_of(case)
    x = rng.standard_normal(case.x_shape).astype(np.float32)
    gy = rng.standard_normal(spec.output_shape).astype(np.float32)
    (x if where == "x" else gy)[1, 5, 3, 4] = bad
    gw, _ = weight_grad(spec, gy, x, "gemm_1x1")
    expected, _ = ref_weight_grad(gy, x, case.w_shape, 1, 0, 1, 1)
    assert np.array_equal(np.isnan(gw), np.isnan(expected))
    assert np.array_equal(np.isinf(gw), np.isinf(expected))
    finite = np.isfinite(expected)
    assert finite.any() and not finite.all()


#: wide on both sides (the GEMM): a batch of small images whose dW is as large as its
#: operands sums on the whole team image by image (no partial dW); a batch of larger images
#: keeps batch chunks (4 here: 8 would write partials beyond a sixteenth of its operands)
GEMM_BATCHES = [Case("team_small_images", 8, 192, 5, 5, 160), Case("chunks_larger_images", 8, 136, 28, 28, 136)]


@pytest.mark.parametrize("case", GEMM_BATCHES, ids=[c.name for c in GEMM_BATCHES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_gemm_weight_gradient_in_chunks_or_on_the_team(case, dtype, isa, rng):
    spec = spec_of(case, dtype)
    assert not _core.pointwise_wgrad_runs(spec.desc(1))
    for threads in (1, 2, 16):  # sizes only
        assert _core.im2col_wgrad_chunks(spec.desc(threads)) == (0 if case.name.startswith("team") else 4)
    # mnist_c2's 3x3 weight gradient (64 images) lowered explicitly keeps its 8 chunks
    mnist = make_spec((64, 32, 26, 26), (64, 32, 3, 3), 1, 0, 1, 1, np.dtype(dtype))
    assert _core.im2col_wgrad_chunks(mnist.desc(1)) == 8
    checked_across_threads(case, spec, dtype, rng)
