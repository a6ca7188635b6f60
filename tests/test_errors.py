"""Every bad input raises the right error type with a message that names the argument.

issue 2, "Inputs": ValueError/TypeError naming the argument and what was expected;
nothing crashes; size products are checked for overflow before allocating (MemoryError).
"""
from __future__ import annotations

import numpy as np
import pytest

import fastconv
from fastconv import functional
from fastconv import reference as ref

F32 = np.float32


def X(shape=(2, 4, 6, 6), dtype=F32):
    return np.ones(shape, dtype)


def W(shape=(6, 4, 3, 3), dtype=F32):
    return np.ones(shape, dtype)


def GY(shape=(2, 6, 4, 4), dtype=F32):
    return np.ones(shape, dtype)


# The four entry points, each as a function of (x, weight, grad_output, **options) so one
# table of bad options runs through all of them.
def call_conv2d(x, w, gy, **kw):
    return fastconv.conv2d(x, w, **kw)


def call_backward(x, w, gy, **kw):
    return fastconv.conv2d_backward(gy, x, w, **kw)


def call_input_grad(x, w, gy, **kw):
    return fastconv.conv2d_input_grad(gy, w, x.shape, **kw)


def call_weight_grad(x, w, gy, **kw):
    return fastconv.conv2d_weight_grad(gy, x, w.shape, **kw)


ENTRY_POINTS = [call_conv2d, call_backward, call_input_grad, call_weight_grad]
EP_IDS = ["conv2d", "conv2d_backward", "conv2d_input_grad", "conv2d_weight_grad"]
entry_points = pytest.mark.parametrize("call", ENTRY_POINTS, ids=EP_IDS)


def test_valid_baseline_calls_succeed():
    """The defaults used below are a valid problem, so each error comes from the one thing
    each test changes."""
    assert fastconv.conv2d(X(), W()).shape == (2, 6, 4, 4)
    for call in ENTRY_POINTS:
        call(X(), W(), GY())


# ----------------------------------------------------------------------------- options

BAD_OPTIONS = [
    # (options, error type, pattern that must appear in the message)
    (dict(stride=0), ValueError, "stride"),
    (dict(stride=-1), ValueError, "stride"),
    (dict(stride=(1, 0)), ValueError, "stride"),
    (dict(stride=1.5), TypeError, "stride"),
    (dict(stride=(1, 2.0)), TypeError, "stride"),
    (dict(stride="2"), TypeError, "stride"),
    (dict(stride=True), TypeError, "stride"),
    (dict(stride=None), TypeError, "stride"),
    (dict(stride=(1, 1, 1)), ValueError, "stride"),
    (dict(dilation=0), ValueError, "dilation"),
    (dict(dilation=(0, 1)), ValueError, "dilation"),
    (dict(dilation=1.0), TypeError, "dilation"),
    (dict(dilation=(1,)), ValueError, "dilation"),
    (dict(padding=-1), ValueError, "padding"),
    (dict(padding=(0, -1)), ValueError, "padding"),
    (dict(padding=((0, 0), (-1, 0))), ValueError, "padding"),
    (dict(padding=((1, 2), (0, 1, 2))), ValueError, "padding"),
    (dict(padding=(1, 2, 3)), ValueError, "padding"),
    (dict(padding=(1, 2, 3, 4)), ValueError, "padding"),
    (dict(padding="full"), ValueError, "padding"),
    (dict(padding="causal"), ValueError, "padding"),
    (dict(padding=""), ValueError, "padding"),
    (dict(padding=1.5), TypeError, "padding"),
    (dict(padding=None), TypeError, "padding"),
    (dict(padding=((1, 1), 1)), (TypeError, ValueError), "padding"),
    (dict(groups=0), ValueError, "groups"),
    (dict(groups=-2), ValueError, "groups"),
    (dict(groups=1.0), TypeError, "groups"),
    (dict(groups="1"), TypeError, "groups"),
    (dict(algorithm="fft"), ValueError, "algorithm"),
    (dict(algorithm=None), ValueError, "algorithm"),
    (dict(algorithm=1), ValueError, "algorithm"),
]


