"""Hardening: sizes at and past the limits, and reference counts (issue 6, item 5).

* Problems whose output or workspace would exceed any machine's memory raise MemoryError
  before anything is allocated (no partial allocation shows in RSS or tracemalloc), with
  the size in the message. The huge problems are built through ``conv2d_input_grad`` /
  ``conv2d_weight_grad`` (whose ``*_shape`` arguments cost nothing) or from tiny arrays
  with huge padding, so no huge array is ever created. Sizes are >= 2**49 bytes, beyond
  the 47-bit user address space, so the refusal does not depend on the kernel's
  overcommit policy.
* Shapes whose size products overflow 64 bits are refused with MemoryError/ValueError.
* The workspace size query never overflows: for any shape ``make_spec`` accepts it returns
  at least what the kernels will touch, or raises MemoryError (run in a child process: an
  overflow has crashed it with SIGFPE).
* Byte offsets past 2**31: a float32 batch of more than 2**29 elements (2.1 GB) with a 1x1
  kernel, both algorithms, every output checked. Marked ``slow``; it takes about 10 s and
  < 5 GiB (skipped when the machine has less than 6.5 GiB available).
* ``sys.getrefcount`` of every argument is unchanged after calls (successful and failing),
  and results hold no extra references.
"""
from __future__ import annotations

import gc
import os
import re
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastconv
from fastconv import functional

GIB = 1 << 30


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - not Linux
        return 0


def _mem_available() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover
        pass
    return 0


def _f32(*shape):
    return np.ones(shape, np.float32)


# ----------------------------------------------------------------------------- MemoryError

# name -> a call that must raise MemoryError; each would need >= 2**49 bytes.
HUGE_CALLS = {
    # input gradient of 2**48 float32 elements (1 PiB); grad_output is one pixel
    "input_grad output": lambda algo: fastconv.conv2d_input_grad(
        _f32(1, 1, 1, 1), _f32(1, 1, 1, 1), (1, 1, 2**24, 2**24), stride=2**24, algorithm=algo),
    # weight gradient of 2**20 x 2**28 elements from a 1-pixel input padded to 2**14 + 1
    "weight_grad output": lambda algo: fastconv.conv2d_weight_grad(
        _f32(1, 2**20, 2, 2), _f32(1, 1, 1, 1), (2**20, 1, 2**14, 2**14), padding=2**13, algorithm=algo),
    # forward output of 2**10 x (2**19 + 1)**2 elements from a 1-pixel input
    "fwd output": lambda algo: fastconv.conv2d(
        _f32(1, 1, 1, 1), _f32(2**10, 1, 1, 1), padding=2**18, algorithm=algo),
    # grad_x of 2**50 elements, 4 output channels
    "input_grad output, channels": lambda algo: fastconv.conv2d_input_grad(
        _f32(1, 4, 1, 1), _f32(4, 1, 1, 1), (1, 1, 2**25, 2**25), stride=2**25, algorithm=algo),
    # weight gradient of 2**23 floats, but its workspace (a row of OW partial sums per tap
    # and thread, or one im2col row of kw x OW) is 2**48+ bytes
    "weight_grad workspace": lambda algo: fastconv.conv2d_weight_grad(
        np.ones((1, 1, 1, 2**23 + 1), np.float32), np.ones((1, 1, 1, 2**24), np.float32),
        (1, 1, 1, 2**23), algorithm=algo),
}


@pytest.mark.parametrize("algo", ["direct", "im2col", "auto"])
@pytest.mark.parametrize("name", list(HUGE_CALLS))
def test_memory_error_before_allocating(name, algo):
    gc.collect()
    rss0 = _rss()
    with pytest.raises(MemoryError) as info:
        HUGE_CALLS[name](algo)
    msg = str(info.value)
    # the size, in elements or bytes, is in the message
    assert re.search(r"\d", msg) and re.search(r"elements|[KMGTPE]i?B|bytes", msg), msg
    # nothing big was allocated and touched on the way to the error (tracemalloc cannot
    # tell: numpy reports even its failed allocations to it)
    gc.collect()
    assert _rss() - rss0 < 256 << 20, f"{name}: RSS grew by {(_rss() - rss0) / 2**20:.0f} MiB"


