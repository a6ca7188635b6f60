/* implicit_bwd_data.c: the implicit-GEMM input gradient: for unit strides the forward of
   grad_y with the kernel rotated (run_fwd); strided, every stride phase's forward in one
   parallel region, merged into whole gx rows (run_phases) */
#include <string.h>

#include "implicit_driver.h"

/* gx rows (i0 + i)*sh + a, i < rows, of channels [c0, c0 + count) of image n, from the output
   tiles of the column phases b of row phase a: slot[b] + (c*rows + i)*ow[b] (ow[b] columns;
   zeros where no tap reaches the phase). Whole rows are written at once, so each gx
   line is written once (scattered phase by phase, the lines the column phases share were
   written sw times: at 2 threads 1.6x the 1-thread speed against explicit im2col's 2.0x).
   Then, with a mask (relu_out, gx's layout), the ReLU's backward on those rows. */
static void merge_rows(const fc_conv_desc *d, const fc_implicit_kernels *kr, char *const *slot, const int64_t *ow,
                       int64_t a, char *gx, int64_t n, int64_t c0, int64_t count, int64_t i0, int64_t rows,
                       const char *mask)
{
    const size_t es = fc_elem_size(d->dtype);
    const int64_t sw = d->stride_w, W = d->w, full = W / sw; /* columns every phase has */
    const int vector = sw == 2 || ((sw == 4 || sw == 8) && W % sw == 0); /* kr->interleave's cases */
    if (W % sw == 0 && copy_rows_grp_takes(kr, sw, 1)) { /* sw column phases as sw groups */
        /* every phase full, its slots equally apart: a channel's rows in one call (per row, the
           call and loop took a third of a stride-2 grouped input gradient, 14-column phases) */
        const int64_t gstride = (int64_t)((slot[1] - slot[0]) / (ptrdiff_t)es);
        for (int64_t c = 0; c < count; c++) {
            const size_t row = (size_t)(((n * d->c_in + c0 + c) * d->h + i0 * d->stride_h + a) * W);
            kr->copy_rows_grp(gx + row * es, d->stride_h * W, slot[0] + (size_t)(c * rows * full) * es, full, 1,
                              gstride, sw, rows, 0, full, full, 0);
            for (int64_t i = 0; i < rows && mask; i++)
                fc_relu_mask_rows(d->dtype, gx + (row + (size_t)(i * d->stride_h * W)) * es,
                                  mask + (row + (size_t)(i * d->stride_h * W)) * es, 0, 1, W);
        }
        return;
    }
    for (int64_t c = 0; c < count; c++)
        for (int64_t i = 0; i < rows; i++) {
            const size_t row = (size_t)(((n * d->c_in + c0 + c) * d->h + (i0 + i) * d->stride_h + a) * W);
            char *dst = gx + row * es;
            const char *src0 = slot[0] + (size_t)((c * rows + i) * ow[0]) * es;
            if (vector && full > 0) {
                const char *src1 = slot[1] + (size_t)((c * rows + i) * ow[1]) * es;
                kr->interleave(dst, src0, (int64_t)((src1 - src0) / (ptrdiff_t)es), full, 1, sw);
            }
            for (int64_t j = vector ? full * sw : 0; j < W; j++) {
                const int64_t b = j % sw;
                memcpy(dst + (size_t)j * es, slot[b] + (size_t)((c * rows + i) * ow[b] + j / sw) * es, es);
            }
            if (mask)
                fc_relu_mask_rows(d->dtype, dst, mask + row * es, 0, 1, W);
        }
}

/* run_phases' work after the packing, on the region's threads (orphaned worksharing): the
   items (image, tile of groups, tile of phase rows), each phase's forward into its column
   phase's slot, merged into gx rows. */
static void phase_items(const fc_conv_desc *d, const phase_set *S, const char *gy, char *const *wt,
                        int64_t *const *off, char *gx, char *thread0, int64_t items, const char *mask)
{
    const size_t es = fc_elem_size(d->dtype);
    const iplan *p0 = &S->p[0];
    const int64_t tgroups = d->groups / p0->G, lanes = p0->kv * p0->kr->vl;
    char *band = thread0 + (size_t)THREAD_ID() * S->per_thread;
    align_memo memo[MAX_PHASES] = {{NULL, 0, 0, 0}}; /* one per phase */
    char *slot[MAX_PHASES];
    int64_t ow[MAX_PHASES];
    for (int64_t b = 0; b < d->stride_w; b++) {
        slot[b] = band + S->band + (size_t)b * S->slot;
        ow[b] = (d->w - b + d->stride_w - 1) / d->stride_w;
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; it++) {
        const int64_t n = it / (tgroups * S->tiles), gt = (it / S->tiles) % tgroups, i0 = it % S->tiles * S->rows;
        const int64_t g = gt * p0->G; /* the tile's first group */
        for (int q = 0; q < S->n;) { /* the phases of one row phase a, then their rows merged */
            const int64_t a = S->a[q], oh = S->t[q].oh;
            int q1 = q;
            while (q1 < S->n && S->a[q1] == a)
                q1++;
            if (i0 >= oh) {
                q = q1;
                continue;
            }
            const int64_t rows = fc_min64(S->rows, oh - i0), count = p0->G * p0->kg;
            for (int64_t b = 0, r = q; b < d->stride_w; b++) {
                if (r < q1 && S->b[r] == b) {
                    const fc_conv_desc *t = &S->t[r];
                    const iplan *p = &S->p[r];
                    implicit_copy_band(t, p, gy + (size_t)((n * t->c_in + g * p->cg) * t->h * t->w) * es, i0, rows, 0,
                              p->cg, band);
                    /* skip = 1: with a non-finite weight run_phases declines */
                    implicit_fwd_tile(t, p, wt[r] + (size_t)(gt * lanes * p->K) * es, NULL, off[r], band, p->wp, NULL, slot[b],
                             rows * t->ow, i0, rows, 0, p->cb, 1, 0, &memo[r]);
                    r++;
                } else { /* no tap reaches this column phase */
                    memset(slot[b], 0, (size_t)(count * rows * ow[b]) * es);
                }
            }
            merge_rows(d, p0->kr, slot, ow, a, gx, n, g * p0->kg, count, i0, rows, mask);
            q = q1;
        }
    }
}

