/*
 * depthwise.c: the depthwise passes (groups == C_in): planning, workspace layout and the
 * one OpenMP region per call. The kernels are in depthwise_kernels.inc (one instance per
 * ISA, chosen by fc_active_isa()); see depthwise.h for the method.
 *
 * Work items and determinism
 *   fwd             (image n, input channel c, band of output rows[, block of the
 *                    multiplier's channels]): writes y[n, c*mult + q, band rows].
 *   bwd_data        (image n, input channel c, band of rows): writes gx[n, c, band rows],
 *                    summing the mult grad_y planes in registers (<= FC_DW_MAX_SRC at a
 *                    time, then adding to the band); kernels holding NaN/inf take an exact
 *                    scalar scatter instead (see scatter_f32).
 *   bwd_weights     (block of <= DW_BWW_BLOCK output channels of one input channel,
 *                    chunk p of the batch's grad_y rows): partial sums of gw[k] and gb[k]
 *                    for each k of the block, their input band copied once for all of
 *                    them; then (output channel k): sum of its chunks in order p = 0, 1, ...
 *                    The blocking and chunking depend on the problem only.
 *   Every element is computed by one item in a fixed order, so results are bitwise the
 *   same for every thread count and schedule. Items are handed out in dynamic runs of
 *   consecutive items, so a thread streams through memory and can prefetch (into L2,
 *   spread over the current band's copy) the band it works on next.
 *
 * Memory traffic: each source plane is read once (into the band buffer); outputs of
 * >= DW_STREAM_BYTES whose pass does not fit half the L3 are built band by band in
 * per-thread scratch and written with streaming stores (no read-for-ownership of lines
 * that are overwritten whole; dw_streams).
 *
 * Workspace (all scratch; content on entry irrelevant)
 *   [cofs: kw int64][rotated kernels: c_out*kh*kw][chunk partials:
 *   c_out*chunks*(kh*kw+1)][per thread: band buffer(s), accumulators, output stage] --
 *   independent of the batch size: a band buffer holds <= ~24 KiB of rows per source (at
 *   least 8 output rows), chunks <= 32. fc_depthwise_accepts() declines shapes whose
 *   scratch would exceed max(16 MiB, 10% of input + output).
 */
#include <string.h>

#include "conv_internal.h"
#include "cpu_info.h"
#include "depthwise.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Bytes of band rows per source a band aims at: stays in L1 with the output rows. */
#define DW_BAND_BUDGET (24 * 1024)
/* bwd_data: grad_y planes of one input channel summed in one pass over a band. */
#define FC_DW_MAX_SRC 64
/* fwd/bwd_data outputs at least this large are written with streaming (non-temporal)
   stores when the pass's input and output together exceed half the L3 (dw_streams): they
   do not stay in the caches anyway, and a plain store first reads the line (measured here:
   a 12.8 MB copy 1.15 ms with plain stores, 0.47 ms streaming). */
#ifndef DW_STREAM_BYTES
#define DW_STREAM_BYTES ((int64_t)4 << 20)
#endif
/* bwd_data: the prefetch runs this many source planes ahead of the copy (a plane of a
   small image is copied in less time than memory takes to answer). */
#define DW_PF_SOURCES 4
/* bwd_weights: output channels of one input channel (multiplier > 1) per item, sharing
   its band copy (mnist's first layer, 1 -> 32 channels: 0.62 ms with one channel per
   item, the copy repeated 32 times). */
#define DW_BWW_BLOCK 4
/* bwd_weights: aim for at least this many (block, chunk) items ... */
#define DW_MIN_ITEMS 32
/* ... with chunks of at least this many grad_y rows. */
#define DW_MIN_CHUNK_ROWS 16

static const fc_dw_ops *dw_ops(void)
{
#ifdef FC_DW_HAVE_X86
    switch (fc_active_isa()) {
    case FC_ISA_AVX512: return &fc_dw_ops_avx512;
    case FC_ISA_AVX2: return &fc_dw_ops_avx2;
    default: break;
    }
#endif
    return &fc_dw_ops_generic;
}

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t rup(int64_t a, int64_t b) { return cdiv(a, b) * b; }

/* One input channel per group, and scratch within the call's memory bound (it always is
   but for pathological shapes, e.g. rows millions of pixels wide that hold a band of
   only a few rows, or kernels of millions of taps): those go to the general algorithms.
   A single input channel feeding many outputs (groups == C_in == 1, C_out >= 16) is an
   ordinary convolution whose forward pass is one GEMM with N = C_out: the general
   algorithms win it (mnist_c1, 64x1x28x28 -> 32, 1 thread: depthwise 1.06 ms, direct
   0.66, im2col 0.42); depthwise keeps the input gradient (1.0-1.3 ms; direct 2.0, im2col
   0.7) and the weight gradient (0.84 ms; direct 0.99, im2col 1.26). */
