"""pytest-benchmark: fastconv's own sgemm/dgemm against numpy.matmul.

Skipped in normal test runs (pyproject's addopts has --benchmark-skip). Run with

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python -m pytest benchmarks/bench_gemm.py --benchmark-enable --benchmark-only \\
        --benchmark-group-by=param:dtype,param:n,param:threads

and compare the "fastconv" and "numpy" rows of each group (same inputs, same process).
For a compact ratio table use benchmarks/compare_gemm.py instead.
"""
from __future__ import annotations

import numpy as np
import pytest

_core = pytest.importorskip("fastconv._core")
if not hasattr(_core, "gemm"):  # pragma: no cover
    pytest.skip("fastconv._core was built without _gemm.pxi", allow_module_level=True)

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None


@pytest.fixture
def blas_threads():
    """Limit NumPy's BLAS to the given thread count for the duration of one benchmark."""
    limits = []

    def set_(n):
        if threadpool_limits is not None:
            ctx = threadpool_limits(limits=n, user_api="blas")
            ctx.__enter__()
            limits.append(ctx)

    yield set_
    for ctx in limits:
        ctx.__exit__(None, None, None)


@pytest.mark.parametrize("impl", ["fastconv", "numpy"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n", [512, 1024, 2048])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gemm(benchmark, blas_threads, dtype, n, threads, impl):
    rng = np.random.default_rng(n)
    a = rng.uniform(-1, 1, size=(n, n)).astype(dtype)
    b = rng.uniform(-1, 1, size=(n, n)).astype(dtype)
    c = np.empty((n, n), dtype)
    benchmark.group = f"gemm {dtype} n={n} threads={threads}"
    benchmark.extra_info["gflop"] = 2.0 * n**3 / 1e9
    benchmark.extra_info["isa"] = _core.active_isa()
    if impl == "fastconv":
        benchmark(_core.gemm, a, b, c, nthreads=threads)
    else:
        blas_threads(threads)
        benchmark(np.matmul, a, b, out=c)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    assert np.max(np.abs(c - ref)) <= 1e-3 * n
