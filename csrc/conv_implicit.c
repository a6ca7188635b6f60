/*
 * conv_implicit.c: implicit GEMM, the im2col algorithm without the column matrix (see
 * implicit/implicit.h for the idea and the micro-kernels). This file is the table entry:
 * what it accepts, its workspace, its passes. The driver's pieces (the plan, the band, the
 * packing of W^T, each pass) are files of their own in implicit/, listed in
 * implicit/implicit_driver.h.
 *
 * Each work item copies a band of its image: the input rows a tile of output rows reads,
 * zero padding materialised, split by stride phase. With strides (sh, sw), channel c's
 * phase (a, b) is the plane P[i][j] = x_padded[c][sh*(i0 + i) + a][sw*j + b], rows of width
 * Wp = OW + (KW-1)*dw / sw. Tap (l, m) of output (t, j) then reads phase
 * ((l*dh) % sh, (m*dw) % sw) at row t + (l*dh) / sh, column j + (m*dw) / sw: a fixed offset
 * per tap plus q = t*Wp + j, so every stride is a unit-stride GEMM over the band (for
 * unit strides the band is simply the padded rows). The weight gradient reads its band that
 * way; the forward, which addresses every output pixel through its own pointer, copies a
 * strided layer's padded rows unphased (fwd_unphased). A grouped layer of few channels a
 * group packs G groups into one forward tile, their band values side by side (group_pack).
 * Then:
 *
 *   fwd          Y^T (pixels x Kg) = B(band)^T x W_g^T + bias: tiles of 8 output pixels
 *                (broadcast from the band) x NR channels (W^T packed once per call,
 *                aligned vector loads), over the whole K in one go, transposed in registers
 *                and stored straight into y. Only real output pixels are computed (an
 *                earlier channels x band-columns tiling also computed the Wp - OW gap
 *                columns of every row and split loads across cache lines: 7-10% slower on
 *                resnet_3x3 and mnist_c2). Splitting K to keep the band window in L1
 *                measured slower: the partial sums' traffic costs more.
 *   bwd_data     the input gradient of a unit-stride convolution is the forward
 *                convolution of grad_y with the kernel rotated by 180 degrees and its
 *                channel axes swapped (the packing reads the weights that way). With strides,
 *                each stride phase of the input (rows a, a + sh, ..., columns b, b + sw, ...)
 *                is such a forward with the taps that reach it (phase_problem), scattered
 *                into its positions; all phases run in one region (run_phases). Before, a
 *                strided input gradient took explicit im2col (col2im): this is 1.08-1.2x
 *                faster on dense 3x3 stride-2 layers and 1.6x on grouped ones (Zen 4).
 *   bwd_weights  dW^T (K x Kg) = sum over pixels of B(band) x grad_y^T, in batch chunks
 *                (wgrad_chunks, from sizes only): a work item owns whole MR-row blocks of
 *                one chunk's dW^T and walks that chunk's images and tiles in order; the
 *                chunks are added in chunk order. So each weight-gradient element is summed
 *                in one fixed order, whatever the thread count. Small images are summed
 *                several a kernel call (wgrad_images); with one chunk (and G = 1) the last
 *                call of each unit stores into grad_w itself, transposed in registers. G
 *                groups a tile as in the forward: grad_y^T's lanes in the order i*G + g
 *                (pack_bt_rows), the band's G-element chunks broadcast; 2x faster at 8
 *                channels a group, 3.6x at 4.
 *
 * Compared with explicit im2col this drops the pass that writes the column matrix and the
 * pass that packs it (together ~20% of a 3x3 layer's time on the reference machine).
 * NaN/inf: the band holds the padding as zeros, so the weight gradient multiplies it
 * exactly as the definition does. The forward skips kernel rows that read only padding
 * when the weights are finite, which its packing of W^T finds out on the way (no pass of
 * its own: a serial check took 6 % of a 512-channel 7x7 forward); otherwise it computes
 * every tap, as the definition does. The input gradient, via the forward, reads grad_y's
 * padding, which the definition has no term for, so the entry is inexact on non-finite
 * weights there: its packing finds them and it declines before computing anything
 * (bwd_data_checked), and the driver routes the call to an exact entry (conv.c).
 */
#include "conv_internal.h"
#include "implicit/implicit_driver.h"