int fc_depthwise_accepts(const fc_conv_desc *d, int pass)
{
    if (!(d->groups >= 1 && d->groups == d->c_in && d->c_out % d->groups == 0 && d->n >= 1 &&
          d->oh >= 1 && d->ow >= 1 && d->kh >= 1 && d->kw >= 1))
        return 0;
    if (d->c_in == 1 && d->c_out >= 16 && pass == FC_FWD)
        return 0;
    const double es = (double)fc_elem_size(d->dtype);
    const double io = es * ((double)d->n * d->c_in * d->h * d->w +
                            (double)d->n * d->c_out * d->oh * d->ow);
    const double limit = io / 10 > (double)(16 << 20) ? io / 10 : (double)(16 << 20);
    return (double)fc_depthwise_workspace_size(d, pass) <= limit;
}

/* ---- plan ---------------------------------------------------------------------------- */

/* Whether fwd/bwd_data write their output with streaming stores: outputs of >= 4 MB whose
   pass (input and output) exceeds half the L3. Where they fit the L3 with room to spare (other
   cores, other tenants of a VM's L3, the rest of a step's working set), a plain store leaves
   the output there for whatever reads it next (the next layer; the next call of a loop),
   while a streaming store sends it to memory and evicts it. Zen 4 (32 MiB L3), f32, 3x3, ms
   at 1 / 2 threads, streaming -> plain: 8 x 256 at 28x28 (12.8 MB in all) 1.04-1.22 /
   0.55-0.69 -> 0.65-0.77 / 0.32-0.45; 16 x 128 at 28x28 (12.8 MB) 1.07-1.12 / 0.56-0.66 ->
   0.67-0.80 / 0.34-0.36; 8 x 192 at 28x28 (9.6 MB) 0.79-0.86 / 0.41-0.46 -> 0.50-0.53 /
   0.27-0.28. Near the L3 it flips from run to run (8 x 128 at 56x56, 25.7 MB: plain 0.8-1.2x
   streaming), and past it streaming keeps its lead (8 x 64 at 112x112, 51 MB: 3.3-3.6 / 1.8-2.0
   against 4.3-4.4 / 2.2 plain; 32 x 144 at 56x56, 116 MB: 7.7-8.1 / 4.2-5.0 against 11.2-11.5
   / 5.8-5.9). */
static int dw_streams(const fc_conv_desc *d, int pass, size_t es)
{
    const int64_t x_bytes = d->n * d->c_in * d->h * d->w * (int64_t)es;
    const int64_t y_bytes = d->n * d->c_out * d->oh * d->ow * (int64_t)es;
    return (pass == FC_FWD ? y_bytes : x_bytes) >= DW_STREAM_BYTES && x_bytes + y_bytes > fc_cpu_info_get()->l3 / 2;
}

typedef struct dw_plan {
    fc_dw_geom g;
    int64_t mult;     /* output channels per input channel */
    int64_t nsrc;     /* bwd_data: sources per band pass */
    int64_t nbands;   /* bands per plane */
    int64_t chunks;   /* bwd_weights: chunks of the batch's rows per channel */
    int64_t mb, nblk; /* bwd_weights: output channels per block, blocks in all */
    int stream;       /* fwd/bwd_data: bands built in scratch, written with streaming stores */
    int team;
    size_t off_cofs, off_krot, off_part, off_thr, thr_bytes, thr_acc, thr_stage, total;
} dw_plan;

static void geom_init(fc_dw_geom *g, int64_t hs, int64_t ws, int64_t ho, int64_t wo, int64_t pt,
                      int64_t pl, int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t kh,
                      int64_t kw, size_t es, int64_t nsrc)
{
    const int64_t vmax = FC_DW_VSLOT / (int64_t)es; /* widest vector of any ISA */
    const int64_t maxoff = ((kw - 1) * dw) / sw, halo = (kh - 1) * dh + 1;
    g->hs = hs, g->ws = ws, g->ho = ho, g->wo = wo, g->pt = pt, g->pl = pl;
    g->sh = sh, g->sw = sw, g->dh = dh, g->dw = dw, g->kh = kh, g->kw = kw;
    /* org puts the first source column of a stride-1 row on a vector boundary; a row
       holds every column a vector of any ISA reads: [0, round_up(wo, vmax) + maxoff) */
    const int64_t lead = pl > 0 ? pl : 0;
    g->org = sw == 1 ? (vmax - lead % vmax) % vmax : 0;
    g->wq = rup(rup(wo, vmax) + maxoff + g->org, vmax);
    const int64_t row_bytes = sw * g->wq * (int64_t)es * nsrc;
    const int64_t fit = DW_BAND_BUDGET / row_bytes;
    int64_t band = fit >= halo ? (fit - halo) / sh + 1 : 1;
    if (band < 8)
        band = 8;
    if (band >= ho) {
        band = ho;
    } else { /* even bands, a multiple of 8 rows */
        const int64_t nb = cdiv(ho, band);
        band = rup(cdiv(ho, nb), 8);
        if (band > ho)
            band = ho;
    }
    g->band = band;
    g->buf_rows = (band - 1) * sh + halo;
    g->phase_stride = g->buf_rows * g->wq;
    g->src_stride = sw * g->phase_stride;
    g->uh = g->uw = 1;
    g->wsrc = ws;
    g->cofs = NULL;
}

