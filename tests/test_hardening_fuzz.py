"""Hardening: fuzzing fastconv with valid, hostile and invalid arguments (issue 6, item 3).

Every case is a plain JSON-able dict (see ``run_case``). For each one fastconv must either

* return a result that matches ``fastconv.reference`` (evaluated in float64 on the very
  values fastconv received) within the bound of docs/architecture.md,
  ``|y - y_ref| <= c * eps(dtype) * (|x| * |w| convolved)``, with NaN and inf in exactly the
  places where the reference has them (same sign for inf), of the result dtype, C-contiguous,
  leaving its inputs unchanged; or
* raise ValueError, TypeError or MemoryError whose message names the offending argument
  (MemoryError also gives the size).

What is drawn
    shapes (N = 0 included, C_out = 0 included, 1x1 kernels, kernels as large as the padded
    input), strides, dilations, groups (depthwise included), padding as an int, a pair, a
    list, asymmetric ``((top, bottom), (left, right))``, ``"same"`` and ``"valid"``, numpy
    integer scalars for the options, dtypes (float32, float64, mixed, int, uint8, bool,
    Python lists), memory layouts (Fortran/transposed, channels-last, step slices, negative
    strides, misaligned by one byte into a uint8 buffer, byte-swapped, read-only, zero-stride
    broadcasts, nested lists and combinations), NaN/+inf/-inf contents, ``out=`` arrays,
    the ISA (generic/AVX2/AVX-512 as the CPU allows), the thread count and the algorithm.
What is broken on purpose
    zero and negative sizes, mismatched channels, groups that do not divide, wrong ndim,
    bias and grad_output of the wrong shape, kernels larger than the padded input, bad
    stride/padding/dilation/groups/algorithm values and types, unsupported dtypes, things
    that are not arrays, every way ``out=`` can be wrong, ``input_shape``/``weight_shape``
    that are not 4 ints, and sizes (shapes, strides, dilations, paddings) whose products
    overflow 64 bits.

Crash isolation
    Every test here runs its cases in a child process (``python tests/test_hardening_fuzz.py
    ...``): a segfault or sanitizer abort fails the test, with the child's output and the
    case that was running, instead of killing pytest. The child writes each case to a file
    before running it, so a crash always comes with a one-line reproducer::

        python tests/test_hardening_fuzz.py case '<the case as JSON>'

Budget
    ``FASTCONV_FUZZ_EXAMPLES`` examples per Hypothesis test (default ``DEFAULT_EXAMPLES``,
    sized so this file runs in well under a minute on 2 cores); the nightly command in
    tools/README.md sets it to thousands. ``FASTCONV_FUZZ_SEED`` fixes Hypothesis's seed.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import subprocess
import sys
import time
import traceback
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pytest

import fastconv
from fastconv import _core, functional
from fastconv import reference as ref

DEFAULT_EXAMPLES = 800
HERE = os.path.dirname(os.path.abspath(__file__))
F64 = np.float64
ACCEPTED_ERRORS = (ValueError, TypeError, MemoryError)
PASSES = ("fwd", "backward", "input_grad", "weight_grad")
ALGORITHMS = ("direct", "im2col", "auto")
LAYOUTS = ("c", "fortran", "channels_last", "step", "negative", "misaligned", "byteswapped",
           "readonly", "broadcast", "list", "misaligned_byteswapped", "step_readonly_negative")
DTYPES = ("float32", "float64", "int32", "int64", "uint8", "bool")


def n_examples() -> int:
    return int(os.environ.get("FASTCONV_FUZZ_EXAMPLES", DEFAULT_EXAMPLES))


# ============================================================================ building arrays

def with_layout(a: np.ndarray, layout: str) -> Any:
    """``a``'s values (for "broadcast": some of them) in the memory layout ``layout``."""
    a = np.ascontiguousarray(a)
    nd = a.ndim
    if layout == "c":
        return a
    if layout == "fortran":
        return np.asfortranarray(a)
    if layout == "channels_last":
        if nd < 3:
            return np.asfortranarray(a)
        perm = (0, *range(2, nd), 1)
        return np.ascontiguousarray(a.transpose(perm)).transpose(tuple(np.argsort(perm)))
    if layout == "step":
        fill = np.nan if a.dtype.kind == "f" else (True if a.dtype.kind == "b" else 77)
        big = np.full(tuple(2 * s + 1 for s in a.shape), fill, dtype=a.dtype)
        sl = tuple(slice(1, None, 2) for _ in a.shape)
        big[sl] = a
        return big[sl]
    if layout == "negative":
        flip = tuple(slice(None, None, -1) for _ in a.shape)
        return a[flip].copy()[flip]
    if layout == "misaligned":
        buf = np.zeros(a.nbytes + 1, dtype=np.uint8)
        m = np.ndarray(a.shape, dtype=a.dtype, buffer=buf, offset=1)
        m[...] = a
        return m
    if layout == "byteswapped":
        return a.astype(a.dtype.newbyteorder("S"))
    if layout == "readonly":
        r = a.copy()
        r.flags.writeable = False
        return r
    if layout == "broadcast":  # zero strides along the last axis (read-only view)
        if nd == 0 or a.shape[-1] == 0:
            return a
        return np.broadcast_to(a[..., :1], a.shape)
    if layout == "list":  # nested lists lose the shape of an empty array
        return a.tolist() if a.size else a
    if layout == "misaligned_byteswapped":
        return with_layout(with_layout(a, "byteswapped"), "misaligned")
    if layout == "step_readonly_negative":
        r = with_layout(with_layout(a, "negative"), "step")
        r.flags.writeable = False
        return r
    raise KeyError(layout)


def make_values(shape: Sequence[int], dtype: str, seed: int, scale: float = 1.0,
                specials: int = 0) -> np.ndarray:
    """Reproducible values of ``dtype``: normal * scale for floats, small ints otherwise, and
    ``specials`` of NaN/+inf/-inf at random places (floats only)."""
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        a = (rng.standard_normal(shape) * scale).astype(dt)
        if specials and a.size:
            flat = a.reshape(-1)
            idx = rng.integers(0, a.size, size=specials)
            flat[idx] = rng.choice(np.array([np.nan, np.inf, -np.inf], dtype=dt), size=specials)
    elif dt.kind == "b":
        a = rng.integers(0, 2, size=shape).astype(bool)
    elif dt.kind == "u":
        a = rng.integers(0, 6, size=shape).astype(dt)
    else:
        a = rng.integers(-5, 6, size=shape).astype(dt)
    return a


