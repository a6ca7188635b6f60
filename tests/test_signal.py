"""convolve2d / correlate2d against scipy.signal (zero fill), and their errors.

Values are judged with the bound of docs/architecture.md: |z - z_scipy| <= c * eps * (the same operation on
|in1| and |in2|), all on the SciPy side in float64.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastconv

import helpers as H

signal = pytest.importorskip("scipy.signal", reason="SciPy is not installed: the scipy.signal "
                                                    "comparison needs it")

MODES = ["full", "valid", "same"]
FUNCS = {"convolve2d": (fastconv.convolve2d, signal.convolve2d),
         "correlate2d": (fastconv.correlate2d, signal.correlate2d)}

# (image shape, kernel shape): odd and even kernels, 1x1, 1xK, kernel as large as the
# image, kernel larger than the image (full/same only; "valid" swaps or refuses).
SHAPES = [
    ((7, 8), (3, 3)),
    ((7, 8), (2, 2)),
    ((9, 6), (4, 3)),
    ((5, 5), (1, 1)),
    ((6, 9), (1, 4)),
    ((6, 9), (5, 1)),
    ((4, 5), (4, 5)),
    ((1, 1), (1, 1)),
    ((1, 7), (1, 3)),
    ((12, 11), (6, 5)),
]
BIGGER_KERNEL = [((3, 4), (5, 6)), ((2, 2), (3, 4)), ((3, 3), (4, 2)), ((1, 1), (2, 3))]


def _expected(name, a, k, mode):
    ref = FUNCS[name][1]
    z = ref(a.astype(np.float64), k.astype(np.float64), mode=mode)
    bound = ref(np.abs(a.astype(np.float64)), np.abs(k.astype(np.float64)), mode=mode)
    return z, bound


@pytest.mark.parametrize("name", list(FUNCS))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shapes", SHAPES, ids=[f"{a}-{k}" for a, k in SHAPES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_matches_scipy(name, mode, shapes, dtype, rng):
    a = rng.standard_normal(shapes[0]).astype(dtype)
    k = rng.standard_normal(shapes[1]).astype(dtype)
    z = FUNCS[name][0](a, k, mode=mode)
    exp, bound = _expected(name, a, k, mode)
    H.assert_close_to_reference(z, exp, bound, dtype, what=f"{name} {mode}")


@pytest.mark.parametrize("name", list(FUNCS))
@pytest.mark.parametrize("mode", ["full", "same"])
@pytest.mark.parametrize("shapes", BIGGER_KERNEL, ids=[f"{a}-{k}" for a, k in BIGGER_KERNEL])
def test_kernel_larger_than_image(name, mode, shapes, rng):
    a = rng.standard_normal(shapes[0])
    k = rng.standard_normal(shapes[1])
    z = FUNCS[name][0](a, k, mode=mode)
    exp, bound = _expected(name, a, k, mode)
    H.assert_close_to_reference(z, exp, bound, np.float64, what=f"{name} {mode}")


SWAP_SHAPES = [((3, 4), (5, 6)), ((2, 2), (3, 4)), ((1, 1), (2, 3)), ((2, 3), (2, 5)), ((3, 2), (6, 2))]


@pytest.mark.parametrize("name", list(FUNCS))
@pytest.mark.parametrize("shapes", SWAP_SHAPES, ids=[f"{a}-{k}" for a, k in SWAP_SHAPES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_valid_mode_swaps_when_in2_is_larger(name, shapes, dtype, rng):
    """SciPy slides the larger input under the smaller one in "valid" mode."""
    a = rng.standard_normal(shapes[0]).astype(dtype)
    k = rng.standard_normal(shapes[1]).astype(dtype)
    z = FUNCS[name][0](a, k, mode="valid")
    exp, bound = _expected(name, a, k, "valid")
    H.assert_close_to_reference(z, exp, bound, dtype, what=f"{name} valid swapped")


@pytest.mark.parametrize("name", list(FUNCS))
def test_valid_swap_asymmetric_values(name):
    """A hand-checkable swap: correlate2d([[1, 2]], [[1, 2, 3]], 'valid')."""
    a = np.array([[1.0, 2.0]])
    k = np.array([[1.0, 2.0, 3.0]])
    z = FUNCS[name][0](a, k, mode="valid")
    if name == "correlate2d":
        # SciPy: correlate k (larger) with a, then reverse: [1*1+2*2, 2*1+3*2] = [5, 8] -> [8, 5]
        np.testing.assert_array_equal(z, [[8.0, 5.0]])
    else:
        # Convolution commutes: [1*2 + 2*1, 2*2 + 3*1] = [4, 7]
        np.testing.assert_array_equal(z, [[4.0, 7.0]])
    np.testing.assert_array_equal(z, FUNCS[name][1](a, k, mode="valid"))


def test_convolution_flips_the_kernel():
    """The docstring's example: an edge detector flips sign between the two."""
    step = np.array([[0.0, 0.0, 1.0, 1.0]])
    d = np.array([[-1.0, 1.0]])
    np.testing.assert_array_equal(fastconv.correlate2d(step, d, mode="valid"), [[0.0, 1.0, 0.0]])
    np.testing.assert_array_equal(fastconv.convolve2d(step, d, mode="valid"), [[0.0, -1.0, 0.0]])