static void make_plan(const fc_conv_desc *d, int pass, dw_plan *p)
{
    const size_t es = fc_elem_size(d->dtype);
    const int64_t kk = d->kh * d->kw;
    memset(p, 0, sizeof *p);
    p->mult = d->c_out / d->c_in;
    p->team = fc_team_size(d);
    p->nsrc = 1;
    if (pass == FC_BWD_DATA) { /* grad_y upsampled by the stride, kernel rotated */
        p->nsrc = p->mult < FC_DW_MAX_SRC ? p->mult : FC_DW_MAX_SRC;
        geom_init(&p->g, (d->oh - 1) * d->stride_h + 1, (d->ow - 1) * d->stride_w + 1, d->h, d->w,
                  (d->kh - 1) * d->dil_h - d->pad_top, (d->kw - 1) * d->dil_w - d->pad_left, 1, 1,
                  d->dil_h, d->dil_w, d->kh, d->kw, es, p->nsrc);
        p->g.uh = d->stride_h, p->g.uw = d->stride_w, p->g.wsrc = d->ow;
    } else {
        geom_init(&p->g, d->h, d->w, d->oh, d->ow, d->pad_top, d->pad_left, d->stride_h,
                  d->stride_w, d->dil_h, d->dil_w, d->kh, d->kw, es, 1);
    }
    p->nbands = cdiv(p->g.ho, p->g.band);
    if (pass != FC_BWD_WEIGHTS)
        p->stream = dw_streams(d, pass, es);
    if (pass == FC_BWD_WEIGHTS) {
        const int64_t rows = d->n * d->oh;
        p->mb = p->mult < DW_BWW_BLOCK ? p->mult : DW_BWW_BLOCK;
        p->nblk = d->c_in * cdiv(p->mult, p->mb);
        int64_t c = p->nblk >= DW_MIN_ITEMS ? 1 : cdiv(DW_MIN_ITEMS, p->nblk);
        const int64_t cmax = rows / DW_MIN_CHUNK_ROWS > 1 ? rows / DW_MIN_CHUNK_ROWS : 1;
        p->chunks = c < cmax ? c : cmax;
    }

    size_t off = 0;
    p->off_cofs = off;
    off += fc_align_up((size_t)d->kw * sizeof(int64_t));
    p->off_krot = off;
    if (pass == FC_BWD_DATA)
        off += fc_align_up((size_t)(d->c_out * kk) * es);
    p->off_part = off;
    if (pass == FC_BWD_WEIGHTS)
        off += fc_align_up((size_t)(d->c_out * p->chunks * (kk + 1)) * es);
    p->off_thr = off;
    p->thr_bytes = 0;
    p->thr_bytes = fc_align_up((size_t)(p->nsrc * p->g.src_stride) * es);
    p->thr_acc = p->thr_bytes;
    if (pass == FC_BWD_WEIGHTS)
        p->thr_bytes += fc_align_up((size_t)(p->mb * (kk + 1)) * FC_DW_VSLOT);
    p->thr_stage = p->thr_bytes;
    if (p->stream)
        p->thr_bytes += fc_align_up((size_t)(p->g.band * p->g.wo) * es);
    p->total = off + (size_t)p->team * p->thr_bytes;
}

/* Fill the shared tables (before the parallel region). */
static void plan_tables(const fc_conv_desc *d, dw_plan *p, void *ws)
{
    int64_t *cofs = (int64_t *)((char *)ws + p->off_cofs);
    for (int64_t m = 0; m < d->kw; m++) {
        const int64_t c = m * p->g.dw;
        cofs[m] = (c % p->g.sw) * p->g.phase_stride + c / p->g.sw;
    }
    p->g.cofs = cofs;
}

size_t fc_depthwise_workspace_size(const fc_conv_desc *d, int pass)
{
    dw_plan p;
    make_plan(d, pass, &p);
    return p.total;
}

static int thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* What a thread's band buffer holds, so a copy of the same padded rows of another plane
   writes only the source elements (the zero padding is already in place). Kept on the
   thread's stack: scratch content is unknown at the start of every call. */
typedef struct dw_tag {
    int64_t t0, rows, slots; /* padded rows [t0, t0 + rows) in source slots [0, slots) */
} dw_tag;

/* 1 when slot s already holds padded rows [t0, t0 + rows) of this geometry; records that
   it will after the copy. */
