"""``python -m fastconv.bench --train``: whole training steps, fastconv against PyTorch.

Each net is built twice with the same weights: from ``fastconv.nn`` and, when torch is
installed, the same architecture in torch (Adam with Keras's epsilon on both). For every
thread count, fastconv's and torch's steps are timed in alternating blocks of
``--steps`` calls (a block of one contender, a pause so its idle threads stop spinning,
then the other's), for ``--rounds`` rounds; a step's time is the median over the blocks of
(block time / steps). Each block starts with one untimed step: the step after another
library's block runs on caches that library has emptied (the CIFAR net's 2-thread figure
read 130 ms against 118 ms in a plain loop), which a user's loop never does. That is what a
plain ``for`` loop over ``train_on_batch`` measures, and the report shows the plain loop's
figure beside it as a check. NumPy's BLAS is held to
the same thread count (threadpoolctl), though fastconv's step never calls it.

The breakdown times every layer's forward and backward, the loss and the optimiser inside
fastconv's step (a separate, instrumented run), the layers run as ``Sequential`` runs them:
a Conv2D followed by a ReLU computes the ReLU in its forward (``conv2d(activation="relu")``),
and a Conv2D after a ReLU returns its input gradient through it, so those ReLUs show next to
nothing. A third contender, "numpy-user", is the
loop a user writes by hand: fastconv.conv2d/conv2d_backward for the convolutions and
NumPy (``np.matmul``, ``np.maximum``) for the rest, showing its 2-thread speed-up too.
"""
from __future__ import annotations

import collections
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

import fastconv
from fastconv import nn
from fastconv.nn.model import backward_layer, forward_layer

from .threadctl import limit_threads
from .timing import settle

__all__ = ["NETS", "build_fastconv", "build_torch", "run_train_bench", "format_train"]

# Layer specs: ("conv", filters, kernel, padding) | ("relu",) | ("pool",) | ("dropout", rate)
#              | ("flatten",) | ("dense", units)
NETS: Dict[str, Dict[str, Any]] = {
    "mnist_cnn": {  # the Keras MNIST example
        "input": (1, 28, 28),
        "layers": [("conv", 32, 3, "valid"), ("relu",), ("conv", 64, 3, "valid"), ("relu",), ("pool",),
                   ("dropout", 0.25), ("flatten",), ("dense", 128), ("relu",), ("dropout", 0.5),
                   ("dense", 10)],
    },
    "cifar_vgg": {  # a small VGG-style CIFAR net
        "input": (3, 32, 32),
        "layers": [("conv", 32, 3, "same"), ("relu",), ("conv", 32, 3, "same"), ("relu",), ("pool",),
                   ("conv", 64, 3, "same"), ("relu",), ("conv", 64, 3, "same"), ("relu",), ("pool",),
                   ("flatten",), ("dense", 256), ("relu",), ("dense", 10)],
    },
}


def build_fastconv(net: str, seed: int = 0) -> nn.Sequential:
    """The net from fastconv.nn (glorot_uniform kernels, zero biases, Adam 1e-3)."""
    layers: List[nn.Layer] = []
    for i, spec in enumerate(NETS[net]["layers"]):
        kind = spec[0]
        if kind == "conv":
            layers.append(nn.Conv2D(spec[1], spec[2], padding=spec[3], seed=seed + i))
        elif kind == "relu":
            layers.append(nn.ReLU())
        elif kind == "pool":
            layers.append(nn.MaxPool2D(2))
        elif kind == "dropout":
            layers.append(nn.Dropout(spec[1], seed=seed + i))
        elif kind == "flatten":
            layers.append(nn.Flatten())
        elif kind == "dense":
            layers.append(nn.Dense(spec[1], seed=seed + i))
    model = nn.Sequential(layers).compile(nn.Adam(1e-3))
    model.forward(np.zeros((1,) + NETS[net]["input"], np.float32))  # build the weights
    return model


def build_torch(torch: Any, net: str, model: nn.Sequential) -> Tuple[Any, Any]:
    """The same architecture in torch with ``model``'s weights; (module, optimiser)."""
    tnn = torch.nn
    mods: List[Any] = []
    for layer in model.layers:
        if isinstance(layer, nn.Conv2D):
            pad = "same" if layer.padding == "same" else 0
            conv = tnn.Conv2d(layer.in_channels, layer.filters, layer.kernel_size, padding=pad)
            conv.weight.data = torch.tensor(layer.params["kernel"])
            conv.bias.data = torch.tensor(layer.params["bias"])
            mods.append(conv)
        elif isinstance(layer, nn.ReLU):
            mods.append(tnn.ReLU())
        elif isinstance(layer, nn.MaxPool2D):
            mods.append(tnn.MaxPool2d(2))
        elif isinstance(layer, nn.Dropout):
            mods.append(tnn.Dropout(layer.rate))
        elif isinstance(layer, nn.Flatten):
            mods.append(tnn.Flatten())
        elif isinstance(layer, nn.Dense):
            lin = tnn.Linear(layer.in_features, layer.units)
            lin.weight.data = torch.tensor(np.ascontiguousarray(layer.params["kernel"].T))
            lin.bias.data = torch.tensor(layer.params["bias"])
            mods.append(lin)
    module = tnn.Sequential(*mods)
    module.train()
    return module, torch.optim.Adam(module.parameters(), lr=1e-3, eps=1e-7)