/* A strided input gradient: every phase with taps (plan_phases) in one parallel region, work
   items of (image, tile of groups, tile of phase rows) running each phase's forward on their
   rows into a per-thread tile per column phase, merged into whole gx rows (merge_rows); the
   phases no tap reaches are zeroed (after, for row phases none reaches at all). Returns 1,
   having written nothing of gx, where the packing finds a NaN or inf weight
   (bwd_data_checked). */
static int run_phases(const fc_conv_desc *d, const void *gy_, const void *w_, const void *mask, void *gx_,
                      void *ws)
{
    phase_set S;
    implicit_plan_phases(d, &S);
    const size_t es = fc_elem_size(d->dtype);
    const char *gy = (const char *)gy_;
    char *gx = (char *)gx_, *cur = (char *)ws;
    int64_t *off[MAX_PHASES];
    char *wt[MAX_PHASES];
    for (int q = 0; q < S.n; q++, cur += tap_map_bytes(d)) {
        implicit_phase_problem(d, S.a[q], S.b[q], &S.t[q], (int64_t *)cur);
        S.p[q].tap_of = (const int64_t *)cur;
        S.p[q].w_kk = d->kh * d->kw;
    }
    for (int q = 0; q < S.n; q++) {
        off[q] = (int64_t *)cur;
        wt[q] = cur + S.p[q].off_bytes;
        cur += S.shared[q];
        implicit_build_offsets(&S.t[q], &S.p[q], 1, 0, off[q]);
    }
    char *thread0 = cur;
    int finite = 1;
    if (S.n > 0) {
        const iplan *p0 = &S.p[0];
        const int64_t tgroups = d->groups / p0->G, items = d->n * tgroups * S.tiles;
#pragma omp parallel num_threads(p0->nt)
        {
            const int64_t cbs = p0->cb; /* channel blocks, the same in every phase */
#pragma omp for schedule(dynamic, 1) reduction(&& : finite)
            for (int64_t gc = 0; gc < tgroups * cbs; gc++) /* the phases' W^T, block by block */
                finite = implicit_pack_phases_block(d->dtype, &S, wt, w_, gc / cbs, gc % cbs) && finite;
            /* (the loop's barrier: every thread sees the reduced flag) a NaN or inf weight:
               decline, with nothing of gx written */
            if (finite)
                phase_items(d, &S, gy, wt, off, gx, thread0, items, (const char *)mask);
        }
        if (!finite)
            return 1;
    }
    /* rows of a row phase no tap reaches: zero (merge_rows writes every other row, zeros in
       the column phases no tap reaches) */
    for (int64_t a = 0, q = 0; a < d->stride_h; a++) {
        if (q < S.n && S.a[q] == a) {
            while (q < S.n && S.a[q] == a)
                q++;
            continue;
        }
#pragma omp parallel for num_threads(fc_team_size(d)) schedule(static)
        for (int64_t r = 0; r < d->n * d->c_in; r++)
            for (int64_t i = a; i < d->h; i += d->stride_h)
                memset(gx + (size_t)((r * d->h + i) * d->w) * es, 0, (size_t)d->w * es);
    }
    return 0;
}

/* The input gradient (through the ReLU whose output is relu_out, unless NULL) as forwards of
   grad_y (phase_problem): for unit strides the one phase, written straight into gx;
   strided, run_phases. FC_DECLINED, having computed nothing, where w holds a NaN or inf
   (found by the packing; see the table entry). */
int implicit_bwd_data_checked(const fc_conv_desc *d, const void *gy, const void *w, const void *relu_out,
                                     void *gx, void *ws)
{
    int declined;
    if (strided(d)) {
        declined = run_phases(d, gy, w, relu_out, gx, ws);
    } else {
        fc_conv_desc t;
        implicit_phase_problem(d, 0, 0, &t, (int64_t *)ws);
        declined = implicit_run_fwd(&t, gy, w, (const int64_t *)ws, d->kh * d->kw, NULL, 0, relu_out, gx,
                           (char *)ws + tap_map_bytes(d), 1);
    }
    return declined ? FC_DECLINED : 0;
}
