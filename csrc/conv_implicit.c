/*
 * conv_implicit.c: implicit GEMM, the im2col algorithm without the column matrix, for
 * unit-stride convolutions (see implicit/implicit.h for the idea and the micro-kernels).
 *
 * Each work item copies a band of its image (the input rows a tile of output rows reads,
 * zero padding materialised, rows padded to width Wp = OW + (KW-1)*dw) and multiplies:
 *
 *   fwd          C (Kg x rows*Wp) = W_g (packed once per call) x B(band); the columns
 *                j >= OW of each output row are computed and dropped, then C + bias is
 *                copied into y. The K loop runs in fixed channel chunks sized so the part
 *                of the band one micro-kernel call reads stays in L1.
 *   bwd_data     the input gradient of a unit-stride convolution is the forward
 *                convolution of grad_y with the kernel rotated by 180 degrees and its
 *                channel axes swapped (the packing reads the weights that way).
 *   bwd_weights  dW^T (K x Kg) = sum over pixels of B(band) x grad_y^T; every thread owns
 *                whole MR-row blocks of dW^T and walks all images and tiles in order, so
 *                each weight-gradient element is summed in one fixed order, whatever the
 *                thread count, without partial sums or barriers.
 *
 * Compared with explicit im2col this drops the pass that writes the column matrix and the
 * pass that packs it (together ~20% of a 3x3 layer's time on the reference machine).
 * NaN/inf: the band holds the padding as zeros, so the forward and the weight gradient
 * multiply it exactly as the definition does; the input gradient via the forward would
 * also multiply the weights by grad_y's padding, so non-finite weights take the explicit
 * path (conv_im2col.c checks).
 */
#include <math.h>
#include <string.h>

#include "conv_internal.h"
#include "direct.h"
#include "implicit/implicit.h"

#ifdef _OPENMP
#include <omp.h>
#define THREAD_ID() omp_get_thread_num()
#else
#define THREAD_ID() 0
#endif

/* Per-thread band + output tile: about half of the 1 MiB L2 of the reference machine. */
#define TILE_BYTES ((int64_t)512 << 10)
/* The part of the band one forward micro-kernel call reads (KH rows x (NR + (KW-1)*dw)
   elements per channel of the chunk): within half of a 32 KiB L1d. */
#define CHUNK_BYTES ((int64_t)16 << 10)
/* Beyond this the band's padding would cost more memory than the lowering saves. */
#define MAX_BAND_ROW_BYTES ((int64_t)8 << 20)

