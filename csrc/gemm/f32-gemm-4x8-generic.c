/*
 * f32-gemm-4x8-generic.c: f32 GEMM micro-kernel, 4 x 8 tile, portable C.
 *
 * Builds on any C11 compiler; at -O3 GCC and Clang unroll the fixed-size loops, keep the
 * 4 x 8 accumulator tile in registers and vectorise the j loop (on x86-64's SSE2 baseline:
 * 8 accumulators of 16 bytes + B + broadcast A fit the 16 xmm registers).
 * Used when the CPU has neither AVX2+FMA nor AVX-512F, or when forced (FASTCONV_ISA=generic).
 * Packed A: a[p*MR + i]; packed B: b[p*NR + j]. See gemm.h for the contract.
 */
#include <stdint.h>

#include "gemm.h"

#define MR 4
#define NR 8

void fc_f32_gemm_ukernel_4x8__generic(int64_t kc, const void *ap, const void *bp, void *cp, int64_t rsc,
                                     const void *alphap, int beta, const void *biasp)
{
    const float *restrict a = (const float *)ap;
    const float *restrict b = (const float *)bp;
    float *restrict c = (float *)cp;
    const float *restrict bias = (const float *)biasp;
    float acc[MR][NR];

    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++)
            acc[i][j] = 0;
    for (int64_t p = 0; p < kc; p++) {
        for (int i = 0; i < MR; i++) {
            const float ai = a[i];
            for (int j = 0; j < NR; j++)
                acc[i][j] += ai * b[j];
        }
        a += MR;
        b += NR;
    }

    /* Epilogue: (alpha * acc) + C + bias, in that order. */
    const float alpha = *(const float *)alphap;
    if (alpha != (float)1)
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++)
                acc[i][j] *= alpha;
    if (beta)
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++)
                acc[i][j] += c[i * rsc + j];
    if (bias)
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++)
                acc[i][j] += bias[i];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++)
            c[i * rsc + j] = acc[i][j];
}
