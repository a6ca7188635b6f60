"""Index arithmetic of a spatially chunked convolution, for one axis; no dask needed.

An input axis of ``size`` pixels is cut into chunks ``c_0, c_1, ...`` starting at
``B_0 = 0, B_1, ...``. Output pixel ``i`` reads the input window that starts at
``i*stride - pad_lo`` and is ``(kernel-1)*dilation + 1`` pixels long. Each output pixel
belongs to the block of the input chunk its window *starts* in (windows starting in the
top padding belong to block 0, windows starting past the image to the last block), so
output block ``j`` covers outputs ``[ceil((B_j + pad_lo)/stride), ceil((B_{j+1} + pad_lo)/stride))``,
clipped to ``[0, out_size)``: output chunks are the input chunk boundaries divided by the
stride, rounded up.

The windows of block ``j`` then start inside input chunk ``j`` and reach at most
``halo = (kernel-1)*dilation`` pixels into the following chunk(s), so block ``j`` needs only
its own chunk plus the first ``halo`` pixels after it (a one-sided halo; none for the
last block). Whatever part of a block's window range lies outside the image is that
block's explicit zero padding, so the image border's padding is applied only at the
border. When every chunk has at least ``halo`` pixels the halo comes from the next chunk
alone, which is what ``dask.array.overlap`` provides.

The same sub-problem (input slice, explicit padding, output range) serves the forward
pass, the input gradient (whose per-block results overlap by the halo and are summed) and
the weight gradient (summed over blocks).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

__all__ = ["AxisPiece", "AxisPlan", "plan_axis", "out_size", "halo_of", "min_chunk_violations"]


def halo_of(kernel: int, dilation: int) -> int:
    """Pixels a block reads past its own input chunk: ``(kernel - 1) * dilation``."""
    return (kernel - 1) * dilation


def out_size(size: int, kernel: int, stride: int, dilation: int, pad_lo: int, pad_hi: int) -> int:
    """Output length of the whole axis (PyTorch's formula); < 1 when the kernel does not fit."""
    return (size + pad_lo + pad_hi - halo_of(kernel, dilation) - 1) // stride + 1


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class AxisPiece:
    """What one block computes along one axis.

    Attributes
    ----------
    out_start, out_stop : int
        Global output range ``[out_start, out_stop)`` (may be empty).
    window_start, window_stop : int
        Global input range the windows of those outputs span, padding included
        (may reach below 0 or past the image).
    in_start, in_stop : int
        ``window`` clipped to the image: the input pixels actually read (may be empty
        when every window lies in the padding).
    block_start, block_len : int
        The block's input region in the overlapped layout: its own chunk plus the halo,
        ``[block_start, block_start + block_len)``.
    """

    out_start: int
    out_stop: int
    window_start: int
    window_stop: int
    in_start: int
    in_stop: int
    block_start: int
    block_len: int

    @property
    def n_out(self) -> int:
        return self.out_stop - self.out_start

    @property
    def pads(self) -> Tuple[int, int]:
        """Explicit (before, after) zero padding of the sub-problem: nonzero only at the border."""
        return self.in_start - self.window_start, self.window_stop - self.in_stop

    @property
    def local(self) -> slice:
        """The input pixels read, relative to the block's region."""
        return slice(self.in_start - self.block_start, self.in_stop - self.block_start)

    @property
    def reads_image(self) -> bool:
        """False when the block has no outputs or all its windows lie in the padding."""
        return self.n_out > 0 and self.in_stop > self.in_start


@dataclass(frozen=True)
class AxisPlan:
    """The blocks of one chunked axis (see the module docstring).

    Attributes
    ----------
    size, out_size, halo : int
    in_chunks, out_chunks, block_lens : tuple of int
        Input chunks, output chunks (aligned to the stride) and the overlapped-layout
        block sizes (``in_chunks[j] + halo``, the last block without halo).
    pieces : tuple of AxisPiece
    """

    size: int
    out_size: int
    halo: int
    in_chunks: Tuple[int, ...]
    out_chunks: Tuple[int, ...]
    block_lens: Tuple[int, ...]
    pieces: Tuple[AxisPiece, ...]


def min_chunk_violations(chunks: Sequence[int], halo: int) -> Tuple[int, ...]:
    """Indices of the chunks too small to supply a one-sided halo of ``halo`` pixels.

    With a single chunk there is no halo to supply; otherwise every chunk but the first
    gives the halo of the chunk before it and must have at least ``halo`` pixels (the
    first must too, so that an output block is never longer than its neighbour's halo;
    dask's ``overlap`` asks the same of every chunk).
    """
    if len(chunks) <= 1 or halo == 0:
        return ()
    return tuple(j for j, c in enumerate(chunks) if c < halo)


def plan_axis(size: int, chunks: Sequence[int], kernel: int, stride: int, dilation: int,
              pad_lo: int, pad_hi: int) -> AxisPlan:
    """Plan the blocks of one axis.

    Parameters
    ----------
    size : int
        Input length.
    chunks : sequence of int
        Input chunk lengths, summing to ``size``; each >= the halo when there are several
        (see :func:`min_chunk_violations`).
    kernel, stride, dilation, pad_lo, pad_hi : int
        Of the convolution along this axis.

    Returns
    -------
    AxisPlan

    Raises
    ------
    ValueError
        When the chunks do not sum to ``size``, a chunk is too small for the halo, or the
        (dilated) kernel is larger than the padded axis.
    """
    chunks = tuple(int(c) for c in chunks)
    if sum(chunks) != size or any(c < 0 for c in chunks) or not chunks:
        raise ValueError(f"chunks {chunks} must be non-negative and sum to the axis length {size}")
    halo = halo_of(kernel, dilation)
    small = min_chunk_violations(chunks, halo)
    if small:
        raise ValueError(f"chunks {chunks}: chunk(s) {list(small)} are smaller than the halo of {halo} "
                         f"pixels ((kernel-1)*dilation = ({kernel}-1)*{dilation})")
    o = out_size(size, kernel, stride, dilation, pad_lo, pad_hi)
    if o < 1:
        raise ValueError(f"the kernel ({halo + 1} pixels with dilation) is larger than the padded axis "
                         f"({size} + {pad_lo} + {pad_hi})")
    starts = [0]
    for c in chunks:
        starts.append(starts[-1] + c)
    m = len(chunks)
    bounds = [0] + [min(max(_ceil_div(starts[j] + pad_lo, stride), 0), o) for j in range(1, m)] + [o]
    pieces = []
    for j in range(m):
        a, b = bounds[j], bounds[j + 1]
        block_len = chunks[j] + (halo if j < m - 1 else 0)
        if b > a:
            w0 = a * stride - pad_lo
            w1 = (b - 1) * stride - pad_lo + halo + 1
        else:
            w0 = w1 = starts[j]
        i0, i1 = min(max(w0, 0), size), min(max(w1, 0), size)
        if i1 <= i0:
            i0 = i1 = min(max(starts[j], 0), size)
        pieces.append(AxisPiece(a, b, w0, w1, i0, i1, starts[j], block_len))
    return AxisPlan(size, o, halo, chunks, tuple(bounds[j + 1] - bounds[j] for j in range(m)),
                    tuple(p.block_len for p in pieces), tuple(pieces))
