/*
 * winograd.h: Winograd minimal filtering F(m x m, 3 x 3), m in {2, 4, 6}, for 3x3,
 * stride-1, dilation-1 layers (any padding, groups), float32 and float64, three passes.
 *
 *   fwd          per block of T output tiles of one image and group:
 *                  V[pos][c][t] = (BT d_ct B)[pos]            input transform
 *                  M[pos]       = U[pos] (Kg x Cg) * V[pos] (Cg x T)   alpha^2 GEMMs
 *                  y tile       = AT M[.][k][t] AT^T (+ bias)   output transform
 *                with U[pos][k][c] = (G g_kc G^T)[pos] computed once per call.
 *   bwd_data     the forward of the rotated, channel-swapped kernel on grad_y (the unit-
 *                stride input gradient is a forward convolution, padding 2 - pad).
 *   bwd_weights  dU[pos] += Ybar[pos] (Kg x T) * V[pos]^T over all blocks in a fixed
 *                order, Ybar = A gy_tile AT (the adjoint of the output transform), then
 *                dg = G^T dU G (the adjoint of the kernel transform).
 *
 * Parallelism: one region; per block the team splits the transforms over channels and
 * the GEMMs over positions (each GEMM serial, each output element owned by one thread);
 * block sizes never depend on the thread count, so every sum runs in one fixed order and
 * results are bitwise the same for any team size. The transforms are one template
 * (winograd_kernels.inc) compiled per ISA (generic C, AVX2, AVX-512): a channel's source
 * tiles are first gathered tile-major, so both passes run vectors over the block's tiles
 * (hundreds long, whatever the image width; vectorising over a row's tiles left 7-element
 * loops on 28-pixel images in scalar code).
 */
#ifndef FASTCONV_WINOGRAD_H
#define FASTCONV_WINOGRAD_H

#include "../conv_internal.h"

/* Geometry of one transform call: tiles of m x m outputs over an (oh, ow) output plane,
   tile (ti, tj) reading its source plane (h x w) from (m*ti - pt, m*tj - pl). */
typedef struct fc_wino_geom {
    int64_t h, w;       /* source plane */
    int64_t oh, ow;     /* output plane */
    int64_t pt, pl;     /* source origin of tile (0, 0), negated */
    int64_t tw;         /* tiles per row */
    int64_t pos_stride; /* elements between two transform positions in V / M */
} fc_wino_geom;

/* Source tiles of tiles [t0, t1) of one plane (row-major tile ids), tile-major:
   D[(r * R + q) * T + (t - t0)] = tile t's source pixel (r, q), zero outside the plane;
   R = alpha for the input, m for the output gradient. */
typedef void (*fc_wino_gather_fn)(const fc_wino_geom *g, const void *plane, int64_t t0, int64_t t1, void *D,
                                  int64_t T);
/* dst[pos * ps + t] for t in [0, nT), from D (as above): the input transform (BT d B)
   or the output-gradient transform (A gy AT). scratch: fc_wino_scratch_elems. */
typedef void (*fc_wino_src_tf_fn)(const void *D, int64_t nT, int64_t T, void *dst, int64_t ps, void *scratch);
/* y tile = AT src AT^T (+ bias) for tiles [t0, t1): src[pos * pos_stride + (t - t0)]. */
typedef void (*fc_wino_out_tf_fn)(const fc_wino_geom *g, const void *src, int64_t t0, int64_t t1,
                                  const void *bias /* nullable: one scalar */, void *y, void *scratch);
/* U[pos * pos_stride + i] = (G g_i G^T)[pos] for n 3x3 kernels g_i stored one after another. */
typedef void (*fc_wino_kernel_tf_fn)(const void *g, int64_t n, void *u, int64_t pos_stride);
/* dg (3x3) = G^T dU G for one kernel: dU[pos * pos_stride]. */
typedef void (*fc_wino_kernel_adj_fn)(const void *du, int64_t pos_stride, void *dg);

typedef struct fc_wino_ops {
    fc_wino_gather_fn input_gather[2]; /* [dtype] */
    fc_wino_src_tf_fn input[2];
    fc_wino_gather_fn grad_gather[2];
    fc_wino_src_tf_fn grad[2];
    fc_wino_out_tf_fn output[2];
    fc_wino_kernel_tf_fn kernel[2];
    fc_wino_kernel_adj_fn kernel_adj[2];
} fc_wino_ops;

/* [0..2]: m = 2, 4, 6 */
extern const fc_wino_ops fc_wino_ops_generic[3];
#if defined(__x86_64__) && defined(__GNUC__)
#define FC_WINO_HAVE_X86 1
extern const fc_wino_ops fc_wino_ops_avx2[3];
extern const fc_wino_ops fc_wino_ops_avx512[3];
#endif

/* Elements of per-thread transform scratch (D plus the transforms' own) for tiles of m
   outputs and blocks of T tiles. */
int64_t fc_wino_scratch_elems(int m, int64_t T);

/* The tile size m (2, 4 or 6) the entry uses for this problem, and whether "auto" should
   prefer Winograd (conv_choose.c). */
int fc_winograd_tile(const fc_conv_desc *d, int pass);
int fc_winograd_preferred(const fc_conv_desc *d, int pass);

#endif