def test_default_mode_is_full(rng):
    a, k = rng.standard_normal((5, 6)), rng.standard_normal((2, 3))
    for name, (ours, _) in FUNCS.items():
        assert ours(a, k).shape == (6, 8)
        np.testing.assert_array_equal(ours(a, k), ours(a, k, mode="full"))


# ----------------------------------------------------------------------------- dtypes and inputs

@pytest.mark.parametrize("name", list(FUNCS))
@pytest.mark.parametrize("da,dk,expected", [
    (np.float32, np.float32, np.float32),
    (np.float64, np.float64, np.float64),
    (np.float32, np.float64, np.float64),
    (np.int64, np.int64, np.float64),
    (np.int32, np.float32, np.float64),
    (np.uint8, np.uint8, np.float64),
    (bool, bool, np.float64),
    (bool, np.float32, np.float64),
])
def test_dtype_rules(name, da, dk, expected, rng):
    a = rng.integers(0, 3, size=(6, 7)).astype(da)
    k = rng.integers(0, 3, size=(3, 2)).astype(dk)
    for mode in MODES:
        z = FUNCS[name][0](a, k, mode=mode)
        assert z.dtype == expected, (mode, z.dtype)
        exp, bound = _expected(name, a, k, mode)
        H.assert_close_to_reference(z, exp, bound, expected, what=f"{name} {mode}")


@pytest.mark.parametrize("name", list(FUNCS))
def test_lists_and_layouts(name, rng):
    a = rng.standard_normal((6, 7))
    k = rng.standard_normal((3, 4))
    ours, ref = FUNCS[name]
    base = ours(a, k, mode="same")
    np.testing.assert_allclose(ours(a.tolist(), k.tolist(), mode="same"), base, rtol=0, atol=0)
    for lname in H.LAYOUT_NAMES:
        np.testing.assert_array_equal(ours(H.layout(a, lname), H.layout(k, lname), mode="same"), base,
                                      err_msg=lname)
    z = ours(a, k, mode="same")
    assert z.flags.c_contiguous


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("name", list(FUNCS))
def test_errors(name):
    f = FUNCS[name][0]
    img, ker = np.ones((5, 5)), np.ones((3, 3))
    with pytest.raises(ValueError, match="in1"):
        f(np.ones(5), ker)
    with pytest.raises(ValueError, match="in1"):
        f(np.ones((1, 5, 5)), ker)
    with pytest.raises(ValueError, match="in2"):
        f(img, np.ones(3))
    with pytest.raises(ValueError, match="in2"):
        f(img, np.ones((1, 3, 3)))
    with pytest.raises(ValueError, match="empty"):
        f(np.ones((0, 5)), ker)
    with pytest.raises(ValueError, match="empty"):
        f(img, np.ones((3, 0)))
    for bad in ("fill", "FULL", "", None, 1):
        with pytest.raises(ValueError, match="mode"):
            f(img, ker, mode=bad)
    with pytest.raises(ValueError, match="valid"):
        f(np.ones((5, 3)), np.ones((3, 5)), mode="valid")
    with pytest.raises(ValueError, match="valid"):
        f(np.ones((2, 6)), np.ones((3, 1)), mode="valid")
    with pytest.raises(TypeError, match="in1"):
        f(img.astype(np.complex128), ker)
    with pytest.raises(TypeError, match="in2"):
        f(img, ker.astype(np.float16))
    with pytest.raises(TypeError, match="in1"):
        f(np.array([["a", "b"]]), ker)


@pytest.mark.parametrize("name", list(FUNCS))
def test_scipy_refuses_the_same_valid_inputs(name):
    """The "neither is larger" rule is SciPy's (so the error above is not our invention)."""
    with pytest.raises(ValueError):
        FUNCS[name][1](np.ones((5, 3)), np.ones((3, 5)), mode="valid")
