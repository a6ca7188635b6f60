"""``python -m fastconv.bench``: fastconv against PyTorch and a NumPy baseline, per layer and pass.

Run it with the OpenBLAS tuning variables unset, or the NumPy baseline is slowed::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m fastconv.bench --json bench.json
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence

import fastconv
from fastconv import _config

from . import peak as peak_probe
from .baselines import import_torch
from .env import environment, openblas_warning
from .plot import MISSING as PLOT_MISSING
from .plot import plot_ratios
from .report import format_peak, format_table, to_json, write_json
from .shapes import DEFAULT_SHAPES, EXTRA_SHAPES, PASSES, SHAPES, Shape, parse_custom, select, with_dtype
from .timing import FigureResult, run_figure

__all__ = ["main", "build_parser"]


def _csv(text: str) -> List[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _threads(text: str) -> List[int]:
    try:
        values = [int(t) for t in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--threads takes positive integers like 1,2; got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"--threads takes positive integers like 1,2; got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    p = argparse.ArgumentParser(
        prog="python -m fastconv.bench",
        description="Time fastconv's conv2d passes against PyTorch (when installed) and a NumPy "
                    "im2col+matmul baseline, interleaved in one process, and report ms, GFLOP/s, "
                    "% of the measured FMA peak and the speed ratios.",
        epilog="Run with `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE` so the NumPy baseline is not slowed.")
    p.add_argument("--shapes", type=_csv, default=None,
                   help="comma-separated shape names (default: the whole table, or none with --custom; "
                        "--list shows them)")
    p.add_argument("--custom", action="append", default=[], metavar="N,C,H,W,K,k,s,p,d,g[,f32|f64]",
                   help="an extra layer of your own (repeatable); with it, --shapes defaults to none")
    p.add_argument("--passes", type=_csv, default=list(PASSES),
                   help="comma-separated subset of fwd,bwd_data,bwd_weights")
    p.add_argument("--threads", type=_threads, default=[1, 2], help="comma-separated thread counts (default 1,2)")
    p.add_argument("--dtype", choices=("f32", "f64"), help="compute every shape in this dtype instead of its own")
    p.add_argument("--algorithm", choices=sorted(fastconv.functional.ALGORITHMS), default="auto",
                   help="fastconv's algorithm (default auto; the table shows what auto chose)")
    p.add_argument("--repeats", type=int, default=11,
                   help="timed samples per contender; the median is reported (default 11)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls of each contender first (default 2)")
    p.add_argument("--min-sample-ms", type=float, default=10.0,
                   help="a sample repeats short calls until it lasts this long (default 10)")
    p.add_argument("--settle-ms", type=float, default=200.0,
                   help="sleep before each contender's block of samples so the previous contender's idle "
                        "threads stop spinning (OpenBLAS's spin ~0.1 s; default 200)")
    p.add_argument("--peak-seconds", type=float, default=0.2, help="length of one FMA peak probe trial (default 0.2)")
    p.add_argument("--capacity-gate", type=float, default=0.85, metavar="FRACTION",
                   help="before each timed block, wait (up to 5 s) until a 20 ms FMA probe reaches this "
                        "fraction of the peak measured at the start: a shared VM at times lends fewer "
                        "cores than it shows (default 0.85; 0 turns the gate off)")
    p.add_argument("--json", metavar="FILE", help="write the raw numbers and the environment as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="write a bar chart of the ratios (needs matplotlib)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random operands")
    p.add_argument("--no-progress", action="store_true", help="no progress display on stderr")
    p.add_argument("--list", action="store_true", help="print the shape table and exit")
    t = p.add_argument_group("whole training steps (--train)")
    t.add_argument("--train", action="store_true",
                   help="time whole train_on_batch steps of small CNNs against the same nets in torch "
                        "instead of single conv calls")
    t.add_argument("--nets", type=_csv, default=None, help="comma-separated nets (default: mnist_cnn,cifar_vgg)")
    t.add_argument("--batch", type=int, default=128, help="batch size of the training steps (default 128)")
    t.add_argument("--steps", type=int, default=5, help="steps per timed block (default 5)")
    t.add_argument("--rounds", type=int, default=5, help="timed blocks per contender; the median is reported (default 5)")
    return p


def _agreement(results: List[FigureResult]) -> str:
    """The check that an interleaved figure is what a plain back-to-back loop shows."""
    off = []
    for r in results:
        b2b = r.back_to_back_ms
        if b2b and abs(r.ms["fastconv"] / b2b - 1.0) > 0.25:
            off.append(f"{r.shape} {r.pass_} {r.threads}t: interleaved {r.ms['fastconv']:.3g} ms, "
                       f"back to back {b2b:.3g} ms")
    if not off:
        return "check: every fastconv figure agrees within 25 % with the same call timed back to back"
    return ("check: these fastconv figures differ by more than 25 % from the same call timed back to "
            "back (the machine was busy, or another library's threads were still spinning):\n  " + "\n  ".join(off))


def _main_train(args: argparse.Namespace, argv: List[str]) -> int:
    from . import train

    nets = args.nets or list(train.NETS)
    unknown = [n for n in nets if n not in train.NETS]
    if unknown:
        print(f"unknown net(s) {unknown}; known: {', '.join(train.NETS)}", file=sys.stderr)
        return 2
    torch = import_torch()
    if torch is None:
        print("note: torch is not installed; only fastconv's step is measured", file=sys.stderr)
    peak = {t: peak_probe.fma_peak_gflops("float32", t, args.peak_seconds) for t in args.threads}
    gates = _gates(args, {str(t): g for t, g in peak.items()})
    results = train.run_train_bench(torch, nets, args.threads, batch=args.batch, n_steps=args.steps,
                                    rounds=args.rounds, seed=args.seed, gates=gates)
    env = environment(torch, args.threads, argv)
    malloc = {k: v for k, v in __import__("os").environ.items() if k.startswith(("MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD"))}
    print(f"fastconv {fastconv.__version__} | torch {env['torch_version'] or 'not installed'} | "
          f"numpy {env['numpy_version']} | ISA {_config.isa()} | {env['cpu']}")
    print("FMA peak (f32): " + ", ".join(f"{t} thread(s) {g:.0f} GFLOP/s" for t, g in peak.items() if g) +
          f" | malloc: {malloc or 'glibc defaults'} | batch {args.batch}, {args.steps} steps x {args.rounds} blocks")
    print(train.format_train(results))
    print(_gate_line(gates, args.capacity_gate))
    if args.json:
        import json

        with open(args.json, "w") as f:
            json.dump({"environment": env, "fma_peak_f32": peak, "malloc_env": malloc,
                       "capacity_gate": {"threshold": args.capacity_gate,
                                         "per_threads": {str(t): g.stats() for t, g in gates.items()}},
                       "train": results}, f, indent=1)
    return 0


def _list_shapes() -> str:
    rows = ["name          N,C_in,H,W,C_out,kernel,stride,padding,dilation,groups,dtype"]
    rows += [f"{s.name:13s} {','.join(map(str, s.row()))}" for s in SHAPES.values()]
    rows += [f"{s.name:13s} {','.join(map(str, s.row()))}  (not in the default run)" for s in EXTRA_SHAPES.values()]
    return "\n".join(rows)


def _progress(total: int, enabled: bool) -> Callable[[str], None]:
    """A step function: tqdm's bar on stderr when installed, else one plain line per step."""
    if not enabled:
        return lambda label: None
    if importlib.util.find_spec("tqdm") is not None:
        from tqdm import tqdm

        bar = tqdm(total=total, file=sys.stderr, unit="fig", leave=False)
        state = {"started": False}

        def step(label: str) -> None:
            if state["started"]:
                bar.update(1)
            state["started"] = True
            bar.set_description(label)
            if label == "done":
                bar.close()
        return step
    count = {"i": 0}

    def plain(label: str) -> None:
        if label != "done":
            count["i"] += 1
            print(f"[{count['i']}/{total}] {label}", file=sys.stderr, flush=True)
    return plain


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the benchmark; returns the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if not 0 <= args.capacity_gate <= 1:
        parser.error(f"--capacity-gate takes a fraction in [0, 1] (0: off), got {args.capacity_gate}")
    if args.list:
        print(_list_shapes())
        return 0
    if args.train:
        return _main_train(args, argv)
    bad = [p for p in args.passes if p not in PASSES]
    if bad or not args.passes:
        parser.error(f"--passes takes a subset of {','.join(PASSES)}; got {','.join(args.passes)}")
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        parser.error(PLOT_MISSING)
    if args.shapes is None:
        args.shapes = [] if args.custom else list(DEFAULT_SHAPES)
    shapes = _shapes_from(args, parser)
    warning = openblas_warning()
    if warning:
        print(warning, file=sys.stderr)
    torch = import_torch()
    if torch is None:
        print("note: torch is not installed; only the NumPy baseline is measured", file=sys.stderr)
    peak = _measure_peak(sorted({s.dtype for s in shapes}), args.threads, args.peak_seconds)
    gates = _gates(args, peak.get("f32") or _measure_peak(["f32"], args.threads, args.peak_seconds)["f32"])
    results = _run(args, shapes, torch, peak, gates)
    env = environment(torch, args.threads, argv)
    head = (f"fastconv {fastconv.__version__} | torch {env['torch_version'] or 'not installed'} | "
            f"numpy {env['numpy_version']} | ISA {_config.isa()} | {env['cpu']}")
    print(head)
    print(format_table(results, format_peak(peak, _config.isa())))
    print("outputs: fwd writes into a preallocated out= (as a layer does); bwd_data and bwd_weights "
          "return new arrays; each contender is timed in blocks of back-to-back samples, "
          "--settle-ms apart")
    print(_agreement(results))
    print(_gate_line(gates, args.capacity_gate))
    if warning:
        print(warning)
    if args.json:
        settings = {"shapes": [s.name for s in shapes], "passes": args.passes, "threads": args.threads,
                    "algorithm": args.algorithm, "dtype": args.dtype, "repeats": args.repeats,
                    "warmup": args.warmup, "min_sample_ms": args.min_sample_ms, "settle_ms": args.settle_ms,
                    "capacity_gate": args.capacity_gate}
        write_json(args.json, to_json(results, env, peak, settings))
        print(f"wrote {args.json}", file=sys.stderr)
    if args.plot:
        plot_ratios(results, args.plot, f"fastconv vs peers, ISA {_config.isa()} (higher is better)")
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _measure_peak(dtypes: Sequence[str], threads: Sequence[int],
                  seconds: float) -> Dict[str, Dict[str, Optional[float]]]:
    """dtype -> {threads (str): GFLOP/s or None}."""
    if not peak_probe.available():
        print(f"note: {peak_probe.MISSING}", file=sys.stderr)
    return {dt: {str(t): peak_probe.fma_peak_gflops(dt, t, seconds) for t in threads} for dt in dtypes}


