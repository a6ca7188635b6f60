/*
 * conv_im2col.c: the im2col + GEMM algorithm for the three passes.
 *
 *   fwd          Y[n,g] (Kg x OH*OW)     = W_g (Kg x K) * cols (K x OH*OW) + bias
 *   bwd_data     dcols (K x OH*OW)       = W_g^T * dY[n,g];  grad_x[n,g] = col2im(dcols)
 *   bwd_weights  dW_g (Kg x K)          += dY[n,g] * cols^T, over n in order (deterministic)
 *
 * with K = C_in/groups * KH * KW. The column matrix covers a tile of output rows, so the
 * workspace has a ceiling that does not grow with the batch (see tile_budget). Two table
 * entries share this code: "im2col_explicit" (any problem) and "gemm_1x1" (1x1, stride 1,
 * no padding: the input itself is the column matrix).
 *
 * Parallelism, in the one OpenMP region of the call:
 *   image mode  (fwd, bwd_data when the batch has >= one image-group per thread): each
 *               thread lowers and multiplies whole images with its own buffers and a
 *               serial GEMM; no barriers.
 *   team mode   (otherwise): the team lowers one tile together, then runs a cooperative
 *               GEMM on it (split over M and N only); a forward below FWD_TEAM_MIN_MACS
 *               runs on the calling thread instead (barriers outweigh the split).
 *   chunk mode  (bwd_weights, batch >= 4, partials small beside the operands): fixed batch
 *               chunks, one thread each, partial sums added in chunk order (see
 *               BWDW_MAX_CHUNKS).
 * Either way every output element is computed by the same arithmetic in the same order,
 * so results are bitwise identical for every thread count.
 */
#include <string.h>

#include "conv_internal.h"
#include "gemm/gemm.h"
#include "im2col.h"
#include "pointwise_wgrad.h"

#ifdef _OPENMP
#include <omp.h>
#define THREAD_ID() omp_get_thread_num()
#else
#define THREAD_ID() 0
#endif

/* Bytes of one column tile. 8 MiB per call keeps the tiles of every thread inside this
   CPU's 32 MiB L3 while making the GEMM's N (or K) dimension at least a few hundred for
   every layer we benchmark; split between threads in image mode, but never below 1 MiB
   (one L2) per thread. The gradients use a fixed size: their tile shape decides their
   summation order, which must not depend on the thread count. */
#define TILE_BUDGET ((int64_t)8 << 20)
#define TILE_BUDGET_MIN ((int64_t)1 << 20)
#define BWDW_TILE_BUDGET ((int64_t)2 << 20)

/* bwd_weights splits the batch into at most this many fixed chunks (a function of sizes
   only, never of the thread count), sums each chunk's images in order on one thread, and
   adds the chunk partials in chunk order: deterministic and barrier-free. Batches smaller
   than BWDW_MIN_BATCH are summed by the whole team image by image instead, and so are
   those whose partials would weigh more than a sixteenth of the operands the GEMMs read
   (BWDW_PARTIALS_SHARE: chunks halve until they fit, one chunk is team mode): each partial
   is a whole dW, written and read back, which for 1x1 layers of small images is as large as
   the images' operands (8 x 512 -> 2048 at 7x7: 4 MB each). Zen 4, f32, gemm_1x1's weight
   gradient, 8 chunks / team mode ms at 1 and 2 threads: 8 x 512 -> 2048 at 7x7 9.77 / 8.03,
   4.88 / 4.34; 2048 -> 512 9.72 / 8.23, 4.90 / 4.20; 8 x 160 -> 960 1.25 / 1.16, 0.63 /
   0.61; 8 x 256 -> 1024 at 14x14 8.24 / 7.69, 3.94 / 3.91; 8 x 128 -> 512 at 28x28 keeps
   4 chunks (7.52 / 3.75 against 8 chunks' 7.57 / 3.75). (Two chunks were faster still at
   2 threads, 3.92 ms for the first layer, but would leave a larger team idle.) Explicit
   im2col's 3x3 weight gradient (the generic build's), alternating builds: 8 x 512 -> 512 at
   7x7 (team mode now) 24.6-26.9 -> 21.8-22.0 ms at 1 thread, 14.0-16.3 -> 11.2-11.4 at 2;
   32 x 256 -> 256 at 14x14 (2 chunks now) unchanged, 82-87 and 41-46 ms in both builds. */
