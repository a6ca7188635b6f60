/* implicit_fwd.c: the implicit-GEMM forward (and an input gradient's, through
   run_fwd): W^T packed once a call, then work items of (image, tile of groups, tile of
   rows, channel part), each a band (or the image in place) and fwd_tile's pixel groups
   against the packed channel blocks */
#include <string.h>

#include "implicit_driver.h"

#include "cpu_info.h"

/* The offset table of in-place tiles (run_fwd's second one where some tiles copy). */
static const int64_t *offsets_in_place(const iplan *p, const int64_t *off)
{
    return p->in_place == BAND_IN_PLACE_SKIPPING ? off + p->off_bytes / 2 / sizeof(int64_t) : off;
}

/* The output channels of blocks [cb0, cb1): [*c0, *c1) of the tile's lanes (all G*kg of them
   for G > 1, one block). */
static void block_channels(const iplan *p, int64_t cb0, int64_t cb1, int64_t *c0, int64_t *c1)
{
    int64_t v0, v1, nv;
    block_vectors(p, cb0, &v0, &nv);
    block_vectors(p, cb1 - 1, &v1, &nv);
    *c0 = p->G > 1 ? 0 : v0 * p->kr->vl;
    *c1 = p->G > 1 ? p->G * p->kg : fc_min64(p->kg, (v1 + nv) * p->kr->vl);
}

/* Kernel rows [*lo, *hi) that read inside the image for some output row in [first, last]
   (all of them when skipping is off; *lo == *hi when none does). Input row oh*sh + l*dh -
   pad_top is inside for l in [ceil((pad_top - oh*sh) / dh), floor((H-1 + pad_top - oh*sh) / dh)];
   both ends fall as oh grows, so the union over the rows runs from the last row's lower end
   to the first row's upper end. */
static void valid_kernel_rows(const fc_conv_desc *d, int64_t first, int64_t last, int skip, int64_t *lo,
                              int64_t *hi)
{
    *lo = 0;
    *hi = d->kh;
    if (!skip)
        return;
    const int64_t top = d->pad_top - last * d->stride_h;
    const int64_t bottom = d->h - 1 + d->pad_top - first * d->stride_h;
    if (top <= 0 && bottom >= (d->kh - 1) * d->dil_h)
        return; /* all rows, as for most groups: no divisions */
    *lo = top > 0 ? fc_min64(d->kh, (top + d->dil_h - 1) / d->dil_h) : 0;
    *hi = bottom >= 0 ? fc_min64(d->kh, bottom / d->dil_h + 1) : 0;
    if (*hi < *lo)
        *hi = *lo;
}

/* Pixel groups (of MR) per chunk of fwd_tile: every channel block's packed weights are read
   once per chunk rather than once per group. The whole W^T of a large layer (VGG-sized,
   256 -> 256 channels 3x3: 2.4 MB) does not fit L2, so with one group per pass it streamed
   from L3 at ~16 bytes per cycle at two FMAs a cycle: more than a mesh L3 delivers to a core
   (issue 12's Xeon ran such layers at 60 % of peak). With 8 groups (64 pixels) the weights
   come at ~2 bytes a cycle; the chunk's band window stays in L1/L2. Results are unchanged:
   each output is still one kernel call's sum over all of K. Measured on Zen 5 (fast L3),
   interleaved runs against one group per pass: VGG-sized 1.05x at 1 and 2 threads,
   resnet_3x3 and mnist_c2 1.02-1.03x, the small layers within +-1 %; 16 groups no better. */
#define FWD_CHUNK_GROUPS 8

/* The fewest pixels a narrow group is counted as: its k x NV accumulators are the kernel's
   independent FMA chains, and FMA pipes x 4 cycles of latency of them keep the pipes busy
   (fewer wait on the latency). AVX-512 on Zen 4 (one 512-bit pipe): 2 pixels of 2 vectors;
   with two pipes (Xeon, Zen 5) or 256-bit vectors (two pipes on every AVX2 CPU): 4. */
