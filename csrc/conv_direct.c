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
#include "implicit/implicit.h"
#include "nn/nn_ops.h"

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

/* ---- the pixel-vector forward ---------------------------------------------
   Where it applies (float32 on AVX-512 or AVX2, one group, unit stride and dilation, output
   channels in blocks of 8, a padded image of at most PIXELS_BAND_MAX bytes: 3 channels at
   224x224 fit), the forward runs direct_fwd_pixels_avx512.c's register tile (8 channels x 2
   runs of up to 16 pixels, every input channel and tap summed in registers, stored with no
   transpose; on AVX2 direct_fwd_pixels_avx2.c's 4 channels x 3 runs of 8, both halves of
   the same 8-channel panel) over a padded copy of each image, the band, instead of the
   row-update kernels below. An item is an image and a span of channel blocks: whole images when the batch
   feeds every thread twice, else spans that give each thread about two items. The padding
   taps are computed (the band holds zeros there): exact, since the driver routes non-finite
   weights away from this entry (inexact[] below), and a finite weight times a padding zero
   adds a zero. The input gradient at unit stride runs through it too (the transposed
   forward, direct_bwd_data) where its shape fits.
   Where "auto" takes it (conv_choose.c, few taps a pixel): no lowering pass, no B packing
   and no tile transpose, which is most of a first layer's time on the GEMM paths. Zen 4,
   1 thread, batch 128, 3x3 "same", pixel-vector / "auto" before ms: 3 -> 32 at 32x32
   (CIFAR's first layer) 2.40-2.45 / 3.42-3.67 (2 threads 1.18-1.20 / 1.70-1.77); 8 x 3 ->
   64 at 224x224 (a 613 KB band) 14.5-15.0 / 19.7. More in conv_choose.c. */
#define PIXELS_BAND_MAX ((size_t)1 << 20)

/* The AVX2 kernel loads whole vectors for a row's short last run: up to 7 elements past
   the last row, zeroed slack. */
#define PIXELS_BAND_SLACK 8

static int64_t pixels_band_elems(const fc_conv_desc *d)
{
    return d->c_in * (d->oh + d->kh - 1) * (d->ow + d->kw - 1) + PIXELS_BAND_SLACK;
}

/* The shapes it takes, whatever the active ISA (workspace sizes must not depend on it). */
static int pixels_shape(const fc_conv_desc *d)
{
    return d->dtype == FC_F32 && d->groups == 1 && d->stride_h == 1 && d->stride_w == 1 && d->dil_h == 1 &&
           d->dil_w == 1 && d->n > 0 && d->oh > 0 && d->ow > 0 && d->c_out % 8 == 0 &&
           (size_t)pixels_band_elems(d) * sizeof(float) <= PIXELS_BAND_MAX;
}

/* 1 where the active ISA has pixel-vector kernels (AVX2, AVX-512). */
static int pixels_isa(void)
{
#ifdef FC_HAVE_X86_KERNELS
    return fc_active_isa() >= FC_ISA_AVX2;
#else
    return 0;
#endif
}

static int pixels_fwd_takes(const fc_conv_desc *d)
{
    return pixels_isa() && pixels_shape(d);
}

static int pixels_wgrad_takes(const fc_conv_desc *d); /* below */

int fc_direct_pixels(const fc_conv_desc *d, int pass)
{
    if (pass == FC_BWD_DATA && d->stride_h == 1 && d->stride_w == 1) {
        fc_conv_desc t;
        fc_transposed_problem(d, &t);
        return pixels_fwd_takes(&t);
    }
    if (pass == FC_BWD_WEIGHTS)
        return pixels_wgrad_takes(d);
    return pass == FC_FWD && pixels_fwd_takes(d);
}

static size_t pixels_off_bytes(const fc_conv_desc *d)
{
    return fc_align_up((size_t)(d->c_in * d->kh * d->kw) * sizeof(int32_t));
}

