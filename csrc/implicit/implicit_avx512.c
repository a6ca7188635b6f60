/* implicit_avx512.c: the implicit-GEMM micro-kernels for AVX-512F, f32 8x32 and f64 8x24
   (the GEMM's tiles: same register budget, see gemm/f32-gemm-8x32-avx512.c). */
#include "implicit.h"

#ifdef FC_IMPLICIT_HAVE_X86
#include "../isa_target.h"
FC_TARGET_PUSH("avx512f")
#include <immintrin.h>

#include <string.h>

#include "transpose_avx2.h"

/* 16 x 16 floats, rows r[i] in registers: dst[j*ldd + i] = r[i][j]. Pairs of rows interleaved, then pairs
   of pairs (as doubles), then 128-bit lanes gathered across the four groups of four rows. */
static inline __attribute__((always_inline)) void f32_tblock_regs(const __m512 r[16], float *dst, int64_t ldd)
{
    __m512 t[16];
    __m512d u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int g = 0; g < 16; g += 4) { /* rows g..g+3: u[g + j] holds columns j, j+4, j+8, j+12 */
        u[g + 0] = _mm512_unpacklo_pd(_mm512_castps_pd(t[g]), _mm512_castps_pd(t[g + 2]));
        u[g + 1] = _mm512_unpackhi_pd(_mm512_castps_pd(t[g]), _mm512_castps_pd(t[g + 2]));
        u[g + 2] = _mm512_unpacklo_pd(_mm512_castps_pd(t[g + 1]), _mm512_castps_pd(t[g + 3]));
        u[g + 3] = _mm512_unpackhi_pd(_mm512_castps_pd(t[g + 1]), _mm512_castps_pd(t[g + 3]));
    }
    for (int j = 0; j < 4; j++) {
        const __m512 a = _mm512_castpd_ps(u[j]), b = _mm512_castpd_ps(u[4 + j]);
        const __m512 c = _mm512_castpd_ps(u[8 + j]), e = _mm512_castpd_ps(u[12 + j]);
        const __m512 v0 = _mm512_shuffle_f32x4(a, b, 0x88), v1 = _mm512_shuffle_f32x4(a, b, 0xdd);
        const __m512 v2 = _mm512_shuffle_f32x4(c, e, 0x88), v3 = _mm512_shuffle_f32x4(c, e, 0xdd);
        _mm512_storeu_ps(dst + (j + 0) * ldd, _mm512_shuffle_f32x4(v0, v2, 0x88));
        _mm512_storeu_ps(dst + (j + 8) * ldd, _mm512_shuffle_f32x4(v0, v2, 0xdd));
        _mm512_storeu_ps(dst + (j + 4) * ldd, _mm512_shuffle_f32x4(v1, v3, 0x88));
        _mm512_storeu_ps(dst + (j + 12) * ldd, _mm512_shuffle_f32x4(v1, v3, 0xdd));
    }
}

/* The block whose row i starts at rows[i] + q0 (pack_bt_rows: the rows of a tile's lanes), or,
   rows NULL, at src + i*lds + q0 (pack_bt: one strip of grad_y; always inlined, so the test
   folds away). */
static inline __attribute__((always_inline)) void f32_tblock_rows(const float *const *rows, const float *src, int64_t lds,
                                                                  int64_t q0, float *dst, int64_t ldd)
{
    __m512 r[16];
    for (int i = 0; i < 16; i++)
        r[i] = _mm512_loadu_ps((rows ? rows[i] : src + i * lds) + q0);
    f32_tblock_regs(r, dst, ldd);
}

