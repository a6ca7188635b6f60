"""Shared fixtures and Hypothesis profiles for the fastconv test suite.

Algorithms
    ``ALGORITHMS`` below is the one list of algorithms every correctness test runs;
    ``algorithm_or_auto`` adds ``"auto"``.

Hypothesis profiles (``HYPOTHESIS_PROFILE=ci|nightly``, default ``ci``)
    ci:      FASTCONV_HYPOTHESIS_EXAMPLES examples per test (default 50), no deadline
    nightly: FASTCONV_HYPOTHESIS_EXAMPLES examples per test (default 500), no deadline
"""
from __future__ import annotations

import os
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

try:  # test_reference.py runs without the C extension; nothing here may break that
    import fastconv
    import fastconv.functional
    from fastconv import _core
except ImportError:  # pragma: no cover - only while the extension is not built
    fastconv = _core = None

# ----------------------------------------------------------------------------- hypothesis

_SUPPRESS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]


def _examples(default: int) -> int:
    value = os.environ.get("FASTCONV_HYPOTHESIS_EXAMPLES")
    return int(value) if value else default


settings.register_profile("ci", max_examples=_examples(50), deadline=None,
                          suppress_health_check=_SUPPRESS, print_blob=True)
settings.register_profile("nightly", max_examples=_examples(500), deadline=None,
                          suppress_health_check=_SUPPRESS, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# ----------------------------------------------------------------------------- algorithms

#: Every correctness test runs each of these (the one place the list lives).
ALGORITHMS = ["direct", "im2col"]


@pytest.fixture(params=ALGORITHMS)
def algorithm(request) -> str:
    """Each explicit algorithm ("direct", "im2col")."""
    return request.param


@pytest.fixture(params=ALGORITHMS + ["auto"])
def algorithm_or_auto(request) -> str:
    """``ALGORITHMS`` plus "auto"."""
    return request.param


# ----------------------------------------------------------------------------- ISA

ISA_NAMES = ("generic", "avx2", "avx512")


def _with_isa(wanted: int):
    """Make ISA ``wanted`` active for a test (skipped where the CPU lacks it) and restore
    the one active before afterwards."""
    if wanted > _core.best_isa():
        pytest.skip(f"this CPU does not support {ISA_NAMES[wanted]}")
    before = _core.active_isa()
    got = _core.set_isa(wanted)
    assert got == wanted and _core.active_isa() == wanted, f"set_isa({wanted}) gave {got}"
    try:
        yield ISA_NAMES[wanted]
    finally:
        _core.set_isa(before)
    assert _core.active_isa() == before


@pytest.fixture(params=[0, 1, 2], ids=list(ISA_NAMES))
def isa(request) -> str:
    """Run the test with the kernels of one ISA (skipped where the CPU lacks it)."""
    yield from _with_isa(request.param)


@pytest.fixture(params=[1, 2], ids=list(ISA_NAMES[1:]))
def implicit_isa(request) -> str:
    """Run the test under each ISA with implicit-GEMM micro-kernels (AVX2: 6x16 / 6x8 tiles,
    AVX-512: 8x32 / 8x24; skipped where the CPU lacks it)."""
    yield from _with_isa(request.param)


# ----------------------------------------------------------------------------- misc

@pytest.fixture
def rng(request) -> np.random.Generator:
    """A generator seeded from the test's id: reproducible, different per test."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(autouse=True)
def _restore_global_state():
    """Whatever a test does (or fails to undo), the next test starts with the same thread
    setting and ISA."""
    if _core is None:
        yield
        return
    from fastconv import _threads

    threads_before = _threads._num_threads
    isa_before = _core.active_isa()
    yield
    _threads._num_threads = threads_before
    if _core.active_isa() != isa_before:
        _core.set_isa(isa_before)
