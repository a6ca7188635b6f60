"""Fast tests of the benchmark harness (``fastconv.bench``), not of fastconv's speed."""
import json
import math

import numpy as np
import pytest

from fastconv import reference as ref
from fastconv._spec import make_spec
from fastconv.bench import cli, peak, report
from fastconv.bench.baselines import NumpyIm2col, TorchPeer, import_torch
from fastconv.bench.env import openblas_warning
from fastconv.bench.shapes import DEFAULT_SHAPES, SHAPES, flops, parse_custom, select, with_dtype
from fastconv.bench.timing import MIB, measure_interleaved, Contender, workspace_limit

# The table of issue 5, verbatim.
ISSUE_TABLE = (
    "`mnist_c1` 64,1,28,28,32,3,1,0,1,1,f32 · `mnist_c2` 64,32,26,26,64,3,1,0,1,1,f32 · `mnist_c2_f64` same in f64 · "
    "`cifar_3x3` 32,64,32,32,64,3,1,1,1,1,f32 · `resnet_3x3` 8,128,28,28,128,3,1,1,1,1,f32 · "
    "`resnet_stem` 4,3,224,224,64,7,2,3,1,1,f32 · `resnet_1x1` 8,256,14,14,1024,1,1,0,1,1,f32 · "
    "`depthwise` 8,128,56,56,128,3,1,1,1,128,f32 · `latency_1img` 1,64,56,56,64,3,1,1,1,1,f32 · "
    "`dilated` 8,64,32,32,64,3,1,2,2,1,f32"
)


def _issue_rows():
    rows = {}
    for entry in ISSUE_TABLE.split(" · "):
        name, row = entry.split(" ", 1)
        name = name.strip("`")
        rows[name] = rows["mnist_c2"][:-1] + ("f64",) if row == "same in f64" else tuple(
            int(v) if v.isdigit() else v for v in row.split(","))
    return rows


def test_shape_table_matches_issue():
    expected = _issue_rows()
    assert list(DEFAULT_SHAPES) == list(expected)
    assert {name: SHAPES[name].row() for name in DEFAULT_SHAPES} == expected
    assert "tiny" not in DEFAULT_SHAPES and select(["tiny"])[0].name == "tiny"


def test_flop_formula():
    # mnist_c1: 2 * N 64 * C_out 32 * 26 * 26 * C_in 1 * 3 * 3
    assert flops(SHAPES["mnist_c1"]) == 2 * 64 * 32 * 26 * 26 * 1 * 9
    # resnet_stem: stride 2, padding 3 -> 112 x 112
    assert SHAPES["resnet_stem"].out_hw == (112, 112)
    assert flops(SHAPES["resnet_stem"]) == 2 * 4 * 64 * 112 * 112 * 3 * 49
    # depthwise: C_in / groups = 1
    assert flops(SHAPES["depthwise"]) == 2 * 8 * 128 * 56 * 56 * 1 * 9
    for s in SHAPES.values():
        spec = make_spec(s.input_shape, s.weight_shape, s.stride, s.padding, s.dilation, s.groups, s.np_dtype)
        assert spec.output_shape == s.output_shape
        assert flops(s) == spec.flops


LAYERS = ["2,4,9,9,6,3,1,1,1,2", "2,4,9,8,6,3,2,2,2,1", "3,6,7,7,6,3,1,1,1,6", "2,3,11,11,4,1,1,0,1,1",
          "1,2,10,10,3,2,3,0,2,1", "2,3,12,12,5,5,2,2,1,1"]


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("dtype", ["f64", "f32"])
def test_numpy_baseline_equals_reference(layer, dtype):
    s = parse_custom(f"{layer},{dtype}")
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal(s.input_shape), rng.standard_normal(s.weight_shape)
    b, gy = rng.standard_normal(s.c_out), rng.standard_normal(s.output_shape)
    args = s.conv_args()
    want = (ref.conv2d(x, w, b, **args), ref.conv2d_input_grad(gy, w, s.input_shape, **args),
            ref.conv2d_weight_grad(gy, x, s.weight_shape, **args))
    dt = s.np_dtype
    x, w, b, gy = (a.astype(dt) for a in (x, w, b, gy))
    base = NumpyIm2col(s)
    tol = 1e-12 if dtype == "f64" else 1e-4
    for _ in range(2):  # buffers are reused: the second call must be as right as the first
        got = (base.fwd(x, w, b), base.bwd_data(gy, w), base.bwd_weights(gy, x))
        for g, e in zip(got, want):
            assert g.dtype == dt and g.shape == e.shape
            np.testing.assert_allclose(g, e, rtol=tol, atol=tol * np.abs(e).max())
    out = np.full(s.output_shape, np.nan, dtype=dt)
    assert base.fwd(x, w, out=out) is out and not np.isnan(out).any()