#define BWDW_MAX_CHUNKS 8
#define BWDW_MIN_BATCH 4
#define BWDW_PARTIALS_SHARE 16

/* A forward of fewer images (times groups) than threads splits one tile's lowering and its
   GEMM over the team (team mode). A first layer's, whose K is a few taps, then spends more on
   the team's barriers than it saves below about this many multiply-adds, and runs on the
   calling thread: one image, 3x3 "same", Zen 4, 1 / 2 threads: 1 -> 32 channels at 28x28
   (226 K) 8.0 / 12.8 us, at 56x56 (903 K) 27.3 / 31.2, 3 -> 32 at 32x32 (885 K) 25.7 / 26.5,
   8 -> 32 at 32x32 (2.4 M) 64.9 / 55.1, 3 -> 32 at 64x64 (3.5 M) 94 / 68. Bitwise the same
   results either way: the tiles split only the pixels. */
#define FWD_TEAM_MIN_MACS ((int64_t)3 << 19)

typedef struct plan {
    int64_t cg, kg, K, plane; /* plane = OH*OW */
    int64_t rows, tiles;      /* output rows per tile, tiles per image */
    int64_t chunks;           /* bwd_weights in chunk mode: batch chunks; else 0 */
    int lowered;              /* 0: 1x1/stride 1/no padding, the input is the column matrix */
    int team;                 /* 1: team mode, 0: image (or chunk) mode */
    int nt;                   /* threads of the region */
    size_t tables, cols, gemm, per_thread, partials;
} plan;

static void make_plan(const fc_conv_desc *d, int pass, int pointwise, plan *p)
{
    const size_t es = fc_elem_size(d->dtype);
    p->cg = d->c_in / d->groups;
    p->kg = d->c_out / d->groups;
    p->K = p->cg * d->kh * d->kw;
    p->plane = d->oh * d->ow;
    p->lowered = !pointwise;
    p->nt = fc_team_size(d);
    p->chunks = 0;
    int64_t budget;
    if (pass == FC_BWD_WEIGHTS) {
        if (d->n >= BWDW_MIN_BATCH) {
            const int64_t partial = d->c_out * p->K, operands = d->n * p->plane * (p->K + p->kg) * d->groups;
            p->chunks = d->n < BWDW_MAX_CHUNKS ? d->n : BWDW_MAX_CHUNKS;
            while (p->chunks > 1 && (p->chunks - 1) * partial * BWDW_PARTIALS_SHARE > operands)
                p->chunks /= 2;
            if (p->chunks == 1)
                p->chunks = 0;
        }
        p->team = p->chunks == 0;
        budget = BWDW_TILE_BUDGET;
    } else if (pass == FC_BWD_DATA) {
        /* col2im adds tile after tile into the same input rows: fixed tiles, fixed order */
        p->team = d->n * d->groups < p->nt;
        budget = BWDW_TILE_BUDGET;
    } else {
        p->team = d->n * d->groups < p->nt;
        if (p->team && fc_macs(d) < FWD_TEAM_MIN_MACS) { /* on the calling thread alone */
            p->nt = 1;
            p->team = 0;
        }
        budget = TILE_BUDGET;
        if (!p->team) {
            budget = TILE_BUDGET / p->nt;
            if (budget < TILE_BUDGET_MIN)
                budget = TILE_BUDGET_MIN;
        }
    }
    const int64_t row_bytes = p->K * d->ow * (int64_t)es;
    p->rows = p->lowered ? budget / row_bytes : d->oh;
    if (p->rows < 1)
        p->rows = 1;
    if (p->rows > d->oh)
        p->rows = d->oh;
    p->tiles = (d->oh + p->rows - 1) / p->rows;

    const int64_t ncols = p->rows * d->ow;
    int64_t gm, gn, gk;
    if (pass == FC_FWD) {
        gm = p->kg; gn = ncols; gk = p->K;
    } else if (pass == FC_BWD_DATA) {
        gm = p->K; gn = ncols; gk = p->kg;
    } else {
        gm = p->kg; gn = p->K; gk = ncols;
    }
    p->tables = fc_align_up(2 * (size_t)d->kw * sizeof(int64_t));
    p->cols = p->lowered ? fc_align_up((size_t)(p->K * ncols) * es) : 0;
    p->gemm = fc_align_up(fc_gemm_workspace_size(d->dtype, gm, gn, gk, p->team ? p->nt : 1));
    p->per_thread = p->team ? 0 : p->cols + p->gemm;
    /* chunk 0 accumulates straight into grad_w; the others need a partial each */
    p->partials = p->chunks > 1 ? (size_t)(p->chunks - 1) * fc_align_up((size_t)(d->c_out * p->K) * es) : 0;
}

