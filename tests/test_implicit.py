"""The implicit-GEMM path of algorithm "im2col" (csrc/conv_implicit.c).

On AVX2 and AVX-512 machines every non-pointwise problem runs its forward, input gradient and
weight gradient as implicit GEMM (micro-kernels read the lowered matrix straight from a padded
band of the image through an offset table; the input gradient is a forward of grad_y per
stride phase, scattered into the input's positions of that phase). These tests check that the
path is taken where it should
be, and check it against ``fastconv.reference`` (the bound of docs/architecture.md) in the regimes
its driver distinguishes: column blocks that run across rows or restart at each row,
widths that leave a partial vector, K split into several channel chunks, images split
into several row tiles, output channels that do not fill the micro-tile, groups (packed
side by side in a tile, or not), dilation, strides 2, 3 and 4 (phase planes; input-gradient
phases no tap reaches), padding wider than the kernel (a crop in the
input gradient), and non-finite
weights (the input gradient then falls back to the explicit lowering). Outputs are
poisoned with NaN and the workspace with 0xFF bytes; results must be bitwise equal for
1, 2 and 3 threads.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastconv
from fastconv import _core
from fastconv import functional as F
from fastconv import reference as ref
from fastconv._spec import make_spec
from helpers import (ConvCase, assert_close_to_reference, nan_filled, poison_workspace, ref_bias_grad,
                     ref_forward, ref_input_grad, ref_weight_grad)

FWD, BWD_DATA, BWD_WEIGHTS = 0, 1, 2
PASSES = (FWD, BWD_DATA, BWD_WEIGHTS)
IM2COL = F.ALGORITHMS["im2col"]


Case = ConvCase


CASES = [
    Case("gap_blocks", 2, 8, 10, 12, 16, (3, 3), 1),          # OW 12: blocks run across rows
    Case("row_blocks_ow32", 2, 8, 6, 32, 16, (3, 3), 1),      # OW 32: one block per row
    Case("partial_vector", 1, 5, 9, 7, 11, (3, 3), 2, 2),     # 11 output channels, OW 7
    Case("chunks_and_tiles", 1, 96, 40, 40, 24, (3, 3), 1),   # K split in chunks, several tiles
    Case("groups", 2, 6, 13, 11, 10, (3, 3), 1, 1, 2),
    # ResNeXt-like: 8 channels a group, the weight gradient's one-vector tile (kg <= vl)
    Case("groups_of_8", 2, 32, 9, 10, 32, (3, 3), 1, 1, 4),
    Case("groups_of_16_s2", 1, 32, 11, 12, 32, (3, 3), 1, 1, 2, 2),
    # groups packed side by side in the forward tile (fc_implicit_groups_a_tile > 1): 4 and 2
    # channels a group (2 to 8 groups a tile, one or two vectors), and 8 a group with
    # dilation and stride
    Case("groups_of_4_packed", 2, 64, 9, 10, 64, (3, 3), 1, 1, 16),
    Case("groups_of_2_packed", 1, 32, 7, 9, 32, (3, 3), 1, 1, 16),
    Case("groups_of_8_packed_s2_dil", 1, 64, 13, 14, 64, (3, 3), 2, 2, 8, 2),
    # stride 2, 8 a group, rows of 20-21 phase columns: the weight gradient's stride-2 interleave
    # of four groups (AVX-512 f32) takes 16 columns and then a masked rest
    Case("groups_of_8_packed_s2_wide", 2, 32, 9, 41, 32, (3, 3), 1, 1, 4, 2),
    # 6 a group: in f64 on AVX-512 4 groups fill a three-vector tile (24 lanes)
    Case("groups_of_6_three_vectors", 2, 48, 9, 10, 48, (3, 3), 1, 1, 8),
    # packed groups starting a pixel group at every row, the edge pixels leaving out their
    # padding taps (fwd_grp[lg][v][e][k-1]): rows of 14 (8 + 6, AVX2 6 + 6 + 2) of 16
    # channels a group; rows of 7, one group both starting and ending its row; padding on
    # the left only (a narrow group that starts a row and ends it without an edge); the
    # input gradient of an unpadded layer (padding 2: the grouped kernels' kind 0 only)
    Case("groups_of_16_rows_of_14", 1, 64, 6, 14, 64, (3, 3), 1, 1, 4),
    Case("groups_of_8_rows_of_7", 2, 32, 7, 7, 32, (3, 3), 1, 1, 4),
    Case("groups_of_4_left_pad_only", 1, 32, 5, 7, 32, (3, 3), ((1, 1), (1, 0)), 1, 8),
    Case("groups_of_8_valid", 1, 32, 8, 10, 32, (3, 3), 0, 1, 4),
    Case("k5_pad4", 2, 3, 17, 19, 9, (5, 5), 4),
    Case("pad_wider_than_kernel", 2, 16, 9, 9, 40, (3, 3), 5),
    Case("asymmetric", 1, 4, 8, 9, 8, (2, 4), ((0, 2), (1, 3)), (2, 1)),
    Case("valid_3x3", 3, 32, 12, 12, 64, (3, 3), 0),
    Case("k1_padded", 1, 8, 5, 6, 16, (1, 1), 1),
    Case("stem_like_s2", 2, 3, 31, 29, 16, (7, 7), 3, 1, 1, 2),
    Case("s2_dilated", 1, 8, 13, 14, 16, (3, 3), 2, 2, 1, 2),
    Case("s3_and_s2", 1, 4, 20, 21, 16, (5, 5), 2, 3, 1, (3, 2)),
    Case("k2_s2", 2, 8, 13, 14, 8, (2, 2), 0, 1, 1, 2),
    # pixel groups of 8 spanning 3 rows, some wholly in the padding (kernel rows skipped)
    Case("narrow_tall_padding", 1, 4, 4, 3, 8, (3, 3), ((4, 4), (1, 1))),
    Case("narrow_tall_padding_s2_dil", 1, 4, 7, 2, 8, (3, 3), ((5, 3), (1, 1)), (2, 1), 1, (2, 1)),
    # strided input gradients: phases no tap reaches (dilation 2 at stride 2), 16 phases of
    # one tap, a padding wider than the kernel, a 2 x 1 stride with asymmetric padding
    Case("s2_dil2_empty_phases", 1, 4, 9, 9, 8, (3, 3), 0, 2, 1, 2),
    Case("k4_s4_sixteen_phases", 1, 16, 17, 16, 16, (4, 4), 0, 1, 1, 4),
    Case("s2_pad_wider_than_kernel", 2, 16, 9, 9, 24, (3, 3), 4, 1, 1, 2),
    Case("s21_asymmetric_pad", 2, 8, 10, 10, 8, (3, 3), ((1, 0), (2, 1)), 1, 2, (2, 1)),
    # column phases merged into gx rows element by element: 3 of them, and 4 over a width
    # they do not divide (the vector merge takes 2, or 4 and 8 dividing the width)
    Case("s13_three_column_phases", 1, 8, 11, 13, 8, (3, 3), 1, 1, 1, (1, 3)),
    Case("k4_s4_ragged_width", 1, 8, 17, 18, 8, (4, 4), 0, 1, 1, 4),
    # W^T packing: 64 taps a filter, the most one register-transpose call takes (4 to 16 blocks
    # of taps by vector width; the strided input gradient reads 16 of each filter's 64), and
    # 81, packed in two windows of taps
    Case("k8_s2_packing_by_lanes", 1, 4, 14, 15, 8, (8, 8), 3, 1, 1, 2),
    Case("k9_packing_in_two_windows", 1, 4, 12, 13, 8, (9, 9), 4),
    # the strided input gradient packs all phases in one pass over the weights (each tap to
    # its phase's W^T); 81 taps a filter, more than one call takes: phase by phase
    Case("k9_s2_phases_packed_one_by_one", 1, 4, 15, 16, 8, (9, 9), 4, 1, 1, 2),
    # edge columns (fwd[e], 3-column kernels): rows of 7 in one group that leaves out both
    # edges' padding taps, 40 channels (a partial block: 1, 2 and 3 vectors); rows of 13 (a
    # full group with the left edge, a narrow one with the right; AVX2: 6 + 6 + 1); padding
    # on one side only; stride 2 whose last column reads no padding; dilation 2 with padding
    # 2 (kind 2: the edge pixel's neighbour leaves out the edge column too)
    Case("edge_columns_rows_of_7", 2, 16, 7, 7, 40, (3, 3), 1),
    Case("edge_columns_rows_of_13", 1, 8, 5, 13, 16, (3, 3), 1),
    Case("edge_columns_left_pad_only", 1, 8, 6, 11, 16, (3, 3), ((1, 1), (1, 0))),
    Case("edge_columns_right_pad_only", 1, 8, 6, 11, 16, (3, 3), ((1, 1), (0, 1))),
    Case("edge_columns_s2_left_only", 1, 8, 9, 14, 16, (3, 3), 1, 1, 1, 2),
    Case("edge_columns_dil2_pad2", 1, 8, 8, 10, 16, (3, 3), 2, 2),
    # padding 2 (kind 1: the edge pixel leaves out two columns, its neighbour one): rows of 12
    # (8 + 4); 2 on the left only; 2 on the left and 1 on the right (the right side allows
    # only kind 0, so both sides take it); stride 2 (the second pixel reads no padding: kind
    # 0); unpadded layers, whose input gradients have padding 2 on every side, with rows of 4
    # and of 3 (a group both starts and ends its row)
    Case("edge_columns_pad2", 1, 8, 6, 10, 16, (3, 3), 2),
    Case("edge_columns_pad2_left_only", 1, 8, 6, 11, 16, (3, 3), ((1, 1), (2, 0))),
    Case("edge_columns_pad2_left_pad1_right", 1, 8, 6, 11, 16, (3, 3), ((1, 1), (2, 1))),
    Case("edge_columns_pad2_s2", 1, 8, 9, 14, 16, (3, 3), 2, 1, 1, 2),
    Case("edge_columns_valid_rows_of_4", 2, 8, 4, 4, 16, (3, 3), 0),
    Case("edge_columns_valid_rows_of_3", 1, 8, 3, 3, 16, (3, 3), 0),
]
IDS = [c.name for c in CASES]


def make_data(rng, case: Case, dtype):
    spec = make_spec(case.x_shape, case.w_shape, case.stride, case.padding, case.dilation,
                     case.groups, np.dtype(dtype))
    x = rng.standard_normal(case.x_shape).astype(dtype)
    w = rng.standard_normal(case.w_shape).astype(dtype)
    b = rng.standard_normal(case.c_out).astype(dtype)
    gy = rng.standard_normal(spec.output_shape).astype(dtype)
    return spec, x, w, b, gy


def run_pass(pass_, spec, x, w, b, gy):
    """One im2col pass into NaN-filled outputs with a 0xFF-filled workspace."""
    poison_workspace(F.workspace_bytes(spec, pass_, "im2col"))
    if pass_ == FWD:
        out = nan_filled(spec.output_shape, spec.dtype)
        top, bottom, left, right = spec.padding
        return (fastconv.conv2d(x, w, b, spec.stride, ((top, bottom), (left, right)), spec.dilation,
                                spec.groups, algorithm="im2col", out=out),)
    if pass_ == BWD_DATA:
        return (F._input_grad(spec, IM2COL, gy, w, gx=nan_filled(spec.input_shape, spec.dtype)),)
    return F._weight_grad(spec, IM2COL, gy, x, True, gw=nan_filled(spec.weight_shape, spec.dtype),
                          gb=nan_filled((spec.c_out,), spec.dtype))


def run_across_threads(pass_, spec, x, w, b, gy, counts):
    """run_pass at each thread count; the results must be bitwise equal. Returns the first."""
    results = []
    for threads in counts:
        with fastconv.threads(threads):
            results.append(run_pass(pass_, spec, x, w, b, gy))
    for other in results[1:]:
        for a, o in zip(results[0], other):
            assert np.array_equal(a, o), "results differ between thread counts"
    return results[0]


def check_pass(pass_, res, case: Case, x, w, b, gy, dtype):
    args = (case.stride, case.padding, case.dilation, case.groups)
    if pass_ == FWD:
        assert_close_to_reference(res[0], *ref_forward(x, w, b, *args), dtype, what="y")
    elif pass_ == BWD_DATA:
        assert_close_to_reference(res[0], *ref_input_grad(gy, w, x.shape, *args), dtype, what="grad_x")
    else:
        assert_close_to_reference(res[0], *ref_weight_grad(gy, x, w.shape, *args), dtype, what="grad_w")
        assert_close_to_reference(res[1], *ref_bias_grad(gy), dtype, what="grad_b")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_problems_take_the_implicit_path(case, implicit_isa):
    spec = make_spec(case.x_shape, case.w_shape, case.stride, case.padding, case.dilation,
                     case.groups, np.dtype(np.float32))
    before = _core.active_isa()
    try:
        # strided input gradients too: one unit-stride forward per stride phase
        assert [_core.implicit_accepts(spec.desc(1), p) for p in PASSES] == [True, True, True]
        _core.set_isa(0)  # the generic build has no implicit kernels: explicit lowering
        assert not any(_core.implicit_accepts(spec.desc(1), p) for p in PASSES)
    finally:
        _core.set_isa(before)


def test_pointwise_and_input_skipping_strides_are_lowered_explicitly(implicit_isa):
    """A 1x1 unit-stride layer's weight gradient reads its operands in place elsewhere
    (pointwise_wgrad.c, gemm_1x1); its forward and input gradient run here too when asked for
    (and by "auto" for small images, below), algorithm "im2col" keeps gemm_1x1. A stride longer
    than the kernel's reach would make the band copy input that no tap reads; a strided 1x1
    within its dilation's reach stays with explicit im2col."""
    pointwise = make_spec((1, 8, 12, 12), (16, 8, 1, 1), 1, 0, 1, 1, np.dtype(np.float32))
    skipping = make_spec((1, 8, 12, 12), (16, 8, 1, 1), 2, 0, 1, 1, np.dtype(np.float32))
    dilated = make_spec((8, 64, 14, 14), (128, 64, 1, 1), 2, 0, 2, 1, np.dtype(np.float32))
    for spec in (pointwise, skipping, dilated):  # algorithm "im2col" lowers explicitly / in place
        assert not any(_core.implicit_accepts(spec.desc(1), p) for p in PASSES)
    assert [F.chosen_implementation(dilated, p, "im2col") for p in PASSES] == ["im2col_explicit"] * 3
    assert F.chosen_implementation(pointwise, FWD, "implicit_gemm") == "implicit_gemm"
    assert F.chosen_implementation(pointwise, BWD_DATA, "implicit_gemm") == "implicit_gemm"
    with pytest.raises(ValueError, match="implicit_gemm does not take this geometry"):
        F.chosen_implementation(pointwise, BWD_WEIGHTS, "implicit_gemm")
    with pytest.raises(ValueError, match="implicit_gemm does not take this geometry"):
        F.chosen_implementation(skipping, FWD, "implicit_gemm")


