"""Fork safety (csrc/threads.c): a conv in a forked child is correct and never hangs.

GNU libgomp's thread pool does not survive fork(): before the at-fork handler, a child
forked after a 2-thread conv2d waited forever. Each scenario runs in its own Python
process under a time limit, so a regression fails here instead of hanging the suite.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import fastconv
from fastconv import _core

import helpers as H

pytestmark = pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="os.fork() needs a POSIX system")

# Every scenario script prints one JSON line; `problem()` is large enough (well above the
# driver's 32k multiply-add serial threshold) that the parent really runs a 2-thread team.
PRELUDE = textwrap.dedent('''
    import json, multiprocessing as mp, os, sys
    import numpy as np
    import fastconv
    from fastconv import _core

    def problem():
        rng = np.random.default_rng(0)
        x = rng.standard_normal((4, 16, 20, 20)).astype(np.float32)
        w = rng.standard_normal((24, 16, 3, 3)).astype(np.float32)
        gy = rng.standard_normal((4, 24, 20, 20)).astype(np.float32)
        return x, w, gy

    def all_passes(_=None):
        x, w, gy = problem()
        y = fastconv.conv2d(x, w, padding=1)
        gx, gw, gb = fastconv.conv2d_backward(gy, x, w, padding=1)
        import hashlib
        return [hashlib.sha256(a.tobytes()).hexdigest() for a in (y, gx, gw, gb)]

    def in_worker(_=None):
        return {"passes": all_passes(), "threads": fastconv.get_num_threads(),
                "fork_serial": _core.fork_serial()}
''')


def _run(body: str, tmp_path, timeout: float = 90.0) -> dict:
    script = tmp_path / "scenario.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    try:
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              timeout=timeout, cwd=str(tmp_path), env=H.child_env())
    except subprocess.TimeoutExpired as exc:  # the bug this file guards against
        pytest.fail(f"scenario hung for {timeout:.0f} s (a forked child waiting on a dead OpenMP pool?)\n"
                    f"stdout: {exc.stdout}\nstderr: {exc.stderr}")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fork_and_report(child_body: str) -> str:
    """Code that forks, runs ``child_body`` (which sets ``out``) in the child and sends
    ``out`` back through a pipe; the parent waits at most 30 s for it."""
    return textwrap.dedent('''
        def fork_and_report(child):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                try:
                    out = child()
                    os.write(w, json.dumps(out).encode())
                finally:
                    os._exit(0)
            os.close(w)
            import select
            ready, _, _ = select.select([r], [], [], 30.0)
            if not ready:
                os.kill(pid, 9)
                raise SystemExit("child hung")
            data = b""
            while True:
                chunk = os.read(r, 1 << 16)
                if not chunk:
                    break
                data += chunk
            os.waitpid(pid, 0)
            return json.loads(data)
    ''') + textwrap.dedent(child_body)


@pytest.mark.skipif(not _core.openmp_enabled(), reason="built without OpenMP: no team to lose in a fork")
def test_child_forked_after_a_team_started_runs_serially_and_matches_the_parent(tmp_path):
    out = _run(_fork_and_report('''
        fastconv.set_num_threads(2)
        parent = all_passes()               # starts libgomp's pool in the parent
        child = fork_and_report(in_worker)
        grandchild = fork_and_report(lambda: fork_and_report(in_worker))
        print(json.dumps({"parent": parent, "parent_serial": _core.fork_serial(),
                          "child": child, "grandchild": grandchild}))
    '''), tmp_path)
    assert out["parent_serial"] is False
    for who in ("child", "grandchild"):
        assert out[who]["passes"] == out["parent"], f"{who}'s results differ from the parent's"
        assert out[who]["fork_serial"] is True
        assert out[who]["threads"] == 1, "get_num_threads() must say what the child really uses"


@pytest.mark.skipif(not _core.openmp_enabled(), reason="built without OpenMP")
def test_child_forked_before_any_team_keeps_its_threads(tmp_path):
    out = _run(_fork_and_report('''
        fastconv.set_num_threads(2)
        child = fork_and_report(in_worker)   # no team has started yet in the parent
        parent = all_passes()
        print(json.dumps({"parent": parent, "child": child}))
    '''), tmp_path)
    assert out["child"]["passes"] == out["parent"]
    assert out["child"]["fork_serial"] is False
    assert out["child"]["threads"] == 2


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_multiprocessing_pool_workers_match_the_parent(tmp_path, method):
    out = _run(f'''
        if __name__ == "__main__":
            fastconv.set_num_threads(2)
            parent = all_passes()            # the team is running before the pool starts
            ctx = mp.get_context({method!r})
            with ctx.Pool(2) as pool:
                workers = pool.map(in_worker, range(4))
            print(json.dumps({{"parent": parent, "workers": workers}}))
    ''', tmp_path)
    assert len(out["workers"]) == 4
    for res in out["workers"]:
        assert res["passes"] == out["parent"]
        if method == "fork" and _core.openmp_enabled():
            assert res["fork_serial"] is True and res["threads"] == 1
        else:  # a fresh interpreter: its own, working OpenMP pool
            assert res["fork_serial"] is False


def test_parent_is_never_serial():
    assert _core.fork_serial() is False
    with fastconv.threads(2):
        assert fastconv.get_num_threads() == 2


@pytest.mark.skipif(not _core.openmp_enabled(), reason="built without OpenMP")
def test_threadpoolctl_sees_and_limits_fastconvs_openmp():
    threadpoolctl = pytest.importorskip("threadpoolctl", reason="threadpoolctl is not installed")
    libs = [info for info in threadpoolctl.threadpool_info() if info["user_api"] == "openmp"]
    assert libs, "threadpoolctl finds no OpenMP runtime in a process that imported fastconv"
    core_path = _core.__file__
    # The runtime our extension links (libgomp from a source build, the renamed copy
    # auditwheel bundles in a wheel) is among them.
    linked = _linked_openmp(core_path)
    if linked:
        assert any(linked in info["filepath"] for info in libs), (linked, libs)
    before = fastconv.get_num_threads()
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert fastconv.get_num_threads() == 1
    assert fastconv.get_num_threads() == before


def _linked_openmp(path: str) -> str:
    """Basename of the OpenMP runtime the extension links, from ldd (Linux), or ''."""
    try:
        out = subprocess.run(["ldd", path], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    for line in out.splitlines():
        name = line.strip().split(" ")[0]
        if name.startswith(("libgomp", "libomp", "libiomp")):
            return name
    return ""
