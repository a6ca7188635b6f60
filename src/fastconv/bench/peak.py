"""This machine's FMA peak, measured by the short C probe ``fastconv._core.fma_peak_gflops``.

The probe (``csrc/peak.c``) runs independent FMA chains with the instruction set
fastconv's kernels use now, so "% of peak" compares a kernel with what its own ISA can
do on these threads. A NumPy-only probe could not reach FMA peak, hence the C routine.
"""
from __future__ import annotations

import time
from typing import Callable, Dict, Optional

from .. import _core

__all__ = ["available", "fma_peak_gflops", "CapacityGate"]

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


class CapacityGate:
    """Before a timed block: wait until the machine delivers the FMA rate it was measured at.

    A shared VM at times lends fewer cores than it shows. On the 2-core Zen 4 VM of issue 12
    a 20 ms two-thread probe read one core's rate (117 GFLOP/s against 231) in 9 of 234
    checks over a minute, and a 2-thread conv timed then ran at one core's speed; /proc/stat
    counted no steal time. A block timed in such a phase measures the hypervisor, and
    whichever contender it falls on loses. Called right before each block (after the settle
    pause that lets the previous contender's threads stop spinning, which a probe would
    otherwise measure), the gate probes for ``probe_s``; below ``threshold`` x ``reference``
    it pauses ``pause_s`` and probes again, for at most ``max_wait_s``, then lets the block
    run (counted short). It ends with ``quiet_s`` of sleep, so the probe's own OpenMP threads
    stop spinning before the block starts. It catches phases under way when a block starts,
    not one that begins during it, nor a few-percent slowdown (memory shared with other
    guests), which the medians and the rotation of contenders are left to absorb.

    Parameters
    ----------
    threads : int
        Threads of the blocks it guards (the probe runs on as many).
    reference : float
        The FMA rate (GFLOP/s) measured at the start of the run for these threads.
    threshold : float
        Fraction of ``reference`` a probe must reach.
    probe : callable, optional
        ``probe(threads, seconds) -> GFLOP/s``; the C probe (float32) by default.
    """

    def __init__(self, threads: int, reference: float, threshold: float = 0.85, probe_s: float = 0.02,
                 pause_s: float = 0.25, max_wait_s: float = 5.0, quiet_s: float = 0.02,
                 probe: Optional[Callable[[int, float], float]] = None) -> None:
        if not reference > 0:
            raise ValueError(f"reference must be a positive GFLOP/s rate, got {reference!r}")
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
        self.threads = int(threads)
        self.reference = float(reference)
        self.threshold = float(threshold)
        self.probe_s = probe_s
        self.pause_s = pause_s
        self.max_wait_s = max_wait_s
        self.quiet_s = quiet_s
        self._probe = probe or (lambda t, s: _core.fma_peak_gflops("float32", t, s))
        self.checks = 0      # blocks guarded
        self.waited = 0      # of which had to wait for the machine
        self.short = 0       # of which ran without the full rate after max_wait_s
        self.waited_s = 0.0

    def __call__(self) -> bool:
        """Probe (and wait) once; True when the machine delivered the rate before the block."""
        self.checks += 1
        t0 = time.perf_counter()
        waited = False
        while True:
            if self._probe(self.threads, self.probe_s) >= self.threshold * self.reference:
                ok = True
                break
            if time.perf_counter() - t0 >= self.max_wait_s:
                ok = False
                break
            waited = True
            time.sleep(self.pause_s)
        if waited or not ok:
            self.waited += 1
            self.waited_s += time.perf_counter() - t0
        self.short += not ok
        if self.quiet_s > 0:
            time.sleep(self.quiet_s)
        return ok

    def stats(self) -> Dict[str, float]:
        """{"checks", "waited", "short", "waited_s"} so far."""
        return {"checks": self.checks, "waited": self.waited, "short": self.short, "waited_s": self.waited_s}
