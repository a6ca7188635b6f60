"""The direct entry's pixel-vector kernels, float32 on AVX-512 and AVX2: the forward
(csrc/direct_fwd_pixels_*.c: 8 channels x 32 pixels, or 4 x 24 on AVX2, summed in registers
over a padded copy of each image) and the weight gradient (csrc/direct_wgrad_pixels_*.c),
and the "auto" rules that send passes of few taps to them (conv_choose.c): results against
the reference into NaN-filled outputs with a poisoned workspace, the fused ReLU, bitwise the
same at 1 and 3 threads, the unit-stride input gradient through the forward, non-finite
operands, and where they do and do not run."""
from __future__ import annotations

import numpy as np
import pytest

import fastconv
from fastconv import _core
from fastconv import functional as F
from fastconv._spec import make_spec
from helpers import (assert_close_to_reference, nan_filled, poison_workspace, ref_bias_grad, ref_forward,
                     ref_input_grad, ref_weight_grad)

FWD, BWD_DATA, BWD_WEIGHTS = 0, 1, 2
DIRECT = F._algorithm_code("direct")
GENERIC, AVX2, AVX512 = 0, 1, 2

# (x shape, filters, kernel, padding): every one has a multiple of 8 filters, so the
# pixel-vector kernel takes its forward on AVX-512 and AVX2. Output rows: 16-pixel runs on
# AVX-512, 8-pixel runs in tiles of three rows on AVX2; a row's last run overlaps the one
# before where the width is not a multiple (narrower rows: one short run)
SHAPES = [
    ((2, 3, 32, 32), 32, (3, 3), 1),                  # CIFAR's first layer
    ((3, 1, 28, 28), 32, (3, 3), "valid"),            # mnist's: 26-pixel rows, a short run each
    ((1, 1, 16, 16), 8, (3, 3), 1),                   # one channel block, one input channel
    ((2, 5, 3, 16), 16, (3, 3), 1),                   # 3 rows: the last pairs its own runs
    ((1, 3, 7, 36), 8, (3, 3), 1),                    # 7 rows of 16 + 16 + 4: a run left over
    ((2, 2, 5, 9), 16, (3, 3), 1),                    # rows shorter than a vector
    ((2, 4, 10, 48), 24, (3, 5), ((1, 1), (2, 2))),   # 3x5, three 16-pixel runs a row
    ((1, 3, 17, 18), 16, (2, 3), "valid"),            # unpadded, 16 x 16 outputs
    ((2, 2, 16, 16), 8, (4, 4), "same"),              # even kernel: padding 1 before, 2 after
    ((1, 6, 12, 14), 40, (3, 3), 2),                  # padding 2: rows of padding only
    ((3, 2, 9, 32), 8, (1, 7), ((0, 0), (3, 3))),     # a row kernel
    ((2, 3, 7, 5), 16, (3, 3), 1),                    # rows narrower than AVX2's vector
    ((1, 2, 4, 8), 8, (3, 3), 1),                     # one AVX2 vector a row, 4 rows
]
IDS = [f"{x[1]}x{x[2]}x{x[3]}-{k}-{kern[0]}x{kern[1]}" for x, k, kern, _ in SHAPES]


def _spec(x_shape, filters, kernel, padding):
    return make_spec(x_shape, (filters, x_shape[1]) + tuple(kernel), 1, padding, 1, 1, np.dtype(np.float32))


def _padding(spec):
    top, bottom, left, right = spec.padding
    return ((top, bottom), (left, right))


def _forward(spec, x, w, b, algorithm="direct", activation=None):
    poison_workspace(F.workspace_bytes(spec, FWD, algorithm))
    out = nan_filled(spec.output_shape, np.float32)
    y = fastconv.conv2d(x, w, b, 1, _padding(spec), 1, 1, algorithm=algorithm, activation=activation, out=out)
    assert y is out
    return y


