/* implicit_avx2.c: the implicit-GEMM micro-kernels for AVX2 + FMA, f32 6x16 and f64 6x8
   (the GEMM's tiles, gemm/f32-gemm-6x16-avx2.c: the same register budget).

   16 ymm registers: 6 broadcast values x 2 vectors = 12 accumulators, 2 vectors of weights
   (or grad_y) and one broadcast value. Twelve independent FMA chains cover two 256-bit FMA
   pipes at 4 cycles of latency with room; per step 2 vector loads and 6 broadcasts feed 12
   FMAs, within two vector loads a cycle. An 8 x 8 tile (one vector) was measured first on
   Zen 3: 8 chains leave no slack and 9 vector loads per 8 FMAs saturate the load pipes;
   the forward ran at ~65 % of the FMA peak in the kernel. */
#include "implicit.h"

#ifdef FC_IMPLICIT_HAVE_X86
#include "../isa_target.h"
FC_TARGET_PUSH("avx2,fma")
#include <immintrin.h>

#include <string.h>

#include "transpose_avx2.h"

/* Lanes [0, n) of a mask for maskstore (n <= 8 floats / 4 doubles; n <= 0: none). */
static inline __attribute__((always_inline)) __m256i f32_lanes(int64_t n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline __attribute__((always_inline)) __m256i f64_lanes(int64_t n)
{
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}

/* tile[t] (pixel t < 6, 8 channels) -> y[c*y_plane + t] for c < nch, t < npx: one 8 x 8
   transpose (rows 6 and 7 zero, not stored); a full group takes a 4- and a 2-float store per
   channel, the last, partial one masked stores (slow on AMD, so kept off the common path). */
static inline __attribute__((always_inline)) void f32_transpose_store(const __m256 tile[6], float *y,
                                                                      int64_t y_plane, const int64_t *rows,
                                                                      int64_t npx, int64_t nch)
{
#define ROW(c) (y + (rows ? rows[c] : (c) * y_plane))
    __m256 r[8], col[8];
    for (int i = 0; i < 6; i++)
        r[i] = tile[i];
    r[6] = r[7] = _mm256_setzero_ps();
    f32_transpose8(r, col);
    if (npx == 6) {
        for (int c = 0; c < 8 && c < nch; c++) {
            _mm_storeu_ps(ROW(c), _mm256_castps256_ps128(col[c]));
            _mm_storel_pi((__m64 *)(ROW(c) + 4), _mm256_extractf128_ps(col[c], 1));
        }
    } else {
        const __m256i m = f32_lanes(npx);
        for (int c = 0; c < 8 && c < nch; c++)
            _mm256_maskstore_ps(ROW(c), m, col[c]);
    }
}

/* tile[t] (pixel t < 6, 4 channels) -> y[c*y_plane + t]: pixels 0-3 as a 4 x 4 transpose,
   pixels 4-5 as pairs. */
static inline __attribute__((always_inline)) void f64_transpose_store(const __m256d tile[6], double *y,
                                                                      int64_t y_plane, const int64_t *rows,
                                                                      int64_t npx, int64_t nch)
{
    __m256d lo[4], clo[4];
    for (int i = 0; i < 4; i++)
        lo[i] = tile[i];
    f64_transpose4(lo, clo);
    const __m256d e = _mm256_unpacklo_pd(tile[4], tile[5]); /* (4,5) of channels 0 | 2 */
    const __m256d o = _mm256_unpackhi_pd(tile[4], tile[5]); /* (4,5) of channels 1 | 3 */
    const __m128d pair[4] = {_mm256_castpd256_pd128(e), _mm256_castpd256_pd128(o), _mm256_extractf128_pd(e, 1),
                             _mm256_extractf128_pd(o, 1)};
    if (npx == 6) {
        for (int c = 0; c < 4 && c < nch; c++) {
            _mm256_storeu_pd(ROW(c), clo[c]);
            _mm_storeu_pd(ROW(c) + 4, pair[c]);
        }
    } else {
        const __m256i m0 = f64_lanes(npx);
        const __m128i m1 = _mm256_castsi256_si128(f64_lanes(npx - 4));
        for (int c = 0; c < 4 && c < nch; c++) {
            _mm256_maskstore_pd(ROW(c), m0, clo[c]);
            _mm_maskstore_pd(ROW(c) + 4, m1, pair[c]);
        }
    }
}
#undef ROW

/* G consecutive elements at p (one per group of a grouped tile) across the whole vector. */
static inline __attribute__((always_inline)) __m256 f32_bcast_groups(const float *p, const int G)
{
    if (G == 2) {
        double pair;
        memcpy(&pair, p, sizeof pair);
        return _mm256_castpd_ps(_mm256_set1_pd(pair));
    }
    /* 4: through memcpy, not _mm256_broadcast_ps's __m128 pointer, which may alias anything:
       gcc then stored every accumulator to the stack on each step */
    __m128 four;
    memcpy(&four, p, sizeof four);
    return _mm256_set_m128(four, four);
}

static inline __attribute__((always_inline)) __m256d f64_bcast_groups(const double *p, const int G)
{
    (void)G; /* 2 */
    __m128d two;
    memcpy(&two, p, sizeof two);
    return _mm256_set_m128d(two, two);
}

/* dst[j*ldd + i] = r[i][j], 8 x 8 floats in registers. */
static inline __attribute__((always_inline)) void f32_tblock_regs(const __m256 r[8], float *dst, int64_t ldd)
{
    __m256 col[8];
    f32_transpose8(r, col);
    for (int j = 0; j < 8; j++)
        _mm256_storeu_ps(dst + j * ldd, col[j]);
}

/* The block whose row i starts at rows[i] + q0 (pack_bt_rows: the rows of a tile's lanes), or,
   rows NULL, at src + i*lds + q0 (pack_bt: one strip of grad_y; always inlined, so the test
   folds away). */
static inline __attribute__((always_inline)) void f32_tblock_rows(const float *const *rows, const float *src, int64_t lds,
                                                                  int64_t q0, float *dst, int64_t ldd)
{
    __m256 r[8];
    for (int i = 0; i < 8; i++)
        r[i] = _mm256_loadu_ps((rows ? rows[i] : src + i * lds) + q0);
    f32_tblock_regs(r, dst, ldd);
}

/* The same, 4 x 4 doubles. */
static inline __attribute__((always_inline)) void f64_tblock_regs(const __m256d r[4], double *dst, int64_t ldd)
{
    __m256d col[4];
    f64_transpose4(r, col);
    for (int j = 0; j < 4; j++)
        _mm256_storeu_pd(dst + j * ldd, col[j]);
}

static inline __attribute__((always_inline)) void f64_tblock_rows(const double *const *rows, const double *src, int64_t lds,
                                                                  int64_t q0, double *dst, int64_t ldd)
{
    __m256d r[4];
    for (int i = 0; i < 4; i++)
        r[i] = _mm256_loadu_pd((rows ? rows[i] : src + i * lds) + q0);
    f64_tblock_regs(r, dst, ldd);
}

#define MR 6
#define REAL float
#define VEC __m256
#define VL 8
#define NV 2
#define LOADU _mm256_loadu_ps
#define STOREU _mm256_storeu_ps
#define SET1 _mm256_set1_ps
#define FMADD _mm256_fmadd_ps
#define ADD _mm256_add_ps
#define ZERO _mm256_setzero_ps
/* x where x > 0 or NaN (not x <= 0, unordered), else +0: fc_relu_fwd's rule */
#define RELU(a) _mm256_and_ps((a), _mm256_cmp_ps((a), _mm256_setzero_ps(), _CMP_NLE_UQ))
#define FN(name) f32_6x16_##name
#define TBLOCK_REGS f32_tblock_regs
#define MASKLOADN(p, n) _mm256_maskload_ps((p), f32_lanes(n))
#define RANGE_LOADZ(p, a, b) _mm256_maskload_ps((p), _mm256_andnot_si256(f32_lanes(a), f32_lanes(b)))
#define TAIL_STORE(p, v, n) _mm256_maskstore_ps((p), f32_lanes(n), (v))
#define TBLOCK_ROWS f32_tblock_rows
#define LOAD _mm256_load_ps
#define TRANSPOSE_STORE f32_transpose_store
#define BCAST_GROUPS f32_bcast_groups
/* no narrow or edge variants of grouped tiles: on AVX2 their row-aligned groups measured 2-5 %
   slower (Zen 4, 14x14 and 28x28, 8 channels a group: a 6-pixel tile over K = 72 taps is short
   enough that the extra calls and masked stores outweigh the taps left out) */
#define GROUP_EDGE_TILES(X)
#define GROUP_PLAIN_TILES(X) X(2, 1) X(2, 2) X(4, 1) X(4, 2)
#define GROUP_TILES(X) GROUP_EDGE_TILES(X) GROUP_PLAIN_TILES(X)
#include "implicit_kernels.inc"
#undef FN

#define REAL double
#define VEC __m256d
#define VL 4
#define NV 2
#define LOADU _mm256_loadu_pd
#define STOREU _mm256_storeu_pd
#define SET1 _mm256_set1_pd
#define FMADD _mm256_fmadd_pd
#define ADD _mm256_add_pd
#define ZERO _mm256_setzero_pd
#define RELU(a) _mm256_and_pd((a), _mm256_cmp_pd((a), _mm256_setzero_pd(), _CMP_NLE_UQ))
#define FN(name) f64_6x8_##name
#define TBLOCK_REGS f64_tblock_regs
#define MASKLOADN(p, n) _mm256_maskload_pd((p), f64_lanes(n))
#define RANGE_LOADZ(p, a, b) _mm256_maskload_pd((p), _mm256_andnot_si256(f64_lanes(a), f64_lanes(b)))
#define TAIL_STORE(p, v, n) _mm256_maskstore_pd((p), f64_lanes(n), (v))
#define TBLOCK_ROWS f64_tblock_rows
#define LOAD _mm256_load_pd
#define TRANSPOSE_STORE f64_transpose_store
#define BCAST_GROUPS f64_bcast_groups
#define GROUP_EDGE_TILES(X)
#define GROUP_PLAIN_TILES(X) X(2, 1) X(2, 2)
#define GROUP_TILES(X) GROUP_EDGE_TILES(X) GROUP_PLAIN_TILES(X)
#include "implicit_kernels.inc"

#undef MR

const fc_implicit_kernels fc_implicit_f32_6x16__avx2 = {
    .mr = 6, .nr = 16, .vl = 8,
    .fwd = f32_6x16_fwd_table,
    .fwd_grp = {{NULL}, {NULL, f32_6x16_fwd_g2_1v, f32_6x16_fwd_g2_2v}, {NULL, f32_6x16_fwd_g4_1v, f32_6x16_fwd_g4_2v}},
    .wgrad = f32_6x16_wgrad, .wgrad_1v = f32_6x16_wgrad_1v,
    .wgrad_grp = {{NULL},
                  {NULL, f32_6x16_wgrad_g2_1v, f32_6x16_wgrad_g2_2v},
                  {NULL, f32_6x16_wgrad_g4_1v, f32_6x16_wgrad_g4_2v}},
    .pack_bt = f32_6x16_pack_bt, .pack_bt_rows = f32_6x16_pack_bt_rows,
    .interleave = f32_6x16_interleave, .gather_wt = f32_6x16_gather_wt,
    .copy_rows = f32_6x16_copy_rows};
const fc_implicit_kernels fc_implicit_f64_6x8__avx2 = {
    .mr = 6, .nr = 8, .vl = 4,
    .fwd = f64_6x8_fwd_table,
    .fwd_grp = {{NULL}, {NULL, f64_6x8_fwd_g2_1v, f64_6x8_fwd_g2_2v}},
    .wgrad = f64_6x8_wgrad, .wgrad_1v = f64_6x8_wgrad_1v,
    .wgrad_grp = {{NULL}, {NULL, f64_6x8_wgrad_g2_1v, f64_6x8_wgrad_g2_2v}},
    .pack_bt = f64_6x8_pack_bt, .pack_bt_rows = f64_6x8_pack_bt_rows,
    .interleave = f64_6x8_interleave, .gather_wt = f64_6x8_gather_wt,
    .copy_rows = f64_6x8_copy_rows};
FC_TARGET_POP
#endif