static size_t pixels_wpk_bytes(const fc_conv_desc *d)
{
    return fc_align_up((size_t)(d->c_out * d->c_in * d->kh * d->kw) * sizeof(float));
}

static size_t pixels_workspace_size(const fc_conv_desc *d)
{
    return pixels_off_bytes(d) + pixels_wpk_bytes(d) +
           (size_t)(d->nthreads > 0 ? d->nthreads : 1) * fc_align_up((size_t)pixels_band_elems(d) * sizeof(float));
}

/* Image x_n padded into band: channel c's rows of wp elements, row i from input row
   i - pad_top, column j from input column j - pad_left, zeros outside the image. The rows
   inside the image go through implicit GEMM's band copy (copy_rows: zero-masked vector
   loads, the next row prefetched), the padding rows above and below are zeroed. */
static void pixels_band(const fc_conv_desc *d, const fc_implicit_kernels *kr, const float *x_n, float *band)
{
    const int64_t hp = d->oh + d->kh - 1, wp = d->ow + d->kw - 1, pt = d->pad_top, pl = d->pad_left;
    const int64_t nc = fc_min64(d->w, wp - pl), rows = fc_min64(d->h, hp - pt); /* inside the band */
    for (int64_t c = 0; c < d->c_in; c++) {
        float *dst = band + c * hp * wp;
        memset(dst, 0, (size_t)(pt * wp) * sizeof(float));
        kr->copy_rows(dst + pt * wp, x_n + c * d->h * d->w, d->w, rows, pl, pl + nc, wp,
                      d->w * (int64_t)sizeof(float));
        memset(dst + (pt + rows) * wp, 0, (size_t)((hp - pt - rows) * wp) * sizeof(float));
    }
    memset(band + d->c_in * hp * wp, 0, PIXELS_BAND_SLACK * sizeof(float));
}

/* The calling thread's band: the team's bands lie band_bytes apart from band0. */
static float *thread_band(char *band0, size_t band_bytes)
{
#ifdef _OPENMP
    return (float *)(band0 + (size_t)omp_get_thread_num() * band_bytes);
#else
    (void)band_bytes;
    return (float *)band0;
#endif
}

/* off[k] for tap k = (c, l, m) of the weights' order: its element of the band for output pixel
   (0, 0); pixel (i, j) reads off[k] + i*wp + j. */
static void pixels_offsets(const fc_conv_desc *d, int32_t *off)
{
    const int64_t hp = d->oh + d->kh - 1, wp = d->ow + d->kw - 1;
    for (int64_t c = 0; c < d->c_in; c++)
        for (int64_t l = 0; l < d->kh; l++)
            for (int64_t m = 0; m < d->kw; m++)
                off[(c * d->kh + l) * d->kw + m] = (int32_t)((c * hp + l) * wp + m);
}

