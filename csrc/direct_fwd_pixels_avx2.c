/* direct_fwd_pixels_avx2.c: the direct forward's pixel-vector micro-kernel, float32 on
   AVX2 + FMA; the twin of direct_fwd_pixels_avx512.c (conv_direct.c, "pixel-vector
   forward", decides where it runs, and lays out the band, offsets and weight panels that
   both read).

   Sixteen ymm registers hold 4 output channels x 3 runs of up to 8 output pixels (12
   accumulators, the 3 pixel vectors and one broadcast weight), over the whole reduction
   (every input channel and tap): per step 3 loads and 4 broadcasts feed 12 FMAs, 6 cycles
   on two 256-bit FMA pipes. The 8-channel weight panel of the AVX-512 kernel is read as
   two halves of 4 channels, both computed on a tile before the next, so the tile's band
   lines are still in L1 for the second.

   Loads and stores are whole vectors (no masks: AVX2's masked store, vmaskmovps, is slow
   on AMD cores): a row's last run overlaps the one before (below), and only rows narrower
   than a vector take a short run, stored through a stack vector; its surplus lanes read
   the next row or the band's slack past its end (conv_direct.c) and are never stored. */
#include "direct.h"

#ifdef FC_HAVE_X86_KERNELS
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "isa_target.h"
FC_TARGET_PUSH("avx2,fma")

/* One tile: 4 channels (panel columns wpk[k*8 + 0..3]) x nv runs, run v read at p[v] and
   stored at y[v] (channel i at y[v] + i*plane), len <= 8 of its pixels (every run's). */
static inline __attribute__((always_inline)) void tile(int64_t K, const float *restrict wpk,
                                                       const int32_t *restrict off, const float *const *p,
                                                       float *const *y, const int len, int64_t plane,
                                                       const float *bias, int relu, const int nv)
{
    __m256 acc[4][3];
    for (int i = 0; i < 4; i++)
        for (int v = 0; v < nv; v++)
            acc[i][v] = _mm256_setzero_ps();
    const float *p0 = p[0], *p1 = nv > 1 ? p[1] : p[0], *p2 = nv > 2 ? p[2] : p[0];
    for (int64_t k = 0; k < K; k++) {
        const int64_t o = off[k];
        const __m256 x0 = _mm256_loadu_ps(p0 + o);
        const __m256 x1 = nv > 1 ? _mm256_loadu_ps(p1 + o) : x0;
        const __m256 x2 = nv > 2 ? _mm256_loadu_ps(p2 + o) : x0;
        for (int i = 0; i < 4; i++) {
            const __m256 w = _mm256_broadcast_ss(wpk + k * 8 + i);
            acc[i][0] = _mm256_fmadd_ps(w, x0, acc[i][0]);
            if (nv > 1)
                acc[i][1] = _mm256_fmadd_ps(w, x1, acc[i][1]);
            if (nv > 2)
                acc[i][2] = _mm256_fmadd_ps(w, x2, acc[i][2]);
        }
    }
    /* fully unrolled, so the accumulators stay in registers through the loop above */
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++) {
            __m256 r = bias ? _mm256_add_ps(acc[i][v], _mm256_set1_ps(bias[i])) : acc[i][v];
            if (relu) /* x where x > 0 or NaN (not x <= 0, unordered), else +0: fc_relu_fwd's rule */
                r = _mm256_and_ps(r, _mm256_cmp_ps(r, _mm256_setzero_ps(), _CMP_NLE_UQ));
            float *dst = y[v] + i * plane;
            if (len == 8) {
                _mm256_storeu_ps(dst, r);
            } else {
                float tmp[8];
                _mm256_storeu_ps(tmp, r);
                memcpy(dst, tmp, (size_t)len * sizeof(float));
            }
        }
}

/* Both 4-channel halves of the 8-channel panel on one tile of nv runs. */
static void tile8(int64_t K, const float *wpk, const int32_t *off, const float *const *p, float *const *y,
                  const int len, int64_t plane, const float *bias, int relu, int nv)
{
    for (int h = 0; h < 2; h++) {
        float *yh[3] = {y[0] + 4 * h * plane, nv > 1 ? y[1] + 4 * h * plane : NULL,
                        nv > 2 ? y[2] + 4 * h * plane : NULL};
        const float *wh = wpk + 4 * h, *bh = bias ? bias + 4 * h : NULL;
        if (nv == 3)
            tile(K, wh, off, p, yh, len, plane, bh, relu, 3);
        else if (nv == 2)
            tile(K, wh, off, p, yh, len, plane, bh, relu, 2);
        else
            tile(K, wh, off, p, yh, len, plane, bh, relu, 1);
    }
}

void fc_direct_fwd_pixels_f32_avx2(int64_t K, const float *wpk, const int32_t *off, const float *band,
                                   int64_t wp, int64_t oh, int64_t ow, const float *bias, int relu, float *y)
{
    /* Runs of 8 pixels along each output row; where ow % 8 != 0 the last one starts at
       ow - 8, overlapping the one before, whose pixels it recomputes bit for bit (the same
       sums in the same order), so every store is a whole vector. Rows narrower than a vector
       are one short run each, stored through the stack. A tile takes the next three runs in
       row order, so its stores are mostly one stretch of a row (3-5 % faster on Zen 4 than
       run j of three rows: CIFAR's first layer, mnist_c1, 8 -> 32 at 32x32). */
    const int64_t per_row = (ow + 7) / 8, runs = oh * per_row;
    const int len = ow >= 8 ? 8 : (int)ow;
    for (int64_t t = 0; t < runs; t += 3) {
        const float *p[3];
        float *yv[3];
        const int nv = runs - t >= 3 ? 3 : (int)(runs - t);
        for (int v = 0; v < nv; v++) {
            const int64_t r = (t + v) / per_row, j = (t + v) % per_row;
            const int64_t col = j * 8 + 8 <= ow || ow < 8 ? j * 8 : ow - 8;
            p[v] = band + r * wp + col;
            yv[v] = y + r * ow + col;
        }
        tile8(K, wpk, off, p, yv, len, oh * ow, bias, relu, nv);
    }
}

FC_TARGET_POP
#endif