const fc_implicit_kernels *fc_implicit_kernels_for(int dtype)
{
#ifdef FC_IMPLICIT_HAVE_AVX512
    if (fc_active_isa() >= FC_ISA_AVX512)
        return dtype == FC_F64 ? &fc_implicit_f64_8x24__avx512 : &fc_implicit_f32_8x32__avx512;
#endif
    (void)dtype;
    return NULL;
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

typedef struct iplan {
    const fc_implicit_kernels *kr;
    int64_t cg, kg, KK, K;  /* of the problem computed (the transposed one for bwd_data) */
    int64_t wp;             /* band row width */
    int64_t rows, tiles;    /* output rows per tile, tiles per image */
    int64_t plane;          /* band elements per channel: (rows + (KH-1)*dh) * wp */
    int64_t band_elems;     /* cg * plane + slack read past the last channel by the kernels */
    int64_t ncols;          /* fwd: columns of the output tile, a multiple of the vector length */
    int64_t mp;             /* fwd: kg rounded up to MR; bwd_weights: K rounded up to MR */
    int64_t ldb;            /* bwd_weights: kg rounded up to NR */
    int64_t chunk;          /* fwd: K elements per chunk (whole channels) */
    int row_blocks;         /* fwd: column blocks start at each output row (skip the gaps) */
    int nt;
    size_t off_bytes, apack_bytes, dwt_bytes, per_thread, band_bytes, tile_bytes;
} iplan;

static int64_t band_rows(const fc_conv_desc *d, int64_t rows) { return rows + (d->kh - 1) * d->dil_h; }

static int64_t band_width(const fc_conv_desc *d) { return d->ow + (d->kw - 1) * d->dil_w; }

/* Bytes of the per-thread tile for `rows` output rows (band + fwd output or bwd_weights'
   transposed grad_y). */
static int64_t tile_bytes_for(const fc_conv_desc *d, int pass, const fc_implicit_kernels *kr, int64_t rows)
{
    const int64_t es = (int64_t)fc_elem_size(d->dtype), cg = d->c_in / d->groups, kg = d->c_out / d->groups;
    const int64_t wp = band_width(d);
    int64_t bytes = cg * band_rows(d, rows) * wp * es;
    if (pass == FC_BWD_WEIGHTS)
        bytes += rows * d->ow * round_up(kg, kr->nr) * es;
    else
        bytes += round_up(kg, kr->mr) * (rows * wp + kr->nr) * es;
    return bytes;
}

static int problem_accepted(const fc_conv_desc *d)
{
    if (d->stride_h != 1 || d->stride_w != 1)
        return 0;
    if (d->kh == 1 && d->kw == 1 && d->pad_top == 0 && d->pad_bottom == 0 && d->pad_left == 0 &&
        d->pad_right == 0)
        return 0; /* the input is the column matrix already (conv_im2col.c) */
    const int64_t wp = band_width(d), cg = d->c_in / d->groups;
    if (wp > 4 * d->ow + 64)
        return 0; /* padding that dwarfs the output */
    return cg * band_rows(d, 1) * wp * (int64_t)fc_elem_size(d->dtype) <= MAX_BAND_ROW_BYTES;
}

/* grad_x = conv(grad_y, rot180(w) with in/out channels swapped), padding (eff_k-1-pad). */
static void transposed(const fc_conv_desc *d, fc_conv_desc *t)
{
    *t = *d;
    t->c_in = d->c_out;
    t->h = d->oh;
    t->w = d->ow;
    t->c_out = d->c_in;
    t->oh = d->h;
    t->ow = d->w;
    t->pad_top = (d->kh - 1) * d->dil_h - d->pad_top;
    t->pad_bottom = (d->kh - 1) * d->dil_h - d->pad_bottom;
    t->pad_left = (d->kw - 1) * d->dil_w - d->pad_left;
    t->pad_right = (d->kw - 1) * d->dil_w - d->pad_right;
}

int fc_implicit_accepts(const fc_conv_desc *d, int pass)
{
    if (fc_implicit_kernels_for(d->dtype) == NULL)
        return 0;
    if (pass == FC_BWD_DATA) {
        fc_conv_desc t;
        transposed(d, &t);
        return problem_accepted(d) && problem_accepted(&t);
    }
    return problem_accepted(d);
}

/* d is the problem computed (for bwd_data, the transposed one). */
static void make_plan(const fc_conv_desc *d, int pass, iplan *p)
{
    const int64_t es = (int64_t)fc_elem_size(d->dtype);
    const fc_implicit_kernels *kr = fc_implicit_kernels_for(d->dtype);
    p->kr = kr;
    p->cg = d->c_in / d->groups;
    p->kg = d->c_out / d->groups;
    p->KK = d->kh * d->kw;
    p->K = p->cg * p->KK;
    p->wp = band_width(d);
    p->nt = fc_team_size(d);

    /* Tile rows: as many as fit TILE_BYTES. The forward (whose result does not depend on
       the tiling) also cuts images into enough tiles to feed every thread twice; the
       weight gradient's tiles fix its summation order, so they depend on sizes only. */
    int64_t rows = d->oh;
    while (rows > 1 && tile_bytes_for(d, pass, kr, rows) > TILE_BYTES)
        rows = (rows + 1) / 2;
    if (pass != FC_BWD_WEIGHTS) {
        const int64_t want = ceil_div(2 * p->nt, d->n * d->groups); /* tiles per image */
        if (want > 1)
            rows = min64(rows, max64(1, ceil_div(d->oh, want)));
    }
    p->rows = rows;
    p->tiles = ceil_div(d->oh, rows);
    p->plane = band_rows(d, rows) * p->wp;
    p->band_elems = p->cg * p->plane + kr->nr + (d->kw - 1) * d->dil_w;
    p->band_bytes = fc_align_up((size_t)(p->band_elems * es));
    /* Columns j >= OW of a band row are wasted work. Blocks that run on across rows waste
       them (wp - OW per row); blocks that restart at every row waste the rounding of OW
       up to whole vectors instead. Whichever wastes less (cifar's OW = 32: none). */
    const int64_t ow_vec = round_up(d->ow, kr->vl);
    p->row_blocks = ow_vec - d->ow <= p->wp - d->ow;
    p->ncols = round_up((rows - 1) * p->wp + (p->row_blocks ? ow_vec : d->ow), kr->vl);
    p->ldb = round_up(p->kg, kr->nr);
    p->off_bytes = fc_align_up((size_t)p->K * sizeof(int64_t));
    if (pass == FC_BWD_WEIGHTS) {
        p->mp = round_up(p->K, kr->mr);
        p->chunk = p->K;
        p->apack_bytes = 0;
        p->tile_bytes = fc_align_up((size_t)(rows * d->ow * p->ldb * es));
        p->dwt_bytes = fc_align_up((size_t)(d->groups * p->mp * p->ldb * es));
        /* the bias item's accumulator (one output row) shares the tile's space */
        if (p->tile_bytes < fc_align_up((size_t)(d->ow * es)))
            p->tile_bytes = fc_align_up((size_t)(d->ow * es));
    } else {
        p->mp = round_up(p->kg, kr->mr);
        const int64_t per_channel = d->kh * (kr->nr + (d->kw - 1) * d->dil_w) * es;
        p->chunk = max64(1, min64(p->cg, CHUNK_BYTES / per_channel)) * p->KK;
        p->apack_bytes = fc_align_up((size_t)(d->groups * p->mp * p->K * es));
        p->tile_bytes = fc_align_up((size_t)(p->mp * p->ncols * es));
        p->dwt_bytes = 0;
    }
    p->per_thread = p->band_bytes + p->tile_bytes;
}

static size_t plan_bytes(const iplan *p)
{
    return p->off_bytes + p->apack_bytes + p->dwt_bytes + (size_t)p->nt * p->per_thread;
}

size_t fc_implicit_workspace_size(const fc_conv_desc *d, int pass)
{
    iplan p;
    if (pass == FC_BWD_DATA) {
        fc_conv_desc t;
        transposed(d, &t);
        make_plan(&t, FC_FWD, &p);
    } else {
        make_plan(d, pass, &p);
    }
    return plan_bytes(&p);
}

int fc_implicit_weights_finite(const fc_conv_desc *d, const void *w)
{
    const int64_t count = d->c_out * (d->c_in / d->groups) * d->kh * d->kw;
    int finite = 1;
    if (d->dtype == FC_F64) {
        for (int64_t i = 0; i < count; i++)
            finite &= isfinite(((const double *)w)[i]) != 0;
    } else {
        for (int64_t i = 0; i < count; i++)
            finite &= isfinite(((const float *)w)[i]) != 0;
    }
    return finite;
}

/* ---- pieces shared by the passes ------------------------------------------ */

/* off[(c*KH + l)*KW + m] = c*plane + l*dh*wp + m*dw */
static void build_offsets(const fc_conv_desc *d, const iplan *p, int64_t *off)
{
    for (int64_t c = 0; c < p->cg; c++)
        for (int64_t l = 0; l < d->kh; l++)
            for (int64_t m = 0; m < d->kw; m++)
                off[(c * d->kh + l) * d->kw + m] = c * p->plane + l * d->dil_h * p->wp + m * d->dil_w;
}

/* Band of channels [c0, c1) of image group x_g for output rows [i0, i0 + rows): band row r
   holds input row i0 + r - pad_top, band column j input column j - pad_left, zero outside
   the image (and in rows past this tile's). Plain loops, not memcpy: the rows are short. */
#define DEFINE_COPY_BAND(REAL, SFX)                                                               \
    static void copy_band_##SFX(const fc_conv_desc *d, const iplan *p, const REAL *x_g, int64_t i0, \
                                int64_t rows, int64_t c0, int64_t c1, REAL *band)                 \
    {                                                                                             \
        const int64_t wp = p->wp, br = band_rows(d, p->rows), used = band_rows(d, rows);          \
        const int64_t lo = min64(max64(0, d->pad_left), wp);                                      \
        const int64_t hi = max64(lo, min64(wp, d->pad_left + d->w));                              \
        for (int64_t c = c0; c < c1; c++) {                                                       \
            REAL *restrict dst = band + c * p->plane;                                             \
            for (int64_t r = 0; r < br; r++, dst += wp) {                                         \
                const int64_t ih = i0 + r - d->pad_top;                                           \
                if (r >= used || ih < 0 || ih >= d->h) {                                          \
                    for (int64_t j = 0; j < wp; j++)                                              \
                        dst[j] = 0;                                                               \
                    continue;                                                                     \
                }                                                                                 \
                const REAL *restrict src = x_g + (c * d->h + ih) * d->w + (lo - d->pad_left);     \
                for (int64_t j = 0; j < lo; j++)                                                  \
                    dst[j] = 0;                                                                   \
                for (int64_t j = lo; j < hi; j++)                                                 \
                    dst[j] = src[j - lo];                                                         \
                for (int64_t j = hi; j < wp; j++)                                                 \
                    dst[j] = 0;                                                                   \
            }                                                                                     \
        }                                                                                         \
    }