@pytest.fixture(params=[AVX2, AVX512], ids=["avx2", "avx512"])
def pixel_isa(request):
    """Each ISA with a pixel-vector kernel active in turn (skipped where the CPU lacks it)."""
    if _core.best_isa() < request.param:
        pytest.skip("this CPU lacks the ISA")
    before = _core.active_isa()
    assert _core.set_isa(request.param) == request.param
    yield request.param
    _core.set_isa(before)


@pytest.mark.parametrize("x_shape, filters, kernel, padding", SHAPES, ids=IDS)
@pytest.mark.parametrize("bias", [True, False])
def test_pixel_forward_against_reference(x_shape, filters, kernel, padding, bias, pixel_isa, rng):
    spec = _spec(x_shape, filters, kernel, padding)
    x = rng.standard_normal(spec.input_shape).astype(np.float32)
    w = rng.standard_normal(spec.weight_shape).astype(np.float32)
    b = rng.standard_normal(filters).astype(np.float32) if bias else None
    results = {}
    for threads in (1, 3):
        with fastconv.threads(threads):
            assert _core.direct_pixels(spec.desc(threads), FWD)
            results[threads] = _forward(spec, x, w, b)
    exp, bound = ref_forward(x, w, b, 1, _padding(spec), 1, 1)
    assert_close_to_reference(results[1], exp, bound, np.float32)
    np.testing.assert_array_equal(results[1], results[3])  # each output summed by one tile, in order
    # the ReLU in the kernel's store: exactly the ReLU of the same sums
    with fastconv.threads(2):
        y_relu = _forward(spec, x, w, b, activation="relu")
    np.testing.assert_array_equal(y_relu, np.maximum(results[1], 0))


def test_pixel_input_gradient_through_the_transposed_forward(pixel_isa, rng):
    """At unit stride direct's input gradient is the forward of grad_y with the rotated,
    channel-swapped weights: 16 input channels (its filters) in blocks of 8, 32-pixel rows."""
    spec = make_spec((2, 16, 8, 32), (4, 16, 3, 3), 1, 1, 1, 1, np.dtype(np.float32))
    assert _core.direct_pixels(spec.desc(1), BWD_DATA)
    gy = rng.standard_normal(spec.output_shape).astype(np.float32)
    w = rng.standard_normal(spec.weight_shape).astype(np.float32)
    poison_workspace(F.workspace_bytes(spec, BWD_DATA, "direct"))
    gx = F._input_grad(spec, DIRECT, gy, w, gx=nan_filled(spec.input_shape, np.float32))
    exp, bound = ref_input_grad(gy, w, spec.input_shape, 1, _padding(spec), 1, 1)
    assert_close_to_reference(gx, exp, bound, np.float32)


def test_non_finite_operands(pixel_isa, rng):
    """NaN and inf in x reach exactly the outputs whose windows hold them (the padding taps
    the kernel computes multiply zeros by finite weights); an inf weight sends the call to an
    exact entry (conv.c routes it), which the padding taps then make NaN as the definition
    does."""
    spec = _spec((1, 3, 16, 16), 8, (3, 3), 1)
    x = rng.standard_normal(spec.input_shape).astype(np.float32)
    w = rng.standard_normal(spec.weight_shape).astype(np.float32)
    x[0, 1, 0, 0], x[0, 2, 9, 15] = np.inf, np.nan
    y = _forward(spec, x, w, None)
    with np.errstate(invalid="ignore"):
        exp = fastconv.reference.conv2d(x.astype(np.float64), w.astype(np.float64), None, 1, 1)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(exp))
    np.testing.assert_array_equal(np.isinf(y), np.isinf(exp))
    ok = np.isfinite(exp)
    np.testing.assert_allclose(y[ok], exp[ok], rtol=1e-4, atol=1e-4)
    y_relu = _forward(spec, x, w, None, activation="relu")  # a NaN stays NaN (fc_relu_fwd's rule)
    np.testing.assert_array_equal(y_relu, np.where(np.isnan(y) | (y > 0), y, 0))
    assert np.isnan(y_relu).sum() == np.isnan(exp).sum() > 0
    x = rng.standard_normal(spec.input_shape).astype(np.float32)
    w[3, 0, 0, 0] = np.inf
    y = _forward(spec, x, w, None)
    with np.errstate(invalid="ignore"):
        exp = fastconv.reference.conv2d(x.astype(np.float64), w.astype(np.float64), None, 1, 1)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(exp))
    assert np.isnan(y[0, 3, 0, 0]), "the inf weight's padding tap at the top-left corner"