static size_t plan_bytes(const plan *p)
{
    return p->tables + (size_t)p->nt * p->per_thread + (p->team ? p->cols + p->gemm : 0) + p->partials;
}

/* Carves the workspace: tables, per-thread blocks, the team's shared blocks, partials. */
static void carve(const plan *p, void *ws, int64_t **lo, char **thread0, char **cols, char **gemm)
{
    char *base = (char *)ws;
    *lo = (int64_t *)base;
    *thread0 = base + p->tables;
    char *shared = *thread0 + (size_t)p->nt * p->per_thread;
    *cols = shared;
    *gemm = shared + p->cols;
}

static char *partials_base(const plan *p, void *ws)
{
    return (char *)ws + plan_bytes(p) - p->partials;
}

static size_t workspace_size(const fc_conv_desc *d, int pass, int pw)
{
    plan p;
    make_plan(d, pass, pw, &p);
    return plan_bytes(&p);
}

/* ---- forward -------------------------------------------------------------- */

static void fwd_tile_gemm(const fc_conv_desc *d, const plan *p, const char *w, const char *bias,
                          char *y, const char *x, const char *cols, int64_t n, int64_t g,
                          int64_t i0, int64_t rows, void *gemm_ws, int team)
{
    const size_t es = fc_elem_size(d->dtype);
    fc_gemm_args a;
    a.m = p->kg;
    a.n = rows * d->ow;
    a.k = p->K;
    a.a = w + (size_t)(g * p->kg * p->K) * es;
    a.rsa = p->K;
    a.csa = 1;
    if (p->lowered) {
        a.b = cols;
        a.rsb = a.n;
    } else {
        a.b = x + (size_t)((n * d->c_in + g * p->cg) * d->h * d->w + i0 * d->ow) * es;
        a.rsb = d->h * d->w;
    }
    a.csb = 1;
    a.c = y + (size_t)((n * d->c_out + g * p->kg) * p->plane + i0 * d->ow) * es;
    a.rsc = p->plane;
    a.alpha = 1.0;
    a.beta = 0;
    a.bias = bias ? bias + (size_t)(g * p->kg) * es : NULL;
    a.dtype = d->dtype;
    if (team)
        fc_gemm_team(&a, gemm_ws);
    else
        fc_gemm_serial(&a, gemm_ws);
}

