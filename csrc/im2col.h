/*
 * im2col.h: lowering a tile of one image to a column matrix, and its exact adjoint.
 *
 * A tile is the output rows [i0, i0 + rows) of one image and one group. Its column
 * matrix has one row per (c, l, m) of the group's kernel, K = Cg * KH * KW rows, and
 * rows * OW columns:
 *     cols[(c*KH + l)*KW + m][t*OW + j] = x[c, (i0+t)*sh + l*dh - pt, j*sw + m*dw - pl]
 * (zero outside the image). Callers may split the K rows between threads: [k0, k1).
 */
#ifndef FASTCONV_IM2COL_H
#define FASTCONV_IM2COL_H

#include "conv_internal.h" /* fc_col_range */

/* cols rows [k0, k1) of the tile; x_g points at x[n, g*Cg]. */
void fc_im2col_tile(const fc_conv_desc *d, fc_col_range cols_rng, const void *x_g, int64_t i0,
                    int64_t rows, int64_t k0, int64_t k1, void *cols);

/* grad_x[n, g*Cg + c] += the tile's rows of dcols, for channels [c0, c1) of the group.
   Channel-split so threads never write the same pixel. */
void fc_col2im_tile(const fc_conv_desc *d, fc_col_range cols_rng, const void *dcols, int64_t i0,
                    int64_t rows, int64_t c0, int64_t c1, void *gx_g);

#endif