def _gates(args: argparse.Namespace, f32_peak: Dict[str, Optional[float]]) -> Dict[int, peak_probe.CapacityGate]:
    """threads -> the capacity gate of blocks at that thread count (none when turned off or
    when the probe is not built in)."""
    if not args.capacity_gate or args.capacity_gate <= 0:
        return {}
    return {t: peak_probe.CapacityGate(t, f32_peak[str(t)], args.capacity_gate)
            for t in args.threads if f32_peak.get(str(t))}


def _gate_line(gates: Dict[int, peak_probe.CapacityGate], threshold: float) -> str:
    """What the capacity gate did, one line."""
    if not gates:
        return "capacity gate: off (blocks were timed whatever the machine lent)"
    st = [g.stats() for g in gates.values()]
    checks, waited, short = (sum(int(x[k]) for x in st) for k in ("checks", "waited", "short"))
    g = next(iter(gates.values()))
    line = (f"capacity gate: {waited} of {checks} timed blocks waited for a {1e3 * g.probe_s:.0f} ms FMA "
            f"probe to reach {threshold:.0%} of the peak ({sum(x['waited_s'] for x in st):.1f} s in all)")
    if short:
        line += (f"; {short} ran below it after {g.max_wait_s:g} s (their figures carry the machine's "
                 "shortfall)")
    return line


