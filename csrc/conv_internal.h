/* conv_internal.h: what the driver (conv.c) and the algorithm files share. */
#ifndef FASTCONV_CONV_INTERNAL_H
#define FASTCONV_CONV_INTERNAL_H

#include "fastconv.h"

/* Workspace blocks start on a cache line (and on an AVX-512 vector). */
#define FC_ALIGN 64

static inline int64_t fc_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; } /* a >= 0, b > 0 */
static inline int64_t fc_round_up(int64_t a, int64_t b) { return fc_ceil_div(a, b) * b; }
static inline int64_t fc_min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t fc_max64(int64_t a, int64_t b) { return a > b ? a : b; }

size_t fc_elem_size(int dtype);
size_t fc_align_up(size_t n);
int64_t fc_macs(const fc_conv_desc *d);
/* Threads one call of this problem uses: 1 below the serial threshold, else d->nthreads. */
int fc_team_size(const fc_conv_desc *d);
void *fc_aligned_alloc(size_t bytes);
void fc_build_col_ranges(const fc_conv_desc *d, int64_t *lo, int64_t *hi);
/* The unit-stride input gradient as a forward problem: grad_x = conv(grad_y, rot180(w) with
   its channel axes swapped), padding (eff_k - 1 - pad) per side (negative: a crop). */
void fc_transposed_problem(const fc_conv_desc *d, fc_conv_desc *t);


/* conv_im2col.c: im2col + GEMM for the three passes. */
int fc_im2col_accepts(const fc_conv_desc *d, int pass);
int fc_im2col_preferred(const fc_conv_desc *d, int pass);
size_t fc_im2col_workspace_size(const fc_conv_desc *d, int pass);
void fc_im2col_fwd(const fc_conv_desc *d, const void *x, const void *w, const void *bias, void *y, void *ws);
void fc_im2col_bwd_data(const fc_conv_desc *d, const void *gy, const void *w, void *gx, void *ws);
void fc_im2col_bwd_weights(const fc_conv_desc *d, const void *gy, const void *x, void *gw, void *gb, void *ws);

/* conv_implicit.c: implicit GEMM (no column matrix) for unit-stride layers, used by the
   im2col entry points where it accepts the problem. */
int fc_implicit_accepts(const fc_conv_desc *d, int pass);
size_t fc_implicit_workspace_size(const fc_conv_desc *d, int pass);
/* 1 when every weight is finite: the implicit input gradient needs that (see the file). */
int fc_implicit_weights_finite(const fc_conv_desc *d, const void *w);
void fc_implicit_fwd(const fc_conv_desc *d, const void *x, const void *w, const void *bias, void *y, void *ws);
void fc_implicit_bwd_data(const fc_conv_desc *d, const void *gy, const void *w, void *gx, void *ws);
void fc_implicit_bwd_weights(const fc_conv_desc *d, const void *gy, const void *x, void *gw, void *gb, void *ws);

#endif
