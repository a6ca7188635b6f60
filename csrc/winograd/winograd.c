/*
 * winograd.c: the Winograd entries of the implementation table (see winograd.h for the
 * algorithm): planning, workspace, the three passes, and the rule for "auto".
 *
 * Entries: "winograd" (tile size by fc_winograd_tile) and "winograd_f2", "winograd_f4",
 * "winograd_f6" (a fixed F(m x m, 3 x 3)). All accept 3x3 kernels with stride 1 and
 * dilation 1, any padding and groups, float32 and float64. Reduced precision: the
 * transforms add rounding error that grows with m (docs/architecture.md gives the bound);
 * NaN/inf: a transform mixes a tile's pixels, so a NaN in one pixel would reach its
 * neighbours: every operand is declared inexact and the driver routes non-finite calls
 * to an exact entry.
 */
#include <string.h>

#include "../gemm/gemm.h"
#include "winograd.h"

#ifdef _OPENMP
#include <omp.h>
#define THREAD_ID() omp_get_thread_num()
#else
#define THREAD_ID() 0
#endif

/* Bytes of the transformed input and output of one block (all alpha^2 positions): sized
   to stay in L2 (2 MiB per core on the reference machine) alongside the GEMM's packed
   panels. A function of the problem only, never of the thread count, so the weight
   gradient's sums over blocks run in one order for any team size. */
#define BLOCK_BYTES ((int64_t)4 << 20)
#define MIN_TILES 32
#define MAX_TILES 512

static const fc_wino_ops *ops_for(int m)
{
    const int i = m == 2 ? 0 : m == 4 ? 1 : 2;
#ifdef FC_WINO_HAVE_X86
    switch (fc_active_isa()) {
    case FC_ISA_AVX512: return &fc_wino_ops_avx512[i];
    case FC_ISA_AVX2: return &fc_wino_ops_avx2[i];
    default: break;
    }
#endif
    return &fc_wino_ops_generic[i];
}

int64_t fc_wino_scratch_elems(int m, int64_t T)
{
    const int64_t a = m + 2;
    return 2 * a * a * T; /* D and the vertical pass (output transform: m*a + m*m <= 2*a*a) */
}

/* Elements between two transform positions of an array of n elements per position: the
   positions are alpha^2 streams read or written together, so their distance is a page
   plus one cache line (never a multiple of 4 KiB, which would put every stream into the
   same L1 set: the kernel transform ran 10x slower so). */
static int64_t pos_stride(int64_t n, size_t es)
{
    return (fc_round_up(n * (int64_t)es, 4096) + 64) / (int64_t)es;
}

typedef struct wplan {
    int m;
    int64_t a2;             /* alpha^2 transform positions */
    int64_t th, tw, tiles;  /* tiles per image */
    int64_t T, blocks;      /* tiles per block, blocks per image */
    int64_t cg, kg;
    int64_t psu, psv, psm;  /* position strides of U (or dU), V, M (or Ybar) */
    int nt;                 /* team size */
    size_t u, v, mm, per_thread, gemm, dbuf, scratch;
} wplan;

/* d: the problem computed as a forward one (bwd_data: the transposed problem). */
static void make_plan(const fc_conv_desc *d, int pass, int m, wplan *p)
{
    const size_t es = fc_elem_size(d->dtype);
    p->m = m;
    p->a2 = (int64_t)(m + 2) * (m + 2);
    p->th = fc_ceil_div(d->oh, m);
    p->tw = fc_ceil_div(d->ow, m);
    p->tiles = p->th * p->tw;
    p->cg = d->c_in / d->groups;
    p->kg = d->c_out / d->groups;
    /* blocks run over the batch's tiles (n * tiles + t), so small images still give the
       GEMMs a wide N: a multiple of every micro-kernel's NR unless it is the whole batch */
    const int64_t total = d->n * p->tiles;
    int64_t T = BLOCK_BYTES / (p->a2 * (p->cg + p->kg) * (int64_t)es);
    T = fc_max64(MIN_TILES, fc_min64(MAX_TILES, T)) / MIN_TILES * MIN_TILES;
    if (T > total)
        T = total;
    p->T = T;
    p->blocks = fc_ceil_div(total, T);
    p->nt = fc_team_size(d);
    p->psu = pos_stride(p->kg * p->cg, es);
    p->psv = pos_stride(p->cg * T, es);
    p->psm = pos_stride(p->kg * T, es);
    p->u = fc_align_up((size_t)(d->groups * p->a2 * p->psu) * es);
    p->v = fc_align_up((size_t)(p->a2 * p->psv) * es);
    p->mm = fc_align_up((size_t)(p->a2 * p->psm) * es);
    if (pass == FC_BWD_WEIGHTS)
        p->gemm = fc_align_up(fc_gemm_workspace_size(d->dtype, p->kg, p->cg, T, 1));
    else
        p->gemm = fc_align_up(fc_gemm_workspace_size(d->dtype, p->kg, T, p->cg, 1));
    p->scratch = fc_align_up((size_t)fc_wino_scratch_elems(m, T) * es);
    p->dbuf = fc_align_up((size_t)((m + 2) * (m + 2) * T) * es);
    p->per_thread = p->gemm + p->dbuf + p->scratch;
}

