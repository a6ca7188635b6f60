/*
 * conv_common.c: the helpers every algorithm file shares (declared in conv_internal.h).
 * This file calls no algorithm and no driver function.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "conv_internal.h"
#include "nn/nn_ops.h"
#include "threads.h"

/* Below this many multiply-adds a call runs on the calling thread: waking a team costs
   a few microseconds, more than such a call computes. */
#define FC_SERIAL_MACS 32768

size_t fc_elem_size(int dtype) { return dtype == FC_F64 ? sizeof(double) : sizeof(float); }

int fc_is_pointwise(const fc_conv_desc *d)
{
    return d->kh == 1 && d->kw == 1 && d->stride_h == 1 && d->stride_w == 1 && d->pad_top == 0 &&
           d->pad_bottom == 0 && d->pad_left == 0 && d->pad_right == 0;
}

size_t fc_align_up(size_t n) { return (n + FC_ALIGN - 1) & ~(size_t)(FC_ALIGN - 1); }

/* Unused bytes between two threads' scratch slots. Measured on Zen 4 (2-core VM, implicit
   GEMM forward, each thread's band right after the previous one's): the forward kernels of
   the thread whose band lies below slowed the other thread's accesses to the first ~250 KB
   of its band -- copying into it took 2.5x as long, its kernels 7 % longer -- though no
   load or store of either thread falls outside its own band (checked by mprotect-ing the
   gap; prefetches, which do not fault, are not ruled out); a 64 KiB gap removed most of
   it, 512 KiB all. cifar_3x3's forward then ran 1.98x
   its 1-thread speed at 2 threads instead of 1.88x. The gap is address space only: no
   thread writes it, so its pages are never faulted in (except inside a transparent huge
   page a neighbour touches). Used by implicit GEMM, whose per-thread bands are hot through
   a whole work item; the GEMM's per-thread A blocks and explicit im2col's column tiles
   measured the same with and without the gap, so they keep their packed layout. */
#define FC_THREAD_SLOT_GUARD ((size_t)512 << 10)

size_t fc_thread_slot_stride(size_t bytes, int nt)
{
    return fc_align_up(bytes) + (nt > 1 ? FC_THREAD_SLOT_GUARD : 0);
}

size_t fc_thread_slots_bytes(size_t stride, int nt)
{
    return nt > 1 ? (size_t)nt * stride - FC_THREAD_SLOT_GUARD : stride;
}

int64_t fc_macs(const fc_conv_desc *d)
{
    return d->n * d->c_out * d->oh * d->ow * (d->c_in / d->groups) * d->kh * d->kw;
}

int fc_team_size(const fc_conv_desc *d)
{
    if (d->nthreads <= 1 || fc_macs(d) < FC_SERIAL_MACS)
        return 1;
    return fc_team_limit(d->nthreads);
}

void *fc_aligned_alloc(size_t bytes)
{
    void *p = NULL;
    if (bytes == 0)
        bytes = FC_ALIGN;
    if (posix_memalign(&p, FC_ALIGN, fc_align_up(bytes)) != 0)
        return NULL;
    return p;
}

static int64_t floor_div(int64_t a, int64_t b) /* b > 0 */
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

void fc_build_col_ranges(const fc_conv_desc *d, int64_t *lo, int64_t *hi)
{
    for (int64_t m = 0; m < d->kw; m++) {
        const int64_t off = m * d->dil_w - d->pad_left; /* input column = j*sw + off */
        int64_t a = -floor_div(off, d->stride_w);      /* ceil(-off / sw) */
        int64_t b = floor_div(d->w - 1 - off, d->stride_w) + 1;
        if (a < 0) a = 0;
        if (a > d->ow) a = d->ow; /* padding wider than the output: no valid column */
        if (b > d->ow) b = d->ow;
        if (b < a) b = a;
        lo[m] = a;
        hi[m] = b;
    }
}

void fc_transposed_problem(const fc_conv_desc *d, fc_conv_desc *t)
{
    *t = *d;
    t->c_in = d->c_out;
    t->h = d->oh;
    t->w = d->ow;
    t->c_out = d->c_in;
    t->oh = d->h;
    t->ow = d->w;
    t->pad_top = (d->kh - 1) * d->dil_h - d->pad_top;
    t->pad_bottom = (d->kh - 1) * d->dil_h - d->pad_bottom;
    t->pad_left = (d->kw - 1) * d->dil_w - d->pad_left;
    t->pad_right = (d->kw - 1) * d->dil_w - d->pad_right;
}

#define DEFINE_ROTATE(REAL, SFX)                                                                  \
    static void rotate_weights_##SFX(const fc_conv_desc *d, const REAL *w, REAL *wt)              \
    {                                                                                             \
        const int64_t G = d->groups, cg = d->c_in / G, kg = d->c_out / G, KK = d->kh * d->kw;     \
        for (int64_t g = 0; g < G; g++)                                                           \
            for (int64_t k = 0; k < kg; k++)                                                      \
                for (int64_t c = 0; c < cg; c++)                                                  \
                    for (int64_t t = 0; t < KK; t++)                                              \
                        wt[((g * cg + c) * kg + k) * KK + (KK - 1 - t)] =                         \
                            w[((g * kg + k) * cg + c) * KK + t];                                  \
    }