DEFINE_COPY_BAND(float, f32)
DEFINE_COPY_BAND(double, f64)

static void copy_band(const fc_conv_desc *d, const iplan *p, const char *x_g, int64_t i0, int64_t rows,
                      int64_t c0, int64_t c1, char *band)
{
    if (d->dtype == FC_F64)
        copy_band_f64(d, p, (const double *)x_g, i0, rows, c0, c1, (double *)band);
    else
        copy_band_f32(d, p, (const float *)x_g, i0, rows, c0, c1, (float *)band);
}

/* ---- forward (and bwd_data through it) ------------------------------------ */

/* A for group g, MR-row panels of the full K: a[(panel*K + p)*MR + i] = W(g, panel*MR + i, p),
   zero for rows past kg. flip: w is the original weight of a bwd_data problem, read
   transposed (its input channels are our rows) and rotated by 180 degrees. */
#define DEFINE_PACK_A(REAL, SFX)                                                                  \
    static void pack_a_##SFX(const iplan *p, const REAL *w, int flip, int64_t g, int64_t panel,  \
                             REAL *a)                                                             \
    {                                                                                             \
        const int64_t MR = p->kr->mr, KK = p->KK;                                                 \
        for (int64_t i = 0; i < MR; i++) {                                                        \
            const int64_t row = panel * MR + i;                                                   \
            for (int64_t pk = 0; pk < p->K; pk++) {                                               \
                REAL v = 0;                                                                       \
                if (row < p->kg) {                                                                \
                    const int64_t c = pk / KK, t = pk % KK;                                       \
                    v = flip ? w[((g * p->cg + c) * p->kg + row) * KK + (KK - 1 - t)]             \
                             : w[((g * p->kg + row) * p->cg + c) * KK + t];                       \
                }                                                                                 \
                a[pk * MR + i] = v;                                                               \
            }                                                                                     \
        }                                                                                         \
    }