#: unpadded 1x1 forwards on implicit GEMM: 7x7 with a partial channel block and a narrow last
#: pixel group (49 = 6 x 8 + 1), 5x5, one pixel, rows of 9 over 40 channels (one, two and three
#: vectors of lanes), more input channels than a chunk of K
POINTWISE = [Case("pw_7x7", 3, 40, 7, 7, 72, (1, 1), 0), Case("pw_5x5", 2, 16, 5, 5, 24, (1, 1), 0),
             Case("pw_one_pixel", 4, 24, 1, 1, 48, (1, 1), 0), Case("pw_9x9", 2, 16, 9, 9, 40, (1, 1), 0),
             Case("pw_deep", 1, 700, 3, 5, 20, (1, 1), 0)]


@pytest.mark.parametrize("case", POINTWISE, ids=[c.name for c in POINTWISE])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("activation", [None, "relu"])
def test_pointwise_forward_on_implicit_gemm(case, dtype, activation, implicit_isa, rng):
    """Against the reference, bias and fused ReLU included, into a NaN-filled output with a
    0xFF workspace, bitwise at 1-3 threads."""
    spec, x, w, b, _ = make_data(rng, case, dtype)
    assert F.chosen_implementation(spec, FWD, "implicit_gemm") == "implicit_gemm"
    got = []
    for threads in (1, 2, 3):
        with fastconv.threads(threads):
            poison_workspace(F.workspace_bytes(spec, FWD, "implicit_gemm"))
            got.append(fastconv.conv2d(x, w, b, algorithm="implicit_gemm", activation=activation,
                                       out=nan_filled(spec.output_shape, dtype)))
    assert all(np.array_equal(got[0], g) for g in got[1:]), "results differ between thread counts"
    y, bound = ref_forward(x, w, b, 1, 0, 1, 1)
    if activation:
        bound, y = np.where(y > 0, bound, 0), np.maximum(y, 0)
        assert np.all(got[0][y == 0] >= 0)
    assert_close_to_reference(got[0], y, bound, dtype, what="y")


