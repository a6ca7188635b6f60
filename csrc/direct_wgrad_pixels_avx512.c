/* direct_wgrad_pixels_avx512.c: the direct weight gradient's pixel-vector micro-kernel,
   float32 on AVX-512F (conv_direct.c, "pixel-vector weight gradient", decides where it runs
   and lays out the band and offsets, the forward's).

   gw[f][k] = sum over the pixels q of grad_y[f][q] * band[off[k] + q]: the pixels run along
   the vectors, read as they lie in grad_y and in the padded image, so neither operand is
   transposed or packed (implicit GEMM's weight gradient transposes grad_y into pixel-major
   tiles, a quarter of a first layer's time). A tile is 4 filters x 4 taps, 16 accumulators
   of 16 pixels' partial sums: per 16-pixel run 4 + 4 loads feed 16 FMAs. The sums stay
   vectors in acc across images and batch chunks (added in a fixed order, so the result
   does not depend on the thread count) and are reduced across lanes once, at the end.
   A row's last run, when shorter, loads zeros past the row in both operands (masked
   loads), so those lanes add exact zeros whatever the image holds there. */
#include "direct.h"

#ifdef FC_HAVE_X86_KERNELS
#include <immintrin.h>
#include <stdint.h>

#include "isa_target.h"
FC_TARGET_PUSH("avx512f")

/* One 16-pixel run (masked: its first lanes m) of taps x[0..nt) and 4 filters' grad_y. */
static inline __attribute__((always_inline)) void run(__m512 a[4][4], const float *g, int64_t plane,
                                                      const float *const *b, int64_t q, __mmask16 m, const int nt,
                                                      const int masked)
{
    __m512 x[4];
    for (int t = 0; t < nt; t++)
        x[t] = masked ? _mm512_maskz_loadu_ps(m, b[t] + q) : _mm512_loadu_ps(b[t] + q);
    for (int f = 0; f < 4; f++) {
        const __m512 gf = masked ? _mm512_maskz_loadu_ps(m, g + f * plane) : _mm512_loadu_ps(g + f * plane);
        for (int t = 0; t < nt; t++)
            a[f][t] = _mm512_fmadd_ps(gf, x[t], a[f][t]);
    }
}

/* Taps b[0..nt) of 4 filters over every pixel; accumulator a[f][t] at acc + (f*4 + t)*16. */
static inline __attribute__((always_inline)) void tile(const float *restrict gy, int64_t plane,
                                                       const float *const *b, int64_t wp, int64_t oh, int64_t ow,
                                                       float *acc, const int nt)
{
    __m512 a[4][4];
    for (int f = 0; f < 4; f++)
        for (int t = 0; t < nt; t++)
            a[f][t] = _mm512_loadu_ps(acc + (f * 4 + t) * 16);
    const int64_t full = ow / 16;
    const __mmask16 last = (__mmask16)((1u << (ow % 16)) - 1);
    for (int64_t i = 0; i < oh; i++) {
        const float *g = gy + i * ow;
        const int64_t r = i * wp;
        int64_t j = 0;
        for (; j + 2 <= full; j += 2) {
            run(a, g + j * 16, plane, b, r + j * 16, 0, nt, 0);
            run(a, g + j * 16 + 16, plane, b, r + j * 16 + 16, 0, nt, 0);
        }
        if (j < full)
            run(a, g + j * 16, plane, b, r + j * 16, 0, nt, 0);
        if (last)
            run(a, g + full * 16, plane, b, r + full * 16, last, nt, 1);
    }
    for (int f = 0; f < 4; f++)
        for (int t = 0; t < nt; t++)
            _mm512_storeu_ps(acc + (f * 4 + t) * 16, a[f][t]);
}

void fc_direct_wgrad_pixels_f32_avx512(int64_t K, const int32_t *off, const float *band, int64_t wp, int64_t oh,
                                       int64_t ow, const float *gy, int64_t plane, float *acc)
{
    for (int64_t k0 = 0; k0 < K; k0 += 4) {
        const int nt = K - k0 < 4 ? (int)(K - k0) : 4;
        const float *b[4] = {band + off[k0], NULL, NULL, NULL};
        for (int t = 1; t < nt; t++)
            b[t] = band + off[k0 + t];
        float *a = acc + k0 / 4 * 256;
        switch (nt) {
        case 4: tile(gy, plane, b, wp, oh, ow, a, 4); break;
        case 3: tile(gy, plane, b, wp, oh, ow, a, 3); break;
        case 2: tile(gy, plane, b, wp, oh, ow, a, 2); break;
        default: tile(gy, plane, b, wp, oh, ow, a, 1); break;
        }
    }
}

void fc_direct_wgrad_pixels_finish_f32_avx512(int64_t K, const float *acc, float *out, int64_t ld)
{
    for (int64_t k = 0; k < K; k++)
        for (int f = 0; f < 4; f++)
            out[f * ld + k] = _mm512_reduce_add_ps(_mm512_loadu_ps(acc + k / 4 * 256 + (f * 4 + k % 4) * 16));
}

FC_TARGET_POP
#endif
