/*
 * gemm.c: the five-loop GEMM driver (BLIS's algorithm; our own code).
 *
 *   loop 5  jc over N in steps of NC      B panel  (KC x NC, packed, shared by the team)  -> L3
 *   loop 4  pc over K in steps of KC      (always in increasing order: deterministic sums)
 *             pack B panel into NR-wide micro-panels   b~[jr][p][0:NR]
 *   loop 3  ic over M in steps of MC      A block  (MC x KC, packed, one per thread)      -> L2
 *             pack A block into MR-tall micro-panels   a~[ir][p][0:MR]
 *   loop 2  jr over the panel in steps of NR          B micro-panel (KC x NR)             -> L1
 *   loop 1  ir over the block in steps of MR          A micro-panel streams from L2
 *             micro-kernel: MR x NR tile of C += A micro-panel x B micro-panel (registers)
 *
 * Partial tiles (at the bottom and right edges of C) are computed by the same micro-kernel
 * into a temporary MR x NR tile (C copied in first when beta = 1, padded bias), then the valid
 * part is copied out: the kernel never reads or writes outside C, and edge elements round
 * exactly like interior ones. The packed panels are zero-padded to full MR / NR.
 *
 * alpha, beta and bias are applied by the micro-kernel when it stores its tile: the first
 * KC block stores alpha*AB + beta*C + bias, the later ones alpha*AB + C.
 *
 * Threads: a team of nt threads is laid out as ic_ways x jr_ways (ic_ways * jr_ways = nt).
 * The ic_ways groups split the rows of C (in whole MR tiles, each thread then walks its rows
 * in MC blocks with its own packed A block); the jr_ways threads of a group split the NR
 * micro-panels of every NC panel. The layout minimising the largest per-thread tile count is
 * chosen per panel, so one large GEMM and skinny ones (m = 64, n = 676 or 43264) both keep
 * every thread busy. With ic_ways = 1 each thread packs only the B micro-panels it uses and
 * no barrier is needed inside the loops; otherwise the team packs the B panel together
 * (barrier), computes, and waits (barrier) before the panel is overwritten. K is never split
 * across threads and tile boundaries do not depend on the team size, so the result is
 * bitwise the same for every team size.
 */
#include <stdlib.h>
#include <string.h>

#include "../fastconv.h"
#include "gemm.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#ifdef FC_GEMM_HAVE_X86_KERNELS
#include <immintrin.h> /* only used inside functions with __attribute__((target("avx2"))) */
#endif

#if defined(__GNUC__)
#define FC_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define FC_ALWAYS_INLINE static inline
#endif

#define FC_ALIGN 64
#define FC_MAX_TILE_BYTES 2048 /* >= MR * NR * sizeof(element) of every kernel below */

typedef struct gemm_cfg {
    int mr, nr;
    int64_t mc, kc, nc;
    fc_gemm_ukernel_fn ukr;
} gemm_cfg;

/*
 * Kernels and block sizes per ISA and dtype: [isa][dtype].
 * Caches of the reference machine (AMD Zen4): L1d 32 KiB, L2 1 MiB per core, L3 32 MiB shared.
 *
 * KC: the B micro-panel (KC x NR) is re-read by every micro-kernel call of loop 1 and must
 *     stay in L1 next to the A micro-panel streaming through: KC * NR * size ~ 1/2 to 3/4 of
 *     L1d. Longer KC also amortises the C tile load/store of each call over more FMAs.
 * MC: the packed A block (MC x KC) is re-read for every B micro-panel of loop 2 and must stay
 *     in L2 next to the B micro-panel and the C tiles: MC * KC * size ~ 1/2 of L2. A multiple
 *     of MR.
 * NC: the packed B panel (KC x NC) is re-read for every A block of loop 3 and lives in L3
 *     (shared by the team): KC * NC * size of a few MiB, well below the 32 MiB L3. A multiple
 *     of 2*NR so that two threads splitting a full panel get equal halves.
 */