@pytest.mark.parametrize("case", POINTWISE, ids=[c.name for c in POINTWISE])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_pointwise_input_gradient_on_implicit_gemm(case, dtype, implicit_isa, rng):
    """The transposed 1x1 forward, its W^T rows copied from w's rows (pack_wt): against the
    reference into a NaN-filled output, bitwise at 1-3 threads. The workspace is filled with
    0x3F bytes, a finite value: a W^T lane left unwritten would read as a wrong weight (0xFF,
    a NaN, would make the packing's finiteness check decline to an exact entry and hide it)."""
    spec, x, w, _, gy = make_data(rng, case, dtype)
    assert F.chosen_implementation(spec, BWD_DATA, "implicit_gemm") == "implicit_gemm"
    got = []
    for threads in (1, 2, 3):
        with fastconv.threads(threads):
            poison_workspace(F.workspace_bytes(spec, BWD_DATA, "implicit_gemm"), 0x3F)
            got.append(F.conv2d_input_grad(gy, w, x.shape, algorithm="implicit_gemm",
                                           out=nan_filled(spec.input_shape, dtype)))
    assert all(np.array_equal(got[0], g) for g in got[1:]), "results differ between thread counts"
    assert_close_to_reference(got[0], *ref_input_grad(gy, w, x.shape, 1, 0, 1, 1), dtype, what="grad_x")


