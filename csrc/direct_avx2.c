/* direct_avx2.c: the direct kernels vectorised for AVX2 + FMA (chosen at run time). */
#include "direct.h"

#ifdef FC_HAVE_X86_KERNELS
#include "isa_target.h"
FC_TARGET_PUSH("avx2,fma")
#define FC_VBYTES 32 /* 16 ymm registers: 4 x 2 accumulators + loads */
#define FC_RV 2
#define FC_ISA_SUFFIX avx2
#define FC_OPS_NAME fc_direct_ops_avx2
#include "direct_isa.inc"
FC_TARGET_POP
#endif