/* Beyond this the band's padding would cost more memory than the lowering saves. */
#define MAX_BAND_ROW_BYTES ((int64_t)8 << 20)

/* pointwise: an unpadded unit-stride 1x1 problem is taken (a forward, or an input gradient
   and its phase problem, the transposed 1x1 forward); the weight gradient of such a layer
   reads its operands in place elsewhere (pointwise_wgrad.c, conv_im2col.c's gemm_1x1), and
   a strided one (stride <= dilation) stays with explicit im2col, as before. */
static int problem_accepted(const fc_conv_desc *d, int pointwise)
{
    if (d->stride_h > d->kh * d->dil_h || d->stride_w > d->kw * d->dil_w)
        return 0; /* strides that skip input the kernel never reads: the band would copy it */
    if ((!pointwise || d->stride_h != 1 || d->stride_w != 1) && d->kh == 1 && d->kw == 1 && d->pad_top == 0 &&
        d->pad_bottom == 0 && d->pad_left == 0 && d->pad_right == 0)
        return 0;
    const int64_t wp = band_width(d, 0), cg = d->c_in / d->groups;
    if (wp > 4 * d->ow + 64)
        return 0; /* padding that dwarfs the output */
    return cg * phases(d, 0) * band_rows(d, 1, 0) * wp * (int64_t)fc_elem_size(d->dtype) <= MAX_BAND_ROW_BYTES;
}

static int implicit_accepts(const fc_conv_desc *d, int pass)
{
    if (fc_implicit_kernels_for(d->dtype) == NULL)
        return 0;
    if (pass == FC_BWD_DATA) { /* the forward of each stride phase (phase_problem) */
        if (!problem_accepted(d, 1) || d->stride_h * d->stride_w > MAX_PHASES)
            return 0;
        for (int64_t a = 0; a < d->stride_h; a++)
            for (int64_t b = 0; b < d->stride_w; b++) {
                fc_conv_desc t;
                if (implicit_phase_problem(d, a, b, &t, NULL) && !problem_accepted(&t, 1))
                    return 0;
            }
        return 1;
    }
    return problem_accepted(d, pass == FC_FWD);
}

static size_t implicit_workspace_size(const fc_conv_desc *d, int pass)
{
    iplan p;
    if (pass != FC_BWD_DATA) {
        implicit_make_plan(d, pass, &p);
        return implicit_plan_bytes(&p);
    }
    if (strided(d)) {
        phase_set S;
        implicit_plan_phases(d, &S);
        return S.total;
    }
    fc_conv_desc t;
    implicit_phase_problem(d, 0, 0, &t, NULL);
    implicit_make_plan(&t, FC_FWD, &p);
    return tap_map_bytes(d) + implicit_plan_bytes(&p);
}

static void implicit_fwd(const fc_conv_desc *d, const void *x, const void *w, const void *bias, void *y, void *ws)
{
    implicit_run_fwd(d, x, w, NULL, 0, bias, 0, NULL, y, ws, 0);
}

static void implicit_fwd_post(const fc_conv_desc *d, const void *x, const void *w, const void *bias, int post,
                              void *y, void *ws)
{
    implicit_run_fwd(d, x, w, NULL, 0, bias, post == FC_POST_RELU, NULL, y, ws, 0);
}

/* ---- the table entry ------------------------------------------------------ */

static const char *implicit_rejects(const fc_conv_desc *d, int pass)
{
    if (fc_implicit_kernels_for(d->dtype) == NULL)
        return "implicit_gemm needs AVX2 or AVX-512 (not active on this CPU or disabled by FASTCONV_ISA)";
    return implicit_accepts(d, pass) ? NULL
                                     : "implicit_gemm does not take this geometry (a 1x1 unpadded weight "
                                       "gradient, strides longer than the kernel, padding that dwarfs the "
                                       "output, or a band too large)";
}

const fc_conv_impl fc_impl_implicit_gemm = {
    FC_ALGO_IMPLICIT_GEMM, "implicit_gemm", "im2col", 0, {0, FC_OPND_1, 0},
    implicit_rejects, implicit_workspace_size, implicit_fwd, NULL, implicit_bwd_weights,
    implicit_fwd_post, NULL, implicit_bwd_data_checked,
};