#: where implicit GEMM reads its operand (csrc/implicit/implicit_plan.c, band_in_place), forward and
#: input gradient: 1, in place (unpadded: 1x1 at 7x7, a valid 3x3 over one tall image split
#: into row tiles at 2-3 threads, dilation 2, a 2x4 kernel, two groups of 40 channels);
#: 2, in place where the pixel groups leave out every padding tap ('same' 3x3 on rows of 28
#: = 8+8+8+4 and of 32 = 4 x 8 over a tall image, rows of 9 ending in a group of one,
#: padding 2 at dilation 2, padding on one side; the input gradients of unpadded layers,
#: padding 2, and of a padding wider than the kernel, a crop); 0, a copied band (a 5x5
#: kernel, whose edge taps are never left out; input gradients whose second pixel from an
#: edge lies in another group, or whose dilation makes a pixel read two padding columns, or
#: whose pixels would lie past the image).
#: A pair: (AVX-512, AVX2), whose pixel groups of 8 and 6 end rows differently.
IN_PLACE = [(Case("in_place_1x1", 3, 40, 7, 7, 72), 1, 1),
            (Case("in_place_valid_3x3_tall", 1, 8, 30, 12, 40, (3, 3)), 1, 2),
            (Case("in_place_dilated", 2, 6, 13, 11, 24, (3, 3), 0, 2), 1, 0),
            (Case("in_place_2x4", 1, 4, 9, 10, 8, (2, 4)), 1, 0),
            (Case("in_place_groups", 2, 40, 9, 9, 80, (3, 3), 0, 1, 2), 1, (0, 2)),  # 8 + 1 / 6 + 3
            (Case("same_3x3_rows_of_28", 2, 16, 10, 28, 40, (3, 3), 1), 2, 2),
            (Case("same_3x3_rows_of_32_tall", 1, 8, 40, 32, 24, (3, 3), 1), 2, 2),
            (Case("same_3x3_rows_of_9", 1, 8, 9, 9, 16, (3, 3), 1), 2, 2),
            (Case("pad2_dil2", 1, 8, 12, 13, 16, (3, 3), 2, 2), (2, 0), (2, 0)),  # 8 + 5 / 6 + 6 + 1
            (Case("left_pad_only", 1, 8, 6, 11, 16, (3, 3), ((1, 1), (1, 0))), 2, 0),
            (Case("pad2_left_pad1_right", 1, 8, 6, 11, 16, (3, 3), ((1, 1), (2, 1))), 0, 2),
            (Case("pad_wider_than_kernel", 1, 16, 9, 9, 40, (3, 3), 5), 0, 2),
            (Case("k5_pad2", 1, 8, 12, 12, 16, (5, 5), 2), 0, 0),
            # an unpadded layer's input gradient over grad_y of one channel: its padding-2 rows
            # would put pixel pointers past the image (copied); of two channels, inside it
            (Case("one_channel_input_gradient", 1, 8, 6, 7, 1, (3, 3)), 1, 0),
            (Case("two_channel_input_gradient", 1, 8, 6, 7, 2, (3, 3)), 1, (2, 0))]  # 7 = 6 + 1 on AVX2


def between_nans(a):
    """``a`` as a C-contiguous view into a buffer whose first and last images are NaN: a kernel
    that reads outside ``a`` (it reads the image in place) turns results to NaN."""
    buf = np.full((a.shape[0] + 2,) + a.shape[1:], np.nan, dtype=a.dtype)
    buf[1:-1] = a
    view = buf[1:-1]
    assert view.flags.c_contiguous
    return view


@pytest.mark.parametrize("case,fwd_mode,bwd_mode", IN_PLACE, ids=[c[0].name for c in IN_PLACE])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_operands_read_in_place(case, fwd_mode, bwd_mode, dtype, implicit_isa, rng):
    """The forward and input gradient read x and grad_y in place where band_in_place says so
    (unpadded: no band in the workspace, which then does not grow with the image), and
    nothing outside them: x and grad_y between NaN images, against the reference (the
    forward with bias and fused ReLU) into NaN-filled outputs, bitwise at 1-3 threads."""
    spec, x, w, b, gy = make_data(rng, case, dtype)
    assert _core.implicit_groups_a_tile(spec.desc(1), FWD) == 1
    fwd_mode, bwd_mode = (m if isinstance(m, int) else m[implicit_isa != "avx512"] for m in (fwd_mode, bwd_mode))
    assert [_core.implicit_band_in_place(spec.desc(1), p) for p in PASSES] == [fwd_mode, bwd_mode, 0]
    if fwd_mode == 1:
        taller = make_spec((case.n, case.c_in, case.h + 8, case.w + 8), case.w_shape, 1, 0, case.dilation,
                           case.groups, np.dtype(dtype))
        with fastconv.threads(1):
            assert F.workspace_bytes(spec, FWD, "implicit_gemm") == F.workspace_bytes(taller, FWD, "implicit_gemm")
    x, gy = between_nans(x), between_nans(gy)
    args = (1, case.padding, case.dilation, case.groups)
    y, gx = [], []
    for threads in (1, 2, 3):
        with fastconv.threads(threads):
            y.append(fastconv.conv2d(x, w, b, *args, algorithm="implicit_gemm", activation="relu",
                                     out=nan_filled(spec.output_shape, dtype)))
            gx.append(F.conv2d_input_grad(gy, w, x.shape, *args, algorithm="implicit_gemm",
                                          out=nan_filled(spec.input_shape, dtype)))
    assert all(np.array_equal(y[0], o) for o in y[1:]), "forward results differ between thread counts"
    assert all(np.array_equal(gx[0], o) for o in gx[1:]), "input gradients differ between thread counts"
    exp, bound = ref_forward(x, w, b, *args)
    assert_close_to_reference(y[0], np.maximum(exp, 0), np.where(exp > 0, bound, 0), dtype, what="y")
    assert_close_to_reference(gx[0], *ref_input_grad(gy, w, x.shape, *args), dtype, what="grad_x")


