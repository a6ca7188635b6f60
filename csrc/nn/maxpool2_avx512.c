/* maxpool2_avx512.c: the 2x2, stride-2, unpadded max pooling of one plane with AVX-512F,
   16 outputs per step (nn_ops.c calls it when the active ISA is AVX-512; gcc does not
   vectorise the stride-2 compare-and-select loop itself: 5.6 ms for mnist's 128x64x24x24
   on one Zen 5 core, 4 GB/s).

   Same results as nn_ops.c's portable loop, element for element: the max of each row's
   pair, then of the two rows (strict >: the first maximum in row-major order wins ties),
   the argmax as the flat index in the plane. Returns 1 when a window held a NaN (the
   caller then redoes the plane with the exact loop, which lets the NaN win). */
#include "nn_ops.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#include <stdint.h>

#include "../isa_target.h"

FC_TARGET_PUSH("avx512f")

int fc_maxpool2_plane_f32_avx512(const float *x, float *y, int32_t *arg, int64_t w, int64_t oh,
                                 int64_t ow)
{
    /* even / odd lanes of a pair of vectors: elements 0, 2, .., 30 and 1, 3, .., 31 */
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    const __m512i lane2 = _mm512_slli_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), 1);
    const __m512i one = _mm512_set1_epi32(1), wv = _mm512_set1_epi32((int32_t)w);
    const __m512i w1 = _mm512_set1_epi32((int32_t)w + 1);
    __mmask16 nan = 0;
    for (int64_t i = 0; i < oh; i++) {
        const float *r0 = x + 2 * i * w, *r1 = r0 + w;
        float *yr = y + i * ow;
        int32_t *ar = arg + i * ow;
        const int32_t base = (int32_t)(2 * i * w);
        for (int64_t j = 0; j < ow; j += 16) {
            /* the last step of a row: masked loads of its 2 * rem inputs (zeros elsewhere,
               which are no NaN) and masked stores of its rem outputs */
            const int64_t rem = ow - j < 16 ? ow - j : 16, n2 = 2 * rem;
            const __mmask16 k0 = n2 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n2) - 1);
            const __mmask16 k1 = n2 >= 32 ? (__mmask16)0xFFFF
                                          : (n2 > 16 ? (__mmask16)((1u << (n2 - 16)) - 1) : (__mmask16)0);
            const __mmask16 ko = rem == 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << rem) - 1);
            const __m512 p0 = _mm512_maskz_loadu_ps(k0, r0 + 2 * j), p1 = _mm512_maskz_loadu_ps(k1, r0 + 2 * j + 16);
            const __m512 q0 = _mm512_maskz_loadu_ps(k0, r1 + 2 * j), q1 = _mm512_maskz_loadu_ps(k1, r1 + 2 * j + 16);
            const __m512 a = _mm512_permutex2var_ps(p0, even, p1), b = _mm512_permutex2var_ps(p0, odd, p1);
            const __m512 c = _mm512_permutex2var_ps(q0, even, q1), d = _mm512_permutex2var_ps(q0, odd, q1);
            const __mmask16 ba = _mm512_cmp_ps_mask(b, a, _CMP_GT_OQ), dc = _mm512_cmp_ps_mask(d, c, _CMP_GT_OQ);
            const __m512 m1 = _mm512_mask_blend_ps(ba, a, b), m2 = _mm512_mask_blend_ps(dc, c, d);
            const __mmask16 top = _mm512_cmp_ps_mask(m2, m1, _CMP_GT_OQ);
            const __m512i i1 = _mm512_maskz_mov_epi32(ba, one);
            const __m512i i2 = _mm512_mask_blend_epi32(dc, wv, w1);
            const __m512i off = _mm512_mask_blend_epi32(top, i1, i2);
            const __m512i idx = _mm512_add_epi32(_mm512_add_epi32(_mm512_set1_epi32(base + 2 * (int32_t)j), lane2), off);
            _mm512_mask_storeu_ps(yr + j, ko, _mm512_mask_blend_ps(top, m1, m2));
            _mm512_mask_storeu_epi32(ar + j, ko, idx);
            nan |= _mm512_cmp_ps_mask(p0, p1, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(q0, q1, _CMP_UNORD_Q);
        }
    }
    return nan != 0;
}

FC_TARGET_POP

#endif