def result_dtype(*operands: Any) -> np.dtype:
    """float32 if every operand is float32, else float64 (docs/architecture.md)."""
    dts = [np.asarray(o).dtype for o in operands if o is not None]
    f32 = all(d.kind == "f" and d.itemsize == 4 for d in dts)
    return np.dtype(np.float32) if f32 else np.dtype(np.float64)


def f64(a: Any) -> Optional[np.ndarray]:
    return None if a is None else np.array(a, dtype=F64)


def out_size(size: int, k: int, s: int, d: int, lo: int, hi: int) -> int:
    return (size + lo + hi - d * (k - 1) - 1) // s + 1


def resolve_pads(padding: Any, hw, khw, stride, dilation) -> Tuple[int, int, int, int]:
    """(top, bottom, left, right) from any padding form (docs/architecture.md: "same" as TensorFlow)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        pads = []
        for n, k, s, d in zip(hw, khw, stride, dilation):
            o = -(-n // s)
            total = max((o - 1) * s + (k - 1) * d + 1 - n, 0)
            pads += [total // 2, total - total // 2]
        return tuple(pads)  # type: ignore[return-value]
    if isinstance(padding, (int, np.integer)):
        p = int(padding)
        return (p, p, p, p)
    a, b = padding
    if isinstance(a, (list, tuple)):
        return (int(a[0]), int(a[1]), int(b[0]), int(b[1]))
    return (int(a), int(a), int(b), int(b))


def pair(v: Any) -> Tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, (int, np.integer)) else (int(v[0]), int(v[1]))


# ============================================================================ checking results

class Mismatch(AssertionError):
    pass


def check_result(actual: Any, expected: np.ndarray, bound: np.ndarray, dtype: np.dtype,
                 nterms: int, what: str) -> None:
    """``actual`` matches the float64 reference: same NaN/inf places, finite error within
    ``c * eps * bound`` (c = max(16, 2 * terms summed), plus an underflow allowance)."""
    if not isinstance(actual, np.ndarray):
        raise Mismatch(f"{what}: expected an ndarray, got {type(actual).__name__}")
    if actual.dtype != dtype:
        raise Mismatch(f"{what}: dtype {actual.dtype}, expected {dtype}")
    if actual.shape != expected.shape:
        raise Mismatch(f"{what}: shape {actual.shape}, expected {expected.shape}")
    if not actual.flags.c_contiguous:
        raise Mismatch(f"{what}: result is not C-contiguous")
    a = actual.astype(F64)
    en, an = np.isnan(expected), np.isnan(a)
    ei, ai = np.isinf(expected), np.isinf(a)
    bad = (en != an) | (ei != ai) | (ei & ai & (np.sign(a) != np.sign(expected)))
    if bad.any():
        idx = [tuple(int(v) for v in i) for i in np.argwhere(bad)[:6]]
        raise Mismatch(f"{what}: NaN/inf differ from the reference at {int(bad.sum())} of {bad.size} "
                       f"elements; e.g. at {idx[0]} got {a[idx[0]]!r}, reference {expected[idx[0]]!r}; "
                       f"other places {idx[1:]}")
    fin = np.isfinite(expected)
    if not fin.any():
        return
    eps = float(np.finfo(dtype).eps)
    c = max(16.0, 2.0 * nterms)
    tol = c * eps * bound + nterms * float(np.finfo(dtype).smallest_subnormal) * 4
    with np.errstate(invalid="ignore"):
        err = np.abs(a - expected)
    bad = fin & ~(err <= tol)
    if bad.any():
        i = tuple(int(v) for v in np.argwhere(bad)[0])
        raise Mismatch(f"{what}: {int(bad.sum())} of {bad.size} elements exceed {c} * eps * sum|x||w|; "
                       f"first at {i}: got {a[i]!r}, reference {expected[i]!r}, bound terms {bound[i]!r}")


def check_error(exc: BaseException, names: Sequence[str], what: str) -> None:
    """``exc`` is a ValueError/TypeError/MemoryError whose message names one of ``names``
    (as a word; for MemoryError, or the size in the message)."""
    if not isinstance(exc, ACCEPTED_ERRORS):
        raise Mismatch(f"{what}: raised {type(exc).__name__}: {exc} (expected ValueError, TypeError "
                       f"or MemoryError naming {list(names)})") from exc
    msg = str(exc)
    for n in names:
        if re.search(r"(?<![A-Za-z0-9_])" + re.escape(n) + r"(?![A-Za-z0-9_])", msg):
            if isinstance(exc, MemoryError) and not re.search(r"\d", msg):
                raise Mismatch(f"{what}: MemoryError without the size: {msg!r}") from exc
            return
    raise Mismatch(f"{what}: {type(exc).__name__} message does not name any of {list(names)}: {msg!r}") from exc


# ============================================================================ exact workspaces

_libc = ctypes.CDLL(None)
_libc.posix_memalign.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_size_t]
_libc.free.argtypes = [ctypes.c_void_p]


@contextlib.contextmanager
def exact_workspace(nbytes: int, poison: int = 0xFF):
    """A 64-byte-aligned workspace of exactly ``nbytes`` from malloc, filled with ``poison``.

    fastconv's own workspace cache over-allocates (alignment slack, reuse of a larger
    buffer), which would hide a small overrun from ASan and valgrind; this one ends where
    the C side's size says it ends, so one byte past it is reported."""
    if nbytes == 0:
        yield None
        return
    p = ctypes.c_void_p()
    if _libc.posix_memalign(ctypes.byref(p), 64, nbytes) != 0:
        raise MemoryError(f"posix_memalign({nbytes})")
    try:
        arr = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(p.value))
        arr.fill(poison)
        yield arr
    finally:
        _libc.free(p)


# ============================================================================ the case runner

@contextlib.contextmanager
def isa_and_threads(isa: Optional[int], threads: Optional[int]):
    before = _core.active_isa()
    if isa is not None:
        _core.set_isa(min(int(isa), _core.best_isa()))
    try:
        with fastconv.threads(threads):
            yield
    finally:
        _core.set_isa(before)


def _int_form(v: Any, numpy_ints: bool, tuples: bool) -> Any:
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return np.int64(v) if numpy_ints and abs(v) < 2**62 else v
    if isinstance(v, (list, tuple)):
        items = [_int_form(x, numpy_ints, tuples) for x in v]
        return tuple(items) if tuples else items
    return v