@pytest.mark.parametrize("where", ["first", "last"])
@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_pointwise_input_gradient_declines_non_finite_weights(where, bad, implicit_isa, rng):
    """The copied W^T rows are checked as the gathered ones are: a NaN/inf weight (the first
    filter's or the last block's) makes the implicit input gradient decline to an exact entry."""
    case = POINTWISE[0]
    spec, x, w, _, gy = make_data(rng, case, np.float32)
    w[(0, 0, 0, 0) if where == "first" else (-1, -1, 0, 0)] = bad
    with np.errstate(invalid="ignore"):
        exp = ref.conv2d_input_grad(gy.astype(np.float64), w.astype(np.float64), x.shape, 1, 0, 1, 1)
    clean, bound = ref_input_grad(gy, np.where(np.isfinite(w), w, 0), x.shape, 1, 0, 1, 1)
    finite = np.isfinite(exp)
    assert finite.any() and not finite.all()
    for threads in (1, 3):
        with fastconv.threads(threads):
            got = F.conv2d_input_grad(gy, w, x.shape, algorithm="implicit_gemm")
        assert np.array_equal(np.isnan(got), np.isnan(exp))
        assert np.array_equal(np.isposinf(got), np.isposinf(exp))
        assert np.array_equal(np.isneginf(got), np.isneginf(exp))
        assert_close_to_reference(np.where(finite, got, 0).astype(np.float32), np.where(finite, clean, 0),
                                  np.where(finite, bound, 0), np.float32, what="grad_x")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_auto_takes_implicit_for_large_pointwise_forwards_of_small_images(dtype, implicit_isa):
    """gemm_1x1 puts an image's pixels on its lanes (49 as 64); implicit GEMM computes them
    exactly. Taken for <= 64 pixels an image and >= 392 in all; in the forward from 128 M
    multiply-adds (not f64 on AVX2: four lanes, 49 as 52), in the input gradient with 512-bit
    vectors only; never for grouped layers or the weight gradient. Sizes only, never threads."""
    def choice(n, c, h, k, pass_=FWD, groups=1):
        spec = make_spec((n, c, h, h), (k, c // groups, 1, 1), 1, 0, 1, groups, np.dtype(dtype))
        return F.chosen_implementation(spec, pass_)
    wide = implicit_isa == "avx512" or dtype == np.float32
    want = "implicit_gemm" if wide else "gemm_1x1"
    assert choice(8, 512, 7, 2048) == want          # ResNet-50's last stage, 411 M
    assert choice(8, 2048, 7, 512) == want
    assert choice(32, 160, 7, 960) == want          # MobileNet's, 241 M
    assert choice(8, 1024, 8, 256) == want          # 64 pixels
    assert choice(8, 1024, 9, 256) == "gemm_1x1"    # 81
    assert choice(8, 160, 7, 960) == "gemm_1x1"     # 60 M
    assert choice(2, 2048, 7, 1024) == "gemm_1x1"   # 205 M, but 98 pixels in all
    assert choice(16, 2048, 4, 512) == "gemm_1x1"   # 256
    assert choice(8, 256, 14, 1024) == "gemm_1x1"
    assert choice(8, 512, 7, 2048, groups=2) == "gemm_1x1"
    # the input gradient: 512-bit vectors, from 392 pixels (8 images of 7x7), any work
    want = "implicit_gemm" if implicit_isa == "avx512" else "gemm_1x1"
    assert choice(8, 512, 7, 2048, BWD_DATA) == want
    assert choice(8, 160, 7, 960, BWD_DATA) == want
    assert choice(2, 64, 8, 64, BWD_DATA) == "gemm_1x1"   # 128 pixels
    assert choice(1, 512, 7, 2048, BWD_DATA) == "gemm_1x1"
    assert choice(8, 512, 9, 2048, BWD_DATA) == "gemm_1x1"
    assert choice(8, 512, 7, 2048, BWD_WEIGHTS) != "implicit_gemm"


def test_input_gradients_of_more_than_16_stride_phases_are_lowered_explicitly(implicit_isa):
    """implicit GEMM runs at most 16 stride phases of an input gradient (4 x 4)."""
    four = make_spec((1, 8, 20, 20), (16, 8, 4, 4), 4, 0, 1, 1, np.dtype(np.float32))
    five = make_spec((1, 8, 20, 20), (16, 8, 5, 5), 5, 0, 1, 1, np.dtype(np.float32))
    assert _core.implicit_accepts(four.desc(1), BWD_DATA)
    assert not _core.implicit_accepts(five.desc(1), BWD_DATA)
    assert _core.implicit_accepts(five.desc(1), FWD)
    assert F.chosen_implementation(five, BWD_DATA) == "im2col_explicit"


def test_auto_takes_the_implicit_path_for_one_input_channel(implicit_isa):
    """mnist_c1's forward (K = 9) measured faster as implicit GEMM than direct's row
    kernels; without the implicit kernels the explicit lowering is not worth it and "auto"
    stays direct. With its 32 filters direct's pixel-vector kernel beats both
    (test_direct_pixels.py); 36 filters (not in blocks of 8) leave it to the GEMM family."""
    spec = make_spec((64, 1, 28, 28), (32, 1, 3, 3), 1, 0, 1, 1, np.dtype(np.float32))
    odd = make_spec((64, 1, 28, 28), (36, 1, 3, 3), 1, 0, 1, 1, np.dtype(np.float32))
    before = _core.active_isa()
    try:
        assert _core.direct_pixels(spec.desc(1), FWD) and not _core.direct_pixels(odd.desc(1), FWD)
        assert F.chosen_algorithm(spec, FWD) == "direct"
        assert F.chosen_algorithm(odd, FWD) == "im2col"
        _core.set_isa(0)
        assert F.chosen_algorithm(spec, FWD) == "direct"
        assert F.chosen_algorithm(odd, FWD) == "direct"
    finally:
        _core.set_isa(before)


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_every_pass_against_reference_and_bitwise_across_threads(case, dtype, isa, rng):
    """Under each ISA: the implicit kernels of AVX2 and AVX-512, the explicit lowering of the
    generic build."""
    spec, x, w, b, gy = make_data(rng, case, dtype)
    for pass_ in PASSES:
        check_pass(pass_, run_across_threads(pass_, spec, x, w, b, gy, (1, 2, 3)), case, x, w, b, gy, dtype)


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_non_finite_weights_propagate_as_the_definition(bad, rng):
    """With a NaN/inf weight the input gradient leaves the implicit path (which would
    also multiply the weight by grad_output's padding: it declines, see the next tests)
    and must equal the reference's, NaN for NaN."""
    case = CASES[0]
    spec, x, w, b, gy = make_data(rng, case, np.float32)
    w[3, 2, 1, 0] = bad
    args = (case.stride, case.padding, case.dilation, case.groups)
    got = F._input_grad(spec, IM2COL, gy, w)
    with np.errstate(invalid="ignore"):  # the reference's own inf - inf
        exp = ref.conv2d_input_grad(gy.astype(np.float64), w.astype(np.float64), x.shape, *args)
        y_exp = ref.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), *args)
    assert np.array_equal(np.isnan(got), np.isnan(exp))
    assert np.array_equal(np.isinf(got), np.isinf(exp))
    y = fastconv.conv2d(x, w, b, 1, case.padding, algorithm="im2col")
    assert np.array_equal(np.isnan(y), np.isnan(y_exp))
    assert np.array_equal(np.isinf(y), np.isinf(y_exp))


#: forward cases whose packing and row skipping differ: padding rows skipped, a partial vector
#: of output channels, groups side by side, windows of 64 taps (9x9), 64-tap register path
NON_FINITE_FWD = ["narrow_tall_padding", "partial_vector", "groups_of_4_packed", "chunks_and_tiles",
                  "k9_packing_in_two_windows", "k8_s2_packing_by_lanes"]


