"""fastconv's own GEMM (csrc/gemm/) against numpy.matmul computed in float64.

Shapes straddle every blocking edge of the active micro-kernel and cache blocks (read from
``_core.gemm_blocking``): 1, MR-1, MR, MR+1, ..., MC+-1, KC+-1, NC+-1. Every case runs under
every ISA this machine supports, forced in turn with ``_core.set_isa`` (restored after).

Error bound, per element (not a fixed atol):
    |C - C_ref| <= c(k) * eps(dtype) * (|alpha| * (|A| @ |B|) + beta * |C_old| + |bias|)
with c(k) = 4 * sqrt(k) + 16: the rounding error of a length-k sum of random-sign products,
all roundings aligned, is about 0.5 * sqrt(k) * eps * (|A| @ |B|); one dropped or doubled
product (size ~ (|A| @ |B|) / k) is still 20x above the bound at k = 2049.
"""
from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

_core = pytest.importorskip("fastconv._core")
if not hasattr(_core, "gemm"):  # pragma: no cover - only while _core.pyx lacks the include
    pytest.skip("fastconv._core was built without _gemm.pxi", allow_module_level=True)

DTYPES = [np.float32, np.float64]
ISA_NAMES = {0: "generic", 1: "avx2", 2: "avx512"}


@pytest.fixture(params=[0, 1, 2], ids=lambda i: ISA_NAMES[i])
def isa(request):
    """Force each ISA this CPU supports in turn; restore the previous one afterwards."""
    wanted = request.param
    if wanted > _core.best_isa():
        pytest.skip(f"this CPU lacks {ISA_NAMES[wanted]}")
    old = _core.active_isa()
    _core.set_isa(wanted)
    assert _core.active_isa() == wanted
    try:
        yield wanted
    finally:
        _core.set_isa(old)


def _rng(*key):
    return np.random.default_rng([zlib.crc32(repr(k).encode()) for k in key])


def _operand(rng, rows, cols, dtype, trans, pad):
    """A (rows x cols) operand: a view of a larger array, transposed storage when ``trans``
    (so op(X) = stored.T), and a row pitch ``pad`` elements longer than needed."""
    if trans:
        store = rng.uniform(-1, 1, size=(cols, rows + pad)).astype(dtype)
        return store[:, :rows], store  # caller passes trans=True: op = view.T
    store = rng.uniform(-1, 1, size=(rows, cols + pad)).astype(dtype)
    return store[:, :cols], store


def _check(m, n, k, dtype, *, ta=False, tb=False, alpha=1.0, beta=0, bias=False, pad=0,
           nthreads=1, seed=0):
    rng = _rng(m, n, k, ta, tb, alpha, beta, bias, pad, seed, np.dtype(dtype).name)
    a, _ = _operand(rng, m, k, dtype, ta, pad)
    b, _ = _operand(rng, k, n, dtype, tb, pad)
    opa = a.T if ta else a
    opb = b.T if tb else b
    assert opa.shape == (m, k) and opb.shape == (k, n)
    # C: a row slice of a wider array; the columns past n hold a sentinel that must survive.
    sentinel = dtype(7.25)
    cstore = np.full((m, n + pad + 1), sentinel, dtype=dtype)
    c = cstore[:, :n]
    if beta:
        c[...] = rng.uniform(-1, 1, size=(m, n))
    else:
        c[...] = np.nan  # beta = 0: C must never be read
    c_old = c.astype(np.float64)
    vbias = rng.uniform(-1, 1, size=m).astype(dtype) if bias else None

    out = _core.gemm(a, b, c, trans_a=ta, trans_b=tb, alpha=alpha, beta=beta, bias=vbias,
                     nthreads=nthreads)
    assert out is c

    a64, b64 = opa.astype(np.float64), opb.astype(np.float64)
    ref = alpha * (a64 @ b64)
    mag = abs(alpha) * (np.abs(a64) @ np.abs(b64))
    if beta:
        ref += c_old
        mag += np.abs(c_old)
    if bias:
        ref += vbias.astype(np.float64)[:, None]
        mag += np.abs(vbias.astype(np.float64))[:, None]
    bound = (4 * math.sqrt(max(k, 1)) + 16) * np.finfo(dtype).eps * mag
    err = np.abs(c.astype(np.float64) - ref)
    bad = ~(err <= bound)  # also catches NaN
    assert not bad.any(), (
        f"m={m} n={n} k={k} ta={ta} tb={tb} alpha={alpha} beta={beta} bias={bias}: "
        f"{bad.sum()} bad elements, first at {np.argwhere(bad)[0]}, "
        f"err {err[bad].max()} > bound {bound[bad].min()}")
    assert np.all(cstore[:, n:] == sentinel), "GEMM wrote past the n columns of C"
    return c


