/*
 * fastconv.h: the one C API that the Cython layer calls.
 *
 * Conventions
 *   - Tensors are C-contiguous, native byte order, aligned to their element size.
 *     x: (N, C_in, H, W); w: (C_out, C_in/groups, KH, KW); y: (N, C_out, OH, OW).
 *   - All sizes and index arithmetic are int64_t. functional.py has validated the
 *     descriptor (positive sizes, no overflow, consistent output shape) before any
 *     call reaches C; nothing here validates user input again.
 *   - Every entry point returns FC_OK or an FC_E* code; C never prints or aborts.
 *   - Entry points take an optional caller-owned workspace. Ask for its size with
 *     fc_conv_workspace_size(); pass NULL to let the call allocate (and free) it.
 */
#ifndef FASTCONV_H
#define FASTCONV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum fc_status { FC_OK = 0, FC_ENOMEM = 1, FC_EINVAL = 2, FC_EUNSUPPORTED = 3 };
enum fc_dtype { FC_F32 = 0, FC_F64 = 1 };
enum fc_pass { FC_FWD = 0, FC_BWD_DATA = 1, FC_BWD_WEIGHTS = 2 };
/* Algorithms: every entry of the implementation table (conv.c) has an id; FC_ALGO_AUTO
   asks the preference rule (conv_choose.c); FC_ALGO_IM2COL names the GEMM family (the
   first of gemm_1x1, implicit_gemm, im2col_explicit that accepts the problem). */
enum fc_algo {
    FC_ALGO_AUTO = 0, FC_ALGO_DIRECT = 1, FC_ALGO_IM2COL = 2, FC_ALGO_DEPTHWISE = 3,
    FC_ALGO_IMPLICIT_GEMM = 4, FC_ALGO_GEMM_1X1 = 5, FC_ALGO_IM2COL_EXPLICIT = 6,
    FC_ALGO_WINOGRAD = 7, FC_ALGO_WINOGRAD_F2 = 8, FC_ALGO_WINOGRAD_F4 = 9, FC_ALGO_WINOGRAD_F6 = 10,
    FC_ALGO_COUNT = 11
};
/* What "auto" may pick: HIGHEST only algorithms within the definition's error bound;
   MEDIUM also reduced-accuracy ones (Winograd; see docs/architecture.md). */
enum fc_precision { FC_PRECISION_HIGHEST = 0, FC_PRECISION_MEDIUM = 1 };
/* Instruction sets, ordered: a higher value implies every lower one. */
enum fc_isa { FC_ISA_GENERIC = 0, FC_ISA_AVX2 = 1, FC_ISA_AVX512 = 2 };

typedef struct fc_conv_desc {
    int64_t n, c_in, h, w;        /* input */
    int64_t c_out, kh, kw;        /* weight: (c_out, c_in/groups, kh, kw) */
    int64_t oh, ow;               /* output spatial size */
    int64_t stride_h, stride_w;
    int64_t pad_top, pad_bottom, pad_left, pad_right;
    int64_t dil_h, dil_w;
    int64_t groups;
    int dtype;                    /* enum fc_dtype */
    int nthreads;                 /* >= 1: OpenMP team size for this call */
    int precision;                /* enum fc_precision: what "auto" may pick */
} fc_conv_desc;

/* ---- CPU features (cpu.c) ------------------------------------------------ */
int fc_cpu_best_isa(void);        /* best ISA this CPU and OS support */
int fc_active_isa(void);          /* ISA the kernels use now */
int fc_set_isa(int isa);          /* clamp to best supported; returns the ISA set */
int fc_openmp_enabled(void);      /* 1 when built with OpenMP */
int fc_omp_max_threads(void);     /* omp_get_max_threads(), or 1 */
int fc_omp_num_procs(void);       /* omp_get_num_procs(), or 1 */

/* ---- Convolution (conv.c) ------------------------------------------------ */
/* Which table entry (an FC_ALGO_* id, never AUTO or IM2COL) a call with algo runs for this
   pass and problem, before the non-finite routing (which depends on the operands' values:
   a non-finite operand an entry is not exact on moves the call to the first exact entry
   that accepts it). FC_ALGO_AUTO: the preference rule. -1: algo cannot run it. */
int fc_conv_resolve(const fc_conv_desc *d, int pass, int algo);
/* Which algorithm "auto" resolves to (fc_conv_resolve(d, pass, FC_ALGO_AUTO)). */
int fc_conv_choose(const fc_conv_desc *d, int pass);
/* The implicit-GEMM micro-kernel tile for dtype on the active ISA (MR pixels x NR channels):
   1 and *mr, *nr set, or 0 where the ISA has no implicit kernels (explicit lowering). */