@pytest.mark.parametrize("name", NON_FINITE_FWD)
@pytest.mark.parametrize("where", ["first", "last"])
@pytest.mark.parametrize("bad", [np.inf, np.nan])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_forward_with_non_finite_weights_computes_every_tap(name, where, bad, dtype, implicit_isa, rng):
    """The implicit forward stays on its path with a NaN/inf weight: its packing of W^T
    finds it (no routing) and the kernels then multiply the padding too, as the definition
    does (0 * inf is NaN), at any thread count (the finding is reduced over the threads that
    pack). A weight in the first or the last filter's last tap: the first or last lane block,
    the first or last window of taps."""
    case = CASES[IDS.index(name)]
    spec, x, w, b, gy = make_data(rng, case, dtype)
    w[(0, 0, 0, 0) if where == "first" else (-1, -1, -1, -1)] = bad
    args = (case.stride, case.padding, case.dilation, case.groups)
    with np.errstate(invalid="ignore"):  # the reference's own inf - inf and 0 * inf
        exp = ref.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), *args)
    # the outputs the bad weight does not reach, and their error bound, from the weight without it
    clean, bound = ref_forward(x, np.where(np.isfinite(w), w, 0), b, *args)
    finite = np.isfinite(exp)
    assert finite.any() and not finite.all()
    assert F.chosen_implementation(spec, FWD, "implicit_gemm") == "implicit_gemm"
    for threads in (1, 3):
        with fastconv.threads(threads):
            got = fastconv.conv2d(x, w, b, *args, algorithm="implicit_gemm")
        assert np.array_equal(np.isnan(got), np.isnan(exp)), f"NaN where the definition has none ({threads} threads)"
        assert np.array_equal(np.isposinf(got), np.isposinf(exp))
        assert np.array_equal(np.isneginf(got), np.isneginf(exp))
        assert_close_to_reference(np.where(finite, got, 0).astype(dtype), np.where(finite, clean, 0),
                                  np.where(finite, bound, 0), dtype, what="y")


#: input-gradient cases: unit stride (one phase), padded or not, a partial vector; strided
#: (all phases packed in one pass), grouped, 64 taps, and 81 (packed phase by phase)
NON_FINITE_BWD = ["chunks_and_tiles", "partial_vector", "valid_3x3", "s2_dilated", "groups_of_8_packed_s2_dil",
                  "k8_s2_packing_by_lanes", "k9_s2_phases_packed_one_by_one"]


@pytest.mark.parametrize("name", NON_FINITE_BWD)
@pytest.mark.parametrize("where", ["first", "last"])
@pytest.mark.parametrize("bad", [np.inf, np.nan])
@pytest.mark.parametrize("through_relu", [False, True], ids=["plain", "relu"])
def test_input_grad_declines_non_finite_weights_its_packing_finds(name, where, bad, through_relu, implicit_isa,
                                                                  rng):
    """The implicit input gradient checks the weights as it packs W^T (the driver no longer
    reads them first) and, finding a NaN/inf, declines before computing anything; the driver
    then runs an exact entry on a workspace of its own (the caller's was sized for
    implicit). Asked for implicit_gemm by name, at 1 and 3 threads, with and without the
    ReLU mask: NaN/inf where the reference has them, the rest within the bound."""
    case = CASES[IDS.index(name)]
    dtype = np.float32
    spec, x, w, b, gy = make_data(rng, case, dtype)
    w[(0, 0, 0, 0) if where == "first" else (-1, -1, -1, -1)] = bad
    if through_relu:
        x = np.maximum(x, 0)
    args = (case.stride, case.padding, case.dilation, case.groups)
    with np.errstate(invalid="ignore"):  # the reference's own inf - inf
        exp = ref.conv2d_input_grad(gy.astype(np.float64), w.astype(np.float64), x.shape, *args)
    clean, bound = ref_input_grad(gy, np.where(np.isfinite(w), w, 0), x.shape, *args)
    if through_relu:
        exp, clean, bound = (np.where(x > 0, a, 0) for a in (exp, clean, bound))
    finite = np.isfinite(exp)
    assert finite.any() and not finite.all()
    assert F.chosen_implementation(spec, BWD_DATA, "implicit_gemm") == "implicit_gemm"
    for threads in (1, 3):
        with fastconv.threads(threads):
            got, _, _ = F.conv2d_backward(gy, x, w, *args, algorithm="implicit_gemm", through_relu=through_relu)
        assert np.array_equal(np.isnan(got), np.isnan(exp)), f"NaN where the definition has none ({threads} threads)"
        assert np.array_equal(np.isposinf(got), np.isposinf(exp))
        assert np.array_equal(np.isneginf(got), np.isneginf(exp))
        assert_close_to_reference(np.where(finite, got, 0).astype(dtype), np.where(finite, clean, 0),
                                  np.where(finite, bound, 0), dtype, what="grad_x")


#: lanes of one vector of the implicit kernels: AVX2 8 f32 / 4 f64, AVX-512 16 / 8
LANES = {"avx2": {np.dtype(np.float32): 8, np.dtype(np.float64): 4},
         "avx512": {np.dtype(np.float32): 16, np.dtype(np.float64): 8}}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c_in, c_out, groups", [(3, 32, 1), (4, 64, 1), (6, 32, 1), (8, 32, 1), (12, 32, 1),
                                                 (8, 16, 1), (3, 8, 1), (32, 32, 4), (16, 64, 2)])
def test_auto_routes_a_narrow_input_gradient_off_implicit(c_in, c_out, groups, dtype, implicit_isa, rng):
    """conv_choose.c: an input gradient whose cg = C_in/groups channels fill at most half of
    the implicit kernel's one vector costs what a full vector costs there; "auto" runs it on
    explicit im2col when kg = C_out/groups >= 24 (its GEMM's K), else on the direct kernels.
    A unit-stride forward whose kg fills at most half a vector runs on direct; strided, and
    the weight gradient, keep the GEMM family."""
    dtype = np.dtype(dtype)
    cg, kg = c_in // groups, c_out // groups
    narrow = 2 * cg <= LANES[implicit_isa][dtype]
    x = rng.standard_normal((2, c_in, 9, 10)).astype(dtype)
    w = rng.standard_normal((c_out, cg, 3, 3)).astype(dtype)
    gy = rng.standard_normal((2, c_out, 9, 10)).astype(dtype)
    with fastconv.threads(1):
        spec = make_spec(x.shape, w.shape, 1, 1, 1, groups, dtype)
        strided = make_spec((2, c_in, 18, 20), w.shape, 2, 1, 1, groups, dtype)
        # grouped layers whose groups the forward tile packs side by side stay implicit
        # (test_grouped_layers_pack_groups_side_by_side checks when they are packed)
        packed = {(s, p): _core.implicit_groups_a_tile(s.desc(1), p) > 1
                  for s in (spec, strided) for p in (FWD, BWD_DATA)}
        want = ("implicit_gemm" if packed[spec, BWD_DATA]
                else ("im2col_explicit" if kg >= 24 else "direct") if narrow else "implicit_gemm")
        assert F.chosen_implementation(spec, BWD_DATA) == want
        assert F.chosen_implementation(spec, BWD_WEIGHTS) == "implicit_gemm"
        # a forward whose kg fills at most half a vector takes direct (unit stride), as does
        # one of K = cg * 9 <= 96 on direct's pixel-vector kernel (f32, kg % 8 == 0) where its
        # runs are >= 80 % full (not these 10-pixel rows: 63 % of 16, 63 % of 8 + 8)
        assert _core.direct_pixels(spec.desc(1), FWD) == (dtype == np.float32 and groups == 1 and c_out % 8 == 0)
        want_fwd = ("implicit_gemm" if packed[spec, FWD]
                    else "direct" if 2 * kg <= LANES[implicit_isa][dtype]
                    else "im2col_explicit" if cg * 9 < 72 else "implicit_gemm")
        assert F.chosen_implementation(spec, FWD) == want_fwd
        assert F.chosen_implementation(strided, FWD) == (
            "implicit_gemm" if packed[strided, FWD] else "im2col_explicit" if cg * 9 < 72 else "implicit_gemm")
        got = fastconv.conv2d_input_grad(gy, w, x.shape, padding=1, groups=groups)
    exp = ref.conv2d_input_grad(gy.astype(np.float64), w.astype(np.float64), x.shape, 1, 1, 1, groups)
    eps = np.finfo(dtype).eps
    bound = 16 * eps * ref.conv2d_input_grad(np.abs(gy).astype(np.float64), np.abs(w).astype(np.float64),
                                             x.shape, 1, 1, 1, groups)
    assert np.all(np.abs(got - exp) <= bound)


