"""tools/memcheck_touch.py: call every fastconv kernel once, small, for valgrind (tools/memcheck.sh).

Every pass (fwd, bwd_data, bwd_weights with and without bias) x dtype (float32, float64) x
algorithm (direct, im2col, auto: depthwise and 1x1 paths included) x instruction set the
CPU (as valgrind shows it: no AVX-512) supports, over geometries that reach every code path
(strides, asymmetric/"same" padding, dilation, groups, depthwise, 1x1 with and without
stride/padding, kernels as large as the padded input, padding wider than the output, GEMM
edge tiles, an im2col problem of several tiles). Each call goes straight to
``fastconv._core`` with outputs of exactly the right size and a workspace of exactly the
size the C side asks for (``posix_memalign``, so one byte past it is an invalid access
under valgrind), filled with 0xFF, and is compared with ``fastconv.reference``. Then the
public functions run once per geometry on hostile layouts (copying paths).

Run alone it is a quick self-check: ``PYTHONPATH=src python tools/memcheck_touch.py``.
Exit status 1 if a result is wrong.
"""
from __future__ import annotations

import ctypes
import os
import sys
import time

import numpy as np

import fastconv
from fastconv import _core, functional
from fastconv import reference as ref

# name, x shape, weight shape, stride, padding, dilation, groups
GEOMETRIES = [
    ("3x3 pad 1", (2, 3, 6, 7), (4, 3, 3, 3), 1, 1, 1, 1),
    ("stride 2, asymmetric padding", (1, 2, 7, 6), (3, 2, 3, 3), 2, ((0, 1), (2, 0)), 1, 1),
    ("dilation 2, same", (1, 2, 6, 7), (2, 2, 3, 3), 1, "same", 2, 1),
    ("stride (2, 3), same", (1, 2, 7, 8), (2, 2, 2, 3), (2, 3), "same", 1, 1),
    ("groups 2", (2, 4, 5, 6), (6, 2, 3, 3), 1, 1, 1, 2),
    ("depthwise", (1, 3, 6, 6), (3, 1, 3, 3), 1, 1, 1, 3),
    ("depthwise x2, stride 2", (1, 4, 6, 5), (8, 1, 3, 3), 2, 1, 1, 4),
    ("depthwise 5x5 dilation 2", (1, 4, 9, 9), (4, 1, 5, 5), 1, "same", 2, 4),
    ("1x1", (2, 3, 5, 4), (4, 3, 1, 1), 1, 0, 1, 1),
    ("1x1 stride 2", (1, 3, 5, 5), (4, 3, 1, 1), 2, 0, 1, 1),
    ("1x1 padded", (1, 2, 3, 3), (2, 2, 1, 1), 1, (1, 0), 1, 1),
    ("kernel = padded input", (1, 2, 3, 4), (3, 2, 5, 6), 1, 1, 1, 1),
    ("padding wider than the output", (1, 1, 1, 1), (1, 1, 1, 3), 1, ((0, 0), (2, 0)), 1, 1),
    ("5x5 same on a 1-wide image", (1, 2, 4, 1), (2, 2, 5, 5), 1, "same", 1, 1),
    ("GEMM edge tiles", (1, 9, 8, 9), (10, 9, 3, 3), 1, "valid", 1, 1),
    ("many channels", (1, 24, 5, 5), (33, 24, 3, 3), 1, 1, 1, 1),
    # direct's pixel-vector forward (filters in blocks of 8): a last run overlapping the one
    # before, and rows narrower than a vector (a short run whose surplus lanes read the band's
    # next row and its slack; the band, 2 x 8 x 5 floats, ends on a 64-byte boundary, so
    # without the slack those reads would leave the workspace)
    ("pixel-vector rows", (2, 3, 7, 13), (8, 3, 3, 3), 1, 1, 1, 1),
    ("pixel-vector narrow rows", (1, 2, 6, 3), (16, 2, 3, 3), 1, 1, 1, 1),
]
# an im2col problem whose lowering needs several tiles of output rows (8 MiB tile budget)
TILED = ("im2col tiles", (1, 64, 40, 64), (4, 64, 3, 3), 1, 1, 1, 1)

PASSES = ("fwd", "bwd_data", "bwd_weights")
ALGOS = {"direct": 1, "im2col": 2, "auto": 0}

_libc = ctypes.CDLL(None)
_libc.posix_memalign.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_size_t]
_libc.free.argtypes = [ctypes.c_void_p]


#: Under valgrind (tools/memcheck.sh sets it) the workspace is left uninitialised, so a kernel
#: that reads scratch memory it did not write is reported with the workspace as the origin;
#: otherwise it is filled with 0xFF bytes (NaN), which makes such a result wrong.
UNINIT = bool(os.environ.get("FASTCONV_MEMCHECK_UNINIT"))


class ExactWorkspace:
    """``nbytes`` of 64-byte-aligned malloc memory, filled with 0xFF unless ``UNINIT``
    (None when 0)."""

    def __init__(self, nbytes: int):
        self.nbytes, self.ptr, self.array = nbytes, None, None

    def __enter__(self):
        if self.nbytes == 0:
            return None
        p = ctypes.c_void_p()
        if _libc.posix_memalign(ctypes.byref(p), 64, self.nbytes) != 0:
            raise MemoryError(self.nbytes)
        self.ptr = p
        self.array = np.ctypeslib.as_array((ctypes.c_uint8 * self.nbytes).from_address(p.value))
        if not UNINIT:
            self.array.fill(0xFF)
        return self.array

    def __exit__(self, *exc):
        self.array = None
        if self.ptr is not None:
            _libc.free(self.ptr)


