"""The environment a benchmark ran in (recorded in the JSON and the table's header)."""
from __future__ import annotations

import datetime
import os
import platform
import sys
from typing import Any, Dict, List, Optional

import numpy as np

import fastconv
from fastconv import _config, _core

from .threadctl import blas_threads_controllable

__all__ = ["environment", "openblas_warning", "cpu_model", "SLOW_OPENBLAS_VARS"]

#: Set in some shells here; they make NumPy's OpenBLAS slower, so the baseline would flatter fastconv.
SLOW_OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def openblas_warning() -> Optional[str]:
    """A warning when OpenBLAS tuning variables that slow NumPy are set, else None."""
    present = [v for v in SLOW_OPENBLAS_VARS if v in os.environ]
    if not present:
        return None
    return (f"warning: {', '.join(f'{v}={os.environ[v]}' for v in present)} is set: it slows NumPy's "
            f"OpenBLAS, so the NumPy baseline is not honest. Rerun with: env -u OPENBLAS_CORETYPE "
            f"-u OPENBLAS_L2_SIZE python -m fastconv.bench ...")


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else platform.processor()."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas_info() -> List[Dict[str, Any]]:
    if not blas_threads_controllable():
        return []
    import threadpoolctl

    return [{k: info.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for info in threadpoolctl.threadpool_info() if info.get("user_api") == "blas"]


def environment(torch: Optional[Any], threads: List[int], argv: List[str]) -> Dict[str, Any]:
    """Versions, CPU, ISA, threads and relevant environment variables of this run."""
    return {
        "command": " ".join(["python -m fastconv.bench", *argv]),
        "time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "fastconv_version": fastconv.__version__,
        "numpy_version": np.__version__,
        "torch_version": None if torch is None else torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "isa": _config.isa(),
        "best_isa": _config.ISA_NAMES[_core.best_isa()],
        "openmp": bool(_core.openmp_enabled()),
        "threads": list(threads),
        "numpy_blas": _blas_info(),
        "numpy_blas_threads_limited": blas_threads_controllable(),
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "FASTCONV_ISA",
                                           *SLOW_OPENBLAS_VARS, "OPENBLAS_NUM_THREADS") if k in os.environ},
        "python_executable": sys.executable,
    }
