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
                                                       const float *p1, __mmask16 m0, __mmask16 m1, float *y0,
                                                       float *y1, int64_t plane, const float *bias, int relu,
                                                       const int nv, const int masked)
{
    __m512 acc[8][2];
    for (int i = 0; i < 8; i++)
        for (int v = 0; v < nv; v++)
            acc[i][v] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        /* masked loads only for tiles with a row's short run (see below) */
        const int64_t o = off[k];
        const __m512 x0 = masked ? _mm512_maskz_loadu_ps(m0, p0 + o) : _mm512_loadu_ps(p0 + o);
        const __m512 x1 = nv < 2 ? x0 : masked ? _mm512_maskz_loadu_ps(m1, p1 + o) : _mm512_loadu_ps(p1 + o);
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
                _mm512_mask_storeu_ps((v ? y1 : y0) + i * plane, v ? m1 : m0, r);
            else
                _mm512_storeu_ps((v ? y1 : y0) + i * plane, r);
        }
}

/* One tile of runs a (band pa, output ya) and b, masks ma and mb: unmasked where both are
   whole vectors. */
static inline __attribute__((always_inline)) void tile2(int64_t K, const float *wpk, const int32_t *off,
                                                        const float *pa, const float *pb, __mmask16 ma,
                                                        __mmask16 mb, float *ya, float *yb, int64_t plane,
                                                        const float *bias, int relu)
{
    if ((ma & mb) == 0xFFFF)
        tile(K, wpk, off, pa, pb, ma, mb, ya, yb, plane, bias, relu, 2, 0);
    else
        tile(K, wpk, off, pa, pb, ma, mb, ya, yb, plane, bias, relu, 2, 1);
}

void fc_direct_fwd_pixels_f32_avx512(int64_t K, const float *wpk, const int32_t *off, const float *band,
                                     int64_t wp, int64_t oh, int64_t ow, const float *bias, int relu, float *y)
{
    /* Runs of 16 pixels along each output row, a row's last one shorter where ow % 16 != 0.
       A tile takes run j of two neighbouring rows, so short runs pair with short runs and
       only their tiles take masked loads and stores; an odd last row pairs its own runs.
       (Masked loads on every tile read 2.71 against 2.40-2.45 ms on CIFAR's first layer in
       one run, Zen 4; pairing a row's own runs instead measured the same as this.) */
    const int64_t per_row = (ow + 15) / 16, plane = oh * ow;
    /* where ow % 16 != 0 the last run starts at ow - 16, overlapping the one before (whose
       pixels it recomputes bit for bit: the same sums in the same order), so rows of 16
       pixels and more take no masks; narrower rows are one masked run each */
#define COL(j) ((j) * 16 + 16 <= ow || ow < 16 ? (j) * 16 : ow - 16)
#define MASK(j) ((__mmask16)(ow >= 16 ? 0xFFFF : (1u << ow) - 1))
    int64_t i = 0;
    for (; i + 2 <= oh; i += 2)
        for (int64_t j = 0; j < per_row; j++)
            tile2(K, wpk, off, band + i * wp + COL(j), band + (i + 1) * wp + COL(j), MASK(j), MASK(j),
                  y + i * ow + COL(j), y + (i + 1) * ow + COL(j), plane, bias, relu);
    if (i < oh) {
        int64_t j = 0;
        for (; j + 2 <= per_row; j += 2)
            tile2(K, wpk, off, band + i * wp + COL(j), band + i * wp + COL(j + 1), MASK(j), MASK(j + 1),
                  y + i * ow + COL(j), y + i * ow + COL(j + 1), plane, bias, relu);
        if (j < per_row)
            tile(K, wpk, off, band + i * wp + COL(j), NULL, MASK(j), 0, y + i * ow + COL(j), NULL, plane, bias,
                 relu, 1, 1);
    }
#undef COL
#undef MASK
}

FC_TARGET_POP
#endif