def _torch_step(torch: Any, module: Any, opt: Any, x: Any, y: Any) -> Callable[[], None]:
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(module(x), y)
        loss.backward()
        opt.step()
    return step


def _numpy_user_step(model: nn.Sequential, x: np.ndarray, y: np.ndarray) -> Callable[[], None]:
    """The loop a user writes by hand: fastconv convolutions, everything else NumPy."""
    params = [(l, dict(l.params)) for l in model.layers]
    lr = np.float32(1e-3)

    def step() -> None:
        acts = [x]
        caches: List[Any] = []
        h = x
        for layer, p in params:
            if isinstance(layer, nn.Conv2D):
                caches.append(h)
                h = fastconv.conv2d(h, p["kernel"], p["bias"], padding=layer.padding)
            elif isinstance(layer, nn.ReLU):
                caches.append(h > 0)
                h = np.maximum(h, 0)
            elif isinstance(layer, nn.MaxPool2D):
                n, c, hh, ww = h.shape
                v = h[:, :, :hh // 2 * 2, :ww // 2 * 2].reshape(n, c, hh // 2, 2, ww // 2, 2)
                out = v.max(axis=(3, 5))
                caches.append((h.shape, v == out[:, :, :, None, :, None]))
                h = out
            elif isinstance(layer, nn.Flatten):
                caches.append(h.shape)
                h = h.reshape(h.shape[0], -1)
            elif isinstance(layer, nn.Dense):
                caches.append(h)
                h = h @ p["kernel"] + p["bias"]
            else:  # dropout: identity here
                caches.append(None)
            acts.append(h)
        z = h - h.max(axis=1, keepdims=True)
        prob = np.exp(z)
        prob /= prob.sum(axis=1, keepdims=True)
        prob[np.arange(len(y)), y] -= 1
        g = prob / len(y)
        for (layer, p), cache in zip(reversed(params), reversed(caches)):
            if isinstance(layer, nn.Conv2D):
                gx, gw, gb = fastconv.conv2d_backward(g, cache, p["kernel"], padding=layer.padding)
                p["kernel"] -= lr * gw
                p["bias"] -= lr * gb
                g = gx
            elif isinstance(layer, nn.ReLU):
                g = g * cache
            elif isinstance(layer, nn.MaxPool2D):
                shape, mask = cache
                n, c, hh, ww = shape
                gx = np.zeros(shape, g.dtype)
                gx[:, :, :hh // 2 * 2, :ww // 2 * 2] = (mask * g[:, :, :, None, :, None]).reshape(
                    n, c, hh // 2 * 2, ww // 2 * 2)
                g = gx
            elif isinstance(layer, nn.Flatten):
                g = g.reshape(cache)
            elif isinstance(layer, nn.Dense):
                gw = cache.T @ g
                gb = g.sum(0)
                g = g @ p["kernel"].T
                p["kernel"] -= lr * gw
                p["bias"] -= lr * gb
    return step


def _time_blocks(steps: Dict[str, Callable[[], None]], n_steps: int, rounds: int,
                 settle_s: float, gate: Optional[Callable[[], bool]] = None) -> Dict[str, List[float]]:
    """Per-step seconds of each contender: rounds x (a block of n_steps calls each, after
    one untimed call that brings the contender's data back into cache); ``gate`` (a
    ``peak.CapacityGate``) runs before each block, after its settle pause."""
    samples: Dict[str, List[float]] = {k: [] for k in steps}
    for f in steps.values():  # warm: buffers made, workspaces cached, pools started
        f()
        f()
    for _ in range(rounds):
        for name, f in steps.items():
            settle(settle_s, gate)
            f()
            t0 = time.perf_counter()
            for _ in range(n_steps):
                f()
            samples[name].append((time.perf_counter() - t0) / n_steps)
    return samples


def _plain_loop(model: nn.Sequential, x: np.ndarray, y: np.ndarray, n: int) -> float:
    """What a user's own loop shows: total time of n train_on_batch calls / n."""
    t0 = time.perf_counter()
    for _ in range(n):
        model.train_on_batch(x, y)
    return (time.perf_counter() - t0) / n


def breakdown(model: nn.Sequential, x: np.ndarray, y: np.ndarray, repeats: int = 5) -> Dict[str, float]:
    """Median ms per step of each layer kind's forward/backward, the loss and the optimiser."""
    per_step: Dict[str, List[float]] = collections.defaultdict(list)
    for _ in range(repeats + 1):
        with model.kept_buffers():  # as inside train_on_batch
            acc: Dict[str, float] = collections.defaultdict(float)
            h = x
            layers = model.layers
            for i, layer in enumerate(layers):
                t0 = time.perf_counter()
                h = forward_layer(layers, i, h, training=True)  # as Sequential runs it
                acc[f"{type(layer).__name__} fwd"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            model.loss.forward(h, y)
            g = model.loss.backward()
            acc["loss"] += time.perf_counter() - t0
            first = model.layers[0]
            first.input_grad = False
            try:
                through = False
                for i in range(len(layers) - 1, -1, -1):
                    t0 = time.perf_counter()
                    g, through = backward_layer(layers, i, g, through)
                    acc[f"{type(layers[i]).__name__} bwd"] += time.perf_counter() - t0
            finally:
                first.input_grad = True
            t0 = time.perf_counter()
            model.optimizer.update(model.parameters(), model.gradients())
            acc["optimizer"] += time.perf_counter() - t0
            for k, v in acc.items():
                per_step[k].append(v)
    return {k: 1e3 * float(np.median(v[1:])) for k, v in per_step.items()}


def run_train_bench(torch: Optional[Any], nets: List[str], threads: List[int], batch: int = 128,
                    n_steps: int = 5, rounds: int = 5, settle_s: float = 0.2,
                    numpy_user: bool = True, seed: int = 0,
                    gates: Optional[Dict[int, Callable[[], bool]]] = None) -> List[Dict[str, Any]]:
    """Time every net at every thread count; one dict per (net, threads); ``gates``: threads ->
    capacity gate (``peak.CapacityGate``) run before each timed block and the plain loop."""
    results = []
    for net in nets:
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((batch,) + NETS[net]["input"]).astype(np.float32)
        y = rng.integers(0, 10, batch)
        for t in threads:
            model = build_fastconv(net, seed)
            steps: Dict[str, Callable[[], None]] = {"fastconv": lambda m=model: m.train_on_batch(x, y)}
            if torch is not None:
                module, opt = build_torch(torch, net, model)
                steps["torch"] = _torch_step(torch, module, opt, torch.tensor(x), torch.tensor(y))
            if numpy_user:
                steps["numpy-user"] = _numpy_user_step(build_fastconv(net, seed), x, y)
            with limit_threads(t, torch):
                gate = (gates or {}).get(t)
                samples = _time_blocks(steps, n_steps, rounds, settle_s, gate)
                settle(settle_s, gate)
                plain = _plain_loop(model, x, y, n_steps * 2)
                parts = breakdown(model, x, y)
            med = {k: 1e3 * float(np.median(v)) for k, v in samples.items()}
            results.append({"net": net, "threads": t, "batch": batch, "median_ms": med,
                            "samples_ms": {k: [1e3 * s for s in v] for k, v in samples.items()},
                            "plain_loop_ms": 1e3 * plain, "breakdown_ms": parts})
    return results


def format_train(results: List[Dict[str, Any]]) -> str:
    """The step table (median ms, ratio torch/fastconv, 2-thread speed-ups) and breakdowns."""
    lines = ["net         threads  fastconv ms  plain-loop ms  torch ms  torch/fastconv  numpy-user ms"]
    one: Dict[Tuple[str, str], float] = {}
    for r in results:
        med = r["median_ms"]
        fc, th, nu = med["fastconv"], med.get("torch"), med.get("numpy-user")
        ratio = f"{th / fc:13.2f}x" if th else "            -"
        lines.append(f"{r['net']:11s} {r['threads']:7d} {fc:12.1f} {r['plain_loop_ms']:14.1f} "
                     f"{th if th else float('nan'):9.1f} {ratio} {nu if nu else float('nan'):14.1f}")
        if r["threads"] == 1:
            for k, v in med.items():
                one[(r["net"], k)] = v
    speedups = []
    for r in results:
        if r["threads"] > 1:
            parts = [f"{k} {one[(r['net'], k)] / v:.2f}x" for k, v in r["median_ms"].items() if (r["net"], k) in one]
            speedups.append(f"  {r['net']} {r['threads']} threads over 1: " + ", ".join(parts))
    if speedups:
        lines += ["", "speed-up of the step with more threads:"] + speedups
    for r in results:
        total = sum(r["breakdown_ms"].values())
        lines += ["", f"breakdown of fastconv's step, {r['net']}, {r['threads']} thread(s) (ms, sum {total:.1f}):"]
        for k, v in sorted(r["breakdown_ms"].items(), key=lambda kv: -kv[1]):
            lines.append(f"  {k:18s} {v:7.2f}")
    return "\n".join(lines)
