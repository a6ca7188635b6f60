/* implicit_avx512.c: the implicit-GEMM micro-kernels for AVX-512F, f32 8x32 and f64 8x24
   (the GEMM's tiles: same register budget, see gemm/f32-gemm-8x32-avx512.c). */
#include "implicit.h"

#ifdef FC_IMPLICIT_HAVE_AVX512
#pragma GCC target("avx512f")
#include <immintrin.h>

#define REAL float
#define VEC __m512
#define VL 16
#define NV 2
#define LOADU _mm512_loadu_ps
#define STOREU _mm512_storeu_ps
#define SET1 _mm512_set1_ps
#define FMADD _mm512_fmadd_ps
#define ADD _mm512_add_ps
#define ZERO _mm512_setzero_ps
#define FN(name) f32_8x32_##name
#include "implicit_avx512.inc"
#undef REAL
#undef VEC
#undef VL
#undef NV
#undef LOADU
#undef STOREU
#undef SET1
#undef FMADD
#undef ADD
#undef ZERO
#undef FN

#define REAL double
#define VEC __m512d
#define VL 8
#define NV 3
#define LOADU _mm512_loadu_pd
#define STOREU _mm512_storeu_pd
#define SET1 _mm512_set1_pd
#define FMADD _mm512_fmadd_pd
#define ADD _mm512_add_pd
#define ZERO _mm512_setzero_pd
#define FN(name) f64_8x24_##name
#include "implicit_avx512.inc"

const fc_implicit_kernels fc_implicit_f32_8x32__avx512 = {
    8, 32, 16, {NULL, f32_8x32_fwd_1v, f32_8x32_fwd}, f32_8x32_wgrad};
const fc_implicit_kernels fc_implicit_f64_8x24__avx512 = {
    8, 24, 8, {NULL, f64_8x24_fwd_1v, f64_8x24_fwd_2v, f64_8x24_fwd}, f64_8x24_wgrad};
#endif