static void pixels_fwd(const fc_conv_desc *d, const float *x, const float *w, const float *bias, float *y,
                       void *ws, int relu)
{
#ifdef FC_HAVE_X86_KERNELS
    const int nt = fc_team_size(d);
    const int64_t K = d->c_in * d->kh * d->kw, wp = d->ow + d->kw - 1;
    const int64_t blocks = d->c_out / 8, plane = d->oh * d->ow;
    /* spans of channel blocks an image: 1 where the batch feeds every thread twice */
    const int64_t per_image = d->n >= 2 * nt ? 1 : fc_min64(blocks, fc_ceil_div(2 * nt, d->n));
    const int64_t span = fc_ceil_div(blocks, per_image), spans = fc_ceil_div(blocks, span), items = d->n * spans;
    int32_t *off = (int32_t *)ws;
    float *wpk = (float *)((char *)ws + pixels_off_bytes(d));
    char *band0 = (char *)wpk + pixels_wpk_bytes(d);
    const size_t band_bytes = fc_align_up((size_t)pixels_band_elems(d) * sizeof(float));
    const fc_implicit_kernels *kr = fc_implicit_kernels_for(FC_F32); /* the ISA's, for copy_rows */
    void (*const kernel)(int64_t, const float *, const int32_t *, const float *, int64_t, int64_t, int64_t,
                         const float *, int, float *) =
        fc_active_isa() >= FC_ISA_AVX512 ? fc_direct_fwd_pixels_f32_avx512 : fc_direct_fwd_pixels_f32_avx2;
    pixels_offsets(d, off);
#pragma omp parallel num_threads(nt)
    {
        /* wpk[(ob*K + k)*8 + i] = w[(ob*8 + i)*K + k]: block ob's panel, 8 channels a tap */
#pragma omp for schedule(static)
        for (int64_t ob = 0; ob < blocks; ob++)
            for (int64_t k = 0; k < K; k++)
                for (int64_t i = 0; i < 8; i++)
                    wpk[(ob * K + k) * 8 + i] = w[(ob * 8 + i) * K + k];
        float *band = thread_band(band0, band_bytes);
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < items; it++) {
            const int64_t n = it / spans, b0 = it % spans * span, b1 = fc_min64(blocks, b0 + span);
            pixels_band(d, kr, x + n * d->c_in * d->h * d->w, band);
            for (int64_t ob = b0; ob < b1; ob++)
                kernel(K, wpk + ob * K * 8, off, band, wp, d->oh, d->ow, bias ? bias + ob * 8 : NULL, relu,
                       y + (n * d->c_out + ob * 8) * plane);
        }
    }
#else
    (void)d, (void)x, (void)w, (void)bias, (void)y, (void)ws, (void)relu;
#endif
}

/* ---- the pixel-vector weight gradient -------------------------------------
   Where the forward's pixel-vector kernel applies, and K = C_in*kh*kw <= 96 (its
   accumulators), the weight gradient runs direct_wgrad_pixels_*.c's tile (4 filters x 4
   taps on AVX-512, x 3 on AVX2, partial sums kept as vectors) over grad_y as it lies and
   the forward's band of each image: no transpose of grad_y, which implicit GEMM's weight
   gradient makes for its pixel-major tiles. The bias gradient is the weight gradient of one
   more tap, a plane of ones after the band's channels and slack (filled once a thread). An item is a batch chunk (fixed:
   WGRAD_CHUNKS of the images, whatever the thread count) and a span of 4 filter blocks;
   the chunks' vector sums are added in chunk order and reduced across lanes at the end,
   so results are bitwise the same at any thread count. It computes the padding taps
   (grad_y times the band's zeros), as the definition does: exact on NaN and inf
   (direct_inexact), unlike the row kernels. */
#define WGRAD_PIXELS_MAX_K 96
#define WGRAD_CHUNKS 8

static int64_t wgrad_band_elems(const fc_conv_desc *d)
{
    return pixels_band_elems(d) + d->oh * (d->ow + d->kw - 1); /* + the plane of ones */
}

static int pixels_wgrad_shape(const fc_conv_desc *d)
{
    return pixels_shape(d) && d->c_in * d->kh * d->kw <= WGRAD_PIXELS_MAX_K &&
           (size_t)wgrad_band_elems(d) * sizeof(float) <= PIXELS_BAND_MAX;
}

static int pixels_wgrad_takes(const fc_conv_desc *d)
{
    return pixels_isa() && pixels_wgrad_shape(d);
}

static int64_t wgrad_chunks(const fc_conv_desc *d)
{
    return d->n < WGRAD_CHUNKS ? d->n : WGRAD_CHUNKS;
}

static size_t wgrad_off_bytes(const fc_conv_desc *d)
{
    return fc_align_up((size_t)(d->c_in * d->kh * d->kw + 1) * sizeof(int32_t));
}

static size_t wgrad_band_bytes(const fc_conv_desc *d)
{
    return fc_align_up((size_t)wgrad_band_elems(d) * sizeof(float));
}

