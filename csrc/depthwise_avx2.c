/* depthwise_avx2.c: the depthwise kernels for AVX2 + FMA (chosen at run time). */
#include "depthwise.h"

#ifdef FC_DW_HAVE_X86
#pragma GCC target("avx2,fma")
#define FC_DW_ISA avx2
#define FC_DW_OPS_NAME fc_dw_ops_avx2
#define FC_DW_VBYTES 32
#define FC_DW_R_F32 4
#define FC_DW_R_F64 4
#include "depthwise_kernels.inc"
#endif
