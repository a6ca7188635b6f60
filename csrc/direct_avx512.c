/* direct_avx512.c: the direct kernels vectorised for AVX-512F (chosen at run time).
   prefer-vector-width=512: gcc otherwise keeps autovectorised loops at 256 bits. */
#include "direct.h"

#ifdef FC_HAVE_X86_KERNELS
#pragma GCC target("avx512f,avx512vl,avx512dq,avx2,fma,prefer-vector-width=512")
#define FC_ISA_SUFFIX avx512
#define FC_OPS_NAME fc_direct_ops_avx512
#include "direct_isa.inc"
#endif