/* 8 x 8 doubles, the same scheme one level shorter. */
static inline __attribute__((always_inline)) void f64_tblock_regs(const __m512d r[8], double *dst, int64_t ldd)
{
    __m512d t[8];
    for (int i = 0; i < 8; i += 2) { /* t[i]: even columns of rows i, i+1; t[i+1]: odd ones */
        t[i] = _mm512_unpacklo_pd(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_pd(r[i], r[i + 1]);
    }
    for (int j = 0; j < 2; j++) { /* j = 0: columns 0, 2, 4, 6; j = 1: columns 1, 3, 5, 7 */
        const __m512d v0 = _mm512_shuffle_f64x2(t[j], t[2 + j], 0x88);
        const __m512d v1 = _mm512_shuffle_f64x2(t[j], t[2 + j], 0xdd);
        const __m512d v2 = _mm512_shuffle_f64x2(t[4 + j], t[6 + j], 0x88);
        const __m512d v3 = _mm512_shuffle_f64x2(t[4 + j], t[6 + j], 0xdd);
        _mm512_storeu_pd(dst + (j + 0) * ldd, _mm512_shuffle_f64x2(v0, v2, 0x88));
        _mm512_storeu_pd(dst + (j + 4) * ldd, _mm512_shuffle_f64x2(v0, v2, 0xdd));
        _mm512_storeu_pd(dst + (j + 2) * ldd, _mm512_shuffle_f64x2(v1, v3, 0x88));
        _mm512_storeu_pd(dst + (j + 6) * ldd, _mm512_shuffle_f64x2(v1, v3, 0xdd));
    }
}

static inline __attribute__((always_inline)) void f64_tblock_rows(const double *const *rows, const double *src, int64_t lds,
                                                                  int64_t q0, double *dst, int64_t ldd)
{
    __m512d r[8];
    for (int i = 0; i < 8; i++)
        r[i] = _mm512_loadu_pd((rows ? rows[i] : src + i * lds) + q0);
    f64_tblock_regs(r, dst, ldd);
}

/* Both 256-bit halves' 8x8 transposes at once: out[c] = channel c of the 8 pixels tile[0..7]
   in its low half, channel c + 8 in its high half. The unpacks and shuffles work within
   128-bit lanes, so they transpose both halves together, and one two-source permute per
   output gathers the lanes: 24 zmm shuffles where the halves one at a time take 8 extracts
   and 48 ymm shuffles. On Intel server cores shuffles issue on port 5, the second FMA pipe;
   at K = 288 (a 32-channel 3x3 layer) they are 2-3 % of a tile's FMA cycles there. */
static inline __attribute__((always_inline)) void f32_transpose_halves(const __m512 tile[8], __m512 out[8])
{
    __m512 t[8], s[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm512_unpacklo_ps(tile[i], tile[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(tile[i], tile[i + 1]);
    }
    for (int g = 0; g < 8; g += 4) {
        s[g + 0] = _mm512_shuffle_ps(t[g], t[g + 2], 0x44);
        s[g + 1] = _mm512_shuffle_ps(t[g], t[g + 2], 0xEE);
        s[g + 2] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0x44);
        s[g + 3] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
    }
    /* 128-bit lanes (a0 b0 a2 b2) and (a1 b1 a3 b3) of a = s[c], b = s[4 + c] */
    const __m512i even = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
    const __m512i odd = _mm512_setr_epi32(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
    for (int c = 0; c < 4; c++) {
        out[c] = _mm512_permutex2var_ps(s[c], even, s[4 + c]);
        out[c + 4] = _mm512_permutex2var_ps(s[c], odd, s[4 + c]);
    }
}

/* tile[t] (pixel t, 16 channels) -> y[c*y_plane + t] (or y[rows[c] + t] when rows is given)
   for channels c < nch, pixels t < npx: 8x8 transposes of the vectors' 256-bit halves. */
static inline __attribute__((always_inline)) void f32_transpose_store(const __m512 tile[8], float *y,
                                                                      int64_t y_plane, const int64_t *rows,
                                                                      int64_t npx, int64_t nch)
{
#define ROW(c) (y + (rows ? rows[c] : (c) * y_plane))
    __m512 col[8];
    f32_transpose_halves(tile, col);
#define HIGH(c) _mm512_extractf64x4_pd(_mm512_castps_pd(col[c]), 1) /* channel c + 8 */
    if (npx == 8 && nch >= 16) {
        /* the whole tile, as almost every call has it: plain stores, no masks, no
           per-channel tests (the store took ~15 % of a K = 147 layer's kernel time) */
        for (int c = 0; c < 8; c++) {
            _mm256_storeu_ps(ROW(c), _mm512_castps512_ps256(col[c]));
            _mm256_storeu_pd((double *)ROW(c + 8), HIGH(c));
        }
        return;
    }
    const __mmask16 m = (__mmask16)((1u << npx) - 1); /* npx <= 8: low lanes only */
    for (int c = 0; c < 8 && c < nch; c++)
        _mm512_mask_storeu_ps(ROW(c), m, col[c]);
    for (int c = 0; c < 8 && c + 8 < nch; c++)
        _mm512_mask_storeu_ps(ROW(c + 8), m, _mm512_castpd_ps(_mm512_castpd256_pd512(HIGH(c))));
#undef HIGH
}

/* The same for f64: one 8x8 transpose per vector (8 channels). */
static inline __attribute__((always_inline)) void f64_transpose_store(const __m512d tile[8], double *y,
                                                                      int64_t y_plane, const int64_t *rows,
                                                                      int64_t npx, int64_t nch)
{
    const __mmask8 m = (__mmask8)((1u << npx) - 1);
    __m512d t[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm512_unpacklo_pd(tile[i], tile[i + 1]);
        t[i + 1] = _mm512_unpackhi_pd(tile[i], tile[i + 1]);
    }
    __m512d col[8];
    for (int j = 0; j < 2; j++) {
        const __m512d v0 = _mm512_shuffle_f64x2(t[j], t[2 + j], 0x88);
        const __m512d v1 = _mm512_shuffle_f64x2(t[j], t[2 + j], 0xdd);
        const __m512d v2 = _mm512_shuffle_f64x2(t[4 + j], t[6 + j], 0x88);
        const __m512d v3 = _mm512_shuffle_f64x2(t[4 + j], t[6 + j], 0xdd);
        col[j + 0] = _mm512_shuffle_f64x2(v0, v2, 0x88);
        col[j + 4] = _mm512_shuffle_f64x2(v0, v2, 0xdd);
        col[j + 2] = _mm512_shuffle_f64x2(v1, v3, 0x88);
        col[j + 6] = _mm512_shuffle_f64x2(v1, v3, 0xdd);
    }
    if (npx == 8 && nch >= 8) { /* the whole tile: no masks, no per-channel tests */
        for (int c = 0; c < 8; c++)
            _mm512_storeu_pd(ROW(c), col[c]);
        return;
    }
    for (int c = 0; c < 8 && c < nch; c++)
        _mm512_mask_storeu_pd(ROW(c), m, col[c]);
}
#undef ROW

/* G consecutive elements at p (one per group of a grouped tile) across the whole vector:
   one broadcast load each (vbroadcastsd, vbroadcastf32x4, vbroadcastf64x4). */
static inline __attribute__((always_inline)) __m512 f32_bcast_groups(const float *p, const int G)
{
    if (G == 2) {
        double pair;
        memcpy(&pair, p, sizeof pair);
        return _mm512_castpd_ps(_mm512_set1_pd(pair));
    }
    if (G == 4)
        return _mm512_broadcast_f32x4(_mm_loadu_ps(p));
    return _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(_mm256_loadu_ps(p)))); /* 8 */
}

static inline __attribute__((always_inline)) __m512d f64_bcast_groups(const double *p, const int G)
{
    if (G == 2)
        return _mm512_castps_pd(_mm512_broadcast_f32x4(_mm_castpd_ps(_mm_loadu_pd(p))));
    return _mm512_broadcast_f64x4(_mm256_loadu_pd(p)); /* 4 */
}

/* dst[4j + g] = v[g][j] for j < m (<= 16): a 4 x 16 transpose (pairs, then quadruples within
   128-bit lanes, then the lanes across the four vectors), stored with masks. */
static inline __attribute__((always_inline)) void f32_interleave4_regs(const __m512 v[4], float *dst, int64_t m)
{
    /* u[q], 128-bit lane L: the four groups' column 4L + q */
    const __m512 t0 = _mm512_unpacklo_ps(v[0], v[1]), t1 = _mm512_unpackhi_ps(v[0], v[1]);
    const __m512 t2 = _mm512_unpacklo_ps(v[2], v[3]), t3 = _mm512_unpackhi_ps(v[2], v[3]);
    const __m512 u0 = _mm512_shuffle_ps(t0, t2, 0x44), u1 = _mm512_shuffle_ps(t0, t2, 0xEE);
    const __m512 u2 = _mm512_shuffle_ps(t1, t3, 0x44), u3 = _mm512_shuffle_ps(t1, t3, 0xEE);
    /* out[k] = lane k of u0, u1, u2, u3: columns 4k .. 4k + 3 */
    const __m512 w0 = _mm512_shuffle_f32x4(u0, u1, 0x44), w1 = _mm512_shuffle_f32x4(u2, u3, 0x44);
    const __m512 w2 = _mm512_shuffle_f32x4(u0, u1, 0xEE), w3 = _mm512_shuffle_f32x4(u2, u3, 0xEE);
    const __m512 out[4] = {_mm512_shuffle_f32x4(w0, w1, 0x88), _mm512_shuffle_f32x4(w0, w1, 0xDD),
                           _mm512_shuffle_f32x4(w2, w3, 0x88), _mm512_shuffle_f32x4(w2, w3, 0xDD)};
    for (int k = 0; k < 4 && 4 * m > 16 * k; k++) {
        const int64_t left = 4 * m - 16 * k;
        const __mmask16 mk = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
        _mm512_mask_storeu_ps(dst + 16 * k, mk, out[k]);
    }
}

/* o[j*G + g] = v[g][j] for j < m (<= 16), G = 2, 4 or 8: one 16-column block of a tile of G
   groups' band rows (ResNeXt's 16, 8 or 4 channels a group), stored with masks. G = 2: two
   permutes interleave the pair; G = 4: the 4 x 16 transpose; G = 8: two 8 x 8 transposes of
   the vectors' halves, one column (8 groups) a 256-bit store. */
static inline __attribute__((always_inline)) void f32_interleave_store(const __m512 *v, float *o, int64_t m,
                                                                       const int G)
{
    if (G == 2) {
        const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        const int64_t left = 2 * m - 16; /* elements of the second store */
        _mm512_mask_storeu_ps(o, (__mmask16)((1u << (left >= 0 ? 16 : 2 * m)) - 1),
                              _mm512_permutex2var_ps(v[0], lo, v[1]));
        if (left > 0)
            _mm512_mask_storeu_ps(o + 16, (__mmask16)((1u << left) - 1), _mm512_permutex2var_ps(v[0], hi, v[1]));
    } else if (G == 4) {
        f32_interleave4_regs(v, o, m);
    } else { /* 8 */
        for (int h = 0; h < 2 && 8 * h < m; h++) {
            __m256 r[8], col[8];
            for (int g = 0; g < 8; g++)
                r[g] = h ? _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v[g]), 1))
                         : _mm512_castps512_ps256(v[g]);
            f32_transpose8(r, col);
            for (int j = 0; j < 8 && 8 * h + j < m; j++)
                _mm256_storeu_ps(o + 8 * (8 * h + j), col[j]);
        }
    }
}