static int64_t narrow_min_pixels(const fc_implicit_kernels *kr, int dtype)
{
    const int64_t bits = kr->vl * (int64_t)fc_elem_size(dtype) * 8, nv = kr->nr / kr->vl;
    const int64_t pipes = bits == 512 ? fc_max64(1, fc_cpu_info_get()->fma512_ports) : 2;
    return fc_min64(kr->mr, (4 * pipes + nv - 1) / nv);
}

/* The FMA cycles of a group, per channel, in pixel-taps: npx pixels (a narrow group counted
   as at least min_px, narrow_min_pixels) times KW taps over kernel rows [lo, hi), less the
   edge taps e leaves out (per side: 1, 3 or 2 by its kind; 2 or 1 of a one-pixel group). */
static double group_cost(const fc_conv_desc *d, int64_t min_px, int64_t npx, int64_t lo, int64_t hi, int e)
{
    const int kind = e >> 2, sides = (e & 1) + (e >> 1 & 1);
    const int64_t per_side = kind == 0 ? 1 : fc_min64(2, npx) + (kind == 1);
    return (double)(hi - lo) * (double)(fc_max64(npx, min_px) * d->kw - sides * per_side);
}

/* Whether a tile's pixel groups should start at every output row rather than run on across
   rows. Run on, every group but the last is full; row-aligned, a row ends in a narrow group
   (fwd[0][v][k-1], k < MR) but a group then lies in one row, so rows that read padding rows
   leave those kernel rows out whole (across rows, a group takes the union of its rows' kernel rows), and
   every row's first and last pixel start and end a group, whose edge columns' padding taps
   are left out (fwd[e]). At 7x7 with padding 1 that is 2 of 7 rows a third short, and the
   49 pixels no longer end in a group of one: 8 x 512 -> 512 channels 19.3 -> 16.5 ms on Zen 4.
   Decided by counting the FMAs of both ways (group_cost); the row-aligned way must save 1 %
   (with the edge taps in the count, 28-wide rows save 1.2 %: 0.4-1.1 % faster on Zen 4
   aligned, AVX-512 and AVX2; 27-wide ones, which are not, measured the same either way). */
static int rows_aligned(const fc_conv_desc *d, const iplan *p, int64_t i0, int64_t rows, int skip, int cols)
{
    const int64_t MR = p->kr->mr, ow = d->ow, pixels = rows * ow;
    if (ow % MR == 0)
        return 0; /* the same groups either way */
    const int64_t min_px = narrow_min_pixels(p->kr, d->dtype);
    double run = 0, row = 0;
    int64_t lo, hi;
    for (int64_t P0 = 0; P0 < pixels; P0 += MR) { /* run on: groups of MR, the last short */
        const int64_t n = fc_min64(MR, pixels - P0);
        valid_kernel_rows(d, i0 + P0 / ow, i0 + (P0 + n - 1) / ow, skip, &lo, &hi);
        run += group_cost(d, min_px, n, lo, hi, group_edge(cols, ow, P0 % ow, (P0 + n - 1) % ow));
    }
    for (int64_t r = 0; r < rows; r++) {
        valid_kernel_rows(d, i0 + r, i0 + r, skip, &lo, &hi);
        for (int64_t j = 0; j < ow; j += MR) {
            const int64_t n = fc_min64(MR, ow - j);
            row += group_cost(d, min_px, n, lo, hi, group_edge(cols, ow, j, j + n - 1));
        }
    }
    return row < 0.99 * run;
}

static int tile_rows_aligned(align_memo *m, const fc_conv_desc *d, const iplan *p, int64_t i0, int64_t rows,
                             int skip, int cols)
{
    if (m->d != d || m->i0 != i0 || m->rows != rows) {
        m->d = d, m->i0 = i0, m->rows = rows;
        m->aligned = narrow_kernels(p) && rows_aligned(d, p, i0, rows, skip, cols);
    }
    return m->aligned;
}

