"""Timing of fastconv and its peers on one figure (layer x pass x threads), in blocks.

Every contender is warmed up; then, for a few rounds, each contender in turn (the order
rotating from round to round, so a burst of machine noise hits all of them alike) gets a
block of back-to-back samples, after a pause long enough for the previous contender's idle
worker threads to stop spinning: OpenBLAS's spin for ~0.1 s after their last call, torch's
and our OpenMP threads for milliseconds. A sample is the mean of enough back-to-back calls
to last ``min_sample_s``; a contender's figure is the median of its samples. An earlier
version alternated single samples with a 2 ms pause: at 2 threads each sample then
measured the previous library's spinning threads (3-5x the back-to-back time), which is why
every figure is now also checked against the same call timed alone (``back_to_back``).
A capacity gate (``peak.CapacityGate``) may hold each block until the machine delivers
its measured FMA rate: a shared VM at times lends one core where it shows two.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

import fastconv
from fastconv import functional as F
from fastconv._spec import make_spec

from .baselines import NumpyIm2col, TorchPeer
from .shapes import PASSES, Shape, flops
from .threadctl import limit_threads

__all__ = ["Contender", "FigureResult", "measure_interleaved", "run_figure", "workspace_limit", "make_operands",
           "fastconv_call", "numpy_call", "back_to_back", "settle"]

MIB = 1 << 20


@dataclass
class Contender:
    """A named no-argument call to time."""

    name: str
    call: Callable[[], Any]


@dataclass
class FigureResult:
    """Everything measured for one figure; the JSON's ``results`` entries are these."""

    shape: str
    pass_: str
    threads: int
    dtype: str
    layer: List[Any]
    algorithm_requested: str
    algorithm: str
    flops: int
    ms: Dict[str, float]
    samples_ms: Dict[str, List[float]]
    calls_per_sample: Dict[str, int]
    gflops: float
    peak_gflops: Optional[float]
    pct_peak: Optional[float]
    ratio_torch: Optional[float]
    ratio_numpy: Optional[float]
    workspace_bytes: int
    workspace_limit_bytes: int
    workspace_ok: bool
    max_rel_diff: Dict[str, float] = field(default_factory=dict)
    #: fastconv's call timed alone, back to back, after the others' pools went quiet: the
    #: figure a user's own loop shows. The interleaved median should agree with it.
    back_to_back_ms: Optional[float] = None
    #: the capacity gate's counts for this figure's blocks ({"checks", "waited", "short",
    #: "waited_s"}), None when no gate ran
    gate: Optional[Dict[str, float]] = None


