/* im2col.c: im2col + GEMM path (work in progress: not yet available). */
#include "conv_internal.h"

int fc_im2col_accepts(const fc_conv_desc *d, int pass) { (void)d; (void)pass; return 0; }
int fc_im2col_preferred(const fc_conv_desc *d, int pass) { (void)d; (void)pass; return 0; }
size_t fc_im2col_workspace_size(const fc_conv_desc *d, int pass) { (void)d; (void)pass; return 0; }
void fc_im2col_fwd(const fc_conv_desc *d, const void *x, const void *w, const void *bias, void *y, void *ws)
{ (void)d; (void)x; (void)w; (void)bias; (void)y; (void)ws; }
void fc_im2col_bwd_data(const fc_conv_desc *d, const void *gy, const void *w, void *gx, void *ws)
{ (void)d; (void)gy; (void)w; (void)gx; (void)ws; }
void fc_im2col_bwd_weights(const fc_conv_desc *d, const void *gy, const void *x, void *gw, void *gb, void *ws)
{ (void)d; (void)gy; (void)x; (void)gw; (void)gb; (void)ws; }
