/* direct_wgrad_pixels_avx2.c: the direct weight gradient's pixel-vector micro-kernel,
   float32 on AVX2 + FMA; the twin of direct_wgrad_pixels_avx512.c (which says what it
   computes and why).

   A tile is 4 filters x 3 taps: 12 accumulators of 8 pixels' partial sums, the 3 taps'
   pixel vectors and one filter's grad_y vector fill the 16 ymm registers; per 8-pixel run
   3 + 4 loads feed 12 FMAs. A row's last run, when shorter, loads zeros past the row in both
   operands (vmaskmovps loads, which AMD cores run at full speed; only its stores are slow). */
#include "direct.h"

#ifdef FC_HAVE_X86_KERNELS
#include <immintrin.h>
#include <stdint.h>

#include "isa_target.h"
FC_TARGET_PUSH("avx2,fma")

static inline __attribute__((always_inline)) __m256 load(const float *p, __m256i m, const int masked)
{
    return masked ? _mm256_maskload_ps(p, m) : _mm256_loadu_ps(p);
}

/* One 8-pixel run (masked: its lanes m) of taps b[0..nt) and 4 filters' grad_y. */
static inline __attribute__((always_inline)) void run(__m256 a[4][3], const float *g, int64_t plane,
                                                      const float *const *b, int64_t q, __m256i m, const int nt,
                                                      const int masked)
{
    __m256 x[3];
    for (int t = 0; t < nt; t++)
        x[t] = load(b[t] + q, m, masked);
    for (int f = 0; f < 4; f++) {
        const __m256 gf = load(g + f * plane, m, masked);
        for (int t = 0; t < nt; t++)
            a[f][t] = _mm256_fmadd_ps(gf, x[t], a[f][t]);
    }
}

/* Taps b[0..nt) of 4 filters over every pixel; accumulator a[f][t] at acc + (f*3 + t)*8. */
static inline __attribute__((always_inline)) void tile(const float *restrict gy, int64_t plane,
                                                       const float *const *b, int64_t wp, int64_t oh, int64_t ow,
                                                       float *acc, const int nt)
{
    __m256 a[4][3];
    for (int f = 0; f < 4; f++)
        for (int t = 0; t < nt; t++)
            a[f][t] = _mm256_loadu_ps(acc + (f * 3 + t) * 8);
    const int64_t full = ow / 8, rest = ow % 8;
    const __m256i last = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)rest), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    for (int64_t i = 0; i < oh; i++) {
        const float *g = gy + i * ow;
        const int64_t r = i * wp;
        for (int64_t j = 0; j < full; j++)
            run(a, g + j * 8, plane, b, r + j * 8, last, nt, 0);
        if (rest)
            run(a, g + full * 8, plane, b, r + full * 8, last, nt, 1);
    }
    for (int f = 0; f < 4; f++)
        for (int t = 0; t < nt; t++)
            _mm256_storeu_ps(acc + (f * 3 + t) * 8, a[f][t]);
}

void fc_direct_wgrad_pixels_f32_avx2(int64_t K, const int32_t *off, const float *band, int64_t wp, int64_t oh,
                                     int64_t ow, const float *gy, int64_t plane, float *acc)
{
    for (int64_t k0 = 0; k0 < K; k0 += 3) {
        const int nt = K - k0 < 3 ? (int)(K - k0) : 3;
        const float *b[3] = {band + off[k0], NULL, NULL};
        for (int t = 1; t < nt; t++)
            b[t] = band + off[k0 + t];
        float *a = acc + k0 / 3 * 96;
        switch (nt) {
        case 3: tile(gy, plane, b, wp, oh, ow, a, 3); break;
        case 2: tile(gy, plane, b, wp, oh, ow, a, 2); break;
        default: tile(gy, plane, b, wp, oh, ow, a, 1); break;
        }
    }
}

void fc_direct_wgrad_pixels_finish_f32_avx2(int64_t K, const float *acc, float *out, int64_t ld)
{
    for (int64_t k = 0; k < K; k++)
        for (int f = 0; f < 4; f++) {
            /* the 8 lanes summed in a fixed order: halves, then pairs, then the last two */
            const __m256 v = _mm256_loadu_ps(acc + k / 3 * 96 + (f * 3 + k % 3) * 8);
            __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            s = _mm_add_ss(s, _mm_movehdup_ps(s));
            out[f * ld + k] = _mm_cvtss_f32(s);
        }
}

FC_TARGET_POP
#endif
