"""2-D convolution and its gradients, PyTorch's semantics, computed by fastconv's C kernels.

Each function turns its arguments into one validated ``ConvSpec`` (``_spec.py``), brings
the arrays to C-contiguous native operands of the result dtype (copying only when it
must), and makes one call into the C driver with the GIL released.
"""
from __future__ import annotations

import threading
from typing import Optional, Tuple

import numpy as np

from . import _core
from ._spec import (ConvSpec, IntPair, Padding, as_array, as_operand, check_ndim, check_out,
                    make_spec, result_dtype, shape_tuple)
from ._threads import get_num_threads

__all__ = ["conv2d", "conv2d_backward", "conv2d_input_grad", "conv2d_weight_grad"]

FWD, BWD_DATA, BWD_WEIGHTS = _core.FWD, _core.BWD_DATA, _core.BWD_WEIGHTS
#: name -> C id of every algorithm= value: "auto", "im2col" (the GEMM family: the first of
#: gemm_1x1, implicit_gemm, im2col_explicit that accepts the problem) and every entry of the
#: C implementation table (csrc/conv.c).
ALGORITHMS = {name: info[0] for name, info in _core.algorithms().items()}
_ALGORITHM_NAMES = {code: name for name, code in ALGORITHMS.items()}
_FAMILIES = {info[0]: info[1] for info in _core.algorithms().values()}
_IN = "(N, C_in, H, W)"
_WT = "(C_out, C_in/groups, kh, kw)"
_OUT = "(N, C_out, H_out, W_out)"


def _algorithm_code(algorithm: str) -> int:
    if not isinstance(algorithm, str) or algorithm.lower() not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {sorted(ALGORITHMS)}, got {algorithm!r}")
    return ALGORITHMS[algorithm.lower()]


def _check_runs(spec: ConvSpec, pass_: int, algo: int) -> None:
    """A ValueError naming the reason when an explicitly requested algorithm cannot run."""
    if algo == _core.ALGO_AUTO:  # "auto" always finds an entry (explicit im2col takes any problem)
        return
    why = _core.rejects(spec.desc(get_num_threads()), pass_, algo)
    if why is not None:
        raise ValueError(f"algorithm={_ALGORITHM_NAMES[algo]!r} cannot run this problem: {why}")



class _WorkspaceCache(threading.local):
    """One growing scratch buffer per Python thread, reused across calls.

    Re-allocating the workspace on every call costs page faults comparable to a small
    convolution; keeping it means a training loop allocates it once. Per thread, so
    concurrent calls never share scratch memory.
    """

    buffer: Optional[np.ndarray] = None

    def get(self, nbytes: int) -> Optional[np.ndarray]:
        if nbytes == 0:
            return None
        need = nbytes + _core.WORKSPACE_ALIGN
        if self.buffer is None or self.buffer.nbytes < need:
            self.buffer = None  # free the old one before allocating the new one
            self.buffer = np.empty(need, dtype=np.uint8)
        return self.buffer


_workspace = _WorkspaceCache()


def chosen_implementation(spec: ConvSpec, pass_: int, algorithm: str = "auto") -> str:
    """The table entry ("direct", "implicit_gemm", "winograd", ...) a call with these
    arguments runs for ``pass_`` when its operands are finite (a NaN or inf the entry is not
    exact on moves the call to an exact one, see docs/architecture.md)."""
    code = _core.resolve(spec.desc(get_num_threads()), pass_, _algorithm_code(algorithm))
    if code < 0:
        _check_runs(spec, pass_, _algorithm_code(algorithm))
    return _ALGORITHM_NAMES[code]


def chosen_algorithm(spec: ConvSpec, pass_: int, algorithm: str = "auto") -> str:
    """The algorithm family ("direct", "im2col", "depthwise", "winograd") of
    ``chosen_implementation``; "im2col" covers every GEMM entry."""
    return _FAMILIES[ALGORITHMS[chosen_implementation(spec, pass_, algorithm)]]


def workspace_bytes(spec: ConvSpec, pass_: int, algorithm: str = "auto") -> int:
    """Extra memory, in bytes, one call of ``pass_`` uses beyond its inputs and outputs."""
    return _core.workspace_size(spec.desc(get_num_threads()), pass_, _algorithm_code(algorithm))


def _run(pass_: int, spec: ConvSpec, algo: int, *arrays: Optional[np.ndarray], post: int = 0,
         relu_out: Optional[np.ndarray] = None) -> None:
    desc = spec.desc(get_num_threads())
    ws = _workspace.get(_core.workspace_size(desc, pass_, algo))
    a = arrays
    if pass_ == FWD:  # (x, w, bias, y)
        _core.conv_fwd(desc, algo, a[0], a[1], a[2], a[3], ws, post)  # type: ignore[arg-type]
    elif pass_ == BWD_DATA:  # (grad_y, w, grad_x)
        _core.conv_bwd_data(desc, algo, a[0], a[1], a[2], ws, relu_out)  # type: ignore[arg-type]
    else:  # (grad_y, x, grad_w, grad_bias)
        _core.conv_bwd_weights(desc, algo, a[0], a[1], a[2], a[3], ws)  # type: ignore[arg-type]