DEFINE_ROTATE(float, f32)
DEFINE_ROTATE(double, f64)

void fc_rotate_weights(const fc_conv_desc *d, const void *w, void *wt)
{
    if (d->dtype == FC_F64)
        rotate_weights_f64(d, (const double *)w, (double *)wt);
    else
        rotate_weights_f32(d, (const float *)w, (float *)wt);
}

/* x - x is 0 for finite x and NaN otherwise: a branch-free test, kept in 16 independent
   lanes so the compiler vectorises it without reassociating (one pass at memory speed). */
#define FINITE_LANES 16
#define DEFINE_FINITE(REAL, SFX)                                                                  \
    static int all_finite_##SFX(const REAL *p, int64_t count)                                     \
    {                                                                                             \
        REAL lane[FINITE_LANES] = {0};                                                            \
        int64_t i = 0;                                                                            \
        for (; i + FINITE_LANES <= count; i += FINITE_LANES)                                      \
            for (int l = 0; l < FINITE_LANES; l++)                                                \
                lane[l] += p[i + l] - p[i + l];                                                   \
        REAL s = 0;                                                                               \
        for (; i < count; i++)                                                                    \
            s += p[i] - p[i];                                                                     \
        for (int l = 0; l < FINITE_LANES; l++)                                                    \
            s += lane[l];                                                                         \
        return s == 0;                                                                            \
    }
DEFINE_FINITE(float, f32)
DEFINE_FINITE(double, f64)

/* Elements each thread of the check takes at least (fewer: fewer threads, as waking a team
   costs more than checking them). The serial check was 13 % of a 512-channel 7x7 input
   gradient at batch 1 and 2 threads (9.4 MB of weights). */
#define FINITE_MIN_PER_THREAD ((int64_t)1 << 18)

static int all_finite_one(const void *a, int64_t count, int dtype)
{
    return dtype == FC_F64 ? all_finite_f64((const double *)a, count) : all_finite_f32((const float *)a, count);
}

int fc_all_finite(const void *a, int64_t count, int dtype, int nt)
{
    const int64_t most = count / FINITE_MIN_PER_THREAD;
    nt = most < nt ? (int)most : nt;
    if (nt <= 1)
        return all_finite_one(a, count, dtype);
    int finite = 1;
#pragma omp parallel for num_threads(nt) schedule(static) reduction(&& : finite)
    for (int t = 0; t < nt; t++) {
        const int64_t i0 = count * t / nt, n = count * (t + 1) / nt - i0;
        finite = all_finite_one((const char *)a + (size_t)i0 * fc_elem_size(dtype), n, dtype) && finite;
    }
    return finite;
}

/* The bias gradient. A run of len contiguous elements is summed in BIAS_LANES running sums
   (vectorised) reduced pairwise in a fixed order: ~len/16 + 4 terms per rounding chain.

   The separate pass (fc_bias_grad_channel: explicit im2col, Winograd) sums each image's
   contiguous plane, then the images in order. (Rows of OW at a time, as before, ran at ~13
   cycles a row: the bias of a 28x28 expand layer took as long as its weight gradient.)

   The fused ones add sums of data a weight gradient has just brought into cache: a separate
   pass re-reads all of grad_y from memory, 10 % of CIFAR's 32 -> 32 weight gradient at one
   thread, 14 % at two, half of a 28x28 expand layer's. Each runs over its pixels in order and
   the blocks in the caller's order, whichever thread computes it. */
