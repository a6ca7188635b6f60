/*
 * implicit.h: micro-kernels of the implicit-GEMM convolution (conv_implicit.c).
 *
 * A unit-stride convolution over an image band whose rows are padded to width Wp is a
 * GEMM whose column matrix never needs to exist: with output column q = r*Wp + j of the
 * band, the lowered matrix is
 *     B(k, q) = band[off[k] + q],   off[(c*KH + l)*KW + m] = c*plane + l*dh*Wp + m*dw,
 * so each row of B is a contiguous run of the band, shifted by a per-row offset. The
 * micro-kernels below read B straight from the band through that offset table instead of
 * from packed micro-panels (no im2col pass, no B packing); the band, a few rows of a few
 * channels, stays in L1/L2.
 *
 * fwd:    T = A_panel * B[:, q0:q0+NR] (+ bias[i] on row i when bias is not NULL), and for
 *         rows i < m, vector v: the lanes of T's row set in masks[v] are stored in order to
 *         consecutive elements from c + i*rsc + cols[v] (the output columns of a band row
 *         that are not gap columns go straight to y). A_panel packed MR x kc
 *         (a[p*MR + i]); b = band + q0; off = kc offsets.
 * wgrad:  C[0:MR, 0:NR] (+)= sum over t < rows, j < ow of
 *             a_i[t*a_rs + j] * bt[(t*ow + j)*ldb + 0:NR]        (i < MR)
 *         a_i = MR band row pointers (one per weight tap k); bt = grad_y transposed, one row
 *         of ldb >= NR elements per output pixel. The sum runs over the pixels in order.
 * wgrad touches the full MR x NR tile of C: callers pad C, A and bt. The fwd variants
 * [v] compute only the first v vectors of the tile.
 */
#ifndef FASTCONV_IMPLICIT_H
#define FASTCONV_IMPLICIT_H

#include <stdint.h>

typedef void (*fc_implicit_fwd_fn)(int64_t kc, const void *a, const void *b, const int64_t *off,
                                   void *c, int64_t rsc, int64_t m, const int64_t *cols,
                                   const uint32_t *masks, const void *bias);
typedef void (*fc_implicit_wgrad_fn)(int64_t rows, int64_t ow, const void *const *a, int64_t a_rs,
                                     const void *bt, int64_t ldb, void *c, int64_t rsc, int accumulate);

typedef void (*fc_implicit_pack_bt_fn)(int64_t kg, int64_t pixels, const void *src, int64_t lds, void *dst,
                                       int64_t ldb);

typedef struct fc_implicit_kernels {
    int mr, nr, vl;                /* tile MR x NR, NR a multiple of the vector length vl */
    fc_implicit_fwd_fn fwd[4];     /* [v]: the first v vectors of the tile; [NR / vl] is the full one */
    fc_implicit_wgrad_fn wgrad;
    fc_implicit_pack_bt_fn pack_bt; /* bt for wgrad: bt[q*ldb + k] = src[k*lds + q], zero for k >= kg */
} fc_implicit_kernels;

/* The kernels for this dtype on the active ISA, or NULL where there are none (the caller
   then lowers explicitly). */
const fc_implicit_kernels *fc_implicit_kernels_for(int dtype);

#if (defined(__x86_64__) || defined(_M_X64)) && !defined(FC_GEMM_NO_X86_KERNELS)
#define FC_IMPLICIT_HAVE_AVX512 1
extern const fc_implicit_kernels fc_implicit_f32_8x32__avx512;
extern const fc_implicit_kernels fc_implicit_f64_8x24__avx512;
#endif

#endif /* FASTCONV_IMPLICIT_H */
