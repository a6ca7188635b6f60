"""The index arithmetic of spatially chunked convolution (fastconv.dask._halo), without dask.

Properties of the plan on hypothesis-drawn axes, and the plan put to work on 1-D
signals in NumPy: per-block forward results concatenated, and per-block input-gradient
results with their halos folded into the next chunk, equal the whole-axis computation.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastconv._spec import make_spec
from fastconv.dask._halo import halo_of, min_chunk_violations, out_size, plan_axis


@st.composite
def axis_problems(draw):
    kernel = draw(st.integers(1, 5))
    dilation = draw(st.integers(1, 3))
    stride = draw(st.integers(1, 4))
    halo = halo_of(kernel, dilation)
    pad_lo, pad_hi = draw(st.integers(0, 6)), draw(st.integers(0, 6))
    n_chunks = draw(st.integers(1, 5))
    lo = max(halo, 1) if n_chunks > 1 else 1
    chunks = [draw(st.integers(lo, lo + 9)) for _ in range(n_chunks)]
    size = sum(chunks)
    if out_size(size, kernel, stride, dilation, pad_lo, pad_hi) < 1:
        pad_hi += halo + 1  # make the kernel fit
    return size, tuple(chunks), kernel, stride, dilation, pad_lo, pad_hi


def _correlate_1d(signal, taps, stride, dilation, pad_lo, pad_hi):
    """The definition: y[i] = sum_t taps[t] * padded[i*stride + t*dilation]."""
    padded = np.concatenate([np.zeros(pad_lo), signal, np.zeros(pad_hi)])
    n_out = out_size(len(signal), len(taps), stride, dilation, pad_lo, pad_hi)
    idx = np.arange(n_out)[:, None] * stride + np.arange(len(taps))[None, :] * dilation
    return padded[idx] @ taps


def _input_grad_1d(gy, taps, size, stride, dilation, pad_lo, pad_hi):
    """Transpose of _correlate_1d: gx[r] = sum over (i, t) reading r of gy[i] * taps[t]."""
    g = np.zeros(size + pad_lo + pad_hi)
    for i, v in enumerate(gy):
        for t, w in enumerate(taps):
            g[i * stride + t * dilation] += v * w
    return g[pad_lo:pad_lo + size]


@settings(max_examples=200)
@given(axis_problems())
def test_plan_partitions_the_output_and_matches_the_spec(problem):
    size, chunks, k, s, d, lo, hi = problem
    plan = plan_axis(size, chunks, k, s, d, lo, hi)
    spec = make_spec((1, 1, size, 1), (1, 1, k, 1), (s, 1), ((lo, hi), (0, 0)), (d, 1), 1, np.float64)
    assert plan.out_size == spec.oh
    assert sum(plan.out_chunks) == plan.out_size and min(plan.out_chunks) >= 0
    assert plan.pieces[0].out_start == 0 and plan.pieces[-1].out_stop == plan.out_size
    starts = np.concatenate([[0], np.cumsum(chunks)[:-1]])
    for j, p in enumerate(plan.pieces):
        if j:
            assert p.out_start == plan.pieces[j - 1].out_stop
        assert p.block_start == starts[j]
        assert p.block_len == chunks[j] + (plan.halo if j < len(chunks) - 1 else 0)
        assert p.block_start + p.block_len <= size
        local = p.local
        assert 0 <= local.start <= local.stop <= p.block_len
        if p.n_out:
            # aligned to the stride: the windows start in this block's own chunk (or the padding)
            assert p.window_start == p.out_start * s - lo
            assert j == 0 or starts[j] <= p.window_start
            assert p.window_stop - p.window_start == (p.n_out - 1) * s + plan.halo + 1
        if p.reads_image:
            before, after = p.pads
            assert before >= 0 and after >= 0
            assert before == 0 or p.in_start == 0          # padding only at the image border
            assert after == 0 or p.in_stop == size
            assert out_size(p.in_stop - p.in_start, k, s, d, before, after) == p.n_out


@settings(max_examples=150)
@given(axis_problems(), st.integers(0, 2**32 - 1))
def test_plan_reproduces_the_1d_forward_and_input_gradient(problem, seed):
    size, chunks, k, s, d, lo, hi = problem
    rng = np.random.default_rng(seed)
    signal, taps = rng.standard_normal(size), rng.standard_normal(k)
    plan = plan_axis(size, chunks, k, s, d, lo, hi)
    whole = _correlate_1d(signal, taps, s, d, lo, hi)
    gy = rng.standard_normal(len(whole))
    gx_whole = _input_grad_1d(gy, taps, size, s, d, lo, hi)

    pieces, folded, carry = [], np.zeros(size), None
    for p in plan.pieces:
        block = signal[p.block_start:p.block_start + p.block_len]  # own chunk + halo (overlap)
        z = np.zeros(p.block_len)
        if p.reads_image:
            sub = block[p.local]
            pieces.append(_correlate_1d(sub, taps, s, d, *p.pads))
            z[p.local] = _input_grad_1d(gy[p.out_start:p.out_stop], taps, len(sub), s, d, *p.pads)
        else:  # every window in the padding
            pieces.append(np.zeros(p.n_out))
        folded[p.block_start:p.block_start + p.block_len] += z  # the halo lands in the next chunk
    np.testing.assert_allclose(np.concatenate(pieces), whole, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(folded, gx_whole, rtol=1e-12, atol=1e-12)


def test_out_chunks_are_input_boundaries_over_the_stride():
    plan = plan_axis(21, (6, 7, 8), kernel=3, stride=2, dilation=1, pad_lo=1, pad_hi=1)
    # boundaries 6, 13 -> ceil((6+1)/2) = 4, ceil((13+1)/2) = 7; out_size 11
    assert plan.out_size == 11 and plan.out_chunks == (4, 3, 4)
    assert plan.pieces[0].pads == (1, 0) and plan.pieces[-1].pads == (0, 1)
    assert plan.pieces[1].pads == (0, 0)


def test_windows_wholly_in_the_padding_read_nothing():
    plan = plan_axis(4, (4,), kernel=1, stride=1, dilation=1, pad_lo=3, pad_hi=0)
    (p,) = plan.pieces
    assert plan.out_size == 7 and p.reads_image and p.pads == (3, 0)
    plan = plan_axis(6, (1, 5), kernel=1, stride=5, dilation=1, pad_lo=4, pad_hi=0)
    # output 0 reads only padding (window [-4, -3)), output 1 reads pixel 1
    assert plan.out_chunks == (1, 1) and not plan.pieces[0].reads_image and plan.pieces[1].reads_image


def test_min_chunk_violations():
    assert min_chunk_violations((5, 1, 5), 2) == (1,)
    assert min_chunk_violations((1,), 4) == ()            # one chunk: no halo to supply
    assert min_chunk_violations((1, 1), 0) == ()
    assert min_chunk_violations((5, 5, 1), 2) == (2,)


@pytest.mark.parametrize("args, message", [
    ((10, (3, 3), 3, 1, 1, 0, 0), "sum to"),
    ((10, (9, 1), 3, 1, 1, 0, 0), "smaller than the halo"),
    ((2, (2,), 5, 1, 1, 0, 0), "larger than the padded axis"),
])
def test_plan_errors(args, message):
    with pytest.raises(ValueError, match=message):
        plan_axis(*args)


def test_halo_module_and_a_clear_error_without_dask():
    """With dask unimportable, the index arithmetic still loads and the public names say what to install."""
    import os
    import subprocess
    import sys
    code = (
        "import sys; sys.modules['dask'] = None; sys.modules['dask.array'] = None\n"
        "import fastconv, fastconv.dask\n"
        "from fastconv.dask._halo import plan_axis; plan_axis(5, (5,), 3, 1, 1, 1, 1)\n"
        "try:\n    fastconv.dask.conv2d\nexcept ImportError as e:\n    assert 'fastconv[dask]' in str(e), e\n"
        "else:\n    raise SystemExit('no ImportError')\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
