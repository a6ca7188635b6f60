"""The results as a text table (stdout), a summary (geometric means) and a JSON document.

JSON layout (``--json FILE``)::

    {
      "schema": "fastconv.bench/1",
      "environment": {command, time, fastconv_version, numpy_version, torch_version, python_version,
                      platform, cpu, cpu_count, isa, best_isa, openmp, threads, numpy_blas,
                      numpy_blas_threads_limited, env, python_executable},
      "peak_gflops": {"f32": {"<threads>": GFLOP/s, ...}, "f64": {...}},   # null when not built in
      "settings": {shapes, passes, threads, algorithm, dtype, repeats, warmup, min_sample_ms, settle_ms,
                   capacity_gate},
      "results": [{shape, pass, threads, dtype, layer, algorithm_requested, algorithm, flops,
                   ms: {fastconv, torch?, numpy}, samples_ms, calls_per_sample, gflops, peak_gflops,
                   pct_peak, ratio_torch, ratio_numpy, workspace_bytes, workspace_limit_bytes,
                   workspace_ok, max_rel_diff: {fastconv, torch?}, back_to_back_ms,
                   gate: {checks, waited, short, waited_s} or null}, ...],
      "summary": {geomean_ratio_torch, geomean_ratio_numpy (each {"all": x, "<threads>": x}),
                  figures, slower_than_torch, workspace_over_limit, mismatches}
    }

``ratio_*`` is peer time / fastconv time in the same run (> 1: fastconv is faster).
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Dict, Iterable, List, Optional, Sequence

from .timing import MIB, FigureResult

__all__ = ["geomean", "summary", "format_table", "format_peak", "to_json", "write_json", "SCHEMA"]

SCHEMA = "fastconv.bench/1"

#: Largest max|result - numpy| / max|numpy| accepted before a figure is flagged as a mismatch.
MISMATCH_TOL = {"f32": 1e-3, "f64": 1e-9}


def geomean(values: Iterable[Optional[float]]) -> Optional[float]:
    """Geometric mean of the positive values given (None when there are none)."""
    vals = [v for v in values if v is not None and v > 0]
    if not vals:
        return None
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


def summary(results: Sequence[FigureResult]) -> Dict[str, Any]:
    """Geometric means of the ratios, overall and per thread count, and the figures that miss."""
    threads = sorted({r.threads for r in results})
    out: Dict[str, Any] = {"figures": len(results)}
    for key in ("ratio_torch", "ratio_numpy"):
        per = {"all": geomean(getattr(r, key) for r in results)}
        per.update({str(t): geomean(getattr(r, key) for r in results if r.threads == t) for t in threads})
        out["geomean_" + key] = per
    out["slower_than_torch"] = [f"{r.shape}/{r.pass_}/{r.threads}t" for r in results
                                if r.ratio_torch is not None and r.ratio_torch < 1.0]
    out["workspace_over_limit"] = [f"{r.shape}/{r.pass_}/{r.threads}t" for r in results if not r.workspace_ok]
    out["mismatches"] = [f"{r.shape}/{r.pass_}/{r.threads}t: {name} {diff:.1e}" for r in results
                         for name, diff in r.max_rel_diff.items() if not diff <= MISMATCH_TOL[r.dtype]]
    return out


def _num(v: Optional[float], width: int, digits: int = 3) -> str:
    if v is None:
        return "-".rjust(width)
    if v >= 100:
        return f"{v:{width}.0f}"
    if v >= 10:
        return f"{v:{width}.1f}"
    return f"{v:{width}.{digits}f}" if v < 1 else f"{v:{width}.2f}"


def format_peak(peak: Dict[str, Dict[str, Optional[float]]], isa: str) -> str:
    """One header line: the measured FMA peak per dtype and thread count."""
    parts = []
    for dtype, per in peak.items():
        vals = ", ".join(f"{t} thr {v:.1f}" if v else f"{t} thr -" for t, v in per.items())
        parts.append(f"{dtype}: {vals}")
    return f"FMA peak ({isa}, measured, GFLOP/s): " + ("; ".join(parts) if parts else "not measured")


_COLUMNS = [("shape", 13, "<"), ("pass", 11, "<"), ("dtype", 5, "<"), ("thr", 3, ">"), ("algo", 6, "<"),
            ("ms", 8, ">"), ("GFLOP/s", 8, ">"), ("%peak", 6, ">"), ("torch ms", 8, ">"), ("x torch", 7, ">"),
            ("numpy ms", 8, ">"), ("x numpy", 7, ">"), ("extra MiB", 9, ">")]


def format_table(results: Sequence[FigureResult], peak_line: str = "") -> str:
    """The fixed-width table, the peak on top and the geometric means below."""
    header = " ".join(f"{name:{align}{width}}" for name, width, align in _COLUMNS)
    lines: List[str] = [peak_line] if peak_line else []
    lines += [header, "-" * len(header)]
    for r in results:
        ws = f"{r.workspace_bytes / MIB:.2f}" + ("!" if not r.workspace_ok else " ")
        cells = [r.shape, r.pass_, r.dtype, str(r.threads), r.algorithm, _num(r.ms["fastconv"], 8),
                 _num(r.gflops, 8), _num(r.pct_peak, 6, 1), _num(r.ms.get("torch"), 8), _num(r.ratio_torch, 7, 2),
                 _num(r.ms["numpy"], 8), _num(r.ratio_numpy, 7, 2), ws]
        lines.append(" ".join(f"{c:{align}{width}}" for c, (_, width, align) in zip(cells, _COLUMNS)))
    lines.append("-" * len(header))
    s = summary(results)
    for key, peer in (("geomean_ratio_torch", "torch"), ("geomean_ratio_numpy", "numpy")):
        per = s[key]
        if per["all"] is None:
            lines.append(f"geometric mean of {peer}_time / fastconv_time: - ({peer} not measured)")
            continue
        by_t = ", ".join(f"{per[t]:.2f}x at {t} thr" for t in per if t != "all" and per[t] is not None)
        lines.append(f"geometric mean of {peer}_time / fastconv_time: {per['all']:.2f}x over "
                     f"{s['figures']} figures ({by_t})")
    if s["slower_than_torch"]:
        lines.append(f"slower than torch (ratio < 1): {', '.join(s['slower_than_torch'])}")
    if s["workspace_over_limit"]:
        lines.append(f"extra memory over max(16 MiB, 10% of input+output) (marked !): "
                     f"{', '.join(s['workspace_over_limit'])}")
    if s["mismatches"]:
        lines.append(f"RESULTS DIFFER from the NumPy baseline (max rel. diff): {', '.join(s['mismatches'])}")
    return "\n".join(lines)


def to_json(results: Sequence[FigureResult], environment: Dict[str, Any], peak: Dict[str, Any],
            settings: Dict[str, Any]) -> Dict[str, Any]:
    """The JSON document (see the module docstring)."""
    rows = []
    for r in results:
        d = dataclasses.asdict(r)
        d["pass"] = d.pop("pass_")
        rows.append(d)
    return {"schema": SCHEMA, "environment": environment, "peak_gflops": peak, "settings": settings,
            "results": rows, "summary": summary(results)}


def write_json(path: str, document: Dict[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump(document, f, indent=1)
        f.write("\n")