def test_torch_peer_equals_reference():
    torch = import_torch()
    if torch is None:
        pytest.skip("torch is not installed")
    s = parse_custom("2,4,9,8,6,3,2,2,2,2,f64")
    rng = np.random.default_rng(2)
    x, w, gy = (rng.standard_normal(shp) for shp in (s.input_shape, s.weight_shape, s.output_shape))
    peer, args = TorchPeer(torch, s), s.conv_args()
    np.testing.assert_allclose(peer.bound("fwd", x, w)().numpy(), ref.conv2d(x, w, **args), atol=1e-12)
    np.testing.assert_allclose(peer.bound("bwd_data", gy, w)().numpy(),
                               ref.conv2d_input_grad(gy, w, s.input_shape, **args), atol=1e-12)
    np.testing.assert_allclose(peer.bound("bwd_weights", gy, x)().numpy(),
                               ref.conv2d_weight_grad(gy, x, s.weight_shape, **args), atol=1e-12)


def test_parse_custom_and_dtype_override():
    s = parse_custom("1,2,5,5,3,3,1,1,1,1")
    assert s.row() == (1, 2, 5, 5, 3, 3, 1, 1, 1, 1, "f32")
    assert with_dtype(s, "f64").np_dtype == np.float64
    for bad in ["1,2,3", "1,3,5,5,3,3,1,1,1,2", "1,2,2,2,3,5,1,0,1,1", "a,2,5,5,3,3,1,1,1,1",
                "1,2,5,5,3,3,1,1,1,1,f16"]:
        with pytest.raises(ValueError):
            parse_custom(bad)


def test_workspace_limit_and_geomean():
    assert workspace_limit(SHAPES["mnist_c1"]) == 16 * MIB
    big = parse_custom("64,64,128,128,64,3,1,1,1,1")
    assert workspace_limit(big) == 4 * 2 * 64 * 64 * 128 * 128 // 10
    assert report.geomean([2.0, 8.0, None]) == pytest.approx(4.0)
    assert report.geomean([]) is None


def test_interleaved_measurement_rotates_and_counts():
    order = []
    contenders = [Contender(name, lambda name=name: order.append(name)) for name in "abc"]
    timed = measure_interleaved(contenders, repeats=6, warmup=0, min_sample_s=0.0, settle_s=0.0, rounds=3)
    assert all(len(t["samples"]) == 6 and t["number"] == 1 for t in timed.values())
    # after one calibration call each: rotating blocks, each a waking call + 2 samples
    assert "".join(order[3:]) == "aaabbbccc" + "bbbcccaaa" + "cccaaabbb"


def _fake_probe(rates):
    """A probe reading the given GFLOP/s rates in turn; records (threads, seconds) per call."""
    calls = []

    def probe(threads, seconds):
        calls.append((threads, seconds))
        return rates[min(len(calls), len(rates)) - 1]
    return probe, calls


def test_capacity_gate_waits_for_the_machine_then_lets_the_block_run():
    probe, calls = _fake_probe([50.0, 84.0, 86.0])
    gate = peak.CapacityGate(2, 100.0, threshold=0.85, probe_s=0.01, pause_s=0.0, quiet_s=0.0, probe=probe)
    assert gate() is True
    assert calls == [(2, 0.01)] * 3                      # 50 and 84 are below 85 % of 100
    assert gate() is True and len(calls) == 4            # the machine is back: one probe
    st = gate.stats()
    assert (st["checks"], st["waited"], st["short"]) == (2, 1, 0)


def test_capacity_gate_gives_up_after_max_wait_and_counts_the_block_short():
    probe, calls = _fake_probe([10.0])
    gate = peak.CapacityGate(1, 100.0, pause_s=0.001, max_wait_s=0.02, quiet_s=0.0, probe=probe)
    assert gate() is False
    assert len(calls) >= 2
    st = gate.stats()
    assert (st["checks"], st["waited"], st["short"]) == (1, 1, 1) and st["waited_s"] >= 0.02


@pytest.mark.parametrize("kw, match", [({"reference": 0.0}, "reference"), ({"threshold": 1.5}, "threshold"),
                                       ({"threshold": 0.0}, "threshold")])
def test_capacity_gate_rejects_bad_settings(kw, match):
    args = {"threads": 1, "reference": 100.0, **kw}
    with pytest.raises(ValueError, match=match):
        peak.CapacityGate(**args)