DEFINE_PACK_A(float, f32)
DEFINE_PACK_A(double, f64)

/* y rows [i0, i0 + rows) of channels [k0, k0 + kg) = the tile's valid columns + bias. */
#define DEFINE_STORE_Y(REAL, SFX)                                                                 \
    static void store_y_##SFX(const fc_conv_desc *d, const iplan *p, const REAL *c,              \
                              const REAL *bias, REAL *y, int64_t rows)                            \
    {                                                                                             \
        for (int64_t k = 0; k < p->kg; k++) {                                                     \
            const REAL b = bias ? bias[k] : (REAL)0;                                              \
            for (int64_t r = 0; r < rows; r++) {                                                  \
                const REAL *src = c + k * p->ncols + r * p->wp;                                   \
                REAL *dst = y + (k * d->oh + r) * d->ow;                                          \
                if (bias)                                                                         \
                    for (int64_t j = 0; j < d->ow; j++)                                           \
                        dst[j] = src[j] + b;                                                      \
                else                                                                              \
                    for (int64_t j = 0; j < d->ow; j++) /* rows are short: no memcpy call */     \
                        dst[j] = src[j];                                                          \
            }                                                                                     \
        }                                                                                         \
    }
DEFINE_STORE_Y(float, f32)
DEFINE_STORE_Y(double, f64)