def build_call(case: Dict[str, Any]) -> Tuple[str, Dict[str, Any], Dict[str, Any]]:
    """(function name, keyword arguments, facts) for a case; the arrays are built here."""
    g = case["groups"]
    cg, kg = case["cg"], case["kg"]
    n, (h, w), (kh, kw) = case["n"], case["hw"], case["khw"]
    c_in, c_out = g * cg, g * kg
    stride, dilation, padding = case["stride"], case["dilation"], case["padding"]
    sh, sw = pair(stride)
    dh, dw = pair(dilation)
    pads = resolve_pads(padding, (h, w), (kh, kw), (sh, sw), (dh, dw))
    oh = out_size(h, kh, sh, dh, pads[0], pads[1])
    ow = out_size(w, kw, sw, dw, pads[2], pads[3])
    seed, specials, scale = case["seed"], case.get("specials", {}), case.get("scale", 1.0)
    dts, lays = case["dtypes"], case["layouts"]
    x0 = make_values((n, c_in, h, w), dts["x"], seed, scale, specials.get("x", 0))
    w0 = make_values((c_out, cg, kh, kw), dts["w"], seed + 1, scale, specials.get("w", 0))
    b0 = make_values((c_out,), dts["b"], seed + 2, scale, specials.get("b", 0)) if case.get("bias") else None
    gy0 = make_values((n, c_out, max(oh, 0), max(ow, 0)), dts["gy"], seed + 3, scale, specials.get("gy", 0))
    ni, tu = case.get("numpy_ints", False), case.get("tuples", True)
    opts = {"stride": _int_form(stride, ni, tu), "padding": _int_form(padding, ni, tu),
            "dilation": _int_form(dilation, ni, tu), "groups": _int_form(g, ni, tu),
            "algorithm": case["algorithm"]}
    x = with_layout(x0, lays["x"])
    wt = with_layout(w0, lays["w"])
    b = None if b0 is None else with_layout(b0, lays["b"])
    gy = with_layout(gy0, lays["gy"])
    p = case["pass"]
    if p == "fwd":
        kwargs = dict(x=x, weight=wt, bias=b, **opts)
        if case.get("out"):
            kwargs["out"] = np.full((n, c_out, oh, ow), np.nan, dtype=result_dtype(x, wt, b))
    elif p == "backward":
        kwargs = dict(grad_output=gy, x=x, weight=wt, bias=bool(case.get("bias")), **opts)
    elif p == "input_grad":
        kwargs = dict(grad_output=gy, weight=wt, input_shape=_int_form([n, c_in, h, w], ni, tu), **opts)
    elif p == "weight_grad":
        kwargs = dict(grad_output=gy, x=x, weight_shape=_int_form([c_out, cg, kh, kw], ni, tu), **opts)
    else:
        raise KeyError(p)
    facts = dict(n=n, c_in=c_in, c_out=c_out, cg=cg, kg=kg, h=h, w=w, kh=kh, kw=kw, oh=oh, ow=ow)
    return p, kwargs, facts


FUNCTIONS = {"fwd": fastconv.conv2d, "backward": fastconv.conv2d_backward,
             "input_grad": fastconv.conv2d_input_grad, "weight_grad": fastconv.conv2d_weight_grad}


def expected_results(p: str, kw: Dict[str, Any], facts: Dict[str, int]):
    """[(name, expected, bound, terms summed)] from the reference, in float64, on the values
    fastconv was given."""
    opts = (kw["stride"], kw["padding"], kw["dilation"], int(kw["groups"]))
    opts = tuple(o if not isinstance(o, np.integer) else int(o) for o in opts)
    opts = tuple(_plain(o) for o in opts)
    a = lambda v: None if v is None else np.abs(f64(v))  # noqa: E731
    fwd_terms = facts["cg"] * facts["kh"] * facts["kw"] + 1
    bwd_terms = facts["kg"] * facts["kh"] * facts["kw"]
    red_terms = facts["n"] * facts["oh"] * facts["ow"]
    if p == "fwd":
        x, w, b = f64(kw["x"]), f64(kw["weight"]), f64(kw["bias"])
        with np.errstate(all="ignore"):
            return [("y", ref.conv2d(x, w, b, *opts), ref.conv2d(a(x), a(w), a(b), *opts), fwd_terms)]
    gy = f64(kw["grad_output"])
    out = []
    with np.errstate(all="ignore"):
        if p in ("backward", "input_grad"):
            w = f64(kw["weight"])
            shape = (facts["n"], facts["c_in"], facts["h"], facts["w"])
            out.append(("grad_x", ref.conv2d_input_grad(gy, w, shape, *opts),
                        ref.conv2d_input_grad(a(gy), a(w), shape, *opts), bwd_terms))
        if p in ("backward", "weight_grad"):
            x = f64(kw["x"])
            shape = (facts["c_out"], facts["cg"], facts["kh"], facts["kw"])
            out.append(("grad_weight", ref.conv2d_weight_grad(gy, x, shape, *opts),
                        ref.conv2d_weight_grad(a(gy), a(x), shape, *opts), red_terms))
        if p == "backward" and kw["bias"]:
            out.append(("grad_bias", gy.sum(axis=(0, 2, 3)), a(gy).sum(axis=(0, 2, 3)), red_terms))
    return out


def _plain(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, (list, tuple)):
        return tuple(_plain(v) for v in o)
    return o


def _snapshot(kw: Dict[str, Any]) -> Dict[str, np.ndarray]:
    return {k: np.array(v, copy=True) for k, v in kw.items()
            if isinstance(v, np.ndarray) and k != "out"}


def run_valid(case: Dict[str, Any]) -> None:
    p, kw, facts = build_call(case)
    dtype = result_dtype(*[kw.get(k) for k in ("x", "weight", "grad_output")
                           if k in kw], kw.get("bias") if p == "fwd" else None)
    before = _snapshot(kw)
    with isa_and_threads(case.get("isa"), case.get("threads")):
        got = FUNCTIONS[p](**kw)
    results = {"fwd": lambda: {"y": got},
               "backward": lambda: dict(zip(("grad_x", "grad_weight", "grad_bias"), got)),
               "input_grad": lambda: {"grad_x": got},
               "weight_grad": lambda: {"grad_weight": got}}[p]()
    if p == "fwd" and kw.get("out") is not None and got is not kw["out"]:
        raise Mismatch("conv2d(out=...) did not return out")
    if p == "backward" and not kw["bias"] and results["grad_bias"] is not None:
        raise Mismatch("conv2d_backward(bias=False) returned a bias gradient")
    for name, expected, bound, terms in expected_results(p, kw, facts):
        check_result(results[name], expected, bound, dtype, terms, f"{p}/{case['algorithm']}: {name}")
    for k, v in before.items():
        if not np.array_equal(np.asarray(kw[k]), v, equal_nan=v.dtype.kind == "f"):
            raise Mismatch(f"{p}: input {k} was modified by the call")


