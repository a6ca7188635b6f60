/*
 * f32-gemm-6x16-avx2.c: f32 GEMM micro-kernel, 6 x 16 tile, AVX2 + FMA.
 *
 * Tile choice: 16 ymm registers: 6 rows x 2 vectors = 12 accumulators + 2 B vectors + 1 broadcast
 * A value = 15 registers. 12 independent FMA chains cover the 2 FMA pipes x 4 cycles of
 * latency; per k step 2 loads of B + 6 broadcasts for 12 FMAs.
 *
 * C tile rows are contiguous (unit column stride): each row of the tile is 2 vectors of
 * 8 floats, each packed A value is broadcast against them. Packed A: a[p*6 + i];
 * packed B: b[p*16 + j], 64-byte aligned. See gemm.h for the contract.
 *
 * Besides the full kernel, narrower entry points (_n8) compute and store only the
 * first 8 columns of the tile (B keeps its row stride of 16): the driver uses them for the
 * last, partial micro-panel of a row of tiles, so that e.g. n = 328 costs 328
 * columns of work, not 336. Each element gets the same operations in the same order
 * in every variant, so the results are bitwise those of the full kernel.
 */
#include <stdint.h>

#include "gemm.h"

#ifdef FC_GEMM_HAVE_X86_KERNELS
#include "../isa_target.h"
FC_TARGET_PUSH("avx2,fma")
#include <immintrin.h>

#define MR 6
#define NR 16
#define VL 8 /* floats per vector */

/* The kernel for the first nvu (a compile-time constant at each call) of the 2 vectors. */
static inline __attribute__((always_inline)) void ukernel(int64_t kc, const float *restrict a,
                                                          const float *restrict b, float *restrict c,
                                                          int64_t rsc, float alpha, int beta,
                                                          const float *restrict bias, const int nvu)
{
#define ACC_DECL(i) __m256 c##i##_0 = _mm256_setzero_ps(), c##i##_1 = _mm256_setzero_ps();
    ACC_DECL(0) ACC_DECL(1) ACC_DECL(2) ACC_DECL(3) ACC_DECL(4) ACC_DECL(5)

    /* Fetch the C tile early: it is read (beta) and written only after the k loop. */
    for (int i = 0; i < MR; i++) {
        for (int j = 0; j < nvu * VL; j += 64 / (int)sizeof(float))
            _mm_prefetch((const char *)(c + i * rsc + j), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * rsc + nvu * VL - 1), _MM_HINT_T0);
    }

#define STEP(i) \
    { \
        const __m256 ai = _mm256_set1_ps(a[i]); \
        c##i##_0 = _mm256_fmadd_ps(ai, b0, c##i##_0); \
        if (1 < nvu) { c##i##_1 = _mm256_fmadd_ps(ai, b1, c##i##_1); } \
    }
#define KSTEP() \
    { \
        const __m256 b0 = _mm256_load_ps(b + 0 * VL); \
        const __m256 b1 = 1 < nvu ? _mm256_load_ps(b + 1 * VL) : _mm256_setzero_ps(); \
        STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) \
        a += MR; \
        b += NR; \
    }
    int64_t p = 0;
    for (; p + 4 <= kc; p += 4) {
        _mm_prefetch((const char *)(b + 16 * NR), _MM_HINT_T0);
        _mm_prefetch((const char *)(b + 17 * NR), _MM_HINT_T0);
        _mm_prefetch((const char *)(b + 18 * NR), _MM_HINT_T0);
        _mm_prefetch((const char *)(b + 19 * NR), _MM_HINT_T0);
        KSTEP() KSTEP() KSTEP() KSTEP()
    }
    for (; p < kc; p++)
        KSTEP()
#undef KSTEP
#undef STEP

    /* Epilogue: (alpha * acc) + C + bias, in that order, for every tile (partial tiles come
       here through a temporary tile, so they round exactly like full ones). */
    if (alpha != (float)1) {
        const __m256 va = _mm256_set1_ps(alpha);
#define SCALE(i) c##i##_0 = _mm256_mul_ps(c##i##_0, va); if (1 < nvu) { c##i##_1 = _mm256_mul_ps(c##i##_1, va); }
        SCALE(0) SCALE(1) SCALE(2) SCALE(3) SCALE(4) SCALE(5)
#undef SCALE
    }
    if (beta) {
#define ADDC(i) \
    c##i##_0 = _mm256_add_ps(c##i##_0, _mm256_loadu_ps(c + (i) * rsc + 0 * VL)); \
    if (1 < nvu) { c##i##_1 = _mm256_add_ps(c##i##_1, _mm256_loadu_ps(c + (i) * rsc + 1 * VL)); }
        ADDC(0) ADDC(1) ADDC(2) ADDC(3) ADDC(4) ADDC(5)
#undef ADDC
    }
    if (bias) {
#define ADDBIAS(i) \
    { \
        const __m256 vb = _mm256_set1_ps(bias[i]); \
        c##i##_0 = _mm256_add_ps(c##i##_0, vb); \
        if (1 < nvu) { c##i##_1 = _mm256_add_ps(c##i##_1, vb); } \
    }
        ADDBIAS(0) ADDBIAS(1) ADDBIAS(2) ADDBIAS(3) ADDBIAS(4) ADDBIAS(5)
#undef ADDBIAS
    }
#define STORE(i) _mm256_storeu_ps(c + (i) * rsc + 0 * VL, c##i##_0); if (1 < nvu) { _mm256_storeu_ps(c + (i) * rsc + 1 * VL, c##i##_1); }
    STORE(0) STORE(1) STORE(2) STORE(3) STORE(4) STORE(5)
#undef STORE
#undef ACC_DECL
}

void fc_f32_gemm_ukernel_6x16__avx2(int64_t kc, const void *a, const void *b, void *c, int64_t rsc,
                                   const void *alpha, int beta, const void *bias)
{
    ukernel(kc, (const float *)a, (const float *)b, (float *)c, rsc, *(const float *)alpha, beta,
            (const float *)bias, 2);
}

void fc_f32_gemm_ukernel_6x16_n8__avx2(int64_t kc, const void *a, const void *b, void *c, int64_t rsc,
                                      const void *alpha, int beta, const void *bias)
{
    ukernel(kc, (const float *)a, (const float *)b, (float *)c, rsc, *(const float *)alpha, beta,
            (const float *)bias, 1);
}

FC_TARGET_POP
#endif /* FC_GEMM_HAVE_X86_KERNELS */
