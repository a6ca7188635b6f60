"""OpenMP scaling check: fastconv (and torch, when installed) at 1..N threads.

For a few layers of the benchmark table, prints the median time of each pass at each
thread count, the speed-up over one thread, the ratio against torch measured in the
same run, and whether the result is bitwise identical to the one-thread result
(fastconv promises determinism for any thread count) and close to the reference.

Usage::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/scaling.py --threads 1,2,4,8,16

On a noisy machine, ``--rounds R`` times every thread count R times in alternation (each
time the minimum of ``--repeats`` calls, fastconv then torch) and reports the median over
the rounds, so a slow phase of the machine hits all thread counts alike; ``--custom
N,C,H,W,K,k,stride,pad,dil,groups`` (repeatable) adds a layer and ``--passes`` picks passes.
The 2-thread figures of BENCHMARKS.md's eighth round come from::

    python benchmarks/scaling.py --threads 1,2 --rounds 7 --repeats 11 --shapes cifar_3x3 \
        --custom 128,3,32,32,32,3,1,1,1,1 --passes fwd,bwd_data,bwd_weights
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable, Dict, List

import numpy as np

import fastconv
from fastconv import reference
from fastconv.bench.shapes import SHAPES


def samples_ms(fn: Callable[[], object], repeats: int, warmup: int) -> List[float]:
    """Milliseconds of `repeats` calls of fn after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return samples


def min_ms(fn: Callable[[], object], repeats: int) -> float:
    return min(samples_ms(fn, repeats, warmup=1))


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    return statistics.median(samples_ms(fn, repeats, warmup=2))


def passes(s, x, w, gy) -> Dict[str, Callable[[], np.ndarray]]:
    kw = dict(stride=s.stride, padding=s.padding, dilation=s.dilation, groups=s.groups)
    return {
        "fwd": lambda: fastconv.conv2d(x, w, **kw),
        "bwd_data": lambda: fastconv.conv2d_input_grad(gy, w, x.shape, **kw),
        "bwd_weights": lambda: fastconv.conv2d_weight_grad(gy, x, w.shape, **kw),
    }


def torch_passes(s, x, w, gy):
    try:
        import torch
        import torch.nn.functional as F
        from torch.nn.grad import conv2d_input, conv2d_weight
    except ImportError:
        return None
    tx, tw, tg = (torch.from_numpy(a) for a in (x, w, gy))
    kw = dict(stride=s.stride, padding=s.padding, dilation=s.dilation, groups=s.groups)
    return {
        "fwd": lambda: F.conv2d(tx, tw, **kw),
        "bwd_data": lambda: conv2d_input(tx.shape, tw, tg, **kw),
        "bwd_weights": lambda: conv2d_weight(tx, tw.shape, tg, **kw),
    }


def custom_shape(spec: str, index: int):
    """A Shape from "N,C,H,W,K,k,stride,pad,dil,groups" (f32), as fastconv.bench's --custom,
    named custom1, custom2, ... in the order given."""
    from fastconv.bench.shapes import parse_custom
    return parse_custom(spec, name=f"custom{index}")


def main(argv: List[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2,4,8,16")
    ap.add_argument("--shapes", default="mnist_c2,resnet_3x3,resnet_1x1,latency_1img,depthwise,mnist_c1")
    ap.add_argument("--custom", action="append", default=[], help="N,C,H,W,K,k,stride,pad,dil,groups")
    ap.add_argument("--passes", default="fwd,bwd_data,bwd_weights")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=1,
                    help="> 1: alternate the thread counts this many times, min of --repeats each")
    args = ap.parse_args(argv)
    counts = [int(t) for t in args.threads.split(",")]
    chosen = [p for p in args.passes.split(",") if p]
    unknown = sorted(set(chosen) - {"fwd", "bwd_data", "bwd_weights"})
    if unknown:
        ap.error(f"--passes: unknown pass(es) {unknown}; expected fwd, bwd_data, bwd_weights")
    if args.rounds < 1 or args.repeats < 1:
        ap.error("--rounds and --repeats must be at least 1")
    fastconv.show_config()
    try:
        import torch
        print(f"torch {torch.__version__}")
    except ImportError:
        torch = None
    print(f"cpus visible: {os.cpu_count()}")
    rng = np.random.default_rng(0)
    print(f"{'shape':14s} {'pass':12s} {'thr':>3s} {'ms':>9s} {'speedup':>8s} {'x torch':>8s} {'bitwise':>8s}")
    shapes = [SHAPES[n] for n in args.shapes.split(",") if n]
    shapes += [custom_shape(c, i + 1) for i, c in enumerate(args.custom)]
    for s in shapes:
        dtype = s.np_dtype
        x = rng.standard_normal(s.input_shape).astype(dtype)
        w = rng.standard_normal(s.weight_shape).astype(dtype)
        y = reference.conv2d(x, w, None, s.stride, s.padding, s.dilation, s.groups)
        gy = rng.standard_normal(y.shape).astype(dtype)
        ours, theirs = passes(s, x, w, gy), torch_passes(s, x, w, gy)
        for p in chosen:
            fn = ours[p]
            first: Dict[int, np.ndarray] = {}   # each count's first result
            same: Dict[int, bool] = {t: True for t in counts}
            ms: Dict[int, List[float]] = {t: [] for t in counts}
            tms: Dict[int, List[float]] = {t: [] for t in counts}
            for _ in range(args.rounds):
                for t in counts:
                    with fastconv.threads(t):
                        out = fn()
                        first.setdefault(t, out)
                        # every round's result against the first thread count's first one
                        same[t] = same[t] and np.array_equal(out, first[counts[0]])
                        ms[t].append(min_ms(fn, args.repeats) if args.rounds > 1 else median_ms(fn, args.repeats))
                    if theirs is not None and torch is not None:
                        torch.set_num_threads(t)
                        tfn = theirs[p]
                        tms[t].append(min_ms(tfn, args.repeats) if args.rounds > 1 else median_ms(tfn, args.repeats))
            base_ms = statistics.median(ms[counts[0]])
            for t in counts:
                m = statistics.median(ms[t])
                ratio = f"{statistics.median(tms[t]) / m:7.2f}x" if tms[t] else ""
                print(f"{s.name:14s} {p:12s} {t:3d} {m:9.3f} {base_ms / m:7.2f}x {ratio:>8s} "
                      f"{'yes' if same[t] else 'NO':>8s}", flush=True)


if __name__ == "__main__":
    main()
