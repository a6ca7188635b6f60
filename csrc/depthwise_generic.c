/* depthwise_generic.c: the depthwise kernels in portable C (GCC vector extensions of the
   baseline ISA where the compiler has them, plain scalars otherwise). */
#define FC_DW_ISA generic
#define FC_DW_OPS_NAME fc_dw_ops_generic
#define FC_DW_VBYTES 16
#define FC_DW_R_F32 4
#define FC_DW_R_F64 4
#define FC_DW_RW_F32 4
#define FC_DW_RW_F64 4
#include "depthwise_kernels.inc"
