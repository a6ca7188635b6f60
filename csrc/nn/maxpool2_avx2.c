/* maxpool2_avx2.c: the 2x2, stride-2, unpadded max pooling of one plane with AVX2, 8
   float32 or 4 float64 outputs per step (nn_ops.c calls the float32 kernel when the active
   ISA is AVX2, i.e. on CPUs without AVX-512, and the float64 one on AVX2 and AVX-512, where
   the portable loop, which gcc does not vectorise, ran scalar at ~4 GB/s).

   Same results as nn_ops.c's portable loop and maxpool2_avx512.c, element for element: the
   max of each row's pair, then of the two rows (strict >: the first maximum in row-major
   order wins ties), the argmax as the flat index in the plane. A row's last ow % 8 (float64:
   ow % 4) outputs come from one more step that overlaps the one before it: the portable
   formulas one output at a time there mispredicted their branches on random data (4 of
   mnist's 12 outputs a row took 3/4 of the time), and AVX2's masked stores are slow on AMD
   cores; only rows narrower than one step take them. The float32 and float64 kernels are
   the same scheme on their own types and shuffles. Returns 1 when a window held a NaN (the
   caller then redoes the plane with the exact loop, which lets the NaN win). */
#include "nn_ops.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#include <stdint.h>

#include "../isa_target.h"

FC_TARGET_PUSH("avx2")

/* Outputs j .. j + 7 of one row from its two input rows' 16 elements each, loaded under
   masks k0 (elements 2j .. 2j + 7) and k1 (2j + 8 .. 2j + 15), zeros elsewhere, where
   `masked` (else plain loads: vmaskmovps is slower even with every lane set); the
   results in output order, and whether a loaded element was NaN in *nanv. */
static inline __attribute__((always_inline)) void step8(const float *r0, const float *r1, int64_t j,
                                                        int masked, __m256i k0, __m256i k1, int32_t base,
                                                        __m256i wv,
                                                        __m256 *nanv, __m256 *best, __m256i *idx)
{
    /* Within each 128-bit lane, shuffle_ps(p, q, 0x88) takes the even elements of p then of
       q, so the vectors hold outputs 0 1 4 5 | 2 3 6 7; permute4x64(0xD8) puts the results
       in order, and lane2 is 2 * that output order. */
    const __m256i lane2 = _mm256_setr_epi32(0, 2, 8, 10, 4, 6, 12, 14), one = _mm256_set1_epi32(1);
#define LOAD(p, k) (masked ? _mm256_maskload_ps(p, k) : _mm256_loadu_ps(p))
    const __m256 p0 = LOAD(r0 + 2 * j, k0), p1 = LOAD(r0 + 2 * j + 8, k1);
    const __m256 q0 = LOAD(r1 + 2 * j, k0), q1 = LOAD(r1 + 2 * j + 8, k1);
#undef LOAD
    const __m256 a = _mm256_shuffle_ps(p0, p1, 0x88), b = _mm256_shuffle_ps(p0, p1, 0xDD);
    const __m256 c = _mm256_shuffle_ps(q0, q1, 0x88), d = _mm256_shuffle_ps(q0, q1, 0xDD);
    const __m256 ba = _mm256_cmp_ps(b, a, _CMP_GT_OQ), dc = _mm256_cmp_ps(d, c, _CMP_GT_OQ);
    const __m256 m1 = _mm256_blendv_ps(a, b, ba), m2 = _mm256_blendv_ps(c, d, dc);
    const __m256 top = _mm256_cmp_ps(m2, m1, _CMP_GT_OQ);
    /* offsets in the window: 0 or 1 in the first row, w or w + 1 in the second */
    const __m256i i1 = _mm256_and_si256(_mm256_castps_si256(ba), one);
    const __m256i i2 = _mm256_sub_epi32(wv, _mm256_castps_si256(dc)); /* dc is -1 where d > c */
    const __m256i off = _mm256_castps_si256(
        _mm256_blendv_ps(_mm256_castsi256_ps(i1), _mm256_castsi256_ps(i2), top));
    const __m256i at = _mm256_add_epi32(_mm256_set1_epi32(base + 2 * (int32_t)j), _mm256_add_epi32(lane2, off));
    *best = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_blendv_ps(m1, m2, top)), 0xD8));
    *idx = _mm256_permute4x64_epi64(at, 0xD8);
    *nanv = _mm256_or_ps(*nanv, _mm256_or_ps(_mm256_cmp_ps(p0, p1, _CMP_UNORD_Q), _mm256_cmp_ps(q0, q1, _CMP_UNORD_Q)));
}

int fc_maxpool2_plane_f32_avx2(const float *x, float *y, int32_t *arg, int64_t w, int64_t oh, int64_t ow)
{
    const __m256i wv = _mm256_set1_epi32((int32_t)w);
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    /* rows narrower than 8 outputs: one masked step (2 * ow < 16 inputs, ow outputs) */
    const int32_t n2 = (int32_t)(2 * ow);
    const __m256i k0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(n2), lanes);
    const __m256i k1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(n2 - 8), lanes);
    const __m256i ko = _mm256_cmpgt_epi32(_mm256_set1_epi32((int32_t)ow), lanes);
    __m256 nanv = _mm256_setzero_ps(), best;
    __m256i idx;
    for (int64_t i = 0; i < oh; i++) {
        const float *r0 = x + 2 * i * w, *r1 = r0 + w;
        float *yr = y + i * ow;
        int32_t *ar = arg + i * ow;
        const int32_t base = (int32_t)(2 * i * w);
        if (ow < 8) {
            step8(r0, r1, 0, 1, k0, k1, base, wv, &nanv, &best, &idx);
            _mm256_maskstore_ps(yr, ko, best);
            _mm256_maskstore_epi32(ar, ko, idx);
            continue;
        }
        /* full steps; a row's last ow % 8 outputs by one more step that ends at the row's
           end, recomputing (to the same values) outputs of the step before it */
        for (int64_t j = 0;; j += 8) {
            if (j > ow - 8)
                j = ow - 8;
            step8(r0, r1, j, 0, k0, k1, base, wv, &nanv, &best, &idx);
            _mm256_storeu_ps(yr + j, best);
            _mm256_storeu_si256((__m256i *)(ar + j), idx);
            if (j == ow - 8)
                break;
        }
    }
    return _mm256_movemask_ps(nanv) != 0;
}

