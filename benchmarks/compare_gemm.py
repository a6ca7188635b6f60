"""Side-by-side GEMM speed: fastconv's own sgemm/dgemm against numpy.matmul (its BLAS).

Run as (OpenBLAS must pick its own kernel and cache sizes for this CPU):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_gemm.py

For every dtype, size n (square n x n x n products) and thread count, both libraries get
a warm-up call, then ``--rounds`` alternations of a block of back-to-back calls of ours and
a block of NumPy's (``--seconds`` each), so that a noisy neighbour hurts both alike; the
table shows the median GFLOP/s (2 n^3 / time) over the timed calls and the ratio
ours / NumPy, then the same from each library's fastest call ("best"): on a machine shared
with other jobs the median of a 2-thread run mostly measures how often a competing process
held one of the cores, while the fastest call shows what each library does when it has
the cores it asked for. The calls in the first ``--settle`` seconds of each block are not counted:
after its last call, OpenBLAS's worker threads (and OpenMP's) keep spinning for tens of
milliseconds, and on a machine with as many cores as threads they would take the cores of
the other library's first calls. (Pausing between calls instead does not work on a VM:
an idle virtual CPU takes milliseconds to wake.) NumPy's BLAS thread count is set with
threadpoolctl (when installed; otherwise the table says "unset"), ours with nthreads.
Outputs are preallocated for both, so allocation is not timed.

``--mkl`` adds Intel MKL's cblas_?gemm as a third contender, called through ctypes from
``libmkl_rt`` (``pip install mkl`` provides it; give ``--mkl auto`` to find it next to this
Python or on the loader's path, or the library's path). MKL is run on the GNU OpenMP
runtime (MKL_THREADING_LAYER=GNU, set before it loads), the one fastconv uses, so that no
second runtime's idle threads spin against the other library's calls. MKL chooses its
code path by CPU vendor: on AMD CPUs it may not use AVX-512 (the header names the CPU).
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


def load_mkl(where):
    """cblas_sgemm/cblas_dgemm callers of libmkl_rt (found by ``where``: "auto" or a path)."""
    import ctypes
    import ctypes.util
    import glob

    os.environ.setdefault("MKL_THREADING_LAYER", "GNU")
    if where == "auto":
        found = sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*")))
        where = found[0] if found else ctypes.util.find_library("mkl_rt")
        if not where:
            raise SystemExit("--mkl auto: libmkl_rt not found (pip install mkl, or give its path)")
    lib = ctypes.CDLL(where)
    lib.MKL_Set_Num_Threads.argtypes = [ctypes.c_int]
    ver = ctypes.create_string_buffer(256)
    lib.MKL_Get_Version_String(ver, 256)

    def caller(dtype):
        fn = lib.cblas_sgemm if dtype == np.float32 else lib.cblas_dgemm
        real = ctypes.c_float if dtype == np.float32 else ctypes.c_double
        fn.restype = None
        i, p = ctypes.c_int, ctypes.c_void_p
        fn.argtypes = [i, i, i, i, i, i, real, p, i, p, i, real, p, i]

        def gemm(a, b, c, nthreads):
            m, k = a.shape
            n = b.shape[1]
            lib.MKL_Set_Num_Threads(nthreads)
            fn(101, 111, 111, m, n, k, 1.0, a.ctypes.data, k, b.ctypes.data, n, 0.0, c.ctypes.data, n)
        return gemm
    return caller, ver.value.decode().strip()


def _block(fn, seconds, settle):
    """Call fn repeatedly for about ``seconds`` (at least 3 timed calls); return the times of
    the calls that started after the first ``settle`` seconds of the block."""
    times = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        t1 = time.perf_counter()
        if t0 - start >= settle:
            times.append(t1 - t0)
        if t1 - start >= seconds and len(times) >= 3:
            return times


def measure(dtype, n, nthreads, rounds, seconds, settle, mkl=None):
    rng = np.random.default_rng(n)
    a = rng.uniform(-1, 1, size=(n, n)).astype(dtype)
    b = rng.uniform(-1, 1, size=(n, n)).astype(dtype)
    c_ours = np.empty((n, n), dtype)
    c_np = np.empty((n, n), dtype)
    flop = 2.0 * n**3
    c_mkl = np.empty((n, n), dtype)
    ours, theirs, intel = [], [], []
    with blas_limit(nthreads):
        _core.gemm(a, b, c_ours, nthreads=nthreads)  # warm-up: pages, caches, thread pools
        np.matmul(a, b, out=c_np)
        if mkl:
            mkl(a, b, c_mkl, nthreads)
        for _ in range(rounds):
            ours += _block(lambda: _core.gemm(a, b, c_ours, nthreads=nthreads), seconds, settle)
            theirs += _block(lambda: np.matmul(a, b, out=c_np), seconds, settle)
            if mkl:
                intel += _block(lambda: mkl(a, b, c_mkl, nthreads), seconds, settle)
    scale = float(np.max(np.abs(a).astype(np.float64) @ np.abs(b[:, :1]).astype(np.float64)))
    for name, c in (("ours", c_ours), ("MKL", c_mkl if mkl else c_np)):
        err = float(np.max(np.abs(c.astype(np.float64) - c_np)))
        if not err <= 1e-3 * scale:
            raise AssertionError(f"results differ: max |{name} - numpy| = {err} (scale {scale})")
    res = [flop / statistics.median(ours) / 1e9, flop / statistics.median(theirs) / 1e9,
           flop / min(ours) / 1e9, flop / min(theirs) / 1e9]
    if mkl:
        res += [flop / statistics.median(intel) / 1e9, flop / min(intel) / 1e9]
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    p.add_argument("--isa", default="active",
                   help="active (default), all, or one of generic/avx2/avx512")
    p.add_argument("--rounds", type=int, default=3,
                   help="alternations ours/NumPy per row (default 3)")
    p.add_argument("--seconds", type=float, default=0.5,
                   help="length of each library's block of calls per round (default 0.5 s)")
    p.add_argument("--settle", type=float, default=0.1,
                   help="calls in the first SETTLE seconds of a block are not counted (default 0.1)")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--mkl", metavar="auto|PATH", default=None,
                   help="also time Intel MKL's cblas_?gemm from libmkl_rt (see above)")
    args = p.parse_args(argv)
    mkl_caller, mkl_version = load_mkl(args.mkl) if args.mkl else (None, None)

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
          f"NumPy {np.__version__} with {blas_name()}"
          + (f"; {mkl_version} (threading: {os.environ['MKL_THREADING_LAYER']})" if mkl_caller else ""))
    from fastconv.bench.env import cpu_model
    info = _core.cpu_info()
    print(f"# CPU: {cpu_model()} (family {info['family']:#x} model {info['model']:#x}; "
          f"L1d {info['l1d'] >> 10} KiB, L2 {info['l2'] >> 10} KiB, 512-bit FMA pipes "
          f"{info['fma512_ports']})")
    print(f"# median of timed calls in {args.rounds} interleaved rounds of {args.seconds} s blocks "
          f"(first {args.settle} s of each block not counted); GFLOP/s = 2 n^3 / time; "
          f"load average before: {os.getloadavg()[0]:.2f}")
    cols = ["dtype", "n", "threads", "ISA", "ours GFLOP/s", "NumPy GFLOP/s", "ratio",
            "ours best", "NumPy best", "best ratio"]
    if mkl_caller:
        cols += ["MKL GFLOP/s", "vs MKL", "MKL best", "best vs MKL"]
    if args.markdown:
        print("| " + " | ".join(cols) + " |")
        print("|" + "|".join(["---"] * len(cols)) + "|")
    else:
        print(f"{cols[0]:<8} {cols[1]:>5} {cols[2]:>7} {cols[3]:>8} {cols[4]:>13} {cols[5]:>14} {cols[6]:>6}"
              f" {cols[7]:>10} {cols[8]:>11} {cols[9]:>11}" + "".join(f" {c:>11}" for c in cols[10:]))
    try:
        for isa in isas:
            _core.set_isa(isa)
            for dt in args.dtypes:
                dtype = np.dtype(dt).type
                for n in args.sizes:
                    for nt in args.threads:
                        res = measure(dtype, n, nt, args.rounds, args.seconds, args.settle,
                                      mkl_caller(dtype) if mkl_caller else None)
                        g_ours, g_np, b_ours, b_np = res[:4]
                        row = [np.dtype(dtype).name, str(n), str(nt), ISA_NAMES[isa],
                               f"{g_ours:.1f}", f"{g_np:.1f}", f"{g_ours / g_np:.2f}",
                               f"{b_ours:.1f}", f"{b_np:.1f}", f"{b_ours / b_np:.2f}"]
                        if mkl_caller:
                            g_mkl, b_mkl = res[4:]
                            row += [f"{g_mkl:.1f}", f"{g_ours / g_mkl:.2f}", f"{b_mkl:.1f}",
                                    f"{b_ours / b_mkl:.2f}"]
                        if args.markdown:
                            print("| " + " | ".join(row) + " |", flush=True)
                        else:
                            print(f"{row[0]:<8} {row[1]:>5} {row[2]:>7} {row[3]:>8} {row[4]:>13} "
                                  f"{row[5]:>14} {row[6]:>6} {row[7]:>10} {row[8]:>11} {row[9]:>11}"
                                  + "".join(f" {c:>11}" for c in row[10:]), flush=True)
    finally:
        _core.set_isa(old)
    print(f"# load average after: {os.getloadavg()[0]:.2f} (other processes on this machine "
          "take cores from both libraries alike)")


if __name__ == "__main__":
    main()