# NaN and inf. The definition (and torch) multiply the zero padding by the weights, so a
# NaN/inf weight spreads to every output whose window touches padding, and a NaN/inf in
# grad_output to every weight tap that reads padding. The C driver owns that policy: every
# entry of its table declares which operands it is not exact on, and a call with such an
# operand holding a NaN/inf runs on an exact entry (csrc/conv.c).


def _forward(spec: ConvSpec, algo: int, x: np.ndarray, w: np.ndarray, b: Optional[np.ndarray],
             out: np.ndarray, post: int = 0) -> np.ndarray:
    if spec.n == 0 or spec.c_out == 0:
        return out
    _check_runs(spec, FWD, algo)
    _run(FWD, spec, algo, x, w, b, out, post=post)
    return out


#: conv2d's ``activation`` -> the C forward's post-op (enum fc_post).
_POST_OPS = {None: 0, "relu": 1}


def _post_op(activation: Optional[str]) -> int:
    if activation is None:
        return 0
    if isinstance(activation, str) and activation.lower() in _POST_OPS:  # any case, as padding= and algorithm=
        return _POST_OPS[activation.lower()]
    raise ValueError(f"activation must be None or 'relu', got {activation!r}")


def _input_grad(spec: ConvSpec, algo: int, gy: np.ndarray, w: np.ndarray,
                gx: Optional[np.ndarray] = None, relu_out: Optional[np.ndarray] = None) -> np.ndarray:
    """``gx`` (tests pass a NaN-poisoned one) must be C-contiguous of the input shape, as
    ``relu_out`` (x, when the gradient is returned through the ReLU that produced it)."""
    if gx is None:
        gx = np.empty(spec.input_shape, dtype=spec.dtype)
    if spec.is_empty:
        gx.fill(0)
        return gx
    _check_runs(spec, BWD_DATA, algo)
    _run(BWD_DATA, spec, algo, gy, w, gx, relu_out=relu_out)
    return gx


def _weight_grad(spec: ConvSpec, algo: int, gy: np.ndarray, x: np.ndarray, with_bias: bool,
                 gw: Optional[np.ndarray] = None,
                 gb: Optional[np.ndarray] = None) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """``gw``/``gb`` (tests pass NaN-poisoned ones) must be C-contiguous of the right shapes."""
    if gw is None:
        gw = np.empty(spec.weight_shape, dtype=spec.dtype)
    if with_bias and gb is None:
        gb = np.empty(spec.c_out, dtype=spec.dtype)
    if not with_bias:
        gb = None
    if spec.is_empty:
        gw.fill(0)
        if gb is not None:
            gb.fill(0)
        return gw, gb
    _check_runs(spec, BWD_WEIGHTS, algo)
    _run(BWD_WEIGHTS, spec, algo, gy, x, gw, gb)
    return gw, gb


def _check_grad_output(gy: np.ndarray, spec: ConvSpec) -> None:
    if gy.shape != spec.output_shape:
        raise ValueError(f"grad_output must have the output's shape {spec.output_shape}, got {gy.shape}")


