/*
 * conv_direct.c: the direct algorithm's driver (the kernels: direct_kernels.inc, one
 * instance per ISA). Splits each pass into work items that own their outputs and runs
 * them in one OpenMP region.
 *
 * Determinism: every output element (including each weight- and bias-gradient element)
 * is written by exactly one work item, which sums in a fixed order; so the result is
 * bitwise the same for any thread count and any schedule.
 */
#include <string.h>

#include "conv_internal.h"
#include "direct.h"

#ifdef _OPENMP
#include <omp.h>
#endif

const fc_direct_ops *fc_direct_ops_active(void)
{
#ifdef FC_HAVE_X86_KERNELS
    switch (fc_active_isa()) {
    case FC_ISA_AVX512: return &fc_direct_ops_avx512;
    case FC_ISA_AVX2: return &fc_direct_ops_avx2;
    default: break;
    }
#endif
    return &fc_direct_ops_generic;
}

/* ---- direct: workspace ---------------------------------------------------- */

int64_t fc_direct_acc_elems(const fc_conv_desc *d)
{
    const int64_t per_tap = FC_DIRECT_KB * d->kh * d->kw * d->ow;
    return per_tap > d->ow ? per_tap : d->ow;
}

static size_t direct_tables_bytes(const fc_conv_desc *d)
{
    return fc_align_up(2 * (size_t)d->kw * sizeof(int64_t));
}

static size_t direct_acc_bytes(const fc_conv_desc *d)
{
    return fc_align_up((size_t)fc_direct_acc_elems(d) * fc_elem_size(d->dtype));
}

int64_t fc_direct_fwd_scratch_elems(const fc_conv_desc *d)
{
    return (d->c_in / d->groups) * d->h * fc_direct_padded_width(d);
}

static size_t direct_zeros_bytes(const fc_conv_desc *d)
{
    return fc_direct_fwd_padded(d) ? fc_align_up((size_t)fc_direct_padded_width(d) * fc_elem_size(d->dtype)) : 0;
}

static size_t direct_scratch_bytes(const fc_conv_desc *d)
{
    return fc_direct_fwd_padded(d) ? fc_align_up((size_t)fc_direct_fwd_scratch_elems(d) * fc_elem_size(d->dtype)) : 0;
}

/* The input gradient of a unit-stride convolution is itself a forward convolution: of
   grad_y with the kernel rotated by 180 degrees and its channel axes swapped. Running it
   through the register-blocked forward is much faster than scattering. */
static int bwd_data_as_forward(const fc_conv_desc *d)
{
    return d->stride_h == 1 && d->stride_w == 1;
}

static size_t direct_workspace_size(const fc_conv_desc *d, int pass)
{
    if (pass == FC_BWD_DATA && bwd_data_as_forward(d)) {
        fc_conv_desc t;
        fc_transposed_problem(d, &t);
        return fc_align_up((size_t)(d->c_out * d->kh * d->kw * (d->c_in / d->groups)) * fc_elem_size(d->dtype)) +
               direct_workspace_size(&t, FC_FWD);
    }
    size_t bytes = direct_tables_bytes(d);
    if (pass == FC_FWD)
        bytes += direct_zeros_bytes(d) + (size_t)(d->nthreads > 0 ? d->nthreads : 1) * direct_scratch_bytes(d);
    if (pass == FC_BWD_WEIGHTS)
        bytes += (size_t)(d->nthreads > 0 ? d->nthreads : 1) * direct_acc_bytes(d);
    return bytes;
}

/* ---- direct: passes ------------------------------------------------------- */

static void direct_fwd(const fc_conv_desc *d, const void *x, const void *w, const void *bias,
                       void *y, void *ws)
{
    const fc_direct_ops *ops = fc_direct_ops_active();
    const fc_fwd_item_fn item = ops->fwd[d->dtype];
    const size_t es = fc_elem_size(d->dtype);
    const int nt = fc_team_size(d);
    const int64_t G = d->groups, cg = d->c_in / G, kg = d->c_out / G;
    /* An item pads its image group once and runs a span of its channels: whole groups
       when the batch alone feeds every thread twice, else single channel blocks. */
    const int64_t span = d->n * G >= 2 * nt ? kg : FC_DIRECT_KB;
    const int64_t spans = fc_ceil_div(kg, span), items = d->n * G * spans;
    int64_t *lo = (int64_t *)ws, *hi = lo + d->kw;
    fc_build_col_ranges(d, lo, hi);
    char *zeros = (char *)ws + direct_tables_bytes(d);
    memset(zeros, 0, direct_zeros_bytes(d));
    char *scratch0 = zeros + direct_zeros_bytes(d);
    const size_t scratch_bytes = direct_scratch_bytes(d);
    const fc_col_range cols = {lo, hi, zeros};
    const char *xb = (const char *)x, *wb = (const char *)w, *bb = (const char *)bias;
    char *yb = (char *)y;

#pragma omp parallel num_threads(nt)
    {
#ifdef _OPENMP
        char *scratch = scratch0 + (size_t)omp_get_thread_num() * scratch_bytes;
#else
        char *scratch = scratch0;
#endif
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < items; it++) {
            const int64_t n = it / (G * spans), g = (it / spans) % G, sp = it % spans;
            const int64_t k0 = g * kg + sp * span;
            const int64_t kc = kg - sp * span < span ? kg - sp * span : span;
            item(d, cols, xb + (size_t)((n * d->c_in + g * cg) * d->h * d->w) * es,
                 wb + (size_t)(k0 * cg * d->kh * d->kw) * es, bb ? bb + (size_t)k0 * es : NULL,
                 yb + (size_t)((n * d->c_out + k0) * d->oh * d->ow) * es, kc, scratch);
        }
    }
}

