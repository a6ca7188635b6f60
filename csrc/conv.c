/*
 * conv.c: the driver. Picks the algorithm, sizes and carves the workspace, splits each
 * pass into work items that own their outputs, and runs them in one OpenMP region.
 *
 * Determinism: every output element (including each weight- and bias-gradient element)
 * is written by exactly one work item, which sums in a fixed order; so the result is
 * bitwise the same for any thread count and any schedule.
 */
#include <stdlib.h>
#include <string.h>

#include "conv_internal.h"
#include "depthwise.h"
#include "direct.h"
#include "threads.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Below this many multiply-adds a call runs on the calling thread: waking a team costs
   a few microseconds, more than such a call computes. */
#define FC_SERIAL_MACS 32768

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

size_t fc_elem_size(int dtype) { return dtype == FC_F64 ? sizeof(double) : sizeof(float); }

size_t fc_align_up(size_t n) { return (n + FC_ALIGN - 1) & ~(size_t)(FC_ALIGN - 1); }

int64_t fc_macs(const fc_conv_desc *d)
{
    return d->n * d->c_out * d->oh * d->ow * (d->c_in / d->groups) * d->kh * d->kw;
}

int fc_team_size(const fc_conv_desc *d)
{
    if (d->nthreads <= 1 || fc_macs(d) < FC_SERIAL_MACS)
        return 1;
    return fc_team_limit(d->nthreads);
}

void *fc_aligned_alloc(size_t bytes)
{
    void *p = NULL;
    if (bytes == 0)
        bytes = FC_ALIGN;
    if (posix_memalign(&p, FC_ALIGN, fc_align_up(bytes)) != 0)
        return NULL;
    return p;
}

static int64_t floor_div(int64_t a, int64_t b) /* b > 0 */
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