# name -> (call, names the message may use); every size product here overflows int64
OVERFLOWING = {
    "input_shape N*H": (lambda: fastconv.conv2d_input_grad(_f32(1, 1, 1, 1), _f32(1, 1, 1, 1), (2**40, 1, 2**40, 1)),
                        ["input_shape"]),
    "input_shape beyond int64": (lambda: fastconv.conv2d_input_grad(_f32(1, 1, 1, 1), _f32(1, 1, 1, 1), (2**64, 1, 1, 1)),
                                 ["input_shape"]),
    "input_shape 2**100": (lambda: fastconv.conv2d_input_grad(_f32(1, 1, 1, 1), _f32(1, 1, 1, 1), (1, 1, 2**100, 1)),
                           ["input_shape"]),
    "weight_shape C_out": (lambda: fastconv.conv2d_weight_grad(_f32(1, 1, 1, 1), _f32(1, 1, 1, 1), (2**62, 1, 1, 1)),
                           ["weight_shape"]),
    "weight_shape beyond int64": (lambda: fastconv.conv2d_weight_grad(_f32(1, 1, 1, 1), _f32(1, 1, 1, 1), (2**64, 1, 1, 1)),
                                  ["weight_shape"]),
    "padding": (lambda: fastconv.conv2d(_f32(1, 1, 1, 1), _f32(1, 1, 1, 1), padding=2**62), ["padding", "output"]),
    "padding pair": (lambda: fastconv.conv2d(_f32(1, 1, 1, 1), _f32(1, 1, 1, 1), padding=(2**31, 2**31)),
                     ["padding", "output", "padded input"]),
    "asymmetric padding": (lambda: fastconv.conv2d(_f32(1, 1, 1, 1), _f32(1, 1, 1, 1), padding=((0, 2**63), (0, 0))),
                           ["padding", "output", "padded input"]),
    "stride 2**63": (lambda: fastconv.conv2d(_f32(1, 1, 2, 2), _f32(1, 1, 1, 1), stride=2**63), ["stride"]),
    "stride 2**64": (lambda: fastconv.conv2d(_f32(1, 1, 2, 2), _f32(1, 1, 1, 1), stride=(1, 2**64)), ["stride"]),
    "dilation 2**63": (lambda: fastconv.conv2d(_f32(1, 1, 2, 2), _f32(1, 1, 1, 1), dilation=2**63), ["dilation"]),
    "groups 2**64": (lambda: fastconv.conv2d(_f32(1, 1, 2, 2), _f32(1, 1, 1, 1), groups=2**64), ["groups"]),
}


@pytest.mark.parametrize("name", list(OVERFLOWING))
def test_overflowing_sizes_refused(name):
    """Refused with ValueError or MemoryError naming the argument (a stride or dilation of
    2**63 and a 1x1 kernel would also be a valid one-pixel problem, so a right result is
    accepted for those)."""
    call, names = OVERFLOWING[name]
    try:
        got = call()
    except (ValueError, MemoryError) as exc:
        msg = str(exc)
        assert any(re.search(r"(?<![A-Za-z_])" + re.escape(n) + r"(?![A-Za-z_])", msg) for n in names), \
            f"{type(exc).__name__} does not name {names}: {msg}"
        return
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"{name}: raised {type(exc).__name__}: {exc} (expected ValueError/MemoryError naming {names})")
    assert name.startswith(("stride", "dilation")), f"{name}: no error, got {got!r}"
    np.testing.assert_array_equal(got, np.ones((1, 1, 1, 1) if "stride" in name else (1, 1, 2, 2), np.float32))


def test_memory_error_leaves_fastconv_usable():
    with pytest.raises(MemoryError):
        HUGE_CALLS["weight_grad workspace"]("direct")
    x, w = _f32(1, 2, 5, 5), _f32(3, 2, 3, 3)
    np.testing.assert_array_equal(fastconv.conv2d(x, w), np.full((1, 3, 3, 3), 18, np.float32))


