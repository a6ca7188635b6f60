"""The kernels under the blocking another CPU gets, checked here on whatever CPU runs the tests.

The blocks, tiles and kernel rules follow what cpu_info detects (caches, 512-bit FMA pipes)
and the vendor (where the GEMM's B panel lives). A CPU with other caches takes other tile
sizes, other batch chunks and other narrow-group rules, so other code paths and summation
orders than the development machine. Each profile below runs in a child process with the
FASTCONV_CPU_* / FASTCONV_GEMM_PANEL overrides and checks every pass of a set of layers
against fastconv.reference, bitwise across thread counts, under each ISA this CPU runs.
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys

import pytest

import helpers as H
from fastconv import _core

PROFILES = {
    # an Intel Xeon server core: 48 KiB L1d, 2 MiB L2, mesh L3, two 512-bit FMA pipes
    "xeon": dict(FASTCONV_CPU_L1D="48K", FASTCONV_CPU_L2="2M", FASTCONV_CPU_L3="105M",
                 FASTCONV_CPU_FMA512_PORTS="2", FASTCONV_GEMM_PANEL="l2"),
    # a small-cache core (client parts, Zen 3's 512 KiB L2), one 512-bit pipe
    "small": dict(FASTCONV_CPU_L1D="32K", FASTCONV_CPU_L2="512K", FASTCONV_CPU_L3="8M",
                  FASTCONV_CPU_FMA512_PORTS="1", FASTCONV_GEMM_PANEL="l3"),
}

# (N, C, H, W, K, k, stride, padding, dilation, groups): a 3x3 layer of many channels (more
# than one row tile under a small L2), a valid one, a 7x7 late layer (image blocks in the
# weight gradient), stride 2, dilation, grouped (packed groups), a pointwise expand layer and
# its projection, a depthwise one, a stem.
LAYERS = [
    (2, 96, 30, 30, 64, 3, 1, 1, 1, 1),
    (5, 16, 13, 13, 40, 3, 1, 0, 1, 1),
    (6, 64, 7, 7, 48, 3, 1, 1, 1, 1),
    (3, 24, 15, 15, 32, 3, 2, 1, 1, 1),
    (2, 16, 17, 17, 16, 3, 1, 2, 2, 1),
    (2, 32, 12, 12, 32, 3, 1, 1, 1, 4),
    (3, 12, 14, 14, 72, 1, 1, 0, 1, 1),
    (3, 72, 14, 14, 12, 1, 1, 0, 1, 1),
    (2, 32, 16, 16, 32, 3, 1, 1, 1, 32),
    (1, 3, 40, 40, 16, 7, 2, 3, 1, 1),
]

CHILD = r"""
import json, sys
import numpy as np
import fastconv, helpers as H
from fastconv import _core, functional as F
from fastconv._spec import make_spec
layers, isas = json.loads(sys.argv[1]), json.loads(sys.argv[2])
rng = np.random.default_rng(12)
info = _core.cpu_info()
checked = 0
ws = {}
for isa in isas:
    assert _core.set_isa(isa) == isa
    for dtype in (np.float32, np.float64):
        for (n, c, h, w, k, kk, s, p, d, g) in layers:
            x = rng.uniform(-1, 1, (n, c, h, w)).astype(dtype)
            wt = rng.uniform(-1, 1, (k, c // g, kk, kk)).astype(dtype)
            y0, yb = H.ref_forward(x, wt, None, s, p, d, g)
            gy = rng.uniform(-1, 1, y0.shape).astype(dtype)
            gx0, gxb = H.ref_input_grad(gy, wt, x.shape, s, p, d, g)
            gw0, gwb = H.ref_weight_grad(gy, x, wt.shape, s, p, d, g)
            first = None
            for nt in (1, 2, 3):
                fastconv.set_num_threads(nt)
                got = (F.conv2d(x, wt, None, s, p, d, g),
                       F.conv2d_input_grad(gy, wt, x.shape, s, p, d, g),
                       F.conv2d_weight_grad(gy, x, wt.shape, s, p, d, g))
                if first is None:
                    first = got
                    for a, e, b, what in zip(got, (y0, gx0, gw0), (yb, gxb, gwb), ("fwd", "bwd_data", "bwd_weights")):
                        H.assert_close_to_reference(a, e, b, dtype, what=f"{what} {(n, c, h, w, k, kk, s, p, d, g)}")
                else:
                    for a, b0 in zip(got, first):
                        assert np.array_equal(a, b0), f"{nt} threads changed a result of {(n, c, h, w, k, kk, s, p, d, g)}"
                checked += 3
fastconv.set_num_threads(2)
big = make_spec((8, 256, 28, 28), (256, 256, 3, 3), 1, 1, 1, 1, np.dtype(np.float32))
print(json.dumps({"checked": checked, "l2": info["l2"], "ports": info["fma512_ports"],
                  "blocks": _core.gemm_blocking(np.float32),
                  "workspace": [F.workspace_bytes(big, pass_) for pass_ in (0, 1, 2)]}))
"""


def _isas():
    return [i for i in (2, 1, 0) if i <= _core.best_isa()][:2]  # the best two: what a CPU runs


@functools.lru_cache(maxsize=None)
def _run(profile: str) -> dict:
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    env = H.child_env(**PROFILES[profile])
    env["PYTHONPATH"] = os.pathsep.join([tests_dir, env["PYTHONPATH"]])
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(LAYERS), json.dumps(_isas())],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_layers_match_the_reference_under_another_cpus_blocking(profile):
    out = _run(profile)
    assert out["checked"] == 3 * 3 * 2 * len(LAYERS) * len(_isas())
    # the overrides took: the child's blocking is the profile's, not this CPU's
    assert out["l2"] == {"xeon": 2 << 20, "small": 512 << 10}[profile]
    if _core.best_isa() >= 2:
        assert out["ports"] == int(PROFILES[profile]["FASTCONV_CPU_FMA512_PORTS"])
    assert out["blocks"]["panel"] == PROFILES[profile]["FASTCONV_GEMM_PANEL"]


def test_the_profiles_take_other_blocks():
    """Not the same code paths twice: the GEMM's blocks and the conv passes' tiles (their
    workspaces) differ between the two profiles."""
    xeon, small = _run("xeon"), _run("small")
    assert xeon["blocks"] != small["blocks"]
    assert xeon["workspace"] != small["workspace"]
