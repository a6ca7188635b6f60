/* depthwise_avx512.c: the depthwise kernels for AVX-512F (chosen at run time). */
#include "depthwise.h"

#ifdef FC_DW_HAVE_X86
#include "isa_target.h"
FC_TARGET_PUSH_WIDE("avx512f,avx512vl,avx512dq,avx2,fma")
#define FC_DW_ISA avx512
#define FC_DW_OPS_NAME fc_dw_ops_avx512
#define FC_DW_VBYTES 64
#define FC_DW_R_F32 8
#define FC_DW_R_F64 8
#define FC_DW_RW_F32 4
#define FC_DW_RW_F64 4
#include <immintrin.h>
#define FC_DW_PIN(v) __asm__("" : "+v"(v))
#define FC_DW_STREAM(p, v) _mm512_stream_si512((__m512i *)(void *)(p), (__m512i)(v))
#define FC_DW_SFENCE() _mm_sfence()
#include "depthwise_kernels.inc"
FC_TARGET_POP
#endif
