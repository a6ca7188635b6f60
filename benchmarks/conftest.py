"""pytest-benchmark suite of fastconv over the named shape table (``fastconv.bench.shapes``).

Skipped in the normal test run (``--benchmark-skip`` in pyproject's addopts; ``tests/`` is
the testpath). Run it, with the OpenBLAS tuning variables unset so NumPy is not slowed::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python -m pytest benchmarks/ --benchmark-only --benchmark-columns=median,iqr

Select with ``-k``, e.g. ``-k "resnet_3x3 and fwd and 2t"``. Each group holds one figure
(shape, pass, threads) with fastconv's algorithms, torch and the NumPy baseline side by
side. pytest-benchmark times one benchmark after another; for ratios measured interleaved
in one run, use ``python -m fastconv.bench``.
"""
from typing import Any, Optional

import pytest

from fastconv.bench.baselines import import_torch
from fastconv.bench.env import openblas_warning


@pytest.fixture(scope="session")
def torch_module() -> Optional[Any]:
    """PyTorch, or None when it is not installed (its entries are then skipped)."""
    return import_torch()


def pytest_report_header(config) -> list:
    import fastconv
    from fastconv import _config

    torch = import_torch()
    lines = [f"fastconv {fastconv.__version__}, ISA {_config.isa()}, "
             f"torch {torch.__version__ if torch is not None else 'not installed'}"]
    warning = openblas_warning()
    if warning:
        lines.append(warning)
    return lines