static void fwd_tile(const fc_conv_desc *d, const iplan *p, const char *apack, const int64_t *off,
                     const char *band, char *c, int64_t rows)
{
    const size_t es = fc_elem_size(d->dtype);
    const int64_t MR = p->kr->mr, NR = p->kr->nr;
    /* Column blocks [q0, q0 + width): the whole tile in one run, or each row's OW columns. */
    const int64_t runs = p->row_blocks ? rows : 1;
    const int64_t run_len = p->row_blocks ? round_up(d->ow, p->kr->vl) : p->ncols;
    for (int64_t k0 = 0; k0 < p->K; k0 += p->chunk) {
        const int64_t kc = min64(p->chunk, p->K - k0);
        for (int64_t r = 0; r < runs; r++) {
            for (int64_t j0 = 0; j0 < run_len; j0 += NR) {
                const int64_t q0 = r * p->wp + j0;
                /* the last block may be narrower: only its vectors are computed */
                const fc_implicit_fwd_fn fwd = p->kr->fwd[min64(NR, run_len - j0) / p->kr->vl];
                for (int64_t ir = 0; ir < p->mp / MR; ir++)
                    fwd(kc, apack + (size_t)((ir * p->K + k0) * MR) * es, band + (size_t)q0 * es, off + k0,
                        c + (size_t)(ir * MR * p->ncols + q0) * es, p->ncols, k0 > 0);
            }
        }
    }
}

/* The forward of problem d; w_flipped: w is a bwd_data problem's original weight. */
static void run_fwd(const fc_conv_desc *d, const void *x_, const void *w_, int w_flipped, const void *bias_,
                    void *y_, void *ws)
{
    iplan p;
    make_plan(d, FC_FWD, &p);
    const size_t es = fc_elem_size(d->dtype);
    char *base = (char *)ws;
    int64_t *off = (int64_t *)base;
    char *apack = base + p.off_bytes;
    char *thread0 = apack + p.apack_bytes;
    const char *x = (const char *)x_, *bias = (const char *)bias_;
    char *y = (char *)y_;
    const int64_t panels = p.mp / p.kr->mr, items = d->n * d->groups * p.tiles;
    build_offsets(d, &p, off);

#pragma omp parallel num_threads(p.nt)
    {
#pragma omp for schedule(static)
        for (int64_t gp = 0; gp < d->groups * panels; gp++) {
            char *dst = apack + (size_t)(gp * p.kr->mr * p.K) * es; /* group g's panels start at g*mp*K */
            if (d->dtype == FC_F64)
                pack_a_f64(&p, (const double *)w_, w_flipped, gp / panels, gp % panels, (double *)dst);
            else
                pack_a_f32(&p, (const float *)w_, w_flipped, gp / panels, gp % panels, (float *)dst);
        }
        char *band = thread0 + (size_t)THREAD_ID() * p.per_thread, *c = band + p.band_bytes;
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < items; it++) {
            const int64_t n = it / (d->groups * p.tiles), g = (it / p.tiles) % d->groups, t = it % p.tiles;
            const int64_t i0 = t * p.rows, rows = min64(p.rows, d->oh - i0);
            copy_band(d, &p, x + (size_t)((n * d->c_in + g * p.cg) * d->h * d->w) * es, i0, rows, 0, p.cg, band);
            fwd_tile(d, &p, apack + (size_t)(g * p.mp * p.K) * es, off, band, c, rows);
            char *y_t = y + (size_t)(((n * d->c_out + g * p.kg) * d->oh + i0) * d->ow) * es;
            const char *b_g = bias ? bias + (size_t)(g * p.kg) * es : NULL;
            if (d->dtype == FC_F64)
                store_y_f64(d, &p, (const double *)c, (const double *)b_g, (double *)y_t, rows);
            else
                store_y_f32(d, &p, (const float *)c, (const float *)b_g, (float *)y_t, rows);
        }
    }
}