/* relu: the post-op, on each tile's output while it is in cache (its GEMM stores it). */
static void im2col_fwd(const fc_conv_desc *d, const void *x_, const void *w_, const void *bias_,
                       void *y_, void *ws, int pw, int relu)
{
    plan p;
    make_plan(d, FC_FWD, pw, &p);
    int64_t *lo;
    char *thread0, *cols_shared, *gemm_shared;
    carve(&p, ws, &lo, &thread0, &cols_shared, &gemm_shared);
    fc_build_col_ranges(d, lo, lo + d->kw);
    const fc_col_range rng = {lo, lo + d->kw, NULL};
    const size_t es = fc_elem_size(d->dtype);
    const char *x = (const char *)x_, *w = (const char *)w_, *bias = (const char *)bias_;
    char *y = (char *)y_;

#pragma omp parallel num_threads(p.nt)
    {
        if (p.team) {
            for (int64_t ng = 0; ng < d->n * d->groups; ng++) {
                const int64_t n = ng / d->groups, g = ng % d->groups;
                const char *x_g = x + (size_t)((n * d->c_in + g * p.cg) * d->h * d->w) * es;
                for (int64_t t = 0; t < p.tiles; t++) {
                    const int64_t i0 = t * p.rows, rows = d->oh - i0 < p.rows ? d->oh - i0 : p.rows;
                    if (p.lowered) {
#pragma omp for schedule(static)
                        for (int64_t k = 0; k < p.K; k++)
                            fc_im2col_tile(d, rng, x_g, i0, rows, k, k + 1, cols_shared);
                    }
                    fwd_tile_gemm(d, &p, w, bias, y, x, cols_shared, n, g, i0, rows, gemm_shared, 1);
                    if (relu) { /* after the team's GEMM, which ends with a barrier */
                        char *y_t = y + (size_t)((n * d->c_out + g * p.kg) * p.plane + i0 * d->ow) * es;
#pragma omp for schedule(static)
                        for (int64_t k = 0; k < p.kg; k++)
                            fc_relu_rows(d->dtype, y_t + (size_t)(k * p.plane) * es, 0, 1, rows * d->ow);
                    }
                }
            }
        } else {
            char *mine = thread0 + (size_t)THREAD_ID() * p.per_thread;
            char *cols = mine, *gemm_ws = cols + p.cols;
#pragma omp for schedule(dynamic, 1)
            for (int64_t ng = 0; ng < d->n * d->groups; ng++) {
                const int64_t n = ng / d->groups, g = ng % d->groups;
                const char *x_g = x + (size_t)((n * d->c_in + g * p.cg) * d->h * d->w) * es;
                for (int64_t t = 0; t < p.tiles; t++) {
                    const int64_t i0 = t * p.rows, rows = d->oh - i0 < p.rows ? d->oh - i0 : p.rows;
                    if (p.lowered)
                        fc_im2col_tile(d, rng, x_g, i0, rows, 0, p.K, cols);
                    fwd_tile_gemm(d, &p, w, bias, y, x, cols, n, g, i0, rows, gemm_ws, 0);
                    if (relu)
                        fc_relu_rows(d->dtype, y + (size_t)((n * d->c_out + g * p.kg) * p.plane + i0 * d->ow) * es,
                                     p.plane, p.kg, rows * d->ow);
                }
            }
        }
    }
}

/* ---- backward data -------------------------------------------------------- */

static void bwd_data_tile_gemm(const fc_conv_desc *d, const plan *p, const char *w, const char *gy,
                               char *gx_g, char *dcols, int64_t n, int64_t g, int64_t i0,
                               int64_t rows, void *gemm_ws, int team)
{
    const size_t es = fc_elem_size(d->dtype);
    fc_gemm_args a;
    a.m = p->K;
    a.n = rows * d->ow;
    a.k = p->kg;
    a.a = w + (size_t)(g * p->kg * p->K) * es; /* W_g^T: A(i,p) = W_g[p][i] */
    a.rsa = 1;
    a.csa = p->K;
    a.b = gy + (size_t)((n * d->c_out + g * p->kg) * p->plane + i0 * d->ow) * es;
    a.rsb = p->plane;
    a.csb = 1;
    if (p->lowered) {
        a.c = dcols;
        a.rsc = a.n;
    } else {
        a.c = gx_g; /* pointwise: the input gradient is the product itself */
        a.rsc = d->h * d->w;
    }
    a.alpha = 1.0;
    a.beta = 0;
    a.bias = NULL;
    a.dtype = d->dtype;
    if (team)
        fc_gemm_team(&a, gemm_ws);
    else
        fc_gemm_serial(&a, gemm_ws);
}

