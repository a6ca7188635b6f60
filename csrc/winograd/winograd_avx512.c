/* winograd_avx512.c: the Winograd transforms vectorised for AVX-512F (chosen at run time):
   512-bit vectors over the pixels of a row and the tiles of a block. */
#include "winograd.h"

#ifdef FC_WINO_HAVE_X86
#include "../isa_target.h"
FC_TARGET_PUSH_WIDE("avx512f,avx512vl,avx512dq,avx2,fma")
#define FC_ISA_SUFFIX avx512
#define FC_OPS_NAME fc_wino_ops_avx512
#include "winograd_isa.inc"
FC_TARGET_POP
#endif