static int tag_data_only(dw_tag *tg, int64_t t0, int64_t rows, int64_t s)
{
    if (tg->t0 != t0 || tg->rows != rows) {
        tg->t0 = t0, tg->rows = rows, tg->slots = 0;
    }
    if (s < tg->slots)
        return 1;
    if (s == tg->slots)
        tg->slots = s + 1;
    return 0;
}

/* Items per dynamic chunk: a thread takes runs of consecutive items (so it streams
   through memory and knows which band comes next) while still balancing load. */
static int64_t chunk_of(int64_t items, int team)
{
    const int64_t ch = items / ((int64_t)team * 16);
    return ch > 1 ? ch : 1;
}

/* The bytes of the source rows that padded rows [t0, t0 + rows) read (clipped to the
   plane), of the plane at src. */
static void pf_range(const fc_dw_geom *g, const char *src, int64_t t0, int64_t rows, size_t es,
                     const char **p, int64_t *bytes)
{
    int64_t a = t0 - g->pt, b = t0 + rows - g->pt; /* virtual rows, then real */
    if (a < 0) a = 0;
    if (b > g->hs) b = g->hs;
    if (g->uh > 1)
        a = (a + g->uh - 1) / g->uh, b = (b + g->uh - 1) / g->uh;
    *p = src + (size_t)(a * g->wsrc) * es;
    *bytes = b > a ? (b - a) * g->wsrc * (int64_t)es : 0;
}

/* Part i of n of pf (each range cut at whole lines), for work split into n calls. */
static fc_dw_pf pf_slice(const fc_dw_pf *pf, int64_t i, int64_t n)
{
    fc_dw_pf s = {{NULL, NULL}, {0, 0}};
    for (int r = 0; r < 2; r++) {
        const int64_t lines = (pf->bytes[r] + 63) / 64, a = i * lines / n, b = (i + 1) * lines / n;
        s.p[r] = pf->p[r] + a * 64;
        s.bytes[r] = (b - a) * 64;
    }
    return s;
}

/* How many items ahead to prefetch when an item reads `bytes` of its source: at least
   DW_PF_AHEAD bytes in flight, so that items much shorter than a memory round trip
   (small planes) still find their data in L2. */
#define DW_PF_AHEAD (16 * 1024)
static int64_t pf_distance(int64_t bytes)
{
    const int64_t d = bytes > 0 ? cdiv(DW_PF_AHEAD, bytes) : 1;
    return d < 1 ? 1 : (d > 64 ? 64 : d);
}

/* Passed to the copy when the kernel prefetches: no prefetching of its own. */
static const fc_dw_pf pf_none = {{NULL, NULL}, {0, 0}};

/* ---- forward -------------------------------------------------------------------------- */

typedef struct dw_fwd_ctx {
    const fc_conv_desc *d;
    const dw_plan *p;
    const fc_dw_ops *ops;
    const char *x, *w, *b;
    char *y, *ws;
    int64_t qsplit;
} dw_fwd_ctx;

static void fwd_body(const dw_fwd_ctx *c)
{
    const fc_conv_desc *d = c->d;
    const dw_plan *p = c->p;
    const fc_dw_geom *g = &p->g;
    const size_t es = fc_elem_size(d->dtype);
    const int t = d->dtype;
    const int64_t kk = d->kh * d->kw, mult = p->mult, qs = c->qsplit, qb = cdiv(mult, qs);
    const int64_t items = d->n * d->c_in * p->nbands * qs;
    char *tb = c->ws + p->off_thr + (size_t)thread_id() * p->thr_bytes;
    char *buf = tb + (size_t)g->org * es; /* logical origin of the band buffer */
    char *stage = tb + p->thr_stage;
    dw_tag tag = {-1, -1, 0};
    const int64_t ch = chunk_of(items, p->team);
    const int simple = qs == 1 && p->nbands == 1; /* item = plane: no divisions */
    const int64_t dist = pf_distance((int64_t)(g->buf_rows * g->ws * (int64_t)es / qs));
#pragma omp for schedule(dynamic, ch)
    for (int64_t it = 0; it < items; it++) {
        const int64_t qi = simple ? 0 : it % qs, band = simple ? 0 : (it / qs) % p->nbands;
        const int64_t nc = simple ? it : it / (qs * p->nbands); /* n * c_in + cin */
        const int64_t cin = d->c_in == 1 ? 0 : nc % d->c_in;
        const int64_t i0 = band * g->band, nrows = (d->oh - i0) < g->band ? d->oh - i0 : g->band;
        const int64_t tin = (nrows - 1) * g->sh + (g->kh - 1) * g->dh + 1;
        fc_dw_pf pf = {{NULL, NULL}, {0, 0}};
        const int64_t nx = it + dist; /* an item ahead in this thread's chunk */
        if (nx < items && nx / ch == it / ch && qi == qs - 1) {
            const int64_t b2 = simple ? 0 : (nx / qs) % p->nbands;
            const int64_t nc2 = simple ? nx : nx / (qs * p->nbands);
            const int64_t r2 = (d->oh - b2 * g->band) < g->band ? d->oh - b2 * g->band : g->band;
            pf_range(g, c->x + (size_t)(nc2 * d->h * d->w) * es, b2 * g->band * g->sh,
                     (r2 - 1) * g->sh + (g->kh - 1) * g->dh + 1, es, &pf.p[0], &pf.bytes[0]);
        }
        c->ops->copy[t](g, c->x + (size_t)(nc * d->h * d->w) * es, buf, i0 * g->sh, tin,
                        tag_data_only(&tag, i0 * g->sh, tin, 0), pf.bytes[0] ? &pf_none : NULL);
        const int64_t q0 = qi * qb, q1 = (q0 + qb) < mult ? q0 + qb : mult;
        for (int64_t q = q0; q < q1; q++) {
            const int64_t k = cin * mult + q; /* y plane: n * c_out + k = nc * mult + q */
            char *yb = c->y + (size_t)(((nc * mult + q) * d->oh + i0) * d->ow) * es;
            const fc_dw_pf pq = q1 - q0 == 1 ? pf : pf_slice(&pf, q - q0, q1 - q0);
            c->ops->fwd[t](g, buf, 1, c->w + (size_t)(k * kk) * es,
                           c->b ? c->b + (size_t)k * es : NULL, p->stream ? stage : yb, d->ow,
                           nrows, 0, pf.bytes[0] ? &pq : NULL);
            if (p->stream)
                c->ops->stream[t](yb, stage, nrows * d->ow);
        }
    }
}

