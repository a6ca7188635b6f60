/* depthwise_avx2.c: the depthwise kernels for AVX2 + FMA (chosen at run time). */
#include "depthwise.h"

#ifdef FC_DW_HAVE_X86
#include "isa_target.h"
FC_TARGET_PUSH("avx2,fma")
#define FC_DW_ISA avx2
#define FC_DW_OPS_NAME fc_dw_ops_avx2
#define FC_DW_VBYTES 32
#define FC_DW_R_F32 4
#define FC_DW_R_F64 4
#define FC_DW_RW_F32 4
#define FC_DW_RW_F64 4
#include <immintrin.h>
#define FC_DW_PIN(v) __asm__("" : "+v"(v))
#define FC_DW_STREAM(p, v) _mm256_stream_si256((__m256i *)(void *)(p), (__m256i)(v))
#define FC_DW_SFENCE() _mm_sfence()
#include "depthwise_kernels.inc"
FC_TARGET_POP
#endif
