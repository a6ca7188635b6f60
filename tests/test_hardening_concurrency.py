"""Hardening: many Python threads calling fastconv at once (issue 6, item 4).

docs/architecture.md: the GIL is released for the whole C call and concurrent calls from Python
threads are safe; the same inputs and the same thread count give bitwise the same output.

* 8 Python threads run 8 different problems (shapes, dtypes, both algorithms and "auto",
  forward and backward) at the same moment, many times each; every result must be bitwise
  equal to the same call made alone with the same thread count, which itself matches
  ``fastconv.reference`` within the error bound of docs/architecture.md.
* 8 threads share the very same (read-only) input arrays.
* ``set_num_threads`` (and the ``threads()`` context manager) changed from one thread while
  the others compute: every result stays correct, and bitwise equal to the alone result of
  one of the thread counts in play (each call reads the setting once).

Sized for CI: each test runs in a few seconds on 2 cores (problems are big enough that the
C driver really opens an OpenMP team: >= 32768 multiply-adds).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest

import fastconv
from fastconv import reference as ref

N_THREADS = 8
ITERATIONS = 60
JOIN_TIMEOUT = 300.0

# name, dtype, algorithm, pass, x shape, weight shape, stride, padding, dilation, groups
CONFIGS: List[Tuple[Any, ...]] = [
    ("f32 direct fwd 3x3", np.float32, "direct", "fwd", (2, 8, 14, 14), (16, 8, 3, 3), 1, 1, 1, 1),
    ("f64 im2col fwd stride 2 same", np.float64, "im2col", "fwd", (3, 6, 15, 13), (12, 6, 3, 3), 2, "same", 1, 1),
    ("f32 im2col backward", np.float32, "im2col", "backward", (2, 8, 12, 12), (8, 8, 3, 3), 1, 1, 1, 1),
    ("f64 direct backward dilation groups", np.float64, "direct", "backward", (2, 4, 12, 11), (8, 2, 3, 3), 1, 2, 2, 2),
    ("f32 auto fwd 1x1", np.float32, "auto", "fwd", (4, 16, 9, 9), (32, 16, 1, 1), 1, 0, 1, 1),
    ("f64 im2col backward depthwise", np.float64, "im2col", "backward", (2, 8, 20, 20), (8, 1, 3, 3), 1, 1, 1, 8),
    ("f32 direct backward asymmetric", np.float32, "direct", "backward", (3, 4, 20, 18), (6, 4, 3, 3), 2, ((0, 1), (1, 0)), 1, 1),
    ("f64 auto backward 5x5", np.float64, "auto", "backward", (2, 3, 16, 16), (16, 3, 5, 5), 1, 2, 1, 1),
]


def _arrays(cfg, seed: int) -> Dict[str, np.ndarray]:
    _, dtype, _, _, xs, ws, stride, padding, dilation, groups = cfg
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    y = ref.conv2d(x, w, b, stride, padding, dilation, groups)
    gy = rng.standard_normal(y.shape).astype(dtype)
    for a in (x, w, b, gy):
        a.flags.writeable = False  # shared between threads: nobody may write them
    return dict(x=x, w=w, b=b, gy=gy)


def _call(cfg, arr: Dict[str, np.ndarray]) -> Tuple[np.ndarray, ...]:
    _, _, algo, pass_, _, _, stride, padding, dilation, groups = cfg
    if pass_ == "fwd":
        return (fastconv.conv2d(arr["x"], arr["w"], arr["b"], stride, padding, dilation, groups, algorithm=algo),)
    return tuple(fastconv.conv2d_backward(arr["gy"], arr["x"], arr["w"], stride, padding, dilation, groups,
                                          bias=True, algorithm=algo))


def _reference(cfg, arr) -> List[Tuple[np.ndarray, np.ndarray, int]]:
    """[(expected, bound terms, terms summed)] in float64 for each output of ``_call``."""
    _, _, _, pass_, xs, ws, stride, padding, dilation, groups = cfg
    f = {k: v.astype(np.float64) for k, v in arr.items()}
    a = {k: np.abs(v) for k, v in f.items()}
    opts = (stride, padding, dilation, groups)
    if pass_ == "fwd":
        return [(ref.conv2d(f["x"], f["w"], f["b"], *opts), ref.conv2d(a["x"], a["w"], a["b"], *opts),
                 ws[1] * ws[2] * ws[3] + 1)]
    red = int(np.prod(f["gy"].shape)) // f["gy"].shape[1]
    return [(ref.conv2d_input_grad(f["gy"], f["w"], xs, *opts), ref.conv2d_input_grad(a["gy"], a["w"], xs, *opts),
             ws[0] // groups * ws[2] * ws[3]),
            (ref.conv2d_weight_grad(f["gy"], f["x"], ws, *opts), ref.conv2d_weight_grad(a["gy"], a["x"], ws, *opts), red),
            (f["gy"].sum(axis=(0, 2, 3)), a["gy"].sum(axis=(0, 2, 3)), red)]


def _assert_correct(got: Tuple[np.ndarray, ...], expected, dtype, what: str) -> None:
    eps = float(np.finfo(dtype).eps)
    assert len(got) == len(expected), what
    for i, (g, (e, bound, terms)) in enumerate(zip(got, expected)):
        assert g.dtype == dtype and g.shape == e.shape, f"{what}[{i}]: {g.dtype} {g.shape}"
        assert np.isfinite(g).all(), f"{what}[{i}]: non-finite values"
        err = np.abs(g.astype(np.float64) - e)
        tol = max(16.0, 2.0 * terms) * eps * bound
        assert (err <= tol).all(), (f"{what}[{i}]: max error / tolerance = "
                                    f"{float(np.max(err / np.where(tol > 0, tol, np.inf)))}")


def _bitwise_equal(a: Tuple[np.ndarray, ...], b: Tuple[np.ndarray, ...]) -> bool:
    return len(a) == len(b) and all(x.dtype == y.dtype and x.shape == y.shape and
                                    x.tobytes() == y.tobytes() for x, y in zip(a, b))


def _run_threads(targets) -> List[str]:
    """Start one thread per callable (released together by a barrier), join them, and
    return the errors they recorded (a thread still running after the timeout is one)."""
    errors: List[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(targets))

    def wrap(fn, i):
        def run():
            try:
                barrier.wait(timeout=60)
                fn()
            except BaseException as exc:  # noqa: BLE001 - reported to the main thread
                with lock:
                    errors.append(f"thread {i}: {type(exc).__name__}: {exc}")
        return run

    threads = [threading.Thread(target=wrap(fn, i), name=f"fastconv-{i}", daemon=True)
               for i, fn in enumerate(targets)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + JOIN_TIMEOUT
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    hung = [t.name for t in threads if t.is_alive()]
    if hung:
        errors.append(f"threads still running after {JOIN_TIMEOUT} s (deadlock?): {hung}")
    return errors


@pytest.fixture(scope="module")
def problems():
    return [(cfg, _arrays(cfg, seed=i)) for i, cfg in enumerate(CONFIGS)]


def test_configs_use_threads():
    """Every problem is large enough that the C driver runs an OpenMP team for it."""
    for cfg in CONFIGS:
        _, _, _, _, xs, ws, stride, padding, dilation, groups = cfg
        spec = fastconv.functional.make_spec(xs, ws, stride, padding, dilation, groups, np.dtype(cfg[1]))
        macs = spec.flops // 2
        assert macs >= 32768, (cfg[0], macs)


@pytest.mark.parametrize("nthreads", [1, 2])
def test_eight_threads_bitwise_equal_to_alone(problems, nthreads):
    fastconv.set_num_threads(nthreads)  # restored by conftest's autouse fixture
    alone = []
    for cfg, arr in problems:
        got = _call(cfg, arr)
        _assert_correct(got, _reference(cfg, arr), np.dtype(cfg[1]), cfg[0])
        assert _bitwise_equal(got, _call(cfg, arr)), f"{cfg[0]}: two calls made alone differ"
        alone.append(got)

    def worker(k):
        cfg, arr = problems[k]

        def run():
            for it in range(ITERATIONS):
                got = _call(cfg, arr)
                if not _bitwise_equal(got, alone[k]):
                    raise AssertionError(f"{cfg[0]}: iteration {it} differs from the call made alone")
        return run

    errors = _run_threads([worker(k) for k in range(N_THREADS)])
    assert not errors, "\n".join(errors)
    for cfg, arr in problems:  # and no thread wrote into the shared inputs
        assert _bitwise_equal(tuple(arr.values()), tuple(_arrays(cfg, seed=CONFIGS.index(cfg)).values()))


def test_eight_threads_share_inputs():
    """8 threads, one set of input arrays, different algorithms and passes."""
    cfg0 = CONFIGS[2]  # f32 backward 3x3
    arr = _arrays(cfg0, seed=42)
    variants = [(cfg0[:2] + (algo, p) + cfg0[4:]) for algo in ("direct", "im2col") for p in ("fwd", "backward")]
    fastconv.set_num_threads(2)
    alone = [_call(v, arr) for v in variants]
    for v, got in zip(variants, alone):
        _assert_correct(got, _reference(v, arr), np.float32, v[0] + " " + v[2] + " " + v[3])

    def worker(k):
        v = variants[k % len(variants)]

        def run():
            for it in range(ITERATIONS):
                if not _bitwise_equal(_call(v, arr), alone[k % len(variants)]):
                    raise AssertionError(f"{v[2]} {v[3]}: iteration {it} differs from the call made alone")
        return run

    errors = _run_threads([worker(k) for k in range(N_THREADS)])
    assert not errors, "\n".join(errors)


def test_set_num_threads_while_computing(problems):
    """One thread flips the thread count (set_num_threads and threads()) while 7 compute."""
    counts = [1, 2, 3, None]
    alone: List[List[Tuple[np.ndarray, ...]]] = []
    for cfg, arr in problems[:N_THREADS - 1]:
        per_count = []
        for n in counts:
            with fastconv.threads(n):
                per_count.append(_call(cfg, arr))
        alone.append(per_count)
    expected = [_reference(cfg, arr) for cfg, arr in problems[:N_THREADS - 1]]
    stop = threading.Event()
    flips = [0]

    def flipper():
        i = 0
        while not stop.is_set():
            n = counts[i % len(counts)]
            if i % 3 == 2:
                with fastconv.threads(n):
                    time.sleep(0.0005)
            else:
                fastconv.set_num_threads(n)
            assert fastconv.get_num_threads() >= 1
            i += 1
            flips[0] = i
            time.sleep(0.0002)

    def worker(k):
        cfg, arr = problems[k]

        def run():
            try:
                for it in range(ITERATIONS):
                    got = _call(cfg, arr)
                    _assert_correct(got, expected[k], np.dtype(cfg[1]), f"{cfg[0]} iteration {it}")
                    if not any(_bitwise_equal(got, a) for a in alone[k]):
                        raise AssertionError(f"{cfg[0]}: iteration {it} equals none of the results made "
                                             f"alone with {counts} threads")
            finally:
                done.wait(timeout=JOIN_TIMEOUT)

        return run

    done = threading.Barrier(N_THREADS - 1, action=stop.set)
    errors = _run_threads([worker(k) for k in range(N_THREADS - 1)] + [flipper])
    assert not errors, "\n".join(errors)
    assert flips[0] > 10, f"the thread count was changed only {flips[0]} times"
