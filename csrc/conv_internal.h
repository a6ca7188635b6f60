/*
 * conv_internal.h: the one internal layer every algorithm file may use (and that uses none
 * of them): size helpers, team size, aligned allocation, the valid-column table, the
 * transposed (input-gradient) problem, 180-degree weight rotation, finiteness checks and
 * the bias gradient; and the type of an entry of the implementation table (conv.c).
 *
 * Dependencies run one way: conv.c (driver, table) -> algorithm files -> this layer
 * (conv_common.c) and their own kernels. No algorithm file calls another algorithm or
 * the driver.
 */
#ifndef FASTCONV_CONV_INTERNAL_H
#define FASTCONV_CONV_INTERNAL_H

#include <stddef.h>

#include "fastconv.h"

/* Workspace blocks start on a cache line (and on an AVX-512 vector). */
#define FC_ALIGN 64

static inline int64_t fc_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; } /* a >= 0, b > 0 */
static inline int64_t fc_round_up(int64_t a, int64_t b) { return fc_ceil_div(a, b) * b; }
static inline int64_t fc_min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t fc_max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* Valid output-column range [lo[m], hi[m]) of kernel column m: the columns j whose
   input column j*stride_w + m*dil_w - pad_left lies inside the image. Built once per
   call by the driver so the inner loops carry no bounds test. */
typedef struct fc_col_range {
    const int64_t *lo, *hi;
    const void *zeros; /* fwd: a row of >= padded-width zeros, read for rows outside the image */
} fc_col_range;

/* ---- conv_common.c ------------------------------------------------------------------ */
size_t fc_elem_size(int dtype);
/* A 1x1, stride-1, unpadded problem: its input is the column matrix (gemm_1x1). */
int fc_is_pointwise(const fc_conv_desc *d);
size_t fc_align_up(size_t n);
/* Distance between consecutive per-thread scratch slots of one workspace for a slot of
   `bytes` used by a team of nt: the slot plus FC_THREAD_SLOT_GUARD unused bytes when nt > 1
   (see conv_common.c). */
size_t fc_thread_slot_stride(size_t bytes, int nt);
/* Bytes of nt such slots, `stride` = fc_thread_slot_stride(...) apart (no gap after the last). */
size_t fc_thread_slots_bytes(size_t stride, int nt);
/* dst[e] += src[e] for e in [e0, e1), elements of dtype: the batch-chunk partial sums of a
   weight gradient added into the first chunk's (explicit im2col, implicit GEMM). */
void fc_add_elems(int dtype, void *dst, const void *src, int64_t e0, int64_t e1);
int64_t fc_macs(const fc_conv_desc *d);
/* Threads one call of this problem uses: 1 below the serial threshold, else
   fc_team_limit(d->nthreads). */
int fc_team_size(const fc_conv_desc *d);
void *fc_aligned_alloc(size_t bytes);
/* Fills the fc_col_range tables lo, hi (kw entries each). */
void fc_build_col_ranges(const fc_conv_desc *d, int64_t *lo, int64_t *hi);
/* The unit-stride input gradient as a forward problem: grad_x = conv(grad_y, rot180(w) with
   its channel axes swapped), padding (eff_k - 1 - pad) per side (negative: a crop). */
void fc_transposed_problem(const fc_conv_desc *d, fc_conv_desc *t);
/* wt (the transposed problem's weight, (C_in, C_out/groups, KH, KW)) = rot180(w) with the
   channel axes of each group swapped. */
void fc_rotate_weights(const fc_conv_desc *d, const void *w, void *wt);
/* 1 when all count elements of a (dtype) are finite; on up to nt threads (a team size). */
int fc_all_finite(const void *a, int64_t count, int dtype, int nt);
/* Bias gradient of one output channel k: *gb_k = sum of grad_y[:, k] in a fixed order;
   gy_k points at grad_y[0, k]. */
void fc_bias_grad_channel(const fc_conv_desc *d, const void *gy_k, void *gb_k);
/* The bias gradient fused into a weight gradient's own pass over grad_y (first: the first
   block, which sets rather than adds). fc_bias_add_rows: gb[r] (+)= sum of a[r*lda + 0..len)
   for r < count (grad_y rows in place). fc_bias_add_bt_share: of a packed tile bt (pixels x
   ldb, grad_y^T) of one group's kg channels, which every work item whose unit range (of
   units split into nt ranges) meets the group's units [g_u0, g_u1) has packed, range tid's
   share of the columns: gb_g[k] (+)= sum over the pixels of bt[q*ldb + k]. */
void fc_bias_add_rows(int dtype, const void *a, int64_t lda, int64_t count, int64_t len, void *gb, int first);

/* The ReLU post-op on rows [0, count) of len elements, row stride ld, in place, on the calling
   thread (fc_relu_fwd's rule: x > 0 or NaN ? x : +0): a tile an entry has just stored. */
void fc_relu_rows(int dtype, void *y, int64_t ld, int64_t count, int64_t len);
/* The same rows of a gradient through a ReLU whose output is r (same layout): y = r > 0 ? y : 0. */
void fc_relu_mask_rows(int dtype, void *y, const void *r, int64_t ld, int64_t count, int64_t len);
void fc_bias_add_bt_share(int dtype, const void *bt, int64_t pixels, int64_t ldb, int64_t kg, int64_t units,
                          int nt, int tid, int64_t g_u0, int64_t g_u1, void *gb_g, int first);