void fc_build_col_ranges(const fc_conv_desc *d, int64_t *lo, int64_t *hi)
{
    for (int64_t m = 0; m < d->kw; m++) {
        const int64_t off = m * d->dil_w - d->pad_left; /* input column = j*sw + off */
        int64_t a = -floor_div(off, d->stride_w);      /* ceil(-off / sw) */
        int64_t b = floor_div(d->w - 1 - off, d->stride_w) + 1;
        if (a < 0) a = 0;
        if (a > d->ow) a = d->ow; /* padding wider than the output: no valid column */
        if (b > d->ow) b = d->ow;
        if (b < a) b = a;
        lo[m] = a;
        hi[m] = b;
    }
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

int64_t fc_direct_padded_width(const fc_conv_desc *d)
{
    return d->ow + (d->kw - 1) * d->dil_w;
}

int64_t fc_direct_fwd_scratch_elems(const fc_conv_desc *d)
{
    return (d->c_in / d->groups) * d->h * fc_direct_padded_width(d);
}

/* The register-blocked forward copies the image with its column padding materialised.
   Where the padding dwarfs the output (a huge dilation with "same" padding, say), that
   copy would cost memory out of all proportion, so the row kernel, which needs none, runs. */
int fc_direct_fwd_padded(const fc_conv_desc *d)
{
    return d->stride_w == 1 && fc_direct_padded_width(d) <= 4 * d->ow + 64;
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

/* grad_x = conv(grad_y, rot180(w) with in/out channels swapped), unit strides, and padding
   (eff_k - 1 - pad) on each side (negative when the forward padding exceeds the kernel:
   the kernels read such "padding" as a crop). */
void fc_transposed_problem(const fc_conv_desc *d, fc_conv_desc *t)
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

#define DEFINE_ROTATE(REAL, SFX)                                                               \
    static void rotate_weights_##SFX(const fc_conv_desc *d, const REAL *w, REAL *wt)          \
    {                                                                                          \
        const int64_t G = d->groups, cg = d->c_in / G, kg = d->c_out / G, KK = d->kh * d->kw; \
        for (int64_t g = 0; g < G; g++)                                                        \
            for (int64_t k = 0; k < kg; k++)                                                   \
                for (int64_t c = 0; c < cg; c++)                                               \
                    for (int64_t t = 0; t < KK; t++)                                           \
                        wt[((g * cg + c) * kg + k) * KK + (KK - 1 - t)] =                      \
                            w[((g * kg + k) * cg + c) * KK + t];                               \
    }
DEFINE_ROTATE(float, f32)
DEFINE_ROTATE(double, f64)

static void direct_bwd_data(const fc_conv_desc *d, const void *gy, const void *w, void *gx,
                            void *ws)
{
    if (bwd_data_as_forward(d)) {
        fc_conv_desc t;
        fc_transposed_problem(d, &t);
        char *wt = (char *)ws;
        if (d->dtype == FC_F64)
            rotate_weights_f64(d, (const double *)w, (double *)wt);
        else
            rotate_weights_f32(d, (const float *)w, (float *)wt);
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

/* ---- entry points --------------------------------------------------------- */

/* "auto": the implementations most specialised first (depthwise), then direct or im2col
   by the measured rule in fc_im2col_preferred. */
int fc_conv_choose(const fc_conv_desc *d, int pass)
{
    if (fc_depthwise_accepts(d, pass))
        return FC_ALGO_DEPTHWISE;
    return fc_im2col_accepts(d, pass) && fc_im2col_preferred(d, pass) ? FC_ALGO_IM2COL
                                                                        : FC_ALGO_DIRECT;
}

static int resolve(const fc_conv_desc *d, int pass, int algo)
{
    if (algo == FC_ALGO_AUTO)
        return fc_conv_choose(d, pass);
    return algo;
}

size_t fc_conv_workspace_size(const fc_conv_desc *d, int pass, int algo)
{
    algo = resolve(d, pass, algo);
    if (algo == FC_ALGO_DEPTHWISE)
        return fc_depthwise_workspace_size(d, pass);
    if (algo == FC_ALGO_IM2COL)
        return fc_im2col_workspace_size(d, pass);
    return direct_workspace_size(d, pass);
}

/* Runs one pass with the caller's workspace, or one allocated (and freed) here. */
#define WITH_WORKSPACE(d, pass, algo, ws, call)                                                \
    do {                                                                                       \
        void *own_ = NULL;                                                                     \
        if ((ws) == NULL) {                                                                    \
            own_ = fc_aligned_alloc(fc_conv_workspace_size((d), (pass), (algo)));              \
            if (own_ == NULL)                                                                  \
                return FC_ENOMEM;                                                              \
            (ws) = own_;                                                                       \
        }                                                                                      \
        call;                                                                                  \
        free(own_);                                                                            \
    } while (0)

int fc_conv_fwd(const fc_conv_desc *d, int algo, const void *x, const void *w, const void *bias,
                void *y, void *workspace)
{
    algo = resolve(d, FC_FWD, algo);
    if (algo == FC_ALGO_DEPTHWISE)
        WITH_WORKSPACE(d, FC_FWD, algo, workspace, fc_depthwise_fwd(d, x, w, bias, y, workspace));
    else if (algo == FC_ALGO_IM2COL)
        WITH_WORKSPACE(d, FC_FWD, algo, workspace, fc_im2col_fwd(d, x, w, bias, y, workspace));
    else
        WITH_WORKSPACE(d, FC_FWD, algo, workspace, direct_fwd(d, x, w, bias, y, workspace));
    return FC_OK;
}

int fc_conv_bwd_data(const fc_conv_desc *d, int algo, const void *grad_y, const void *w,
                     void *grad_x, void *workspace)
{
    algo = resolve(d, FC_BWD_DATA, algo);
    if (algo == FC_ALGO_DEPTHWISE)
        WITH_WORKSPACE(d, FC_BWD_DATA, algo, workspace, fc_depthwise_bwd_data(d, grad_y, w, grad_x, workspace));
    else if (algo == FC_ALGO_IM2COL)
        WITH_WORKSPACE(d, FC_BWD_DATA, algo, workspace, fc_im2col_bwd_data(d, grad_y, w, grad_x, workspace));
    else
        WITH_WORKSPACE(d, FC_BWD_DATA, algo, workspace, direct_bwd_data(d, grad_y, w, grad_x, workspace));
    return FC_OK;
}

int fc_conv_bwd_weights(const fc_conv_desc *d, int algo, const void *grad_y, const void *x,
                        void *grad_w, void *grad_bias, void *workspace)
{
    algo = resolve(d, FC_BWD_WEIGHTS, algo);
    if (algo == FC_ALGO_DEPTHWISE)
        WITH_WORKSPACE(d, FC_BWD_WEIGHTS, algo, workspace,
                       fc_depthwise_bwd_weights(d, grad_y, x, grad_w, grad_bias, workspace));
    else if (algo == FC_ALGO_IM2COL)
        WITH_WORKSPACE(d, FC_BWD_WEIGHTS, algo, workspace,
                       fc_im2col_bwd_weights(d, grad_y, x, grad_w, grad_bias, workspace));
    else
        WITH_WORKSPACE(d, FC_BWD_WEIGHTS, algo, workspace,
                       direct_bwd_weights(d, grad_y, x, grad_w, grad_bias, workspace));
    return FC_OK;
}