static const gemm_cfg cfg_table[3][2] = {
    /* generic (SSE2 baseline when compiled for x86-64) */
    {
        /* f32 4x8:  B micro-panel 8*256*4 = 8 KiB (L1);  A block 256*256*4 = 256 KiB (L2) */
        {4, 8, 256, 256, 4096, fc_f32_gemm_ukernel_4x8__generic},
        /* f64 4x4:  B micro-panel 4*256*8 = 8 KiB (L1);  A block 256*256*8 = 512 KiB (L2) */
        {4, 4, 256, 256, 2048, fc_f64_gemm_ukernel_4x4__generic},
    },
#ifdef FC_GEMM_HAVE_X86_KERNELS
    /* AVX2 + FMA */
    {
        /* f32 6x16: B micro-panel 16*256*4 = 16 KiB (L1); A block 240*256*4 = 240 KiB (L2) */
        {6, 16, 240, 256, 4096, fc_f32_gemm_ukernel_6x16__avx2},
        /* f64 6x8:  B micro-panel 8*256*8 = 16 KiB (L1);  A block 120*256*8 = 240 KiB (L2) */
        {6, 8, 120, 256, 2048, fc_f64_gemm_ukernel_6x8__avx2},
    },
    /* AVX-512F */
    {
        /* f32 14x32: B micro-panel 32*192*4 = 24 KiB (L1); A block 672*192*4 = 504 KiB (L2);
           B panel 192*4096*4 = 3 MiB (L3) */
        {14, 32, 672, 192, 4096, fc_f32_gemm_ukernel_14x32__avx512},
        /* f64 14x16: B micro-panel 16*192*8 = 24 KiB (L1); A block 336*192*8 = 504 KiB (L2);
           B panel 192*2048*8 = 3 MiB (L3) */
        {14, 16, 336, 192, 2048, fc_f64_gemm_ukernel_14x16__avx512},
    },
#endif
};

#ifdef FC_GEMM_HAVE_X86_KERNELS
#define FC_GEMM_NUM_ISA 3
#else
#define FC_GEMM_NUM_ISA 1
#endif

