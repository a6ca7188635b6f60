"""OpenMP scaling check: fastconv (and torch, when installed) at 1..N threads.

For a few layers of the benchmark table, prints the median time of each pass at each
thread count, the speed-up over one thread, the ratio against torch measured in the
same run, and whether the result is bitwise identical to the one-thread result
(fastconv promises determinism for any thread count) and close to the reference.

Usage::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/scaling.py --threads 1,2,4,8,16
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


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e3


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


def main(argv: List[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2,4,8,16")
    ap.add_argument("--shapes", default="mnist_c2,resnet_3x3,resnet_1x1,latency_1img,depthwise,mnist_c1")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    counts = [int(t) for t in args.threads.split(",")]
    fastconv.show_config()
    try:
        import torch
        print(f"torch {torch.__version__}")
    except ImportError:
        torch = None
    print(f"cpus visible: {os.cpu_count()}")
    rng = np.random.default_rng(0)
    print(f"{'shape':14s} {'pass':12s} {'thr':>3s} {'ms':>9s} {'speedup':>8s} {'x torch':>8s} {'bitwise':>8s}")
    for name in args.shapes.split(","):
        s = SHAPES[name]
        dtype = s.np_dtype
        x = rng.standard_normal(s.input_shape).astype(dtype)
        w = rng.standard_normal(s.weight_shape).astype(dtype)
        y = reference.conv2d(x, w, None, s.stride, s.padding, s.dilation, s.groups)
        gy = rng.standard_normal(y.shape).astype(dtype)
        ours, theirs = passes(s, x, w, gy), torch_passes(s, x, w, gy)
        for p, fn in ours.items():
            base_ms, base_out = None, None
            for t in counts:
                with fastconv.threads(t):
                    out = fn()
                    ms = median_ms(fn, args.repeats)
                ratio = ""
                if theirs is not None and torch is not None:
                    torch.set_num_threads(t)
                    ratio = f"{median_ms(theirs[p], args.repeats) / ms:7.2f}x"
                if base_ms is None:
                    base_ms, base_out = ms, out
                same = "yes" if np.array_equal(out, base_out) else "NO"
                print(f"{name:14s} {p:12s} {t:3d} {ms:9.3f} {base_ms / ms:7.2f}x {ratio:>8s} {same:>8s}", flush=True)


if __name__ == "__main__":
    main()