static size_t plan_bytes(const fc_conv_desc *d, const wplan *p)
{
    const int per = d->nthreads > 0 ? d->nthreads : 1;
    return p->u + p->v + p->mm + (size_t)per * p->per_thread;
}

static size_t rotated_bytes(const fc_conv_desc *d)
{
    return fc_align_up((size_t)(d->c_out * (d->c_in / d->groups) * 9) * fc_elem_size(d->dtype));
}

static size_t workspace_size(const fc_conv_desc *d, int pass, int m)
{
    wplan p;
    if (pass == FC_BWD_DATA) {
        fc_conv_desc t;
        fc_transposed_problem(d, &t);
        make_plan(&t, FC_FWD, m, &p);
        return rotated_bytes(d) + plan_bytes(&t, &p);
    }
    make_plan(d, pass, m, &p);
    return plan_bytes(d, &p);
}

/* ---- forward ---------------------------------------------------------------------- */

static void gemm_serial(int64_t m, int64_t n, int64_t k, const char *a, int64_t rsa, int64_t csa,
                        const char *b, int64_t rsb, int64_t csb, char *c, int64_t rsc, int beta, int dtype,
                        void *ws)
{
    fc_gemm_args g;
    g.m = m;
    g.n = n;
    g.k = k;
    g.a = a;
    g.rsa = rsa;
    g.csa = csa;
    g.b = b;
    g.rsb = rsb;
    g.csb = csb;
    g.c = c;
    g.rsc = rsc;
    g.alpha = 1.0;
    g.beta = beta;
    g.bias = NULL;
    g.dtype = dtype;
    fc_gemm_serial(&g, ws);
}

/* One channel's tiles s0..s1 of the block (tiles numbered across the batch: image
   s / tiles, tile s % tiles): gathered into D from each image's plane (channel_plane +
   n * image_stride bytes), then transformed into dst (position stride ps). */
static void transform_block_channel(fc_wino_gather_fn gather, fc_wino_src_tf_fn transform,
                                    const fc_wino_geom *geom, const char *channel_plane,
                                    size_t image_stride, int64_t tiles, int64_t s0, int64_t s1,
                                    int64_t T, size_t es, char *D, char *dst, int64_t ps, char *scratch)
{
    for (int64_t s = s0; s < s1;) {
        const int64_t n = s / tiles, t0 = s % tiles, t1 = fc_min64(tiles, t0 + (s1 - s));
        gather(geom, channel_plane + (size_t)n * image_stride, t0, t1, D + (size_t)(s - s0) * es, T);
        s += t1 - t0;
    }
    transform(D, s1 - s0, T, dst, ps, scratch);
}

static void run_fwd(const fc_conv_desc *d, int m, const void *x_, const void *w_, const void *bias_, void *y_,
                    void *ws)
{
    wplan p;
    make_plan(d, FC_FWD, m, &p);
    const fc_wino_ops *ops = ops_for(m);
    const int dt = d->dtype;
    const size_t es = fc_elem_size(dt);
    char *U = (char *)ws, *V = U + p.u, *M = V + p.v, *thread0 = M + p.mm;
    const char *x = (const char *)x_, *w = (const char *)w_, *bias = (const char *)bias_;
    char *y = (char *)y_;
    const int64_t G = d->groups, cg = p.cg, kg = p.kg, T = p.T, a2 = p.a2;
    const int64_t psu = p.psu, psv = p.psv, psm = p.psm;
    const fc_wino_geom gin = {d->h, d->w, d->oh, d->ow, d->pad_top, d->pad_left, p.tw, psv};
    const fc_wino_geom gout = {d->h, d->w, d->oh, d->ow, d->pad_top, d->pad_left, p.tw, psm};

#pragma omp parallel num_threads(p.nt)
    {
        char *mine = thread0 + (size_t)THREAD_ID() * p.per_thread;
        char *gemm_ws = mine, *D = mine + p.gemm, *scratch = D + p.dbuf;
#pragma omp for schedule(static)
        for (int64_t gk = 0; gk < G * kg; gk++) {
            const int64_t g = gk / kg, k = gk % kg;
            ops->kernel[dt](w + (size_t)(gk * cg * 9) * es, cg, U + (size_t)(g * a2 * psu + k * cg) * es, psu);
        }
        for (int64_t g = 0; g < G; g++)
            for (int64_t b = 0; b < p.blocks; b++) {
                const int64_t s0 = b * T, s1 = fc_min64(d->n * p.tiles, s0 + T), nT = s1 - s0;
#pragma omp for schedule(static)
                for (int64_t c = 0; c < cg; c++)
                    transform_block_channel(ops->input_gather[dt], ops->input[dt], &gin,
                                            x + (size_t)((g * cg + c) * d->h * d->w) * es,
                                            (size_t)(d->c_in * d->h * d->w) * es, p.tiles, s0, s1, T, es, D,
                                            V + (size_t)(c * T) * es, psv, scratch);
#pragma omp for schedule(static)
                for (int64_t pos = 0; pos < a2; pos++)
                    gemm_serial(kg, nT, cg, U + (size_t)((g * a2 + pos) * psu) * es, cg, 1,
                                V + (size_t)(pos * psv) * es, T, 1, M + (size_t)(pos * psm) * es, T, 0, dt,
                                gemm_ws);
#pragma omp for schedule(static)
                for (int64_t k = 0; k < kg; k++)
                    for (int64_t s = s0; s < s1;) {
                        const int64_t n = s / p.tiles, t0 = s % p.tiles, t1 = fc_min64(p.tiles, t0 + (s1 - s));
                        ops->output[dt](&gout, M + (size_t)(k * T + (s - s0)) * es, t0, t1,
                                        bias ? bias + (size_t)(g * kg + k) * es : NULL,
                                        y + (size_t)((n * d->c_out + g * kg + k) * d->oh * d->ow) * es, scratch);
                        s += t1 - t0;
                    }
            }
    }
}

