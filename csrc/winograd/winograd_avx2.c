/* winograd_avx2.c: the Winograd transforms vectorised for AVX2 + FMA (chosen at run time). */
#include "winograd.h"

#ifdef FC_WINO_HAVE_X86
#include "../isa_target.h"
FC_TARGET_PUSH("avx2,fma")
#define FC_ISA_SUFFIX avx2
#define FC_OPS_NAME fc_wino_ops_avx2
#include "winograd_isa.inc"
FC_TARGET_POP
#endif