/* Lines of output pixels [P0, P1) of channels [c_lo, c_hi), for writing. */
static void prefetch_out(const char *y_t, int64_t y_plane, int64_t c_lo, int64_t c_hi, int64_t P0, int64_t P1,
                         size_t es)
{
    for (int64_t c = c_lo; c < c_hi; c++) {
        const char *row = y_t + (size_t)(c * y_plane + P0) * es;
        for (size_t o = 0; o < (size_t)(P1 - P0) * es; o += 64)
            __builtin_prefetch(row + o, 1);
    }
}

/* Lines of image rows [r0, r1) (clamped to the image) of channels [c0, c1) of img, for
   reading. Where the kernels read the image in place (band_in_place), the rows a chunk of
   pixels reads first: the band copy had streamed them in ahead of the kernels, whose
   broadcasts then waited on them (the CIFAR net's 32 -> 32 3x3 layer: no faster in place
   than copied until fetched ahead). */
static void prefetch_in(const fc_conv_desc *d, const char *img, int64_t c0, int64_t c1, int64_t r0, int64_t r1,
                        size_t es)
{
    r0 = fc_max64(r0, 0);
    r1 = fc_min64(r1, d->h);
    for (int64_t c = c0; c < c1; c++)
        for (int64_t r = r0; r < r1; r++) {
            const uintptr_t a = (uintptr_t)(img + (size_t)((c * d->h + r) * d->w) * es);
            for (uintptr_t line = a & ~(uintptr_t)63; line < a + (uintptr_t)d->w * es; line += 64)
                __builtin_prefetch((const void *)line, 0, 2);
        }
}

/* One tile: the rows*OW output pixels in groups of MR (the micro-kernel's), running on across
   rows or, where rows_aligned says so, starting at every row; each group against channel
   blocks [cb0, cb1), FWD_CHUNK_GROUPS groups at a time. Pixel P of the tile (row r = P / OW,
   column j = P % OW) is band element (r*rstep*wp + j*cstep)*G (steps of the stride in an
   unphased band); a group of fewer than MR pixels takes a narrow kernel (fwd[e][v][k-1],
   fwd_grp[lg][v][e][k-1]; a grouped tile without them, narrow_kernels, the full one; its
   unused px slots repeat the first pixel).
   skip: the weights are finite, so taps that read only padding add exact zeros and are left
   out: whole kernel rows (a tap range per pixel group: the union over its rows) and, for
   3-column kernels, the edge columns' taps of a group's first and last pixel where they
   start or end a row (fwd[e]). The partial sums of the other taps are bitwise the same
   (the accumulators start at +0), so tiling and thread count still do not matter.
   band: the copied band (rows wp wide), or the image read in place from row i0 (wp = W; img,
   non-NULL, the tile's image for prefetch_in, unit strides only). */