/* ---- input gradient: the forward of the rotated, channel-swapped kernel ------------ */

static void run_bwd_data(const fc_conv_desc *d, int m, const void *gy, const void *w, void *gx, void *ws)
{
    fc_conv_desc t;
    fc_transposed_problem(d, &t);
    fc_rotate_weights(d, w, ws);
    run_fwd(&t, m, gy, ws, NULL, gx, (char *)ws + rotated_bytes(d));
}

/* ---- weight gradient ---------------------------------------------------------------- */

static void run_bwd_weights(const fc_conv_desc *d, int m, const void *gy_, const void *x_, void *gw_, void *gb_,
                            void *ws)
{
    wplan p;
    make_plan(d, FC_BWD_WEIGHTS, m, &p);
    const fc_wino_ops *ops = ops_for(m);
    const int dt = d->dtype;
    const size_t es = fc_elem_size(dt);
    char *dU = (char *)ws, *V = dU + p.u, *Yb = V + p.v, *thread0 = Yb + p.mm;
    const char *gy = (const char *)gy_, *x = (const char *)x_;
    char *gw = (char *)gw_, *gb = (char *)gb_;
    const int64_t G = d->groups, cg = p.cg, kg = p.kg, T = p.T, a2 = p.a2, plane = d->oh * d->ow;
    const int64_t psu = p.psu, psv = p.psv, psm = p.psm;
    const fc_wino_geom gin = {d->h, d->w, d->oh, d->ow, d->pad_top, d->pad_left, p.tw, psv};
    const fc_wino_geom ggy = {d->oh, d->ow, d->oh, d->ow, 0, 0, p.tw, psm};

#pragma omp parallel num_threads(p.nt)
    {
        char *mine = thread0 + (size_t)THREAD_ID() * p.per_thread;
        char *gemm_ws = mine, *D = mine + p.gemm, *scratch = D + p.dbuf;
        for (int64_t g = 0; g < G; g++)
            for (int64_t b = 0; b < p.blocks; b++) {
                const int64_t s0 = b * T, s1 = fc_min64(d->n * p.tiles, s0 + T), nT = s1 - s0;
#pragma omp for schedule(static)
                for (int64_t c = 0; c < cg; c++)
                    transform_block_channel(ops->input_gather[dt], ops->input[dt], &gin,
                                            x + (size_t)((g * cg + c) * d->h * d->w) * es,
                                            (size_t)(d->c_in * d->h * d->w) * es, p.tiles, s0, s1, T, es, D,
                                            V + (size_t)(c * T) * es, psv, scratch);
#pragma omp for schedule(static)
                for (int64_t k = 0; k < kg; k++)
                    transform_block_channel(ops->grad_gather[dt], ops->grad[dt], &ggy,
                                            gy + (size_t)((g * kg + k) * plane) * es, (size_t)(d->c_out * plane) * es,
                                            p.tiles, s0, s1, T, es, D, Yb + (size_t)(k * T) * es, psm, scratch);
                /* dU[pos] (+)= Ybar[pos] V[pos]^T: the blocks in order, whatever the team */
#pragma omp for schedule(static)
                for (int64_t pos = 0; pos < a2; pos++)
                    gemm_serial(kg, cg, nT, Yb + (size_t)(pos * psm) * es, T, 1, V + (size_t)(pos * psv) * es,
                                1, T, dU + (size_t)((g * a2 + pos) * psu) * es, cg, b > 0, dt, gemm_ws);
            }
#pragma omp for schedule(static)
        for (int64_t i = 0; i < G * kg * cg; i++) {
            const int64_t g = i / (kg * cg), kc = i % (kg * cg);
            ops->kernel_adj[dt](dU + (size_t)(g * a2 * psu + kc) * es, psu, gw + (size_t)i * 9 * es);
        }
        if (gb) {
#pragma omp for schedule(static)
            for (int64_t k = 0; k < d->c_out; k++)
                fc_bias_grad_channel(d, gy + (size_t)(k * plane) * es, gb + (size_t)k * es);
        }
    }
}

