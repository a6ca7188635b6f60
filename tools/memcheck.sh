#!/usr/bin/env bash
# tools/memcheck.sh: valgrind memcheck over tools/memcheck_touch.py (every kernel, small).
#
#   tools/memcheck.sh                 the in-place build (src/) if there is one, else the
#                                     installed fastconv; a PYTHONPATH you set wins
#   tools/memcheck.sh -- ARGS         extra valgrind arguments (e.g. --track-origins=yes)
#
# Exit status: 1 when valgrind reports any error (invalid read/write, use of uninitialised
# memory, invalid free, a definite leak) or the touch script's results are wrong.
#
# Environment
#   PYTHON                  interpreter (default python3)
#   FASTCONV_MEMCHECK_SKIP_TILED=1   skip the one larger (several im2col tiles) problem
#
# Notes
#   - PYTHONMALLOC=malloc: CPython's small-object allocator is bypassed, so valgrind sees
#     every allocation and CPython needs (almost) no suppressions; the few left for
#     CPython/numpy initialisation are in tools/valgrind-python.supp.
#   - OpenMP at one thread (OMP_NUM_THREADS=1, and the script sets fastconv's count to 1).
#   - valgrind emulates no AVX-512: under it the CPU reports AVX2 at best, so the script
#     covers the generic and AVX2 kernels (tools/sanitize.sh covers AVX-512 natively).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python3}
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) extra+=("$1") ;;
    esac
    shift
done

if ! command -v valgrind >/dev/null; then
    echo "memcheck.sh: valgrind is not installed (apt-get install valgrind)" >&2
    exit 2
fi

# A PYTHONPATH given by the caller is used as it is; otherwise the in-place build.
if [ -z "${PYTHONPATH:-}" ] && compgen -G "$repo/src/fastconv/_core*.so" >/dev/null; then
    export PYTHONPATH="$repo/src"
fi
"$py" -c "import fastconv, fastconv._core as c; print('memcheck.sh: testing', c.__file__)"
# The interpreter binary itself (not a wrapper script such as a pyenv shim, which valgrind
# would check instead of Python).
py=$("$py" -c "import sys; print(sys.executable)")

export PYTHONMALLOC=malloc OMP_NUM_THREADS=1 PYTHONFAULTHANDLER=1 FASTCONV_MEMCHECK_UNINIT=1
exec valgrind \
    --tool=memcheck \
    --error-exitcode=1 \
    --leak-check=full \
    --show-leak-kinds=definite \
    --errors-for-leak-kinds=definite \
    --num-callers=40 \
    --suppressions="$repo/tools/valgrind-python.supp" \
    "${extra[@]}" \
    "$py" "$repo/tools/memcheck_touch.py"