@entry_points
@pytest.mark.parametrize("options,error,pattern", BAD_OPTIONS,
                         ids=[f"{list(o)[0]}={list(o.values())[0]!r}" for o, _, _ in BAD_OPTIONS])
def test_bad_options(call, options, error, pattern):
    with pytest.raises(error, match=pattern):
        call(X(), W(), GY(), **options)


# ----------------------------------------------------------------------------- shapes

@pytest.mark.parametrize("shape", [(4, 6, 6), (1, 2, 4, 6, 6), (6,), ()])
def test_x_wrong_ndim(shape):
    with pytest.raises(ValueError, match=r"\bx\b.*4-D"):
        fastconv.conv2d(np.ones(shape, F32), W())
    with pytest.raises(ValueError, match=r"\bx\b.*4-D"):
        fastconv.conv2d_backward(GY(), np.ones(shape, F32), W())
    with pytest.raises(ValueError, match=r"\bx\b.*4-D"):
        fastconv.conv2d_weight_grad(GY(), np.ones(shape, F32), (6, 4, 3, 3))


@pytest.mark.parametrize("shape", [(6, 4, 3), (1, 6, 4, 3, 3), (3, 3)])
def test_weight_wrong_ndim(shape):
    with pytest.raises(ValueError, match="weight.*4-D"):
        fastconv.conv2d(X(), np.ones(shape, F32))
    with pytest.raises(ValueError, match="weight.*4-D"):
        fastconv.conv2d_backward(GY(), X(), np.ones(shape, F32))
    with pytest.raises(ValueError, match="weight.*4-D"):
        fastconv.conv2d_input_grad(GY(), np.ones(shape, F32), (2, 4, 6, 6))


@pytest.mark.parametrize("shape", [(6, 4, 4), (1, 2, 6, 4, 4)])
def test_grad_output_wrong_ndim(shape):
    for call in (call_backward, call_input_grad, call_weight_grad):
        with pytest.raises(ValueError, match="grad_output.*4-D"):
            call(X(), W(), np.ones(shape, F32))


@pytest.mark.parametrize("gy_shape", [(2, 6, 4, 5), (2, 6, 3, 4), (1, 6, 4, 4), (2, 5, 4, 4), (2, 6, 6, 6)])
@pytest.mark.parametrize("call", ENTRY_POINTS[1:], ids=EP_IDS[1:])
def test_grad_output_wrong_shape(call, gy_shape):
    with pytest.raises(ValueError, match=r"grad_output.*\(2, 6, 4, 4\)"):
        call(X(), W(), np.ones(gy_shape, F32))


@entry_points
def test_channel_mismatch(call):
    with pytest.raises(ValueError, match=r"weight.*shape\[1\]|weight_shape"):
        call(X((2, 4, 6, 6)), W((6, 3, 3, 3)), GY())


@entry_points
def test_channel_mismatch_with_groups(call):
    # groups=2: weight must have C_in/groups = 2 input channels, has 4.
    with pytest.raises(ValueError, match=r"weight"):
        call(X((2, 4, 6, 6)), W((6, 4, 3, 3)), GY(), groups=2)


@entry_points
def test_groups_not_dividing_c_in(call):
    with pytest.raises(ValueError, match=r"groups=3.*C_in=4"):
        call(X((2, 4, 6, 6)), W((6, 1, 3, 3)), GY(), groups=3)


@entry_points
def test_groups_not_dividing_c_out(call):
    with pytest.raises(ValueError, match=r"groups=2.*C_out=5"):
        call(X((2, 4, 6, 6)), W((5, 2, 3, 3)), GY((2, 5, 4, 4)), groups=2)


@entry_points
@pytest.mark.parametrize("options", [dict(), dict(padding=1, dilation=3), dict(padding=((0, 0), (1, 1)))],
                         ids=["plain", "dilated", "asym"])
def test_kernel_larger_than_padded_input(call, options):
    x = X((1, 4, 3, 4))
    w = W((6, 4, 4, 5))
    with pytest.raises(ValueError, match="kernel.*larger than the padded input"):
        call(x, w, GY((1, 6, 1, 1)), **options)