void fc_depthwise_fwd(const fc_conv_desc *d, const void *x, const void *w, const void *bias,
                      void *y, void *ws)
{
    dw_plan p;
    make_plan(d, FC_FWD, &p);
    plan_tables(d, &p, ws);
    dw_fwd_ctx c = {d, &p, dw_ops(), (const char *)x, (const char *)w, (const char *)bias,
                    (char *)y, (char *)ws, 1};
    /* split the multiplier's channels only when (n, c, band) items are too few */
    const int64_t base = d->n * d->c_in * p.nbands;
    if (base < DW_MIN_ITEMS && p.mult > 1) {
        const int64_t want = cdiv(DW_MIN_ITEMS, base);
        c.qsplit = want < p.mult ? want : p.mult;
    }
    if (p.team > 1) {
#pragma omp parallel num_threads(p.team)
        fwd_body(&c);
    } else {
        fwd_body(&c);
    }
}

/* ---- input gradient ------------------------------------------------------------------- */

/* The exact-terms input gradient for kernels holding NaN or inf: gx[n, c] is the sum of
   w * gy over the (output, tap) pairs that read each input pixel, and nothing else, as
   in the reference (and PyTorch). The fast path below convolves a zero-padded,
   zero-upsampled grad_y, which adds w * 0 terms: 0 for finite w, NaN for w = inf. Plain
   scalar code: a network with non-finite weights has bigger problems than speed. */
#define DW_SCATTER(NAME, REAL)                                                                 \
    static void NAME(const fc_conv_desc *d, const REAL *gy, const REAL *w, int64_t mult,      \
                     REAL *gx)                                                                 \
    {                                                                                          \
        const int64_t H = d->h, W = d->w, OH = d->oh, OW = d->ow, KH = d->kh, KW = d->kw;     \
        for (int64_t t = 0; t < H * W; t++)                                                    \
            gx[t] = 0;                                                                         \
        for (int64_t q = 0; q < mult; q++)                                                     \
            for (int64_t i = 0; i < OH; i++)                                                   \
                for (int64_t l = 0; l < KH; l++) {                                             \
                    const int64_t ih = i * d->stride_h + l * d->dil_h - d->pad_top;           \
                    if (ih < 0 || ih >= H)                                                     \
                        continue;                                                              \
                    for (int64_t m = 0; m < KW; m++) {                                         \
                        const REAL wv = w[(q * KH + l) * KW + m];                              \
                        for (int64_t j = 0; j < OW; j++) {                                     \
                            const int64_t iw = j * d->stride_w + m * d->dil_w - d->pad_left;  \
                            if (iw >= 0 && iw < W)                                             \
                                gx[ih * W + iw] += wv * gy[(q * OH + i) * OW + j];             \
                        }                                                                      \
                    }                                                                          \
                }                                                                              \
    }
DW_SCATTER(scatter_f32, float)
DW_SCATTER(scatter_f64, double)
#undef DW_SCATTER



typedef struct dw_bwd_ctx {
    const fc_conv_desc *d;
    const dw_plan *p;
    const fc_dw_ops *ops;
    const char *gy, *w;
    char *gx, *ws;
    int exact; /* the kernel holds NaN or inf: exact-terms scatter */
} dw_bwd_ctx;