/* dst[j*G + g] = src[g*gstride + j] for j < n, g < G = 2, 4 or 8: the band rows of a tile of G
   groups, 16 columns at a time, masked at the row's end. (The scalar loop the compiler made of
   it, rows of 14-56 columns, took 7-11 % of those layers' forward and input gradient.) */
static void f32_interleave_unit(float *dst, const float *src, int64_t gstride, int64_t n, int64_t G)
{
    for (int64_t j0 = 0; j0 < n; j0 += 16) {
        const int64_t m = n - j0 < 16 ? n - j0 : 16;
        const __mmask16 mask = (__mmask16)((1u << m) - 1);
        __m512 v[8];
        for (int g = 0; g < G; g++)
            v[g] = _mm512_maskz_loadu_ps(mask, src + j0 + g * gstride);
        if (G == 2)
            f32_interleave_store(v, dst + G * j0, m, 2);
        else if (G == 4)
            f32_interleave_store(v, dst + G * j0, m, 4);
        else
            f32_interleave_store(v, dst + G * j0, m, 8);
    }
}

/* The lane mask [a, b) of a vl-lane vector, a and b clamped to [0, vl] (RANGE_LOADZ). */
static inline __attribute__((always_inline)) unsigned range_mask(int64_t a, int64_t b, int64_t vl)
{
    a = a < 0 ? 0 : a > vl ? vl : a;
    b = b < 0 ? 0 : b > vl ? vl : b;
    return b > a ? ((1u << b) - 1) & ~((1u << a) - 1) : 0u;
}

