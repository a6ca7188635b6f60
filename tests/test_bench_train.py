"""python -m fastconv.bench --train: the two contenders are the same network (same weights,
same outputs), the plain-loop and breakdown figures exist, and the command runs."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from fastconv.bench import train


@pytest.mark.parametrize("net", list(train.NETS))
def test_torch_twin_computes_what_the_fastconv_net_computes(net):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    model = train.build_fastconv(net, seed=1)
    module, _ = train.build_torch(torch, net, model)
    module.eval()
    x = np.random.default_rng(0).standard_normal((3,) + train.NETS[net]["input"]).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.tensor(x)).numpy()
    np.testing.assert_allclose(model.predict(x), expected, rtol=2e-4, atol=2e-5)


def test_run_train_bench_reports_steps_plain_loop_and_breakdown():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    res = train.run_train_bench(torch, ["mnist_cnn"], [1], batch=4, n_steps=1, rounds=1, settle_s=0.0)
    (r,) = res
    assert set(r["median_ms"]) == {"fastconv", "torch", "numpy-user"}
    assert all(v > 0 for v in r["median_ms"].values()) and r["plain_loop_ms"] > 0
    kinds = {k.split()[0] for k in r["breakdown_ms"]}
    assert {"Conv2D", "ReLU", "MaxPool2D", "Dropout", "Dense", "optimizer", "loss"} <= kinds
    text = train.format_train(res)
    assert "mnist_cnn" in text and "breakdown" in text


def test_cli_train_runs(capsys):
    from fastconv.bench.cli import main
    assert main(["--train", "--nets", "mnist_cnn", "--threads", "1", "--batch", "2", "--steps", "1",
                 "--rounds", "1", "--peak-seconds", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "FMA peak" in out and "malloc" in out and "mnist_cnn" in out
    # the gate (on by default) checked every timed block: one per contender (fastconv,
    # numpy-user, torch where installed) x 1 round, and the plain loop
    blocks = 3 + (importlib.util.find_spec("torch") is not None)
    line = next(ln for ln in out.splitlines() if ln.startswith("capacity gate:"))
    assert f" of {blocks} timed blocks waited" in line


def test_cli_rejects_an_unknown_net(capsys):
    from fastconv.bench.cli import main
    assert main(["--train", "--nets", "alexnet"]) == 2
    assert "unknown net" in capsys.readouterr().err
