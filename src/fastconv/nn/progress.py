"""A per-epoch progress bar: tqdm when installed, else one plain, rewritten line."""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO

__all__ = ["Progress"]


class Progress:
    """Progress over ``total`` items (images) of one epoch.

    Uses ``tqdm`` if it can be imported; otherwise, on a terminal, rewrites a single
    line with ``\\r``; when the stream is not a terminal it stays silent (the caller
    prints its own per-epoch summary line).

    Parameters
    ----------
    total : int
        Number of items in the epoch.
    desc : str
        Label, e.g. ``"epoch 1/10"``.
    enabled : bool
        False makes every method a no-op.
    stream : file-like, optional
        Defaults to ``sys.stderr``.
    """

    def __init__(self, total: int, desc: str = "", enabled: bool = True,
                 stream: Optional[TextIO] = None) -> None:
        self.total, self.desc, self.enabled = int(total), desc, enabled
        self.stream = stream or sys.stderr
        self.done = 0
        self._t0 = time.perf_counter()
        self._bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm  # optional dependency
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=self.total, desc=desc, unit="img", leave=False, file=self.stream)
        self._tty = enabled and self._bar is None and getattr(self.stream, "isatty", lambda: False)()

    def update(self, n: int, loss: Optional[float] = None) -> None:
        """Advance by ``n`` items, showing the running ``loss`` if given.

        Parameters
        ----------
        n : int
        loss : float, optional
        """
        if not self.enabled:
            return
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            if loss is not None:
                self._bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        elif self._tty:
            rate = self.done / max(time.perf_counter() - self._t0, 1e-9)
            tail = f" loss {loss:.4f}" if loss is not None else ""
            self.stream.write(f"\r{self.desc} {self.done}/{self.total} ({rate:.0f} img/s){tail}   ")
            self.stream.flush()

    def close(self) -> None:
        """Remove the bar / clear the line."""
        if self._bar is not None:
            self._bar.close()
        elif self._tty:
            self.stream.write("\r" + " " * 79 + "\r")
            self.stream.flush()