def conv2d(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray] = None, stride: IntPair = 1,
           padding: Padding = 0, dilation: IntPair = 1, groups: int = 1, *, algorithm: str = "auto",
           out: Optional[np.ndarray] = None, activation: Optional[str] = None) -> np.ndarray:
    """2-D cross-correlation of a batch of images, as ``torch.nn.functional.conv2d``.

    ``y[n, k, i, j] = bias[k] + sum_{c, l, m} weight[k, c, l, m] *
    x[n, g*C_in/groups + c, i*stride_h + l*dilation_h - pad_top, j*stride_w + m*dilation_w - pad_left]``
    where ``g = k // (C_out/groups)`` and reads outside the image are zero. The kernel is
    not flipped (see ``convolve2d`` for true convolution).

    Parameters
    ----------
    x : array_like, shape (N, C_in, H, W)
        Input images.
    weight : array_like, shape (C_out, C_in/groups, kh, kw)
        Filters.
    bias : array_like, shape (C_out,), optional
        Added to every output pixel of its channel.
    stride, dilation : int or (int, int)
        Steps between output pixels and between kernel taps; >= 1.
    padding : int, (int, int), ((top, bottom), (left, right)), "valid" or "same"
        Zero padding. "same" follows TensorFlow/Keras for every stride: the output has
        ceil(H/stride) x ceil(W/stride) pixels and the odd pixel of padding goes to the
        bottom/right. Otherwise H_out = floor((H + top + bottom - dilation*(kh-1) - 1)/stride) + 1.
    groups : int
        Channel groups; ``groups == C_in == C_out`` is a depthwise convolution.
    algorithm : str
        "auto" (picks per problem), "direct", "im2col" (the GEMM family), "winograd", or
        any entry of ``fastconv.functional.ALGORITHMS``; an algorithm that cannot run the
        problem raises ValueError saying why.
    out : ndarray, optional
        C-contiguous array of the output shape and result dtype to write into.
    activation : None or "relu"
        "relu" returns ``max(y, 0)`` (NaN stays NaN), applied where the kernels store y
        when the implementation can (implicit GEMM, explicit im2col, gemm_1x1), else in
        one pass over y: a conv layer followed by ReLU then reads and writes its output once.

    Returns
    -------
    ndarray, shape (N, C_out, H_out, W_out)
        float32 when every operand is float32, else float64 (ints and bools promote to
        float64).

    Raises
    ------
    ValueError, TypeError
        On bad shapes, options or dtypes, naming the argument.
    MemoryError
        When the problem is too large to allocate.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.random.rand(8, 3, 32, 32).astype(np.float32)
    >>> w = np.random.rand(16, 3, 3, 3).astype(np.float32)
    >>> fastconv.conv2d(x, w, padding="same").shape
    (8, 16, 32, 32)
    """
    algo = _algorithm_code(algorithm)
    post = _post_op(activation)
    x, weight = as_array(x, "x"), as_array(weight, "weight")
    operands = {"x": x, "weight": weight}
    if bias is not None:
        bias = as_array(bias, "bias")
        operands["bias"] = bias
    dtype = result_dtype(**operands)
    check_ndim(x, "x", 4, _IN)
    check_ndim(weight, "weight", 4, _WT)
    spec = make_spec(x.shape, weight.shape, stride, padding, dilation, groups, dtype)
    if bias is not None and bias.shape != (spec.c_out,):
        raise ValueError(f"bias must have shape (C_out,) = ({spec.c_out},), got {bias.shape}")
    out = check_out(out, spec.output_shape, dtype, x, weight, bias)
    return _forward(spec, algo, as_operand(x, dtype), as_operand(weight, dtype),
                    None if bias is None else as_operand(bias, dtype), out, post)


def conv2d_backward(grad_output: np.ndarray, x: np.ndarray, weight: np.ndarray, stride: IntPair = 1,
                    padding: Padding = 0, dilation: IntPair = 1, groups: int = 1, *, bias: bool = True,
                    algorithm: str = "auto", input_grad: bool = True,
                    out: Optional[Tuple[Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]] = None,
                    through_relu: bool = False,
                    ) -> Tuple[Optional[np.ndarray], np.ndarray, Optional[np.ndarray]]:
    """Gradients of ``conv2d`` with respect to its input, weight and bias.

    Equal (to rounding) to the gradients torch's autograd computes for the same call.

    Parameters
    ----------
    grad_output : array_like, shape (N, C_out, H_out, W_out)
        Gradient of the loss with respect to ``conv2d``'s output.
    x, weight, stride, padding, dilation, groups
        The arguments of the forward call.
    bias : bool
        Whether the forward call had a bias (then its gradient is returned).
    algorithm : str
        As for ``conv2d``, chosen per pass when "auto".
    input_grad : bool, default True
        False skips the input gradient (``grad_x`` is None), as for a network's first layer.
    through_relu : bool, default False
        ``x`` is the output of a ReLU: ``grad_x`` is returned through that ReLU (zero where
        ``x <= 0`` or NaN, as the ReLU's backward passes it on), applied where the kernels
        store each tile of it when the implementation can (implicit GEMM), else in one
        pass over it.
    out : (grad_x, grad_weight, grad_bias), optional
        Arrays to write the results into (each C-contiguous, of its result's shape and
        dtype, or None for a new one), e.g. a layer's buffers kept across training steps.

    Returns
    -------
    grad_x : ndarray, shape of ``x``, or None when ``input_grad`` is False
    grad_weight : ndarray, shape of ``weight``
    grad_bias : ndarray of shape (C_out,), or None when ``bias`` is False
    """
    _check_flag(bias, "bias", "whether the forward had a bias, whose gradient is then returned; "
                              "conv2d_backward does not need the bias array")
    _check_flag(input_grad, "input_grad", "whether to compute grad_x")
    _check_flag(through_relu, "through_relu", "whether y was ReLU'd in the forward")
    algo = _algorithm_code(algorithm)
    gy, x, weight = as_array(grad_output, "grad_output"), as_array(x, "x"), as_array(weight, "weight")
    dtype = result_dtype(grad_output=gy, x=x, weight=weight)
    check_ndim(x, "x", 4, _IN)
    check_ndim(weight, "weight", 4, _WT)
    check_ndim(gy, "grad_output", 4, _OUT)
    spec = make_spec(x.shape, weight.shape, stride, padding, dilation, groups, dtype)
    _check_grad_output(gy, spec)
    out_gx, out_gw, out_gb = _backward_outs(out)
    inputs = (gy, x, weight)
    gx_buf = check_out(out_gx, spec.input_shape, dtype, *inputs, name="out[0] (grad_x)") if input_grad else None
    gw_buf = check_out(out_gw, spec.weight_shape, dtype, *inputs, gx_buf, name="out[1] (grad_weight)")
    gb_buf = check_out(out_gb, (spec.c_out,), dtype, *inputs, gx_buf, gw_buf, name="out[2] (grad_bias)") if bias else None
    gy, x, weight = as_operand(gy, dtype), as_operand(x, dtype), as_operand(weight, dtype)
    gx = _input_grad(spec, algo, gy, weight, gx_buf, x if through_relu else None) if input_grad else None
    gw, gb = _weight_grad(spec, algo, gy, x, bool(bias), gw_buf, gb_buf)
    return gx, gw, gb


