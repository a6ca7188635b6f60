"""fastconv._alloc: large outputs on reused memory, never an array a caller still holds."""
from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np

import fastconv
from fastconv import _alloc

import helpers as H

SHAPE = (4, 64, 32, 32)  # 1 MiB of float32: cached


def test_a_held_array_is_never_handed_out_again():
    cache = _alloc.OutputCache(64 << 20)
    a = cache.empty(SHAPE, np.float32)
    b = cache.empty(SHAPE, np.float32)
    assert not np.shares_memory(a, b)
    part = a[1:, ::2]                     # a derived view keeps a's block in use
    del a
    c = cache.empty(SHAPE, np.float32)
    assert not np.shares_memory(c, part) and not np.shares_memory(c, b)


def test_a_dropped_array_is_reused_and_the_cache_stays_bounded():
    cache = _alloc.OutputCache(8 << 20)
    first = cache.empty(SHAPE, np.float32)
    address = first.__array_interface__["data"][0]
    del first
    again = cache.empty(SHAPE, np.float32)
    assert again.__array_interface__["data"][0] == address
    del again
    for _ in range(50):                  # a loop that drops each output: one block suffices
        y = cache.empty(SHAPE, np.float32)
        y[...] = 1
        del y
    assert cache.cached_bytes() == 1 << 20
    held = [cache.empty(SHAPE, np.float32) for _ in range(12)]  # more in use than the limit
    assert len({h.__array_interface__["data"][0] for h in held}) == 12
    del held
    cache.empty(SHAPE, np.float32)       # the next call evicts the unused blocks past the limit
    assert cache.cached_bytes() <= 8 << 20


def test_small_and_oversized_arrays_are_plain():
    cache = _alloc.OutputCache(4 << 20)
    assert cache.empty((10, 10), np.float64).base is None
    assert cache.empty((2, 1 << 20), np.float32).base is None   # 8 MiB > the limit
    assert cache.cached_bytes() == 0


def test_concurrent_threads_never_share_an_output():
    cache = _alloc.OutputCache(64 << 20)
    got, errors = [], []

    def work(k):
        try:
            for _ in range(20):
                y = cache.empty(SHAPE, np.float32)
                y.fill(k)
                got.append(y)
                if len(got) > 16:
                    got.pop(0)
                assert (y == k).all()
        except AssertionError as exc:  # pragma: no cover - the failure this guards against
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_conv_outputs_use_the_cache_and_stay_correct():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(SHAPE).astype(np.float32)
    w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    y1 = fastconv.conv2d(x, w, padding=1)
    expected = y1.copy()
    del y1
    for _ in range(3):
        y = fastconv.conv2d(x, w, padding=1)
        np.testing.assert_array_equal(y, expected)
        gx, gw, gb = fastconv.conv2d_backward(y, x, w, padding=1)
        assert not np.shares_memory(gx, y)


def test_the_cache_can_be_turned_off():
    code = ("import numpy as np, fastconv; from fastconv import _alloc; "
            "y = _alloc.empty((4, 64, 32, 32), np.float32); print(y.base is None, _alloc.outputs.cached_bytes())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=H.child_env(FASTCONV_OUTPUT_CACHE_MB="0"), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "0"]
