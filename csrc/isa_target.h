/*
 * isa_target.h: compile a region of a file for one instruction set, with gcc or clang.
 *
 *   FC_TARGET_PUSH("avx2,fma")        every function until FC_TARGET_POP gets that target
 *   FC_TARGET_PUSH_WIDE("avx512f,...") the same, and gcc keeps autovectorised loops at
 *                                      512 bits (prefer-vector-width=512; clang ignores it)
 *   FC_TARGET_POP
 *
 * gcc: #pragma GCC push_options / target. clang: #pragma clang attribute push with
 * __attribute__((target)); the intrinsics and libc headers are included first so that the
 * attribute lands on fastconv's functions only. One build thus carries every ISA's kernels
 * and picks one at run time (cpu.c), without -march.
 */
#ifndef FASTCONV_ISA_TARGET_H
#define FASTCONV_ISA_TARGET_H

#define FC_PRAGMA_(x) _Pragma(#x)
#define FC_PRAGMA(x) FC_PRAGMA_(x)

#if defined(__clang__)
#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#define FC_TARGET_PUSH(isa) FC_PRAGMA(clang attribute push(__attribute__((target(isa))), apply_to = function))
#define FC_TARGET_PUSH_WIDE(isa) FC_TARGET_PUSH(isa)
#define FC_TARGET_POP FC_PRAGMA(clang attribute pop)
#elif defined(__GNUC__)
#define FC_TARGET_PUSH(isa) FC_PRAGMA(GCC push_options) FC_PRAGMA(GCC target(isa))
#define FC_TARGET_PUSH_WIDE(isa) FC_PRAGMA(GCC push_options) FC_PRAGMA(GCC target(isa, "prefer-vector-width=512"))
#define FC_TARGET_POP FC_PRAGMA(GCC pop_options)
#else
#error "isa_target.h: the x86 kernels need gcc or clang (other compilers build the generic kernels only)"
#endif

#endif /* FASTCONV_ISA_TARGET_H */
