/* implicit_pack_wt.c: W^T for the forward's tiles (and an input gradient's phases): the
   weights of vl filters at a time transposed in registers by the ISA's gather_wt into rows
   of lanes, one row per tap in the forward's tap order; returns whether they are finite */
#include <string.h>

#include "implicit_driver.h"

/* Source elements a gather_wt call takes (its table is on the stack). */
#define PACK_MAX_TAPS 64

/* The W^T row (in lanes of width) of tap t of a flipped (bwd_data phase) problem, less its
   channel's part: the forward's tap order (l*cg + c)*KW + m, build_offsets'. */
static int64_t flip_row(const iplan *p, int64_t t, int64_t width)
{
    return (t / p->kw * p->cg * p->kw + t % p->kw) * width;
}

/* The table of source elements [e0, e0 + n) of a gather_wt call, for runs that start at
   channel c of each filter: the W^T row, less c's part, of the tap that reads element e, or
   -1 for none. Not flipped, element e is tap e (channel c + e / KK, kernel tap e % KK); its
   row is (l*cg + k)*KW + m. flip (one channel a run): element e is the weight's tap e, read
   by the tap t with p->tap_of[t] == e, if any (a phase problem takes some of the taps). */
static void wt_tables(const iplan *p, int flip, int64_t e0, int64_t n, int64_t width, int64_t *drow)
{
    for (int64_t i = 0; i < n; i++) {
        const int64_t t = e0 + i, k = t / p->KK, l = t % p->KK / p->kw, m = t % p->kw;
        drow[i] = flip ? -1 : ((l * p->cg + k) * p->kw + m) * width;
    }
    if (!flip)
        return;
    for (int64_t t = 0; t < p->KK; t++) {
        const int64_t e = p->tap_of[t];
        if (e >= e0 && e < e0 + n)
            drow[e - e0] = flip_row(p, t, width);
    }
}

/* The filters of lanes [j0, j0 + vl) of a block starting at channel c0 (lane j: channel
   c0 + j / G of group gt*G + j % G) at their channel 0, NULL past kg; flip: a bwd_data
   problem's, the original weight's input channel read transposed. */
static void lane_filters(const iplan *p, const char *w, size_t es, int flip, int64_t gt, int64_t c0, int64_t j0,
                         const void **f)
{
    for (int64_t i = 0; i < p->kr->vl; i++) {
        const int64_t j = j0 + i, ch = c0 + j / p->G, g = gt * p->G + j % p->G;
        f[i] = ch >= p->kg ? NULL
               : w + (size_t)(flip ? (g * p->cg * p->kg + ch) * p->w_kk : (g * p->kg + ch) * p->cg * p->KK) * es;
    }
}

/* W^T of tile gt (groups gt*G ..), lanes [c0, c0 + width), for one block: wt[p*width + j] =
   W(g, ch, p) with lane j = channel ch = c0 + j / G of group g = gt*G + j % G, zero for
   channels past kg. flip: w is the original weight of a bwd_data problem (a phase problem),
   read transposed (its input channels are our output channels), tap t from the weight's
   tap p->tap_of[t] (for unit strides: rotated by 180 degrees); tap t goes to row
   (l*cg + c)*KW + m, the forward's tap order (build_offsets).
   Through the ISA's gather_wt: vl lanes (filters) at a time, a register transpose of their
   taps (the element-by-element copy took 39 % of a 512-channel 7x7 forward at batch 1). A
   filter holds its channels' taps one after another (not so a bwd_data problem's, read
   transposed), so a run takes as many channels as PACK_MAX_TAPS elements hold and each
   filter is read in runs of up to 64 elements, not of KK (36 bytes for 3x3); one call takes
   a lane block's runs (a bwd_data problem's: one channel each, cstep apart), and filters of
   more than PACK_MAX_TAPS taps go a channel at a time in windows. Returns whether the
   weights read are all finite. */
