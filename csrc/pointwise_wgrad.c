/*
 * pointwise_wgrad.c: the weight gradient of a pointwise convolution (1x1, stride 1, no
 * padding) on the implicit-GEMM micro-kernels; part of the gemm_1x1 entry (conv_im2col.c).
 *
 * Per group, dW (kg x cg) = sum over images of grad_y_n (kg x P) x_n^T (P x cg): a GEMM
 * whose reduction runs over the pixels, and both operands already hold the pixels
 * contiguously. The general GEMM packs both; that is the whole cost when one side is
 * small. MobileNet's expand layer (24 -> 144 channels, 28x28, batch 32) does 24 FMAs per
 * element of grad_y packed and ran at 35-40 % of the FMA peak (issue 12). Here the
 * operand with fewer rows is transposed into a pixel-major panel (the micro-kernel's bt),
 * and the other is read in place, MR rows broadcast per pixel (the micro-kernel's a):
 *
 *   cg <= kg:  a = grad_y rows, bt = x^T,      C[k][c] = dW    (the expand layers)
 *   cg >  kg:  a = x rows,      bt = grad_y^T, C[c][k] = dW^T  (the projection layers)
 *
 * Every thread owns whole MR x NR tiles of C and walks all images and pixel chunks in
 * order, so each element is summed in one fixed order whatever the thread count; each
 * thread packs the panels its tiles read (the smaller operand: a duplicate costs little).
 * Exact on NaN/inf: every product of the definition is formed, none skipped.
 */
#include <string.h>

#include "conv_internal.h"
#include "cpu_info.h"
#include "implicit/implicit.h"
#include "pointwise_wgrad.h"

#ifdef _OPENMP
#include <omp.h>
#define THREAD_ID() omp_get_thread_num()
#else
#define THREAD_ID() 0
#endif

typedef struct pplan {
    const fc_implicit_kernels *kr;
    int64_t cg, kg, plane;
    int64_t ra, rb;       /* rows of the broadcast operand a, of the packed operand */
    int a_is_gy;          /* 1: a = grad_y, bt = x^T */
    int64_t mp, ldb;      /* ra rounded up to MR, rb rounded up to NR */
    int64_t chunk;        /* pixels per panel */
    int nt;
    size_t c_bytes, bt_bytes;
} pplan;

static void make_plan(const fc_conv_desc *d, pplan *p)
{
    const int64_t es = (int64_t)fc_elem_size(d->dtype);
    p->kr = fc_implicit_kernels_for(d->dtype);
    p->cg = d->c_in / d->groups;
    p->kg = d->c_out / d->groups;
    p->plane = d->h * d->w;
    p->a_is_gy = p->cg <= p->kg;
    p->ra = p->a_is_gy ? p->kg : p->cg;
    p->rb = p->a_is_gy ? p->cg : p->kg;
    p->mp = fc_round_up(p->ra, p->kr->mr);
    p->ldb = fc_round_up(p->rb, p->kr->nr);
    /* the panel (chunk x ldb) takes at most half the L2, the rest is the a rows' and C's */
    const int64_t budget = fc_cpu_info_get()->l2 / 2;
    p->chunk = fc_min64(p->plane, fc_max64(p->kr->vl, budget / (p->ldb * es) / p->kr->vl * p->kr->vl));
    p->nt = fc_team_size(d);
    p->c_bytes = fc_align_up((size_t)(d->groups * p->mp * p->ldb * es));
    p->bt_bytes = fc_align_up((size_t)(p->chunk * p->ldb * es));
}

/* Where this beats the GEMM: the packed operand is narrow (the GEMM's packing of the other
   one is then most of its work) and fills at least 3/4 of its padded panel (the tile's NR
   columns are computed whatever rb is). Measured on one Zen 4 core, against the GEMM:
   expand 24 -> 144 (28x28, batch 32) 1.44x f32 / 1.51x f64, 64 -> 256 (56x56) 1.26x;
   16 -> 16 channels per group (half the panel wasted) 0.63x; 256 -> 1024 (14x14) f32 1.03x
   but f64 0.95x, where both operands are wide and the GEMM's packing is amortised. */
#define POINTWISE_MAX_PANEL_ROWS 128

int fc_pointwise_wgrad_suits(const fc_conv_desc *d)
{
    const fc_implicit_kernels *kr = fc_implicit_kernels_for(d->dtype);
    if (kr == NULL)
        return 0;
    const int64_t cg = d->c_in / d->groups, kg = d->c_out / d->groups, rb = fc_min64(cg, kg);
    return rb <= POINTWISE_MAX_PANEL_ROWS && 4 * rb >= 3 * fc_round_up(rb, kr->nr);
}

size_t fc_pointwise_wgrad_workspace(const fc_conv_desc *d)
{
    pplan p;
    make_plan(d, &p);
    return p.c_bytes + (size_t)p.nt * p.bt_bytes;
}