static void im2col_bwd_data(const fc_conv_desc *d, const void *gy_, const void *w_, void *gx_, void *ws,
                            int pw)
{
    plan p;
    make_plan(d, FC_BWD_DATA, pw, &p);
    int64_t *lo;
    char *thread0, *cols_shared, *gemm_shared;
    carve(&p, ws, &lo, &thread0, &cols_shared, &gemm_shared);
    fc_build_col_ranges(d, lo, lo + d->kw);
    const fc_col_range rng = {lo, lo + d->kw, NULL};
    const size_t es = fc_elem_size(d->dtype);
    const size_t chan_bytes = (size_t)(d->h * d->w) * es;
    const char *gy = (const char *)gy_, *w = (const char *)w_;
    char *gx = (char *)gx_;

#pragma omp parallel num_threads(p.nt)
    {
        if (p.team) {
            for (int64_t ng = 0; ng < d->n * d->groups; ng++) {
                const int64_t n = ng / d->groups, g = ng % d->groups;
                char *gx_g = gx + (size_t)(n * d->c_in + g * p.cg) * chan_bytes;
                if (p.lowered) {
#pragma omp for schedule(static)
                    for (int64_t c = 0; c < p.cg; c++)
                        memset(gx_g + (size_t)c * chan_bytes, 0, chan_bytes);
                }
                for (int64_t t = 0; t < p.tiles; t++) {
                    const int64_t i0 = t * p.rows, rows = d->oh - i0 < p.rows ? d->oh - i0 : p.rows;
                    bwd_data_tile_gemm(d, &p, w, gy, gx_g, cols_shared, n, g, i0, rows, gemm_shared, 1);
                    if (p.lowered) {
#pragma omp for schedule(static)
                        for (int64_t c = 0; c < p.cg; c++)
                            fc_col2im_tile(d, rng, cols_shared, i0, rows, c, c + 1, gx_g);
                    }
                }
            }
        } else {
            char *mine = thread0 + (size_t)THREAD_ID() * p.per_thread;
            char *dcols = mine, *gemm_ws = dcols + p.cols;
#pragma omp for schedule(dynamic, 1)
            for (int64_t ng = 0; ng < d->n * d->groups; ng++) {
                const int64_t n = ng / d->groups, g = ng % d->groups;
                char *gx_g = gx + (size_t)(n * d->c_in + g * p.cg) * chan_bytes;
                if (p.lowered)
                    memset(gx_g, 0, (size_t)p.cg * chan_bytes);
                for (int64_t t = 0; t < p.tiles; t++) {
                    const int64_t i0 = t * p.rows, rows = d->oh - i0 < p.rows ? d->oh - i0 : p.rows;
                    bwd_data_tile_gemm(d, &p, w, gy, gx_g, dcols, n, g, i0, rows, gemm_ws, 0);
                    if (p.lowered)
                        fc_col2im_tile(d, rng, dcols, i0, rows, 0, p.cg, gx_g);
                }
            }
        }
    }
}

/* ---- backward weights ----------------------------------------------------- */

/* dW_g (+)= dY[n, g, tile] * cols^T for one tile; beta 0 on the first tile of a sum. */
static void bwd_weights_tile(const fc_conv_desc *d, const plan *p, fc_col_range rng, const char *gy,
                             const char *x, char *gw, char *cols, int64_t n, int64_t g, int64_t t,
                             int beta, void *gemm_ws, int team)
{
    const size_t es = fc_elem_size(d->dtype);
    const int64_t i0 = t * p->rows, rows = d->oh - i0 < p->rows ? d->oh - i0 : p->rows;
    const char *x_g = x + (size_t)((n * d->c_in + g * p->cg) * d->h * d->w) * es;
    fc_gemm_args a;
    if (p->lowered) {
        if (team) {
#pragma omp for schedule(static)
            for (int64_t k = 0; k < p->K; k++)
                fc_im2col_tile(d, rng, x_g, i0, rows, k, k + 1, cols);
        } else {
            fc_im2col_tile(d, rng, x_g, i0, rows, 0, p->K, cols);
        }
        a.b = cols; /* cols^T: B(p,j) = cols[j][p] */
        a.csb = rows * d->ow;
    } else {
        a.b = x_g;
        a.csb = d->h * d->w;
    }
    a.rsb = 1;
    a.m = p->kg;
    a.n = p->K;
    a.k = rows * d->ow;
    a.a = gy + (size_t)((n * d->c_out + g * p->kg) * p->plane + i0 * d->ow) * es;
    a.rsa = p->plane;
    a.csa = 1;
    a.c = gw + (size_t)(g * p->kg * p->K) * es;
    a.rsc = p->K;
    a.alpha = 1.0;
    a.beta = beta;
    a.bias = NULL;
    a.dtype = d->dtype;
    if (team)
        fc_gemm_team(&a, gemm_ws);
    else
        fc_gemm_serial(&a, gemm_ws);
}