static int pack_wt(const iplan *p, const char *w, size_t es, int flip, int64_t gt, int64_t c0, int64_t width,
                   char *wt)
{
    const int64_t KW = p->kw, KK = p->KK, vl = p->kr->vl;
    const int64_t cc = flip || KK > PACK_MAX_TAPS ? 1 : fc_min64(p->cg, PACK_MAX_TAPS / KK);
    const int64_t run = flip ? p->w_kk : cc * KK; /* elements of a full run */
    const int64_t cstep = flip ? p->kg * p->w_kk : KK; /* elements to a filter's next channel */
    int64_t drow[PACK_MAX_TAPS], dstep[PACK_MAX_TAPS];
    for (int64_t e = 0; e < PACK_MAX_TAPS; e++) /* every element: a run is cc channels */
        dstep[e] = cc * KW * width;
    if (run <= PACK_MAX_TAPS) /* one window: the table does not change */
        wt_tables(p, flip, 0, run, width, drow);
    int finite = 1;
    if (flip && p->w_kk == 1 && p->G == 1) {
        /* a 1x1 input gradient: lane j's one tap of channel c is w[c*cstep + c0 + j] (group
           gt's block), so a run's lanes lie side by side and W^T's rows are rows of w: copied,
           not transposed (gather_wt took them one element a lane: 1.4 ms of a 2048 -> 512
           input gradient at 7x7, 8.5 for the rest) */
        const int64_t lanes = fc_max64(0, fc_min64(width, p->kg - c0));
        const char *src = w + (size_t)(gt * p->cg * p->kg + c0) * es;
        for (int64_t c = 0; c < p->cg; c++) {
            char *row = wt + (size_t)(c * width) * es;
            memcpy(row, src + (size_t)(c * cstep) * es, (size_t)lanes * es);
            memset(row + (size_t)lanes * es, 0, (size_t)(width - lanes) * es);
        }
        return fc_all_finite(wt, p->cg * width, es == sizeof(double) ? FC_F64 : FC_F32, 1);
    }
    const void *f[16], *fw[16]; /* lane i's filter at channel 0; at the call's first element */
    /* lanes outer: each lane's filter is then read front to back, one stream per lane */
    for (int64_t j0 = 0; j0 < width; j0 += vl) {
        lane_filters(p, w, es, flip, gt, c0, j0, f);
        char *dst = wt + (size_t)j0 * es;
        if (run <= PACK_MAX_TAPS) { /* the full runs in one call, then the channels left */
            const int64_t full = p->cg / cc, rest = p->cg % cc;
            finite &= p->kr->gather_wt(f, run, full, cc * cstep, dst, dstep, drow);
            for (int64_t i = 0; i < vl && rest > 0; i++)
                fw[i] = f[i] ? (const char *)f[i] + (size_t)(full * cc * cstep) * es : NULL;
            if (rest > 0)
                finite &= p->kr->gather_wt(fw, rest * KK, 1, 0, dst + (size_t)(full * cc * KW * width) * es, dstep, drow);
            continue;
        }
        for (int64_t c = 0; c < p->cg; c++) /* a channel at a time, in windows of taps */
            for (int64_t e0 = 0; e0 < run; e0 += PACK_MAX_TAPS) {
                const int64_t ne = fc_min64(PACK_MAX_TAPS, run - e0);
                wt_tables(p, flip, e0, ne, width, drow);
                for (int64_t i = 0; i < vl; i++)
                    fw[i] = f[i] ? (const char *)f[i] + (size_t)(c * cstep + e0) * es : NULL;
                finite &= p->kr->gather_wt(fw, ne, 1, 0, dst + (size_t)(c * KW * width) * es, dstep, drow);
            }
    }
    return finite;
}

/* Channel block cb of tile gt into wt (the plan's W^T: tiles of kv*vl lanes, K rows each);
   whether its weights are all finite. */
int implicit_pack_block(int dtype, const iplan *p, const void *w, int flip, int64_t gt, int64_t cb, char *wt)
{
    const size_t es = fc_elem_size(dtype);
    int64_t v0, nv;
    block_vectors(p, cb, &v0, &nv);
    const int64_t c0 = v0 * p->kr->vl, width = nv * p->kr->vl;
    char *dst = wt + (size_t)((gt * p->kv * p->kr->vl + c0) * p->K) * es;
    return pack_wt(p, (const char *)w, es, flip, gt, c0, width, dst);
}

/* Channel block cb of tile gt of every phase's W^T (wt[q]: phase q's, laid out as pack_block
   lays one problem's) in one pass over the weights: each weight tap is in one phase, so a
   lane block's runs (one output channel's taps) are read and transposed once, each element
   stored to its phase's row (dstep: that phase's row step per channel). Packed phase by
   phase, the weights were read and transposed once per phase: 7 % of a 256 -> 512 stride-2
   layer's input gradient at batch 8 (4 phases of its 4.7 MB of weights). Kernels of more
   taps than PACK_MAX_TAPS go phase by phase (pack_block). Whether the weights read are all
   finite. */
int implicit_pack_phases_block(int dtype, const phase_set *S, char *const *wt, const void *w, int64_t gt, int64_t cb)
{
    const iplan *p0 = &S->p[0];
    const size_t es = fc_elem_size(dtype);
    const int64_t vl = p0->kr->vl, span = p0->w_kk;
    int finite = 1;
    if (span > PACK_MAX_TAPS) {
        for (int q = 0; q < S->n; q++)
            finite &= implicit_pack_block(dtype, &S->p[q], w, 1, gt, cb, wt[q]);
        return finite;
    }
    int64_t v0, nv;
    block_vectors(p0, cb, &v0, &nv);
    const int64_t c0 = v0 * vl, width = nv * vl;
    char *base = wt[0] + (size_t)((gt * p0->kv * vl + c0) * p0->K) * es; /* phase 0's block */
    int64_t drow[PACK_MAX_TAPS], dstep[PACK_MAX_TAPS];
    for (int64_t e = 0; e < span; e++)
        drow[e] = -1, dstep[e] = 0;
    for (int q = 0; q < S->n; q++) { /* as wt_tables (flip), relative to phase 0's block */
        const iplan *p = &S->p[q];
        const int64_t rel = (int64_t)((wt[q] + (size_t)((gt * p->kv * vl + c0) * p->K) * es) - base) / (int64_t)es;
        for (int64_t t = 0; t < p->KK; t++) {
            drow[p->tap_of[t]] = rel + flip_row(p, t, width);
            dstep[p->tap_of[t]] = p->kw * width;
        }
    }
    const void *f[16];
    for (int64_t j0 = 0; j0 < width; j0 += vl) {
        lane_filters(p0, (const char *)w, es, 1, gt, c0, j0, f);
        finite &= p0->kr->gather_wt(f, span, p0->cg, p0->kg * span, base + (size_t)j0 * es, dstep, drow);
    }
    return finite;
}