# ---------------------------------------------------------------------------- invalid cases

BAD_OPTION_VALUES = {
    "stride": [0, -1, 1.5, True, (1, 2, 3), (1,), "2", None, (0, 1), (1, -2), [1.0, 1]],
    "dilation": [0, -3, 2.0, False, (1, 2, 3), "1", None, (1, 0)],
    "padding": [-1, (1, -1), ((0, 1), (2, -3)), "full", "SAME ", 1.5, None, ((1, 2),), (1, 2, 3),
                ((0, 1), 2), [[0, 1], [1, 1, 1]], b"same"],
    "groups": [0, -1, 1.5, True, "1", None, (1,)],
    "algorithm": ["fft", "", None, 3, "winograd_f5"],  # ("winograd" itself is an algorithm since issue 13)
}
HUGE = [2**31, 2**32, 2**40, 2**62, 2**63 - 1, 2**63, 2**64, 2**100]
BAD_DTYPES = ["complex64", "complex128", "float16", "object", "U3", "M8[s]", "m8[s]", "S2", "longdouble"]


def _shape_arg(p: str) -> Optional[str]:
    return {"input_grad": "input_shape", "weight_grad": "weight_shape"}.get(p)


def _array_args(p: str, kw: Dict[str, Any]) -> List[str]:
    names = [k for k in ("x", "weight", "grad_output") if k in kw]
    if p == "fwd" and kw.get("bias") is not None:
        names.append("bias")
    return names


