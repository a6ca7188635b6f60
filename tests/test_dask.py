"""fastconv.dask: results equal the in-memory fastconv call (bitwise for the forward with an
explicit algorithm, to rounding for the summed gradients) and fastconv.reference, under the
synchronous and threaded schedulers and on a 2-process distributed.LocalCluster.

Skipped as a whole without dask; the dask-image comparison is skipped without dask-image.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

da = pytest.importorskip("dask.array", reason="fastconv.dask needs dask (pip install 'fastconv[dask]')")
import dask  # noqa: E402

import fastconv  # noqa: E402
import fastconv.dask as fd  # noqa: E402
from fastconv import reference as ref  # noqa: E402
from fastconv import functional as F  # noqa: E402

# (stride, padding, dilation, kernel, groups): "same" and asymmetric padding, strides that
# do not divide the chunks, dilation, grouped and 1x1
CASES = [
    (1, 0, 1, 3, 1),
    (1, "same", 1, 3, 1),
    (2, "same", 1, 3, 1),
    (1, "same", 1, 4, 1),               # even kernel: the odd pixel of padding bottom/right
    (3, ((2, 1), (0, 3)), 2, 3, 1),     # asymmetric padding, stride and dilation
    ((2, 1), ((0, 2), (1, 1)), (1, 2), 2, 1),
    (2, 1, 1, 1, 1),                    # 1x1, stride 2, padding: windows wholly in the padding
    (1, "same", 1, 3, 2),               # groups
    (2, "valid", 1, 5, 1),
]


def _problem(rng, case, n=5, c=4, h=23, w=19, dtype=np.float32):
    stride, padding, dilation, k, groups = case
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((6, c // groups, k, k)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    return x, wt, b, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


CHUNKINGS = [
    (2, 4, (5, 9, 9), (7, 4, 8)),       # batch and both spatial axes, uneven
    (5, 4, (12, 11), 19),               # H only
    (1, 4, 23, 19),                     # batch only
    (3, 2, (8, 8, 7), (10, 9)),         # C chunked too: rechunked to one chunk
]


# ----------------------------------------------------------------------------- forward

@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("algorithm", ["direct", "im2col"])
@pytest.mark.parametrize("chunks", CHUNKINGS)
def test_forward_is_bitwise_the_in_memory_call(rng, case, algorithm, chunks):
    x, w, b, kw = _problem(rng, case)
    expected = fastconv.conv2d(x, w, b, **kw, algorithm=algorithm)
    y = fd.conv2d(da.from_array(x, chunks=chunks), w, b, **kw, algorithm=algorithm)
    assert y.shape == expected.shape and y.dtype == expected.dtype
    got = y.compute(scheduler="sync")
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("case", CASES)
def test_forward_auto_and_threads_against_reference(rng, case):
    x, w, b, kw = _problem(rng, case, dtype=np.float64)
    y = fd.conv2d(da.from_array(x, chunks=(2, 4, (5, 9, 9), (7, 4, 8))), w, b, **kw)
    got = y.compute(scheduler="threads")
    np.testing.assert_allclose(got, fastconv.conv2d(x, w, b, **kw), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got, ref.conv2d(x, w, b, **kw), rtol=1e-10, atol=1e-10)


@st.composite
def chunkings(draw, size):
    cuts = draw(st.lists(st.integers(1, size - 1), max_size=3, unique=True)) if size > 1 else []
    bounds = [0, *sorted(cuts), size]
    return tuple(bounds[i + 1] - bounds[i] for i in range(len(bounds) - 1))


@settings(max_examples=12)
@given(st.data())
def test_forward_random_chunkings(data):
    case = data.draw(st.sampled_from(CASES))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x, w, b, kw = _problem(rng, case, n=3, h=17, w=13)
    chunks = (data.draw(chunkings(3)), 4, data.draw(chunkings(17)), data.draw(chunkings(13)))
    algorithm = data.draw(st.sampled_from(["direct", "im2col"]))
    y = fd.conv2d(da.from_array(x, chunks=chunks), w, b, **kw, algorithm=algorithm)
    scheduler = data.draw(st.sampled_from(["sync", "threads"]))
    assert np.array_equal(y.compute(scheduler=scheduler), fastconv.conv2d(x, w, b, **kw, algorithm=algorithm))


def test_output_chunks_are_aligned_to_the_stride(rng):
    x, w, b, _ = _problem(rng, CASES[0], h=21)
    y = fd.conv2d(da.from_array(x, chunks=(5, 4, (6, 7, 8), 19)), w, b, stride=2, padding=1)
    # input boundaries 6 and 13 plus the top padding 1, over the stride 2, rounded up: 4 and 7
    assert y.chunks[2] == (4, 3, 4) and y.chunks[0] == (5,) and y.chunks[1] == (6,)


def test_graph_construction_runs_no_kernel_and_sets_meta(rng, monkeypatch):
    x, w, b, kw = _problem(rng, CASES[1])
    calls = []
    real = F.conv2d
    monkeypatch.setattr(F, "conv2d", lambda *a, **k: calls.append(1) or real(*a, **k))
    xd = da.from_array(x, chunks=(2, 4, (12, 11), 19))
    y = fd.conv2d(xd, w, b, **kw)
    gx, gw, gb = fd.conv2d_backward(da.ones(y.shape, chunks=y.chunks, dtype=np.float32), xd, w, **kw)
    assert calls == []
    for a in (y, gx, gw, gb):
        assert isinstance(a._meta, np.ndarray) and a.dtype == np.float32
    y.compute(scheduler="sync")
    assert len(calls) == 6  # one kernel call per block (3 batch x 2 row chunks)


def test_dtype_promotion_follows_fastconv(rng):
    x = rng.integers(0, 5, (2, 1, 9, 9))
    w = rng.standard_normal((2, 1, 3, 3)).astype(np.float32)
    y = fd.conv2d(da.from_array(x, chunks=(1, 1, 5, 9)), w)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y.compute(scheduler="sync"), fastconv.conv2d(x, w))


# ----------------------------------------------------------------------------- backward

def _grad_tolerances(gy, x, w, kw):
    """Per-element bounds |g - g_ref| <= 64 eps * sum|terms| (as tests/helpers.py)."""
    eps = np.finfo(x.dtype).eps * 64
    gx_b = ref.conv2d_input_grad(np.abs(gy), np.abs(w), x.shape, **kw)
    gw_b = ref.conv2d_weight_grad(np.abs(gy), np.abs(x), w.shape, **kw)
    gb_b = np.abs(gy).sum(axis=(0, 2, 3))
    return eps * gx_b, eps * gw_b, eps * gb_b


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_equals_in_memory_to_rounding(rng, case, dtype):
    x, w, _, kw = _problem(rng, case, dtype=dtype)
    gy = rng.standard_normal(fastconv.conv2d(x, w, **kw).shape).astype(dtype)
    xd = da.from_array(x, chunks=(2, 4, (5, 9, 9), (7, 4, 8)))
    gyd = da.from_array(gy, chunks=(3, 2, 4, 5))      # chunked unlike the output
    dgx, dgw, dgb = fd.conv2d_backward(gyd, xd, w, **kw)
    assert dgx.chunks == xd.chunks and dgw.shape == w.shape and dgb.shape == (6,)
    got = dask.compute(dgx, dgw, dgb, scheduler="threads")
    exp = fastconv.conv2d_backward(gy, x, w, **kw)
    for g, e, bound in zip(got, exp, _grad_tolerances(gy, x, w, kw)):
        assert g.dtype == dtype
        assert np.all(np.abs(g - e) <= bound + np.finfo(dtype).tiny), np.abs(g - e).max()
    # and the reference (float64 oracle)
    r = (ref.conv2d_input_grad(gy, w, x.shape, **kw), ref.conv2d_weight_grad(gy, x, w.shape, **kw),
         gy.sum(axis=(0, 2, 3), dtype=np.float64))
    for g, e, bound in zip(got, r, _grad_tolerances(gy, x, w, kw)):
        assert np.all(np.abs(g - e) <= 2 * bound + np.finfo(dtype).tiny)


@settings(max_examples=8)
@given(st.data())
def test_backward_random_chunkings_deterministic(data):
    case = data.draw(st.sampled_from(CASES))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x, w, _, kw = _problem(rng, case, n=3, h=17, w=13, dtype=np.float64)
    gy = rng.standard_normal(fastconv.conv2d(x, w, **kw).shape)
    chunks = (data.draw(chunkings(3)), 4, data.draw(chunkings(17)), data.draw(chunkings(13)))
    xd = da.from_array(x, chunks=chunks)
    grads = fd.conv2d_backward(da.from_array(gy, chunks=(2, 3, 5, 4)), xd, w, **kw, split_every=2)
    sync = dask.compute(*grads, scheduler="sync")
    threaded = dask.compute(*grads, scheduler="threads")
    for a, b in zip(sync, threaded):   # fixed chunking and tree: the same bits on any scheduler
        assert np.array_equal(a, b)
    assert grads[0].chunks == xd.chunks
    for g, e in zip(sync, fastconv.conv2d_backward(gy, x, w, **kw)):
        np.testing.assert_allclose(g, e, rtol=1e-11, atol=1e-11)


def test_backward_without_bias_and_numpy_grad_output(rng):
    x, w, _, kw = _problem(rng, CASES[2], dtype=np.float64)
    gy = rng.standard_normal(fastconv.conv2d(x, w, **kw).shape)
    gx, gw, gb = fd.conv2d_backward(gy, da.from_array(x, chunks=(5, 4, 8, 10)), w, **kw, bias=False)
    assert gb is None
    e = fastconv.conv2d_backward(gy, x, w, **kw, bias=False)
    np.testing.assert_allclose(gx.compute(), e[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gw.compute(), e[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", [CASES[1], CASES[4], CASES[7]])
def test_relu_post_op_and_through_relu_match_the_in_memory_calls(rng, case):
    """activation="relu" per output chunk, bitwise the in-memory call; through_relu masks the
    complete (halo-summed) input gradient: exactly the plain dask gradient where x > 0."""
    x, w, b, kw = _problem(rng, case)
    x = np.maximum(x, 0)  # a ReLU's output
    xd = da.from_array(x, chunks=(2, 4, (5, 9, 9), (7, 4, 8)))
    expected = fastconv.conv2d(x, w, b, **kw, algorithm="im2col", activation="relu")
    got = fd.conv2d(xd, w, b, **kw, algorithm="im2col", activation="relu").compute(scheduler="sync")
    assert np.array_equal(got, expected) and (got == 0).any()
    gy = rng.standard_normal(expected.shape).astype(np.float32)
    plain = fd.conv2d_backward(gy, xd, w, **kw, algorithm="im2col")
    fused = fd.conv2d_backward(gy, xd, w, **kw, algorithm="im2col", through_relu=True)
    assert fused[0].chunks == xd.chunks
    p, f = dask.compute(plain, fused, scheduler="sync")
    assert np.array_equal(f[0], np.where(x > 0, p[0], 0))
    assert np.array_equal(f[1], p[1]) and np.array_equal(f[2], p[2])
    with pytest.raises(ValueError, match="activation must be None or 'relu'"):
        fd.conv2d(xd, w, b, **kw, activation="tanh")
    with pytest.raises(TypeError, match="through_relu must be a bool"):
        fd.conv2d_backward(gy, xd, w, **kw, through_relu="yes")
    with pytest.raises(TypeError, match="bias must be a bool"):  # the bias array, by habit
        fd.conv2d_backward(gy, xd, w, **kw, bias=b)


# ----------------------------------------------------------------------------- signal

@pytest.mark.parametrize("mode", ["full", "valid", "same"])
@pytest.mark.parametrize("kshape", [(3, 3), (4, 5), (1, 2), (7, 7)])
@pytest.mark.parametrize("func", ["convolve2d", "correlate2d"])
def test_signal_matches_scipy(rng, mode, kshape, func):
    signal = pytest.importorskip("scipy.signal")
    a = rng.standard_normal((37, 41))
    k = rng.standard_normal(kshape)
    got = getattr(fd, func)(da.from_array(a, chunks=(10, (12, 9, 20))), k, mode=mode).compute(scheduler="threads")
    np.testing.assert_allclose(got, getattr(signal, func)(a, k, mode=mode), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got, getattr(fastconv, func)(a, k, mode=mode), rtol=1e-13, atol=1e-13)


def test_convolve2d_matches_dask_image(rng):
    ndfilters = pytest.importorskip("dask_image.ndfilters", reason="dask-image is not installed")
    a = rng.standard_normal((60, 50)).astype(np.float32)
    k = rng.standard_normal((5, 5)).astype(np.float32)
    ad = da.from_array(a, chunks=(16, 20))
    ours = fd.convolve2d(ad, k, mode="same").compute()
    theirs = ndfilters.convolve(ad, k, mode="constant", cval=0.0).compute()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- errors

def test_errors(rng):
    x, w, b, _ = _problem(rng, CASES[0])
    xd = da.from_array(x, chunks=(2, 2, (12, 11), 19))
    with pytest.raises(TypeError, match="x must be a dask.array.Array"):
        fd.conv2d(x, w)
    with pytest.raises(TypeError, match="weight must be a NumPy array"):
        fd.conv2d(xd, da.from_array(w))
    with pytest.raises(ValueError, match="unknown \\(NaN\\) chunk sizes"):
        fd.conv2d(xd[xd[:, 0, 0, 0] > -10], w)
    with pytest.raises(ValueError, match="smaller than the halo of 2"):
        fd.conv2d(da.from_array(x, chunks=(5, 4, (1, 22), 19)), w, rechunk=False)
    with pytest.raises(ValueError, match="chunked along C"):
        fd.conv2d(xd, w, rechunk=False)
    with pytest.raises(ValueError, match="larger than the padded input"):
        fd.conv2d(xd, rng.standard_normal((6, 4, 30, 3)).astype(np.float32))
    with pytest.raises(ValueError, match="4-D dask array"):
        fd.conv2d(xd[0], w)
    with pytest.raises(ValueError, match="algorithm"):
        fd.conv2d(xd, w, algorithm="fft")
    with pytest.raises(ValueError, match="grad_output must have the output's shape"):
        fd.conv2d_backward(da.ones((5, 6, 3, 3), chunks=2), xd, w)
    with pytest.raises(TypeError, match="in1 must be a dask.array.Array"):
        fd.convolve2d(x[0, 0], w[0, 0])
    with pytest.raises(ValueError, match="must fit inside the image"):
        fd.correlate2d(da.ones((4, 4), chunks=2), np.ones((5, 2)), mode="valid")
    with pytest.raises(ValueError, match="mode must be one of"):
        fd.correlate2d(da.ones((4, 4), chunks=2), np.ones((2, 2)), mode="wrap")
    with pytest.raises(ValueError, match="threads_per_task"):
        fd.task_thread_budget(0)


def test_small_chunks_are_rechunked_and_grad_x_keeps_the_input_chunks(rng):
    x, w, _, kw = _problem(rng, (1, "same", 2, 3, 1), dtype=np.float64)   # halo 4
    xd = da.from_array(x, chunks=(5, 4, (2, 3, 1, 17), (1,) * 19))
    y = fd.conv2d(xd, w, **kw)
    np.testing.assert_allclose(y.compute(), fastconv.conv2d(x, w, **kw), rtol=1e-12, atol=1e-12)
    gx, _, _ = fd.conv2d_backward(da.ones(y.shape, chunks=4), xd, w, **kw)
    assert gx.chunks == xd.chunks
    np.testing.assert_allclose(gx.compute(), fastconv.conv2d_input_grad(np.ones(y.shape), w, x.shape, **kw),
                               rtol=1e-12, atol=1e-12)


def test_import_fastconv_does_not_import_dask():
    code = "import sys, fastconv, fastconv.nn; assert not any(m == 'dask' or m.startswith('dask.') for m in sys.modules)"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


# ----------------------------------------------------------------------------- threads

def test_thread_budget_outside_and_inside_the_threaded_pool():
    assert fd.task_thread_budget() is None          # calling thread: user's setting applies
    assert fd.task_thread_budget(3) == 3
    seen = []
    with dask.config.set(num_workers=2):
        t = threading.Thread(target=lambda: seen.append(fd.task_thread_budget()))
        t.start()
        t.join()
    assert seen == [max(1, min(fastconv.get_num_threads(), len(os.sched_getaffinity(0)) // 2))]
    fastconv.set_num_threads(1)   # never more than the process's own setting
    with dask.config.set(num_workers=1):
        t = threading.Thread(target=lambda: seen.append(fd.task_thread_budget()))
        t.start()
        t.join()
    assert seen[-1] == 1


def test_task_threads_restores_the_setting():
    fastconv.set_num_threads(2)
    with fd.task_threads(1):
        assert fastconv.get_num_threads() == 1
        with fd.task_threads(1):
            assert fastconv.get_num_threads() == 1
        assert fastconv.get_num_threads() == 1
    assert fastconv.get_num_threads() == 2


def test_a_threads_block_around_compute_limits_the_tasks():
    # the pool's threads have no block of their own: a block around compute() is their limit
    fastconv.set_num_threads(2)
    seen = []

    def record(block):
        seen.append(fastconv.get_num_threads())
        return block

    with dask.config.set(scheduler="threads", num_workers=1), fastconv.threads(1):
        da.ones((4,), chunks=1).map_blocks(lambda b: _in_task(record, b)).compute()
    assert seen and set(seen) == {1}


def _in_task(record, block):
    with fd.task_threads():
        return record(block)


def test_task_threads_hold_for_their_own_task():
    # two tasks with other budgets, overlapping: each keeps its own, nothing stale after
    fastconv.set_num_threads(3)
    both_in, seen = threading.Barrier(2, timeout=10), {}

    def task(n):
        with fd.task_threads(n):
            both_in.wait()
            seen[n] = fastconv.get_num_threads()
            both_in.wait()

    ts = [threading.Thread(target=task, args=(n,)) for n in (1, 2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert seen == {1: 1, 2: 2}
    assert fastconv.get_num_threads() == 3


# ----------------------------------------------------------------------------- nn

def _model(seed=1, dtype="float64"):
    from fastconv import nn
    m = nn.Sequential([nn.Conv2D(4, 3, padding="same", dtype=dtype, seed=seed), nn.ReLU(), nn.MaxPool2D(2),
                       nn.Conv2D(5, 3, strides=2, dtype=dtype, seed=seed + 1), nn.ReLU(), nn.Flatten(),
                       nn.Dense(3, dtype=dtype, seed=seed + 2)])
    return m.compile(nn.SGD(0.05, momentum=0.9))


def test_predict_on_a_dask_array(rng):
    model = _model(dtype="float32")
    x = rng.standard_normal((23, 2, 12, 12)).astype(np.float32)
    lazy = model.predict(da.from_array(x, chunks=7))
    assert hasattr(lazy, "dask") and lazy.shape == (23, 3) and lazy.chunks == ((7, 7, 7, 2), (3,))
    got = lazy.compute(scheduler="threads")
    expected = np.concatenate([model.predict(x[i:i + 7]) for i in range(0, 23, 7)])
    assert np.array_equal(got, expected)                       # each chunk is that call
    np.testing.assert_allclose(got, model.predict(x), rtol=1e-5, atol=1e-6)
    # the graph holds the model as it was at the call: later training does not change it
    model.train_on_batch(x, np.arange(23) % 3)
    assert not np.array_equal(model.predict(x[:7]), expected[:7])
    assert np.array_equal(lazy.compute(scheduler="sync"), expected)


# ----------------------------------------------------------------------------- distributed

@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    # distributed's Nanny writes OMP_NUM_THREADS=1 (and MKL_/OPENBLAS_...) into this process's
    # os.environ for its workers; put the environment back so later tests see the real one.
    saved_env = dict(os.environ)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=40)
    c = distributed.Client(cluster, timeout="60s")
    try:
        c.wait_for_workers(2, timeout=60)
        # the workers must run the fastconv under test
        assert set(c.run(lambda: fastconv.__file__).values()) == {fastconv.__file__}
        yield c
    finally:
        c.close()
        cluster.close()
        os.environ.clear()
        os.environ.update(saved_env)


def test_distributed_forward_bitwise_and_backward(client, rng):
    x, w, b, kw = _problem(rng, CASES[4])
    xd = da.from_array(x, chunks=(2, 4, (8, 15), (10, 9)))
    y = fd.conv2d(xd, w, b, **kw, algorithm="im2col")
    assert np.array_equal(client.compute(y).result(timeout=60), fastconv.conv2d(x, w, b, **kw, algorithm="im2col"))
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    gy = rng.standard_normal(fastconv.conv2d(x64, w64, **kw).shape)
    grads = fd.conv2d_backward(da.from_array(gy, chunks=2), xd.astype(np.float64), w64, **kw)
    got = client.gather(client.compute(list(grads)), )
    local = dask.compute(*grads, scheduler="sync")
    for g, s, e in zip(got, local, fastconv.conv2d_backward(gy, x64, w64, **kw)):
        assert np.array_equal(g, s)                     # same chunking, same bits, any scheduler
        np.testing.assert_allclose(g, e, rtol=1e-11, atol=1e-11)


def test_thread_budget_on_a_worker(client):
    workers = list(client.scheduler_info()["workers"])
    futures = [client.submit(lambda: (fd.task_thread_budget(), fastconv.get_num_threads(),
                                      len(os.sched_getaffinity(0))), workers=[w], pure=False) for w in workers]
    # threads_per_worker=1: one task at a time per worker, so it may use every core it sees
    for budget, default, cores in client.gather(futures):
        assert budget == max(1, min(default, cores // 1))


@pytest.fixture
def no_replica_reduction(client):
    """Stop distributed's active memory manager for one test.

    Its ReduceReplicas policy (on by default, every 2 s) drops replicas that no waiting task
    needs, so a test that looks at replicas after a step would race against it.
    """
    client.amm.stop()
    try:
        yield
    finally:
        client.amm.start()


def test_distributed_training_agrees_with_one_machine(client, rng, no_replica_reduction):
    x = rng.standard_normal((26, 2, 12, 12))
    y = rng.integers(0, 3, 26)
    a, b = _model(), _model()
    trainer = fd.DataParallelTrainer(a, client, timeout=120)
    xd = da.from_array(x, chunks=(9, 2, 12, 12))      # three uneven shards
    for step in range(3):
        got = trainer.train_on_batch(xd, y)
        expected = b.train_on_batch(x, y)
        np.testing.assert_allclose(got, expected, rtol=1e-12, err_msg=f"loss/accuracy, step {step}")
    for i, (wa, wb) in enumerate(zip(a.get_weights(), b.get_weights())):
        np.testing.assert_allclose(wa, wb, rtol=1e-10, atol=1e-12, err_msg=f"weight {i} after 3 steps")
    trainer.train_on_batch(x, y)                        # NumPy batch: one shard per worker
    b.train_on_batch(x, y)
    for i, (wa, wb) in enumerate(zip(a.get_weights(), b.get_weights())):
        np.testing.assert_allclose(wa, wb, rtol=1e-10, atol=1e-12, err_msg=f"weight {i} after 4 steps")
    # the weights of the last step were broadcast: a replica on every worker
    held = client.who_has(trainer.weights_future)
    assert [len(v) for v in held.values()] == [2], held
    fresh = _model()
    fresh.summary((None, 2, 12, 12))                  # builds the same initial weights
    assert not np.allclose(a.get_weights()[0], fresh.get_weights()[0])  # training moved the weights


def test_distributed_predict_and_dropout_masks_change_between_steps(client, rng):
    from fastconv import nn
    model = nn.Sequential([nn.Flatten(), nn.Dropout(0.5, seed=0), nn.Dense(2, dtype="float64", seed=1)])
    model.compile(nn.SGD(0.1))
    x = rng.standard_normal((12, 1, 4, 4))
    y = rng.integers(0, 2, 12)
    lazy = model.predict(da.from_array(x, chunks=5))
    assert np.array_equal(client.compute(lazy).result(timeout=60),
                          np.concatenate([model.predict(x[i:i + 5]) for i in range(0, 12, 5)]))
    trainer = fd.DataParallelTrainer(model, client, seed=3, timeout=120)
    before = model.get_weights()
    trainer.train_on_batch(x, y)
    step1 = [a - b for a, b in zip(model.get_weights(), before)]
    model.layers[2].set_weights(before)      # same weights and data again:
    trainer.train_on_batch(x, y)             # only fresh Dropout masks can change the update
    step2 = [a - b for a, b in zip(model.get_weights(), before)]
    assert np.abs(step1[0]).max() > 0 and not np.allclose(step1[0], step2[0])
