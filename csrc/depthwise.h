/*
 * depthwise.h: depthwise convolution (groups == C_in, one input channel per group;
 * C_out = groups * multiplier) for the three passes, float32 and float64.
 *
 * Entry points (called by conv.c for algorithm "auto" when fc_depthwise_accepts()):
 * each opens at most one OpenMP parallel region of fc_team_size(d) threads, uses only
 * the caller's workspace (>= fc_depthwise_workspace_size bytes, 64-byte aligned, any
 * content on entry) as scratch, writes every output element, and gives bitwise the same
 * result for any thread count (work items own their outputs; the weight gradient sums
 * fixed chunks of the batch in a fixed order).
 *
 * How (depthwise.c drives, depthwise_kernels.inc computes, one instance per ISA):
 *   - A band of rows of one source plane is copied into per-thread scratch, zero padded
 *     and split by column phase (column u of phase p = padded column u*stride_w + p), so
 *     every tap of every stride reads a contiguous, in-bounds row: no bounds tests and no
 *     gathers in the inner loops.
 *   - fwd: a register tile of R output rows x one vector of columns accumulates all taps
 *     before one store (loads of a band row are shared by the R rows that use it).
 *   - bwd_data: the forward kernel at stride 1 over grad_y upsampled by the stride (zeros
 *     inserted, in the band copy), with the kernel rotated by 180 degrees and padding
 *     (KH-1)*dil - pad, summing the multiplier's channels in registers.
 *   - bwd_weights: per output channel, KH*KW vector accumulators (per-lane partial sums)
 *     over a fixed chunk of the batch's rows; lanes, then chunks, summed in fixed order.
 */
#ifndef FASTCONV_DEPTHWISE_H
#define FASTCONV_DEPTHWISE_H

#include <stddef.h>
#include <stdint.h>

#include "fastconv.h"

int fc_depthwise_accepts(const fc_conv_desc *d, int pass);
size_t fc_depthwise_workspace_size(const fc_conv_desc *d, int pass);
void fc_depthwise_fwd(const fc_conv_desc *d, const void *x, const void *w, const void *bias,
                      void *y, void *ws);
void fc_depthwise_bwd_data(const fc_conv_desc *d, const void *gy, const void *w, void *gx,
                           void *ws);
void fc_depthwise_bwd_weights(const fc_conv_desc *d, const void *gy, const void *x, void *gw,
                              void *gb /* nullable */, void *ws);

/* ---- internal: shared by depthwise.c and the per-ISA kernel files -------------------- */

/* Geometry of one "correlate a padded source plane" problem:
     out[i][j] = sum_{l,m} k[l][m] * src[i*sh + l*dh - pt][j*sw + m*dw - pl]
   (zero outside the source). fwd and bwd_weights use the descriptor's own geometry;
   bwd_data is this at stride 1 with src = grad_y upsampled by the stride and the kernel
   rotated. */
typedef struct fc_dw_geom {
    int64_t hs, ws;        /* source plane (virtual, when upsampled) */
    int64_t uh, uw, wsrc;  /* upsampling by zero insertion (1, 1 for none); real row length */
    int64_t ho, wo;        /* output plane (for bwd_weights: the grad_y plane) */
    int64_t pt, pl;        /* padded row t holds source row t - pt (any sign) */
    int64_t sh, sw, dh, dw, kh, kw;
    int64_t wq;            /* elements per buffer row of one phase (multiple of 64 bytes) */
    int64_t org;           /* row element u lies at u + org from the row's aligned start */
    int64_t band;          /* output rows per band */
    int64_t buf_rows;      /* buffer rows of one phase: (band-1)*sh + (kh-1)*dh + 1 */
    int64_t phase_stride;  /* elements between phases: buf_rows * wq */
    int64_t src_stride;    /* elements between the buffers of two sources */
    const int64_t *cofs;   /* [kw]: buffer offset of kernel column m (phase and shift) */
} fc_dw_geom;

/* Memory the next band will read (up to two byte ranges), fetched into L2 a little at a
   time while the current band is computed (or copied): planes are short streams that the
   hardware prefetchers pick up late, and bunching the requests in the copy would leave
   them waiting for each other rather than overlapping the arithmetic. */
typedef struct fc_dw_pf {
    const char *p[2];
    int64_t bytes[2];
} fc_dw_pf;

/* Copy padded rows [t0, t0 + nrows) of a source plane into a band buffer. Band buffers
   are passed as their logical origin: the 64-byte aligned block plus org elements.
   data_only: the buffer already holds rows t0.. of a plane of this geometry, so its
   zero padding is in place and only the source elements are copied. pf: nullable; when
   NULL the copy prefetches its own rows a little ahead. */
typedef void (*fc_dw_copy_fn)(const fc_dw_geom *g, const void *src, void *buf, int64_t t0,
                              int64_t nrows, int data_only, const fc_dw_pf *pf);
/* Output rows [0, nrows) of a band (band row 0 = output row i0, out points at it, row
   stride ldo): sum over nsrc sources (buffers buf + s*src_stride, kernels k + s*kh*kw).
   accum: add to out instead of storing (bias ignored). */
typedef void (*fc_dw_fwd_fn)(const fc_dw_geom *g, const void *buf, int64_t nsrc, const void *k,
                             const void *bias /* nullable: one scalar */, void *out,
                             int64_t ldo, int64_t nrows, int accum, const fc_dw_pf *pf);
/* Weight-gradient partial sums of one band for nk output channels of its input channel
   (channel q's grad_y rows at gy + q * gs elements): acc (nk groups of kh*kw + 1 vectors
   of 64 bytes, the last of a group the bias sum) += per-lane sums of gy_q[i][j] *
   band(i, j, tap), gy rows [0, nrows). */
typedef void (*fc_dw_bww_fn)(const fc_dw_geom *g, const void *buf, const void *gy, int64_t gs,
                             int64_t nk, int64_t nrows, void *acc, const fc_dw_pf *pf);
/* (The kernels take pf, nullable: memory to prefetch into L2, spread over their row
   tiles, so that fetching the next band overlaps this band's arithmetic.) */
/* Reduce acc (as above) lanes in fixed order into out[kh*kw + 1]. */
typedef void (*fc_dw_reduce_fn)(const fc_dw_geom *g, const void *acc, void *out);
/* dst[0..n) = src[0..n) with streaming stores where the ISA has them (then a fence). */
typedef void (*fc_dw_stream_fn)(void *dst, const void *src, int64_t n);

typedef struct fc_dw_ops {
    fc_dw_copy_fn copy[2];   /* indexed by enum fc_dtype */
    fc_dw_fwd_fn fwd[2];
    fc_dw_bww_fn bww[2];
    fc_dw_reduce_fn reduce[2];
    fc_dw_stream_fn stream[2];
} fc_dw_ops;

extern const fc_dw_ops fc_dw_ops_generic;
#if defined(__x86_64__) && defined(__GNUC__)
#define FC_DW_HAVE_X86 1
extern const fc_dw_ops fc_dw_ops_avx2;
extern const fc_dw_ops fc_dw_ops_avx512;
#endif

/* Bytes of one bwd_weights accumulator vector slot (the widest vector, any ISA). */
#define FC_DW_VSLOT 64

#endif