#define BIAS_LANES 16
#define DEFINE_BIAS(REAL, SFX)                                                                    \
    static REAL run_sum_##SFX(const REAL *restrict p, int64_t len)                                \
    {                                                                                             \
        const int64_t full = len - len % BIAS_LANES;                                              \
        REAL lane[BIAS_LANES] = {0};                                                              \
        for (int64_t i = 0; i < full; i += BIAS_LANES)                                            \
            for (int l = 0; l < BIAS_LANES; l++)                                                  \
                lane[l] += p[i + l];                                                              \
        for (int64_t i = full; i < len; i++)                                                      \
            lane[i - full] += p[i];                                                               \
        for (int w = BIAS_LANES / 2; w > 0; w /= 2)                                               \
            for (int l = 0; l < w; l++)                                                           \
                lane[l] += lane[l + w];                                                           \
        return lane[0];                                                                           \
    }                                                                                             \
    static void bias_grad_##SFX(const fc_conv_desc *d, const REAL *gy, REAL *gb)                  \
    {                                                                                             \
        const int64_t plane = d->oh * d->ow;                                                      \
        REAL total = 0;                                                                           \
        for (int64_t n = 0; n < d->n; n++)                                                        \
            total += run_sum_##SFX(gy + n * d->c_out * plane, plane);                             \
        *gb = total;                                                                              \
    }                                                                                             \
    static void bias_add_rows_##SFX(const REAL *a, int64_t lda, int64_t count, int64_t len,       \
                                    REAL *gb, int first)                                          \
    {                                                                                             \
        for (int64_t r = 0; r < count; r++) {                                                     \
            const REAL s = run_sum_##SFX(a + r * lda, len);                                       \
            gb[r] = first ? s : gb[r] + s;                                                        \
        }                                                                                         \
    }                                                                                             \
    static void bias_add_columns_##SFX(const REAL *restrict bt, int64_t pixels, int64_t ldb,      \
                                       int64_t k0, int64_t k1, REAL *restrict gb, int first)      \
    {                                                                                             \
        for (int64_t b0 = k0; b0 < k1; b0 += BIAS_LANES) {                                        \
            REAL acc[BIAS_LANES] = {0};                                                           \
            if (k1 - b0 >= BIAS_LANES) /* a fixed width the compiler keeps in vectors */          \
                for (int64_t q = 0; q < pixels; q++)                                              \
                    for (int l = 0; l < BIAS_LANES; l++)                                          \
                        acc[l] += bt[q * ldb + b0 + l];                                           \
            else                                                                                  \
                for (int64_t q = 0; q < pixels; q++)                                              \
                    for (int64_t l = 0; l < k1 - b0; l++)                                         \
                        acc[l] += bt[q * ldb + b0 + l];                                           \
            for (int64_t l = 0; l < fc_min64(BIAS_LANES, k1 - b0); l++)                           \
                gb[b0 + l] = first ? acc[l] : gb[b0 + l] + acc[l];                                \
        }                                                                                         \
    }
DEFINE_BIAS(float, f32)
DEFINE_BIAS(double, f64)

void fc_bias_grad_channel(const fc_conv_desc *d, const void *gy_k, void *gb_k)
{
    if (d->dtype == FC_F64)
        bias_grad_f64(d, (const double *)gy_k, (double *)gb_k);
    else
        bias_grad_f32(d, (const float *)gy_k, (float *)gb_k);
}

void fc_bias_add_rows(int dtype, const void *a, int64_t lda, int64_t count, int64_t len, void *gb, int first)
{
    if (dtype == FC_F64)
        bias_add_rows_f64((const double *)a, lda, count, len, (double *)gb, first);
    else
        bias_add_rows_f32((const float *)a, lda, count, len, (float *)gb, first);
}

/* The thread whose unit range holds unit u (ranges [units*t/nt, units*(t+1)/nt)). */
static int unit_owner(int64_t units, int nt, int64_t u)
{
    int t = 0;
    while (t + 1 < nt && units * (t + 1) / nt <= u)
        t++;
    return t;
}

void fc_bias_add_bt_share(int dtype, const void *bt, int64_t pixels, int64_t ldb, int64_t kg, int64_t units,
                          int nt, int tid, int64_t g_u0, int64_t g_u1, void *gb_g, int first)
{
    const int ta = unit_owner(units, nt, g_u0), tn = unit_owner(units, nt, g_u1 - 1) - ta + 1;
    const int64_t k0 = kg * (tid - ta) / tn, k1 = kg * (tid - ta + 1) / tn;
    if (dtype == FC_F64)
        bias_add_columns_f64((const double *)bt, pixels, ldb, k0, k1, (double *)gb_g, first);
    else
        bias_add_columns_f32((const float *)bt, pixels, ldb, k0, k1, (float *)gb_g, first);
}

/* Row loops over nn_ops.c's ReLU (one elementwise rule, cloned per ISA there). */
void fc_relu_rows(int dtype, void *y, int64_t ld, int64_t count, int64_t len)
{
    const size_t es = fc_elem_size(dtype);
    for (int64_t r = 0; r < count; r++) {
        char *row = (char *)y + (size_t)(r * ld) * es;
        fc_relu_fwd_serial(dtype, len, row, row);
    }
}

void fc_relu_mask_rows(int dtype, void *y, const void *r, int64_t ld, int64_t count, int64_t len)
{
    const size_t es = fc_elem_size(dtype);
    for (int64_t i = 0; i < count; i++) {
        char *row = (char *)y + (size_t)(i * ld) * es;
        fc_relu_bwd_serial(dtype, len, row, (const char *)r + (size_t)(i * ld) * es, row);
    }
}

void fc_add_elems(int dtype, void *dst, const void *src, int64_t e0, int64_t e1)
{
    if (dtype == FC_F64) {
        double *restrict o = (double *)dst;
        const double *restrict i = (const double *)src;
        for (int64_t e = e0; e < e1; e++)
            o[e] += i[e];
    } else {
        float *restrict o = (float *)dst;
        const float *restrict i = (const float *)src;
        for (int64_t e = e0; e < e1; e++)
            o[e] += i[e];
    }
}
