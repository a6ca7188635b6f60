"""This machine's FMA peak, measured by the short C probe ``fastconv._core.fma_peak_gflops``.

The probe (``csrc/peak.c``) runs independent FMA chains with the instruction set
fastconv's kernels use now, so "% of peak" compares a kernel with what its own ISA can
do on these threads. A NumPy-only probe could not reach FMA peak, hence the C routine.
"""
from __future__ import annotations

from typing import Optional

from .. import _core

__all__ = ["available", "fma_peak_gflops"]

MISSING = ("fastconv._core has no fma_peak_gflops: the build lacks csrc/peak.c or "
           "_core.pyx lacks `include \"_peak.pxi\"`; % of peak is not reported")


def available() -> bool:
    """True when the extension carries the probe."""
    return hasattr(_core, "fma_peak_gflops")


def fma_peak_gflops(dtype: str, nthreads: int, seconds: float = 0.2, trials: int = 3) -> Optional[float]:
    """Best of ``trials`` probe runs, in GFLOP/s, or None when the probe is not built in.

    Parameters
    ----------
    dtype : {"f32", "f64"}
    nthreads : int
        Threads the probe runs on (those of the figures it is the peak for).
    seconds : float
        Measuring time of one trial.
    trials : int
        The maximum over trials is kept: on a shared machine noise only ever lowers a rate.

    Returns
    -------
    float or None
    """
    if not available():
        return None
    return max(_core.fma_peak_gflops(dtype, int(nthreads), float(seconds)) for _ in range(max(1, trials)))
