/* direct_fwd_pixels_avx512.c: the direct forward's pixel-vector micro-kernel, float32 on
   AVX-512F (conv_direct.c, "pixel-vector forward", decides where it runs).

   A tile is 8 output channels x 2 runs of up to 16 output pixels (one vector each), 16
   accumulators held over the whole reduction (every input channel and tap). The pixels run
   along the vectors, so the tile is stored as it is: no transpose, unlike the implicit
   GEMM's pixels-x-channels tile. Each step (input channel c, tap l, m) loads the two pixel
   vectors from a padded copy of the image (the band: every tap of every pixel lands inside
   it, so no bounds test; unit stride: a run is consecutive band elements) and broadcasts
   the 8 channels' weights from a packed panel (wpk[k*8 + i]).

   Loop order (conv_direct.c): channel blocks outside, tiles inside, so one block's weight
   panel (K x 8: 1 KB for a first layer's K = 27, 9 KB at K = 288) stays in L1 while the
   band streams through; the other order cycled every block's panel through L1 and ran at
   92 % of the FMA peak against 99 % (Zen 4, prototype at K = 288, compute only). */
#include "direct.h"

#ifdef FC_HAVE_X86_KERNELS
#include <immintrin.h>
#include <stdint.h>

#include "isa_target.h"
FC_TARGET_PUSH("avx512f")

static inline __attribute__((always_inline)) void tile(int64_t K, const float *restrict wpk,
                                                       const int32_t *restrict off, const float *p0,
                                                       const float *p1, __mmask16 m, float *y0, float *y1,
                                                       int64_t plane, const float *bias, int relu, const int nv,
                                                       const int masked)
{
    __m512 acc[8][2];
    for (int i = 0; i < 8; i++)
        for (int v = 0; v < nv; v++)
            acc[i][v] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        const int64_t o = off[k];
        const __m512 x0 = masked ? _mm512_maskz_loadu_ps(m, p0 + o) : _mm512_loadu_ps(p0 + o);
        const __m512 x1 = nv < 2 ? x0 : masked ? _mm512_maskz_loadu_ps(m, p1 + o) : _mm512_loadu_ps(p1 + o);
        for (int i = 0; i < 8; i++) {
            const __m512 w = _mm512_set1_ps(wpk[k * 8 + i]);
            acc[i][0] = _mm512_fmadd_ps(w, x0, acc[i][0]);
            if (nv > 1)
                acc[i][1] = _mm512_fmadd_ps(w, x1, acc[i][1]);
        }
    }
    for (int i = 0; i < 8; i++)
        for (int v = 0; v < nv; v++) {
            __m512 r = bias ? _mm512_add_ps(acc[i][v], _mm512_set1_ps(bias[i])) : acc[i][v];
            if (relu) /* x where x > 0 or NaN (not x <= 0, unordered), else +0: fc_relu_fwd's rule */
                r = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(r, _mm512_setzero_ps(), _CMP_NLE_UQ), r);
            if (masked)
                _mm512_mask_storeu_ps((v ? y1 : y0) + i * plane, m, r);
            else
                _mm512_storeu_ps((v ? y1 : y0) + i * plane, r);
        }
}

void fc_direct_fwd_pixels_f32_avx512(int64_t K, const float *wpk, const int32_t *off, const float *band,
                                     int64_t wp, int64_t oh, int64_t ow, const float *bias, int relu, float *y)
{
    /* Runs of 16 pixels along each output row; where ow % 16 != 0 the last one starts at
       ow - 16, overlapping the one before (whose pixels it recomputes bit for bit: the same
       sums in the same order), so rows of 16 pixels and more take no masks (2-5 % on 26- and
       28-pixel rows against masked tiles, Zen 4); narrower rows are one masked run each. A
       tile takes the next two runs in row order, like the AVX2 kernel (the same speed as
       pairing run j of two rows here). */
    const int64_t per_row = (ow + 15) / 16, runs = oh * per_row, plane = oh * ow;
    const __mmask16 m = (__mmask16)(ow >= 16 ? 0xFFFF : (1u << ow) - 1);
    for (int64_t t = 0; t < runs; t += 2) {
        const float *p[2] = {NULL, NULL};
        float *yv[2] = {NULL, NULL};
        const int nv = runs - t >= 2 ? 2 : 1;
        for (int v = 0; v < nv; v++) {
            const int64_t r = (t + v) / per_row, j = (t + v) % per_row;
            const int64_t col = j * 16 + 16 <= ow || ow < 16 ? j * 16 : ow - 16;
            p[v] = band + r * wp + col;
            yv[v] = y + r * ow + col;
        }
        if (nv == 2 && ow >= 16)
            tile(K, wpk, off, p[0], p[1], m, yv[0], yv[1], plane, bias, relu, 2, 0);
        else if (nv == 2)
            tile(K, wpk, off, p[0], p[1], m, yv[0], yv[1], plane, bias, relu, 2, 1);
        else if (ow >= 16)
            tile(K, wpk, off, p[0], NULL, m, yv[0], NULL, plane, bias, relu, 1, 0);
        else
            tile(K, wpk, off, p[0], NULL, m, yv[0], NULL, plane, bias, relu, 1, 1);
    }
}

FC_TARGET_POP
#endif