void fc_implicit_fwd(const fc_conv_desc *d, const void *x, const void *w, const void *bias, void *y, void *ws)
{
    run_fwd(d, x, w, 0, bias, y, ws);
}

void fc_implicit_bwd_data(const fc_conv_desc *d, const void *gy, const void *w, void *gx, void *ws)
{
    fc_conv_desc t;
    transposed(d, &t);
    run_fwd(&t, gy, w, 1, NULL, gx, ws);
}

/* ---- backward weights ----------------------------------------------------- */

/* bt[(r*OW + j)*ldb + k] = grad_y[k0 + k, i0 + r, j] for the group's kg channels; the
   columns past kg are zero. */
#define DEFINE_TRANSPOSE_GY(REAL, SFX)                                                            \
    static void transpose_gy_##SFX(const fc_conv_desc *d, const iplan *p, const REAL *gy_g,      \
                                   int64_t i0, int64_t rows, REAL *bt)                            \
    {                                                                                             \
        const int64_t pixels = rows * d->ow, plane = d->oh * d->ow;                               \
        const REAL *src = gy_g + i0 * d->ow;                                                      \
        for (int64_t q0 = 0; q0 < pixels; q0 += 16) {                                             \
            const int64_t q1 = min64(q0 + 16, pixels);                                            \
            for (int64_t k = 0; k < p->kg; k++)                                                   \
                for (int64_t q = q0; q < q1; q++)                                                 \
                    bt[q * p->ldb + k] = src[k * plane + q];                                      \
            for (int64_t q = q0; q < q1; q++)                                                     \
                for (int64_t k = p->kg; k < p->ldb; k++)                                          \
                    bt[q * p->ldb + k] = 0;                                                       \
        }                                                                                         \
    }
DEFINE_TRANSPOSE_GY(float, f32)
DEFINE_TRANSPOSE_GY(double, f64)

/* grad_w[g*kg + i, k] = dwt[g][k][i] for the flattened (g, i) rows [r0, r1). */
#define DEFINE_STORE_DW(REAL, SFX)                                                                \
    static void store_dw_##SFX(const iplan *p, const REAL *dwt, REAL *gw, int64_t r0, int64_t r1) \
    {                                                                                             \
        for (int64_t gi = r0; gi < r1; gi++) {                                                    \
            const int64_t g = gi / p->kg, i = gi % p->kg;                                         \
            const REAL *src = dwt + g * p->mp * p->ldb + i;                                       \
            for (int64_t k = 0; k < p->K; k++)                                                    \
                gw[gi * p->K + k] = src[k * p->ldb];                                              \
        }                                                                                         \
    }
DEFINE_STORE_DW(float, f32)
DEFINE_STORE_DW(double, f64)