def _check_flag(value, name: str, meaning: str) -> None:
    # A truth value taken from anything would read bias=np.array([0.0]) as False and drop
    # the bias gradient without a word
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool ({meaning}), got {type(value).__name__}")


def _backward_outs(out) -> tuple:
    if out is None:
        return None, None, None
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        got = f"a {type(out).__name__} of {len(out)}" if isinstance(out, (tuple, list)) else type(out).__name__
        raise TypeError(f"out must be a tuple of 3 (grad_x, grad_weight, grad_bias), each an array or None, got {got}")
    return tuple(out)


def conv2d_input_grad(grad_output: np.ndarray, weight: np.ndarray, input_shape: Tuple[int, int, int, int],
                      stride: IntPair = 1, padding: Padding = 0, dilation: IntPair = 1, groups: int = 1, *,
                      algorithm: str = "auto", out: Optional[np.ndarray] = None) -> np.ndarray:
    """Gradient of ``conv2d`` with respect to its input (a transposed convolution).

    Parameters
    ----------
    grad_output : array_like, shape (N, C_out, H_out, W_out)
    weight : array_like, shape (C_out, C_in/groups, kh, kw)
    input_shape : (N, C_in, H, W)
        Shape of the forward input; needed because several input sizes give one output size
        when stride > 1.
    stride, padding, dilation, groups, algorithm, out
        As for ``conv2d``.

    Returns
    -------
    ndarray of shape ``input_shape``
    """
    algo = _algorithm_code(algorithm)
    gy, weight = as_array(grad_output, "grad_output"), as_array(weight, "weight")
    dtype = result_dtype(grad_output=gy, weight=weight)
    check_ndim(gy, "grad_output", 4, _OUT)
    check_ndim(weight, "weight", 4, _WT)
    shape = shape_tuple(input_shape, "input_shape")
    spec = make_spec(shape, weight.shape, stride, padding, dilation, groups, dtype, input_name="input_shape")
    _check_grad_output(gy, spec)
    out = check_out(out, spec.input_shape, dtype, gy, weight)
    return _input_grad(spec, algo, as_operand(gy, dtype), as_operand(weight, dtype), out)


def conv2d_weight_grad(grad_output: np.ndarray, x: np.ndarray, weight_shape: Tuple[int, int, int, int],
                       stride: IntPair = 1, padding: Padding = 0, dilation: IntPair = 1, groups: int = 1, *,
                       algorithm: str = "auto", out: Optional[np.ndarray] = None) -> np.ndarray:
    """Gradient of ``conv2d`` with respect to its weight.

    Parameters
    ----------
    grad_output : array_like, shape (N, C_out, H_out, W_out)
    x : array_like, shape (N, C_in, H, W)
    weight_shape : (C_out, C_in/groups, kh, kw)
    stride, padding, dilation, groups, algorithm, out
        As for ``conv2d``.

    Returns
    -------
    ndarray of shape ``weight_shape``
    """
    algo = _algorithm_code(algorithm)
    gy, x = as_array(grad_output, "grad_output"), as_array(x, "x")
    dtype = result_dtype(grad_output=gy, x=x)
    check_ndim(gy, "grad_output", 4, _OUT)
    check_ndim(x, "x", 4, _IN)
    shape = shape_tuple(weight_shape, "weight_shape")
    spec = make_spec(x.shape, shape, stride, padding, dilation, groups, dtype, weight_name="weight_shape")
    _check_grad_output(gy, spec)
    out = check_out(out, spec.weight_shape, dtype, gy, x)
    gw, _ = _weight_grad(spec, algo, as_operand(gy, dtype), as_operand(x, dtype), False, out)
    return gw
