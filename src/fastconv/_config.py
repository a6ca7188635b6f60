"""Run-time configuration: the instruction set in use and ``show_config``."""
from __future__ import annotations

import os
import warnings

from . import _core
from ._threads import get_num_threads

ISA_NAMES = ("generic", "avx2", "avx512")


def apply_isa_from_env() -> None:
    """Honour ``FASTCONV_ISA=generic|avx2|avx512`` (capped at what the CPU supports)."""
    wanted = os.environ.get("FASTCONV_ISA", "").strip().lower()
    if not wanted:
        return
    if wanted not in ISA_NAMES:
        warnings.warn(f"FASTCONV_ISA={wanted!r} is not one of {ISA_NAMES}; ignored", RuntimeWarning, stacklevel=3)
        return
    _core.set_isa(ISA_NAMES.index(wanted))


def isa() -> str:
    """Name of the instruction set the kernels use now."""
    return ISA_NAMES[_core.active_isa()]


def show_config() -> None:
    """Print the version, OpenMP status, thread count and CPU features fastconv uses."""
    from . import __version__

    lines = [
        f"fastconv {__version__}",
        f"  OpenMP:            {'on' if _core.openmp_enabled() else 'off (single-threaded build)'}",
        f"  threads:           {get_num_threads()} (of {_core.omp_num_procs()} processors)",
        f"  CPU best ISA:      {ISA_NAMES[_core.best_isa()]}",
        f"  ISA in use:        {isa()}" + ("  (FASTCONV_ISA)" if os.environ.get("FASTCONV_ISA") else ""),
    ]
    print("\n".join(lines))