def apply_mutation(case: Dict[str, Any], kw: Dict[str, Any], facts: Dict[str, int]):
    """Break one argument of a valid call. Returns (names the error may name, must_raise)."""
    p = case["pass"]
    m = case["mutation"]
    kind, target, choice = m["kind"], m.get("target"), m.get("choice", 0)
    arrays = _array_args(p, kw)
    shape_arg = _shape_arg(p)

    def pick(seq):
        return seq[choice % len(seq)]

    if kind == "ndim":
        t = pick(arrays)
        a = np.asarray(kw[t])
        shapes = [a.shape[1:], (1,) + a.shape, (a.size,), (), a.shape + (1,)]
        shape = shapes[(choice // 7) % len(shapes)]
        if len(shape) == a.ndim:
            shape = (1,) + a.shape
        kw[t] = np.ones(shape, dtype=a.dtype)
        return [t], True
    if kind == "channels":  # channel counts that do not fit together
        if "weight" in kw:
            a = np.asarray(kw["weight"])
            s = list(a.shape)
            s[0 if case["groups"] > 1 and choice % 2 else 1] += 1  # C_out not divisible / C_in/groups wrong
            kw["weight"] = np.ones(s, dtype=a.dtype)
            names = ["weight", "groups"] + [n for n in ("x", "input_shape", "grad_output") if n in kw]
        else:
            s = list(kw["weight_shape"])
            s[1] += 1
            kw["weight_shape"] = s
            names = ["weight_shape", "x", "groups", "grad_output"]
        return names, True
    if kind == "grad_output_channels":
        if "grad_output" not in kw:
            return apply_mutation({**case, "mutation": {"kind": "bias_shape"}}, kw, facts)
        a = np.asarray(kw["grad_output"])
        s = list(a.shape)
        s[pick([1, 2, 3, 0])] += 1
        kw["grad_output"] = np.ones(s, dtype=a.dtype)
        return ["grad_output"], True
    if kind == "bias_shape":
        if p != "fwd":
            return apply_mutation({**case, "mutation": {"kind": "ndim", "choice": choice}}, kw, facts)
        kw["bias"] = pick([np.ones(facts["c_out"] + 1), np.ones((facts["c_out"], 1)), 3.0, []])
        return ["bias"], True
    if kind == "groups_indivisible":
        kw["groups"] = facts["c_in"] + 1 + choice % 3
        return ["groups", "weight", "weight_shape"], True
    if kind == "zero":  # a zero size where one is not allowed (N = 0 and C_out = 0 are allowed)
        if shape_arg and choice % 2:
            s = list(kw[shape_arg])
            s[pick([1, 2, 3])] = 0
            kw[shape_arg] = s
            return [shape_arg], True
        t = "x" if "x" in kw and choice % 3 != 2 else "weight"
        if t not in kw:
            t = [a for a in arrays if a in ("x", "weight")][0]
        a = np.asarray(kw[t])
        s = list(a.shape)
        s[pick([1, 2, 3])] = 0
        kw[t] = np.ones(s, dtype=a.dtype)
        return [t], True
    if kind == "negative":
        if not shape_arg:
            return apply_mutation({**case, "mutation": {"kind": "zero", "choice": choice}}, kw, facts)
        s = list(kw[shape_arg])
        s[choice % 4] = -1 - choice % 5
        kw[shape_arg] = s
        return [shape_arg], True
    if kind == "shape_arg_form":
        if not shape_arg:
            return apply_mutation({**case, "mutation": {"kind": "bad_option", "target": "stride",
                                                        "choice": choice}}, kw, facts)
        s = list(kw[shape_arg])
        kw[shape_arg] = pick([s[:3], s + [1], "abcd", None, [float(v) + 0.5 for v in s], 7,
                              [str(v) for v in s], [True] * 4])
        return [shape_arg], True
    if kind == "bad_option":
        kw[target] = pick(BAD_OPTION_VALUES[target])
        return [target], True
    if kind == "kernel_too_big":  # dilated kernel larger than the padded input
        kw["padding"] = 0
        big = facts["h"] + 1 + choice % 3
        if "weight" in kw:
            a = np.asarray(kw["weight"])
            kw["weight"] = np.ones((a.shape[0], a.shape[1], big, a.shape[3]), dtype=a.dtype)
            return ["weight"], True
        s = list(kw["weight_shape"])
        s[2] = big
        kw["weight_shape"] = s
        return ["weight_shape"], True
    if kind == "dtype":
        t = pick(arrays)
        a = np.asarray(kw[t])
        bad = BAD_DTYPES[(choice // 7) % len(BAD_DTYPES)]
        try:
            kw[t] = a.astype(bad)
        except (TypeError, ValueError):
            kw[t] = np.zeros(a.shape, dtype=bad)
        return [t], True
    if kind == "not_array":
        t = pick(arrays)
        kw[t] = pick(["abc", {"a": 1}, [[1.0, 2.0], [3.0]], object(), None if t != "bias" else "b"])
        return [t], True
    if kind == "out":
        if p != "fwd":
            return apply_mutation({**case, "mutation": {"kind": "grad_output_channels",
                                                        "choice": choice}}, kw, facts)
        shape = (facts["n"], facts["c_out"], facts["oh"], facts["ow"])
        dt = result_dtype(kw["x"], kw["weight"], kw["bias"])
        other = np.float64 if dt == np.float32 else np.float32
        swapped = np.dtype(dt).newbyteorder("S")
        variants = [
            lambda: np.zeros(shape[:3] + (shape[3] + 1,), dt),                       # wrong shape
            lambda: np.zeros(shape[1:], dt),                                         # wrong ndim
            lambda: np.zeros(shape, other),                                          # wrong dtype
            lambda: np.zeros(shape, np.int32),
            lambda: np.zeros(tuple(2 * s for s in shape), dt)[::2, ::2, ::2, ::2],   # strided
            lambda: np.asfortranarray(np.zeros(shape, dt)),                          # Fortran order
            lambda: with_layout(np.zeros(shape, dt), "readonly"),                   # read-only
            lambda: with_layout(np.zeros(shape, dt), "misaligned"),                 # misaligned
            lambda: np.zeros(shape, swapped),                                        # byte-swapped
            lambda: np.zeros(shape, dt).tolist(),                                    # not an ndarray
            lambda: "out",
            lambda: np.zeros(shape, dt)[..., None],                                  # 5-D
        ]
        out = variants[choice % len(variants)]()
        if (isinstance(out, np.ndarray) and out.shape == shape and out.dtype == dt and out.flags.c_contiguous
                and out.flags.aligned and out.flags.writeable):
            out = np.zeros(shape, swapped)  # that layout is not wrong for this shape: byte-swap it
        kw["out"] = out
        return ["out"], True
    if kind == "out_overlap":
        if p != "fwd":
            return apply_mutation({**case, "mutation": {"kind": "out", "choice": choice}}, kw, facts)
        shape = (facts["n"], facts["c_out"], facts["oh"], facts["ow"])
        dt = result_dtype(kw["x"], kw["weight"], kw["bias"])
        size = int(np.prod(shape))
        if size == 0:
            return apply_mutation({**case, "mutation": {"kind": "out", "choice": 2}}, kw, facts)
        buf = np.zeros(size + int(np.asarray(kw["x"]).size) + 8, dtype=dt)
        x = np.asarray(kw["x"])
        xs = buf[: x.size].reshape(x.shape)
        xs[...] = x
        kw["x"] = xs
        start = max(0, x.size - 1)  # the last element of x is the first element of out
        kw["out"] = buf[start: start + size].reshape(shape)
        return ["out"], True
    if kind == "huge_shape":  # sizes whose products overflow 64 bits, through *_shape
        if not shape_arg:
            return apply_mutation({**case, "mutation": {"kind": "huge_option",
                                                        "target": "stride", "choice": choice}}, kw, facts)
        s = list(kw[shape_arg])
        v = HUGE[choice % len(HUGE)]
        dims = [(0,), (1,), (2, 3), (0, 1, 2, 3), (1, 3)][(choice // len(HUGE)) % 5]
        for d in dims:
            s[d] = v
        kw[shape_arg] = s
        names = [shape_arg, "output", "the output", "padded input", "workspace", "grad_output",
                 "groups", "weight", "x", "input_shape", "weight_shape"]
        return names, True
    if kind == "huge_option":  # stride/dilation/padding of 2**31..2**100: compute right or refuse clearly
        # Only cases that are invalid or cheap: a huge stride shrinks the output; a huge
        # dilation with no padding leaves a kernel larger than the input unless it is 1x1;
        # a huge padding on both axes overflows the output size. (A huge padding on one axis
        # only would be a valid problem needing terabytes: not something to run.)
        v = HUGE[choice % len(HUGE)]
        t = target or "stride"
        if t == "padding":
            kw["padding"] = v if choice % 2 == 0 else ((v, 0), (0, v))
        else:
            kw["padding"] = 0
            kw[t] = v if choice % 2 == 0 else (1, v)
        kw.pop("out", None)  # sized for the old output shape
        return [t, "output", "padded input", "weight", "weight_shape"], t == "padding"
    raise KeyError(kind)


MUTATIONS = ["ndim", "channels", "grad_output_channels", "bias_shape", "groups_indivisible",
             "zero", "negative", "shape_arg_form", "bad_option", "kernel_too_big", "dtype",
             "not_array", "out", "out_overlap", "huge_shape", "huge_option"]


def run_invalid(case: Dict[str, Any]) -> None:
    p, kw, facts = build_call(case)
    names, must_raise = apply_mutation(case, kw, facts)
    what = f"{p}/{case['algorithm']} with {case['mutation']}"
    try:
        with isa_and_threads(case.get("isa"), case.get("threads")):
            got = FUNCTIONS[p](**kw)
    except Exception as exc:  # noqa: BLE001 - the type is what is checked
        check_error(exc, names, what)
        return
    if must_raise:
        raise Mismatch(f"{what}: no error was raised (returned {type(got).__name__})")
    # Accepted as valid (e.g. a stride of 2**64 gives a one-pixel output): it must be right.
    if p == "fwd":
        res = {"y": got}
    elif p == "backward":
        res = dict(zip(("grad_x", "grad_weight", "grad_bias"), got))
    else:
        res = {"input_grad": {"grad_x": got}, "weight_grad": {"grad_weight": got}}[p]
    dtype = result_dtype(*[kw.get(k) for k in ("x", "weight", "grad_output") if k in kw],
                         kw.get("bias") if p == "fwd" else None)
    facts = dict(facts)
    for name, expected, bound, terms in expected_results(p, kw, facts):
        check_result(res[name], expected, bound, dtype, terms, what + ": " + name)


def run_case(case: Dict[str, Any]) -> None:
    """Run one case (valid, or invalid when it has a "mutation"); raise on failure."""
    if case.get("kind") == "workspace":
        return run_exact_workspace(case)
    if "mutation" in case:
        return run_invalid(case)
    return run_valid(case)


# ---------------------------------------------------------------------------- exact workspace runs

def run_exact_workspace(case: Dict[str, Any]) -> None:
    """One pass through ``fastconv._core`` (the kernel of ``case["algorithm"]`` itself, with
    no rerouting by functional.py) with NaN-poisoned outputs and an exactly sized,
    0xFF-poisoned workspace (ASan/valgrind see one byte past it; a read of scratch memory
    the kernel did not write, or an output element it skipped, shows as NaN), checked
    against the reference; then the same problem through the public function."""
    plain = dict(case, layouts={k: "c" for k in case["layouts"]}, bias=True, out=False)
    plain.pop("kind", None)
    _, kw, facts = build_call(dict(plain, **{"pass": "backward"}))
    x, w, gy = kw["x"], kw["weight"], kw["grad_output"]
    dtype = x.dtype
    assert w.dtype == dtype and gy.dtype == dtype, "exact-workspace cases use one dtype"
    b = make_values((facts["c_out"],), dtype.name, case["seed"] + 2)
    opts = (kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
    spec = functional.make_spec(x.shape, w.shape, *opts, dtype)
    algo = functional.ALGORITHMS[case["algorithm"]]
    what = f"{case['pass']}/{case['algorithm']} (fastconv._core, exact workspace)"
    with isa_and_threads(case.get("isa"), case.get("threads")):
        desc = spec.desc(fastconv.get_num_threads())
        if case["pass"] == "fwd":
            y = np.full(spec.output_shape, np.nan, dtype)
            if not spec.is_empty:
                with exact_workspace(_core.workspace_size(desc, functional.FWD, algo)) as ws:
                    _core.conv_fwd(desc, algo, x, w, b, y, ws)
                got = {"y": y}
                kw_ref = dict(x=x, weight=w, bias=b, stride=opts[0], padding=opts[1], dilation=opts[2], groups=opts[3])
                checks = expected_results("fwd", kw_ref, facts)
        else:
            gx = np.full(spec.input_shape, np.nan, dtype)
            gw = np.full(spec.weight_shape, np.nan, dtype)
            gb = np.full((spec.c_out,), np.nan, dtype)
            if not spec.is_empty:
                with exact_workspace(_core.workspace_size(desc, functional.BWD_DATA, algo)) as ws:
                    _core.conv_bwd_data(desc, algo, gy, w, gx, ws)
                with exact_workspace(_core.workspace_size(desc, functional.BWD_WEIGHTS, algo)) as ws:
                    _core.conv_bwd_weights(desc, algo, gy, x, gw, gb, ws)
                got = {"grad_x": gx, "grad_weight": gw, "grad_bias": gb}
                kw_ref = dict(grad_output=gy, x=x, weight=w, bias=True, stride=opts[0], padding=opts[1],
                              dilation=opts[2], groups=opts[3])
                checks = expected_results("backward", kw_ref, facts)
    if not spec.is_empty:
        for name, expected, bound, terms in checks:
            check_result(got[name], expected, bound, dtype, terms, f"{what}: {name}")
    run_valid(dict(plain, **{"pass": "fwd" if case["pass"] == "fwd" else "backward"}))


# ============================================================================ the seed corpus

def base_case(**over: Any) -> Dict[str, Any]:
    case = dict(pass_="fwd", algorithm="direct", n=2, groups=1, cg=2, kg=3, hw=[5, 6], khw=[3, 3],
                stride=1, padding=1, dilation=1, bias=True, seed=7, scale=1.0,
                dtypes=dict(x="float32", w="float32", b="float32", gy="float32"),
                layouts=dict(x="c", w="c", b="c", gy="c"), specials={}, isa=None, threads=1, out=False)
    case.update(over)
    case["pass"] = case.pop("pass_")
    return case


def _geometries() -> List[Tuple[str, Dict[str, Any]]]:
    """Small problems that reach every kernel and every code path of the driver."""
    return [
        ("3x3 pad 1", dict()),
        ("stride 2, asymmetric pad", dict(stride=2, padding=[[0, 1], [2, 0]], hw=[7, 6])),
        ("dilation 2 'same'", dict(dilation=2, padding="same", hw=[6, 7])),
        ("stride (2,3) 'same'", dict(stride=[2, 3], padding="same", hw=[7, 8], khw=[2, 3])),
        ("groups 2", dict(groups=2, cg=2, kg=3)),
        ("depthwise", dict(groups=3, cg=1, kg=1, n=1)),
        ("depthwise x2", dict(groups=4, cg=1, kg=2, n=1)),
        ("1x1", dict(khw=[1, 1], padding=0)),
        ("1x1 stride 2", dict(khw=[1, 1], padding=0, stride=2)),
        ("1x1 padded", dict(khw=[1, 1], padding=[1, 0])),
        ("kernel = padded input", dict(hw=[3, 4], khw=[5, 6], padding=1)),
        ("1-pixel image, padding only", dict(hw=[1, 1], khw=[3, 3], padding=1)),
        ("valid, many channels (GEMM path)", dict(padding="valid", cg=9, kg=10, hw=[8, 9])),
        ("team-sized (threads)", dict(cg=8, kg=16, hw=[12, 12], n=2, threads=2)),
        ("image mode (threads, batch)", dict(cg=4, kg=12, hw=[10, 10], n=5, threads=2)),
        ("wide kernel, stride 3, dilation 2", dict(khw=[2, 4], stride=3, dilation=2, hw=[9, 13], padding=2)),
        ("N = 0", dict(n=0)),
        ("C_out = 0", dict(kg=0)),
    ]


def _regressions() -> List[Tuple[str, Dict[str, Any]]]:
    """Cases that broke fastconv once (kept so they never break again)."""
    return [
        # Bug: fc_build_col_ranges let lo[m] exceed OW when a kernel column reads only left
        # padding for every output; im2col then memset a negative length (segfault).
        ("col range past OW: 1x3 kernel, left pad 2, W=1",
         dict(n=1, cg=1, kg=1, hw=[1, 1], khw=[1, 3], padding=[[0, 0], [2, 0]])),
        ("col range past OW: 5x5 'same' on a 1-wide image",
         dict(n=1, cg=2, kg=2, hw=[4, 1], khw=[5, 5], padding="same")),
        ("col range past OW: dilated 3-tap, pad 2, W=1",
         dict(n=1, cg=1, kg=2, hw=[3, 1], khw=[1, 3], dilation=2, padding=2)),
        ("col range past OW: stride 2",
         dict(n=1, cg=1, kg=1, hw=[2, 2], khw=[1, 4], stride=2, padding=[[0, 0], [3, 0]])),
    ]


def seed_corpus() -> List[Tuple[str, Dict[str, Any]]]:
    """Deterministic cases, run in a child process by ``test_seed_corpus``."""
    corpus: List[Tuple[str, Dict[str, Any]]] = []
    isas = list(range(_core.best_isa() + 1))
    for gname, geo in _geometries() + _regressions():
        for p in ("fwd", "backward"):
            for dt in ("float32", "float64"):
                for algo in ("direct", "im2col"):
                    for isa in isas:
                        c = base_case(pass_=p, algorithm=algo, isa=isa, **geo)
                        c["dtypes"] = {k: dt for k in c["dtypes"]}
                        c["kind"] = "workspace"
                        corpus.append((f"{gname} | {p} {dt} {algo} isa={isa}", c))
    for gname, geo in _regressions():
        for p in ("input_grad", "weight_grad"):
            for algo in ALGORITHMS:
                corpus.append((f"{gname} | {p} {algo}", base_case(pass_=p, algorithm=algo, **geo)))
    # hostile layouts, dtypes and contents through the public API
    for i, lay in enumerate(LAYOUTS):
        for p in PASSES:
            c = base_case(pass_=p, algorithm=ALGORITHMS[i % 3], seed=100 + i,
                          layouts=dict(x=lay, w=LAYOUTS[(i + 3) % len(LAYOUTS)], b=lay, gy=lay))
            corpus.append((f"layout {lay} | {p}", c))
    for i, (dx, dw) in enumerate([("float32", "float64"), ("int32", "float32"), ("bool", "uint8"),
                                  ("int64", "int64"), ("uint8", "float32")]):
        for p in PASSES:
            c = base_case(pass_=p, algorithm=ALGORITHMS[i % 3], dtypes=dict(x=dx, w=dw, b=dw, gy=dx))
            corpus.append((f"dtypes {dx}/{dw} | {p}", c))
    for where in ("x", "w", "gy", "b"):
        for p in PASSES:
            for algo in ("direct", "im2col"):
                c = base_case(pass_=p, algorithm=algo, padding=0, specials={where: 3}, seed=11)
                corpus.append((f"NaN/inf in {where}, no padding | {p} {algo}", c))
                c = base_case(pass_=p, algorithm=algo, padding=1, specials={where: 3}, seed=12)
                corpus.append((f"NaN/inf in {where}, padding 1 | {p} {algo}", c))
    # every mutation, several variants each
    for m in MUTATIONS:
        for choice in range(12):
            for p in PASSES:
                target = None
                if m == "bad_option":
                    target = list(BAD_OPTION_VALUES)[choice % len(BAD_OPTION_VALUES)]
                if m == "huge_option":
                    target = ("stride", "dilation", "padding")[choice % 3]
                c = base_case(pass_=p, algorithm=ALGORITHMS[choice % 3], seed=choice,
                              khw=[1, 1] if m == "huge_option" and choice % 2 else [3, 3])
                c["mutation"] = {"kind": m, "target": target, "choice": choice}
                corpus.append((f"invalid {m}#{choice} | {p}", c))
    return corpus


# ============================================================================ hypothesis strategies

def _strategies():
    from hypothesis import strategies as st

    @st.composite
    def valid_cases(draw) -> Dict[str, Any]:
        big = draw(st.integers(0, 7)) == 0
        groups = draw(st.sampled_from([1, 1, 1, 2, 3, 4]))
        if groups > 1 and draw(st.booleans()):
            cg, kg = 1, draw(st.integers(1, 2))            # depthwise (multiplier 1 or 2)
        else:
            cg = draw(st.integers(1, 8 if big else 3))
            kg = draw(st.integers(0 if draw(st.integers(0, 15)) == 0 else 1, 12 if big else 3))
        kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
        stride = draw(st.one_of(st.integers(1, 3), st.lists(st.integers(1, 3), min_size=2, max_size=2)))
        dilation = draw(st.one_of(st.just(1), st.integers(1, 3),
                                  st.lists(st.integers(1, 3), min_size=2, max_size=2)))
        form = draw(st.sampled_from(["int", "pair", "asym", "asym", "same", "valid"]))
        pmax = 4
        if form == "int":
            padding: Any = draw(st.integers(0, pmax))
        elif form == "pair":
            padding = draw(st.lists(st.integers(0, pmax), min_size=2, max_size=2))
        elif form == "asym":
            padding = [draw(st.lists(st.integers(0, pmax + 2), min_size=2, max_size=2)) for _ in range(2)]
        else:
            padding = form
        (sh, sw), (dh, dw) = pair(stride), pair(dilation)
        eh, ew = (kh - 1) * dh + 1, (kw - 1) * dw + 1
        if isinstance(padding, str):
            lo_h, lo_w = (eh, ew) if padding == "valid" else (1, 1)
        else:
            t, b_, l_, r_ = resolve_pads(padding, (1, 1), (kh, kw), (sh, sw), (dh, dw))
            lo_h, lo_w = max(1, eh - t - b_), max(1, ew - l_ - r_)
        hmax = 16 if big else 6
        h = lo_h + draw(st.integers(0, hmax))
        w = lo_w + draw(st.integers(0, hmax))
        n = draw(st.integers(0 if draw(st.integers(0, 15)) == 0 else 1, 4 if big else 3))
        layouts = {k: draw(st.sampled_from(LAYOUTS[:2] + LAYOUTS)) for k in ("x", "w", "b", "gy")}
        dt_kind = draw(st.sampled_from(["f32", "f32", "f64", "f64", "mixed", "any"]))
        if dt_kind == "f32":
            dtypes = {k: "float32" for k in ("x", "w", "b", "gy")}
        elif dt_kind == "f64":
            dtypes = {k: "float64" for k in ("x", "w", "b", "gy")}
        else:
            pool = ["float32", "float64"] if dt_kind == "mixed" else list(DTYPES)
            dtypes = {k: draw(st.sampled_from(pool)) for k in ("x", "w", "b", "gy")}
        specials = {}
        if draw(st.integers(0, 5)) == 0:
            specials = {k: draw(st.integers(0, 3)) for k in ("x", "w", "b", "gy")}
        return dict(
            pass_=draw(st.sampled_from(PASSES)), algorithm=draw(st.sampled_from(ALGORITHMS)),
            n=n, groups=groups, cg=cg, kg=kg, hw=[h, w], khw=[kh, kw], stride=stride,
            padding=padding, dilation=dilation, bias=draw(st.booleans()),
            seed=draw(st.integers(0, 2**31 - 1)), scale=draw(st.sampled_from([1.0, 1.0, 1e-3, 1e3])),
            dtypes=dtypes, layouts=layouts, specials=specials,
            isa=draw(st.integers(0, _core.best_isa())), threads=draw(st.sampled_from([1, 1, 2, 3])),
            out=draw(st.booleans()), numpy_ints=draw(st.booleans()), tuples=draw(st.booleans()))

    @st.composite
    def invalid_cases(draw) -> Dict[str, Any]:
        c = draw(valid_cases())
        m = draw(st.sampled_from(MUTATIONS))
        target = None
        if m == "bad_option":
            target = draw(st.sampled_from(list(BAD_OPTION_VALUES)))
        if m == "huge_option":
            target = draw(st.sampled_from(["stride", "dilation", "padding"]))
        c["mutation"] = {"kind": m, "target": target, "choice": draw(st.integers(0, 200))}
        c["specials"] = {}
        return c

    return valid_cases, invalid_cases


def _finish(case: Dict[str, Any]) -> Dict[str, Any]:
    case = dict(case)
    case["pass"] = case.pop("pass_")
    return case


# ============================================================================ child process side

class CaseLog:
    """Writes each case to a file before it runs, so a crash names its case."""

    def __init__(self, path: Optional[str]):
        self.path = path
        self.count = 0

    def __call__(self, case: Dict[str, Any]) -> None:
        self.count += 1
        if self.path:
            with open(self.path, "w") as f:
                json.dump(case, f)
                f.flush()
                os.fsync(f.fileno())


def child_fuzz(which: str, examples: int, log: CaseLog) -> int:
    from hypothesis import HealthCheck, Phase, given, seed, settings

    valid_cases, invalid_cases = _strategies()
    strategy = valid_cases() if which == "valid" else invalid_cases()

    @settings(max_examples=examples, deadline=None, print_blob=True, database=None,
              suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.generate, Phase.target, Phase.shrink])
    @given(strategy)
    def fuzz(case):
        case = _finish(case)
        log(case)
        run_case(case)

    s = os.environ.get("FASTCONV_FUZZ_SEED")
    if s:
        fuzz = seed(int(s))(fuzz)
    t0 = time.perf_counter()
    fuzz()
    print(f"FUZZ {which}: {log.count} examples ran in {time.perf_counter() - t0:.1f} s "
          f"(budget {examples})", flush=True)
    return 0


def child_corpus(start: int, log: CaseLog, progress: Optional[str]) -> int:
    corpus = seed_corpus()
    failures = []
    for i in range(start, len(corpus)):
        name, case = corpus[i]
        if progress:
            with open(progress, "w") as f:
                f.write(str(i))
        log(case)
        try:
            run_case(case)
        except Exception:  # noqa: BLE001
            failures.append(f"[{i}] {name}\n    case: {json.dumps(case)}\n    "
                            + traceback.format_exc().strip().splitlines()[-1])
    print(f"CORPUS: {len(corpus) - start} cases from #{start}, {len(failures)} failed", flush=True)
    for f in failures:
        print("FAIL " + f, flush=True)
    return 1 if failures else 0


def main(argv: List[str]) -> int:
    log = CaseLog(os.environ.get("FASTCONV_FUZZ_CASE_LOG"))
    if argv[0] == "fuzz":
        return child_fuzz(argv[1], int(argv[2]) if len(argv) > 2 else n_examples(), log)
    if argv[0] == "corpus":
        return child_corpus(int(argv[1]) if len(argv) > 1 else 0, log, os.environ.get("FASTCONV_FUZZ_PROGRESS"))
    if argv[0] == "case":
        case = json.loads(argv[1])
        run_case(case)
        print("case OK")
        return 0
    if argv[0] == "list":
        for i, (name, _) in enumerate(seed_corpus()):
            print(i, name)
        return 0
    print(__doc__)
    return 2


# ============================================================================ parent side (pytest)

def run_child(args: List[str], timeout: float, tmp: str) -> Tuple[int, str, Optional[str]]:
    """Run this file in a child process: (return code, output, last case as JSON or None)."""
    case_log = os.path.join(tmp, "case.json")
    if os.path.exists(case_log):
        os.remove(case_log)
    env = dict(os.environ)
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([pkg_root, HERE] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["FASTCONV_FUZZ_CASE_LOG"] = case_log
    env["FASTCONV_FUZZ_PROGRESS"] = os.path.join(tmp, "progress")
    env.setdefault("PYTHONFAULTHANDLER", "1")
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), *args], env=env, cwd=tmp,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    out = proc.stdout.decode(errors="replace")
    last = open(case_log).read() if os.path.exists(case_log) else None
    return proc.returncode, out, last


def _crash_report(rc: int, out: str, last: Optional[str]) -> str:
    sig = f"signal {-rc}" if rc < 0 else f"exit status {rc}"
    return (f"the child process died ({sig}) while running the case\n    {last}\n"
            f"reproduce with:\n    python tests/test_hardening_fuzz.py case '{last}'\n"
            f"--- child output (tail) ---\n{out[-6000:]}")


CRASH = (lambda rc: rc < 0 or rc >= 128)  # killed by a signal (or a shell reporting one)


@pytest.mark.parametrize("which", ["valid", "invalid"])
def test_fuzz(which, tmp_path):
    """Hypothesis fuzzing in a child process: FASTCONV_FUZZ_EXAMPLES examples."""
    examples = n_examples()
    rc, out, last = run_child(["fuzz", which, str(examples)], timeout=max(600, examples), tmp=str(tmp_path))
    if CRASH(rc):
        pytest.fail(_crash_report(rc, out, last), pytrace=False)
    summary = [ln for ln in out.splitlines() if ln.startswith("FUZZ")]
    print("\n".join(summary))
    assert rc == 0, f"fuzz ({which}) found a failing case:\n{out[-8000:]}"
    assert summary, out[-4000:]


def test_seed_corpus(tmp_path):
    """The deterministic corpus (every kernel x pass x dtype x algorithm x ISA with exact
    workspaces, the regressions, hostile layouts, NaN/inf, every kind of invalid argument),
    in a child process; after a crash the child is restarted past the crashing case, so one
    crash hides nothing else."""
    corpus = seed_corpus()
    start, crashes, fails, outputs = 0, [], [], []
    progress = tmp_path / "progress"
    while start < len(corpus):
        rc, out, last = run_child(["corpus", str(start)], timeout=900, tmp=str(tmp_path))
        outputs.append(out)
        fails += [ln for ln in out.splitlines() if ln.startswith("FAIL") or ln.startswith("    ")]
        if not CRASH(rc):
            break
        at = int(progress.read_text()) if progress.exists() else start
        if len(crashes) < 3:
            crashes.append(f"#{at} {corpus[at][0]}: " + _crash_report(rc, out, last))
        else:
            sig = f"signal {-rc}" if rc < 0 else f"exit status {rc}"
            crashes.append(f"#{at} {corpus[at][0]}: the child process died ({sig}); case {last}")
        start = at + 1
    print(f"seed corpus: {len(corpus)} cases, {len(crashes)} crashed")
    msg = ""
    if crashes:
        msg += f"{len(crashes)} corpus case(s) CRASHED the process:\n" + "\n\n".join(crashes) + "\n\n"
    if fails:
        msg += "failing corpus cases:\n" + "\n".join(fails)
    assert not msg, msg


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
