/*
 * f64-gemm-8x24-avx512.c: f64 GEMM micro-kernel, 8 x 24 tile, AVX-512F.
 *
 * Tile choice: 32 zmm registers hold 8 rows x 3 vectors = 24 accumulators, 3 vectors of B
 * and the broadcast A value. 24 independent FMA chains cover Zen4's one 512-bit FMA per
 * cycle at 4 cycles of latency; per k step 3 vector loads of B and 8 broadcasts of A feed
 * 24 FMAs. MR = 8 divides the channel counts of CNN layers, so products with m = C_out have
 * no padded rows; NR = 24 divides 288 = 32 x 3 x 3 and measured faster than 8x16 and 14x16
 * on square and convolution shapes. Alone on L1-resident panels: ~56 GFLOP/s, ~96% of peak.
 *
 * C tile rows are contiguous (unit column stride): each row of the tile is 3 vectors of
 * 8 doubles, each packed A value is broadcast against them. Packed A: a[p*8 + i];
 * packed B: b[p*24 + j], 64-byte aligned. See gemm.h for the contract.
 *
 * Besides the full kernel, narrower entry points (_n8, _n16) compute and store only the
 * first 8 / 16 columns of the tile (B keeps its row stride of 24): the driver uses them for the
 * last, partial micro-panel of a row of tiles, so that e.g. n = 512 costs 512
 * columns of work, not 528. Each element gets the same operations in the same order
 * in every variant, so the results are bitwise those of the full kernel.
 */
#include <stdint.h>

#include "gemm.h"

#ifdef FC_GEMM_HAVE_X86_KERNELS
#include "../isa_target.h"
FC_TARGET_PUSH("avx512f")
#include <immintrin.h>

#define MR 8
#define NR 24
#define VL 8 /* doubles per vector */

/* The kernel for the first nvu (a compile-time constant at each call) of the 3 vectors. */
static inline __attribute__((always_inline)) void ukernel(int64_t kc, const double *restrict a,
                                                          const double *restrict b, double *restrict c,
                                                          int64_t rsc, double alpha, int beta,
                                                          const double *restrict bias, const int nvu)
{
#define ACC_DECL(i) __m512d c##i##_0 = _mm512_setzero_pd(), c##i##_1 = _mm512_setzero_pd(), c##i##_2 = _mm512_setzero_pd();
    ACC_DECL(0) ACC_DECL(1) ACC_DECL(2) ACC_DECL(3) ACC_DECL(4) ACC_DECL(5) ACC_DECL(6) ACC_DECL(7)

    /* Fetch the C tile early: it is read (beta) and written only after the k loop. */
    for (int i = 0; i < MR; i++) {
        for (int j = 0; j < nvu * VL; j += 64 / (int)sizeof(double))
            _mm_prefetch((const char *)(c + i * rsc + j), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * rsc + nvu * VL - 1), _MM_HINT_T0);
    }

    for (int64_t p = 0; p < kc; p++) {
        const __m512d b0 = _mm512_load_pd(b + 0 * VL);
        const __m512d b1 = 1 < nvu ? _mm512_load_pd(b + 1 * VL) : _mm512_setzero_pd();
        const __m512d b2 = 2 < nvu ? _mm512_load_pd(b + 2 * VL) : _mm512_setzero_pd();
#define STEP(i) \
    { \
        const __m512d ai = _mm512_set1_pd(a[i]); \
        c##i##_0 = _mm512_fmadd_pd(ai, b0, c##i##_0); \
        if (1 < nvu) { c##i##_1 = _mm512_fmadd_pd(ai, b1, c##i##_1); } \
        if (2 < nvu) { c##i##_2 = _mm512_fmadd_pd(ai, b2, c##i##_2); } \
    }
        STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7)
#undef STEP
        a += MR;
        b += NR;
    }

    /* Epilogue: (alpha * acc) + C + bias, in that order, for every tile (partial tiles come
       here through a temporary tile, so they round exactly like full ones). */
    if (alpha != (double)1) {
        const __m512d va = _mm512_set1_pd(alpha);
#define SCALE(i) c##i##_0 = _mm512_mul_pd(c##i##_0, va); if (1 < nvu) { c##i##_1 = _mm512_mul_pd(c##i##_1, va); } if (2 < nvu) { c##i##_2 = _mm512_mul_pd(c##i##_2, va); }
        SCALE(0) SCALE(1) SCALE(2) SCALE(3) SCALE(4) SCALE(5) SCALE(6) SCALE(7)
#undef SCALE
    }
    if (beta) {
#define ADDC(i) \
    c##i##_0 = _mm512_add_pd(c##i##_0, _mm512_loadu_pd(c + (i) * rsc + 0 * VL)); \
    if (1 < nvu) { c##i##_1 = _mm512_add_pd(c##i##_1, _mm512_loadu_pd(c + (i) * rsc + 1 * VL)); } \
    if (2 < nvu) { c##i##_2 = _mm512_add_pd(c##i##_2, _mm512_loadu_pd(c + (i) * rsc + 2 * VL)); }
        ADDC(0) ADDC(1) ADDC(2) ADDC(3) ADDC(4) ADDC(5) ADDC(6) ADDC(7)
#undef ADDC
    }
    if (bias) {
#define ADDBIAS(i) \
    { \
        const __m512d vb = _mm512_set1_pd(bias[i]); \
        c##i##_0 = _mm512_add_pd(c##i##_0, vb); \
        if (1 < nvu) { c##i##_1 = _mm512_add_pd(c##i##_1, vb); } \
        if (2 < nvu) { c##i##_2 = _mm512_add_pd(c##i##_2, vb); } \
    }
        ADDBIAS(0) ADDBIAS(1) ADDBIAS(2) ADDBIAS(3) ADDBIAS(4) ADDBIAS(5) ADDBIAS(6) ADDBIAS(7)
#undef ADDBIAS
    }
#define STORE(i) _mm512_storeu_pd(c + (i) * rsc + 0 * VL, c##i##_0); if (1 < nvu) { _mm512_storeu_pd(c + (i) * rsc + 1 * VL, c##i##_1); } if (2 < nvu) { _mm512_storeu_pd(c + (i) * rsc + 2 * VL, c##i##_2); }
    STORE(0) STORE(1) STORE(2) STORE(3) STORE(4) STORE(5) STORE(6) STORE(7)
#undef STORE
#undef ACC_DECL
}

void fc_f64_gemm_ukernel_8x24__avx512(int64_t kc, const void *a, const void *b, void *c, int64_t rsc,
                                     const void *alpha, int beta, const void *bias)
{
    ukernel(kc, (const double *)a, (const double *)b, (double *)c, rsc, *(const double *)alpha, beta,
            (const double *)bias, 3);
}

void fc_f64_gemm_ukernel_8x24_n16__avx512(int64_t kc, const void *a, const void *b, void *c, int64_t rsc,
                                         const void *alpha, int beta, const void *bias)
{
    ukernel(kc, (const double *)a, (const double *)b, (double *)c, rsc, *(const double *)alpha, beta,
            (const double *)bias, 2);
}

void fc_f64_gemm_ukernel_8x24_n8__avx512(int64_t kc, const void *a, const void *b, void *c, int64_t rsc,
                                        const void *alpha, int beta, const void *bias)
{
    ukernel(kc, (const double *)a, (const double *)b, (double *)c, rsc, *(const double *)alpha, beta,
            (const double *)bias, 1);
}

FC_TARGET_POP
#endif /* FC_GEMM_HAVE_X86_KERNELS */
