"""fastconv on dask arrays and dask.distributed clusters (the optional extra ``fastconv[dask]``).

``import fastconv`` never imports this module or dask; ``import fastconv.dask`` needs dask.

- :func:`conv2d`, :func:`conv2d_backward`: NCHW dask arrays chunked along N, H and W.
- :func:`convolve2d`, :func:`correlate2d`: a large 2-D dask array and a small kernel,
  SciPy's modes.
- :func:`predict`: ``Sequential.predict`` on a batch-chunked dask array
  (``model.predict(x)`` dispatches here for dask input).
- :class:`DataParallelTrainer`: synchronous data-parallel training steps on a
  ``dask.distributed`` cluster.
- :func:`task_thread_budget`: the fastconv thread count a task uses on a worker.

See ``docs/dask.md``.
"""
from __future__ import annotations

try:
    import dask.array  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("fastconv.dask needs dask: pip install 'fastconv[dask]' "
                      "(dask[array] and distributed)") from exc

from ._conv import conv2d, conv2d_backward
from ._predict import predict
from ._signal import convolve2d, correlate2d
from ._threads import task_thread_budget, task_threads
from ._train import DataParallelTrainer

__all__ = ["conv2d", "conv2d_backward", "convolve2d", "correlate2d", "predict", "DataParallelTrainer",
           "task_thread_budget", "task_threads"]