static size_t pixels_wgrad_workspace_size(const fc_conv_desc *d)
{
    const int64_t acc = FC_WGRAD_PIXELS_ACC(d->c_in * d->kh * d->kw + 1);
    return wgrad_off_bytes(d) + (size_t)(d->nthreads > 0 ? d->nthreads : 1) * wgrad_band_bytes(d) +
           (size_t)(wgrad_chunks(d) * (d->c_out / 4) * acc) * sizeof(float);
}

static void pixels_wgrad(const fc_conv_desc *d, const float *gy, const float *x, float *gw, float *gb, void *ws)
{
#ifdef FC_HAVE_X86_KERNELS
    const int nt = fc_team_size(d);
    const int64_t K = d->c_in * d->kh * d->kw, Kt = K + (gb != NULL),
                  wp = d->ow + d->kw - 1, plane = d->oh * d->ow;
    const int64_t ones = pixels_band_elems(d); /* after the channels and their slack: no image overwrites it */
    const int64_t blocks = d->c_out / 4, chunks = wgrad_chunks(d), spans = fc_ceil_div(blocks, 4);
    const int64_t items = chunks * spans, acc_elems = FC_WGRAD_PIXELS_ACC(K + 1);
    int32_t *off = (int32_t *)ws;
    char *band0 = (char *)ws + wgrad_off_bytes(d);
    const size_t band_bytes = wgrad_band_bytes(d);
    float *acc0 = (float *)(band0 + (size_t)(d->nthreads > 0 ? d->nthreads : 1) * band_bytes);
    const fc_implicit_kernels *kr = fc_implicit_kernels_for(FC_F32); /* the ISA's, for copy_rows */
    const int avx512 = fc_active_isa() >= FC_ISA_AVX512;
    void (*const kernel)(int64_t, const int32_t *, const float *, int64_t, int64_t, int64_t, const float *, int64_t,
                         float *) = avx512 ? fc_direct_wgrad_pixels_f32_avx512 : fc_direct_wgrad_pixels_f32_avx2;
    void (*const finish)(int64_t, const float *, float *, int64_t) =
        avx512 ? fc_direct_wgrad_pixels_finish_f32_avx512 : fc_direct_wgrad_pixels_finish_f32_avx2;
    pixels_offsets(d, off);
    off[K] = (int32_t)ones;
#pragma omp parallel num_threads(nt)
    {
        float *band = thread_band(band0, band_bytes);
        if (gb)
            for (int64_t q = 0; q < d->oh * wp; q++)
                band[ones + q] = 1.0f;
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < items; it++) {
            const int64_t ch = it / spans, b0 = it % spans * 4, b1 = fc_min64(blocks, b0 + 4);
            float *acc = acc0 + (ch * blocks + b0) * acc_elems;
            memset(acc, 0, (size_t)((b1 - b0) * acc_elems) * sizeof(float));
            for (int64_t n = ch * d->n / chunks; n < (ch + 1) * d->n / chunks; n++) {
                pixels_band(d, kr, x + n * d->c_in * d->h * d->w, band);
                for (int64_t b = b0; b < b1; b++)
                    kernel(Kt, off, band, wp, d->oh, d->ow, gy + (n * d->c_out + b * 4) * plane, plane,
                           acc + (b - b0) * acc_elems);
            }
        }
#pragma omp for schedule(static)
        for (int64_t b = 0; b < blocks; b++) {
            float *a = acc0 + b * acc_elems, out[4 * (WGRAD_PIXELS_MAX_K + 1)];
            for (int64_t ch = 1; ch < chunks; ch++) /* in chunk order */
                for (int64_t e = 0; e < acc_elems; e++)
                    a[e] += acc0[(ch * blocks + b) * acc_elems + e];
            finish(Kt, a, out, Kt);
            for (int64_t f = 0; f < 4; f++) {
                memcpy(gw + (b * 4 + f) * K, out + f * Kt, (size_t)K * sizeof(float));
                if (gb)
                    gb[b * 4 + f] = out[f * Kt + K];
            }
        }
    }