#: (C_in, C_out, H, W, groups) -> groups a forward tile packs, by ISA and dtype (csrc/implicit/implicit_plan.c
#: group_pack): G * kg = whole vectors of the tile, G a power of two from 2 to half a vector's
#: lanes dividing the groups; where kg already fills a vector, only while the packed tile's W^T
#: panel and band window stay within 3/4 of L1d (the 7x7 layer's 22 KiB fits any x86 L1d of
#: 32 KiB or more, the 56x56 layer's 41 KiB does not fit 3/4 of any below 54 KiB).
PACKED = {
    (256, 256, 28, 28, 32): {"avx512": (4, 2), "avx2": (2, 1)},   # kg 8: f64 / AVX2 f32 a full vector
    (128, 128, 56, 56, 32): {"avx512": (8, 4), "avx2": (4, 2)},   # kg 4: AVX2 f64 a full vector (13 KiB)
    (32, 32, 9, 10, 16): {"avx512": (8, 4), "avx2": (4, 2)},      # kg 2: one vector a tile
    (512, 512, 7, 7, 32): {"avx512": (2, 1), "avx2": (1, 1)},     # kg 16: 2 x 16 lanes (f32, AVX-512)
    (64, 64, 56, 56, 4): {"avx512": (1, 1), "avx2": (1, 1)},      # kg 16 at 56x56: the window outgrows L1
    (24, 24, 9, 10, 3): {"avx512": (1, 1), "avx2": (1, 1)},       # 3 groups: no power of two divides them
    (64, 64, 9, 10, 1): {"avx512": (1, 1), "avx2": (1, 1)},       # not grouped
}