static void bwd_body(const dw_bwd_ctx *c)
{
    const fc_conv_desc *d = c->d;
    const dw_plan *p = c->p;
    const fc_dw_geom *g = &p->g;
    const size_t es = fc_elem_size(d->dtype);
    const int t = d->dtype;
    const int64_t kk = d->kh * d->kw, mult = p->mult, plane_out = d->oh * d->ow;
    if (c->exact) {
#pragma omp for schedule(dynamic, 1)
        for (int64_t nc = 0; nc < d->n * d->c_in; nc++) {
            const int64_t n = nc / d->c_in, k0 = (nc % d->c_in) * mult;
            const size_t og = (size_t)((n * d->c_out + k0) * plane_out), ow = (size_t)(k0 * kk);
            const size_t ox = (size_t)(nc * d->h * d->w);
            if (d->dtype == FC_F64)
                scatter_f64(d, (const double *)c->gy + og, (const double *)c->w + ow, mult,
                            (double *)c->gx + ox);
            else
                scatter_f32(d, (const float *)c->gy + og, (const float *)c->w + ow, mult,
                            (float *)c->gx + ox);
        }
        return;
    }
    const char *krot = c->ws + p->off_krot;
    char *tb = c->ws + p->off_thr + (size_t)thread_id() * p->thr_bytes;
    char *buf = tb + (size_t)g->org * es; /* logical origin of the band buffer */
    char *stage = tb + p->thr_stage;
    dw_tag tag = {-1, -1, 0};
    const int64_t items = d->n * d->c_in * p->nbands;
    const int64_t ch = chunk_of(items, p->team);
    const int64_t dist = pf_distance(g->buf_rows * g->wsrc / g->uh * (int64_t)es);
#pragma omp for schedule(dynamic, ch)
    for (int64_t it = 0; it < items; it++) {
        const int64_t band = it % p->nbands, nc = it / p->nbands;
        const int64_t n = nc / d->c_in, cin = nc % d->c_in;
        const int64_t i0 = band * g->band, nrows = (d->h - i0) < g->band ? d->h - i0 : g->band;
        const int64_t tin = (nrows - 1) + (g->kh - 1) * g->dh + 1;
        char *gxb = c->gx + (size_t)((nc * d->h + i0) * d->w) * es;
        /* While copying source q, prefetch the band of source q + DW_PF_SOURCES (of this
           item, or past its last one, of the next item of this thread's chunk). */
        const int64_t nx = it + (mult == 1 ? dist : 1);
        const int has_next = nx < items && nx / ch == it / ch;
        const int64_t b2 = nx % p->nbands, nc2 = nx / p->nbands;
        const int64_t n2 = nc2 / d->c_in, k2 = (nc2 % d->c_in) * mult;
        const int64_t r2 = (d->h - b2 * g->band) < g->band ? d->h - b2 * g->band : g->band;
        for (int64_t q0 = 0; q0 < mult; q0 += p->nsrc) {
            const int64_t ns = (mult - q0) < p->nsrc ? mult - q0 : p->nsrc;
            fc_dw_pf kpf = {{NULL, NULL}, {0, 0}};
            for (int64_t s = 0; s < ns; s++) {
                const int64_t k = cin * mult + q0 + s;
                fc_dw_pf pf = {{NULL, NULL}, {0, 0}};
                const int64_t qa = q0 + s + (mult > 1 ? DW_PF_SOURCES : 1); /* prefetched */
                if (qa < mult)
                    pf_range(g, c->gy + (size_t)((n * d->c_out + cin * mult + qa) * plane_out) * es,
                             i0, tin, es, &pf.p[0], &pf.bytes[0]);
                else if (has_next && qa - mult < mult)
                    pf_range(g, c->gy + (size_t)((n2 * d->c_out + k2 + qa - mult) * plane_out) * es,
                             b2 * g->band, (r2 - 1) + (g->kh - 1) * g->dh + 1, es, &pf.p[0],
                             &pf.bytes[0]);
                /* one source: the kernel prefetches (overlapping its arithmetic); several:
                   the copies do, DW_PF_SOURCES planes ahead */
                if (mult == 1)
                    kpf = pf;
                c->ops->copy[t](g, c->gy + (size_t)((n * d->c_out + k) * plane_out) * es,
                                buf + (size_t)(s * g->src_stride) * es, i0, tin,
                                tag_data_only(&tag, i0, tin, s),
                                pf.bytes[0] ? (mult == 1 ? &pf_none : &pf) : NULL);
            }
            c->ops->fwd[t](g, buf, ns, krot + (size_t)((cin * mult + q0) * kk) * es, NULL,
                           p->stream ? stage : gxb, d->w, nrows, q0 > 0,
                           kpf.bytes[0] ? &kpf : NULL);
        }
        if (p->stream)
            c->ops->stream[t](gxb, stage, nrows * d->w);
    }
}