int fc_implicit_tile(int dtype, int *mr, int *nr);
/* Groups one implicit-GEMM tile computes for this pass (the input gradient runs the
   transposed problem) on the active ISA: G > 1 where the layer's channels a group fill less
   than the tile and G groups are packed side by side, else 1 (also where the ISA has no
   implicit kernels). */
int fc_implicit_groups_a_tile(const fc_conv_desc *d, int pass);
/* 1 where the direct entry runs this pass (FC_FWD, FC_BWD_DATA at unit strides: the
   transposed forward, or FC_BWD_WEIGHTS) on its pixel-vector kernels under the active ISA
   (conv_direct.c). */
int fc_direct_pixels(const fc_conv_desc *d, int pass);
/* Where the implicit-GEMM forward (pass FC_FWD) or input gradient (FC_BWD_DATA, unit strides:
   the transposed forward over grad_y) reads its operand on the active ISA: 0, a band copied
   from it; 1, the array itself, in place; 2, in place for tiles whose pixel groups leave out
   every tap reading padding (finite weights), else copied. 0 for the weight gradient and
   where the ISA has no implicit kernels. */
int fc_implicit_band_in_place(const fc_conv_desc *d, int pass);
/* Batch chunks the implicit-GEMM weight gradient sums separately and adds in chunk order
   (a function of the problem's sizes only, never of the thread count). */
int fc_implicit_wgrad_chunks(const fc_conv_desc *d);
/* Images one implicit-GEMM weight-gradient kernel call sums (1 to 8, sizes only; 0 where the
   active ISA has no implicit-GEMM kernels). */
int fc_implicit_wgrad_images(const fc_conv_desc *d);
/* Batch chunks the explicit-lowering / gemm_1x1 (GEMM) weight gradient of this problem sums
   separately (sizes only; 0: the whole team image by image, no partials). Where gemm_1x1's
   weight gradient runs on pointwise_wgrad.c (fc_pointwise_wgrad_suits), it does not apply. */
int fc_im2col_wgrad_chunks(const fc_conv_desc *d);
/* 1 when the gemm_1x1 entry computes this (pointwise) problem's weight gradient on the
   implicit-GEMM micro-kernels rather than the GEMM (pointwise_wgrad.c), on the active ISA. */
int fc_pointwise_wgrad_suits(const fc_conv_desc *d);
/* NULL when algo can run this pass of this problem, else a sentence saying why not. */
const char *fc_conv_rejects(const fc_conv_desc *d, int pass, int algo);
/* An algorithm id's name ("direct", "winograd", ...), its family and whether its error
   bound exceeds the definition's; NULL / -1 for an unknown id. */
const char *fc_algo_name(int algo);
const char *fc_algo_family(int algo);
int fc_algo_reduced_precision(int algo);

/* Workspace bytes the (pass, algo) call needs; 0 when it needs none. (A call that the
   non-finite routing moves to another entry allocates that entry's own workspace.) */
size_t fc_conv_workspace_size(const fc_conv_desc *d, int pass, int algo);

/* Post-ops of the forward (oneDNN's name), applied to conv + bias before y is stored. */
enum fc_post { FC_POST_NONE = 0, FC_POST_RELU = 1 /* y = x > 0 or NaN ? x : +0 */ };

int fc_conv_fwd(const fc_conv_desc *d, int algo,
                const void *x, const void *w, const void *bias /* nullable */,
                void *y, void *workspace /* nullable */, int post /* enum fc_post */);
/* (Every entry point returns FC_EINVAL when algo cannot run the problem.) */

/* relu_out (nullable): x is the output of a ReLU, and grad_x is returned through it:
   grad_x = relu_out > 0 ? grad_x : 0 (the ReLU's backward, as fc_relu_bwd), relu_out of
   grad_x's shape. */
int fc_conv_bwd_data(const fc_conv_desc *d, int algo,
                     const void *grad_y, const void *w,
                     void *grad_x, void *workspace /* nullable */, const void *relu_out /* nullable */);

/* grad_w always written; grad_bias written when non-NULL. */
int fc_conv_bwd_weights(const fc_conv_desc *d, int algo,
                        const void *grad_y, const void *x,
                        void *grad_w, void *grad_bias /* nullable */,
                        void *workspace /* nullable */);

#ifdef __cplusplus
}
#endif
#endif /* FASTCONV_H */