/* o[j*G + g] = v[g][j] for j < m (<= 8), G = 2 or 4: f32_interleave_store for f64. G = 2: two
   permutes; G = 4: pairs of groups' columns unpacked, then 128-bit lanes gathered (two
   columns of the four groups a vector). (f64 grouped band copies: stride-2 weight gradient
   of 8 channels a group at 28x28 -15 to -20 %, forward -1 to -4 %, alternating builds.) */
static inline __attribute__((always_inline)) void f64_interleave_store(const __m512d *v, double *o, int64_t m,
                                                                       const int G)
{
    __m512d out[4];
    if (G == 2) {
        out[0] = _mm512_permutex2var_pd(v[0], _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11), v[1]);
        out[1] = _mm512_permutex2var_pd(v[0], _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15), v[1]);
    } else {
        /* t0: (v0[2i], v1[2i]) in 128-bit lane i, t1: (v0[2i+1], v1[2i+1]); t2, t3: v2, v3's */
        const __m512d t0 = _mm512_unpacklo_pd(v[0], v[1]), t1 = _mm512_unpackhi_pd(v[0], v[1]);
        const __m512d t2 = _mm512_unpacklo_pd(v[2], v[3]), t3 = _mm512_unpackhi_pd(v[2], v[3]);
        const __m512d u0 = _mm512_shuffle_f64x2(t0, t2, 0x44), u1 = _mm512_shuffle_f64x2(t1, t3, 0x44);
        const __m512d u2 = _mm512_shuffle_f64x2(t0, t2, 0xEE), u3 = _mm512_shuffle_f64x2(t1, t3, 0xEE);
        out[0] = _mm512_shuffle_f64x2(u0, u1, 0x88); /* columns 0, 1 */
        out[1] = _mm512_shuffle_f64x2(u0, u1, 0xDD); /* 2, 3 */
        out[2] = _mm512_shuffle_f64x2(u2, u3, 0x88); /* 4, 5 */
        out[3] = _mm512_shuffle_f64x2(u2, u3, 0xDD); /* 6, 7 */
    }
    for (int k = 0; k < G && G * m > 8 * k; k++) {
        const int64_t left = G * m - 8 * k;
        _mm512_mask_storeu_pd(o + 8 * k, left >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << left) - 1), out[k]);
    }
}

