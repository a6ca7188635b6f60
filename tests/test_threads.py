"""Thread count control and determinism.

docs/architecture.md: every output element (weight- and bias-gradient elements included) is computed
by one work item in a fixed order, so results are bitwise the same for any thread count
and on every repetition; ``fastconv.threads(n)`` restores the previous setting.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastconv
from fastconv import _core
from fastconv import reference as ref

import helpers as H

DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["f32", "f64"]

# Large enough that the C driver really runs a team (it stays serial below 32768
# multiply-adds), with channel counts that are not multiples of the kernels' block of 4,
# so work items differ in size.
CONFIGS = [
    dict(x=(4, 6, 12, 11), w=(10, 6, 3, 3), stride=1, padding=1, dilation=1, groups=1),
    dict(x=(3, 8, 13, 14), w=(12, 4, 3, 2), stride=(2, 1), padding=((1, 0), (2, 1)), dilation=(1, 2), groups=2),
    dict(x=(2, 16, 15, 15), w=(16, 1, 5, 5), stride=2, padding="same", dilation=1, groups=16),
    dict(x=(5, 9, 11, 10), w=(7, 9, 1, 1), stride=1, padding=0, dilation=1, groups=1),
    # Large enough that im2col lowers each image in several tiles of output rows.
    dict(x=(2, 128, 48, 48), w=(4, 128, 3, 3), stride=1, padding=1, dilation=1, groups=1),
]
CONFIG_IDS = ["3x3", "groups_stride_dilation", "depthwise_5x5_s2", "1x1", "several_tiles"]


def _data(cfg, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(cfg["x"]).astype(dtype)
    w = rng.standard_normal(cfg["w"]).astype(dtype)
    b = rng.standard_normal(cfg["w"][0]).astype(dtype)
    args = (cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"])
    y_shape = ref.conv2d(np.zeros(cfg["x"]), np.zeros(cfg["w"]), None, *args).shape
    gy = rng.standard_normal(y_shape).astype(dtype)
    macs = np.prod(y_shape) * np.prod(cfg["w"][1:])
    assert macs > 32768, "config too small to run multi-threaded"
    return x, w, b, gy, args


def _all_passes(x, w, b, gy, args, algorithm):
    y = fastconv.conv2d(x, w, b, *args, algorithm=algorithm)
    gx, gw, gb = fastconv.conv2d_backward(gy, x, w, *args, algorithm=algorithm)
    return {"y": y, "grad_x": gx, "grad_weight": gw, "grad_bias": gb}


@pytest.mark.parametrize("cfg", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_thread_counts_give_bitwise_equal_results(cfg, dtype, algorithm_or_auto):
    x, w, b, gy, args = _data(cfg, dtype)
    results = {}
    for n in (1, 2, 3):
        with fastconv.threads(n):
            assert fastconv.get_num_threads() == n
            results[n] = _all_passes(x, w, b, gy, args, algorithm_or_auto)
    for n in (2, 3):
        for key, value in results[1].items():
            np.testing.assert_array_equal(results[n][key], value,
                                          err_msg=f"{key}: {n} threads differ from 1 thread")
    # And they are right (the reference, float64, the bound of docs/architecture.md).
    exp, bound = H.ref_forward(x, w, b, *args)
    H.assert_close_to_reference(results[1]["y"], exp, bound, dtype)
    exp, bound = H.ref_weight_grad(gy, x, w.shape, *args)
    H.assert_close_to_reference(results[1]["grad_weight"], exp, bound, dtype)


@pytest.mark.parametrize("cfg", CONFIGS[:2], ids=CONFIG_IDS[:2])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_repeated_runs_are_bitwise_equal(cfg, dtype, algorithm_or_auto):
    x, w, b, gy, args = _data(cfg, dtype, seed=1)
    with fastconv.threads(2):
        first = _all_passes(x, w, b, gy, args, algorithm_or_auto)
        for _ in range(4):
            again = _all_passes(x, w, b, gy, args, algorithm_or_auto)
            for key, value in first.items():
                np.testing.assert_array_equal(again[key], value, err_msg=key)


def test_concurrent_python_threads(algorithm_or_auto):
    """The GIL is released and each Python thread has its own workspace: calls from two
    Python threads at once give the serial results."""
    cfg = CONFIGS[1]
    x, w, b, gy, args = _data(cfg, np.float32, seed=2)
    x2, w2, b2, gy2, _ = _data(cfg, np.float32, seed=3)
    expected = [_all_passes(x, w, b, gy, args, algorithm_or_auto),
                _all_passes(x2, w2, b2, gy2, args, algorithm_or_auto)]
    errors = []

    def work(i, data):
        try:
            for _ in range(6):
                got = _all_passes(*data, args, algorithm_or_auto)
                for key, value in expected[i].items():
                    if not np.array_equal(got[key], value):
                        errors.append(f"thread {i}: {key} differs")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(repr(exc))

    ts = [threading.Thread(target=work, args=(0, (x, w, b, gy))),
          threading.Thread(target=work, args=(1, (x2, w2, b2, gy2)))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []


# ----------------------------------------------------------------------------- the setting

def test_set_and_get():
    fastconv.set_num_threads(3)
    assert fastconv.get_num_threads() == 3
    fastconv.set_num_threads(1)
    assert fastconv.get_num_threads() == 1
    fastconv.set_num_threads(None)
    assert fastconv.get_num_threads() == _default_threads_of_this_process()


def _startup_default_threads() -> int:
    env = os.environ.get("OMP_NUM_THREADS")
    if env and env.split(",")[0].strip().isdigit():
        return int(env.split(",")[0])
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


# Read at collection, before any test runs: OpenMP read OMP_NUM_THREADS at start-up, and a
# library (distributed's Nanny) may write os.environ later without changing that.
_STARTUP_DEFAULT = _startup_default_threads()


def _default_threads_of_this_process() -> int:
    return _STARTUP_DEFAULT


def test_threads_context_restores():
    fastconv.set_num_threads(3)
    with fastconv.threads(1):
        assert fastconv.get_num_threads() == 1
        with fastconv.threads(2):
            assert fastconv.get_num_threads() == 2
        assert fastconv.get_num_threads() == 1
    assert fastconv.get_num_threads() == 3
    with pytest.raises(KeyError):
        with fastconv.threads(2):
            assert fastconv.get_num_threads() == 2
            raise KeyError("boom")
    assert fastconv.get_num_threads() == 3
    fastconv.set_num_threads(None)
    with fastconv.threads(1):
        assert fastconv.get_num_threads() == 1
    assert fastconv.get_num_threads() == _default_threads_of_this_process()


def test_threads_blocks_belong_to_their_python_thread():
    # A enters threads(1), B threads(3), A leaves first, then B: with one process-wide value
    # saved and restored by each block, B restored A's 1 for every later call
    fastconv.set_num_threads(2)
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def a():
        with fastconv.threads(1):
            a_in.set()
            b_in.wait(10)
            seen["a"] = fastconv.get_num_threads()
        a_out.set()

    def b():
        a_in.wait(10)
        with fastconv.threads(3):
            b_in.set()
            a_out.wait(10)
            seen["b"] = fastconv.get_num_threads()

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"a": 1, "b": 3}
    assert fastconv.get_num_threads() == 2   # nothing stale left behind


def test_threads_started_inside_a_block_follow_it():
    # a pool's workers have no block of their own: they take the innermost one open, so
    # `with threads(1): pool.map(...)` (or dask's compute) still limits them
    from concurrent.futures import ThreadPoolExecutor
    fastconv.set_num_threads(2)
    with fastconv.threads(1):
        with ThreadPoolExecutor(2) as pool:
            assert list(pool.map(lambda _: fastconv.get_num_threads(), range(4))) == [1, 1, 1, 1]
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(fastconv.get_num_threads).result() == 2


def test_threads_blocks_of_asyncio_tasks():
    # each task's context is a copy: B's block holds for B while A's, entered first, closes first
    import asyncio
    fastconv.set_num_threads(2)
    seen = {}

    async def a(ev_a, ev_b):
        with fastconv.threads(1):
            ev_a.set()
            await ev_b.wait()
            seen["a"] = fastconv.get_num_threads()

    async def b(ev_a, ev_b, ev_done):
        await ev_a.wait()
        with fastconv.threads(4):
            ev_b.set()
            await ev_done.wait()
            seen["b"] = fastconv.get_num_threads()

    async def main():
        ev_a, ev_b, ev_done = asyncio.Event(), asyncio.Event(), asyncio.Event()
        ta, tb = asyncio.create_task(a(ev_a, ev_b)), asyncio.create_task(b(ev_a, ev_b, ev_done))
        await ta
        ev_done.set()
        await tb

    asyncio.run(main())
    assert seen == {"a": 1, "b": 4}
    assert fastconv.get_num_threads() == 2


def test_set_num_threads_inside_a_block_is_the_process_setting():
    fastconv.set_num_threads(2)
    with fastconv.threads(1):
        fastconv.set_num_threads(3)
        assert fastconv.get_num_threads() == 1   # the block's count, for this thread
    assert fastconv.get_num_threads() == 3


def test_threads_none_means_default():
    fastconv.set_num_threads(2)
    with fastconv.threads(None):
        assert fastconv.get_num_threads() == _default_threads_of_this_process()
    assert fastconv.get_num_threads() == 2


@pytest.mark.parametrize("bad", [0, -1, -8])
def test_set_num_threads_rejects_non_positive(bad):
    fastconv.set_num_threads(2)
    with pytest.raises(ValueError, match="n must be a positive int"):
        fastconv.set_num_threads(bad)
    assert fastconv.get_num_threads() == 2  # unchanged
    with pytest.raises(ValueError, match="positive"):
        with fastconv.threads(bad):
            pass  # pragma: no cover
    assert fastconv.get_num_threads() == 2


@pytest.mark.parametrize("bad", [1.5, 2.0, "2", True, [2]])
def test_set_num_threads_rejects_non_ints(bad):
    fastconv.set_num_threads(2)
    with pytest.raises((ValueError, TypeError), match="n must be"):
        fastconv.set_num_threads(bad)
    assert fastconv.get_num_threads() == 2


def _run_python(code: str, env_update: dict) -> str:
    env = H.child_env(**env_update)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_default_follows_omp_num_threads():
    code = "import fastconv; print(fastconv.get_num_threads())"
    assert _run_python(code, {"OMP_NUM_THREADS": "1"}).strip() == "1"
    assert _run_python(code, {"OMP_NUM_THREADS": "3"}).strip() == "3"
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if not _core.openmp_enabled():
        expected = 1
    assert _run_python(code, {}).strip() == str(expected)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_while_another_thread_holds_a_block_and_the_lock():
    # the child has only the forking thread: the other thread's block is gone there, and the
    # module's lock, held by that thread at the fork, is a new one (else the child's next
    # threads() block would wait for good)
    from fastconv import _threads
    opened, release = threading.Event(), threading.Event()

    def other():
        with fastconv.threads(1):
            with _threads._lock:
                opened.set()
                release.wait(10)

    t = threading.Thread(target=other)
    t.start()
    assert opened.wait(10)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            free = _threads._lock.acquire(timeout=2)
            os.write(w, f"{len(_threads._open)} {int(free)}".encode())
        finally:
            os._exit(0)
    os.close(w)
    got = os.read(r, 64).decode()
    os.waitpid(pid, 0)
    release.set()
    t.join()
    assert got == "0 1"
