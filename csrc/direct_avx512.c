/* direct_avx512.c: the direct kernels vectorised for AVX-512F (chosen at run time).
   prefer-vector-width=512: gcc otherwise keeps autovectorised loops at 256 bits. */
#include "direct.h"

#ifdef FC_HAVE_X86_KERNELS
#include "isa_target.h"
FC_TARGET_PUSH_WIDE("avx512f,avx512vl,avx512dq,avx2,fma")
/* 256-bit vectors with AVX-512's 32 registers: Zen 4 executes a 512-bit FMA as two 256-bit
   halves (same peak), and half-width vectors leave fewer columns to the overlapping tail
   on the narrow images CNNs have (24-56 columns). 4 x 4 accumulators + 4 loads. */
#define FC_VBYTES 32
#define FC_RV 4
#define FC_TM 4
#define FC_ISA_SUFFIX avx512
#define FC_OPS_NAME fc_direct_ops_avx512
#include "direct_isa.inc"
FC_TARGET_POP
#endif