# ----------------------------------------------------------------------------- size queries

_QUERY_CHILD = textwrap.dedent(r"""
    import sys
    import numpy as np
    from fastconv import functional as F
    # (x shape, weight shape, padding, dtype): accepted by make_spec, with im2col column
    # rows of K * OW * itemsize >= 2**61 bytes.
    cases = [
        ((1, 2**31, 1, 1), (1, 2**31, 1, 1), ((0, 0), (2**30, 2**30 - 1)), np.float32),
        ((1, 2**30, 1, 1), (1, 2**30, 1, 1), ((0, 0), (2**30, 2**30 - 1)), np.float64),
        ((1, 2**30, 1, 1), (1, 2**30, 1, 1), ((0, 0), (2**30, 2**30)), np.float32),
        ((1, 2**20, 1, 1), (1, 2**20, 1, 1), ((0, 0), (2**40, 2**40)), np.float32),
        ((1, 64, 1, 1), (1, 64, 1, 2**20), ((0, 0), (2**35, 2**35)), np.float64),
    ]
    bad = []
    for xs, ws, pad, dt in cases:
        try:
            spec = F.make_spec(xs, ws, 1, pad, 1, 1, np.dtype(dt))
        except MemoryError:
            continue
        K = spec.c_in // spec.groups * spec.kh * spec.kw
        need = K * spec.ow * np.dtype(dt).itemsize  # one lowered row of the column matrix
        for p in (0, 1, 2):
            print("query", xs, ws, pad, np.dtype(dt).name, "pass", p, flush=True)
            try:
                got = F.workspace_bytes(spec, p, "im2col")
            except MemoryError:
                continue
            if got < need:
                bad.append(f"x {xs} w {ws} padding {pad} {np.dtype(dt).name} pass {p}: "
                           f"workspace_bytes = {got} < {need} needed for one im2col row")
    print("\n".join(bad) if bad else "OK", flush=True)
    sys.exit(1 if bad else 0)
""")


