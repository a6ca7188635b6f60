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
    c = _core.cpu_info()
    kib = lambda b: f"{b // 1024} KiB" if b < (1 << 20) else f"{b / (1 << 20):g} MiB"  # noqa: E731
    lines.append(f"  CPU:               {c['vendor'] or 'unknown vendor'} family {c['family']:#x} model {c['model']:#x}")
    lines.append(f"  caches:            L1d {kib(c['l1d'])}, L2 {kib(c['l2'])}, L3 {kib(c['l3'])}"
                 + ("  (FASTCONV_CPU_*)" if c["caches_overridden"] else ""))
    if c["fma512_ports"]:
        how = "FASTCONV_CPU_FMA512_PORTS" if c["ports_overridden"] else f"measured ratio {c['fma512_ratio']:.2f}"
        lines.append(f"  512-bit FMA pipes: {c['fma512_ports']} ({how})")
    for dt in ("float32", "float64"):
        b = _core.gemm_blocking(dt)
        lines.append(f"  GEMM {dt}:     {b['mr']}x{b['nr']} kernel, MC {b['mc']}, KC {b['kc']}, NC {b['nc']}, "
                     f"B panel in {b['panel'].upper()}"
                     + ("  (FASTCONV_GEMM_PANEL)" if os.environ.get("FASTCONV_GEMM_PANEL") else "")
                     + ("  (FASTCONV_GEMM_BLOCKS)" if os.environ.get("FASTCONV_GEMM_BLOCKS") else ""))
    tiles = []
    for dt, code in (("float32", _core.DTYPE_F32), ("float64", _core.DTYPE_F64)):
        tile = _core.implicit_tile(code)
        if tile is not None:
            tiles.append(f"{tile[0]}x{tile[1]} kernel ({dt})")
    lines.append("  implicit GEMM:     " + (", ".join(tiles) if tiles else "none on this ISA (explicit im2col)"))
    if _core.fork_serial():
        lines.append("  note:              forked child of a process whose OpenMP team had started: "
                     "kernels run on one thread")
    print("\n".join(lines))