def workspace_limit(shape: Shape) -> int:
    """The extra-memory ceiling of one call: max(16 MiB, 10 % of input + output bytes)."""
    item = shape.np_dtype.itemsize
    io = item * (math.prod(shape.input_shape) + math.prod(shape.output_shape))
    return max(16 * MIB, io // 10)


def settle(seconds: float, gate: Optional[Callable[[], bool]] = None) -> None:
    """Before a timed block: sleep until the previous contender's idle threads stop spinning,
    then let the capacity gate (when given) wait for the machine's full FMA rate."""
    if seconds > 0:
        time.sleep(seconds)
    if gate is not None:
        gate()


def _calls_per_sample(call: Callable[[], Any], min_sample_s: float) -> int:
    t0 = time.perf_counter()
    call()
    once = max(time.perf_counter() - t0, 1e-7)
    return int(min(1000, max(1, math.ceil(min_sample_s / once))))


def measure_interleaved(contenders: Sequence[Contender], repeats: int, warmup: int = 2,
                        min_sample_s: float = 0.01, settle_s: float = 0.2,
                        rounds: int = 3, gate: Optional[Callable[[], bool]] = None) -> Dict[str, Dict[str, Any]]:
    """Time ``contenders`` in rotating blocks; returns name -> {"samples": [s], "number": calls per sample}.

    Parameters
    ----------
    contenders : sequence of Contender
    repeats : int
        Samples per contender; the figure is their median.
    warmup : int
        Untimed calls of each contender first (allocation, page faults, caches, thread start).
    min_sample_s : float
        A sample repeats the call until it lasts at least this long (capped at 1000 calls).
    settle_s : float
        Sleep before each contender's block.
    rounds : int
        Blocks per contender; the samples are split evenly over them.
    gate : callable, optional
        Called before each block, after its settle pause (``peak.CapacityGate``: waits until
        the machine delivers its FMA rate).
    """
    for c in contenders:
        for _ in range(max(0, warmup)):
            c.call()
    out = {c.name: {"samples": [], "number": _calls_per_sample(c.call, min_sample_s)} for c in contenders}
    k = len(contenders)
    rounds = max(1, min(rounds, repeats))
    per_block = [len(range(b, max(1, repeats), rounds)) for b in range(rounds)]
    for r in range(rounds):
        for c in (contenders[(r + i) % k] for i in range(k)):
            number = out[c.name]["number"]
            settle(settle_s, gate)
            c.call()  # the first call of a block wakes this library's pool
            for _ in range(per_block[r]):
                t0 = time.perf_counter()
                for _ in range(number):
                    c.call()
                out[c.name]["samples"].append((time.perf_counter() - t0) / number)
    return out


def make_operands(shape: Shape, pass_: str, seed: int = 0) -> Dict[str, np.ndarray]:
    """Random operands of ``pass_``: "a", "b" = (x, w) for fwd, (gy, w) for bwd_data, (gy, x) for bwd_weights."""
    rng = np.random.default_rng(seed)
    dt = shape.np_dtype

    def rand(shp):
        return rng.standard_normal(shp, dtype=np.float64).astype(dt)

    if pass_ == "fwd":
        return {"a": rand(shape.input_shape), "b": rand(shape.weight_shape)}       # x, w
    if pass_ == "bwd_data":
        return {"a": rand(shape.output_shape), "b": rand(shape.weight_shape)}      # gy, w
    return {"a": rand(shape.output_shape), "b": rand(shape.input_shape)}           # gy, x


def fastconv_call(shape: Shape, pass_: str, algorithm: str, a: np.ndarray, b: np.ndarray) -> Callable[[], Any]:
    """A no-argument fastconv call of ``pass_`` on ``make_operands``' arrays (fwd writes into a kept ``out=``)."""
    kw = dict(shape.conv_args(), algorithm=algorithm)
    if pass_ == "fwd":
        y = np.empty(shape.output_shape, dtype=shape.np_dtype)
        return lambda: fastconv.conv2d(a, b, None, out=y, **kw)
    if pass_ == "bwd_data":
        return lambda: fastconv.conv2d_input_grad(a, b, shape.input_shape, **kw)
    return lambda: fastconv.conv2d_weight_grad(a, b, shape.weight_shape, **kw)


def numpy_call(shape: Shape, pass_: str, a: np.ndarray, b: np.ndarray) -> Callable[[], Any]:
    """A no-argument NumPy-baseline call of ``pass_`` (buffers and output kept between calls)."""
    base = NumpyIm2col(shape)
    if pass_ == "fwd":
        y = np.empty(shape.output_shape, dtype=shape.np_dtype)
        return lambda: base.fwd(a, b, out=y)
    out = np.empty(shape.input_shape if pass_ == "bwd_data" else shape.weight_shape, dtype=shape.np_dtype)
    fn = base.bwd_data if pass_ == "bwd_data" else base.bwd_weights
    return lambda: fn(a, b, out=out)


def _rel_diff(result: Any, expected: np.ndarray) -> float:
    got = np.asarray(result.numpy() if hasattr(result, "numpy") else result, dtype=np.float64)
    scale = float(np.max(np.abs(expected))) or 1.0
    return float(np.max(np.abs(got - expected))) / scale


def run_figure(shape: Shape, pass_: str, threads: int, *, algorithm: str = "auto", torch: Optional[Any] = None,
               repeats: int = 11, warmup: int = 2, min_sample_s: float = 0.01, settle_s: float = 0.2,
               peak_gflops: Optional[float] = None, seed: int = 0,
               gate: Optional[Any] = None) -> FigureResult:
    """Measure fastconv, torch (when given) and the NumPy baseline on one figure.

    Parameters
    ----------
    shape : Shape
    pass_ : {"fwd", "bwd_data", "bwd_weights"}
    threads : int
        Thread count of every contender (fastconv, torch, NumPy's BLAS).
    algorithm : {"auto", "direct", "im2col"}
        fastconv's algorithm argument; the JSON also records what "auto" resolved to.
    torch : module or None
        PyTorch, when it is to be measured.
    peak_gflops : float or None
        The FMA peak for this dtype and thread count, for "% of peak".
    gate : peak.CapacityGate or None
        Run before every timed block (and the back-to-back check); its counts are recorded.

    Returns
    -------
    FigureResult
    """
    if pass_ not in PASSES:
        raise ValueError(f"pass must be one of {PASSES}, got {pass_!r}")
    ops = make_operands(shape, pass_, seed)
    a, b = ops["a"], ops["b"]
    contenders = [Contender("fastconv", fastconv_call(shape, pass_, algorithm, a, b))]
    if torch is not None:
        contenders.append(Contender("torch", TorchPeer(torch, shape).bound(pass_, a, b)))
    contenders.append(Contender("numpy", numpy_call(shape, pass_, a, b)))
    code = (F.FWD, F.BWD_DATA, F.BWD_WEIGHTS)[PASSES.index(pass_)]
    spec = make_spec(shape.input_shape, shape.weight_shape, shape.stride, shape.padding, shape.dilation,
                     shape.groups, shape.np_dtype)
    with limit_threads(threads, torch):
        chosen = F.chosen_algorithm(spec, code, algorithm)
        ws = int(F.workspace_bytes(spec, code, algorithm))
        # Same answer from every contender, or the timing means nothing.
        expected = np.array(contenders[-1].call(), dtype=np.float64)
        diffs = {c.name: _rel_diff(c.call(), expected) for c in contenders[:-1]}
        before = dict(gate.stats()) if gate is not None else None
        timed = measure_interleaved(contenders, repeats, warmup, min_sample_s, settle_s, gate=gate)
        b2b = back_to_back(contenders[0].call, timed["fastconv"]["number"], max(3, repeats // 2), gate=gate)
        gated = None if gate is None else {k: v - before[k] for k, v in gate.stats().items()}
    ms = {name: 1e3 * statistics.median(t["samples"]) for name, t in timed.items()}
    n_flop = flops(shape)
    gflops = n_flop / (ms["fastconv"] * 1e-3) * 1e-9
    limit = workspace_limit(shape)
    return FigureResult(
        shape=shape.name, pass_=pass_, threads=threads, dtype=shape.dtype, layer=list(shape.row()),
        algorithm_requested=algorithm, algorithm=chosen, flops=n_flop, ms=ms,
        samples_ms={name: [1e3 * s for s in t["samples"]] for name, t in timed.items()},
        calls_per_sample={name: t["number"] for name, t in timed.items()},
        gflops=gflops, peak_gflops=peak_gflops,
        pct_peak=None if not peak_gflops else 100.0 * gflops / peak_gflops,
        ratio_torch=ms["torch"] / ms["fastconv"] if "torch" in ms else None,
        ratio_numpy=ms["numpy"] / ms["fastconv"],
        workspace_bytes=ws, workspace_limit_bytes=limit, workspace_ok=ws <= limit, max_rel_diff=diffs,
        back_to_back_ms=1e3 * b2b, gate=gated,
    )


def back_to_back(call: Callable[[], Any], number: int, samples: int, quiet_s: float = 0.2,
                 gate: Optional[Callable[[], bool]] = None) -> float:
    """Median seconds per call of ``call`` alone: a pause for the other libraries' idle
    threads to stop spinning, one warm call, then ``samples`` blocks of ``number`` calls."""
    settle(quiet_s, gate)
    call()
    per_call = []
    for _ in range(samples):
        t0 = time.perf_counter()
        for _ in range(number):
            call()
        per_call.append((time.perf_counter() - t0) / number)
    return statistics.median(per_call)