def test_workspace_size_query_never_overflows():
    """For shapes make_spec accepts, the im2col workspace size is right or a MemoryError.

    Before the fix, K * OW * itemsize overflowed int64 in the C plan: the size came back
    wrapped (a workspace far too small: heap overflow) or the plan divided by zero
    (SIGFPE, which kills the process). Reproducer, with calloc'd (never touched) arrays:
    ``conv2d(np.zeros((1, 2**31, 1, 1), np.float32), np.zeros((1, 2**31, 1, 1), np.float32),
    padding=((0, 0), (2**30, 2**30 - 1)), algorithm="im2col")``.
    """
    env = dict(os.environ)
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([pkg_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    proc = subprocess.run([sys.executable, "-c", _QUERY_CHILD], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=300)
    out = proc.stdout.decode(errors="replace")
    if proc.returncode < 0 or proc.returncode >= 128:
        last = [ln for ln in out.splitlines() if ln.startswith("query")][-1:]
        pytest.fail(f"the workspace size query killed the process (signal {-proc.returncode if proc.returncode < 0 else proc.returncode - 128}) at {last}:\n{out[-3000:]}",
                    pytrace=False)
    assert proc.returncode == 0, out[-3000:]


@pytest.mark.parametrize("xs, ws, dilation", [((1, 1, 4, 4), (1, 1, 3, 3), 2**24),
                                               ((1, 1, 1, 4), (1, 1, 1, 3), 2**31)])
def test_workspace_bounded_by_the_data(xs, ws, dilation):
    """A few pixels with a huge dilation and "same" padding: only the centre tap reads the
    image (y = w[centre] * x), and no algorithm may need a workspace that grows with the
    dilation (the zero padding is not data). The workspace size is checked before anything
    is computed, so a blow-up fails the test instead of exhausting the machine's memory
    (the second case asked for 24 GiB and was killed by the OOM killer)."""
    x = np.arange(1, int(np.prod(xs)) + 1, dtype=np.float32).reshape(xs)
    w = np.arange(1, int(np.prod(ws)) + 1, dtype=np.float32).reshape(ws)
    centre = w[0, 0, ws[2] // 2, ws[3] // 2]
    spec = functional.make_spec(xs, ws, 1, "same", dilation, 1, np.dtype(np.float32))
    big = {}
    for algo in ("direct", "im2col", "auto"):
        for p, name in ((functional.FWD, "fwd"), (functional.BWD_DATA, "bwd_data"),
                        (functional.BWD_WEIGHTS, "bwd_weights")):
            nbytes = functional.workspace_bytes(spec, p, algo)
            if nbytes > 64 << 20:
                big[f"{name}/{algo}"] = nbytes
    assert not big, (f"workspace for x {xs}, weight {ws}, dilation {dilation}, 'same' (bytes): {big}; "
                     "it grows with the dilation, not the data")
    for algo in ("direct", "im2col", "auto"):
        np.testing.assert_array_equal(fastconv.conv2d(x, w, padding="same", dilation=dilation, algorithm=algo),
                                      centre * x)
        gx, gw, _ = fastconv.conv2d_backward(np.ones_like(x), x, w, padding="same", dilation=dilation,
                                             algorithm=algo)
        np.testing.assert_array_equal(gx, np.full_like(x, centre))
        expect_gw = np.zeros_like(w)
        expect_gw[0, 0, ws[2] // 2, ws[3] // 2] = x.sum()
        np.testing.assert_array_equal(gw, expect_gw)


def test_thread_count_beyond_c_int():
    """set_num_threads(n) with n past a C int: refused (ValueError naming n) or harmless."""
    x, w = _f32(1, 2, 5, 5), _f32(3, 2, 3, 3)
    try:
        fastconv.set_num_threads(2**31)  # conftest's autouse fixture restores the setting
    except ValueError as exc:
        assert re.search(r"\bn\b|thread", str(exc)), str(exc)
        return
    try:
        y = fastconv.conv2d(x, w)
    except (ValueError, MemoryError) as exc:
        assert re.search(r"thread", str(exc)), str(exc)
        return
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"after set_num_threads(2**31), conv2d raises {type(exc).__name__}: {exc}")
    np.testing.assert_array_equal(y, np.full((1, 3, 3, 3), 18, np.float32))


# ----------------------------------------------------------------------------- > 2**31 bytes

@pytest.mark.slow
@pytest.mark.skipif(_mem_available() < 6.5 * GIB, reason="needs 6.5 GiB of available memory")
@pytest.mark.skipif(bool(os.environ.get("FASTCONV_UNDER_SANITIZER")) and not os.environ.get("FASTCONV_BIG_UNDER_SANITIZER"),
                    reason="slow under ASan (set FASTCONV_BIG_UNDER_SANITIZER=1 to run it)")
def test_byte_offsets_past_2_31():
    """A float32 batch of 2**29 + 20480 elements (2.15 GB, > 2**31 bytes): y = 2 x + 1 with
    a 1x1 kernel, every output compared exactly (all values are small integers)."""
    n = 2**29 // 4096 + 5
    t0 = time.perf_counter()
    x = np.empty((n, 1, 64, 64), np.float32)
    base = (np.arange(4096, dtype=np.float32) % 61) * 100  # < 2**24: exact in float32
    # ... plus a per-image offset, so an image read from the wrong place shows
    np.add(base[None, :], (np.arange(n, dtype=np.float32) % 97)[:, None], out=x.reshape(n, 4096))
    assert x.nbytes > 2**31
    w = np.full((1, 1, 1, 1), 2, np.float32)
    b = np.ones(1, np.float32)
    y = np.empty(x.shape, np.float32)
    step = 8192
    expect = np.empty((step, 1, 64, 64), np.float32)  # reused: no page faults per chunk
    for algo in ("direct", "im2col"):
        y.fill(np.nan)
        got = fastconv.conv2d(x, w, b, algorithm=algo, out=y)
        assert got is y
        for n0 in range(0, n, step):
            xs, ys = x[n0:n0 + step], y[n0:n0 + step]
            e = expect[: len(xs)]
            np.multiply(xs, 2, out=e)
            e += 1
            if not np.array_equal(ys, e):
                bad = np.argwhere(ys != e)[0]
                i = (n0 + int(bad[0]), *(int(v) for v in bad[1:]))
                pytest.fail(f"{algo}: y{i} = {y[i]}, expected {2 * x[i] + 1} "
                            f"(byte offset {int(np.ravel_multi_index(i, x.shape)) * 4})")
    print(f"2**31-byte test: {time.perf_counter() - t0:.1f} s")


# ----------------------------------------------------------------------------- refcounts

def _refcounts(objs):
    return [sys.getrefcount(o) for o in objs]


def test_reference_counts_unchanged():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 7, 6)).astype(np.float32)
    w = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    gy = rng.standard_normal((2, 6, 7, 6)).astype(np.float32)
    x_odd = x.astype(">f4")[:, :, ::-1]         # byte-swapped, negative strides: copied
    w64 = w.astype(np.float64)                  # promotes the call to float64
    out = np.empty((2, 6, 7, 6), np.float32)
    objs = [x, w, b, gy, x_odd, w64, out]
    opts = dict(stride=1, padding="same", dilation=1, groups=2)
    calls = []
    for algo in ("direct", "im2col", "auto"):
        calls += [
            lambda a=algo: fastconv.conv2d(x, w, b, algorithm=a, **opts),
            lambda a=algo: fastconv.conv2d(x, w, b, algorithm=a, out=out, **opts),
            lambda a=algo: fastconv.conv2d(x_odd, w64, b, algorithm=a, **opts),
            lambda a=algo: fastconv.conv2d_backward(gy, x, w, algorithm=a, **opts),
            lambda a=algo: fastconv.conv2d_backward(gy, x_odd, w, bias=False, algorithm=a, **opts),
            lambda a=algo: fastconv.conv2d_input_grad(gy, w, x.shape, algorithm=a, **opts),
            lambda a=algo: fastconv.conv2d_weight_grad(gy, x, w.shape, algorithm=a, **opts),
        ]

    def failing(fn):
        def call():
            with pytest.raises((ValueError, TypeError, MemoryError)):
                fn()
        return call

    calls += [
        failing(lambda: fastconv.conv2d(x, w, b, groups=3)),
        failing(lambda: fastconv.conv2d(x, w, b, out=out[:1], **opts)),
        failing(lambda: fastconv.conv2d(x, w, b, out=x, **opts)),
        failing(lambda: fastconv.conv2d_backward(gy[:, :3], x, w, **opts)),
        failing(lambda: fastconv.conv2d_input_grad(gy, w, (2**62, 4, 7, 6), **opts)),
        failing(lambda: fastconv.conv2d(x, w, b, algorithm="fft")),
    ]
    for fn in calls:  # warm-up: caches and interned objects settle
        fn()
    before = _refcounts(objs)
    for _ in range(20):
        for fn in calls:
            fn()
    gc.collect()
    after = _refcounts(objs)
    names = ["x", "w", "b", "gy", "x_odd", "w64", "out"]
    changed = {n: (a, b_) for n, a, b_ in zip(names, before, after) if a != b_}
    assert not changed, f"reference counts changed (before, after): {changed}"

    # results hold no hidden references (2 = the name + getrefcount's argument)
    y = fastconv.conv2d(x, w, b, **opts)
    assert sys.getrefcount(y) == 2
    for g in fastconv.conv2d_backward(gy, x, w, **opts):
        assert sys.getrefcount(g) <= 3  # the loop variable, the tuple being iterated, the argument
    gx, gw, gb = fastconv.conv2d_backward(gy, x, w, **opts)
    assert sys.getrefcount(gx) == 2 and sys.getrefcount(gw) == 2 and sys.getrefcount(gb) == 2
    assert y.base is None or sys.getrefcount(y.base) >= 2