#define INTERLEAVE_UNIT f32_interleave_unit
#define INTERLEAVE_STORE f32_interleave_store
#define EVEN_LANES(a, b) \
    _mm512_permutex2var_ps((a), _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), (b))
#define MR 8
#define REAL float
#define VEC __m512
#define VL 16
#define NV 2
#define LOADU _mm512_loadu_ps
#define STOREU _mm512_storeu_ps
#define SET1 _mm512_set1_ps
#define FMADD _mm512_fmadd_ps
#define ADD _mm512_add_ps
#define ZERO _mm512_setzero_ps
/* x where x > 0 or NaN (not x <= 0, unordered), else +0: fc_relu_fwd's rule */
#define RELU(a) _mm512_maskz_mov_ps(_mm512_cmp_ps_mask((a), _mm512_setzero_ps(), _CMP_NLE_UQ), (a))
#define FN(name) f32_8x32_##name
#define TBLOCK_REGS f32_tblock_regs
#define MASKLOADN(p, n) _mm512_maskz_loadu_ps((__mmask16)((1u << (n)) - 1), (p))
#define RANGE_LOADZ(p, a, b) _mm512_maskz_loadu_ps((__mmask16)range_mask((a), (b), 16), (p))
#define TAIL_STORE(p, v, n) _mm512_mask_storeu_ps((p), (__mmask16)((1u << (n)) - 1), (v))
#define TBLOCK_ROWS f32_tblock_rows
#define LOAD _mm512_load_ps
#define TRANSPOSE_STORE f32_transpose_store
#define BCAST_GROUPS f32_bcast_groups
#define GROUP_EDGE_TILES(X) X(2, 2) X(4, 2) X(8, 2) /* 16, 8, 4 channels a group */
#define GROUP_PLAIN_TILES(X) X(2, 1) X(4, 1) X(8, 1)
#define GROUP_TILES(X) GROUP_EDGE_TILES(X) GROUP_PLAIN_TILES(X)
#include "implicit_kernels.inc"
#undef FN