/* gw rows of group g from C: row copies when C holds dW, a register-block transpose when it
   holds dW^T (channels [k0, k0 + width) of the group). */
static void store_rows(const fc_conv_desc *d, const pplan *p, const char *c, char *gw, int64_t g, int64_t k0,
                       int64_t width)
{
    const size_t es = fc_elem_size(d->dtype);
    const char *cg_blk = c + (size_t)(g * p->mp * p->ldb) * es;
    char *dst = gw + (size_t)((g * p->kg + k0) * p->cg) * es;
    if (p->a_is_gy) {
        for (int64_t k = k0; k < k0 + width; k++, dst += (size_t)p->cg * es)
            memcpy(dst, cg_blk + (size_t)(k * p->ldb) * es, (size_t)p->cg * es);
    } else {
        p->kr->pack_bt(p->cg, width, cg_blk + (size_t)k0 * es, p->ldb, dst, p->cg);
    }
}

#define STORE_CHANNELS 16

void fc_pointwise_wgrad(const fc_conv_desc *d, const void *gy_, const void *x_, void *gw_, void *gb_, void *ws)
{
    pplan p;
    make_plan(d, &p);
    const size_t es = fc_elem_size(d->dtype);
    const char *gy = (const char *)gy_, *x = (const char *)x_;
    char *gw = (char *)gw_, *gb = (char *)gb_;
    char *c = (char *)ws, *thread0 = c + p.c_bytes;
    const int64_t MR = p.kr->mr, NR = p.kr->nr;
    const int64_t rblocks = p.mp / MR, cblocks = p.ldb / NR, per_group = rblocks * cblocks;
    const int64_t units = d->groups * per_group;
    const fc_implicit_wgrad_fn wgrad = p.kr->wgrad;

#pragma omp parallel num_threads(p.nt)
    {
        const int tid = THREAD_ID();
        char *bt = thread0 + (size_t)tid * p.bt_bytes;
        const int64_t u0 = units * tid / p.nt, u1 = units * (tid + 1) / p.nt;
        for (int64_t n = 0; n < d->n; n++) {
            for (int64_t q0 = 0; q0 < p.plane; q0 += p.chunk) {
                const int64_t q = fc_min64(p.chunk, p.plane - q0);
                for (int64_t u = u0; u < u1;) {
                    const int64_t g = u / per_group, ue = fc_min64(u1, (g + 1) * per_group);
                    const char *x_g = x + (size_t)(((n * d->c_in + g * p.cg) * p.plane) + q0) * es;
                    const char *gy_g = gy + (size_t)(((n * d->c_out + g * p.kg) * p.plane) + q0) * es;
                    const char *a_base = p.a_is_gy ? gy_g : x_g;
                    p.kr->pack_bt(p.rb, q, p.a_is_gy ? x_g : gy_g, p.plane, bt, p.ldb);
                    if (gb && !p.a_is_gy) /* the bias from the packed grad_y^T, in cache */
                        fc_bias_add_bt_share(d->dtype, bt, q, p.ldb, p.kg, units, p.nt, tid, g * per_group,
                                             (g + 1) * per_group, gb + (size_t)(g * p.kg) * es, n == 0 && q0 == 0);
                    for (; u < ue; u++) {
                        const int64_t rb = (u % per_group) / cblocks, cb = u % cblocks;
                        const void *a[8];
                        for (int64_t i = 0; i < MR; i++) /* rows past ra: the last one, dropped */
                            a[i] = a_base + (size_t)(fc_min64(rb * MR + i, p.ra - 1) * p.plane) * es;
                        char *ct = c + (size_t)((g * p.mp + rb * MR) * p.ldb + cb * NR) * es;
                        wgrad(1, q, a, 0, 1, 0, bt + (size_t)(cb * NR) * es, p.ldb, ct, p.ldb, n > 0 || q0 > 0,
                              NULL, 0, 0, 0);
                        if (gb && p.a_is_gy && cb == 0) /* the bias from the grad_y rows just read */
                            fc_bias_add_rows(d->dtype, a[0], p.plane, fc_min64(MR, p.ra - rb * MR), q,
                                             gb + (size_t)(g * p.kg + rb * MR) * es, n == 0 && q0 == 0);
                    }
                }
            }
        }
#pragma omp barrier
        const int64_t sblocks = fc_ceil_div(p.kg, STORE_CHANNELS);
#pragma omp for schedule(static)
        for (int64_t s = 0; s < d->groups * sblocks; s++) {
            const int64_t k0 = s % sblocks * STORE_CHANNELS;
            store_rows(d, &p, c, gw, s / sblocks, k0, fc_min64(STORE_CHANNELS, p.kg - k0));
        }
    }
}
