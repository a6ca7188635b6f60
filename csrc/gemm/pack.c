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
    FC_ALWAYS_INLINE void pack_b_panel_##SFX(int64_t kc, int64_t nv, const T *restrict b,         \
                                             int64_t rsb, int64_t csb, T *restrict dst,            \
                                             const int nr)                                         \
    {                                                                                              \
        if (nv == nr && csb == 1) { /* rows contiguous (B row-major): straight copies */          \
            for (int64_t p = 0; p < kc; p++)                                                       \
                for (int j = 0; j < nr; j++)                                                       \
                    dst[p * nr + j] = b[p * rsb + j];                                              \
            return;                                                                                \
        }                                                                                          \
        if (nv == nr && rsb == 1) { /* columns contiguous (B transposed): blocks of 8 k-steps */  \
            int64_t p0 = 0;                                                                        \
            for (; p0 + 8 <= kc; p0 += 8)                                                          \
                for (int j = 0; j < nr; j++)                                                       \
                    for (int pp = 0; pp < 8; pp++)                                                 \
                        dst[(p0 + pp) * nr + j] = b[j * csb + p0 + pp];                            \
            for (int64_t p = p0; p < kc; p++)                                                      \
                for (int j = 0; j < nr; j++)                                                       \
                    dst[p * nr + j] = b[j * csb + p];                                              \
            return;                                                                                \
        }                                                                                          \
        for (int64_t p = 0; p < kc; p++) {                                                         \
            int j = 0;                                                                             \
            for (; j < nv; j++)                                                                    \
                dst[p * nr + j] = b[p * rsb + j * csb];                                            \
            for (; j < nr; j++)                                                                    \
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
    /* Pack micro-panels [jr0, jr1) of the B panel (columns jr*nr.., nc columns in all);        \
       micro-panel jr starts at dst + jr*nr*kcap, kcap (>= kc) the same for every K block. */     \
    static void pack_b_##SFX(int64_t jr0, int64_t jr1, int64_t nc, int64_t kc, int64_t kcap,     \
                             const T *b, int64_t rsb, int64_t csb, T *restrict dst, int nr)        \
    {                                                                                              \
        for (int64_t jr = jr0; jr < jr1; jr++) {                                                   \
            const int64_t nv = min64(nr, nc - jr * nr);                                            \
            const T *src = b + jr * nr * csb;                                                      \
            T *d = dst + jr * nr * kcap;                                                           \
            switch (nr) {                                                                          \
            case 4: pack_b_panel_##SFX(kc, nv, src, rsb, csb, d, 4); break;                        \
            case 8: pack_b_panel_##SFX(kc, nv, src, rsb, csb, d, 8); break;                        \
            case 16: pack_b_panel_##SFX(kc, nv, src, rsb, csb, d, 16); break;                      \
            case 24: pack_b_panel_##SFX(kc, nv, src, rsb, csb, d, 24); break;                      \
            case 32: pack_b_panel_##SFX(kc, nv, src, rsb, csb, d, 32); break;                      \
            default: pack_b_panel_##SFX(kc, nv, src, rsb, csb, d, nr); break;                      \
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
                if (width == 8)
                    for (int q = 0; q < 8; q++)
                        _mm256_storeu_ps(d + (p0 + q) * mr, o[q]);
                else
                    for (int q = 0; q < 8; q++)
                        _mm256_maskstore_ps(d + (p0 + q) * mr, mask, o[q]);
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
                if (width == 4)
                    for (int q = 0; q < 4; q++)
                        _mm256_storeu_pd(d + (p0 + q) * mr, o[q]);
                else
                    for (int q = 0; q < 4; q++)
                        _mm256_maskstore_pd(d + (p0 + q) * mr, mask, o[q]);
            }
            for (int64_t p = p0; p < kc; p++)
                for (int q = 0; q < width; q++)
                    d[p * mr + q] = q < valid ? s[q * rsa + p] : 0.0;
        }
    }
}

/* Transposed B (rsb == 1: each column of the micro-panel is contiguous in k), full
   micro-panels of nr % 8 == 0 (f32) / nr % 4 == 0 (f64) columns: 8x8 / 4x4 register
   transposes instead of one scalar load and store per element. Used with the AVX2 and
   AVX-512 kernels; this is the B of dY x cols^T, where packing B costs as much as m/16 FMAs
   per element. */