static const gemm_cfg *select_cfg(int dtype, int isa)
{
    if (isa < 0)
        isa = 0;
    if (isa >= FC_GEMM_NUM_ISA)
        isa = FC_GEMM_NUM_ISA - 1;
    return &cfg_table[isa][dtype == FC_F64 ? 1 : 0];
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static size_t align_up(size_t x) { return (x + FC_ALIGN - 1) & ~(size_t)(FC_ALIGN - 1); }

/* Balanced contiguous split of [0, n) into parts; part idx gets [*lo, *hi). */
static void split_range(int64_t n, int parts, int idx, int64_t *lo, int64_t *hi)
{
    *lo = n * idx / parts;
    *hi = n * (idx + 1) / parts;
}

/* ---- Packing ----------------------------------------------------------------------------
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
            case 14: pack_a_panel_##SFX(kc, mv, src, rsa, csa, dst, 14); break;                    \
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
            case 32: pack_b_panel_##SFX(kc, nv, src, rsb, csb, d, 32); break;                      \
            default: pack_b_panel_##SFX(kc, nv, src, rsb, csb, d, nr); break;                      \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_PACK(float, f32)
DEFINE_PACK(double, f64)

#ifdef FC_GEMM_HAVE_X86_KERNELS
__attribute__((target("avx2"))) static void pack_a_rm_f32_avx2(int64_t, int64_t, const float *, int64_t,
                                                               float *, int);
__attribute__((target("avx2"))) static void pack_a_rm_f64_avx2(int64_t, int64_t, const double *, int64_t,
                                                               double *, int);
#endif

static void pack_a(int dtype, int isa, int64_t mc, int64_t kc, const char *a, int64_t rsa, int64_t csa,
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

#ifdef FC_GEMM_HAVE_X86_KERNELS
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
#endif

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

static void pack_b(int dtype, int isa, int64_t jr0, int64_t jr1, int64_t nc, int64_t kc,
                   int64_t kcap, const char *b, int64_t rsb, int64_t csb, void *dst, int nr)
{
#ifdef FC_GEMM_HAVE_X86_KERNELS
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

/* ---- Workspace --------------------------------------------------------------------------- */

static size_t b_panel_bytes(const gemm_cfg *cf, size_t es, int64_t n, int64_t k)
{
    return align_up((size_t)min64(k, cf->kc) * (size_t)round_up(min64(n, cf->nc), cf->nr) * es);
}

static size_t a_block_bytes(const gemm_cfg *cf, size_t es, int64_t m, int64_t k)
{
    return align_up((size_t)min64(k, cf->kc) * (size_t)round_up(min64(m, cf->mc), cf->mr) * es);
}

size_t fc_gemm_workspace_size(int dtype, int64_t m, int64_t n, int64_t k, int nthreads)
{
    if (m <= 0 || n <= 0 || k <= 0)
        return 0;
    if (nthreads < 1)
        nthreads = 1;
    const size_t es = dtype == FC_F64 ? sizeof(double) : sizeof(float);
    size_t best = 0;
    /* Largest over every ISA compiled in: the active ISA may change between query and call. */
    for (int isa = 0; isa < FC_GEMM_NUM_ISA; isa++) {
        const gemm_cfg *cf = select_cfg(dtype, isa);
        size_t s = b_panel_bytes(cf, es, n, k) + (size_t)nthreads * a_block_bytes(cf, es, m, k);
        if (s > best)
            best = s;
    }
    return best + FC_ALIGN; /* slack to align the caller's pointer */
}

void fc_gemm_blocking(int dtype, int *mr, int *nr, int64_t *mc, int64_t *kc, int64_t *nc)
{
    const gemm_cfg *cf = select_cfg(dtype, fc_active_isa());
    *mr = cf->mr;
    *nr = cf->nr;
    *mc = cf->mc;
    *kc = cf->kc;
    *nc = cf->nc;
}

/* ---- Driver ------------------------------------------------------------------------------ */

static void team_barrier(int nt)
{
    if (nt > 1) {
#ifdef _OPENMP
#pragma omp barrier
#endif
    }
}

/* k == 0 or alpha == 0: C = beta*C + bias over rows [i0, i1) (A and B are not read). */
static void scale_rows(const fc_gemm_args *g, int64_t i0, int64_t i1)
{
    for (int64_t i = i0; i < i1; i++) {
        if (g->dtype == FC_F64) {
            double *c = (double *)g->c + i * g->rsc;
            const double bi = g->bias ? ((const double *)g->bias)[i] : 0.0;
            if (g->beta) {
                if (g->bias)
                    for (int64_t j = 0; j < g->n; j++)
                        c[j] += bi;
            } else {
                for (int64_t j = 0; j < g->n; j++)
                    c[j] = bi;
            }
        } else {
            float *c = (float *)g->c + i * g->rsc;
            const float bi = g->bias ? ((const float *)g->bias)[i] : 0.0f;
            if (g->beta) {
                if (g->bias)
                    for (int64_t j = 0; j < g->n; j++)
                        c[j] += bi;
            } else {
                for (int64_t j = 0; j < g->n; j++)
                    c[j] = bi;
            }
        }
    }
}

/* Largest number of micro-tiles any thread gets with ic_ways row groups; pick the layout
   minimising it (ties: fewer row groups, which need no barriers and share A). */
static int choose_ic_ways(int nt, int64_t mt, int64_t njr)
{
    int best_d = 1;
    int64_t best = -1;
    for (int d = 1; d <= nt; d++) {
        if (nt % d)
            continue;
        const int64_t cost = ceil_div(mt, d) * ceil_div(njr, nt / d);
        if (best < 0 || cost < best) {
            best = cost;
            best_d = d;
        }
    }
    return best_d;
}

/* One partial tile: through a temporary MR x NR tile, same kernel, same arithmetic. */
static void edge_tile(const gemm_cfg *cf, size_t es, int64_t kc, const char *ap, const char *bp,
                      char *c, int64_t rsc, int64_t mv, int64_t nv, const void *alpha, int beta,
                      const char *bias, char *tmp)
{
    const int mr = cf->mr, nr = cf->nr;
    _Alignas(FC_ALIGN) char bias_tmp[64 * sizeof(double)];
    if (beta)
        for (int64_t i = 0; i < mv; i++)
            memcpy(tmp + (size_t)i * nr * es, c + (size_t)(i * rsc) * es, (size_t)nv * es);
    if (bias) {
        memset(bias_tmp, 0, (size_t)mr * es);
        memcpy(bias_tmp, bias, (size_t)mv * es);
    }
    cf->ukr(kc, ap, bp, tmp, nr, alpha, beta, bias ? bias_tmp : NULL);
    for (int64_t i = 0; i < mv; i++)
        memcpy(c + (size_t)(i * rsc) * es, tmp + (size_t)i * nr * es, (size_t)nv * es);
}

static void gemm_driver(const fc_gemm_args *g, void *workspace, int tid, int nt)
{
    const int64_t m = g->m, n = g->n, k = g->k;
    if (m <= 0 || n <= 0)
        return;
    if (k <= 0 || g->alpha == 0.0) {
        int64_t i0, i1;
        split_range(m, nt, tid, &i0, &i1);
        scale_rows(g, i0, i1);
        team_barrier(nt);
        return;
    }

    const int dtype = g->dtype == FC_F64 ? FC_F64 : FC_F32;
    const int isa = fc_active_isa();
    const gemm_cfg *cf = select_cfg(dtype, isa);
    const size_t es = dtype == FC_F64 ? sizeof(double) : sizeof(float);
    const int mr = cf->mr, nr = cf->nr;
    const int64_t mt = ceil_div(m, mr);
    /* K and N are cut into equal blocks no larger than KC and NC (k = KC + 1 gives two
       blocks of about KC/2, not KC and 1: a 1-long block would pay a whole C tile
       load/store per FMA). The cut depends on k and n only, never on the team. */
    const int64_t KC = ceil_div(k, ceil_div(k, cf->kc));
    const int64_t NC = min64(cf->nc, round_up(ceil_div(n, ceil_div(n, cf->nc)), 2 * (int64_t)nr));
    /* Micro-panel stride in the packed B panel: fixed for the whole call, so that a thread
       repacking its own micro-panels for the next K block (shorter or not) never writes
       over another thread's micro-panels still in use. */
    const int64_t kcap = KC;

    float alpha_f = (float)g->alpha;
    double alpha_d = g->alpha;
    const void *alpha = dtype == FC_F64 ? (const void *)&alpha_d : (const void *)&alpha_f;

    char *ws = (char *)(((uintptr_t)workspace + FC_ALIGN - 1) & ~(uintptr_t)(FC_ALIGN - 1));
    char *bpack = ws;
    char *apack = ws + b_panel_bytes(cf, es, n, k) + (size_t)tid * a_block_bytes(cf, es, m, k);
    _Alignas(FC_ALIGN) char tmp[FC_MAX_TILE_BYTES];
    memset(tmp, 0, sizeof tmp);

    const char *a = (const char *)g->a;
    const char *b = (const char *)g->b;
    char *c = (char *)g->c;
    const char *bias = (const char *)g->bias;
    const int64_t rsa = g->rsa, csa = g->csa, rsb = g->rsb, csb = g->csb, rsc = g->rsc;

    int prev_ic_ways = 0;
    int64_t prev_njr = 0;
    for (int64_t jc = 0; jc < n; jc += NC) {
        const int64_t nc = min64(NC, n - jc);
        const int64_t njr = ceil_div(nc, nr);
        const int ic_ways = choose_ic_ways(nt, mt, njr);
        /* A different layout (only the last, narrower panel can have one) moves micro-panels
           between threads: wait until everyone is done with the previous panel. */
        if (jc > 0 && (ic_ways != prev_ic_ways || njr != prev_njr))
            team_barrier(nt);
        prev_ic_ways = ic_ways;
        prev_njr = njr;
        const int jr_ways = nt / ic_ways;
        const int ti = tid / jr_ways, tj = tid % jr_ways;
        int64_t jr0, jr1, t0, t1;
        split_range(njr, jr_ways, tj, &jr0, &jr1);
        split_range(mt, ic_ways, ti, &t0, &t1);
        const int64_t row0 = t0 * mr, row1 = min64(t1 * mr, m);

        for (int64_t pc = 0; pc < k; pc += KC) {
            const int64_t kc = min64(KC, k - pc);
            const int first = pc == 0;
            const int beta = first ? g->beta : 1;
            const char *bias_pc = first ? bias : NULL;
            const char *bsrc = b + (size_t)(pc * rsb + jc * csb) * es;

            if (ic_ways == 1) {
                /* Each thread packs exactly the micro-panels it will use: no barrier. */
                pack_b(dtype, isa, jr0, jr1, nc, kc, kcap, bsrc, rsb, csb, bpack, nr);
            } else {
                int64_t p0, p1;
                split_range(njr, nt, tid, &p0, &p1);
                pack_b(dtype, isa, p0, p1, nc, kc, kcap, bsrc, rsb, csb, bpack, nr);
                team_barrier(nt);
            }

            /* This thread's rows in equal blocks of at most MC (a multiple of MR). */
            const int64_t rows = row1 - row0; /* may be 0 for a thread of a large team */
            const int64_t MC = rows > 0 ? round_up(ceil_div(rows, ceil_div(rows, cf->mc)), mr) : mr;
            for (int64_t ic = row0; ic < row1; ic += MC) {
                const int64_t mc = min64(MC, row1 - ic);
                pack_a(dtype, isa, mc, kc, a + (size_t)(ic * rsa + pc * csa) * es, rsa, csa, apack, mr);

                /* Macro-kernel: loop 2 (ir) around loop 1 (jr). */
                for (int64_t ir = 0; ir < mc; ir += mr) {
                    const int64_t mv = min64(mr, mc - ir);
                    const char *ap = apack + (size_t)(ir * kc) * es;
                    for (int64_t jr = jr0; jr < jr1; jr++) {
                        const int64_t j = jr * nr;
                        const int64_t nv = min64(nr, nc - j);
                        const char *bp = bpack + (size_t)(jr * nr * kcap) * es;
                        char *ct = c + (size_t)((ic + ir) * rsc + jc + j) * es;
                        const char *bt = bias_pc ? bias_pc + (size_t)(ic + ir) * es : NULL;
                        if (mv == mr && nv == nr)
                            cf->ukr(kc, ap, bp, ct, rsc, alpha, beta, bt);
                        else
                            edge_tile(cf, es, kc, ap, bp, ct, rsc, mv, nv, alpha, beta, bt, tmp);
                    }
                }
            }
            if (ic_ways > 1)
                team_barrier(nt); /* the panel is repacked by the next iteration */
        }
    }
    team_barrier(nt);
}

void fc_gemm_serial(const fc_gemm_args *g, void *workspace) { gemm_driver(g, workspace, 0, 1); }

void fc_gemm_team(const fc_gemm_args *g, void *workspace)
{
#ifdef _OPENMP
    gemm_driver(g, workspace, omp_get_thread_num(), omp_get_num_threads());
#else
    gemm_driver(g, workspace, 0, 1);
#endif
}

int fc_gemm(const fc_gemm_args *g, int nthreads)
{
    if (g->m <= 0 || g->n <= 0)
        return FC_OK;
    if (nthreads < 1)
        nthreads = 1;
#ifndef _OPENMP
    nthreads = 1;
#endif
    const size_t size = fc_gemm_workspace_size(g->dtype, g->m, g->n, g->k, nthreads);
    void *ws = NULL;
    if (size) {
        ws = malloc(size);
        if (!ws)
            return FC_ENOMEM;
    }
    if (nthreads == 1) {
        fc_gemm_serial(g, ws);
    } else {
#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads)
        fc_gemm_team(g, ws);
#endif
    }
    free(ws);
    return FC_OK;
}
