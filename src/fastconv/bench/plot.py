"""``--plot FILE.png``: a bar chart of the speed ratios (matplotlib, optional)."""
from __future__ import annotations

from typing import Sequence

from .timing import FigureResult

__all__ = ["plot_ratios", "MISSING"]

MISSING = "--plot needs matplotlib, which is not installed: pip install matplotlib (or fastconv[demo])"


def plot_ratios(results: Sequence[FigureResult], path: str, title: str = "") -> None:
    """Grouped bars of torch_time/fastconv_time and numpy_time/fastconv_time per figure (log scale).

    Raises
    ------
    ImportError
        With ``MISSING`` as its message when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(MISSING) from None
    labels = [f"{r.shape}\n{r.pass_} {r.threads}t" for r in results]
    series = [("torch", [r.ratio_torch for r in results]), ("numpy", [r.ratio_numpy for r in results])]
    series = [(name, vals) for name, vals in series if any(v is not None for v in vals)]
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(results) + 2), 4.5))
    for i, (name, vals) in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(results))]
        ax.bar(xs, [v if v is not None else 0 for v in vals], width, label=f"{name} time / fastconv time")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    from matplotlib.ticker import FormatStrFormatter

    ax.yaxis.set_major_formatter(FormatStrFormatter("%gx"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%gx"))
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set_ylabel("speed-up of fastconv (x)")
    ax.set_xticks(range(len(results)))
    ax.set_xticklabels(labels, rotation=90, fontsize=7)
    ax.set_title(title or "fastconv vs peers (higher is better)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
