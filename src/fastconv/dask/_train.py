"""Synchronous data-parallel training of a ``fastconv.nn.Sequential`` on a dask.distributed cluster.

One step (:meth:`DataParallelTrainer.train_on_batch`):

1. the client broadcasts the current weights to every worker (``Client.scatter(...,
   broadcast=True)``: one copy per worker, not per task);
2. each shard of the batch (a batch chunk of a dask array, or an equal split of a NumPy
   batch) gets one task, on the worker holding it, that runs forward and backward on a
   copy of the model and returns ``n_i * gradient_i``, ``n_i``, ``n_i * loss_i`` and
   the number of correct predictions;
3. those are added pairwise in a binary tree over the shards in shard order (tasks on
   the cluster), so only one set of gradients travels to the client and the sum has a
   fixed order: ``sum_i n_i g_i / N`` is the full-batch gradient, because
   ``SoftmaxCrossEntropy`` averages over its batch;
4. the client applies the optimiser once; the next step broadcasts the new weights.

The same model trained this way and with ``Sequential.train_on_batch`` on the whole
batch agree to rounding (Dropout draws differ between the two, so exact agreement
needs a model without Dropout).
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ._conv import is_dask_array
from ._predict import output_shape, skeleton as _skeleton
from ._threads import task_threads

__all__ = ["DataParallelTrainer"]

class _Blob:
    """Wraps a list so that ``Client.scatter`` sends it as one object."""

    def __init__(self, value) -> None:
        self.value = value


def _shard_step(skeleton, weights: _Blob, x, y, threads_per_task, seed):
    """Leaf task: (n*grads, n, n*loss, correct) of one shard.

    ``seed`` (distinct per step and shard) reseeds the layers' generators, so Dropout draws
    fresh masks every step instead of replaying the skeleton's stream.
    """
    model = copy.deepcopy(skeleton)
    for i, layer in enumerate(model.layers):
        if isinstance(getattr(layer, "_rng", None), np.random.Generator):
            layer._rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,)))
    arrays = iter(weights.value)
    for layer in model.layers:
        if layer.params:
            layer.set_weights([next(arrays) for _ in layer.params])
    x, y = np.asarray(x), np.asarray(y)
    n = len(x)
    with task_threads(threads_per_task):
        out = model.forward(x, training=True)
        loss = model.loss.forward(out, y)
        model.backward(model.loss.backward())
    labels = y.argmax(axis=1) if y.ndim == 2 else y
    grads = {k: np.asarray(g) * g.dtype.type(n) for k, g in model.gradients().items()}
    return grads, n, loss * n, int(np.sum(out.argmax(axis=1) == labels))


def _combine(a, b):
    """Inner node of the reduction tree: the sum of two partial results (a first)."""
    return ({k: a[0][k] + b[0][k] for k in a[0]}, a[1] + b[1], a[2] + b[2], a[3] + b[3])


class DataParallelTrainer:
    """Train a Sequential model with synchronous data parallelism on a dask.distributed cluster.

    Parameters
    ----------
    model : fastconv.nn.Sequential
        Trained in place on the client; compiled with its default optimiser if it was not.
    client : distributed.Client
    threads_per_task : int, optional
        fastconv threads per shard task (default: the worker's budget, see
        ``fastconv.dask.task_thread_budget``).
    seed : int or None
        Seeds the per-step, per-shard random streams (Dropout masks).
    timeout : float, optional
        Seconds to wait for a step's reduced gradients (``Future.result``); None waits.

    Examples
    --------
    >>> from distributed import Client, LocalCluster                   # doctest: +SKIP
    >>> client = Client(LocalCluster(n_workers=2, threads_per_worker=1))  # doctest: +SKIP
    >>> trainer = DataParallelTrainer(model, client)                    # doctest: +SKIP
    >>> loss, acc = trainer.train_on_batch(x, y)                        # doctest: +SKIP
    """

    def __init__(self, model, client, *, threads_per_task: Optional[int] = None, seed=None,
                 timeout: Optional[float] = None) -> None:
        if not hasattr(model, "layers") or not hasattr(model, "gradients"):
            raise TypeError(f"model must be a fastconv.nn.Sequential, got {type(model).__name__}")
        if not hasattr(client, "scatter") or not hasattr(client, "submit"):
            raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")
        self.model = model
        self.client = client
        self.threads_per_task = threads_per_task
        if model.optimizer is None:
            model.compile()
        self._skeleton_future = None
        self.weights_future = None
        self._seeds = np.random.SeedSequence(seed)
        self.timeout = timeout
        # ((x.name, y.name), shard futures) of the last dask batch
        self._shard_cache: Optional[Tuple[Any, List[Tuple[Any, Any]]]] = None

    def _shards(self, x, y) -> List[Tuple[object, object]]:
        """Futures of (x_i, y_i) in shard order: the batch chunks of a dask ``x``, else one per worker."""
        if is_dask_array(x):
            import dask.array as da
            x = x.rechunk((x.chunks[0],) + tuple((s,) for s in x.shape[1:]))
            y_chunks = (x.chunks[0],) + tuple((s,) for s in np.shape(y)[1:])
            y = y.rechunk(y_chunks) if is_dask_array(y) else da.from_array(np.asarray(y), chunks=y_chunks)
            key = (x.name, y.name)
            if self._shard_cache is None or self._shard_cache[0] != key:
                # computed once per (x, y): later steps on the same batch find it on the workers
                self._shard_cache = None
                xs = self.client.compute(list(x.to_delayed().ravel()))
                ys = self.client.compute(list(y.to_delayed().ravel()))
                self._shard_cache = (key, list(zip(xs, ys)))
            return self._shard_cache[1]
        x, y = np.asarray(x), np.asarray(y)
        workers = max(1, len(self.client.scheduler_info().get("workers", {})))
        parts = [(a, b) for a, b in zip(np.array_split(x, workers), np.array_split(y, workers)) if len(a)]
        futures = self.client.scatter([p for pair in parts for p in pair])
        return [(futures[2 * i], futures[2 * i + 1]) for i in range(len(parts))]

    def train_on_batch(self, x, y) -> Tuple[float, float]:
        """One synchronous data-parallel optimiser step on one batch.

        Parameters
        ----------
        x : dask.array.Array (chunked along N: one shard per chunk; the chunks are computed
            once and kept on the workers while the same ``x`` comes back) or ndarray (split
            into one shard per worker and scattered every step)
        y : labels, same length; a dask array is rechunked like ``x``

        Returns
        -------
        loss, accuracy : float
            Of the whole batch, before the step (as ``Sequential.train_on_batch``).
        """
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
        if len(x) == 0:
            raise ValueError("x must not be empty")
        model = self.model
        output_shape(model, tuple(x.shape[1:]))  # build unbuilt layers from the input shape
        if self._skeleton_future is None:
            self._skeleton_future = self.client.scatter(_skeleton(model), broadcast=True)
        self.weights_future = self.client.scatter(_Blob(model.get_weights()), broadcast=True)
        step_seed = int(self._seeds.generate_state(1, np.uint64)[0])
        self._seeds = self._seeds.spawn(1)[0]
        level = [self.client.submit(_shard_step, self._skeleton_future, self.weights_future, xs, ys,
                                    self.threads_per_task, [step_seed, i], pure=False)
                 for i, (xs, ys) in enumerate(self._shards(x, y))]
        while len(level) > 1:
            nxt = [self.client.submit(_combine, level[i], level[i + 1], pure=False)
                   for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])
            level = nxt
        grads, n, loss_sum, correct = level[0].result(timeout=self.timeout)
        params = model.parameters()
        mean: Dict[str, np.ndarray] = {k: g / g.dtype.type(n) for k, g in grads.items()}
        model.optimizer.update(params, mean)
        return float(loss_sum / n), float(correct / n)
