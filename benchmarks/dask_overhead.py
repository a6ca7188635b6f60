"""Overhead of fastconv.dask against the single in-memory fastconv call, and LocalCluster scaling.

Cases (float32):

- batch:  conv2d 256x32x28x28 -> 64, 3x3, padding 1; dask chunks of 32 images (8 tasks)
- image:  conv2d 1x1x2048x2048 -> 16-filter 7x7 bank, padding "same"; 512x512 chunks (16 tasks)
- signal: convolve2d 4096x4096 with a 7x7 kernel, mode "same"; 1024x1024 chunks (16 tasks),
          and dask_image.ndfilters.convolve on the same chunks (when installed)
- backward of the batch case (grad_x, grad_weight, grad_bias)
- one training step of the Keras MNIST CNN (conv32-conv64-pool-dense128-dense10, 16x16
  inputs, batch 256, SGD) in memory and with DataParallelTrainer on the LocalCluster

Each is timed in memory (fastconv's default threads), with dask's synchronous scheduler
and its threaded scheduler (``y.compute()``, which includes dask concatenating the
chunks into one array, and ``da.store`` into a preallocated array), then the batch case
on a ``distributed.LocalCluster`` of 1 and 2 single-threaded worker processes with the
input already on the workers (``persist`` + ``wait``: the result stays there).
Each case's variants run in turns (round robin), ``--repeats`` rounds after one warm-up;
reported: the median and the minimum of each, and their ratios to the in-memory call's.
On a LocalCluster of several worker processes the cores are split between them with
``threads_per_task`` (a worker process cannot see the others).

Usage::

    PYTHONPATH=src python benchmarks/dask_overhead.py --repeats 9 [--threads 1] [--no-cluster]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable, Dict, List, Tuple

import numpy as np

import fastconv
import fastconv.dask as fd


def interleaved(fns: Dict[str, Callable[[], object]], repeats: int) -> Dict[str, Tuple[float, float]]:
    """(median, min) seconds of each function, run in turns (round robin) so drift hits all alike."""
    for fn in fns.values():
        fn()  # warm-up
    samples: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    return {k: (statistics.median(v), min(v)) for k, v in samples.items()}


def _report(rows, case: str, times: Dict[str, Tuple[float, float]]) -> None:
    base_med, base_min = next(iter(times.values()))
    for how, (med, best) in times.items():
        rows.append((case, how, med, med / base_med, best, best / base_min))
        print(f"{case:<8} {how:<52} {med * 1e3:9.1f} ms {med / base_med:6.2f}x  (min {best * 1e3:7.1f} ms "
              f"{best / base_min:5.2f}x)", flush=True)


def local_cases(repeats: int, rows) -> Tuple:
    import dask
    import dask.array as da

    rng = np.random.default_rng(0)
    problems = {
        "batch": (rng.standard_normal((256, 32, 28, 28), np.float32),
                  rng.standard_normal((64, 32, 3, 3), np.float32), dict(padding=1), (32, 32, 28, 28)),
        "image": (rng.standard_normal((1, 1, 2048, 2048), np.float32),
                  rng.standard_normal((16, 1, 7, 7), np.float32), dict(padding="same"), (1, 1, 512, 512)),
    }
    for case, (x, w, kw, chunks) in problems.items():
        y = fd.conv2d(da.from_array(x, chunks=chunks), w, **kw)
        out = np.empty(y.shape, y.dtype)
        _report(rows, case, interleaved({
            "in memory (fastconv.conv2d)": lambda: fastconv.conv2d(x, w, **kw),
            "dask sync: compute()": lambda: y.compute(scheduler="sync"),
            "dask threads: compute()": lambda: y.compute(scheduler="threads"),
            "dask threads: store into an array": lambda: da.store(y, out, lock=False, scheduler="threads"),
        }, repeats))
        np.testing.assert_allclose(out, fastconv.conv2d(x, w, **kw), rtol=1e-5, atol=1e-4)

    x, w, kw, chunks = problems["batch"]
    gy = rng.standard_normal(fastconv.conv2d(x, w, **kw).shape).astype(np.float32)
    grads = fd.conv2d_backward(da.from_array(gy, chunks=(32, 64, 28, 28)), da.from_array(x, chunks=chunks), w, **kw)
    _report(rows, "bwd", interleaved({
        "in memory (conv2d_backward)": lambda: fastconv.conv2d_backward(gy, x, w, **kw),
        "dask sync: compute()": lambda: dask.compute(*grads, scheduler="sync"),
        "dask threads: compute()": lambda: dask.compute(*grads, scheduler="threads"),
    }, repeats))

    a = rng.standard_normal((4096, 4096)).astype(np.float32)
    k = rng.standard_normal((7, 7)).astype(np.float32)
    ad = da.from_array(a, chunks=1024)
    z = fd.convolve2d(ad, k, mode="same")
    fns = {
        "in memory (fastconv.convolve2d)": lambda: fastconv.convolve2d(a, k, mode="same"),
        "dask sync: compute()": lambda: z.compute(scheduler="sync"),
        "dask threads: compute()": lambda: z.compute(scheduler="threads"),
    }
    try:
        from dask_image import ndfilters
    except ImportError:
        print("dask-image not installed: skipping its convolve")
    else:
        zi = ndfilters.convolve(ad, k, mode="constant", cval=0.0)
        fns["dask_image.ndfilters.convolve, threads"] = lambda: zi.compute(scheduler="threads")
        np.testing.assert_allclose(z.compute(), zi.compute(), rtol=1e-4, atol=1e-4)
    _report(rows, "signal", interleaved(fns, repeats))
    return problems["batch"]


def cluster_cases(repeats: int, rows, batch) -> None:
    import dask.array as da
    from dask.graph_manipulation import clone
    from distributed import Client, LocalCluster, wait

    x, w, kw, chunks = batch
    times = {"in memory (fastconv.conv2d)": None}
    model, (tx, ty) = _train_model(), _train_data()
    train = {"Sequential.train_on_batch, in memory": interleaved({"step": lambda: model.train_on_batch(tx, ty)},
                                                                repeats)["step"]}
    for n_workers in (1, 2):
        with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=40) as cluster, Client(cluster) as client:
            xd = client.persist(da.from_array(x, chunks=chunks))
            wait(xd)
            # worker processes cannot see each other: split the cores between them explicitly
            y = fd.conv2d(xd, w, **kw, threads_per_task=max(1, len(os.sched_getaffinity(0)) // n_workers))

            def on_workers():
                yp = client.persist(clone(y, omit=xd))  # fresh keys: nothing cached from the last run
                wait(yp)
                del yp

            got = interleaved({
                "in memory (fastconv.conv2d)": lambda: fastconv.conv2d(x, w, **kw),
                f"LocalCluster {n_workers} worker(s): result on workers": on_workers,
                f"LocalCluster {n_workers} worker(s): gathered to client": lambda: client.compute(clone(y, omit=xd)).result(),
            }, repeats)
            if times["in memory (fastconv.conv2d)"] is None:
                times["in memory (fastconv.conv2d)"] = got["in memory (fastconv.conv2d)"]
            times.update({k: v for k, v in got.items() if k.startswith("LocalCluster")})
            train[f"DataParallelTrainer, {n_workers} worker(s)"] = _train_step_time(client, repeats, n_workers)
    _report(rows, "cluster", times)
    _report(rows, "train", train)


def _train_model():
    from fastconv import nn
    m = nn.Sequential([nn.Conv2D(32, 3, seed=0), nn.ReLU(), nn.Conv2D(64, 3, seed=1), nn.ReLU(),
                       nn.MaxPool2D(2), nn.Flatten(), nn.Dense(128, seed=2), nn.ReLU(), nn.Dense(10, seed=3)])
    return m.compile("sgd")


def _train_data():
    rng = np.random.default_rng(1)
    return rng.standard_normal((256, 1, 16, 16)).astype(np.float32), rng.integers(0, 10, 256)


def _train_step_time(client, repeats: int, n_workers: int) -> Tuple[float, float]:
    x, y = _train_data()
    trainer = fd.DataParallelTrainer(_train_model(), client,
                                     threads_per_task=max(1, len(os.sched_getaffinity(0)) // n_workers))
    return interleaved({"step": lambda: trainer.train_on_batch(x, y)}, repeats)["step"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-cluster", action="store_true")
    parser.add_argument("--threads", type=int, default=None,
                        help="fastconv threads in memory and per sync task, and dask's threaded-pool size "
                             "(default: fastconv's default and dask's CPU count)")
    args = parser.parse_args()
    if args.threads is not None:
        import dask
        fastconv.set_num_threads(args.threads)
        dask.config.set(num_workers=args.threads)
    print(f"fastconv {fastconv.__version__}, {os.cpu_count()} CPUs, fastconv threads {fastconv.get_num_threads()}")
    rows: List[Tuple[str, str, float, float]] = []
    batch = local_cases(args.repeats, rows)
    if not args.no_cluster:
        cluster_cases(args.repeats, rows, batch)
    print("\n| case | how | median ms | x in-memory | min ms | x in-memory (min) |\n|---|---|---|---|---|---|")
    for case, how, med, r, best, rb in rows:
        print(f"| {case} | {how} | {med * 1e3:.1f} | {r:.2f} | {best * 1e3:.1f} | {rb:.2f} |")


if __name__ == "__main__":
    main()