void implicit_fwd_tile(const fc_conv_desc *d, const iplan *p, const char *wt, const char *bias,
                     const int64_t *off, const char *band, int64_t wp, const char *img, char *y_t, int64_t y_plane,
                     int64_t i0, int64_t rows,
                     int64_t cb0, int64_t cb1, int skip, int relu, align_memo *memo)
{
    const size_t es = fc_elem_size(d->dtype);
    const int64_t MR = p->kr->mr, vl = p->kr->vl, pixels = rows * d->ow;
    const int64_t G = p->G;
    /* band rows and columns between neighbouring output pixels: 1 in phase planes */
    const int64_t rstep = p->unphased ? d->stride_h : 1, cstep = p->unphased ? d->stride_w : 1;
    /* G groups a tile: lane L (channel L / G of group L % G) is stored in its channel's row */
    int64_t lane_rows[64];
    for (int64_t L = 0; G > 1 && L < p->kv * vl; L++)
        lane_rows[L] = (L % G * p->kg + L / G) * y_plane;
    const int64_t row_taps = p->cg * p->kw; /* taps of one kernel row (build_offsets' order) */
    const void *px[FWD_CHUNK_GROUPS][8];
    int64_t g0[FWD_CHUNK_GROUPS], gk0[FWD_CHUNK_GROUPS], gkc[FWD_CHUNK_GROUPS], gn[FWD_CHUNK_GROUPS];
    int ge[FWD_CHUNK_GROUPS];
    const int cols = implicit_edge_columns(d, p, skip);
    const int aligned = tile_rows_aligned(memo, d, p, i0, rows, skip, cols);
    int64_t ch0, ch1; /* the channels of blocks [cb0, cb1) */
    block_channels(p, cb0, cb1, &ch0, &ch1);
    const int64_t nc = ch1 - ch0;
    int64_t r = 0, j = 0; /* of the next group's first pixel */
    for (int64_t C0 = 0, P0 = 0; C0 < pixels; C0 = P0) {
        int ng = 0;
        for (; P0 < pixels && ng < FWD_CHUNK_GROUPS; ng++) {
            const int64_t npx = fc_min64(MR, aligned ? d->ow - j : pixels - P0), r_first = r, j_first = j;
            int64_t r_last = r, j_last = j;
            for (int64_t t = 0; t < MR; t++) {
                if (t >= npx) {
                    px[ng][t] = px[ng][0];
                    continue;
                }
                px[ng][t] = band + (size_t)((r * rstep * wp + j * cstep) * G) * es;
                r_last = r, j_last = j;
                if (++j == d->ow) {
                    j = 0;
                    r++;
                }
            }
            int64_t lo, hi;
            valid_kernel_rows(d, i0 + r_first, i0 + r_last, skip, &lo, &hi);
            g0[ng] = P0, gn[ng] = npx, gk0[ng] = lo * row_taps, gkc[ng] = (hi - lo) * row_taps;
            ge[ng] = group_edge(cols, d->ow, j_first, j_last);
            P0 += npx;
        }
        /* The output lines of the chunk's pixels, in the blocks' channels, fetched before the
           kernels store into them: a layer's output rarely sits in cache, and each kernel's
           2 x 16 stores of half a line then waited on memory (read for ownership). ResNet's
           stem (K = 147) spent ~500 cycles per 2352-cycle kernel call outside its loop. The
           first chunk's at once; each next chunk's a slice of channels before each of this
           chunk's first-block kernels: all at once, the prefetches (128 lines a chunk)
           stalled on the full miss queue, 4 % of a layer of 4 channels a group (K = 36). */
        const int64_t C1 = P0, C2 = fc_min64(pixels, C1 + (C1 - C0)); /* this chunk's and the next's */
        if (C0 == 0)
            prefetch_out(y_t, y_plane, ch0, ch1, 0, C1, es);
        /* in place: the image rows this chunk reads, [in0, in1), and those the next chunk
           reads first, [in1, in2) (the first chunk's at once, the next's in slices; output
           row i reads image rows [i - pad_top, i + reach)) */
        const int64_t reach = (d->kh - 1) * d->dil_h + 1 - d->pad_top;
        const int64_t in0 = i0 - d->pad_top, in1 = i0 + (C1 - 1) / d->ow + reach;
        const int64_t in2 = i0 + (C2 - 1) / d->ow + reach;
        if (img && C0 == 0)
            prefetch_in(d, img, 0, p->cg, in0, in1, es);
        for (int64_t cb = cb0; cb < cb1; cb++) {
            int64_t v0, nv;
            block_vectors(p, cb, &v0, &nv);
            const int64_t c0 = v0 * vl, nch = fc_min64(nv * vl, p->kg - c0);
            const char *wcb = wt + (size_t)(c0 * p->K) * es, *bcb = bias ? bias + (size_t)c0 * es : NULL;
            if (G > 1) { /* one block: all of the G groups' lanes */
                const fc_implicit_fwd_grp_fn(*kernels)[8] = p->kr->fwd_grp[p->lg][nv];
                const int narrow = kernels[0][0] != NULL; /* (narrow_kernels) */
                for (int q = 0; q < ng; q++) {
                    if (C1 < pixels)
                        prefetch_out(y_t, y_plane, ch0 + q * nc / ng, ch0 + (q + 1) * nc / ng, C1, C2, es);
                    /* (a tile without narrow kernels: its last, short group computed whole) */
                    const fc_implicit_fwd_grp_fn kernel = narrow ? kernels[ge[q]][gn[q] - 1] : kernels[0][MR - 1];
                    kernel(gkc[q], wcb + (size_t)(gk0[q] * nv * vl) * es, px[q], off + gk0[q],
                           y_t + (size_t)g0[q] * es, lane_rows, gn[q], bcb, relu);
                }
                continue;
            }
            for (int q = 0; q < ng; q++) {
                if (cb == cb0 && C1 < pixels) {
                    prefetch_out(y_t, y_plane, ch0 + q * nc / ng, ch0 + (q + 1) * nc / ng, C1, C2, es);
                    if (img)
                        prefetch_in(d, img, q * p->cg / ng, (q + 1) * p->cg / ng, in1, in2, es);
                }
                p->kr->fwd[ge[q]][nv][gn[q] - 1](gkc[q], wcb + (size_t)(gk0[q] * nv * vl) * es, px[q],
                                                 off + gk0[q], y_t + (size_t)(c0 * y_plane + g0[q]) * es, y_plane,
                                                 gn[q], nch, bcb, relu);
            }
        }
    }
}