@entry_points
@pytest.mark.parametrize("x_shape", [(2, 0, 6, 6), (2, 4, 0, 6), (2, 4, 6, 0)])
def test_zero_size_input_dims(call, x_shape):
    w = W((6, x_shape[1], 1, 1)) if x_shape[1] == 0 else W((6, 4, 1, 1))
    with pytest.raises(ValueError, match=r"\bx\b|input_shape"):
        call(X(x_shape), w, GY((2, 6, x_shape[2], x_shape[3])))


@entry_points
@pytest.mark.parametrize("w_shape", [(6, 4, 0, 3), (6, 4, 3, 0)])
def test_zero_size_kernel_dims(call, w_shape):
    with pytest.raises(ValueError, match="weight"):
        call(X(), W(w_shape), GY())


def test_zero_size_kernel_channels_with_zero_input_channels():
    with pytest.raises(ValueError, match=r"\bx\b"):
        fastconv.conv2d(X((2, 0, 6, 6)), W((6, 0, 3, 3)))


# ----------------------------------------------------------------------------- bias and out

@pytest.mark.parametrize("shape", [(5,), (7,), (6, 1), (1, 6), ()])
def test_bad_bias_shape(shape):
    with pytest.raises(ValueError, match=r"bias.*\(6,\)"):
        fastconv.conv2d(X(), W(), np.ones(shape, F32))


def test_bad_out_shape():
    with pytest.raises(ValueError, match=r"out.*shape.*\(2, 6, 4, 4\)"):
        fastconv.conv2d(X(), W(), out=np.empty((2, 6, 4, 5), F32))
    with pytest.raises(ValueError, match="out.*shape"):
        fastconv.conv2d(X(), W(), out=np.empty((2 * 6 * 4 * 4,), F32))


def test_bad_out_dtype():
    with pytest.raises(TypeError, match="out.*dtype.*float32"):
        fastconv.conv2d(X(), W(), out=np.empty((2, 6, 4, 4), np.float64))
    # Promoted result (float64): a float32 out is refused, not silently downcast.
    with pytest.raises(TypeError, match="out.*dtype.*float64"):
        fastconv.conv2d(X(dtype=np.float64), W(), out=np.empty((2, 6, 4, 4), F32))


@pytest.mark.parametrize("kind", ["strided", "fortran", "readonly", "byteswapped", "misaligned"])
def test_bad_out_layout(kind):
    shape = (2, 6, 4, 4)
    if kind == "strided":
        out = np.empty((2, 6, 4, 8), F32)[..., ::2]
    elif kind == "fortran":
        out = np.asfortranarray(np.empty(shape, F32))
    elif kind == "readonly":
        out = np.empty(shape, F32)
        out.flags.writeable = False
    elif kind == "byteswapped":
        out = np.empty(shape, np.dtype(F32).newbyteorder("S"))
    else:
        out = np.empty(np.prod(shape) * 4 + 1, np.uint8)[1:].view(F32).reshape(shape)
        assert not out.flags.aligned
    with pytest.raises((ValueError, TypeError), match="out"):
        fastconv.conv2d(X(), W(), out=out)


def test_out_not_an_array():
    with pytest.raises(TypeError, match="out"):
        fastconv.conv2d(X(), W(), out=[[0.0]])


@pytest.mark.parametrize("which", ["x", "weight", "bias"])
def test_out_overlapping_an_input(which):
    # 1x1 kernel, 6 -> 6 channels, so x and out have one shape.
    x = np.ones((1, 6, 4, 4), F32)
    w = np.ones((6, 6, 1, 1), F32)
    b = np.ones(6, F32)
    big = np.ones(1 * 6 * 4 * 4, F32)
    if which == "x":
        out = x
    elif which == "weight":
        w = big[:36].reshape(6, 6, 1, 1)
        out = big.reshape(1, 6, 4, 4)
    else:
        b = big[10:16]
        out = big.reshape(1, 6, 4, 4)
    with pytest.raises(ValueError, match="out.*share memory"):
        fastconv.conv2d(x, w, b, out=out)


# ----------------------------------------------------------------------------- dtypes

BAD_DTYPES = [np.complex64, np.complex128, object, np.float16, "U3", "S3", "datetime64[s]", "timedelta64[s]"]


