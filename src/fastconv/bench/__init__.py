"""fastconv's benchmark: ``python -m fastconv.bench`` and the pieces ``benchmarks/`` reuses.

Modules, one job each: ``shapes`` (the named layer table and the FLOP formula), ``peak``
(the measured FMA peak), ``baselines`` (NumPy im2col+matmul, PyTorch), ``threadctl`` (one
thread count for every contender), ``timing`` (interleaved medians of one figure),
``report`` (table, geometric means, JSON), ``plot`` (ratio bar chart), ``env`` (the
environment of a run) and ``cli`` (the command).
"""
from .shapes import DEFAULT_SHAPES, PASSES, SHAPES, Shape, flops

__all__ = ["main", "SHAPES", "DEFAULT_SHAPES", "PASSES", "Shape", "flops"]


def main(argv=None) -> int:
    """Run ``python -m fastconv.bench`` with ``argv`` (default: the command line)."""
    from .cli import main as _main

    return _main(argv)