/* run_fwd's work after the packing, on the region's threads (orphaned worksharing): the
   bias padded to whole vectors, then the items (tile, channel part) of every image. */
static void fwd_items(const fc_conv_desc *d, const iplan *p, const char *x, const char *wt, const char *bias,
                      char *bias_pad, const int64_t *off, char *y, char *thread0, int64_t items, int skip, int relu,
                      const char *mask)
{
    const size_t es = fc_elem_size(d->dtype);
    const int64_t tgroups = d->groups / p->G, lanes = p->kv * p->kr->vl;
#pragma omp single
    if (bias) { /* padded to whole vectors: the kernels load it as vectors; lane order */
        memset(bias_pad, 0, p->bias_bytes);
        for (int64_t gt = 0; gt < tgroups; gt++)
            for (int64_t j = 0; j < lanes && j / p->G < p->kg; j++)
                memcpy(bias_pad + (size_t)(gt * lanes + j) * es,
                       bias + (size_t)((gt * p->G + j % p->G) * p->kg + j / p->G) * es, es);
    }
    char *band = thread0 + (size_t)THREAD_ID() * p->per_thread;
    align_memo memo = {NULL, 0, 0, 0};
    const int64_t *off_ip = offsets_in_place(p, off);
    const int cols = implicit_edge_columns(d, p, skip);
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; it++) {
        const int64_t part = it % p->cparts, tile = it / p->cparts; /* channel blocks of a tile */
        const int64_t n = tile / (tgroups * p->tiles), gt = (tile / p->tiles) % tgroups, t = tile % p->tiles;
        const int64_t g = gt * p->G; /* the tile's first group */
        const int64_t i0 = t * p->rows, rows = fc_min64(p->rows, d->oh - i0);
        const int64_t cb0 = part * p->cb / p->cparts, cb1 = (part + 1) * p->cb / p->cparts;
        const char *x_g = x + (size_t)((n * d->c_in + g * p->cg) * d->h * d->w) * es;
        /* the image read in place (band_in_place), or the tile's band copied */
        const int in_place = p->in_place == BAND_IN_PLACE ||
                             (p->in_place == BAND_IN_PLACE_SKIPPING && skip &&
                              (d->ow % p->kr->mr == 0 || tile_rows_aligned(&memo, d, p, i0, rows, skip, cols)));
        if (!in_place)
            implicit_copy_band(d, p, x_g, i0, rows, 0, p->cg, band);
        const char *wg = wt + (size_t)(gt * lanes * p->K) * es;
        const char *bg = bias ? bias_pad + (size_t)(gt * lanes) * es : NULL;
        const size_t y_off = (size_t)(((n * d->c_out + g * p->kg) * d->oh + i0) * d->ow) * es;
        const char *tile_band = in_place ? x_g + (size_t)(i0 * d->w) * es : band;
        implicit_fwd_tile(d, p, wg, bg, in_place ? off_ip : off, tile_band, in_place ? d->w : p->wp, in_place ? x_g : NULL,
                 y + y_off, d->oh * d->ow, i0, rows, cb0, cb1, skip, relu, &memo);
        if (mask) { /* the channels of blocks [cb0, cb1) */
            int64_t c0, c1;
            block_channels(p, cb0, cb1, &c0, &c1);
            const size_t m_off = y_off + (size_t)(c0 * d->oh * d->ow) * es;
            fc_relu_mask_rows(d->dtype, y + m_off, mask + m_off, d->oh * d->ow, c1 - c0, rows * d->ow);
        }
    }
}