void fc_depthwise_bwd_data(const fc_conv_desc *d, const void *gy, const void *w, void *gx,
                           void *ws)
{
    dw_plan p;
    make_plan(d, FC_BWD_DATA, &p);
    plan_tables(d, &p, ws);
    const size_t es = fc_elem_size(d->dtype);
    const int64_t kk = d->kh * d->kw;
    { /* kernels rotated by 180 degrees */
        char *krot = (char *)ws + p.off_krot;
        const char *wb = (const char *)w;
        for (int64_t k = 0; k < d->c_out; k++)
            for (int64_t t = 0; t < kk; t++)
                memcpy(krot + (size_t)(k * kk + t) * es, wb + (size_t)(k * kk + kk - 1 - t) * es, es);
    }
    dw_bwd_ctx c = {d, &p, dw_ops(), (const char *)gy, (const char *)w, (char *)gx, (char *)ws,
                    0 /* the driver routes non-finite weights elsewhere */};
    if (p.team > 1) {
#pragma omp parallel num_threads(p.team)
        bwd_body(&c);
    } else {
        bwd_body(&c);
    }
}

/* ---- weight gradient ------------------------------------------------------------------ */

typedef struct dw_bww_ctx {
    const fc_conv_desc *d;
    const dw_plan *p;
    const fc_dw_ops *ops;
    const char *gy, *x;
    char *gw, *gb, *ws;
} dw_bww_ctx;

/* First grad_y row (flattened over the batch: n * oh + i) of chunk pc of P; chunk pc
   covers rows [chunk_row(pc), chunk_row(pc + 1)). */
static int64_t chunk_row(int64_t pc, int64_t P, int64_t rows) { return pc * rows / P; }

/* Rows of the band starting at flattened row r: up to the end of its image, of its chunk
   (r1) and the band height. */
static int64_t bww_band_rows(const fc_conv_desc *d, const fc_dw_geom *g, int64_t r, int64_t r1)
{
    int64_t m = d->oh - r % d->oh;
    if (m > r1 - r)
        m = r1 - r;
    return m < g->band ? m : g->band;
}

/* gw[k] (and gb[k]) = the sum of channel k's P chunk partials, in chunk order. */
static void finish_channel(const dw_bww_ctx *c, const char *part, int64_t k, int64_t P)
{
    const int64_t kk = c->d->kh * c->d->kw;
    if (c->d->dtype == FC_F64) {
        const double *pp = (const double *)part + k * P * (kk + 1);
        double *gw = (double *)c->gw + k * kk;
        for (int64_t tap = 0; tap <= kk; tap++) {
            double s = pp[tap];
            for (int64_t q = 1; q < P; q++)
                s += pp[q * (kk + 1) + tap];
            if (tap < kk)
                gw[tap] = s;
            else if (c->gb)
                ((double *)c->gb)[k] = s;
        }
    } else {
        const float *pp = (const float *)part + k * P * (kk + 1);
        float *gw = (float *)c->gw + k * kk;
        for (int64_t tap = 0; tap <= kk; tap++) {
            float s = pp[tap];
            for (int64_t q = 1; q < P; q++)
                s += pp[q * (kk + 1) + tap];
            if (tap < kk)
                gw[tap] = s;
            else if (c->gb)
                ((float *)c->gb)[k] = s;
        }
    }
}

/* Output channels [*k0, *k0 + *nk) of block b (blocks of p->mb consecutive outputs of one
   input channel; the last block of a channel may be shorter). */
static void bww_block(const dw_plan *p, int64_t b, int64_t *k0, int64_t *nk)
{
    const int64_t per = cdiv(p->mult, p->mb), q0 = (b % per) * p->mb;
    *k0 = (b / per) * p->mult + q0;
    *nk = p->mult - q0 < p->mb ? p->mult - q0 : p->mb;
}