static void direct_bwd_data(const fc_conv_desc *d, const void *gy, const void *w, void *gx,
                            void *ws)
{
    if (bwd_data_as_forward(d)) {
        fc_conv_desc t;
        fc_transposed_problem(d, &t);
        char *wt = (char *)ws;
        fc_rotate_weights(d, w, wt);
        direct_fwd(&t, gy, wt, NULL, gx,
                   wt + fc_align_up((size_t)(d->c_out * d->kh * d->kw * (d->c_in / d->groups)) * fc_elem_size(d->dtype)));
        return;
    }
    const fc_direct_ops *ops = fc_direct_ops_active();
    const fc_bwd_data_item_fn item = ops->bwd_data[d->dtype];
    const size_t es = fc_elem_size(d->dtype);
    const int64_t G = d->groups, cg = d->c_in / G, kg = d->c_out / G;
    const int64_t blocks = fc_ceil_div(cg, FC_DIRECT_KB), items = d->n * G * blocks;
    int64_t *lo = (int64_t *)ws, *hi = lo + d->kw;
    fc_build_col_ranges(d, lo, hi);
    const fc_col_range cols = {lo, hi, NULL};
    const char *gyb = (const char *)gy, *wb = (const char *)w;
    char *gxb = (char *)gx;

#pragma omp parallel for schedule(dynamic, 1) num_threads(fc_team_size(d))
    for (int64_t it = 0; it < items; it++) {
        const int64_t n = it / (G * blocks), g = (it / blocks) % G, blk = it % blocks;
        const int64_t c0 = blk * FC_DIRECT_KB; /* within the group */
        const int64_t cb = (cg - c0) < FC_DIRECT_KB ? cg - c0 : FC_DIRECT_KB;
        item(d, cols, gyb + (size_t)((n * d->c_out + g * kg) * d->oh * d->ow) * es,
             wb + (size_t)((g * kg * cg + c0) * d->kh * d->kw) * es,
             gxb + (size_t)((n * d->c_in + g * cg + c0) * d->h * d->w) * es, cb);
    }
}

static void direct_bwd_weights(const fc_conv_desc *d, const void *gy, const void *x, void *gw,
                               void *gb, void *ws)
{
    const fc_direct_ops *ops = fc_direct_ops_active();
    const fc_bwd_weights_item_fn item = ops->bwd_weights[d->dtype];
    const fc_bias_item_fn bias_item = ops->bias[d->dtype];
    const size_t es = fc_elem_size(d->dtype);
    const int64_t G = d->groups, cg = d->c_in / G, kg = d->c_out / G;
    const int64_t blocks = fc_ceil_div(kg, FC_DIRECT_KB);
    const int64_t w_items = G * blocks * cg, b_items = gb ? d->c_out : 0;
    int64_t *lo = (int64_t *)ws, *hi = lo + d->kw;
    fc_build_col_ranges(d, lo, hi);
    const fc_col_range cols = {lo, hi, NULL};
    char *acc0 = (char *)ws + direct_tables_bytes(d);
    const size_t acc_bytes = direct_acc_bytes(d);
    const char *gyb = (const char *)gy, *xb = (const char *)x;
    char *gwb = (char *)gw, *gbb = (char *)gb;

#pragma omp parallel num_threads(fc_team_size(d))
    {
#ifdef _OPENMP
        char *acc = acc0 + (size_t)omp_get_thread_num() * acc_bytes;
#else
        char *acc = acc0;
#endif
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < w_items + b_items; it++) {
            if (it < w_items) {
                const int64_t g = it / (blocks * cg), blk = (it / cg) % blocks, c = it % cg;
                const int64_t k0 = g * kg + blk * FC_DIRECT_KB;
                const int64_t kb = (kg - blk * FC_DIRECT_KB) < FC_DIRECT_KB ? kg - blk * FC_DIRECT_KB : FC_DIRECT_KB;
                item(d, cols, gyb + (size_t)(k0 * d->oh * d->ow) * es,
                     xb + (size_t)((g * cg + c) * d->h * d->w) * es,
                     gwb + (size_t)((k0 * cg + c) * d->kh * d->kw) * es, acc, kb);
            } else {
                const int64_t k = it - w_items;
                bias_item(d, gyb + (size_t)(k * d->oh * d->ow) * es, gbb + (size_t)k * es, acc);
            }
        }
    }
}


/* ---- the table entry ------------------------------------------------------ */

static const char *direct_rejects(const fc_conv_desc *d, int pass)
{
    (void)d;
    (void)pass;
    return NULL; /* any problem */
}

/* NaN/inf: the kernels skip the zero padding, so they never compute 0 * w (fwd, bwd_data)
   or grad_y * 0 (bwd_weights): a non-finite weight (or grad_y) would not reach every
   output the definition sends it to. */
const fc_conv_impl fc_impl_direct = {
    FC_ALGO_DIRECT, "direct", "direct", 0, {FC_OPND_1, FC_OPND_1, FC_OPND_0},
    direct_rejects, direct_workspace_size, direct_fwd, direct_bwd_data, direct_bwd_weights,
};