/* The forward of problem d; tap_of (non-NULL): d is the phase problem of a unit-stride input
   gradient, w that layer's weight of w_kk taps a filter (pack_wt's flip); relu: the post-op,
   in the kernels' store; mask (nullable, y's layout): y = mask > 0 ? y : 0 on each tile once
   stored, in cache (an input gradient through a ReLU whose output is mask). decline: where
   the packing finds a NaN or inf weight, compute nothing and return 1 (an input gradient,
   bwd_data_checked); else 0. */
int implicit_run_fwd(const fc_conv_desc *d, const void *x_, const void *w_, const int64_t *tap_of, int64_t w_kk,
                   const void *bias_, int relu, const void *mask, void *y_, void *ws, int decline)
{
    iplan p;
    implicit_make_plan(d, FC_FWD, &p);
    p.tap_of = tap_of;
    if (tap_of)
        p.w_kk = w_kk;
    int64_t *off;
    char *wt, *thread0;
    implicit_carve(&p, ws, &off, &wt, &thread0);
    char *bias_pad = wt + p.apack_bytes;
    const char *x = (const char *)x_, *bias = (const char *)bias_;
    char *y = (char *)y_;
    const int64_t tgroups = d->groups / p.G; /* tiles of G groups across the channels */
    const int64_t items = d->n * tgroups * p.tiles * p.cparts;
    implicit_build_offsets(d, &p, 1, p.in_place == BAND_IN_PLACE, off);
    if (p.in_place == BAND_IN_PLACE_SKIPPING)
        implicit_build_offsets(d, &p, 1, 1, (int64_t *)offsets_in_place(&p, off));
    /* skip (fwd_tile): leave out the taps that read only padding rows, where the weights are
       finite (then those taps add exact zeros). The packing finds out; with a NaN or inf
       weight the forward computes every tap (0 * inf is NaN, as the definition has it). A
       bwd_data problem with such weights declines (its padding taps have no term in the
       definition, so computing them is not exact either). */
    int skip = 1;

#pragma omp parallel num_threads(p.nt)
    {
#pragma omp for schedule(static) reduction(&& : skip)
        for (int64_t gb = 0; gb < tgroups * p.cb; gb++)
            skip = implicit_pack_block(d->dtype, &p, w_, tap_of != NULL, gb / p.cb, gb % p.cb, wt) && skip;
        /* (the loop's barrier: every thread sees the reduced skip and takes the same way) */
        if (skip || !decline)
            fwd_items(d, &p, x, wt, bias, bias_pad, off, y, thread0, items, skip, relu, (const char *)mask);
    }
    return decline && !skip;
}