#else
    (void)d, (void)gy, (void)x, (void)gw, (void)gb, (void)ws;
#endif
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
    if (pass == FC_FWD) {
        bytes += direct_zeros_bytes(d) + (size_t)(d->nthreads > 0 ? d->nthreads : 1) * direct_scratch_bytes(d);
        if (fc_cpu_best_isa() >= FC_ISA_AVX2 && pixels_shape(d) && pixels_workspace_size(d) > bytes)
            bytes = pixels_workspace_size(d); /* either layout, from the workspace's start */
    }
    if (pass == FC_BWD_WEIGHTS) {
        bytes += (size_t)(d->nthreads > 0 ? d->nthreads : 1) * direct_acc_bytes(d);
        if (fc_cpu_best_isa() >= FC_ISA_AVX2 && pixels_wgrad_shape(d) && pixels_wgrad_workspace_size(d) > bytes)
            bytes = pixels_wgrad_workspace_size(d); /* either layout, from the workspace's start */
    }
    return bytes;
}

/* ---- direct: passes ------------------------------------------------------- */

static void direct_fwd(const fc_conv_desc *d, const void *x, const void *w, const void *bias,
                       void *y, void *ws)
{
    if (pixels_fwd_takes(d)) {
        pixels_fwd(d, (const float *)x, (const float *)w, (const float *)bias, (float *)y, ws, 0);
        return;
    }
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
    if (pixels_wgrad_takes(d)) {
        pixels_wgrad(d, (const float *)gy, (const float *)x, (float *)gw, (float *)gb, ws);
        return;
    }
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


/* The forward with a ReLU: in the pixel-vector kernel's store, else a pass after it. */
static void direct_fwd_post(const fc_conv_desc *d, const void *x, const void *w, const void *bias, int post,
                            void *y, void *ws)
{
    if (pixels_fwd_takes(d)) {
        pixels_fwd(d, (const float *)x, (const float *)w, (const float *)bias, (float *)y, ws, post == FC_POST_RELU);
        return;
    }
    direct_fwd(d, x, w, bias, y, ws);
    if (post == FC_POST_RELU)
        fc_relu_fwd(d->dtype, d->n * d->c_out * d->oh * d->ow, y, y, d->nthreads);
}

/* ---- the table entry ------------------------------------------------------ */

static const char *direct_rejects(const fc_conv_desc *d, int pass)
{
    (void)d;
    (void)pass;
    return NULL; /* any problem */
}

/* NaN/inf: the row kernels skip the zero padding, so they never compute 0 * w (fwd,
   bwd_data) or grad_y * 0 (bwd_weights): a non-finite weight (or grad_y) would not reach
   every output the definition sends it to. The pixel-vector forward computes the padding
   taps, which the definition has for the forward but not for the input gradient: either
   way a non-finite weight is routed away (FC_OPND_1), and with finite ones both agree. The
   pixel-vector weight gradient computes grad_y times the padding zeros, as the definition
   does, so there grad_y goes unchecked (direct_inexact). */
#define DIRECT_INEXACT {FC_OPND_1, FC_OPND_1, FC_OPND_0}

static unsigned direct_inexact(const fc_conv_desc *d, int pass)
{
    static const unsigned rows[3] = DIRECT_INEXACT;
    return pass == FC_BWD_WEIGHTS && pixels_wgrad_takes(d) ? 0 : rows[pass];
}

const fc_conv_impl fc_impl_direct = {
    FC_ALGO_DIRECT, "direct", "direct", 0, DIRECT_INEXACT,
    direct_rejects, direct_workspace_size, direct_fwd, direct_bwd_data, direct_bwd_weights, direct_fwd_post,
    NULL, NULL, direct_inexact,
};