#define INTERLEAVE_STORE f64_interleave_store
#define EVEN_LANES(a, b) _mm512_permutex2var_pd((a), _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14), (b))
#define REAL double
#define VEC __m512d
#define VL 8
#define NV 3
#define LOADU _mm512_loadu_pd
#define STOREU _mm512_storeu_pd
#define SET1 _mm512_set1_pd
#define FMADD _mm512_fmadd_pd
#define ADD _mm512_add_pd
#define ZERO _mm512_setzero_pd
#define RELU(a) _mm512_maskz_mov_pd(_mm512_cmp_pd_mask((a), _mm512_setzero_pd(), _CMP_NLE_UQ), (a))
#define FN(name) f64_8x24_##name
#define TBLOCK_REGS f64_tblock_regs
#define MASKLOADN(p, n) _mm512_maskz_loadu_pd((__mmask8)((1u << (n)) - 1), (p))
#define RANGE_LOADZ(p, a, b) _mm512_maskz_loadu_pd((__mmask8)range_mask((a), (b), 8), (p))
#define TAIL_STORE(p, v, n) _mm512_mask_storeu_pd((p), (__mmask8)((1u << (n)) - 1), (v))
#define TBLOCK_ROWS f64_tblock_rows
#define LOAD _mm512_load_pd
#define TRANSPOSE_STORE f64_transpose_store
#define BCAST_GROUPS f64_bcast_groups
#define GROUP_EDGE_TILES(X) X(2, 2) X(4, 2) /* 8, 4 channels a group */
#define GROUP_PLAIN_TILES(X) X(2, 1) X(2, 3) X(4, 1) X(4, 3)
#define GROUP_TILES(X) GROUP_EDGE_TILES(X) GROUP_PLAIN_TILES(X)
#include "implicit_kernels.inc"
#undef MR

const fc_implicit_kernels fc_implicit_f32_8x32__avx512 = {
    .mr = 8, .nr = 32, .vl = 16,
    .fwd = f32_8x32_fwd_table,
    .fwd_grp = {{NULL}, {NULL, f32_8x32_fwd_g2_1v, f32_8x32_fwd_g2_2v},
                {NULL, f32_8x32_fwd_g4_1v, f32_8x32_fwd_g4_2v}, {NULL, f32_8x32_fwd_g8_1v, f32_8x32_fwd_g8_2v}},
    .wgrad = f32_8x32_wgrad, .wgrad_1v = f32_8x32_wgrad_1v,
    .wgrad_grp = {{NULL},
                  {NULL, f32_8x32_wgrad_g2_1v, f32_8x32_wgrad_g2_2v},
                  {NULL, f32_8x32_wgrad_g4_1v, f32_8x32_wgrad_g4_2v},
                  {NULL, f32_8x32_wgrad_g8_1v, f32_8x32_wgrad_g8_2v}},
    .pack_bt = f32_8x32_pack_bt, .pack_bt_rows = f32_8x32_pack_bt_rows,
    .interleave = f32_8x32_interleave, .gather_wt = f32_8x32_gather_wt,
    .copy_rows = f32_8x32_copy_rows, .copy_rows_grp = f32_8x32_copy_rows_grp};
const fc_implicit_kernels fc_implicit_f64_8x24__avx512 = {
    .mr = 8, .nr = 24, .vl = 8,
    .fwd = f64_8x24_fwd_table,
    .fwd_grp = {{NULL}, {NULL, f64_8x24_fwd_g2_1v, f64_8x24_fwd_g2_2v, f64_8x24_fwd_g2_3v},
                {NULL, f64_8x24_fwd_g4_1v, f64_8x24_fwd_g4_2v, f64_8x24_fwd_g4_3v}},
    .wgrad = f64_8x24_wgrad, .wgrad_1v = f64_8x24_wgrad_1v,
    .wgrad_grp = {{NULL},
                  {NULL, f64_8x24_wgrad_g2_1v, f64_8x24_wgrad_g2_2v, f64_8x24_wgrad_g2_3v},
                  {NULL, f64_8x24_wgrad_g4_1v, f64_8x24_wgrad_g4_2v, f64_8x24_wgrad_g4_3v}},
    .pack_bt = f64_8x24_pack_bt, .pack_bt_rows = f64_8x24_pack_bt_rows,
    .interleave = f64_8x24_interleave, .gather_wt = f64_8x24_gather_wt,
    .copy_rows = f64_8x24_copy_rows, .copy_rows_grp = f64_8x24_copy_rows_grp};
FC_TARGET_POP
#endif