@pytest.mark.parametrize("dtype", BAD_DTYPES, ids=[np.dtype(d).name for d in BAD_DTYPES])
@pytest.mark.parametrize("which", ["x", "weight", "bias", "grad_output"])
def test_unsupported_dtypes(dtype, which):
    def make(shape):
        return np.zeros(shape, F32).astype(dtype) if np.dtype(dtype).kind not in "USmM" \
            else np.zeros(shape, dtype)

    x, w, gy = X(), W(), GY()
    if which == "x":
        x = make(x.shape)
    elif which == "weight":
        w = make(w.shape)
    elif which == "grad_output":
        gy = make(gy.shape)
    pattern = rf"\b{which}\b"
    if which == "bias":
        with pytest.raises(TypeError, match=pattern):
            fastconv.conv2d(x, w, make((6,)))
        return
    if which != "grad_output":
        with pytest.raises(TypeError, match=pattern):
            fastconv.conv2d(x, w)
    with pytest.raises(TypeError, match=pattern):
        fastconv.conv2d_backward(gy, x, w)
    if which != "x":
        with pytest.raises(TypeError, match=pattern):
            fastconv.conv2d_input_grad(gy, w, (2, 4, 6, 6))
    if which != "weight":
        with pytest.raises(TypeError, match=pattern):
            fastconv.conv2d_weight_grad(gy, x, (6, 4, 3, 3))


@pytest.mark.parametrize("value", [None, "abc", [[1, 2], [3]], {"a": 1}],
                         ids=["None", "str", "ragged", "dict"])
def test_non_array_inputs(value):
    with pytest.raises(TypeError, match=r"\bx\b"):
        fastconv.conv2d(value, W())
    with pytest.raises(TypeError, match="weight"):
        fastconv.conv2d(X(), value)


# ----------------------------------------------------------------------------- input_shape / weight_shape

@pytest.mark.parametrize("shape,error", [
    ((2, 4, 6), ValueError),
    ((2, 4, 6, 6, 1), ValueError),
    ([], ValueError),
    (None, ValueError),
    ("2466", ValueError),
    ((2, 4, 6.0, 6), TypeError),
    ((2, 4, None, 6), TypeError),
    ((2, -4, 6, 6), ValueError),
    ((2, 4, 6, -1), ValueError),
], ids=["3-tuple", "5-tuple", "empty", "None", "str", "float", "None-entry", "negative-C", "negative-W"])
def test_malformed_input_shape(shape, error):
    with pytest.raises(error, match="input_shape"):
        fastconv.conv2d_input_grad(GY(), W(), shape)


@pytest.mark.parametrize("shape,error", [
    ((6, 4, 3), ValueError),
    ((6, 4, 3, 3, 1), ValueError),
    (None, ValueError),
    ((6, 4, 3.0, 3), TypeError),
    ((6, -4, 3, 3), ValueError),
    ((6, 4, 3, 0), ValueError),
    ((6, 3, 3, 3), ValueError),
], ids=["3-tuple", "5-tuple", "None", "float", "negative", "zero-kw", "channel-mismatch"])
def test_malformed_weight_shape(shape, error):
    with pytest.raises(error, match="weight_shape"):
        fastconv.conv2d_weight_grad(GY(), X(), shape)


def test_input_shape_zero_channels():
    with pytest.raises(ValueError, match="input_shape"):
        fastconv.conv2d_input_grad(np.ones((2, 6, 4, 4), F32), np.ones((6, 0, 3, 3), F32), (2, 0, 6, 6))


def test_input_shape_inconsistent_with_grad_output():
    # input_shape (2, 4, 8, 8) gives a 6x6 output; grad_output is 4x4.
    with pytest.raises(ValueError, match="grad_output"):
        fastconv.conv2d_input_grad(GY(), W(), (2, 4, 8, 8))


# ----------------------------------------------------------------------------- overflow

@pytest.mark.parametrize("weight_shape", [(2**60, 4, 1, 1), (6, 4, 2**31, 2**31), (2**40, 4, 2**10, 1)],
                         ids=["huge_C_out", "huge_kernel", "huge_product"])
def test_weight_grad_huge_weight_shape(weight_shape):
    """The size check comes before any allocation: MemoryError from fastconv itself
    (not NumPy's "Unable to allocate"), raised at once."""
    with pytest.raises((MemoryError, ValueError), match="too many|larger than the padded input") as info:
        fastconv.conv2d_weight_grad(GY(), X(), weight_shape)
    if weight_shape[2] == 1:
        assert info.type is MemoryError