@pytest.mark.parametrize("c_in, k, want", [(1, 3, "direct"), (3, 3, "direct"), (8, 3, "direct"),
                                           (3, 5, "direct"), (16, 3, None), (32, 1, None)])
def test_auto_takes_the_pixel_kernel_for_few_taps(c_in, k, want, pixel_isa):
    """conv_choose.c: a forward of K = C_in * kh * kw <= 96 (not 1x1) that the kernel takes
    and whose runs (16 pixels on AVX-512, 8 on AVX2) are >= 80 % full runs on direct under
    "auto" (CIFAR's first layer 1.2-1.5x faster than explicit im2col on Zen 4); more taps,
    1x1 layers, emptier rows, other passes, filters not in blocks of 8, float64 and the
    portable kernels keep their entries."""
    spec = make_spec((16, c_in, 32, 32), (32, c_in, k, k), 1, "same", 1, 1, np.float32)
    got = F.chosen_implementation(spec, FWD)
    assert (got == "direct") == (want == "direct"), got
    assert F.chosen_implementation(spec, BWD_DATA) != "direct"  # (the weight gradient: below)
    odd = make_spec((16, c_in, 32, 32), (36, c_in, k, k), 1, "same", 1, 1, np.float32)  # 36 filters
    assert not _core.direct_pixels(odd.desc(1), FWD) and F.chosen_implementation(odd, FWD) != "direct"
    rows = make_spec((16, c_in, 30, 30), (32, c_in, k, k), 1, "same", 1, 1, np.float32)  # 30-pixel rows
    assert _core.direct_pixels(rows.desc(1), FWD) and F.chosen_implementation(rows, FWD) == got
    # rows whose runs are 75 % full: 16 + 8 pixels on AVX-512, 8 + 8 + 2 on AVX2
    short = 24 if pixel_isa == AVX512 else 18
    short = make_spec((16, c_in, short, short), (32, c_in, k, k), 1, "same", 1, 1, np.float32)
    assert _core.direct_pixels(short.desc(1), FWD) and F.chosen_implementation(short, FWD) != "direct"
    if pixel_isa == AVX2:  # 24-pixel rows fill AVX2's three runs
        full = make_spec((16, c_in, 24, 24), (32, c_in, k, k), 1, "same", 1, 1, np.float32)
        assert F.chosen_implementation(full, FWD) == got
    f64 = make_spec((16, c_in, 32, 32), (32, c_in, k, k), 1, "same", 1, 1, np.float64)
    assert not _core.direct_pixels(f64.desc(1), FWD)
    _core.set_isa(GENERIC)  # restored by the fixture (direct's row kernels may still win here)
    assert not _core.direct_pixels(spec.desc(1), FWD)


@pytest.mark.parametrize("x_shape, filters, kernel", [((1, 4, 32, 32), 12, (3, 3)),   # 12 filters
                                                      ((1, 4, 32, 32), 16, (3, 3))])