def test_interleaved_measurement_gates_every_block():
    order = []
    contenders = [Contender(name, lambda name=name: order.append(name)) for name in "ab"]

    def gate():
        order.append("G")
        return True
    measure_interleaved(contenders, repeats=4, warmup=0, min_sample_s=0.0, settle_s=0.0, rounds=2, gate=gate)
    # calibration calls, then each block: the gate, a waking call, 2 samples
    assert "".join(order[2:]) == "GaaaGbbb" + "GbbbGaaa"


def test_run_figure_records_what_the_gate_did():
    from fastconv.bench.timing import run_figure
    probe, calls = _fake_probe([100.0])
    gate = peak.CapacityGate(1, 100.0, pause_s=0.0, quiet_s=0.0, probe=probe)
    torch = import_torch()
    r = run_figure(select(["tiny"])[0], "fwd", 1, torch=torch, repeats=1, warmup=0, min_sample_s=0.0,
                   settle_s=0.0, gate=gate)
    blocks = 3 if torch is not None else 2      # one round: a block per contender
    assert r.gate["checks"] == blocks + 1 == len(calls)  # and the back-to-back check
    assert r.gate["waited"] == r.gate["short"] == 0


def test_openblas_warning(monkeypatch):
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    monkeypatch.delenv("OPENBLAS_L2_SIZE", raising=False)
    assert openblas_warning() is None
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    assert "env -u OPENBLAS_CORETYPE" in openblas_warning()


def test_peak_probe_positive():
    if not peak.available():
        pytest.skip(peak.MISSING)
    value = peak.fma_peak_gflops("f32", 1, seconds=0.01, trials=1)
    assert value > 0 and math.isfinite(value)
    assert peak.fma_peak_gflops("f64", 1, seconds=0.01, trials=1) > 0


def test_cli_end_to_end(tmp_path, capsys):
    path = tmp_path / "bench.json"
    status = cli.main(["--shapes", "tiny", "--custom", "1,2,6,6,2,3,1,0,1,1,f64", "--threads", "1",
                       "--repeats", "1", "--warmup", "1", "--min-sample-ms", "0", "--settle-ms", "0",
                       "--peak-seconds", "0.005", "--no-progress", "--capacity-gate", "0",
                       "--json", str(path)])
    assert status == 0
    out = capsys.readouterr().out
    assert "FMA peak" in out and "geometric mean of numpy_time / fastconv_time" in out
    assert "capacity gate: off" in out
    doc = json.loads(path.read_text())
    assert set(doc) == {"schema", "environment", "peak_gflops", "settings", "results", "summary"}
    for key in ("command", "fastconv_version", "numpy_version", "torch_version", "isa", "threads", "cpu"):
        assert key in doc["environment"]
    assert set(doc["peak_gflops"]) == {"f32", "f64"}
    assert len(doc["results"]) == 6
    for r in doc["results"]:
        for key in ("shape", "pass", "threads", "dtype", "algorithm", "flops", "ms", "gflops", "pct_peak",
                    "ratio_torch", "ratio_numpy", "workspace_bytes", "workspace_limit_bytes", "workspace_ok"):
            assert key in r
        assert r["algorithm"] in ("direct", "im2col") and r["ms"]["fastconv"] > 0 and r["ratio_numpy"] > 0
        assert max(r["max_rel_diff"].values()) < 1e-3
    assert {r["shape"] for r in doc["results"]} == {"tiny", "custom1"}
    assert all(r["gate"] is None for r in doc["results"]) and doc["settings"]["capacity_gate"] == 0
    assert set(doc["summary"]["geomean_ratio_numpy"]) == {"all", "1"}
    assert doc["summary"]["mismatches"] == []


def test_progress_without_tqdm(monkeypatch, capsys):
    real = cli.importlib.util.find_spec
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name, *a: None if name == "tqdm" else real(name, *a))
    step = cli._progress(2, True)
    for label in ("a fwd 1t", "b fwd 1t", "done"):
        step(label)
    assert capsys.readouterr().err.splitlines() == ["[1/2] a fwd 1t", "[2/2] b fwd 1t"]


def test_cli_rejects_bad_arguments():
    for argv in (["--shapes", "nope"], ["--passes", "sideways"], ["--threads", "0"], ["--capacity-gate", "1.5"],
                 ["--capacity-gate", "-0.1"]):
        with pytest.raises(SystemExit):
            cli.main(argv)


def test_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    from fastconv.bench.plot import plot_ratios
    from fastconv.bench.timing import run_figure

    r = run_figure(select(["tiny"])[0], "fwd", 1, repeats=1, warmup=0, min_sample_s=0.0, settle_s=0.0)
    plot_ratios([r], str(tmp_path / "r.png"))
    assert (tmp_path / "r.png").stat().st_size > 1000