static void im2col_bwd_weights(const fc_conv_desc *d, const void *gy_, const void *x_, void *gw_,
                               void *gb_, void *ws, int pw)
{
    plan p;
    make_plan(d, FC_BWD_WEIGHTS, pw, &p);
    int64_t *lo;
    char *thread0, *cols_shared, *gemm_shared;
    carve(&p, ws, &lo, &thread0, &cols_shared, &gemm_shared);
    char *partials = partials_base(&p, ws);
    fc_build_col_ranges(d, lo, lo + d->kw);
    const fc_col_range rng = {lo, lo + d->kw, NULL};
    const size_t es = fc_elem_size(d->dtype);
    const int64_t w_elems = d->c_out * p.K;
    const size_t partial_bytes = fc_align_up((size_t)w_elems * es);
    const char *gy = (const char *)gy_, *x = (const char *)x_;
    char *gw = (char *)gw_, *gb = (char *)gb_;

#pragma omp parallel num_threads(p.nt)
    {
        char *mine = thread0 + (size_t)THREAD_ID() * p.per_thread;
        if (p.team) {
            for (int64_t g = 0; g < d->groups; g++)
                for (int64_t n = 0; n < d->n; n++)
                    for (int64_t t = 0; t < p.tiles; t++)
                        bwd_weights_tile(d, &p, rng, gy, x, gw, cols_shared, n, g, t, n > 0 || t > 0,
                                         gemm_shared, 1);
        } else {
            char *cols = mine, *gemm_ws = cols + p.cols;
#pragma omp for schedule(dynamic, 1)
            for (int64_t c = 0; c < p.chunks; c++) {
                char *dst = c == 0 ? gw : partials + (size_t)(c - 1) * partial_bytes;
                const int64_t n0 = d->n * c / p.chunks, n1 = d->n * (c + 1) / p.chunks;
                for (int64_t g = 0; g < d->groups; g++)
                    for (int64_t n = n0; n < n1; n++)
                        for (int64_t t = 0; t < p.tiles; t++)
                            bwd_weights_tile(d, &p, rng, gy, x, dst, cols, n, g, t, n > n0 || t > 0,
                                             gemm_ws, 0);
            }
            /* (implicit barrier) add the partials in chunk order, split over elements */
            const int64_t blocks = (w_elems + 1023) / 1024;
#pragma omp for schedule(static)
            for (int64_t b = 0; b < blocks; b++) {
                const int64_t e0 = b * 1024, e1 = e0 + 1024 < w_elems ? e0 + 1024 : w_elems;
                for (int64_t c = 1; c < p.chunks; c++)
                    fc_add_elems(d->dtype, gw, partials + (size_t)(c - 1) * partial_bytes, e0, e1);
            }
        }
        if (gb) {
#pragma omp for schedule(static)
            for (int64_t k = 0; k < d->c_out; k++)
                fc_bias_grad_channel(d, gy + (size_t)(k * p.plane) * es, gb + (size_t)k * es);
        }
    }
}

/* ---- the table entries ---------------------------------------------------- */

static const char *im2col_rejects(const fc_conv_desc *d, int pass)
{
    (void)d;
    (void)pass;
    return NULL; /* any problem */
}

