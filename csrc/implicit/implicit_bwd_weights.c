/* implicit_bwd_weights.c: the implicit-GEMM weight gradient: dW^T = sum over pixels of
   band x grad_y^T, in batch chunks added in chunk order, so the sums do not depend on the
   thread count */
#include <string.h>

#include "implicit_driver.h"

/* Channels per store item of the weight gradient: whole register blocks of the transpose. */
#define STORE_DW_CHANNELS 16

#define SUM_BLOCK 4096 /* elements a work item of the chunk reduction adds */

void implicit_bwd_weights(const fc_conv_desc *d, const void *gy_, const void *x_, void *gw_, void *gb_,
                             void *ws)
{
    iplan p;
    implicit_make_plan(d, FC_BWD_WEIGHTS, &p);
    const size_t es = fc_elem_size(d->dtype);
    int64_t *off;
    char *dwt, *thread0;
    implicit_carve(&p, ws, &off, &dwt, &thread0);
    const char *gy = (const char *)gy_, *x = (const char *)x_;
    char *gw = (char *)gw_, *gb = (char *)gb_;
    const int64_t MR = p.kr->mr, NR = p.wnr, G = p.G, tgroups = d->groups / G;
    const int64_t rblocks = p.mp / MR, cblocks = p.ldb / NR, units = tgroups * rblocks * cblocks;
    const int64_t plane = d->oh * d->ow;
    const fc_implicit_wgrad_fn wgrad = p.wgrad;
    /* G > 1: lane L of a tile is channel L / G of its group L % G (grad_y row lane_row[L] of
       the tile's channels), and the bias gradient is summed in lane order into each chunk's
       gbl (after its dW^T) */
    const size_t gbl_off = fc_align_up((size_t)(tgroups * p.mp * p.ldb) * es);
    char *gbl = dwt + gbl_off;
    int64_t lane_row[64];
    for (int64_t L = 0; G > 1 && L < p.ldb; L++)
        lane_row[L] = L % G * p.kg + L / G;
    implicit_build_offsets(d, &p, 0, 0, off);
    /* work items: (chunk of images, range of units); R ranges a chunk, so that the items,
       P*R = lcm(P, nt), split evenly over the team (P = 1: one range per thread) */
    const int64_t P = p.chunks;
    int64_t gcd = P;
    for (int64_t b = p.nt; b;) {
        const int64_t r = gcd % b;
        gcd = b;
        b = r;
    }
    const int64_t R = fc_max64(1, fc_min64(units, p.nt / gcd));
    const int direct_out = p.direct_out; /* (see make_plan_with) */

#pragma omp parallel num_threads(p.nt)
    {
        char *band = thread0 + (size_t)THREAD_ID() * p.per_thread, *bt = band + (size_t)p.nb * p.band_bytes;
#pragma omp for schedule(dynamic, 1)
        for (int64_t item = 0; item < P * R; item++) {
            const int64_t c = item / R, r = item % R;
            const int64_t n0 = d->n * c / P, n1 = d->n * (c + 1) / P;
            /* this item's units: a contiguous range */
            const int64_t u0 = units * r / R, u1 = units * (r + 1) / R;
            char *dwt_c = dwt + (size_t)c * p.chunk_bytes;
            for (int64_t n = n0; n < n1; n += p.nb) {
                const int64_t nb = fc_min64(p.nb, n1 - n); /* images [n, n + nb): nb > 1 only where tiles = 1 */
                for (int64_t t = 0; t < p.tiles; t++) {
                    const int64_t i0 = t * p.rows, rows = fc_min64(p.rows, d->oh - i0);
                    const int first = n == n0 && t == 0, last = direct_out && n + nb == n1 && t == p.tiles - 1;
                    for (int64_t u = u0; u < u1;) {
                        /* the units of one tile of groups: copy what they read, then run them */
                        const int64_t gt = u / (rblocks * cblocks), g = gt * G;
                        const int64_t ue = fc_min64(u1, (gt + 1) * rblocks * cblocks);
                        const int64_t k_lo = (u % (rblocks * cblocks)) / cblocks * MR;
                        const int64_t k_hi = fc_min64(p.K, ((ue - 1) % (rblocks * cblocks) / cblocks + 1) * MR);
                        for (int64_t b = 0; b < nb; b++) {
                            const char *x_g = x + (size_t)(((n + b) * d->c_in + g * p.cg) * d->h * d->w) * es;
                            const char *gy_g = gy + (size_t)(((n + b) * d->c_out + g * p.kg) * plane) * es;
                            /* image b's band, and its bt rows after image b - 1's */
                            char *band_b = band + (size_t)b * p.band_bytes;
                            char *bt_b = bt + (size_t)(b * rows * d->ow * p.ldb) * es;
                            implicit_copy_band(d, &p, x_g, i0, rows, k_lo / p.KK, (k_hi - 1) / p.KK + 1, band_b);
                            /* bt[(r*OW + j)*ldb + k] = grad_y[g*kg + k, i0 + r, j] (G > 1: lane order) */
                            if (G > 1)
                                p.kr->pack_bt_rows(p.ldb, rows * d->ow, gy_g + (size_t)(i0 * d->ow) * es, plane,
                                                   lane_row, bt_b, p.ldb);
                            else
                                p.kr->pack_bt(p.kg, rows * d->ow, gy_g + (size_t)(i0 * d->ow) * es, plane, bt_b,
                                              p.ldb);
                        }
                        if (gb) { /* the bias from the tile in L2, not a second pass over grad_y */
                            char *gb_g = G > 1    ? dwt_c + gbl_off + (size_t)(gt * p.ldb) * es
                                         : c == 0 ? gb + (size_t)(g * p.kg) * es
                                                  : dwt_c + gbl_off + (size_t)(g * p.kg) * es;
                            fc_bias_add_bt_share(d->dtype, bt, nb * rows * d->ow, p.ldb, G > 1 ? p.ldb : p.kg, units,
                                                 (int)R, (int)r, gt * rblocks * cblocks, (gt + 1) * rblocks * cblocks,
                                                 gb_g, first);
                        }
                        /* unit u's dW^T tile: MR rows of NR lanes */
#define OUT_TILE(u) (gw + (size_t)((g * p.kg + (u) % cblocks * NR) * p.K + (u) / cblocks % rblocks * MR) * es)
#define UNIT_TILE(u) (dwt_c + (size_t)((gt * p.mp + (u) / cblocks % rblocks * MR) * p.ldb + (u) % cblocks * NR) * es)
                        for (; u < ue; u++) {
                            const int64_t rb = (u / cblocks) % rblocks, cb = u % cblocks;
                            const void *a[8];
                            for (int64_t i = 0; i < MR; i++) {
                                /* rows past K (dropped): the last tap's row, which this item has copied */
                                const int64_t k = rb * MR + i < p.K ? rb * MR + i : p.K - 1;
                                a[i] = band + (size_t)off[k] * es;
                            }
                            char *cc = UNIT_TILE(u);
                            /* The next unit's dW^T tile, for writing: dW^T outgrows L2 on
                               late layers (9.4 MB for 512 -> 512 channels), and a 7x7 image's
                               49 pixels give a kernel call too few FMAs to hide the read of
                               its tile (12 % of that weight gradient, 1 thread). */
                            if (u + 1 < ue && !(last && first)) {
                                const char *c1 = UNIT_TILE(u + 1);
                                for (int64_t i = 0; i < MR; i++)
                                    for (size_t o = 0; o < (size_t)NR * es; o += 64)
                                        __builtin_prefetch(c1 + (size_t)(i * p.ldb) * es + o, 1);
                            }
                            /* grad_w rows of this unit's channels, from its first tap (last only) */
                            char *out = last ? OUT_TILE(u) : NULL;
                            wgrad(rows, d->ow, a, p.wp * G, nb, (int64_t)(p.band_bytes / es),
                                  bt + (size_t)(cb * NR) * es, p.ldb, cc, p.ldb, !first, out, p.K,
                                  fc_min64(MR, p.K - rb * MR), fc_min64(NR, p.kg - cb * NR));
                        }
#undef UNIT_TILE
#undef OUT_TILE
                    }
                }
            }
        }
        /* (implicit barrier) the other chunks' dW^T and bias gradients added to chunk 0's
           (G = 1: to grad_b), in chunk order, split over blocks of elements */
        if (P > 1) {
            const int64_t nd = tgroups * p.mp * p.ldb, nb = gb ? (G > 1 ? tgroups * p.ldb : d->c_out) : 0;
            const int64_t blocks = fc_ceil_div(nd + nb, SUM_BLOCK);
#pragma omp for schedule(static)
            for (int64_t blk = 0; blk < blocks; blk++) {
                const int64_t e0 = blk * SUM_BLOCK, e1 = fc_min64(nd + nb, e0 + SUM_BLOCK);
                for (int64_t c = 1; c < P; c++) {
                    const char *src = dwt + (size_t)c * p.chunk_bytes;
                    if (e0 < nd)
                        fc_add_elems(d->dtype, dwt, src, e0, fc_min64(e1, nd));
                    if (e1 > nd) /* the bias part: chunk 0's is gbl, or grad_b itself */
                        fc_add_elems(d->dtype, G > 1 ? gbl : gb, src + gbl_off, fc_max64(e0, nd) - nd, e1 - nd);
                }
            }
        }
        /* (implicit barrier of the loop before) */
        if (G > 1) {
            /* grad_w[(gt*G + L % G)*kg + L / G, k] = dwt[gt][k][L], lane by lane (a tile's
               dW^T is K x G*kg elements: small beside the pixels' work) */
#pragma omp for schedule(static)
            for (int64_t s = 0; s < tgroups * p.ldb; s++) {
                const int64_t gt = s / p.ldb, L = s % p.ldb;
                const size_t row = (size_t)((gt * G + L % G) * p.kg + L / G);
                const char *src = dwt + (size_t)(gt * p.mp * p.ldb + L) * es;
                for (int64_t k = 0; k < p.K; k++)
                    memcpy(gw + (row * (size_t)p.K + (size_t)k) * es, src + (size_t)(k * p.ldb) * es, es);
                if (gb)
                    memcpy(gb + row * es, gbl + (size_t)(gt * p.ldb + L) * es, es);
            }
        } else if (!direct_out) {
            /* grad_w[g*kg + i, k] = dwt[g][k][i]: the transpose pack_bt does, in register blocks
               (element by element, its strided reads took 3 % of a VGG-sized weight gradient) */
            const int64_t sblocks = fc_ceil_div(p.kg, STORE_DW_CHANNELS);
#pragma omp for schedule(static)
            for (int64_t s = 0; s < d->groups * sblocks; s++) {
                const int64_t g = s / sblocks, i0 = s % sblocks * STORE_DW_CHANNELS;
                const int64_t width = fc_min64(STORE_DW_CHANNELS, p.kg - i0);
                p.kr->pack_bt(p.K, width, dwt + (size_t)(g * p.mp * p.ldb + i0) * es, p.ldb,
                              gw + (size_t)((g * p.kg + i0) * p.K) * es, p.K);
            }
        }
    }
}
