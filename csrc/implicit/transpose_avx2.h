/*
 * transpose_avx2.h: register transposes of 256-bit vectors shared by the implicit-GEMM
 * kernels (the forward's store of a pixels x channels tile as channel rows, the weight
 * gradient's grad_y transpose). Include it inside an FC_TARGET_PUSH region of AVX2 or a
 * superset (implicit_avx2.c, implicit_avx512.c), after <immintrin.h>.
 */
#ifndef FASTCONV_IMPLICIT_TRANSPOSE_AVX2_H
#define FASTCONV_IMPLICIT_TRANSPOSE_AVX2_H

/* 8 x 8 floats in registers: out[c] = column c of the rows r[0..7]. */
static inline __attribute__((always_inline)) void f32_transpose8(const __m256 r[8], __m256 out[8])
{
    __m256 t[8], s[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int g = 0; g < 8; g += 4) {
        s[g + 0] = _mm256_shuffle_ps(t[g], t[g + 2], 0x44);
        s[g + 1] = _mm256_shuffle_ps(t[g], t[g + 2], 0xEE);
        s[g + 2] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0x44);
        s[g + 3] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
    }
    for (int c = 0; c < 4; c++) {
        out[c] = _mm256_permute2f128_ps(s[c], s[4 + c], 0x20);
        out[c + 4] = _mm256_permute2f128_ps(s[c], s[4 + c], 0x31);
    }
}

/* 4 x 4 doubles: out[c] = column c of the rows r[0..3]. */
static inline __attribute__((always_inline)) void f64_transpose4(const __m256d r[4], __m256d out[4])
{
    const __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
    const __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
    out[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    out[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    out[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    out[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
}

#endif /* FASTCONV_IMPLICIT_TRANSPOSE_AVX2_H */
