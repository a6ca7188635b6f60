/*
 * direct.h: the direct-convolution work items, one table per ISA.
 *
 * The driver (conv.c) splits a pass into independent work items and runs them in its
 * one OpenMP region; an item is serial code that owns the outputs it writes, so any
 * thread count gives bitwise the same result and no reduction crosses threads.
 *
 *   fwd item          (image n, a run of output channels of one group)
 *   bwd_data item     (image n, block of <= FC_DIRECT_KB input channels of one group)
 *   bwd_weights item  (block of <= FC_DIRECT_KB output channels, one input channel c of
 *                      their group): grad_w[k0:k0+kb, c, :, :]
 *   bias item         (output channel k): grad_b[k]
 */
#ifndef FASTCONV_DIRECT_H
#define FASTCONV_DIRECT_H

#include "conv_internal.h"

/* Channels updated together from one loaded row: 4 rows of outputs plus one input row
   stay in L1 for any width up to a few thousand pixels, and 4 independent FMA chains
   hide the FMA latency of the row update. */
#define FC_DIRECT_KB 4


/* Forward items take any number kc of channels (done FC_DIRECT_KB at a time) and a
   per-thread scratch of fc_direct_fwd_scratch_elems() elements. */
typedef void (*fc_fwd_item_fn)(const fc_conv_desc *d, fc_col_range cols,
                               const void *x_ng, const void *w_k, const void *bias_k,
                               void *y_nk, int64_t kc, void *scratch);
typedef void (*fc_bwd_data_item_fn)(const fc_conv_desc *d, fc_col_range cols,
                                    const void *gy_ng, const void *w_gc,
                                    void *gx_nc, int64_t cb);
typedef void (*fc_bwd_weights_item_fn)(const fc_conv_desc *d, fc_col_range cols,
                                       const void *gy_k, const void *x_c,
                                       void *gw_kc, void *acc, int64_t kb);
typedef void (*fc_bias_item_fn)(const fc_conv_desc *d, const void *gy_k, void *gb_k, void *acc);

typedef struct fc_direct_ops {
    fc_fwd_item_fn fwd[2];               /* indexed by enum fc_dtype */
    fc_bwd_data_item_fn bwd_data[2];
    fc_bwd_weights_item_fn bwd_weights[2];
    fc_bias_item_fn bias[2];
} fc_direct_ops;

extern const fc_direct_ops fc_direct_ops_generic;
#if defined(__x86_64__) && defined(__GNUC__)
#define FC_HAVE_X86_KERNELS 1
extern const fc_direct_ops fc_direct_ops_avx2;
extern const fc_direct_ops fc_direct_ops_avx512;
#endif

/* The table for the active ISA. */
const fc_direct_ops *fc_direct_ops_active(void);

/* Floats of one pixel-vector weight-gradient accumulator of K taps (below): AVX-512's layout,
   AVX2's needs less. */
#define FC_WGRAD_PIXELS_ACC(K) (((K) + 3) / 4 * 256)

#ifdef FC_HAVE_X86_KERNELS
/* The pixel-vector forward of one image and 8 output channels (direct_fwd_pixels_avx512.c):
   y[i*oh*ow + q] = (relu of) bias[i] (bias nullable) + sum over k < K of
   band[off[k] + row(q)*wp + col(q)] * wpk[k*8 + i], for i < 8 and pixels q < oh*ow, where
   band is the padded image (wp columns a row, every tap inside). */
void fc_direct_fwd_pixels_f32_avx512(int64_t K, const float *wpk, const int32_t *off, const float *band,
                                     int64_t wp, int64_t oh, int64_t ow, const float *bias, int relu, float *y);
/* The same on AVX2 (direct_fwd_pixels_avx2.c); band needs 7 readable elements past its
   last row. */
void fc_direct_fwd_pixels_f32_avx2(int64_t K, const float *wpk, const int32_t *off, const float *band,
                                   int64_t wp, int64_t oh, int64_t ow, const float *bias, int relu, float *y);
/* The pixel-vector weight gradient of one image and 4 filters (direct_wgrad_pixels_*.c):
   acc (FC_WGRAD_PIXELS_ACC(K) floats, in the ISA's own layout) += the lane-wise partial sums
   of grad_y[f*plane + q] * band[off[k] + row(q)*wp + col(q)] over the pixels q < oh*ow, for
   f < 4, k < K; finish reduces acc's lanes: out[f*ld + k] = gw[f][k]. */
void fc_direct_wgrad_pixels_f32_avx512(int64_t K, const int32_t *off, const float *band, int64_t wp, int64_t oh,
                                       int64_t ow, const float *gy, int64_t plane, float *acc);
void fc_direct_wgrad_pixels_finish_f32_avx512(int64_t K, const float *acc, float *out, int64_t ld);
void fc_direct_wgrad_pixels_f32_avx2(int64_t K, const int32_t *off, const float *band, int64_t wp, int64_t oh,
                                     int64_t ow, const float *gy, int64_t plane, float *acc);
void fc_direct_wgrad_pixels_finish_f32_avx2(int64_t K, const float *acc, float *out, int64_t ld);
#endif

/* Width of the column-padded input rows the unit-stride forward reads: every tap of every
   output column lands inside, so its inner loops carry no bounds test. */
static inline int64_t fc_direct_padded_width(const fc_conv_desc *d)
{
    return d->ow + (d->kw - 1) * d->dil_w;
}
/* 1 when the forward item may take the register-blocked path on column-padded rows. The
   register-blocked forward copies the image with its column padding materialised. Where
   the padding dwarfs the output (a huge dilation with "same" padding, say), that copy
   would cost memory out of all proportion, so the row kernel, which needs none, runs. */
static inline int fc_direct_fwd_padded(const fc_conv_desc *d)
{
    return d->stride_w == 1 && fc_direct_padded_width(d) <= 4 * d->ow + 64;
}
/* Elements of per-thread scratch the forward item needs (a column-padded image group). */
int64_t fc_direct_fwd_scratch_elems(const fc_conv_desc *d);

/* Elements of per-thread accumulator the bwd_weights and bias items need. */
int64_t fc_direct_acc_elems(const fc_conv_desc *d);

#endif
