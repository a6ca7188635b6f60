#!/usr/bin/env bash
# Compile every C source under csrc/ with other compilers and for another architecture,
# warnings as errors, and link them into one shared object (no Python needed):
#   - clang (x86-64, with OpenMP through libomp): the ISA kernels' target pragmas and
#     intrinsics must build with clang too;
#   - aarch64-linux-gnu-gcc (Debian's cross compiler): on a non-x86 CPU only the generic
#     kernels exist, so every x86 file must compile to nothing there.
# Usage: bash tools/check_portability.sh   (apt-get install clang libomp-dev gcc-aarch64-linux-gnu)
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0

build() {  # build NAME CC FLAGS...
    local name=$1 cc=$2
    shift 2
    if ! command -v "$cc" >/dev/null 2>&1; then
        echo "check_portability: $cc not found (apt-get install clang libomp-dev gcc-aarch64-linux-gnu)" >&2
        status=1
        return
    fi
    mkdir -p "$out/$name"
    local objs=()
    for src in $(find csrc -name '*.c' | sort); do
        local obj="$out/$name/$(echo "$src" | tr '/' '_').o"
        "$cc" -std=gnu11 -O2 -fPIC -Wall -Werror -Wno-unused-function -Wno-unknown-pragmas -Icsrc "$@" -c "$src" -o "$obj"
        objs+=("$obj")
    done
    "$cc" -shared "$@" "${objs[@]}" -o "$out/$name/libfastconv_kernels.so"
    echo "check_portability: OK $name ($("$cc" --version | head -1); ${#objs[@]} files; $(file -b "$out/$name/libfastconv_kernels.so" | cut -d, -f1-2))"
}

build clang-x86_64 clang -fopenmp
build gcc-aarch64 aarch64-linux-gnu-gcc -fopenmp
# The aarch64 object must hold no x86 kernel: the generic ones alone.
if [ -f "$out/gcc-aarch64/libfastconv_kernels.so" ]; then
    if aarch64-linux-gnu-nm -D "$out/gcc-aarch64/libfastconv_kernels.so" 2>/dev/null | grep -qi 'avx'; then
        echo "check_portability: aarch64 build exports AVX symbols" >&2
        status=1
    fi
fi
exit $status