@pytest.mark.parametrize("input_shape", [(2**62, 4, 6, 6), (2, 4, 2**31, 2**31), (2**20, 4, 2**20, 2**20)],
                         ids=["huge_N", "huge_HW", "huge_product"])
def test_input_grad_huge_input_shape(input_shape):
    w = np.ones((6, 4, 1, 1), F32)
    gy = np.ones((2, 6, 4, 4), F32)
    with pytest.raises(MemoryError, match="too many"):
        fastconv.conv2d_input_grad(gy, w, input_shape)


def test_huge_padding_and_stride():
    """Padding/stride so large that the padded input or index products overflow int64:
    refused before any allocation (MemoryError, or a ValueError naming the argument)."""
    for padding in (2**62, ((2**61, 2**61), (0, 0)), (0, 2**63)):
        with pytest.raises((MemoryError, ValueError), match="too many|padding"):
            fastconv.conv2d(X(), W(), padding=padding)
    # A huge stride either gives the one output pixel it implies or is refused by name.
    try:
        y = fastconv.conv2d(X(), W(), stride=2**62)
    except ValueError as exc:
        assert "stride" in str(exc)
    else:
        assert y.shape == (2, 6, 1, 1)
        np.testing.assert_array_equal(y, np.full((2, 6, 1, 1), 4 * 9, F32))


@pytest.mark.parametrize("padding", [2**31, ((2**61, 2**61), (0, 0)), ((0, 0), (2**61, 2**61))],
                         ids=["both", "rows", "columns"])
def test_huge_padding_of_an_empty_problem_names_the_output(padding):
    """An empty batch with zero output channels passes the output-size check (0 elements);
    the padding must still be refused by a check whose message says where the size comes
    from (found by the hardening fuzz)."""
    x = np.zeros((0, 1, 1, 1), F32)
    w = np.zeros((0, 1, 1, 1), F32)
    with pytest.raises(MemoryError, match="output plane.*padding.*too many"):
        fastconv.conv2d(x, w, padding=padding, algorithm="direct")


# ----------------------------------------------------------------------------- backward's flags
@pytest.mark.parametrize("bias", [np.zeros(6, F32), np.array([0.0]), np.array([0.5]), 1, "no", None],
                         ids=["bias-array", "zero-1", "half-1", "int", "str", "none"])
def test_backward_bias_flag_must_be_a_bool(bias):
    # conv2d takes the bias array, conv2d_backward a flag: a one-element array read as a
    # truth value dropped (0.0) or kept (0.5) the bias gradient without a word
    with pytest.raises(TypeError, match=r"bias must be a bool \(whether the forward had a bias.*got "):
        fastconv.conv2d_backward(GY(), X(), W(), bias=bias)


@pytest.mark.parametrize("name", ["input_grad", "through_relu"])
@pytest.mark.parametrize("value", ["no", 1, np.array([1.0])], ids=["str", "int", "array"])
def test_backward_flags_must_be_bools(name, value):
    with pytest.raises(TypeError, match=f"{name} must be a bool"):
        fastconv.conv2d_backward(GY(), X(), W(), **{name: value})


def test_backward_flags_take_numpy_bools():
    gx, gw, gb = fastconv.conv2d_backward(GY(), X(), W(), bias=np.bool_(False), input_grad=np.bool_(True))
    assert gb is None and gx.shape == X().shape
    np.testing.assert_allclose(gw, ref.conv2d_backward(GY(), X(), W())[1], rtol=1e-5)


def test_backward_out_of_the_wrong_length_says_so():
    with pytest.raises(TypeError, match="out must be a tuple of 3 .* got a tuple of 2"):
        fastconv.conv2d_backward(GY(), X(), W(), out=(None, None))


def test_shape_argument_given_an_array_names_its_shape():
    with pytest.raises(ValueError, match=r"weight_shape must be a tuple of 4 ints, got an array of shape "
                                         r"\(6, 4, 3, 3\) \(pass its .shape\)"):
        fastconv.conv2d_weight_grad(GY(), X(), W())
