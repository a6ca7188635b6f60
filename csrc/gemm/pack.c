/*
 * pack.c: packing of A blocks and B panels into the micro-panel layouts of the micro-kernels.
 *
 *   A block (mc x kc, strides rsa/csa) -> ceil(mc/MR) micro-panels of MR*kc, dst[p*MR + i],
 *                                         rows past mc zero
 *   B panel (kc x nc, strides rsb/csb) -> micro-panel jr at dst + jr*NR*kcap, dst[p*NR + j],
 *                                         columns past nc zero
 *
 * Portable C for any strides, with fast paths for unit strides; on x86-64 with AVX2 (used by
 * the AVX2 and AVX-512 kernels) the unit-stride cases that need a transpose (row-major A,
 * transposed B) go through 8x8 / 4x4 register transposes and row-major B through aligned
 * vector copies: for a product with small m (m = C_out = 64 in a convolution) packing B
 * costs about as much per element as m/16 FMAs, so a scalar pack would be a large share.
 * The SIMD functions carry __attribute__((target("avx2"))), so this file needs no flags.
 */
#include <stdint.h>
#include <string.h>

#include "../fastconv.h"
#include "gemm.h"

#ifdef FC_GEMM_HAVE_X86_KERNELS
#include <immintrin.h> /* used only inside functions with __attribute__((target("avx2"))) */
#endif

#if defined(__GNUC__)
#define FC_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define FC_ALWAYS_INLINE static inline
#endif

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* ---- Portable packing ------------------------------------------------------------------
 * A block (mc x kc at a, strides rsa/csa) -> ceil(mc/MR) micro-panels of MR*kc, dst[p*MR + i],
 * rows past mc zero. B panel columns [j0, j1) of NR -> micro-panel of NR*kc, dst[p*NR + j],
 * columns past n zero. Fast paths for unit strides (row-major or transposed operands); the
 * micro-panel widths are compile-time constants in the specialised copies below.
 */
