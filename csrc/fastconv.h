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
/* FC_ALGO_DEPTHWISE is reached only through "auto" (fc_conv_choose). */
enum fc_algo { FC_ALGO_AUTO = 0, FC_ALGO_DIRECT = 1, FC_ALGO_IM2COL = 2, FC_ALGO_DEPTHWISE = 3 };
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
} fc_conv_desc;

/* ---- CPU features (cpu.c) ------------------------------------------------ */
int fc_cpu_best_isa(void);        /* best ISA this CPU and OS support */
int fc_active_isa(void);          /* ISA the kernels use now */
int fc_set_isa(int isa);          /* clamp to best supported; returns the ISA set */
int fc_openmp_enabled(void);      /* 1 when built with OpenMP */
int fc_omp_max_threads(void);     /* omp_get_max_threads(), or 1 */
int fc_omp_num_procs(void);       /* omp_get_num_procs(), or 1 */

/* ---- Convolution (conv.c) ------------------------------------------------ */
/* Which algorithm "auto" resolves to for this pass and problem. */
int fc_conv_choose(const fc_conv_desc *d, int pass);

/* Workspace bytes the (pass, algo) call needs; 0 when it needs none. */
size_t fc_conv_workspace_size(const fc_conv_desc *d, int pass, int algo);

int fc_conv_fwd(const fc_conv_desc *d, int algo,
                const void *x, const void *w, const void *bias /* nullable */,
                void *y, void *workspace /* nullable */);

int fc_conv_bwd_data(const fc_conv_desc *d, int algo,
                     const void *grad_y, const void *w,
                     void *grad_x, void *workspace /* nullable */);

/* grad_w always written; grad_bias written when non-NULL. */
int fc_conv_bwd_weights(const fc_conv_desc *d, int algo,
                        const void *grad_y, const void *x,
                        void *grad_w, void *grad_bias /* nullable */,
                        void *workspace /* nullable */);

#ifdef __cplusplus
}
#endif
#endif /* FASTCONV_H */