/* float64: 4 outputs a step, the same scheme. unpacklo_pd(p, q) takes the even elements of
   p and q within each 128-bit lane: outputs 0 2 1 3, which permute4x64(0xD8) orders; the
   indices are computed in 64-bit lanes and their low halves gathered in order. */
static inline __attribute__((always_inline)) void step4(const double *r0, const double *r1, int64_t j,
                                                        int masked, __m256i k0, __m256i k1, int64_t base,
                                                        __m256i wv, __m256d *nanv, __m256d *best, __m128i *idx)
{
    const __m256i lane2 = _mm256_setr_epi64x(0, 4, 2, 6), one = _mm256_set1_epi64x(1);
    const __m256i gather = _mm256_setr_epi32(0, 4, 2, 6, 0, 0, 0, 0);
#define LOAD(p, k) (masked ? _mm256_maskload_pd(p, k) : _mm256_loadu_pd(p))
    const __m256d p0 = LOAD(r0 + 2 * j, k0), p1 = LOAD(r0 + 2 * j + 4, k1);
    const __m256d q0 = LOAD(r1 + 2 * j, k0), q1 = LOAD(r1 + 2 * j + 4, k1);
#undef LOAD
    const __m256d a = _mm256_unpacklo_pd(p0, p1), b = _mm256_unpackhi_pd(p0, p1);
    const __m256d c = _mm256_unpacklo_pd(q0, q1), d = _mm256_unpackhi_pd(q0, q1);
    const __m256d ba = _mm256_cmp_pd(b, a, _CMP_GT_OQ), dc = _mm256_cmp_pd(d, c, _CMP_GT_OQ);
    const __m256d m1 = _mm256_blendv_pd(a, b, ba), m2 = _mm256_blendv_pd(c, d, dc);
    const __m256d top = _mm256_cmp_pd(m2, m1, _CMP_GT_OQ);
    const __m256i i1 = _mm256_and_si256(_mm256_castpd_si256(ba), one);
    const __m256i i2 = _mm256_sub_epi64(wv, _mm256_castpd_si256(dc));
    const __m256i off = _mm256_castpd_si256(
        _mm256_blendv_pd(_mm256_castsi256_pd(i1), _mm256_castsi256_pd(i2), top));
    const __m256i at = _mm256_add_epi64(_mm256_set1_epi64x(base + 2 * j), _mm256_add_epi64(lane2, off));
    *best = _mm256_permute4x64_pd(_mm256_blendv_pd(m1, m2, top), 0xD8);
    *idx = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(at, gather));
    *nanv = _mm256_or_pd(*nanv, _mm256_or_pd(_mm256_cmp_pd(p0, p1, _CMP_UNORD_Q), _mm256_cmp_pd(q0, q1, _CMP_UNORD_Q)));
}

int fc_maxpool2_plane_f64_avx2(const double *x, double *y, int32_t *arg, int64_t w, int64_t oh, int64_t ow)
{
    const __m256i wv = _mm256_set1_epi64x(w);
    const __m256i lanes = _mm256_setr_epi64x(0, 1, 2, 3);
    /* rows narrower than 4 outputs: one masked step (2 * ow < 8 inputs, ow outputs) */
    const __m256i k0 = _mm256_cmpgt_epi64(_mm256_set1_epi64x(2 * ow), lanes);
    const __m256i k1 = _mm256_cmpgt_epi64(_mm256_set1_epi64x(2 * ow - 4), lanes);
    const __m256i ko = _mm256_cmpgt_epi64(_mm256_set1_epi64x(ow), lanes);
    const __m128i ko32 = _mm_cmpgt_epi32(_mm_set1_epi32((int32_t)ow), _mm_setr_epi32(0, 1, 2, 3));
    __m256d nanv = _mm256_setzero_pd(), best;
    __m128i idx;
    for (int64_t i = 0; i < oh; i++) {
        const double *r0 = x + 2 * i * w, *r1 = r0 + w;
        double *yr = y + i * ow;
        int32_t *ar = arg + i * ow;
        const int64_t base = 2 * i * w;
        if (ow < 4) {
            step4(r0, r1, 0, 1, k0, k1, base, wv, &nanv, &best, &idx);
            _mm256_maskstore_pd(yr, ko, best);
            _mm_maskstore_epi32(ar, ko32, idx);
            continue;
        }
        for (int64_t j = 0;; j += 4) { /* as the float32 kernel's row */
            if (j > ow - 4)
                j = ow - 4;
            step4(r0, r1, j, 0, k0, k1, base, wv, &nanv, &best, &idx);
            _mm256_storeu_pd(yr + j, best);
            _mm_storeu_si128((__m128i *)(ar + j), idx);
            if (j == ow - 4)
                break;
        }
    }
    return _mm256_movemask_pd(nanv) != 0;
}


FC_TARGET_POP

#endif
