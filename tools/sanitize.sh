#!/usr/bin/env bash
# tools/sanitize.sh: build fastconv with AddressSanitizer + UndefinedBehaviorSanitizer into
# its own virtual environment and run the tests under it.
#
#   tools/sanitize.sh            the whole tests/ suite
#   tools/sanitize.sh --quick    the CI subset: every kernel, pass, dtype, algorithm and ISA
#                                at small sizes (tests/test_hardening_*.py, not "slow")
#   tools/sanitize.sh [--quick] -- EXTRA PYTEST ARGS
#
# The build never touches the in-place build that others use: the source tree (tracked and
# untracked-but-not-ignored files) is copied to a temporary folder and `pip install`ed from
# there into $FASTCONV_SANITIZE_VENV (default .venv-sanitize, git-ignored). Tests then run
# from the repository with PYTHONPATH unset, so `import fastconv` is the sanitized build
# (checked before pytest starts).
#
# Environment
#   FASTCONV_SANITIZE        sanitizers (default address,undefined), passed to setup.py
#   FASTCONV_SANITIZE_VENV   the venv folder (default <repo>/.venv-sanitize); reused if present
#   FASTCONV_FUZZ_EXAMPLES   fuzz examples per fuzz test (test_hardening_fuzz.py's default if unset)
#   FASTCONV_SANITIZE_REBUILD=1  rebuild even if the sources did not change since the last build
#
# Exit status: non-zero when the build fails, the sanitized module does not load, or any
# test fails (an ASan/UBSan report aborts the process, which fails the run).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

mode=full
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) mode=quick ;;
        --full) mode=full ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) extra+=("$1") ;;
    esac
    shift
done

sanitize=${FASTCONV_SANITIZE:-address,undefined}
venv=${FASTCONV_SANITIZE_VENV:-$repo/.venv-sanitize}
py=${PYTHON:-python3}

# ---- the venv (created once; its packages kept current; fastconv rebuilt every run) ----
if [ ! -x "$venv/bin/python" ]; then
    echo "sanitize.sh: creating $venv"
    "$py" -m venv "$venv"
fi
vpy="$venv/bin/python"
# Build requirements (pyproject.toml's [build-system], kept current: a newer pyproject may
# need a newer setuptools) and the test requirements.
"$vpy" -m pip install --quiet --upgrade pip setuptools "Cython>=3.0" "numpy>=2.0" wheel \
    "pytest>=7" "pytest-benchmark>=4" "hypothesis>=6" 2>&1 | grep -v "^WARNING: Location" || true
"$vpy" -c "import numpy, Cython, setuptools, pytest, hypothesis, pytest_benchmark"

# ---- build from a private copy of the source tree --------------------------------------
src=$(mktemp -d "${TMPDIR:-/tmp}/fastconv-sanitize.XXXXXX")
trap 'rm -rf "$src"' EXIT
# Tracked files plus new files not yet committed (but nothing git ignores: no build/,
# no *.so, no generated _core.c, no venvs).
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
    [ -e "$f" ] || continue
    mkdir -p "$src/$(dirname "$f")"
    cp -p "$f" "$src/$f"
done

# Rebuild only when the sources (or the sanitizer list) changed since the last build.
hash=$( (echo "$sanitize"; cd "$src" && find . -type f ! -path './tests/*' ! -path './tools/*' \
         ! -path './benchmarks/*' -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16)
stamp="$venv/.fastconv-sanitize-build"
if [ -n "${FASTCONV_SANITIZE_REBUILD:-}" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$hash" ]; then
    echo "sanitize.sh: building fastconv with FASTCONV_SANITIZE=$sanitize into $venv"
    # Compile the extension's C files in parallel (setuptools' build_ext --parallel), in the
    # private copy only.
    printf '\n[build_ext]\nparallel = %s\n' "$(nproc 2>/dev/null || echo 2)" >> "$src/setup.cfg"
    rm -f "$stamp"
    if ! FASTCONV_SANITIZE="$sanitize" "$vpy" -m pip install --quiet --no-deps --no-build-isolation \
            --force-reinstall --no-cache-dir "$src" > "$src.build.log" 2>&1; then
        grep -v "^WARNING: Location" "$src.build.log" >&2 || true
        echo "sanitize.sh: the sanitized build FAILED" >&2
        rm -f "$src.build.log"
        exit 1
    fi
    rm -f "$src.build.log"
    echo "$hash" > "$stamp"
else
    echo "sanitize.sh: sources unchanged since the last sanitized build ($hash); not rebuilding"
fi

# ---- run-time environment --------------------------------------------------------------
preload=()
if [[ "$sanitize" == *address* ]]; then
    asan=$(gcc -print-file-name=libasan.so)
    if [ ! -e "$asan" ]; then
        echo "sanitize.sh: libasan.so not found (gcc -print-file-name=libasan.so gave $asan)" >&2
        exit 2
    fi
    preload+=("$asan")
fi
if [[ "$sanitize" == *undefined* && "$sanitize" != *address* ]]; then
    preload+=("$(gcc -print-file-name=libubsan.so)")
fi
run_env=(
    env -u PYTHONPATH
    LD_PRELOAD="${preload[*]:-}"
    # Python (and numpy) keep objects alive until exit by design: leaks are checked by
    # tests/test_hardening_leaks.py and tools/memcheck.sh instead. allocator_may_return_null:
    # a huge allocation fails (numpy raises MemoryError, as without ASan) instead of aborting.
    ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1"
    UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1"
    FASTCONV_UNDER_SANITIZER="$sanitize"
    # Tell CPython to use malloc for everything so ASan sees every allocation.
    PYTHONMALLOC=malloc
    PYTHONFAULTHANDLER=1
)

# The module under test must be the sanitized one from the venv, not src/ or another build.
"${run_env[@]}" "$vpy" - <<'EOF'
import os, sys
import fastconv, fastconv._core as core
so = core.__file__
assert os.path.realpath(sys.prefix) in os.path.realpath(so), f"fastconv._core from {so}, not the venv"
with open(so, "rb") as f:
    blob = f.read()
san = os.environ["FASTCONV_UNDER_SANITIZER"]
if "address" in san:
    assert b"__asan_init" in blob or b"__asan_report" in blob, f"{so} is not built with ASan"
if "undefined" in san:
    assert b"__ubsan_handle" in blob, f"{so} is not built with UBSan"
print(f"sanitize.sh: testing {so} ({san})")
fastconv.show_config()
EOF

if [ "$mode" = quick ]; then
    targets=(tests/test_hardening_fuzz.py tests/test_hardening_concurrency.py
             tests/test_hardening_limits.py tests/test_implicit.py tests/test_pointwise_wgrad.py
             tests/test_post_relu.py
             tests/test_winograd.py -m "not slow")
else
    targets=(tests)
fi

echo "sanitize.sh: pytest ${targets[*]} ${extra[*]:-}"
status=0
# --capture=sys: pytest captures sys.stdout/err only, so a sanitizer report (written to
# file descriptor 2 by C code just before it aborts the process) reaches the log instead of
# dying with pytest's capture file.
"${run_env[@]}" "$vpy" -m pytest -p no:cacheprovider -q --capture=sys "${targets[@]}" "${extra[@]}" || status=$?
if [ "$status" -ne 0 ]; then
    echo "sanitize.sh: FAILED (pytest exit status $status)" >&2
    exit "$status"
fi
echo "sanitize.sh: OK ($mode, $sanitize)"
