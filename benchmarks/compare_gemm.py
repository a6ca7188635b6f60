"""Side-by-side GEMM speed: fastconv's own sgemm/dgemm against numpy.matmul (its BLAS).

Run as (OpenBLAS must pick its own kernel and cache sizes for this CPU):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_gemm.py

For every dtype, size n (square n x n x n products) and thread count, both libraries get
a warm-up call, then ``--repeats`` timed calls each, interleaved (ours, NumPy, ours, ...)
so that a noisy neighbour hurts both alike; the table shows the median GFLOP/s
(2 n^3 / time) and the ratio ours / NumPy. With more than one thread, each timed call is
preceded by a short pause (--gap): after a call, OpenBLAS's worker threads and OpenMP's
keep spinning for a while, and on a machine with as many cores as threads they would steal
the next call's cores (whichever library comes next would pay for the other). NumPy's BLAS thread count is set with
threadpoolctl (when installed; otherwise the table says "unset"), ours with nthreads.
Outputs are preallocated for both, so allocation is not timed.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

try:
    from fastconv import _core
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    from fastconv import _core

try:
    from threadpoolctl import threadpool_info, threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = threadpool_info = None

ISA_NAMES = {0: "generic", 1: "avx2", 2: "avx512"}


class _NoLimit:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def blas_limit(nthreads):
    if threadpool_limits is None:
        return _NoLimit()
    return threadpool_limits(limits=nthreads, user_api="blas")


def blas_name():
    if threadpool_info is None:
        return "unknown BLAS (threadpoolctl not installed: NumPy threads unset)"
    libs = [f"{d.get('internal_api')} {d.get('version')} ({d.get('architecture')})"
            for d in threadpool_info() if d.get("user_api") == "blas"]
    return ", ".join(libs) or "no BLAS found by threadpoolctl"


def measure(dtype, n, nthreads, repeats, gap):
    rng = np.random.default_rng(n)
    a = rng.uniform(-1, 1, size=(n, n)).astype(dtype)
    b = rng.uniform(-1, 1, size=(n, n)).astype(dtype)
    c_ours = np.empty((n, n), dtype)
    c_np = np.empty((n, n), dtype)
    flop = 2.0 * n**3
    ours, theirs = [], []
    with blas_limit(nthreads):
        _core.gemm(a, b, c_ours, nthreads=nthreads)  # warm-up: pages, caches, thread pools
        np.matmul(a, b, out=c_np)
        for _ in range(repeats):
            time.sleep(gap)
            t = time.perf_counter()
            _core.gemm(a, b, c_ours, nthreads=nthreads)
            ours.append(time.perf_counter() - t)
            time.sleep(gap)
            t = time.perf_counter()
            np.matmul(a, b, out=c_np)
            theirs.append(time.perf_counter() - t)
    err = float(np.max(np.abs(c_ours.astype(np.float64) - c_np)))
    scale = float(np.max(np.abs(a).astype(np.float64) @ np.abs(b[:, :1]).astype(np.float64)))
    if not err <= 1e-3 * scale:
        raise AssertionError(f"results differ: max |ours - numpy| = {err} (scale {scale})")
    g_ours = flop / statistics.median(ours) / 1e9
    g_np = flop / statistics.median(theirs) / 1e9
    return g_ours, g_np


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    p.add_argument("--isa", default="active",
                   help="active (default), all, or one of generic/avx2/avx512")
    p.add_argument("--repeats", type=int, default=0,
                   help="timed calls per library and row (default: about 1.5 s per row, 5..31)")
    p.add_argument("--gap", type=float, default=0.2,
                   help="seconds of pause before each timed call with > 1 thread (default 0.2)")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = p.parse_args(argv)

    best, old = _core.best_isa(), _core.active_isa()
    if args.isa == "active":
        isas = [old]
    elif args.isa == "all":
        isas = list(range(best + 1))
    else:
        code = {v: k for k, v in ISA_NAMES.items()}[args.isa]
        if code > best:
            p.error(f"this CPU does not support {args.isa}")
        isas = [code]

    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if var in os.environ:
            print(f"warning: {var}={os.environ[var]} is set; run under `env -u {var}` "
                  "for a fair NumPy baseline", file=sys.stderr)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"NumPy {np.__version__} with {blas_name()}")
    print(f"# median of interleaved timed calls after a warm-up; GFLOP/s = 2 n^3 / time; "
          f"load average before: {os.getloadavg()[0]:.2f}")
    cols = ["dtype", "n", "threads", "ISA", "ours GFLOP/s", "NumPy GFLOP/s", "ratio"]
    if args.markdown:
        print("| " + " | ".join(cols) + " |")
        print("|" + "|".join(["---"] * len(cols)) + "|")
    else:
        print(f"{cols[0]:<8} {cols[1]:>5} {cols[2]:>7} {cols[3]:>8} {cols[4]:>13} {cols[5]:>14} {cols[6]:>6}")
    try:
        for isa in isas:
            _core.set_isa(isa)
            for dt in args.dtypes:
                dtype = np.dtype(dt).type
                for n in args.sizes:
                    for nt in args.threads:
                        reps = args.repeats
                        if reps <= 0:  # ~1.5 s per row at ~50/100 GFLOP/s per thread
                            per_call = 2.0 * n**3 / ((50e9 if dtype is np.float64 else 100e9) * nt)
                            reps = int(min(31, max(5, 0.75 / per_call)))
                        g_ours, g_np = measure(dtype, n, nt, reps, args.gap if nt > 1 else 0.0)
                        row = [np.dtype(dtype).name, str(n), str(nt), ISA_NAMES[isa],
                               f"{g_ours:.1f}", f"{g_np:.1f}", f"{g_ours / g_np:.2f}"]
                        if args.markdown:
                            print("| " + " | ".join(row) + " |", flush=True)
                        else:
                            print(f"{row[0]:<8} {row[1]:>5} {row[2]:>7} {row[3]:>8} {row[4]:>13} "
                                  f"{row[5]:>14} {row[6]:>6}", flush=True)
    finally:
        _core.set_isa(old)
    print(f"# load average after: {os.getloadavg()[0]:.2f} (other processes on this machine "
          "take cores from both libraries alike)")


if __name__ == "__main__":
    main()