def test_shapes_it_leaves_to_the_row_kernels_are_still_right(x_shape, filters, kernel, pixel_isa, rng):
    """Filters not in blocks of 8, grouped layers, strides and dilations take direct's row
    kernels, against the reference."""
    for groups, stride, dilation in ((1, 1, 1), (2, 1, 1), (1, 2, 1), (1, 1, 2)):
        spec = make_spec(x_shape, (filters, x_shape[1] // groups) + kernel, stride, 1, dilation, groups,
                         np.dtype(np.float32))
        if groups == 1 and stride == 1 and dilation == 1:
            assert _core.direct_pixels(spec.desc(1), FWD) == (filters % 8 == 0)
        else:
            assert not _core.direct_pixels(spec.desc(1), FWD)
        x = rng.standard_normal(spec.input_shape).astype(np.float32)
        w = rng.standard_normal(spec.weight_shape).astype(np.float32)
        poison_workspace(F.workspace_bytes(spec, FWD, "direct"))
        y = fastconv.conv2d(x, w, None, stride, 1, dilation, groups, algorithm="direct",
                            out=nan_filled(spec.output_shape, np.float32))
        exp, bound = ref_forward(x, w, None, stride, _padding(spec), dilation, groups)
        assert_close_to_reference(y, exp, bound, np.float32)


# ----------------------------------------------------------------------------- weight gradient

def _weight_grad(spec, gy, x, with_bias):
    poison_workspace(F.workspace_bytes(spec, BWD_WEIGHTS, "direct"))
    gw = nan_filled(spec.weight_shape, np.float32)
    gb = nan_filled((spec.c_out,), np.float32) if with_bias else None
    got_w, got_b = F._weight_grad(spec, DIRECT, gy, x, with_bias, gw=gw, gb=gb)
    assert got_w is gw and got_b is gb
    return gw, gb


@pytest.mark.parametrize("x_shape, filters, kernel, padding", SHAPES, ids=IDS)
@pytest.mark.parametrize("bias", [True, False])
def test_pixel_weight_grad_against_reference(x_shape, filters, kernel, padding, bias, pixel_isa, rng):
    """direct_wgrad_pixels_*.c: grad_y and the band read as they lie, 4 filters x 4 (AVX2: 3)
    taps of partial-sum vectors, a row's short last run masked; the bias gradient as one more
    tap over a plane of ones. Against the reference into NaN-filled outputs with a poisoned
    workspace, bitwise the same at 1 and 3 threads (fixed batch chunks, summed in order)."""
    spec = _spec(x_shape, filters, kernel, padding)
    x = rng.standard_normal(spec.input_shape).astype(np.float32)
    gy = rng.standard_normal(spec.output_shape).astype(np.float32)
    results = {}
    for threads in (1, 3):
        with fastconv.threads(threads):
            assert _core.direct_pixels(spec.desc(threads), BWD_WEIGHTS)
            results[threads] = _weight_grad(spec, gy, x, bias)
    exp, bound = ref_weight_grad(gy, x, spec.weight_shape, 1, _padding(spec), 1, 1)
    assert_close_to_reference(results[1][0], exp, bound, np.float32, what="grad_w")
    np.testing.assert_array_equal(results[1][0], results[3][0])
    if bias:
        exp_b, bound_b = ref_bias_grad(gy)
        assert_close_to_reference(results[1][1], exp_b, bound_b, np.float32, what="grad_b")
        np.testing.assert_array_equal(results[1][1], results[3][1])


@pytest.mark.parametrize("n", [9, 11, 20])
def test_pixel_weight_grad_sums_the_batch_in_fixed_chunks(n, pixel_isa, rng):
    """Batches of more images than chunks (8): uneven chunks, each image counted once, the
    same bits at 1, 2 and 3 threads."""
    spec = _spec((n, 3, 12, 32), 16, (3, 3), 1)
    x = rng.standard_normal(spec.input_shape).astype(np.float32)
    gy = rng.standard_normal(spec.output_shape).astype(np.float32)
    results = []
    for threads in (1, 2, 3):
        with fastconv.threads(threads):
            results.append(_weight_grad(spec, gy, x, True))
    exp, bound = ref_weight_grad(gy, x, spec.weight_shape, 1, 1, 1, 1)
    assert_close_to_reference(results[0][0], exp, bound, np.float32, what="grad_w")
    assert_close_to_reference(results[0][1], *ref_bias_grad(gy), np.float32, what="grad_b")
    for gw, gb in results[1:]:
        np.testing.assert_array_equal(gw, results[0][0])
        np.testing.assert_array_equal(gb, results[0][1])


def test_pixel_weight_grad_non_finite_operands(pixel_isa, rng):
    """It multiplies grad_y by the padding's zeros, as the definition does, so an inf in grad_y
    next to the border makes the taps that reach the padding NaN, and the driver does not
    route such a call away (no pass over grad_y to check it); an inf in x reaches the taps
    whose windows hold it; the masked lanes past a row add nothing, NaN or not."""
    spec = _spec((2, 3, 9, 21), 8, (3, 3), 1)  # 21-pixel rows: a masked run each
    x = rng.standard_normal(spec.input_shape).astype(np.float32)
    gy = rng.standard_normal(spec.output_shape).astype(np.float32)
    gy[1, 2, 0, 0] = np.inf
    x[0, 1, 4, 20], x[1, 0, 8, 5] = np.nan, -np.inf
    gw, gb = _weight_grad(spec, gy, x, True)
    with np.errstate(invalid="ignore"):
        exp = fastconv.reference.conv2d_weight_grad(gy.astype(np.float64), x.astype(np.float64),
                                                    spec.weight_shape, 1, 1)
    np.testing.assert_array_equal(np.isnan(gw), np.isnan(exp))
    np.testing.assert_array_equal(np.isinf(gw), np.isinf(exp))
    assert np.isnan(gw[2, :, 0, 0]).all(), "the inf's taps over the top-left padding"
    ok = np.isfinite(exp)
    np.testing.assert_allclose(gw[ok], exp[ok], rtol=1e-4, atol=1e-3)
    assert np.isinf(gb[2]) and np.isfinite(np.delete(gb, 2)).all()


def test_auto_takes_the_pixel_weight_grad_for_few_taps(pixel_isa):
    """conv_choose.c: weight gradients of K <= 27 on rows of whole vectors (CIFAR's first layer,
    a 224-pixel image) or of one input channel and 3x3 (mnist_c1, before depthwise) run on
    direct; rows with a masked run, K = 36, 5x5 of one channel, and the portable kernels keep
    their entries; K > 96 is beyond the kernel's accumulators."""
    f32 = np.float32

    def chosen(x_shape, filters, k, padding):
        spec = make_spec(x_shape, (filters, x_shape[1], k, k), 1, padding, 1, 1, f32)
        return F.chosen_implementation(spec, BWD_WEIGHTS), _core.direct_pixels(spec.desc(1), BWD_WEIGHTS)

    assert chosen((16, 3, 32, 32), 32, 3, 1) == ("direct", True)
    assert chosen((2, 3, 224, 224), 64, 3, 1) == ("direct", True)
    assert chosen((16, 1, 28, 28), 32, 3, 0) == ("direct", True)      # mnist_c1: not depthwise
    assert chosen((16, 3, 28, 28), 32, 3, 1) == ("implicit_gemm", True)  # 16 + 12 (or 3 x 8 + 4)
    assert chosen((16, 4, 32, 32), 32, 3, 1) == ("implicit_gemm", True)  # K = 36
    assert chosen((16, 1, 28, 28), 16, 5, 0) == ("depthwise", True)
    assert chosen((16, 16, 32, 32), 32, 3, 1) == ("implicit_gemm", False)  # K = 144
    assert chosen((16, 3, 32, 32), 36, 3, 1)[1] is False  # filters not in blocks of 8
    _core.set_isa(GENERIC)  # restored by the fixture
    assert chosen((16, 3, 32, 32), 32, 3, 1)[1] is False


def test_weight_grads_beyond_its_accumulators_take_the_row_kernels(pixel_isa, rng):
    """K = 16 * 9 > 96 under algorithm="direct": the row kernels, against the reference."""
    spec = _spec((2, 16, 10, 20), 8, (3, 3), 1)
    assert not _core.direct_pixels(spec.desc(1), BWD_WEIGHTS)
    x = rng.standard_normal(spec.input_shape).astype(np.float32)
    gy = rng.standard_normal(spec.output_shape).astype(np.float32)
    gw, gb = _weight_grad(spec, gy, x, True)
    assert_close_to_reference(gw, *ref_weight_grad(gy, x, spec.weight_shape, 1, 1, 1, 1), np.float32)
    assert_close_to_reference(gb, *ref_bias_grad(gy), np.float32)