/* ---- the implementation table ------------------------------------------------------- */

/* Operands of a pass, in the entry points' order: fwd (x, w), bwd_data (grad_y, w),
   bwd_weights (grad_y, x). An entry's inexact[pass] has bit FC_OPND_0 / FC_OPND_1 set when
   a NaN or inf in that operand may not land where the definition puts it (the driver then
   routes the call to an exact entry). */
#define FC_OPND_0 1u
#define FC_OPND_1 2u
/* ... only when the problem is padded (the inexactness is a skipped padding zero): an
   unpadded call is not checked (the check reads the whole operand: on mnist's first layer
   it took a fifth of the weight gradient's time). */
#define FC_OPND_IF_PADDED 4u

typedef struct fc_conv_impl {
    int id;                 /* enum fc_algo */
    const char *name;       /* algorithm= name */
    const char *family;     /* the public algorithm it belongs to ("im2col" groups the GEMMs) */
    int reduced_precision;  /* 1: its error bound exceeds the definition's (winograd) */
    unsigned inexact[3];    /* per pass: FC_OPND_* bits, see above */
    /* NULL when the entry can run this pass of this problem, else why not (capability
       only: whether it is fast is the preference rule's business, conv_choose.c). */
    const char *(*rejects)(const fc_conv_desc *d, int pass);
    size_t (*workspace_size)(const fc_conv_desc *d, int pass);
    void (*fwd)(const fc_conv_desc *d, const void *x, const void *w, const void *bias, void *y, void *ws);
    void (*bwd_data)(const fc_conv_desc *d, const void *gy, const void *w, void *gx, void *ws);
    void (*bwd_weights)(const fc_conv_desc *d, const void *gy, const void *x, void *gw, void *gb, void *ws);
    /* The forward with a post-op (enum fc_post) in its store, or NULL: the driver then runs
       fwd and applies the post-op in a pass of its own over y. */
    void (*fwd_post)(const fc_conv_desc *d, const void *x, const void *w, const void *bias, int post, void *y,
                     void *ws);
    /* The input gradient through a ReLU whose output relu_out is (fc_conv_bwd_data), applied
       where it stores each tile, or NULL: the driver then runs a pass of its own. */
    void (*bwd_data_relu)(const fc_conv_desc *d, const void *gy, const void *w, const void *relu_out, void *gx,
                          void *ws);
    /* NULL, or in place of bwd_data and bwd_data_relu (then NULL), for an entry inexact on
       non-finite weights (inexact[FC_BWD_DATA] == FC_OPND_1) that finds them in the pass
       that packs them: the input gradient, through relu_out unless NULL, or FC_DECLINED,
       before any of it is computed, where w holds a NaN or inf; the driver then runs the
       exact entry route() would have chosen. A finite call thus makes no pass of its own
       over the weights (the driver's check: 8 % of a 512-channel 7x7 input gradient at
       batch 1). */
    int (*bwd_data_checked)(const fc_conv_desc *d, const void *gy, const void *w, const void *relu_out, void *gx,
                            void *ws);
    /* NULL, or inexact[pass] for this problem, where the entry runs exact and inexact code
       paths by shape (direct: its pixel-vector weight gradient computes the padding taps the
       row kernels skip); see fc_impl_inexact. */
    unsigned (*inexact_of)(const fc_conv_desc *d, int pass);
} fc_conv_impl;

/* e's FC_OPND_* bits for this problem and pass. */
static inline unsigned fc_impl_inexact(const fc_conv_impl *e, const fc_conv_desc *d, int pass)
{
    return e->inexact_of ? e->inexact_of(d, pass) : e->inexact[pass];
}

/* bwd_data_checked's answer where the weights hold a NaN or inf: internal to the driver, never
   returned to a caller, and apart from every fc_status (FC_ENOMEM is 1) */
#define FC_DECLINED (-1)

/* The entries, each defined in its algorithm's own file. */
extern const fc_conv_impl fc_impl_depthwise;     /* depthwise.c */
extern const fc_conv_impl fc_impl_winograd, fc_impl_winograd_f2, fc_impl_winograd_f4,
    fc_impl_winograd_f6;                         /* winograd/winograd.c */
extern const fc_conv_impl fc_impl_gemm_1x1;      /* conv_im2col.c */
extern const fc_conv_impl fc_impl_implicit_gemm; /* conv_implicit.c */
extern const fc_conv_impl fc_impl_im2col;        /* conv_im2col.c */
extern const fc_conv_impl fc_impl_direct;        /* conv_direct.c */

/* conv.c: the table, most specialised first; the entry of an id (NULL if none). */
const fc_conv_impl *fc_impl_at(int index); /* NULL past the end */
const fc_conv_impl *fc_impl_by_id(int id);
/* conv_choose.c: the preference rule of "auto" (an id). */
int fc_conv_prefer(const fc_conv_desc *d, int pass);

#endif