void fc_implicit_bwd_weights(const fc_conv_desc *d, const void *gy_, const void *x_, void *gw_, void *gb_,
                             void *ws)
{
    iplan p;
    make_plan(d, FC_BWD_WEIGHTS, &p);
    const size_t es = fc_elem_size(d->dtype);
    char *base = (char *)ws;
    int64_t *off = (int64_t *)base;
    char *dwt = base + p.off_bytes;
    char *thread0 = dwt + p.dwt_bytes;
    const char *gy = (const char *)gy_, *x = (const char *)x_;
    char *gw = (char *)gw_, *gb = (char *)gb_;
    const int64_t MR = p.kr->mr, NR = p.kr->nr;
    const int64_t rblocks = p.mp / MR, cblocks = p.ldb / NR, units = d->groups * rblocks * cblocks;
    const int64_t plane = d->oh * d->ow;
    const fc_implicit_wgrad_fn wgrad = p.kr->wgrad;
    const fc_bias_item_fn bias_item = fc_direct_ops_active()->bias[d->dtype];
    build_offsets(d, &p, off);

#pragma omp parallel num_threads(p.nt)
    {
        const int tid = THREAD_ID();
        char *band = thread0 + (size_t)tid * p.per_thread, *bt = band + p.band_bytes;
        /* this thread's units (g, row block, column block): a contiguous range */
        const int64_t u0 = units * tid / p.nt, u1 = units * (tid + 1) / p.nt;
        for (int64_t n = 0; n < d->n; n++) {
            for (int64_t t = 0; t < p.tiles; t++) {
                const int64_t i0 = t * p.rows, rows = min64(p.rows, d->oh - i0);
                for (int64_t u = u0; u < u1;) {
                    /* the units of one group: copy what they read, then run them */
                    const int64_t g = u / (rblocks * cblocks);
                    const int64_t ue = min64(u1, (g + 1) * rblocks * cblocks);
                    const int64_t k_lo = (u % (rblocks * cblocks)) / cblocks * MR;
                    const int64_t k_hi = min64(p.K, ((ue - 1) % (rblocks * cblocks) / cblocks + 1) * MR);
                    const char *x_g = x + (size_t)((n * d->c_in + g * p.cg) * d->h * d->w) * es;
                    const char *gy_g = gy + (size_t)((n * d->c_out + g * p.kg) * plane) * es;
                    copy_band(d, &p, x_g, i0, rows, k_lo / p.KK, (k_hi - 1) / p.KK + 1, band);
                    if (d->dtype == FC_F64)
                        transpose_gy_f64(d, &p, (const double *)gy_g, i0, rows, (double *)bt);
                    else
                        transpose_gy_f32(d, &p, (const float *)gy_g, i0, rows, (float *)bt);
                    for (; u < ue; u++) {
                        const int64_t rb = (u / cblocks) % rblocks, cb = u % cblocks;
                        const void *a[8];
                        for (int64_t i = 0; i < MR; i++) {
                            /* rows past K (dropped): the last tap's row, which this thread has copied */
                            const int64_t k = rb * MR + i < p.K ? rb * MR + i : p.K - 1;
                            a[i] = band + (size_t)off[k] * es;
                        }
                        char *c = dwt + (size_t)((g * p.mp + rb * MR) * p.ldb + cb * NR) * es;
                        wgrad(rows, d->ow, a, p.wp, bt + (size_t)(cb * NR) * es, p.ldb, c, p.ldb, n > 0 || t > 0);
                    }
                }
            }
        }
#pragma omp barrier
        const int64_t out_rows = d->groups * p.kg;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < out_rows; r++) {
            if (d->dtype == FC_F64)
                store_dw_f64(&p, (const double *)dwt, (double *)gw, r, r + 1);
            else
                store_dw_f32(&p, (const float *)dwt, (float *)gw, r, r + 1);
        }
        if (gb) {
#pragma omp for schedule(static)
            for (int64_t k = 0; k < d->c_out; k++)
                bias_item(d, gy + (size_t)(k * plane) * es, gb + (size_t)k * es, bt);
        }
    }
}
