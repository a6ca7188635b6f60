/* pointwise_wgrad.h: the weight gradient of a 1x1, stride-1, unpadded convolution on the
   implicit-GEMM micro-kernels (pointwise_wgrad.c), used by the gemm_1x1 entry. */
#ifndef FASTCONV_POINTWISE_WGRAD_H
#define FASTCONV_POINTWISE_WGRAD_H

#include <stddef.h>

#include "fastconv.h"

/* fc_pointwise_wgrad_suits (fastconv.h): whether the caller runs this or its GEMM. */
size_t fc_pointwise_wgrad_workspace(const fc_conv_desc *d);
/* grad_w (and grad_bias when gb is not NULL) of the pointwise problem d. */
void fc_pointwise_wgrad(const fc_conv_desc *d, const void *gy, const void *x, void *gw, void *gb, void *ws);

#endif