def _edge_shapes(dtype):
    """(m, n, k) around every blocking edge, one dimension at a time, the others small but
    themselves off the micro-tile grid."""
    bl = _core.gemm_blocking(dtype)
    mr, nr, mc, kc, nc = bl["mr"], bl["nr"], bl["mc"], bl["kc"], bl["nc"]
    ms = [1, mr - 1, mr, mr + 1, 2 * mr + 3, mc - 1, mc, mc + 1]
    ns = [1, nr - 1, nr, nr + 1, nr + nr // 2, 3 * nr + 2, nc - 1, nc, nc + 1]
    ks = [0, 1, 2, kc - 1, kc, kc + 1, 2 * kc + 1]
    shapes = [(m, nr + 3, 7) for m in ms if m > 0]
    shapes += [(mr + 2, n, 9) for n in ns if n > 0]
    shapes += [(mr + 3, 2 * nr + 1, k) for k in ks]
    # corners: several edges at once
    shapes += [(mr - 1, nr - 1, kc + 1), (mc + 1, nr + 1, kc + 1), (2 * mr + 1, nc + 1, kc + 1),
               (1, 1, 1), (1, nc + 1, 3), (mc + mr + 1, 1, 5)]
    return sorted(set(s for s in shapes if min(s[0], s[1]) > 0))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_blocking_edges(isa, dtype):
    for i, (m, n, k) in enumerate(_edge_shapes(dtype)):
        # rotate through the options so that every one meets edge shapes
        _check(m, n, k, dtype, ta=bool(i & 1), tb=bool(i & 2), beta=(i >> 2) & 1,
               bias=bool(i % 3 == 0), alpha=(1.0, -0.5, 2.0)[i % 3], pad=(0, 3)[(i >> 1) & 1])


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("ta", [False, True], ids=["A", "At"])
@pytest.mark.parametrize("tb", [False, True], ids=["B", "Bt"])
def test_transpositions_beta_bias_strides(isa, dtype, ta, tb):
    bl = _core.gemm_blocking(dtype)
    m, n, k = 2 * bl["mr"] + 3, 2 * bl["nr"] + 5, bl["kc"] + 3
    for beta in (0, 1):
        for bias in (False, True):
            for pad in (0, 5):
                _check(m, n, k, dtype, ta=ta, tb=tb, beta=beta, bias=bias, pad=pad,
                       alpha=1.0 if pad else 0.75)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("beta", [0, 1])
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
def test_k_zero(isa, dtype, beta, bias):
    """k == 0: C = beta * C + bias (A and B are empty)."""
    for m, n in [(1, 1), (5, 37), (40, 3)]:
        _check(m, n, 0, dtype, beta=beta, bias=bias, pad=2)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_alpha_zero_ignores_inf(isa, dtype):
    """alpha == 0 (BLAS convention): A and B are not used, C = beta*C + bias."""
    a = np.full((9, 4), np.inf, dtype=dtype)
    b = np.ones((4, 11), dtype=dtype)
    c = np.ones((9, 11), dtype=dtype)
    bias = np.arange(9, dtype=dtype)
    _core.gemm(a, b, c, alpha=0.0, beta=1, bias=bias)
    assert np.array_equal(c, 1 + bias[:, None] + np.zeros((9, 11), dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_negative_and_zero_strides(isa, dtype):
    rng = _rng("neg", np.dtype(dtype).name)
    a = rng.uniform(-1, 1, size=(23, 40)).astype(dtype)[::-1, ::2]  # negative row stride
    b = np.broadcast_to(rng.uniform(-1, 1, size=(1, 35)).astype(dtype), (20, 35))  # zero stride
    c = _core.gemm(a, b)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    assert np.all(np.abs(c - ref) <= 64 * np.finfo(dtype).eps * (np.abs(a) @ np.abs(b)))


CONV_SHAPES = [
    # (m, n, k, ta, tb): the products of the im2col passes on N=64, C_in=32, 26x26, C_out=64, 3x3
    (64, 676, 288, False, False),   # fwd: W x cols
    (288, 676, 64, True, False),    # bwd_data: W^T x dY
    (64, 288, 676, False, True),    # bwd_weights: dY x cols^T
    (64, 676 * 8, 288, False, False),
    (700, 20, 50, False, False),    # tall and thin: rows split across threads
    (3, 5000, 40, True, True),      # short and wide: micro-panels split across threads
    (1030, 40, 72, True, False),    # a Dense layer's weight gradient x^T @ g: rows split
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_thread_layouts_follow_the_packing_cost(isa, dtype):
    """A tall, narrow product splits its rows between threads (with column groups every
    thread would pack all of A); a short, wide one splits columns (each thread packs only its
    own B columns, no barriers); the team-size test above covers both layouts."""
    rg = _core.gemm_row_groups
    assert rg(dtype, 9216, 32, 2) == 2
    assert rg(dtype, 1030, 40, 2) == 2
    assert rg(dtype, 700, 20, 2) == 2
    assert rg(dtype, 128, 9216, 2) == 1   # MNIST's Dense input gradient
    assert rg(dtype, 64, 676 * 8, 2) == 1
    assert rg(dtype, 3, 5000, 2) == 1
    assert rg(dtype, 9216, 32, 1) == 1
    assert rg(dtype, 9216, 32, 4) in (2, 4)
    if dtype == np.float32 or _core.gemm_blocking(dtype)["nr"] >= 24:
        # MNIST's Dense weight gradient; with 4- or 8-wide f64 tiles each row of A feeds 4x
        # the FMAs, its packing weighs less and the columns stay split
        assert rg(dtype, 9216, 128, 2) == 2
        assert rg(dtype, 1030, 136, 2) == 2


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_threads_bitwise_identical(isa, dtype):
    """Partition over M/N only, K never split: the same bits for 1 and 2 threads."""
    for i, (m, n, k, ta, tb) in enumerate(CONV_SHAPES):
        kw = dict(ta=ta, tb=tb, beta=i & 1, bias=bool(i % 3 == 0), alpha=1.0 if i % 2 else 0.5,
                  seed=7)
        c1 = _check(m, n, k, dtype, nthreads=1, **kw)
        c2 = _check(m, n, k, dtype, nthreads=2, **kw)
        assert np.array_equal(c1, c2), f"threads changed the result for {(m, n, k)}"
        if m * n * k < 2e7:  # odd team sizes too (other row/panel splits), on the small ones
            c3 = _check(m, n, k, dtype, nthreads=3, **kw)
            assert np.array_equal(c1, c3), f"3 threads changed the result for {(m, n, k)}"


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_edge_tiles_bitwise_match_interior(isa, dtype):
    """A partial tile (bottom or right edge of C, done through a temporary tile and, for the
    last columns, a narrower kernel variant) rounds exactly like the same elements inside
    full tiles of a larger product."""
    bl = _core.gemm_blocking(dtype)
    mr, nr = bl["mr"], bl["nr"]
    rng = _rng("edge-bitwise", np.dtype(dtype).name)
    k = 2 * bl["kc"] + 5  # several K blocks: beta and bias switch between them
    a = rng.uniform(-1, 1, size=(4 * mr, k)).astype(dtype)
    b = rng.uniform(-1, 1, size=(k, 4 * nr)).astype(dtype)
    bias = rng.uniform(-1, 1, size=4 * mr).astype(dtype)
    c0 = rng.uniform(-1, 1, size=(4 * mr, 4 * nr)).astype(dtype)
    full = _core.gemm(a, b, c0.copy(), alpha=0.75, beta=1, bias=bias)
    for m in (1, mr - 1, mr + 1, 2 * mr + 3):
        for n in (1, 3, nr // 2, nr // 2 + 3, nr - 1, nr + 1, nr + nr // 2, 2 * nr + 5):
            part = _core.gemm(a[:m], b[:, :n], c0[:m, :n].copy(), alpha=0.75, beta=1,
                              bias=bias[:m])
            assert np.array_equal(part, full[:m, :n]), f"edge tile differs at m={m} n={n}"


def test_isa_kernels_agree_to_rounding():
    """Every ISA's kernels compute the same product (to rounding) on one problem."""
    rng = _rng("agree")
    a = rng.uniform(-1, 1, size=(37, 301)).astype(np.float64)
    b = rng.uniform(-1, 1, size=(301, 45)).astype(np.float64)
    old = _core.active_isa()
    results = []
    try:
        for i in range(_core.best_isa() + 1):
            _core.set_isa(i)
            results.append(_core.gemm(a, b))
    finally:
        _core.set_isa(old)
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], rtol=0, atol=1e-12)


def test_blocking_reports_active_kernel(isa):
    for dtype in DTYPES:
        bl = _core.gemm_blocking(dtype)
        assert set(bl) == {"mr", "nr", "mc", "kc", "nc", "panel"} and bl["panel"] in ("l2", "l3")
        assert bl["mc"] % bl["mr"] == 0 and bl["nc"] % bl["nr"] == 0
        assert bl["kc"] > 0


def test_argument_errors():
    a = np.ones((3, 4), np.float32)
    with pytest.raises(TypeError):
        _core.gemm(a, np.ones((4, 2), np.float64))
    with pytest.raises(TypeError):
        _core.gemm(a.astype(np.int32), np.ones((4, 2), np.int32))
    with pytest.raises(ValueError):
        _core.gemm(a, np.ones((5, 2), np.float32))
    with pytest.raises(ValueError):
        _core.gemm(a, np.ones((4, 2), np.float32), beta=1)  # beta=1 needs c
    with pytest.raises(ValueError):
        _core.gemm(a, np.ones((4, 2), np.float32), np.ones((2, 3), np.float32).T)  # col stride
    with pytest.raises(ValueError):
        _core.gemm(a, np.ones((4, 2), np.float32), bias=np.ones(4, np.float32))


# ----------------------------------------------------------------------------- blocks per CPU
_BLOCKS_CHILD = """
import json, numpy as np
from fastconv import _core
out = {d: _core.gemm_blocking(d) for d in ("float32", "float64")}
rng = np.random.default_rng(0)
for d in ("float32", "float64"):
    a = rng.standard_normal((203, 517)).astype(d); b = rng.standard_normal((517, 331)).astype(d)
    c = _core.gemm(a, b, nthreads=2)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    out[d]["err"] = float(np.abs(c - ref).max() / (np.abs(a).astype(np.float64) @ np.abs(b)).max())
print(json.dumps(out))
"""


def _blocks_in_child(**env):
    import json
    import subprocess
    import sys

    import helpers as H

    proc = subprocess.run([sys.executable, "-c", _BLOCKS_CHILD], capture_output=True, text=True,
                          env=H.child_env(**env), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_blocks_of_the_reference_caches_are_the_tuned_table():
    """With Zen 4's caches, the derived blocks are the table measured best there."""
    got = _blocks_in_child(FASTCONV_CPU_L1D="32K", FASTCONV_CPU_L2="1M", FASTCONV_CPU_L3="32M",
                           FASTCONV_GEMM_PANEL="l3")
    table = {0: {"float32": (256, 384, 2048), "float64": (256, 384, 2048)},    # generic 4x8 / 4x4
             1: {"float32": (240, 384, 2048), "float64": (120, 256, 2048)},    # AVX2 6x16 / 6x8
             2: {"float32": (256, 512, 2048), "float64": (256, 384, 2016)}}    # AVX-512 8x32 / 8x24
    for d in ("float32", "float64"):
        assert (got[d]["mc"], got[d]["kc"], got[d]["nc"]) == table[_core.active_isa()][d], (d, got[d])


def test_blocks_grow_with_the_caches_and_stay_correct():
    small = _blocks_in_child(FASTCONV_CPU_L1D="32K", FASTCONV_CPU_L2="1M", FASTCONV_CPU_L3="32M",
                             FASTCONV_GEMM_PANEL="l3")
    big = _blocks_in_child(FASTCONV_CPU_L1D="48K", FASTCONV_CPU_L2="2M", FASTCONV_CPU_L3="64M",
                           FASTCONV_GEMM_PANEL="l3")
    for d, eps in (("float32", 2.0 ** -23), ("float64", 2.0 ** -52)):
        assert big[d]["kc"] == small[d]["kc"] * 3 // 2 // 32 * 32
        assert big[d]["mc"] >= small[d]["mc"] and big[d]["nc"] >= small[d]["nc"]
        assert big[d]["kc"] % 32 == 0 and big[d]["mc"] % big[d]["mr"] == 0 and big[d]["nc"] % (2 * big[d]["nr"]) == 0
        assert big[d]["err"] < 64 * eps and small[d]["err"] < 64 * eps


def test_l2_panel_placement_fits_the_panel_in_half_the_l2_and_stays_correct():
    """The placement chosen for mesh-L3 CPUs (GenuineIntel, or forced): KC x NC x size <=
    L2 / 2 with NC = 1024 (f32) / 480 (f64) columns, KC a multiple of 32 >= 128."""
    for l2, kc32 in (("2M", 256), ("1M", 128)):
        got = _blocks_in_child(FASTCONV_CPU_L1D="48K", FASTCONV_CPU_L2=l2, FASTCONV_CPU_L3="105M",
                               FASTCONV_GEMM_PANEL="l2")
        l2b = int(l2[:-1]) << 20
        for d, es, eps in (("float32", 4, 2.0 ** -23), ("float64", 8, 2.0 ** -52)):
            b = got[d]
            assert b["panel"] == "l2"
            assert b["kc"] * b["nc"] * es <= l2b // 2 or b["kc"] == 128, (d, b)
            assert b["kc"] % 32 == 0 and b["kc"] >= 128 and b["nc"] % (2 * b["nr"]) == 0
            assert b["err"] < 64 * eps
        if _core.active_isa() == 2:  # AVX-512: 8x32 f32, 8x24 f64
            assert (got["float32"]["kc"], got["float32"]["nc"]) == (kc32, 1024)
            assert got["float64"]["nc"] == 480


def test_blocks_override_from_the_environment():
    got = _blocks_in_child(FASTCONV_GEMM_BLOCKS="kc=40,mc=17,nc=100")
    for d in ("float32", "float64"):
        b = got[d]
        assert b["kc"] == 40
        assert b["mc"] == -(-17 // b["mr"]) * b["mr"]
        assert b["nc"] == -(-100 // (2 * b["nr"])) * 2 * b["nr"]
        assert b["err"] < 64 * (2.0 ** -23 if d == "float32" else 2.0 ** -52)