def check(what, got, expected, bound, dtype, terms):
    eps = float(np.finfo(dtype).eps)
    err = np.abs(got.astype(np.float64) - expected)
    tol = max(16.0, 2.0 * terms) * eps * bound
    if not (np.isfinite(got).all() and (err <= tol).all()):
        raise AssertionError(f"{what}: wrong result (max error / tolerance "
                             f"{float(np.max(err / np.where(tol > 0, tol, np.inf)))}, "
                             f"{int((~np.isfinite(got)).sum())} non-finite)")


def touch(geom, dtype, isa, verify):
    name, xs, ws, stride, padding, dilation, groups = geom
    rng = np.random.default_rng(len(name))
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    spec = functional.make_spec(xs, ws, stride, padding, dilation, groups, np.dtype(dtype))
    gy = rng.standard_normal(spec.output_shape).astype(dtype)
    desc = spec.desc(1)
    opts = (stride, padding, dilation, groups)
    if verify:
        f = {k: v.astype(np.float64) for k, v in dict(x=x, w=w, b=b, gy=gy).items()}
        a = {k: np.abs(v) for k, v in f.items()}
        red = spec.n * spec.oh * spec.ow
        want = {
            "fwd": (ref.conv2d(f["x"], f["w"], f["b"], *opts), ref.conv2d(a["x"], a["w"], a["b"], *opts),
                    spec.c_in // groups * spec.kh * spec.kw + 1),
            "bwd_data": (ref.conv2d_input_grad(f["gy"], f["w"], xs, *opts),
                         ref.conv2d_input_grad(a["gy"], a["w"], xs, *opts), spec.c_out // groups * spec.kh * spec.kw),
            "bwd_weights": (ref.conv2d_weight_grad(f["gy"], f["x"], ws, *opts),
                            ref.conv2d_weight_grad(a["gy"], a["x"], ws, *opts), red),
            "bias": (f["gy"].sum(axis=(0, 2, 3)), a["gy"].sum(axis=(0, 2, 3)), red),
        }
    calls = 0
    for algo_name, algo in ALGOS.items():
        for p in PASSES:
            code = {"fwd": functional.FWD, "bwd_data": functional.BWD_DATA, "bwd_weights": functional.BWD_WEIGHTS}[p]
            with ExactWorkspace(_core.workspace_size(desc, code, algo)) as wsp:
                if p == "fwd":
                    for bias in (b, None):
                        y = np.full(spec.output_shape, np.nan, dtype)
                        _core.conv_fwd(desc, algo, x, w, bias, y, wsp)
                        calls += 1
                        if verify and bias is not None:
                            check(f"{name} fwd {algo_name}", y, *want["fwd"][:2], dtype, want["fwd"][2])
                elif p == "bwd_data":
                    gx = np.full(xs, np.nan, dtype)
                    _core.conv_bwd_data(desc, algo, gy, w, gx, wsp)
                    calls += 1
                    if verify:
                        check(f"{name} bwd_data {algo_name}", gx, *want["bwd_data"][:2], dtype, want["bwd_data"][2])
                else:
                    for with_bias in (True, False):
                        gw = np.full(ws, np.nan, dtype)
                        gb = np.full(ws[0], np.nan, dtype) if with_bias else None
                        _core.conv_bwd_weights(desc, algo, gy, x, gw, gb, wsp)
                        calls += 1
                        if verify:
                            check(f"{name} bwd_weights {algo_name}", gw, *want["bwd_weights"][:2], dtype,
                                  want["bwd_weights"][2])
                            if with_bias:
                                check(f"{name} bias {algo_name}", gb, *want["bias"][:2], dtype, want["bias"][2])
            # the workspace that C allocates itself (workspace=None)
            if p == "fwd":
                _core.conv_fwd(desc, algo, x, w, b, np.empty(spec.output_shape, dtype), None)
                calls += 1
    return calls


def hostile_public(geom):
    """The public API on byte-swapped, misaligned, negative-stride, read-only inputs."""
    name, xs, ws, stride, padding, dilation, groups = geom
    rng = np.random.default_rng(1)
    x = rng.standard_normal(xs).astype(">f4")[:, :, ::-1]
    buf = np.zeros(int(np.prod(ws)) * 8 + 1, np.uint8)
    w = np.ndarray(ws, dtype=np.float64, buffer=buf, offset=1)
    w[...] = rng.standard_normal(ws)
    w.flags.writeable = False
    y = fastconv.conv2d(x, w, None, stride, padding, dilation, groups)
    gy = np.asfortranarray(rng.standard_normal(y.shape))
    for algo in ALGOS:
        fastconv.conv2d(x, w, np.arange(ws[0]), stride, padding, dilation, groups, algorithm=algo)
        fastconv.conv2d_backward(gy, x, w, stride, padding, dilation, groups, algorithm=algo)
    return 1 + 2 * len(ALGOS)


def main() -> int:
    fastconv.set_num_threads(1)
    t0 = time.perf_counter()
    isas = list(range(_core.best_isa() + 1))
    calls = 0
    for geom in GEOMETRIES:
        for dtype in (np.float32, np.float64):
            for isa in isas:
                _core.set_isa(isa)
                calls += touch(geom, dtype, isa, verify=(isa == isas[-1]))
        calls += hostile_public(geom)
    if not os.environ.get("FASTCONV_MEMCHECK_SKIP_TILED"):
        for dtype in (np.float32, np.float64):
            _core.set_isa(isas[-1])
            calls += touch(TILED, dtype, isas[-1], verify=True)
    print(f"memcheck_touch: {calls} kernel calls over {len(GEOMETRIES) + 1} geometries, ISAs "
          f"{[('generic', 'avx2', 'avx512')[i] for i in isas]}, OK in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
