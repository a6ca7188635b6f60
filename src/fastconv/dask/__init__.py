"""fastconv on dask arrays and dask.distributed clusters (the optional extra ``fastconv[dask]``).

``import fastconv`` never imports this package, and this package imports dask only when
one of its functions is first looked up, so ``fastconv.dask._halo`` (the index arithmetic)
works without dask.

- :func:`conv2d`, :func:`conv2d_backward`: NCHW dask arrays chunked along N, H and W.
- :func:`convolve2d`, :func:`correlate2d`: a large 2-D dask array and a small kernel,
  SciPy's modes.
- :func:`predict`: ``Sequential.predict`` on a batch-chunked dask array
  (``model.predict(x)`` dispatches here for dask input).
- :class:`DataParallelTrainer`: synchronous data-parallel training steps on a
  ``dask.distributed`` cluster.
- :func:`task_thread_budget`, :func:`task_threads`: the fastconv thread count a task uses.

See ``docs/dask.md``.
"""
from __future__ import annotations

import importlib
from typing import Any, List

_PUBLIC = {
    "conv2d": "._conv",
    "conv2d_backward": "._conv",
    "convolve2d": "._signal",
    "correlate2d": "._signal",
    "predict": "._predict",
    "DataParallelTrainer": "._train",
    "task_thread_budget": "._threads",
    "task_threads": "._threads",
}

__all__ = list(_PUBLIC)


def _require_dask() -> None:
    try:
        import dask.array  # noqa: F401
    except ImportError as exc:
        raise ImportError("fastconv.dask needs dask: pip install 'fastconv[dask]' "
                          "(dask[array] and distributed)") from exc


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _require_dask()
    value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_PUBLIC))