static void bww_body(const dw_bww_ctx *c)
{
    const fc_conv_desc *d = c->d;
    const dw_plan *p = c->p;
    const fc_dw_geom *g = &p->g;
    const size_t es = fc_elem_size(d->dtype);
    const int t = d->dtype;
    const int64_t kk = d->kh * d->kw, mult = p->mult, P = p->chunks;
    const int64_t rows = d->n * d->oh, plane_out = d->oh * d->ow;
    char *tb = c->ws + p->off_thr + (size_t)thread_id() * p->thr_bytes;
    char *buf = tb + (size_t)g->org * es; /* logical origin of the band buffer */
    char *acc = tb + p->thr_acc;
    char *part = c->ws + p->off_part;
    dw_tag tag = {-1, -1, 0};
    const int64_t items = p->nblk * P;
    const int64_t ch = chunk_of(items, p->team);
#pragma omp for schedule(dynamic, ch)
    for (int64_t it = 0; it < items; it++) {
        int64_t k0, nk;
        bww_block(p, it / P, &k0, &nk);
        const int64_t cin = k0 / mult, r1 = chunk_row(it % P + 1, P, rows);
        memset(acc, 0, (size_t)(nk * (kk + 1)) * FC_DW_VSLOT);
        for (int64_t r = chunk_row(it % P, P, rows); r < r1;) {
            const int64_t n = r / d->oh, i0 = r % d->oh, nrows = bww_band_rows(d, g, r, r1);
            const int64_t tin = (nrows - 1) * g->sh + (g->kh - 1) * g->dh + 1;
            /* The band to prefetch: with one chunk per block, the same band of the next
               block of this thread's chunk (a whole item ahead); else the next band this
               thread runs (of this item, or of the next item of its chunk). */
            int64_t it2 = it, r2 = r + nrows;
            if (P == 1)
                it2 = it + 1, r2 = r;
            else if (r2 >= r1)
                it2 = it + 1, r2 = chunk_row(it2 % P, P, rows);
            fc_dw_pf pf = {{NULL, NULL}, {0, 0}};
            if (it2 < items && it2 / ch == it / ch) {
                int64_t k2, nk2;
                bww_block(p, it2 / P, &k2, &nk2);
                const int64_t n2 = r2 / d->oh, j0 = r2 % d->oh;
                const int64_t m2 = bww_band_rows(d, g, r2, chunk_row(it2 % P + 1, P, rows));
                pf_range(g, c->x + (size_t)((n2 * d->c_in + k2 / mult) * d->h * d->w) * es,
                         j0 * g->sh, (m2 - 1) * g->sh + (g->kh - 1) * g->dh + 1, es, &pf.p[0],
                         &pf.bytes[0]);
                /* the block's planes are one range when the band is whole planes; else
                   the first channel's rows (the kernels fetch the others' ahead) */
                pf.p[1] = c->gy + (size_t)((n2 * d->c_out + k2) * plane_out + j0 * d->ow) * es;
                pf.bytes[1] = (m2 == d->oh ? nk2 * plane_out : m2 * d->ow) * (int64_t)es;
            }
            const int has_pf = pf.bytes[0] || pf.bytes[1];
            c->ops->copy[t](g, c->x + (size_t)((n * d->c_in + cin) * d->h * d->w) * es, buf,
                            i0 * g->sh, tin, tag_data_only(&tag, i0 * g->sh, tin, 0),
                            has_pf ? &pf_none : NULL);
            c->ops->bww[t](g, buf, c->gy + (size_t)((n * d->c_out + k0) * plane_out + i0 * d->ow) * es,
                           plane_out, nk, nrows, acc, has_pf ? &pf : NULL);
            r += nrows;
        }
        for (int64_t q = 0; q < nk; q++) {
            const int64_t k = k0 + q;
            c->ops->reduce[t](g, acc + (size_t)(q * (kk + 1)) * FC_DW_VSLOT,
                              part + (size_t)((k * P + it % P) * (kk + 1)) * es);
            if (P == 1) /* the item is the whole channel: its sums are the result */
                finish_channel(c, part, k, 1);
        }
    }
    if (P == 1)
        return;
    /* implicit barrier: all chunk partials are written */
#pragma omp for schedule(static)
    for (int64_t k = 0; k < d->c_out; k++)
        finish_channel(c, part, k, P);
}

void fc_depthwise_bwd_weights(const fc_conv_desc *d, const void *gy, const void *x, void *gw,
                              void *gb, void *ws)
{
    dw_plan p;
    make_plan(d, FC_BWD_WEIGHTS, &p);
    plan_tables(d, &p, ws);
    dw_bww_ctx c = {d, &p, dw_ops(), (const char *)gy, (const char *)x, (char *)gw, (char *)gb,
                    (char *)ws};
    if (p.team > 1) {
#pragma omp parallel num_threads(p.team)
        bww_body(&c);
    } else {
        bww_body(&c);
    }
}

/* ---- the table entry ------------------------------------------------------------------ */

static const char *depthwise_rejects(const fc_conv_desc *d, int pass)
{
    if (d->groups != d->c_in)
        return "depthwise needs groups == C_in";
    return fc_depthwise_accepts(d, pass) ? NULL : "depthwise does not take this shape (see depthwise.c)";
}

/* The kernels skip the padding (fwd, bwd_weights) or multiply by inserted zeros without
   the definition's 0 * w terms for w = inf (bwd_data): not exact on non-finite weights or
   grad_y -- in fwd and bwd_weights only when the problem is padded (every product of an
   unpadded one is the definition's; tests/test_depthwise.py checks it). */
const fc_conv_impl fc_impl_depthwise = {
    FC_ALGO_DEPTHWISE, "depthwise", "depthwise", 0,
    {FC_OPND_1 | FC_OPND_IF_PADDED, FC_OPND_1, FC_OPND_0 | FC_OPND_IF_PADDED},
    depthwise_rejects, fc_depthwise_workspace_size, fc_depthwise_fwd, fc_depthwise_bwd_data,
    fc_depthwise_bwd_weights,
};