@pytest.mark.parametrize("shape", list(PACKED), ids=[f"{s[0]}to{s[1]}_{s[2]}x{s[3]}_g{s[4]}" for s in PACKED])
def test_grouped_layers_pack_groups_side_by_side(shape, implicit_isa):
    """fc_implicit_groups_a_tile: how many groups one implicit tile computes, for the forward,
    the weight gradient and (through the transposed problem, here of the same channels) the
    input gradient. Packed layers take implicit GEMM under "auto" in every pass."""
    c_in, c_out, h, w, groups = shape
    want_f32, want_f64 = PACKED[shape][implicit_isa]
    for dtype, want in ((np.float32, want_f32), (np.float64, want_f64)):
        spec = make_spec((2, c_in, h, w), (c_out, c_in // groups, 3, 3), 1, 1, 1, groups, np.dtype(dtype))
        desc = spec.desc(1)
        assert _core.implicit_groups_a_tile(desc, FWD) == want, dtype
        assert _core.implicit_groups_a_tile(desc, BWD_DATA) == want, dtype
        assert _core.implicit_groups_a_tile(desc, BWD_WEIGHTS) == want, dtype
        if want > 1:
            for pass_ in PASSES:
                assert F.chosen_implementation(spec, pass_) == "implicit_gemm"


@pytest.mark.parametrize("c_in, k, want_fwd", [(3, 3, "im2col_explicit"), (7, 3, "im2col_explicit"),
                                               (8, 3, "implicit_gemm"), (3, 7, "implicit_gemm")])
def test_auto_takes_explicit_im2col_for_a_small_lowered_k_forward(c_in, k, want_fwd, implicit_isa):
    """conv_choose.c: a forward with C_in/groups * kh * kw < 72 runs explicit im2col under
    "auto" (the implicit tile's transpose outweighs its few FMAs); the weight gradient stays
    implicit, and the input gradient follows its own (transposed, K = C_out * kh * kw) size.
    (36 filters: in blocks of 8 they take the direct entry's pixel-vector kernel on AVX-512
    below K = 96 instead, test_direct_pixels.py.)"""
    with fastconv.threads(1):
        spec = make_spec((16, c_in, 32, 32), (36, c_in, k, k), 1, "same", 1, 1, np.float32)
        assert F.chosen_implementation(spec, FWD) == want_fwd
        assert F.chosen_implementation(spec, BWD_WEIGHTS) == "implicit_gemm"
        # K_t = 36 * k * k >= 324; an input gradient this narrow (2 * c_in <= the lanes of one
        # vector) takes explicit im2col, see test_auto_routes_a_narrow_input_gradient_off_implicit
        narrow = 2 * c_in <= LANES[implicit_isa][np.dtype(np.float32)]
        assert F.chosen_implementation(spec, BWD_DATA) == ("im2col_explicit" if narrow else "implicit_gemm")
        few_out = make_spec((16, 32, 32, 32), (8, 32, 2, 2), 1, "same", 1, 1, np.float32)
        assert F.chosen_implementation(few_out, BWD_DATA) == "im2col_explicit"  # K_t = 8 * 4
        # K = 32 * 4, but 8 outputs fill half an AVX-512 f32 vector: direct there
        half = 2 * 8 <= LANES[implicit_isa][np.dtype(np.float32)]
        assert F.chosen_implementation(few_out, FWD) == ("direct" if half else "implicit_gemm")


# Weight gradients summed in batch chunks (wgrad_chunks: a power of two up to 8 and the
# batch, while (chunks - 1) * K * 16 <= the output pixels): (case, chunks expected)
CHUNKED = [
    (Case("wgrad_8_chunks_k9", 8, 1, 16, 16, 32, (3, 3), 1), 8),              # K 9, 2048 pixels
    (Case("wgrad_4_chunks_ragged_batch", 7, 4, 16, 16, 16, (3, 3), 1), 4),    # 7 images: 1-2 a chunk
    (Case("wgrad_2_chunks_k_limit", 4, 8, 20, 20, 24, (3, 3), 1), 2),         # 3 * 72 * 16 > 1600 pixels
    (Case("wgrad_chunks_packed_groups", 8, 32, 10, 10, 32, (3, 3), 1, 1, 8), 2),  # 4 a group, G > 1
    (Case("wgrad_8_chunks_s2", 8, 2, 40, 40, 16, (3, 3), 1, 1, 1, 2), 8),    # stride 2 (phased band)
    (Case("wgrad_one_chunk_large_k", 2, 32, 8, 8, 16, (3, 3), 1), 1),
]


def test_weight_gradient_in_batch_chunks_without_bias(implicit_isa, rng):
    """The chunks' dW^T added without a bias gradient to sum (grad_b not asked for)."""
    case = CHUNKED[1][0]
    spec, x, w, b, gy = make_data(rng, case, np.float32)
    assert _core.implicit_wgrad_chunks(spec.desc(2)) > 1
    results = []
    for threads in (1, 2, 3):
        with fastconv.threads(threads):
            poison_workspace(F.workspace_bytes(spec, BWD_WEIGHTS, "im2col"))
            results.append(F._weight_grad(spec, IM2COL, gy, x, False,
                                          gw=nan_filled(spec.weight_shape, spec.dtype))[0])
    assert_close_to_reference(results[0], *ref_weight_grad(gy, x, w.shape, case.stride, case.padding,
                                                            case.dilation, case.groups), np.float32, what="grad_w")
    assert np.array_equal(results[0], results[1]) and np.array_equal(results[0], results[2])


@pytest.mark.parametrize("case, chunks", CHUNKED, ids=[c.name for c, _ in CHUNKED])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_weight_gradient_in_batch_chunks(case, chunks, dtype, implicit_isa, rng):
    """The chunk count depends on sizes only, and the chunked sums (chunk 0 into the result,
    the others added in chunk order, bias included) match the reference and are bitwise the
    same for 1, 2, 3 and 4 threads (1 to 4 unit ranges a chunk)."""
    spec, x, w, b, gy = make_data(rng, case, dtype)
    assert _core.implicit_wgrad_chunks(spec.desc(1)) == chunks
    assert _core.implicit_wgrad_chunks(spec.desc(3)) == chunks
    assert F.chosen_implementation(spec, BWD_WEIGHTS, "im2col") == "implicit_gemm"
    res = run_across_threads(BWD_WEIGHTS, spec, x, w, b, gy, (1, 2, 3, 4))
    check_pass(BWD_WEIGHTS, res, case, x, w, b, gy, dtype)


# Weight gradients whose kernel calls sum several images (wgrad_images: where an image is one
# tile, a power of two up to 8, the images of a chunk and 512 pixels): (case, chunks, images)
IMAGE_BLOCKS = [
    # 49 pixels, 5 images: a block of 4, then 1; the last block's tiles stored into grad_w
    # directly (one chunk); K = 216 and 40 channels leave partial taps and lanes
    (Case("wgrad_image_blocks_ragged", 5, 24, 7, 7, 40, (3, 3), 1), 1, 4),
    # 4 chunks of 3 images: blocks of 2 and 1 in each, summed into the chunks' dW^T
    (Case("wgrad_image_blocks_in_chunks", 12, 1, 8, 8, 16, (3, 3), 1), 4, 2),
    # groups packed side by side (4 channels a group), 30 pixels: blocks of 4 and 2
    (Case("wgrad_image_blocks_packed_groups", 6, 64, 5, 6, 64, (3, 3), 1, 1, 16), 1, 4),
    # stride 2 (phased bands), 7x7 outputs of 3 images: 2 + 1
    (Case("wgrad_image_blocks_s2", 3, 16, 14, 14, 24, (3, 3), 1, 1, 1, 2), 1, 2),
    # 196 pixels: 2 images a call
    (Case("wgrad_image_blocks_14x14", 2, 8, 14, 14, 16, (3, 3), 1), 1, 2),
]


@pytest.mark.parametrize("case, chunks, images", IMAGE_BLOCKS, ids=[c.name for c, _, _ in IMAGE_BLOCKS])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_weight_gradient_sums_image_blocks(case, chunks, images, dtype, implicit_isa, rng):
    """Kernel calls that sum several images' tiles (their bands side by side, their grad_y^T
    rows in one run), ragged last blocks, inside batch chunks and with packed groups: the
    block size depends on sizes only, and the sums match the reference and are bitwise the
    same for 1 to 4 threads."""
    spec, x, w, b, gy = make_data(rng, case, dtype)
    assert _core.implicit_wgrad_chunks(spec.desc(1)) == chunks
    assert _core.implicit_wgrad_images(spec.desc(1)) == images
    assert _core.implicit_wgrad_images(spec.desc(3)) == images
    assert F.chosen_implementation(spec, BWD_WEIGHTS, "im2col") == "implicit_gemm"
    res = run_across_threads(BWD_WEIGHTS, spec, x, w, b, gy, (1, 2, 3, 4))
    check_pass(BWD_WEIGHTS, res, case, x, w, b, gy, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_weight_gradient_of_one_image_block_keeps_no_dwt(dtype, implicit_isa, rng):
    """A batch that is one image block (one chunk, one tile an image) computes each unit in
    one kernel call, which stores into grad_w itself: the workspace holds no K x kg dW^T,
    and the result still matches the reference, bitwise across threads."""
    case = Case("wgrad_one_block", 2, 64, 7, 7, 96, (3, 3), 1)
    spec, x, w, b, gy = make_data(rng, case, dtype)
    assert _core.implicit_wgrad_images(spec.desc(1)) == 2
    res = run_across_threads(BWD_WEIGHTS, spec, x, w, b, gy, (1, 2, 3))
    check_pass(BWD_WEIGHTS, res, case, x, w, b, gy, dtype)
    # three images: blocks of 2 and 1, so the first block's sums go through a dW^T (K = 576
    # rows of 96 lanes, rounded up to whole tiles), and that is all the workspace adds
    spec3 = make_spec((3,) + case.x_shape[1:], case.w_shape, 1, 1, 1, 1, np.dtype(dtype))
    assert _core.implicit_wgrad_images(spec3.desc(1)) == 2
    dwt = 64 * 9 * 96 * np.dtype(dtype).itemsize
    extra = F.workspace_bytes(spec3, BWD_WEIGHTS, "im2col") - F.workspace_bytes(spec, BWD_WEIGHTS, "im2col")
    assert dwt <= extra < 1.2 * dwt