/* ---- the rule: tile size, and when "auto" prefers Winograd -------------------------- */

int fc_winograd_tile(const fc_conv_desc *d, int pass)
{
    (void)pass;
    /* F(2x2) where bigger tiles would be mostly padding or the channels too few to pay
       for bigger transforms; else F(4x4). */
    const int64_t cg = d->c_in / d->groups, kg = d->c_out / d->groups;
    if (d->oh < 8 || d->ow < 8 || cg < 4 || kg < 4)
        return 2;
    return 4;
}

/* Measured on the shape table, 1 thread (benchmarks in the commit log and README):
   F(4x4) beat the implicit GEMM by 1.5-2x on cifar_3x3 and resnet_3x3 (64 and 128
   channels), tied on latency_1img and lost on mnist_c2 (32 input channels, 24-pixel
   outputs), where the transforms cost too much next to the GEMMs' share. */
int fc_winograd_preferred(const fc_conv_desc *d, int pass)
{
    (void)pass;
    const int64_t cg = d->c_in / d->groups, kg = d->c_out / d->groups;
    return cg >= 64 && kg >= 32 && d->oh >= 8 && d->ow >= 8 && d->n * d->oh * d->ow >= 4096;
}

/* ---- the table entries -------------------------------------------------------------- */

static const char *winograd_rejects(const fc_conv_desc *d, int pass)
{
    (void)pass;
    if (d->kh != 3 || d->kw != 3)
        return "winograd needs a 3x3 kernel";
    if (d->stride_h != 1 || d->stride_w != 1)
        return "winograd needs stride 1";
    if (d->dil_h != 1 || d->dil_w != 1)
        return "winograd needs dilation 1";
    return NULL;
}

#define DEFINE_ENTRY(SFX, ID, NAME, MEXPR)                                                                   \
    static size_t ws_##SFX(const fc_conv_desc *d, int pass) { return workspace_size(d, pass, MEXPR); }       \
    static void fwd_##SFX(const fc_conv_desc *d, const void *x, const void *w, const void *b, void *y, void *ws) \
    {                                                                                                        \
        const int pass = FC_FWD;                                                                             \
        (void)pass;                                                                                          \
        run_fwd(d, MEXPR, x, w, b, y, ws);                                                                   \
    }                                                                                                        \
    static void bwd_data_##SFX(const fc_conv_desc *d, const void *gy, const void *w, void *gx, void *ws)     \
    {                                                                                                        \
        const int pass = FC_BWD_DATA;                                                                        \
        (void)pass;                                                                                          \
        run_bwd_data(d, MEXPR, gy, w, gx, ws);                                                               \
    }                                                                                                        \
    static void bwd_weights_##SFX(const fc_conv_desc *d, const void *gy, const void *x, void *gw, void *gb,  \
                                  void *ws)                                                                  \
    {                                                                                                        \
        const int pass = FC_BWD_WEIGHTS;                                                                     \
        (void)pass;                                                                                          \
        run_bwd_weights(d, MEXPR, gy, x, gw, gb, ws);                                                        \
    }                                                                                                        \
    const fc_conv_impl fc_impl_##SFX = {                                                                     \
        ID, NAME, "winograd", 1, {FC_OPND_0 | FC_OPND_1, FC_OPND_0 | FC_OPND_1, FC_OPND_0 | FC_OPND_1},      \
        winograd_rejects, ws_##SFX, fwd_##SFX, bwd_data_##SFX, bwd_weights_##SFX,                            \
    };

DEFINE_ENTRY(winograd, FC_ALGO_WINOGRAD, "winograd", fc_winograd_tile(d, pass))
DEFINE_ENTRY(winograd_f2, FC_ALGO_WINOGRAD_F2, "winograd_f2", 2)
DEFINE_ENTRY(winograd_f4, FC_ALGO_WINOGRAD_F4, "winograd_f4", 4)
DEFINE_ENTRY(winograd_f6, FC_ALGO_WINOGRAD_F6, "winograd_f6", 6)
