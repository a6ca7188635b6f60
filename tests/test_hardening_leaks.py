"""Hardening: no leaks over many calls (issue 6, item 6).

10,000 calls per loop (forward and backward, both algorithms, tiny shapes, both dtypes,
plus calls that fail validation and calls into ``fastconv._core`` that let C allocate and
free its own workspace) must keep the process's resident set flat: after a warm-up, two
further rounds may grow RSS by no more than ``TOLERANCE`` bytes in all. Every call
allocates at least a few KiB (outputs, workspace), so a leak of one result per call would
grow RSS by tens of MiB.

RSS is read from /proc/self/statm (Linux). Under AddressSanitizer (tools/sanitize.sh sets
FASTCONV_UNDER_SANITIZER) freed memory sits in ASan's quarantine and RSS is meaningless,
so the RSS assertions are skipped there; tools/memcheck.sh checks leaks with valgrind.
"""
from __future__ import annotations

import gc
import os
import time

import numpy as np
import pytest

import fastconv
from fastconv import _core, functional

CALLS = 10_000
TOLERANCE = 3 << 20  # bytes
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

pytestmark = [
    pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc/self/statm (Linux)"),
    pytest.mark.skipif(bool(os.environ.get("FASTCONV_UNDER_SANITIZER")),
                       reason="RSS is meaningless under ASan (quarantine); see tools/memcheck.sh"),
]


def rss() -> int:
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def _problem(dtype, seed=0, shape=(2, 3, 8, 8), wshape=(4, 3, 3, 3)):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    b = rng.standard_normal(wshape[0]).astype(dtype)
    gy = rng.standard_normal((shape[0], wshape[0], shape[2], shape[3])).astype(dtype)
    return x, w, b, gy


def _public_calls():
    calls = []
    for dtype in (np.float32, np.float64):
        x, w, b, gy = _problem(dtype)
        for algo in ("direct", "im2col"):
            calls.append(lambda x=x, w=w, b=b, a=algo: fastconv.conv2d(x, w, b, padding=1, algorithm=a))
            calls.append(lambda x=x, w=w, gy=gy, a=algo: fastconv.conv2d_backward(gy, x, w, padding=1, algorithm=a))
            calls.append(lambda x=x, w=w, gy=gy, a=algo: fastconv.conv2d_input_grad(gy, w, x.shape, padding=1, algorithm=a))
            calls.append(lambda x=x, w=w, gy=gy, a=algo: fastconv.conv2d_weight_grad(gy, x, w.shape, padding=1, algorithm=a))
    # hostile layouts take the copying path
    x, w, b, gy = _problem(np.float32, seed=1)
    xs = x.astype(x.dtype.newbyteorder("S"))
    calls.append(lambda: fastconv.conv2d(xs[:, :, ::-1], w.T.copy().T, b.tolist(), padding="same"))
    out = np.empty((2, 4, 8, 8), np.float32)
    calls.append(lambda: fastconv.conv2d(x, w, b, padding=1, out=out))
    calls.append(lambda: fastconv.correlate2d(x[0, 0], w[0, 0], mode="same"))
    return calls


def _failing_calls():
    x, w, b, gy = _problem(np.float32)

    def bad(fn):
        def call():
            try:
                fn()
            except (ValueError, TypeError, MemoryError):
                return
            raise AssertionError("expected an error")
        return call

    return [bad(lambda: fastconv.conv2d(x, w[:, :2])),
            bad(lambda: fastconv.conv2d(x, w, stride=0)),
            bad(lambda: fastconv.conv2d(x, w, out=np.empty(3))),
            bad(lambda: fastconv.conv2d(x.astype(np.complex64), w)),
            bad(lambda: fastconv.conv2d_input_grad(gy, w, (2**62, 3, 8, 8), padding=1)),
            bad(lambda: fastconv.conv2d_weight_grad(gy, x, (4, 3, 2**40, 3))),
            bad(lambda: fastconv.conv2d(x, w, algorithm="fft"))]


def _core_own_workspace_calls():
    """Calls that pass workspace=None, so C allocates (and must free) its own workspace:
    each one allocates tens of KiB."""
    calls = []
    for dtype in (np.float32, np.float64):
        x, w, b, gy = _problem(dtype, shape=(1, 8, 12, 12), wshape=(8, 8, 3, 3))
        spec = functional.make_spec(x.shape, w.shape, 1, 1, 1, 1, np.dtype(dtype))
        y = np.empty(spec.output_shape, dtype)
        gx, gw, gb = np.empty_like(x), np.empty_like(w), np.empty_like(b)
        for algo in (1, 2):  # direct, im2col
            desc = spec.desc(1)
            calls.append(lambda d=desc, a=algo, x=x, w=w, b=b, y=y: _core.conv_fwd(d, a, x, w, b, y, None))
            calls.append(lambda d=desc, a=algo, gy=gy, w=w, gx=gx: _core.conv_bwd_data(d, a, gy, w, gx, None))
            calls.append(lambda d=desc, a=algo, gy=gy, x=x, gw=gw, gb=gb:
                         _core.conv_bwd_weights(d, a, gy, x, gw, gb, None))
    return calls


def _churn(calls, n):
    for i in range(n):
        calls[i % len(calls)]()


@pytest.mark.parametrize("kind", ["public", "failing", "core_own_workspace", "threads"])
def test_rss_flat_over_10000_calls(kind):
    if kind == "public":
        calls = _public_calls()
    elif kind == "failing":
        calls = _failing_calls()
    elif kind == "core_own_workspace":
        calls = _core_own_workspace_calls()
    else:  # problems just big enough for an OpenMP team (>= 32768 multiply-adds), 2 threads
        calls = []
        for dtype in (np.float32, np.float64):
            x, w, b, gy = _problem(dtype, shape=(2, 4, 8, 8), wshape=(8, 4, 3, 3))
            for algo in ("direct", "im2col"):
                calls.append(lambda x=x, w=w, b=b, a=algo: fastconv.conv2d(x, w, b, padding=1, algorithm=a))
                calls.append(lambda x=x, w=w, gy=gy, a=algo: fastconv.conv2d_backward(gy, x, w, padding=1, algorithm=a))
    n = CALLS if kind != "threads" else CALLS // 10  # team calls cost more on a loaded machine
    t0 = time.perf_counter()
    with fastconv.threads(2 if kind == "threads" else 1):
        _churn(calls, max(500, n // 10))  # warm-up: caches, workspace, OpenMP pool, allocator
        r0 = rss()
        _churn(calls, n)
        r1 = rss()
        _churn(calls, n)
        r2 = rss()
    elapsed = time.perf_counter() - t0
    mib = 1 << 20
    print(f"{kind}: RSS {r0 / mib:.1f} -> {r1 / mib:.1f} -> {r2 / mib:.1f} MiB over 2 x {n} calls "
          f"in {elapsed:.1f} s")
    assert r2 - r0 <= TOLERANCE, (f"RSS grew by {(r2 - r0) / mib:.2f} MiB over {2 * n} {kind} calls "
                                  f"({r0 / mib:.1f} -> {r1 / mib:.1f} -> {r2 / mib:.1f} MiB)")
