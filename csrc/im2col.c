/* im2col.c: im2col and col2im over a tile of output rows (see im2col.h). Memory-bound
   copies: the baseline ISA's vectorisation (and memcpy) is all they need. */
#include <string.h>

#include "im2col.h"

#define REAL float
#define FN(name) name##_f32
#include "im2col_kernels.inc"
#undef REAL
#undef FN
#define REAL double
#define FN(name) name##_f64
#include "im2col_kernels.inc"
#undef REAL
#undef FN

void fc_im2col_tile(const fc_conv_desc *d, fc_col_range r, const void *x_g, int64_t i0,
                    int64_t rows, int64_t k0, int64_t k1, void *cols)
{
    if (d->dtype == FC_F64)
        im2col_f64(d, r, (const double *)x_g, i0, rows, k0, k1, (double *)cols);
    else
        im2col_f32(d, r, (const float *)x_g, i0, rows, k0, k1, (float *)cols);
}

void fc_col2im_tile(const fc_conv_desc *d, fc_col_range r, const void *dcols, int64_t i0,
                    int64_t rows, int64_t c0, int64_t c1, void *gx_g)
{
    if (d->dtype == FC_F64)
        col2im_f64(d, r, (const double *)dcols, i0, rows, c0, c1, (double *)gx_g);
    else
        col2im_f32(d, r, (const float *)dcols, i0, rows, c0, c1, (float *)gx_g);
}
