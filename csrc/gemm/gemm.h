/*
 * gemm.h: fastconv's own cache-blocked GEMM (BLIS-style five loops, packed micro-panels,
 * one MR x NR micro-kernel per ISA and dtype, chosen at run time from fc_active_isa()).
 *
 *     C = alpha * A * B + beta * C (+ bias[i] on row i),   beta in {0, 1}
 *
 * A is m x k, B is k x n, C is m x n. A and B take arbitrary element strides (so transposed
 * operands are just swapped strides, never copies); C has unit column stride and row
 * stride rsc. With beta == 0, C is only written (it may hold NaN on entry).
 *
 * Determinism: for fixed inputs the result is bitwise identical for every team size. Work
 * is split over M and N only; the K loop always runs in the same order and every tile,
 * full or partial, goes through the same micro-kernel arithmetic.
 */
#ifndef FASTCONV_GEMM_H
#define FASTCONV_GEMM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fc_gemm_args {
    int64_t m, n, k;
    const void *a; int64_t rsa, csa;   /* A(i,p) = a[i*rsa + p*csa]  (element strides; transposes are just strides) */
    const void *b; int64_t rsb, csb;   /* B(p,j) = b[p*rsb + j*csb] */
    void *c;       int64_t rsc;        /* C(i,j) = c[i*rsc + j]  (unit column stride) */
    double alpha;                      /* C = alpha*A*B + beta*C (+ bias) */
    int beta;                          /* 0: C is overwritten (never read: may hold NaN); 1: accumulated into */
    const void *bias;                  /* nullable; length m; C(i,j) += bias[i], added in the epilogue when the tile is stored */
    int dtype;                         /* FC_F32 = 0, FC_F64 = 1 (from ../fastconv.h) */
} fc_gemm_args;

/* Bytes of workspace for a team of nthreads (packed B panel shared by the team + one packed
   A block per thread, each 64-byte aligned). The size covers every ISA's blocking, so it
   stays valid if the active ISA changes between this query and the call. */
size_t fc_gemm_workspace_size(int dtype, int64_t m, int64_t n, int64_t k, int nthreads);

/* Cooperative: must be called by EVERY thread of the current OpenMP team (or outside any
   parallel region = team of 1), with the same args and the same workspace
   (>= fc_gemm_workspace_size(..., omp_get_num_threads())). Uses orphaned `#pragma omp
   barrier` only; never opens a parallel region itself. All of C is written when any
   thread returns (it ends with a team barrier). */
void fc_gemm_team(const fc_gemm_args *g, void *workspace);

/* Serial: one thread, its own workspace (>= fc_gemm_workspace_size(..., 1)); safe to call
   concurrently from different threads with different workspaces. */
void fc_gemm_serial(const fc_gemm_args *g, void *workspace);

/* Convenience: allocates the workspace (returns FC_ENOMEM = 1 on failure, FC_OK = 0
   otherwise), opens ONE parallel region of nthreads, calls fc_gemm_team. */
int fc_gemm(const fc_gemm_args *g, int nthreads);

/* Derive the cache blocks from the detected CPU (idempotent; called at import). */
void fc_gemm_init(void);

/* Blocking parameters in use for this dtype and the active ISA (for tests and docs). */
void fc_gemm_blocking(int dtype, int *mr, int *nr, int64_t *mc, int64_t *kc, int64_t *nc);

/* Row groups (ic_ways, see gemm.c) a team of nthreads takes for the first NC panel of an
   m x n product under the active ISA (for tests: which thread layout a shape exercises). */
int fc_gemm_row_groups(int dtype, int64_t m, int64_t n, int nthreads);
/* 1 when the B panel is sized to L2 rather than L3 (gemm.c, "Where the B panel lives"). */
int fc_gemm_panel_l2(void);

/* ---- Internal: micro-kernels (one file each, named dtype-gemm-MRxNR-isa.c) ----------------
 * C[0:MR, 0:NR] (row stride rsc) = alpha * Apanel * Bpanel + (beta ? C : 0) + (bias ? bias[i] : 0)
 * where Apanel is a packed MR x kc micro-panel (a[p*MR + i]) and Bpanel a packed kc x NR
 * micro-panel (b[p*NR + j], 64-byte aligned). kc >= 1. The kernel only ever touches the full
 * MR x NR tile: partial tiles are handled by the caller through a temporary tile. alpha points
 * to one element of the dtype; bias (nullable) to MR elements. The epilogue is
 * (alpha * acc) + C + bias, in that order (alpha * acc skipped when alpha == 1).
 * A variant named ..._nW_... touches only the first W columns of the tile (B still has row
 * stride NR) and computes them with exactly the full kernel's operations. */
typedef void (*fc_gemm_ukernel_fn)(int64_t kc, const void *a, const void *b, void *c, int64_t rsc,
                                   const void *alpha, int beta, const void *bias);

void fc_f32_gemm_ukernel_4x8__generic(int64_t, const void *, const void *, void *, int64_t, const void *, int, const void *);
void fc_f64_gemm_ukernel_4x4__generic(int64_t, const void *, const void *, void *, int64_t, const void *, int, const void *);
/* The x86-64 SIMD kernels select their ISA per file with #pragma GCC target; building with
   -DFC_GEMM_NO_X86_KERNELS keeps only the portable ones, as on other architectures. */
#if (defined(__x86_64__) || defined(_M_X64)) && !defined(FC_GEMM_NO_X86_KERNELS)
#define FC_GEMM_HAVE_X86_KERNELS 1
#define FC_UKERNEL(name) \
    void name(int64_t, const void *, const void *, void *, int64_t, const void *, int, const void *);
/* full tiles, then the narrower variants for a last partial micro-panel (_nW: first W columns) */
FC_UKERNEL(fc_f32_gemm_ukernel_6x16__avx2)
FC_UKERNEL(fc_f32_gemm_ukernel_6x16_n8__avx2)
FC_UKERNEL(fc_f64_gemm_ukernel_6x8__avx2)
FC_UKERNEL(fc_f64_gemm_ukernel_6x8_n4__avx2)
FC_UKERNEL(fc_f32_gemm_ukernel_8x32__avx512)
FC_UKERNEL(fc_f32_gemm_ukernel_8x32_n16__avx512)
FC_UKERNEL(fc_f64_gemm_ukernel_8x24__avx512)
FC_UKERNEL(fc_f64_gemm_ukernel_8x24_n16__avx512)
FC_UKERNEL(fc_f64_gemm_ukernel_8x24_n8__avx512)
#undef FC_UKERNEL
#endif

/* ---- Internal: packing (pack.c) ------------------------------------------------------------
 * A block rows [0, mc) x [0, kc) (a points at A(0,0) of the block) -> micro-panels of height mr.
 * B panel columns [j0, j1) of an nc-column panel (b at B(0,0) of the panel; columns past nc are
 * zeros) -> column j in micro-panel j / nr, which starts at dst + (j / nr) * nr * kcap elements.
 * Threads packing disjoint column ranges write disjoint bytes. isa selects the SIMD paths. */
void fc_gemm_pack_a(int dtype, int isa, int64_t mc, int64_t kc, const char *a, int64_t rsa, int64_t csa,
                    void *dst, int mr);
void fc_gemm_pack_b(int dtype, int isa, int64_t j0, int64_t j1, int64_t nc, int64_t kc, int64_t kcap,
                    const char *b, int64_t rsb, int64_t csb, void *dst, int nr);

#ifdef __cplusplus
}
#endif
#endif /* FASTCONV_GEMM_H */