__attribute__((target("avx2"))) static void pack_bt_f32_avx2(int64_t jr0, int64_t jr1, int64_t kc,
                                                             int64_t kcap, const float *b, int64_t csb,
                                                             float *dst, int nr)
{
    for (int64_t jr = jr0; jr < jr1; jr++) {
        const float *src = b + jr * nr * csb;
        float *d = dst + jr * nr * kcap;
        int64_t p0 = 0;
        for (; p0 + 8 <= kc; p0 += 8) {
            for (int j0 = 0; j0 < nr; j0 += 8) {
                const float *s = src + j0 * csb + p0;
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
                float *o = d + p0 * nr + j0;
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
            for (int j = 0; j < nr; j++)
                d[p * nr + j] = src[j * csb + p];
    }
}

__attribute__((target("avx2"))) static void pack_bt_f64_avx2(int64_t jr0, int64_t jr1, int64_t kc,
                                                             int64_t kcap, const double *b,
                                                             int64_t csb, double *dst, int nr)
{
    for (int64_t jr = jr0; jr < jr1; jr++) {
        const double *src = b + jr * nr * csb;
        double *d = dst + jr * nr * kcap;
        int64_t p0 = 0;
        for (; p0 + 4 <= kc; p0 += 4) {
            for (int j0 = 0; j0 < nr; j0 += 4) {
                const double *s = src + j0 * csb + p0;
                const __m256d r0 = _mm256_loadu_pd(s), r1 = _mm256_loadu_pd(s + csb);
                const __m256d r2 = _mm256_loadu_pd(s + 2 * csb), r3 = _mm256_loadu_pd(s + 3 * csb);
                const __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
                const __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
                double *o = d + p0 * nr + j0;
                _mm256_storeu_pd(o + 0 * nr, _mm256_permute2f128_pd(t0, t2, 0x20));
                _mm256_storeu_pd(o + 1 * nr, _mm256_permute2f128_pd(t1, t3, 0x20));
                _mm256_storeu_pd(o + 2 * nr, _mm256_permute2f128_pd(t0, t2, 0x31));
                _mm256_storeu_pd(o + 3 * nr, _mm256_permute2f128_pd(t1, t3, 0x31));
            }
        }
        for (int64_t p = p0; p < kc; p++)
            for (int j = 0; j < nr; j++)
                d[p * nr + j] = src[j * csb + p];
    }
}

/* Row-major B (csb == 1), full micro-panels whose rows are a whole number of 32-byte vectors:
   vector copies into the 64-byte aligned panel (the plain loop would become a memcpy call
   per 64- or 128-byte row). Micro-panels are packed 4 at a time, row by row, so that B is
   read in runs of up to 4 * nr elements. */
#define PF_ROWS 8 /* rows ahead: measured best of 4, 8, 16 */
__attribute__((target("avx2"))) static void pack_brm_avx2(int64_t jr0, int64_t jr1, int64_t kc,
                                                          int64_t kcap, const char *b,
                                                          int64_t rsb_bytes, char *dst, int row_bytes)
{
    const int nv = row_bytes / 32;
    for (int64_t jg = jr0; jg < jr1; jg += 4) {
        const int64_t jn = min64(4, jr1 - jg);
        for (int64_t p = 0; p < kc; p++) {
            if (p + PF_ROWS < kc) /* rows are far apart: the hardware prefetcher misses them */
                for (int64_t off = 0; off < jn * row_bytes; off += 64)
                    _mm_prefetch(b + jg * row_bytes + (p + PF_ROWS) * rsb_bytes + off, _MM_HINT_T0);
            for (int64_t q = 0; q < jn; q++) {
                const char *src = b + (jg + q) * row_bytes + p * rsb_bytes;
                char *d = dst + ((jg + q) * kcap + p) * row_bytes;
                for (int v = 0; v < nv; v++)
                    _mm256_store_si256((__m256i *)(d + 32 * v), _mm256_loadu_si256((const __m256i *)(src + 32 * v)));
            }
        }
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

void fc_gemm_pack_b(int dtype, int isa, int64_t jr0, int64_t jr1, int64_t nc, int64_t kc,
                   int64_t kcap, const char *b, int64_t rsb, int64_t csb, void *dst, int nr)
{
#ifdef FC_GEMM_HAVE_X86_KERNELS
    const size_t es = dtype == FC_F64 ? sizeof(double) : sizeof(float);
    if (isa >= FC_ISA_AVX2 && csb == 1 && jr0 < jr1 && (nr * es) % 32 == 0) {
        const int64_t full = min64(jr1, nc / nr);
        if (full > jr0) {
            pack_brm_avx2(jr0, full, kc, kcap, b, rsb * (int64_t)es, (char *)dst, (int)(nr * es));
            jr0 = full;
        }
    }
    if (isa >= FC_ISA_AVX2 && rsb == 1 && jr0 < jr1) {
        /* full micro-panels through the register transpose, a partial last one below */
        const int64_t full = min64(jr1, nc / nr);
        if (dtype == FC_F64 && nr % 4 == 0 && full > jr0) {
            pack_bt_f64_avx2(jr0, full, kc, kcap, (const double *)b, csb, (double *)dst, nr);
            jr0 = full;
        } else if (dtype != FC_F64 && nr % 8 == 0 && full > jr0) {
            pack_bt_f32_avx2(jr0, full, kc, kcap, (const float *)b, csb, (float *)dst, nr);
            jr0 = full;
        }
    }
#else
    (void)isa;
#endif
    if (jr0 >= jr1)
        return;
    if (dtype == FC_F64)
        pack_b_f64(jr0, jr1, nc, kc, kcap, (const double *)b, rsb, csb, (double *)dst, nr);
    else
        pack_b_f32(jr0, jr1, nc, kc, kcap, (const float *)b, rsb, csb, (float *)dst, nr);
}

