/* direct_fwd_pixels_avx512.c: the direct forward's pixel-vector micro-kernel, float32 on
   AVX-512F (conv_direct.c, "pixel-vector forward", decides where it runs).

   A tile is 8 output channels x 2 vectors of 16 output pixels, 16 accumulators held over
   the whole reduction (every input channel and tap). The pixels run along the vectors, so
   the tile is stored as it is, 16 full vectors into the output rows: no transpose, unlike
   the implicit GEMM's pixels-x-channels tile, whose transposes cost ~7 % of a 32-channel
   3x3 layer. Each step (input channel c, tap l, m) loads the two pixel vectors from a
   padded copy of the image (band: every tap of every pixel lands inside it, so no bounds
   test; unit stride: a vector is 16 consecutive band elements) and broadcasts the 8
   channels' weights from a packed panel (wpk[k*8 + i]).

   Loop order: channel blocks outside, tiles inside, so one block's weight panel (K x 8,
   9 KB for K = 288) stays in L1 while the band streams from L2; the other order cycled the
   panels of all blocks through L1 and ran at 92 % of the FMA peak against 99 % (Zen 4,
   prototype, compute only). */
#include "direct.h"

#ifdef FC_HAVE_X86_KERNELS
#include <immintrin.h>
#include <stdint.h>

#include "isa_target.h"
FC_TARGET_PUSH("avx512f")

static inline __attribute__((always_inline)) void tile(int64_t K, const float *restrict wpk,
                                                       const int32_t *restrict off, const float *p0,
                                                       const float *p1, float *y0, float *y1, int64_t plane,
                                                       const float *bias, int relu, const int nv)
{
    __m512 acc[8][2];
    for (int i = 0; i < 8; i++)
        for (int v = 0; v < nv; v++)
            acc[i][v] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        const int64_t o = off[k];
        const __m512 x0 = _mm512_loadu_ps(p0 + o), x1 = nv > 1 ? _mm512_loadu_ps(p1 + o) : x0;
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
            _mm512_storeu_ps((v ? y1 : y0) + i * plane, r);
        }
}

void fc_direct_fwd_pixels_f32_avx512(int64_t K, const float *wpk, const int32_t *off, const float *band,
                                     int64_t wp, int64_t oh, int64_t ow, const float *bias, int relu, float *y)
{
    const int64_t plane = oh * ow, runs = plane / 16; /* ow % 16 == 0: runs of 16 within a row */
#define RUN_BAND(r) (band + ((r) * 16 / ow) * wp + (r) * 16 % ow)
    int64_t r = 0;
    for (; r + 2 <= runs; r += 2)
        tile(K, wpk, off, RUN_BAND(r), RUN_BAND(r + 1), y + r * 16, y + (r + 1) * 16, plane, bias, relu, 2);
    if (r < runs)
        tile(K, wpk, off, RUN_BAND(r), RUN_BAND(r), y + r * 16, y + r * 16, plane, bias, relu, 1);
#undef RUN_BAND
}

FC_TARGET_POP
#endif