static const char *gemm_1x1_rejects(const fc_conv_desc *d, int pass)
{
    (void)pass;
    return fc_is_pointwise(d) ? NULL : "gemm_1x1 needs a 1x1 kernel, stride 1 and no padding";
}

int fc_im2col_wgrad_chunks(const fc_conv_desc *d)
{
    plan p;
    make_plan(d, FC_BWD_WEIGHTS, fc_is_pointwise(d), &p);
    return (int)p.chunks;
}

static size_t im2col_ws(const fc_conv_desc *d, int pass) { return workspace_size(d, pass, 0); }
/* The pointwise weight gradient runs on the implicit-GEMM micro-kernels where the ISA has
   them (pointwise_wgrad.c: no packing of the larger operand), else on the GEMM. */
static int pointwise_wgrad(const fc_conv_desc *d, int pass)
{
    return pass == FC_BWD_WEIGHTS && fc_pointwise_wgrad_suits(d);
}
static size_t gemm_1x1_ws(const fc_conv_desc *d, int pass)
{
    return pointwise_wgrad(d, pass) ? fc_pointwise_wgrad_workspace(d) : workspace_size(d, pass, 1);
}
static void im2col_fwd0(const fc_conv_desc *d, const void *x, const void *w, const void *b, void *y, void *ws)
{
    im2col_fwd(d, x, w, b, y, ws, 0, 0);
}
static void im2col_fwd_post(const fc_conv_desc *d, const void *x, const void *w, const void *b, int post, void *y,
                            void *ws)
{
    im2col_fwd(d, x, w, b, y, ws, 0, post == FC_POST_RELU);
}
static void gemm_1x1_fwd(const fc_conv_desc *d, const void *x, const void *w, const void *b, void *y, void *ws)
{
    im2col_fwd(d, x, w, b, y, ws, 1, 0);
}
static void gemm_1x1_fwd_post(const fc_conv_desc *d, const void *x, const void *w, const void *b, int post,
                              void *y, void *ws)
{
    im2col_fwd(d, x, w, b, y, ws, 1, post == FC_POST_RELU);
}
static void im2col_bwd_data0(const fc_conv_desc *d, const void *gy, const void *w, void *gx, void *ws)
{
    im2col_bwd_data(d, gy, w, gx, ws, 0);
}
static void gemm_1x1_bwd_data(const fc_conv_desc *d, const void *gy, const void *w, void *gx, void *ws)
{
    im2col_bwd_data(d, gy, w, gx, ws, 1);
}
static void im2col_bwd_weights0(const fc_conv_desc *d, const void *gy, const void *x, void *gw, void *gb, void *ws)
{
    im2col_bwd_weights(d, gy, x, gw, gb, ws, 0);
}
static void gemm_1x1_bwd_weights(const fc_conv_desc *d, const void *gy, const void *x, void *gw, void *gb, void *ws)
{
    if (pointwise_wgrad(d, FC_BWD_WEIGHTS))
        fc_pointwise_wgrad(d, gy, x, gw, gb, ws);
    else
        im2col_bwd_weights(d, gy, x, gw, gb, ws, 1);
}

/* Both multiply the padding's zeros (materialised in the column matrix, or absent) as the
   definition does: exact on NaN/inf, the driver's fallback. */
const fc_conv_impl fc_impl_im2col = {
    FC_ALGO_IM2COL_EXPLICIT, "im2col_explicit", "im2col", 0, {0, 0, 0},
    im2col_rejects, im2col_ws, im2col_fwd0, im2col_bwd_data0, im2col_bwd_weights0, im2col_fwd_post,
};

const fc_conv_impl fc_impl_gemm_1x1 = {
    FC_ALGO_GEMM_1X1, "gemm_1x1", "im2col", 0, {0, 0, 0},
    gemm_1x1_rejects, gemm_1x1_ws, gemm_1x1_fwd, gemm_1x1_bwd_data, gemm_1x1_bwd_weights,
    gemm_1x1_fwd_post,
};
