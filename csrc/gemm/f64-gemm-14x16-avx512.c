/*
 * f64-gemm-14x16-avx512.c: f64 GEMM micro-kernel, 14 x 16 tile, AVX-512F.
 *
 * Tile choice: 32 zmm registers: 14 rows x 2 vectors = 28 accumulators + 2 B vectors + 1 broadcast
 * A value = 31 registers. Per k step: 2 vector loads of B, 14 broadcasts of A, 28 FMAs, so the
 * FMA pipe (one 512-bit FMA per cycle on Zen4, latency 4) is never starved by loads and
 * every accumulator has 28/4 cycles of independent work between its FMAs.
 *
 * C tile rows are contiguous (unit column stride): each row of the tile is 2 vectors of
 * 8 doubles, each packed A value is broadcast against them. Packed A: a[p*14 + i];
 * packed B: b[p*16 + j], 64-byte aligned. See gemm.h for the contract.
 */
#include <stdint.h>

#include "gemm.h"

#ifdef FC_GEMM_HAVE_X86_KERNELS
#pragma GCC target("avx512f")
#include <immintrin.h>

#define MR 14
#define NR 16
#define VL 8 /* doubles per vector */

void fc_f64_gemm_ukernel_14x16__avx512(int64_t kc, const void *ap, const void *bp, void *cp, int64_t rsc,
                                      const void *alphap, int beta, const void *biasp)
{
    const double *restrict a = (const double *)ap;
    const double *restrict b = (const double *)bp;
    double *restrict c = (double *)cp;
    const double *restrict bias = (const double *)biasp;

#define ACC_DECL(i) __m512d c##i##_0 = _mm512_setzero_pd(), c##i##_1 = _mm512_setzero_pd();
    ACC_DECL(0) ACC_DECL(1) ACC_DECL(2) ACC_DECL(3) ACC_DECL(4) ACC_DECL(5) ACC_DECL(6) ACC_DECL(7) ACC_DECL(8) ACC_DECL(9) ACC_DECL(10) ACC_DECL(11) ACC_DECL(12) ACC_DECL(13)

    /* Fetch the C tile early: it is read (beta) and written only after the k loop. */
    for (int i = 0; i < MR; i++) {
        _mm_prefetch((const char *)(c + i * rsc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * rsc + NR - 1), _MM_HINT_T0);
    }

    for (int64_t p = 0; p < kc; p++) {
        const __m512d b0 = _mm512_load_pd(b);
        const __m512d b1 = _mm512_load_pd(b + VL);
#define STEP(i)                                                  \
    {                                                            \
        const __m512d ai = _mm512_set1_pd(a[i]);          \
        c##i##_0 = _mm512_fmadd_pd(ai, b0, c##i##_0);       \
        c##i##_1 = _mm512_fmadd_pd(ai, b1, c##i##_1);       \
    }
        STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7) STEP(8) STEP(9) STEP(10) STEP(11) STEP(12) STEP(13)
#undef STEP
        a += MR;
        b += NR;
    }

    /* Epilogue: (alpha * acc) + C + bias, in that order, for every tile (partial tiles come
       here through a temporary tile, so they round exactly like full ones). */
    const double alpha = *(const double *)alphap;
    if (alpha != (double)1) {
        const __m512d va = _mm512_set1_pd(alpha);
#define SCALE(i) c##i##_0 = _mm512_mul_pd(c##i##_0, va); c##i##_1 = _mm512_mul_pd(c##i##_1, va);
        SCALE(0) SCALE(1) SCALE(2) SCALE(3) SCALE(4) SCALE(5) SCALE(6) SCALE(7) SCALE(8) SCALE(9) SCALE(10) SCALE(11) SCALE(12) SCALE(13)
#undef SCALE
    }
    if (beta) {
#define ADDC(i)                                                             \
    c##i##_0 = _mm512_add_pd(c##i##_0, _mm512_loadu_pd(c + (i) * rsc));            \
    c##i##_1 = _mm512_add_pd(c##i##_1, _mm512_loadu_pd(c + (i) * rsc + VL));
        ADDC(0) ADDC(1) ADDC(2) ADDC(3) ADDC(4) ADDC(5) ADDC(6) ADDC(7) ADDC(8) ADDC(9) ADDC(10) ADDC(11) ADDC(12) ADDC(13)
#undef ADDC
    }
    if (bias) {
#define ADDBIAS(i)                                      \
    {                                                   \
        const __m512d vb = _mm512_set1_pd(bias[i]);       \
        c##i##_0 = _mm512_add_pd(c##i##_0, vb);       \
        c##i##_1 = _mm512_add_pd(c##i##_1, vb);       \
    }
        ADDBIAS(0) ADDBIAS(1) ADDBIAS(2) ADDBIAS(3) ADDBIAS(4) ADDBIAS(5) ADDBIAS(6) ADDBIAS(7) ADDBIAS(8) ADDBIAS(9) ADDBIAS(10) ADDBIAS(11) ADDBIAS(12) ADDBIAS(13)
#undef ADDBIAS
    }
#define STORE(i) _mm512_storeu_pd(c + (i) * rsc, c##i##_0); _mm512_storeu_pd(c + (i) * rsc + VL, c##i##_1);
    STORE(0) STORE(1) STORE(2) STORE(3) STORE(4) STORE(5) STORE(6) STORE(7) STORE(8) STORE(9) STORE(10) STORE(11) STORE(12) STORE(13)
#undef STORE
#undef ACC_DECL
}

#endif /* FC_GEMM_HAVE_X86_KERNELS */
