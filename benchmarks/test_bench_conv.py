"""Benchmarks: shape x pass x implementation x threads (see conftest.py for the command).

Implementations: fastconv with ``algorithm`` auto, direct and im2col; torch (when
installed); the NumPy im2col+matmul baseline. ``extra_info`` carries the FLOP count and
the GFLOP/s of the median, and for fastconv what ``auto`` chose.
"""
from typing import Any, Callable, Optional

import pytest

from fastconv import functional as F
from fastconv._spec import make_spec
from fastconv.bench.baselines import TorchPeer
from fastconv.bench.shapes import DEFAULT_SHAPES, PASSES, SHAPES, Shape, flops
from fastconv.bench.threadctl import limit_threads
from fastconv.bench.timing import fastconv_call, make_operands, numpy_call

IMPLEMENTATIONS = ("fastconv-auto", "fastconv-direct", "fastconv-im2col", "torch", "numpy")
THREADS = (1, 2)


def _call(shape: Shape, pass_: str, impl: str, torch: Optional[Any]) -> Callable[[], Any]:
    ops = make_operands(shape, pass_)
    a, b = ops["a"], ops["b"]
    if impl.startswith("fastconv-"):
        return fastconv_call(shape, pass_, impl.split("-", 1)[1], a, b)
    if impl == "torch":
        return TorchPeer(torch, shape).bound(pass_, a, b)
    return numpy_call(shape, pass_, a, b)


@pytest.mark.parametrize("threads", THREADS, ids=lambda t: f"{t}t")
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("pass_", PASSES)
@pytest.mark.parametrize("name", DEFAULT_SHAPES)
def test_conv2d(benchmark, torch_module, name: str, pass_: str, impl: str, threads: int) -> None:
    shape = SHAPES[name]
    torch = torch_module if impl == "torch" else None
    if impl == "torch" and torch is None:
        pytest.skip("torch is not installed")
    call = _call(shape, pass_, impl, torch)
    benchmark.group = f"{name} {pass_} {threads}t"
    benchmark.extra_info.update(shape=name, pass_=pass_, impl=impl, threads=threads, flops=flops(shape),
                                layer=list(shape.row()))
    with limit_threads(threads, torch):
        if impl.startswith("fastconv-"):
            spec = make_spec(shape.input_shape, shape.weight_shape, shape.stride, shape.padding,
                             shape.dilation, shape.groups, shape.np_dtype)
            algorithm = impl.split("-", 1)[1]
            benchmark.extra_info["algorithm"] = F.chosen_algorithm(spec, PASSES.index(pass_), algorithm)
            benchmark.extra_info["workspace_bytes"] = int(F.workspace_bytes(spec, PASSES.index(pass_), algorithm))
        call()  # warm-up: allocation, page faults, thread start
        benchmark(call)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None and stats.stats.median > 0:
        benchmark.extra_info["gflops_median"] = flops(shape) / stats.stats.median * 1e-9