def _run(args: argparse.Namespace, shapes: Sequence[Shape], torch: Optional[Any],
         peak: Dict[str, Dict[str, Optional[float]]],
         gates: Optional[Dict[int, peak_probe.CapacityGate]] = None) -> List[FigureResult]:
    """Every figure (threads x shape x pass), with the progress display."""
    figures = [(t, s, p) for t in args.threads for s in shapes for p in args.passes]
    step = _progress(len(figures), not args.no_progress)
    results: List[FigureResult] = []
    for t, s, p in figures:
        step(f"{s.name} {p} {t}t")
        results.append(run_figure(s, p, t, algorithm=args.algorithm, torch=torch, repeats=args.repeats,
                                  warmup=args.warmup, min_sample_s=args.min_sample_ms / 1e3,
                                  settle_s=args.settle_ms / 1e3, peak_gflops=peak[s.dtype][str(t)],
                                  seed=args.seed, gate=(gates or {}).get(t)))
    step("done")
    return results


def _shapes_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> List[Shape]:
    try:
        shapes = select(args.shapes)
        shapes += [parse_custom(c, f"custom{i + 1}") for i, c in enumerate(args.custom)]
    except ValueError as exc:
        parser.error(str(exc))
    if args.dtype:
        shapes = [with_dtype(s, args.dtype) for s in shapes]
    if not shapes:
        parser.error("no shapes selected")
    return shapes