#define DEFINE_PACK(T, SFX)                                                                        \
    FC_ALWAYS_INLINE void pack_a_panel_##SFX(int64_t kc, int64_t mv, const T *restrict a,         \
                                             int64_t rsa, int64_t csa, T *restrict dst,            \
                                             const int mr)                                         \
    {                                                                                              \
        if (mv == mr && rsa == 1) { /* columns of the micro-panel contiguous (A transposed) */    \
            for (int64_t p = 0; p < kc; p++)                                                       \
                for (int i = 0; i < mr; i++)                                                       \
                    dst[p * mr + i] = a[p * csa + i];                                              \
            return;                                                                                \
        }                                                                                          \
        if (csa == 1) { /* rows contiguous (A row-major): transpose in blocks of 8 k-steps */     \
            int64_t p0 = 0;                                                                        \
            if (mv == mr)                                                                          \
                for (; p0 + 8 <= kc; p0 += 8)                                                      \
                    for (int i = 0; i < mr; i++)                                                   \
                        for (int pp = 0; pp < 8; pp++)                                             \
                            dst[(p0 + pp) * mr + i] = a[i * rsa + p0 + pp];                        \
            for (int64_t p = p0; p < kc; p++) {                                                    \
                int i = 0;                                                                         \
                for (; i < mv; i++)                                                                \
                    dst[p * mr + i] = a[i * rsa + p];                                              \
                for (; i < mr; i++)                                                                \
                    dst[p * mr + i] = 0;                                                           \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        for (int64_t p = 0; p < kc; p++) {                                                         \
            int i = 0;                                                                             \
            for (; i < mv; i++)                                                                    \
                dst[p * mr + i] = a[i * rsa + p * csa];                                            \
            for (; i < mr; i++)                                                                    \
                dst[p * mr + i] = 0;                                                               \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    /* Columns [cs, ce) of one micro-panel (src at its column 0), valid up to cv, zeros after. */ \
    FC_ALWAYS_INLINE void pack_b_panel_##SFX(int64_t kc, int64_t cs, int64_t cv, int64_t ce,      \
                                             const T *restrict b, int64_t rsb, int64_t csb,        \
                                             T *restrict dst, const int nr)                        \
    {                                                                                              \
        if (cv == ce && rsb == 1) { /* columns contiguous (B transposed): blocks of 8 k-steps */  \
            int64_t p0 = 0;                                                                        \
            for (; p0 + 8 <= kc; p0 += 8)                                                          \
                for (int64_t j = cs; j < ce; j++)                                                  \
                    for (int pp = 0; pp < 8; pp++)                                                 \
                        dst[(p0 + pp) * nr + j] = b[j * csb + p0 + pp];                            \
            for (int64_t p = p0; p < kc; p++)                                                      \
                for (int64_t j = cs; j < ce; j++)                                                  \
                    dst[p * nr + j] = b[j * csb + p];                                              \
            return;                                                                                \
        }                                                                                          \
        for (int64_t p = 0; p < kc; p++) {                                                         \
            int64_t j = cs;                                                                        \
            for (; j < cv; j++)                                                                    \
                dst[p * nr + j] = b[p * rsb + j * csb];                                            \
            for (; j < ce; j++)                                                                    \
                dst[p * nr + j] = 0;                                                               \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    /* Pack rows [0, mc) of the A block into micro-panels of height mr. */                         \
    static void pack_a_##SFX(int64_t mc, int64_t kc, const T *a, int64_t rsa, int64_t csa,        \
                             T *restrict dst, int mr)                                              \
    {                                                                                              \
        for (int64_t i0 = 0; i0 < mc; i0 += mr, dst += (int64_t)mr * kc) {                        \
            const int64_t mv = min64(mr, mc - i0);                                                 \
            const T *src = a + i0 * rsa;                                                           \
            switch (mr) {                                                                          \
            case 4: pack_a_panel_##SFX(kc, mv, src, rsa, csa, dst, 4); break;                      \
            case 6: pack_a_panel_##SFX(kc, mv, src, rsa, csa, dst, 6); break;                      \
            case 8: pack_a_panel_##SFX(kc, mv, src, rsa, csa, dst, 8); break;                      \
            default: pack_a_panel_##SFX(kc, mv, src, rsa, csa, dst, mr); break;                    \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    /* Columns [j0, j1) of the B panel (nc valid columns, zeros after) into their micro-panels: \
       column j lands at dst + (j / nr) * nr * kcap + p * nr + j % nr. */                         \
    static void pack_b_##SFX(int64_t j0, int64_t j1, int64_t nc, int64_t kc, int64_t kcap,       \
                             const T *b, int64_t rsb, int64_t csb, T *restrict dst, int nr)        \
    {                                                                                              \
        for (int64_t jr = j0 / nr; jr * nr < j1; jr++) {                                           \
            const int64_t base = jr * nr;                                                          \
            const int64_t cs = (j0 > base ? j0 : base) - base;                                     \
            const int64_t ce = min64(j1, base + nr) - base;                                        \
            const int64_t cv = nc - base < cs ? cs : min64(nc - base, ce);                         \
            const T *src = b + base * csb;                                                         \
            T *d = dst + base * kcap;                                                              \
            switch (nr) {                                                                          \
            case 4: pack_b_panel_##SFX(kc, cs, cv, ce, src, rsb, csb, d, 4); break;                \
            case 8: pack_b_panel_##SFX(kc, cs, cv, ce, src, rsb, csb, d, 8); break;                \
            case 16: pack_b_panel_##SFX(kc, cs, cv, ce, src, rsb, csb, d, 16); break;              \
            case 24: pack_b_panel_##SFX(kc, cs, cv, ce, src, rsb, csb, d, 24); break;              \
            case 32: pack_b_panel_##SFX(kc, cs, cv, ce, src, rsb, csb, d, 32); break;              \
            default: pack_b_panel_##SFX(kc, cs, cv, ce, src, rsb, csb, d, nr); break;              \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_PACK(float, f32)
DEFINE_PACK(double, f64)

#ifdef FC_GEMM_HAVE_X86_KERNELS
/* ---- AVX2 packing ------------------------------------------------------------------------ */

/* Row-major A (csa == 1: each row of the micro-panel contiguous in k): the micro-panel is
   the transpose of mr rows, done by 8x8 (f32) / 4x4 (f64) register transposes over groups
   of 8 / 4 rows; a group's missing rows (past mr, or past the last row of A) are zeros,
   and only the group's rows inside mr are stored (masked store). */
__attribute__((target("avx2"))) static void pack_a_rm_f32_avx2(int64_t mc, int64_t kc, const float *a,
                                                               int64_t rsa, float *dst, int mr)
{
    for (int64_t i0 = 0; i0 < mc; i0 += mr, dst += (int64_t)mr * kc) {
        const int64_t mv = min64(mr, mc - i0);
        for (int ib = 0; ib < mr; ib += 8) {
            const int width = mr - ib < 8 ? mr - ib : 8;      /* rows of the group inside mr */
            const int64_t valid = mv - ib < 0 ? 0 : min64(mv - ib, 8); /* ... and inside A */
            const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(width), lanes);
            const float *s = a + (i0 + ib) * rsa;
            float *d = dst + ib;
            int64_t p0 = 0;
            for (; p0 + 8 <= kc; p0 += 8) {
                __m256 r[8];
                for (int q = 0; q < 8; q++)
                    r[q] = q < valid ? _mm256_loadu_ps(s + q * rsa + p0) : _mm256_setzero_ps();
                const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
                const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
                const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
                const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
                const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
                const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
                const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
                const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
                __m256 o[8];
                o[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
                o[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
                o[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
                o[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
                o[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
                o[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
                o[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
                o[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
                if (width == 8) {
                    for (int q = 0; q < 8; q++)
                        _mm256_storeu_ps(d + (p0 + q) * mr, o[q]);
                } else if (width == 6 && mr == 6) {
                    /* the AVX2 6x16 kernel's panels: whole-vector stores, each spilling two
                       zeros or values into the next row's start, which the next store
                       rewrites; the last row stored exactly. AMD's masked stores are slow
                       (this packing was 11 % of an AVX2 1x1 forward at 14x14 on Zen 4). */
                    for (int q = 0; q < 7; q++)
                        _mm256_storeu_ps(d + (p0 + q) * mr, o[q]);
                    _mm_storeu_ps(d + (p0 + 7) * mr, _mm256_castps256_ps128(o[7]));
                    _mm_storel_pi((__m64 *)(d + (p0 + 7) * mr + 4), _mm256_extractf128_ps(o[7], 1));
                } else {
                    for (int q = 0; q < 8; q++)
                        _mm256_maskstore_ps(d + (p0 + q) * mr, mask, o[q]);
                }
            }
            for (int64_t p = p0; p < kc; p++)
                for (int q = 0; q < width; q++)
                    d[p * mr + q] = q < valid ? s[q * rsa + p] : 0.0f;
        }
    }
}

__attribute__((target("avx2"))) static void pack_a_rm_f64_avx2(int64_t mc, int64_t kc, const double *a,
                                                               int64_t rsa, double *dst, int mr)
{
    for (int64_t i0 = 0; i0 < mc; i0 += mr, dst += (int64_t)mr * kc) {
        const int64_t mv = min64(mr, mc - i0);
        for (int ib = 0; ib < mr; ib += 4) {
            const int width = mr - ib < 4 ? mr - ib : 4;
            const int64_t valid = mv - ib < 0 ? 0 : min64(mv - ib, 4);
            const __m256i lanes = _mm256_setr_epi64x(0, 1, 2, 3);
            const __m256i mask = _mm256_cmpgt_epi64(_mm256_set1_epi64x(width), lanes);
            const double *s = a + (i0 + ib) * rsa;
            double *d = dst + ib;
            int64_t p0 = 0;
            for (; p0 + 4 <= kc; p0 += 4) {
                __m256d r[4];
                for (int q = 0; q < 4; q++)
                    r[q] = q < valid ? _mm256_loadu_pd(s + q * rsa + p0) : _mm256_setzero_pd();
                const __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
                const __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
                __m256d o[4];
                o[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
                o[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
                o[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
                o[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
                if (width == 4) {
                    for (int q = 0; q < 4; q++)
                        _mm256_storeu_pd(d + (p0 + q) * mr, o[q]);
                } else if (width == 2) { /* the 6x8 kernel's last two rows: plain 128-bit stores */
                    for (int q = 0; q < 4; q++)
                        _mm_storeu_pd(d + (p0 + q) * mr, _mm256_castpd256_pd128(o[q]));
                } else {
                    for (int q = 0; q < 4; q++)
                        _mm256_maskstore_pd(d + (p0 + q) * mr, mask, o[q]);
                }
            }
            for (int64_t p = p0; p < kc; p++)
                for (int q = 0; q < width; q++)
                    d[p * mr + q] = q < valid ? s[q * rsa + p] : 0.0;
        }
    }
}

/* Transposed B (rsb == 1: each column of a micro-panel is contiguous in k), columns [j0, j1)
   all valid, j0 and j1 multiples of 8 (f32) / 4 (f64): 8x8 / 4x4 register transposes instead of
   one scalar load and store per element. This is the B of dY x cols^T, where packing B costs
   as much per element as m/16 FMAs. */
__attribute__((target("avx2"))) static void pack_bt_f32_avx2(int64_t j0, int64_t j1, int64_t kc,
                                                             int64_t kcap, const float *b, int64_t csb,
                                                             float *dst, int nr)
{
    for (int64_t jr = j0 / nr; jr * nr < j1; jr++) {
        const int64_t base = jr * nr;
        const int64_t cs = (j0 > base ? j0 : base) - base, ce = min64(j1, base + nr) - base;
        const float *src = b + base * csb;
        float *d = dst + base * kcap;
        int64_t p0 = 0;
        for (; p0 + 8 <= kc; p0 += 8) {
            for (int64_t jb = cs; jb < ce; jb += 8) {
                const float *s = src + jb * csb + p0;
                const __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + csb);
                const __m256 r2 = _mm256_loadu_ps(s + 2 * csb), r3 = _mm256_loadu_ps(s + 3 * csb);
                const __m256 r4 = _mm256_loadu_ps(s + 4 * csb), r5 = _mm256_loadu_ps(s + 5 * csb);
                const __m256 r6 = _mm256_loadu_ps(s + 6 * csb), r7 = _mm256_loadu_ps(s + 7 * csb);
                const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
                const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
                const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
                const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
                const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
                const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
                const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
                const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
                float *o = d + p0 * nr + jb;
                _mm256_storeu_ps(o + 0 * nr, _mm256_permute2f128_ps(u0, u4, 0x20));
                _mm256_storeu_ps(o + 1 * nr, _mm256_permute2f128_ps(u1, u5, 0x20));
                _mm256_storeu_ps(o + 2 * nr, _mm256_permute2f128_ps(u2, u6, 0x20));
                _mm256_storeu_ps(o + 3 * nr, _mm256_permute2f128_ps(u3, u7, 0x20));
                _mm256_storeu_ps(o + 4 * nr, _mm256_permute2f128_ps(u0, u4, 0x31));
                _mm256_storeu_ps(o + 5 * nr, _mm256_permute2f128_ps(u1, u5, 0x31));
                _mm256_storeu_ps(o + 6 * nr, _mm256_permute2f128_ps(u2, u6, 0x31));
                _mm256_storeu_ps(o + 7 * nr, _mm256_permute2f128_ps(u3, u7, 0x31));
            }
        }
        for (int64_t p = p0; p < kc; p++)
            for (int64_t j = cs; j < ce; j++)
                d[p * nr + j] = src[j * csb + p];
    }
}

__attribute__((target("avx2"))) static void pack_bt_f64_avx2(int64_t j0, int64_t j1, int64_t kc,
                                                             int64_t kcap, const double *b,
                                                             int64_t csb, double *dst, int nr)
{
    for (int64_t jr = j0 / nr; jr * nr < j1; jr++) {
        const int64_t base = jr * nr;
        const int64_t cs = (j0 > base ? j0 : base) - base, ce = min64(j1, base + nr) - base;
        const double *src = b + base * csb;
        double *d = dst + base * kcap;
        int64_t p0 = 0;
        for (; p0 + 4 <= kc; p0 += 4) {
            for (int64_t jb = cs; jb < ce; jb += 4) {
                const double *s = src + jb * csb + p0;
                const __m256d r0 = _mm256_loadu_pd(s), r1 = _mm256_loadu_pd(s + csb);
                const __m256d r2 = _mm256_loadu_pd(s + 2 * csb), r3 = _mm256_loadu_pd(s + 3 * csb);
                const __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
                const __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
                double *o = d + p0 * nr + jb;
                _mm256_storeu_pd(o + 0 * nr, _mm256_permute2f128_pd(t0, t2, 0x20));
                _mm256_storeu_pd(o + 1 * nr, _mm256_permute2f128_pd(t1, t3, 0x20));
                _mm256_storeu_pd(o + 2 * nr, _mm256_permute2f128_pd(t0, t2, 0x31));
                _mm256_storeu_pd(o + 3 * nr, _mm256_permute2f128_pd(t1, t3, 0x31));
            }
        }
        for (int64_t p = p0; p < kc; p++)
            for (int64_t j = cs; j < ce; j++)
                d[p * nr + j] = src[j * csb + p];
    }
}

/* Row-major B (csb == 1), columns [j0, j1) all valid, whole 32-byte vectors (j0, j1 multiples
   of 32 / size): vector copies into the 64-byte aligned panel (the plain loop would become a
   memcpy call per row). The columns are taken in groups of up to 4 micro-panels, row by row,
   so that B is read in runs of up to 4 * nr elements while only 4 panels are written. */
#define PF_ROWS 8 /* rows ahead (B rows are far apart: the hardware prefetcher misses them) */
__attribute__((target("avx2"))) static void pack_brm_avx2(int64_t j0, int64_t j1, int64_t kc,
                                                          int64_t kcap, const char *b,
                                                          int64_t rsb_bytes, char *dst, int nr,
                                                          int es)
{
    for (int64_t g0 = j0; g0 < j1;) {
        const int64_t g1 = min64(j1, (g0 / nr + 4) * nr);
        for (int64_t p = 0; p < kc; p++) {
            if (p + PF_ROWS < kc)
                for (int64_t off = 0; off < (g1 - g0) * es; off += 64)
                    _mm_prefetch(b + (p + PF_ROWS) * rsb_bytes + g0 * es + off, _MM_HINT_T0);
            for (int64_t jr = g0 / nr; jr * nr < g1; jr++) {
                const int64_t base = jr * nr;
                const int64_t cs = g0 > base ? g0 : base, ce = min64(g1, base + nr);
                const char *src = b + p * rsb_bytes + cs * es;
                char *d = dst + (base * kcap + p * nr + (cs - base)) * es;
                for (int64_t off = 0; off < (ce - cs) * es; off += 32)
                    _mm256_store_si256((__m256i *)(d + off), _mm256_loadu_si256((const __m256i *)(src + off)));
            }
        }
        g0 = g1;
    }
}

#endif /* FC_GEMM_HAVE_X86_KERNELS */

/* ---- Entry points ------------------------------------------------------------------------ */

void fc_gemm_pack_a(int dtype, int isa, int64_t mc, int64_t kc, const char *a, int64_t rsa, int64_t csa,
                   void *dst, int mr)
{
#ifdef FC_GEMM_HAVE_X86_KERNELS
    if (isa >= FC_ISA_AVX2 && csa == 1 && mr >= 6) {
        if (dtype == FC_F64)
            pack_a_rm_f64_avx2(mc, kc, (const double *)a, rsa, (double *)dst, mr);
        else
            pack_a_rm_f32_avx2(mc, kc, (const float *)a, rsa, (float *)dst, mr);
        return;
    }
#else
    (void)isa;
#endif
    if (dtype == FC_F64)
        pack_a_f64(mc, kc, (const double *)a, rsa, csa, (double *)dst, mr);
    else
        pack_a_f32(mc, kc, (const float *)a, rsa, csa, (float *)dst, mr);
}

void fc_gemm_pack_b(int dtype, int isa, int64_t j0, int64_t j1, int64_t nc, int64_t kc,
                    int64_t kcap, const char *b, int64_t rsb, int64_t csb, void *dst, int nr)
{
    if (j0 >= j1)
        return;
#ifdef FC_GEMM_HAVE_X86_KERNELS
    /* The SIMD paths take the valid columns in whole vectors; the rest (a ragged end, the
       zero padding past nc, other strides) goes through the portable code below. */
    const int es = dtype == FC_F64 ? (int)sizeof(double) : (int)sizeof(float);
    const int64_t w = 32 / es; /* columns per 32-byte vector */
    const int64_t jv = j0 + (min64(j1, nc) - j0) / w * w; /* end of the whole vectors */
    if (isa >= FC_ISA_AVX2 && j0 % w == 0 && jv > j0 && (nr * es) % 32 == 0) {
        if (csb == 1) {
            pack_brm_avx2(j0, jv, kc, kcap, b, rsb * es, (char *)dst, nr, es);
            j0 = jv;
        } else if (rsb == 1) {
            if (dtype == FC_F64)
                pack_bt_f64_avx2(j0, jv, kc, kcap, (const double *)b, csb, (double *)dst, nr);
            else
                pack_bt_f32_avx2(j0, jv, kc, kcap, (const float *)b, csb, (float *)dst, nr);
            j0 = jv;
        }
    }
    if (j0 >= j1)
        return;
#else
    (void)isa;
#endif
    if (dtype == FC_F64)
        pack_b_f64(j0, j1, nc, kc, kcap, (const double *)b, rsb, csb, (double *)dst, nr);
    else
        pack_b_f32(j0, j1, nc, kc, kcap, (const float *)b, rsb, csb, (float *)dst, nr);
}
