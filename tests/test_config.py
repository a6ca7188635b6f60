"""show_config and the FASTCONV_ISA environment variable."""
from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

import fastconv
import helpers as H
from fastconv import _core

ROOT = pathlib.Path(__file__).resolve().parents[1]
ISA_NAMES = ("generic", "avx2", "avx512")


def _project_version() -> str:
    """The version the installed distribution's metadata carries (pip wrote it from
    pyproject.toml's dynamic version, i.e. from fastconv/_version.py)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fastconv")
    except PackageNotFoundError:  # an in-place build on PYTHONPATH: read the one source
        text = (ROOT / "src" / "fastconv" / "_version.py").read_text()
        return re.search(r'__version__\s*=\s*"([^"]+)"', text).group(1)


def _config_text(capsys) -> str:
    capsys.readouterr()
    assert fastconv.show_config() is None
    return capsys.readouterr().out


def test_show_config_reports_version(capsys):
    out = _config_text(capsys)
    assert re.search(rf"\bfastconv\s+{re.escape(_project_version())}\b", out), out
    assert fastconv.__version__ == _project_version()


def test_show_config_reports_openmp(capsys):
    out = _config_text(capsys)
    if _core.openmp_enabled():
        assert re.search(r"OpenMP:\s+on\b", out), out
    else:
        assert re.search(r"OpenMP:\s+off\b", out), out


def test_built_with_openmp_on_a_multicore_machine():
    """issue 2: show_config reports OpenMP on (gcc has -fopenmp on this machine)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cores < 2:
        pytest.skip("single-core machine")
    assert _core.openmp_enabled()
    assert _core.omp_num_procs() >= 2


def test_show_config_reports_thread_count(capsys):
    for n in (1, 3):
        with fastconv.threads(n):
            out = _config_text(capsys)
        m = re.search(r"threads:\s+(\d+)", out)
        assert m and int(m.group(1)) == n, out


def test_show_config_reports_isa(capsys, isa):
    out = _config_text(capsys)
    m = re.search(r"ISA in use:\s+(\w+)", out)
    assert m and m.group(1) == isa, out
    best = re.search(r"best ISA:\s+(\w+)", out)
    assert best and best.group(1) == ISA_NAMES[_core.best_isa()], out


IMPLICIT_TILES = {"generic": "none on this ISA (explicit im2col)",
                  "avx2": "6x16 kernel (float32), 6x8 kernel (float64)",
                  "avx512": "8x32 kernel (float32), 8x24 kernel (float64)"}


def test_show_config_reports_the_implicit_tile_of_the_isa(capsys, isa):
    out = _config_text(capsys)
    m = re.search(r"implicit GEMM:\s+(.+)", out)
    assert m and m.group(1).strip() == IMPLICIT_TILES[isa], out


def test_implicit_tile_rejects_an_unknown_dtype():
    with pytest.raises(ValueError, match="implicit_tile: dtype must be DTYPE_F32 or DTYPE_F64, got 7"):
        _core.implicit_tile(7)


def test_cpu_detection_matches_proc_cpuinfo():
    """The best ISA fastconv detects agrees with the kernel's view of the CPU flags."""
    path = pathlib.Path("/proc/cpuinfo")
    if not path.exists():
        pytest.skip("no /proc/cpuinfo")
    flags = set()
    for line in path.read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    if not flags:
        pytest.skip("no x86 flags line in /proc/cpuinfo")
    expected = 0
    if {"avx2", "fma"} <= flags:
        expected = 1
        if "avx512f" in flags:
            expected = 2
    assert _core.best_isa() == expected


def test_set_isa_clamps_to_the_cpu():
    before = _core.active_isa()
    try:
        assert _core.set_isa(0) == 0 and _core.active_isa() == 0
        got = _core.set_isa(2)
        assert got == _core.best_isa() == _core.active_isa()
    finally:
        _core.set_isa(before)


def _python(code: str, **env_update) -> subprocess.CompletedProcess:
    env = H.child_env(**env_update)
    return subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)


_SHOW = "import fastconv, fastconv._core as c; print('ACTIVE', c.active_isa()); fastconv.show_config()"


def test_env_isa_generic():
    proc = _python(_SHOW, FASTCONV_ISA="generic")
    assert proc.returncode == 0, proc.stderr
    assert "ACTIVE 0" in proc.stdout
    assert re.search(r"ISA in use:\s+generic\b", proc.stdout), proc.stdout


@pytest.mark.parametrize("value,index", [("avx2", 1), ("AVX512", 2), (" avx2 ", 1)])
def test_env_isa_named(value, index):
    proc = _python(_SHOW, FASTCONV_ISA=value)
    assert proc.returncode == 0, proc.stderr
    expected = min(index, _core.best_isa())  # capped at what the CPU supports
    assert f"ACTIVE {expected}" in proc.stdout, proc.stdout
    assert re.search(rf"ISA in use:\s+{ISA_NAMES[expected]}\b", proc.stdout), proc.stdout


def test_env_isa_invalid_warns_and_is_ignored():
    proc = _python(_SHOW, FASTCONV_ISA="sse9")
    assert proc.returncode == 0, proc.stderr
    assert "RuntimeWarning" in proc.stderr and "FASTCONV_ISA" in proc.stderr and "sse9" in proc.stderr, proc.stderr
    assert f"ACTIVE {_core.best_isa()}" in proc.stdout, proc.stdout


def test_default_isa_is_the_best_and_two_threads_reported():
    proc = _python(_SHOW)
    assert proc.returncode == 0, proc.stderr
    assert f"ACTIVE {_core.best_isa()}" in proc.stdout
    assert "fastconv" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    m = re.search(r"threads:\s+(\d+)", proc.stdout)
    assert m and int(m.group(1)) == cores, proc.stdout


# ----------------------------------------------------------------------------- CPU detection
def test_cpu_info_is_sane_and_agrees_with_the_os():
    c = _core.cpu_info()
    assert 4096 <= c["l1d"] <= c["l2"] <= c["l3"]
    assert c["fma512_ports"] in ((1, 2) if _core.best_isa() >= 2 else (0,))
    for key, name in (("l1d", "SC_LEVEL1_DCACHE_SIZE"), ("l2", "SC_LEVEL2_CACHE_SIZE")):
        try:
            os_value = os.sysconf(name)
        except (ValueError, OSError, AttributeError):
            continue
        if os_value and os_value > 0:
            assert c[key] == os_value, (key, c[key], os_value)


def test_cpu_info_environment_overrides_are_reported(capsys):
    code = ("import fastconv; from fastconv import _core; c = _core.cpu_info(); "
            "print(c['l1d'], c['l2'], c['l3'], c['fma512_ports'], c['caches_overridden']); fastconv.show_config()")
    proc = _python(code, FASTCONV_CPU_L1D="40K", FASTCONV_CPU_L2="3M", FASTCONV_CPU_L3=str(64 << 20),
                   FASTCONV_CPU_FMA512_PORTS="1")
    assert proc.returncode == 0, proc.stderr
    first, rest = proc.stdout.split("\n", 1)
    l1, l2, l3, ports, over = first.split()
    assert (int(l1), int(l2), int(l3), over) == (40 << 10, 3 << 20, 64 << 20, "True")
    if _core.best_isa() >= 2:
        assert int(ports) == 1 and "FASTCONV_CPU_FMA512_PORTS" in rest
    assert "L1d 40 KiB, L2 3 MiB, L3 64 MiB  (FASTCONV_CPU_*)" in rest
