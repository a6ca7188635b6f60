/*
 * nn_ops.h: the memory-bound layers of a CNN training step, on fastconv's own thread team
 * (so that no second pool spins against the conv kernels): ReLU, max pooling, dropout and
 * the Adam update. Plain C, autovectorised; each call opens at most one OpenMP region of
 * fc_team_limit(nthreads) threads, serial below a size where waking a team costs more than
 * the work. Work is split into many small chunks scheduled dynamically, so a thread that
 * starts late or is preempted does not hold the others up; every element is computed by
 * one chunk, so results are bitwise the same for any thread count.
 *
 * Arrays are C-contiguous, native, aligned and of the call's dtype (the Python layer,
 * fastconv/nn/_ops.py, checks). Sizes are int64_t. Functions return FC_OK or
 * FC_EUNSUPPORTED (unknown dtype); C never prints or aborts.
 */
#ifndef FASTCONV_NN_OPS_H
#define FASTCONV_NN_OPS_H

#include <stdint.h>

/* y = max(x, 0), NaN kept (as np.maximum). y may be x. */
int fc_relu_fwd(int dtype, int64_t n, const void *x, void *y, int nthreads);
/* gx = gy where y > 0, else 0 (y: the forward's output). gx may be gy. */
int fc_relu_bwd(int dtype, int64_t n, const void *gy, const void *y, void *gx, int nthreads);
/* The same two on the calling thread (inside a kernel's own parallel region: a tile it has
   just stored). x == y and gy == gx are allowed. */
void fc_relu_fwd_serial(int dtype, int64_t n, const void *x, void *y);
void fc_relu_bwd_serial(int dtype, int64_t n, const void *gy, const void *y, void *gx);

/* Max pooling of `planes` planes of h x w into oh x ow windows of ph x pw taps, strides
   sh x sw, with pad_top/pad_left rows/columns of -inf before the image (and whatever the
   window needs after it). argmax[o] = flat index (row * w + col) in its plane of the first
   maximum (row-major window order; a NaN wins and stays, as torch). */
int fc_maxpool_fwd(int dtype, int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow,
                   int64_t ph, int64_t pw, int64_t sh, int64_t sw, int64_t pad_top, int64_t pad_left,
                   const void *x, void *y, int32_t *argmax, int nthreads);
/* gx = 0, then gx[argmax[o]] += gy[o] in output order per plane. */
int fc_maxpool_bwd(int dtype, int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow,
                   const int32_t *argmax, const void *gy, void *gx, int nthreads);

/* Inverted dropout with a counter-based generator: element i is kept iff
   u(key, i) >= rate, u in [0, 1) with 24 random bits; kept values are scaled by
   1 / (1 - rate). The mask is never stored: the backward pass recomputes it from the key,
   so forward and backward agree and no thread count changes it. y may be x. */
int fc_dropout_fwd(int dtype, int64_t n, const void *x, void *y, double rate, uint64_t key, int nthreads);
int fc_dropout_bwd(int dtype, int64_t n, const void *gy, void *gx, double rate, uint64_t key, int nthreads);

/* Adam (Keras's form, bias correction folded into lr_t), in one pass:
   m += (1 - b1) * (g - m); v += (1 - b2) * (g*g - v); p -= lr_t * m / (sqrt(v) + eps). */
int fc_adam_update(int dtype, int64_t n, void *p, const void *g, void *m, void *v,
                   double lr_t, double b1, double b2, double eps, int nthreads);

/* Internal (maxpool2_avx512.c, maxpool2_avx2.c): one plane of the 2x2 / stride 2 / unpadded
   float32 (float64) max pooling; 1 when a window held a NaN (the plane is then redone by the exact loop). */
int fc_maxpool2_plane_f32_avx512(const float *x, float *y, int32_t *arg, int64_t w, int64_t oh,
                                 int64_t ow);
int fc_maxpool2_plane_f32_avx2(const float *x, float *y, int32_t *arg, int64_t w, int64_t oh,
                               int64_t ow);
int fc_maxpool2_plane_f64_avx2(const double *x, double *y, int32_t *arg, int64_t w, int64_t oh,
                               int64_t ow);

#endif /* FASTCONV_NN_OPS_H */
