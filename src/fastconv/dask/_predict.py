"""``Sequential.predict`` on a dask array chunked along the batch axis."""
from __future__ import annotations

import copy
from typing import Optional

import numpy as np

from ._conv import require_dask_array
from ._threads import task_threads

__all__ = ["predict", "output_shape", "skeleton"]


# Per-forward caches of the layers and the loss: dropped from the copy sent to the workers.
_CACHES = ("_x", "_y", "_mask", "_cache", "_c_cache", "_backend", "_y_shape", "_shape", "_probs", "_target")


def skeleton(model):
    """A copy of the model's layers and weights without cached activations or optimiser state.

    What travels to the workers: the last forward's activations are dropped (they can be far
    larger than the weights), and the copy does not change when the model is trained later.
    """
    from ..nn.model import Sequential
    layers = []
    for layer in model.layers:
        clone = copy.copy(layer)
        clone.__dict__ = {k: (None if k in _CACHES else v) for k, v in layer.__dict__.items()}
        layers.append(copy.deepcopy(clone))
    result = Sequential(layers, name=model.name)
    loss = copy.copy(model.loss)
    loss.__dict__ = {k: (None if k in _CACHES else v) for k, v in model.loss.__dict__.items()}
    result.loss = copy.deepcopy(loss)
    return result


def output_shape(model, sample_shape) -> tuple:
    """The model's output shape for inputs of ``(None, *sample_shape)``, building unbuilt layers."""
    from ..nn.model import _ensure_built
    shape = (None, *sample_shape)
    for layer in model.layers:
        _ensure_built(layer, shape)
        shape = layer.compute_output_shape(shape)
    return shape


def _output_dtype(model, x_dtype) -> np.dtype:
    dtypes = [p.dtype for p in model.parameters().values()]
    return np.dtype(dtypes[-1]) if dtypes else np.dtype(x_dtype)


def _predict_block(xb, *, model, batch_size, threads_per_task):
    with task_threads(threads_per_task):
        return model.predict(np.asarray(xb), batch_size=batch_size)


def predict(model, x, batch_size: int = 256, *, threads_per_task: Optional[int] = None):
    """Logits of ``model`` for a batch-chunked dask array; lazy.

    Each batch chunk is one task running ``model.predict`` on it (inference mode, so
    Dropout is the identity); the result of a chunk equals ``model.predict`` of the same
    samples in memory. The graph holds a copy of the model as it is at this call (weights
    included, cached activations not), so training the model later does not change it.

    Parameters
    ----------
    model : fastconv.nn.Sequential
    x : dask.array.Array, shape (N, ...)
        Chunked along N only (other axes are brought to one chunk).
    batch_size : int
        Passed to ``model.predict`` inside each chunk.
    threads_per_task : int, optional
        See ``fastconv.dask.task_thread_budget``.

    Returns
    -------
    dask.array.Array, shape (N, *output)
        Chunked like ``x`` along N.

    Raises
    ------
    TypeError
        When ``x`` is not a dask array.
    ValueError
        For unknown chunk sizes or inputs the model cannot take.
    """
    if not hasattr(x, "__dask_graph__") or not hasattr(x, "chunks"):
        raise TypeError(f"x must be a dask.array.Array (N, ...), got {type(x).__name__}; "
                        "use model.predict for in-memory arrays")
    x = require_dask_array(x, "x", x.ndim, "(N, ...)")
    if x.ndim < 1:
        raise ValueError("x must have a batch axis")
    if any(len(c) > 1 for c in x.chunks[1:]):
        x = x.rechunk((x.chunks[0],) + tuple((s,) for s in x.shape[1:]))
    out = output_shape(model, x.shape[1:])
    ndim_out = len(out)
    kwargs = {}
    if ndim_out < x.ndim:
        kwargs["drop_axis"] = list(range(ndim_out, x.ndim))
    elif ndim_out > x.ndim:
        kwargs["new_axis"] = list(range(x.ndim, ndim_out))
    dtype = _output_dtype(model, x.dtype)
    return x.map_blocks(_predict_block, model=skeleton(model), batch_size=batch_size, threads_per_task=threads_per_task,
                        chunks=(x.chunks[0],) + tuple((s,) for s in out[1:]), dtype=dtype,
                        meta=np.empty((0,) * ndim_out, dtype), token="fastconv-predict", **kwargs)
