/* nn_ops.c: ReLU, max pooling, dropout and Adam on fastconv's thread team (see nn_ops.h). */
#include "nn_ops.h"

#include <math.h>
#include <string.h>

#include "../fastconv.h"
#include "../threads.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Elementwise work: chunks of this many elements (64 KiB of float32), scheduled
   dynamically; below FC_NN_SERIAL elements the call stays on the calling thread. */
#define FC_NN_CHUNK 16384
#define FC_NN_SERIAL 65536

static int team_for(int64_t work, int nthreads)
{
    return work < FC_NN_SERIAL ? 1 : fc_team_limit(nthreads);
}

/* Run BODY(lo, hi) over [0, n) in chunks. */
#ifdef _OPENMP
#define FOR_CHUNKS(n, nthreads, BODY)                                                \
    do {                                                                             \
        const int64_t nchunks_ = ((n) + FC_NN_CHUNK - 1) / FC_NN_CHUNK;              \
        const int team_ = team_for((n), (nthreads));                                 \
        _Pragma("omp parallel for schedule(dynamic, 1) num_threads(team_) if (team_ > 1)") \
        for (int64_t c_ = 0; c_ < nchunks_; c_++) {                                  \
            const int64_t lo = c_ * FC_NN_CHUNK;                                     \
            const int64_t hi = lo + FC_NN_CHUNK < (n) ? lo + FC_NN_CHUNK : (n);      \
            BODY;                                                                    \
        }                                                                            \
    } while (0)
#else
#define FOR_CHUNKS(n, nthreads, BODY)                                                \
    do {                                                                             \
        (void)(nthreads);                                                            \
        const int64_t lo = 0, hi = (n);                                              \
        BODY;                                                                        \
    } while (0)
#endif

/* ---- ReLU ------------------------------------------------------------------------ */
#define RELU_FWD(T)                                                                  \
    static void relu_fwd_##T(int64_t lo, int64_t hi, const T *x, T *y)               \
    {                                                                                \
        for (int64_t i = lo; i < hi; i++) {                                          \
            const T v = x[i];                                                        \
            y[i] = (v > 0 || v != v) ? v : (T)0;                                     \
        }                                                                            \
    }                                                                                \
    static void relu_bwd_##T(int64_t lo, int64_t hi, const T *gy, const T *y, T *gx) \
    {                                                                                \
        for (int64_t i = lo; i < hi; i++)                                            \
            gx[i] = y[i] > 0 ? gy[i] : (T)0;                                         \
    }
RELU_FWD(float)
RELU_FWD(double)

int fc_relu_fwd(int dtype, int64_t n, const void *x, void *y, int nthreads)
{
    if (dtype == FC_F32)
        FOR_CHUNKS(n, nthreads, relu_fwd_float(lo, hi, (const float *)x, (float *)y));
    else if (dtype == FC_F64)
        FOR_CHUNKS(n, nthreads, relu_fwd_double(lo, hi, (const double *)x, (double *)y));
    else
        return FC_EUNSUPPORTED;
    return FC_OK;
}

int fc_relu_bwd(int dtype, int64_t n, const void *gy, const void *y, void *gx, int nthreads)
{
    if (dtype == FC_F32)
        FOR_CHUNKS(n, nthreads, relu_bwd_float(lo, hi, (const float *)gy, (const float *)y, (float *)gx));
    else if (dtype == FC_F64)
        FOR_CHUNKS(n, nthreads, relu_bwd_double(lo, hi, (const double *)gy, (const double *)y, (double *)gx));
    else
        return FC_EUNSUPPORTED;
    return FC_OK;
}

/* ---- Max pooling ------------------------------------------------------------------ */
#define MAXPOOL(T)                                                                          \
    static void maxpool_plane_##T(const T *x, T *y, int32_t *arg, int64_t h, int64_t w,     \
                                  int64_t oh, int64_t ow, int64_t ph, int64_t pw, int64_t sh, \
                                  int64_t sw, int64_t pt, int64_t pl)                       \
    {                                                                                       \
        for (int64_t i = 0; i < oh; i++) {                                                  \
            const int64_t r0 = i * sh - pt;                                                 \
            const int64_t rlo = r0 < 0 ? 0 : r0, rhi = r0 + ph < h ? r0 + ph : h;           \
            for (int64_t j = 0; j < ow; j++) {                                              \
                const int64_t c0 = j * sw - pl;                                             \
                const int64_t clo = c0 < 0 ? 0 : c0, chi = c0 + pw < w ? c0 + pw : w;       \
                T best = (T)-INFINITY;                                                      \
                int64_t at = rlo * w + clo; /* an all -inf window keeps its first pixel */  \
                int nan = 0;                                                                \
                for (int64_t r = rlo; r < rhi && !nan; r++)                                 \
                    for (int64_t c = clo; c < chi; c++) {                                   \
                        const T v = x[r * w + c];                                           \
                        if (v > best) {                                                     \
                            best = v;                                                       \
                            at = r * w + c;                                                 \
                        } else if (v != v) {                                                \
                            best = v;                                                       \
                            at = r * w + c;                                                 \
                            nan = 1;                                                        \
                            break;                                                          \
                        }                                                                   \
                    }                                                                       \
                y[i * ow + j] = best;                                                       \
                arg[i * ow + j] = (int32_t)at;                                              \
            }                                                                               \
        }                                                                                   \
    }                                                                                       \
    static void maxpool_bwd_plane_##T(const int32_t *arg, const T *gy, T *gx, int64_t hw,   \
                                      int64_t ohw)                                          \
    {                                                                                       \
        memset(gx, 0, (size_t)hw * sizeof(T));                                              \
        for (int64_t o = 0; o < ohw; o++)                                                   \
            gx[arg[o]] += gy[o];                                                            \
    }
MAXPOOL(float)
MAXPOOL(double)

/* Planes are grouped so that one scheduled item holds at least ~16k input elements. */
static int64_t planes_per_item(int64_t plane_elems)
{
    int64_t k = plane_elems > 0 ? FC_NN_CHUNK / plane_elems : 1;
    return k < 1 ? 1 : k;
}

#ifdef _OPENMP
#define FOR_PLANES(planes, plane_elems, nthreads, BODY)                                   \
    do {                                                                                  \
        const int64_t per_ = planes_per_item(plane_elems);                                \
        const int64_t items_ = ((planes) + per_ - 1) / per_;                              \
        const int team_ = team_for((planes) * (plane_elems), (nthreads));                 \
        _Pragma("omp parallel for schedule(dynamic, 1) num_threads(team_) if (team_ > 1)") \
        for (int64_t it_ = 0; it_ < items_; it_++) {                                      \
            const int64_t end_ = (it_ + 1) * per_ < (planes) ? (it_ + 1) * per_ : (planes); \
            for (int64_t p = it_ * per_; p < end_; p++) {                                 \
                BODY;                                                                     \
            }                                                                             \
        }                                                                                 \
    } while (0)
#else
#define FOR_PLANES(planes, plane_elems, nthreads, BODY)                                   \
    do {                                                                                  \
        (void)(nthreads);                                                                 \
        for (int64_t p = 0; p < (planes); p++) {                                          \
            BODY;                                                                         \
        }                                                                                 \
    } while (0)
#endif

int fc_maxpool_fwd(int dtype, int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow,
                   int64_t ph, int64_t pw, int64_t sh, int64_t sw, int64_t pad_top, int64_t pad_left,
                   const void *x, void *y, int32_t *argmax, int nthreads)
{
    const int64_t hw = h * w, ohw = oh * ow;
    if (dtype == FC_F32)
        FOR_PLANES(planes, hw, nthreads,
                   maxpool_plane_float((const float *)x + p * hw, (float *)y + p * ohw, argmax + p * ohw,
                                       h, w, oh, ow, ph, pw, sh, sw, pad_top, pad_left));
    else if (dtype == FC_F64)
        FOR_PLANES(planes, hw, nthreads,
                   maxpool_plane_double((const double *)x + p * hw, (double *)y + p * ohw, argmax + p * ohw,
                                        h, w, oh, ow, ph, pw, sh, sw, pad_top, pad_left));
    else
        return FC_EUNSUPPORTED;
    return FC_OK;
}

int fc_maxpool_bwd(int dtype, int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow,
                   const int32_t *argmax, const void *gy, void *gx, int nthreads)
{
    const int64_t hw = h * w, ohw = oh * ow;
    if (dtype == FC_F32)
        FOR_PLANES(planes, hw, nthreads,
                   maxpool_bwd_plane_float(argmax + p * ohw, (const float *)gy + p * ohw, (float *)gx + p * hw, hw, ohw));
    else if (dtype == FC_F64)
        FOR_PLANES(planes, hw, nthreads,
                   maxpool_bwd_plane_double(argmax + p * ohw, (const double *)gy + p * ohw, (double *)gx + p * hw, hw, ohw));
    else
        return FC_EUNSUPPORTED;
    return FC_OK;
}

/* ---- Dropout ----------------------------------------------------------------------- */
/* splitmix64's finaliser: a bijective mix of 64 bits, so hash(key + i * odd) is a
   counter-based generator (as Philox is used by the GPU frameworks). */
static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Keep iff the top 24 bits, as an integer, reach rate * 2^24: exact in both dtypes. */
static inline uint32_t keep_threshold(double rate)
{
    double t = ceil(rate * 16777216.0);
    return t <= 0 ? 0u : t >= 16777216.0 ? 16777216u : (uint32_t)t;
}

#define DROPOUT(T)                                                                          \
    static void dropout_##T(int64_t lo, int64_t hi, const T *x, T *y, uint32_t thr, T scale, \
                            uint64_t key)                                                   \
    {                                                                                       \
        for (int64_t i = lo; i < hi; i++) {                                                 \
            const uint32_t u = (uint32_t)(mix64(key + (uint64_t)i * 0x9e3779b97f4a7c15ULL) >> 40); \
            y[i] = u >= thr ? x[i] * scale : (T)0;                                          \
        }                                                                                   \
    }
DROPOUT(float)
DROPOUT(double)

static int dropout(int dtype, int64_t n, const void *x, void *y, double rate, uint64_t key, int nthreads)
{
    const uint32_t thr = keep_threshold(rate);
    const double scale = rate < 1.0 ? 1.0 / (1.0 - rate) : 0.0;
    if (dtype == FC_F32)
        FOR_CHUNKS(n, nthreads, dropout_float(lo, hi, (const float *)x, (float *)y, thr, (float)scale, key));
    else if (dtype == FC_F64)
        FOR_CHUNKS(n, nthreads, dropout_double(lo, hi, (const double *)x, (double *)y, thr, scale, key));
    else
        return FC_EUNSUPPORTED;
    return FC_OK;
}

int fc_dropout_fwd(int dtype, int64_t n, const void *x, void *y, double rate, uint64_t key, int nthreads)
{
    return dropout(dtype, n, x, y, rate, key, nthreads);
}

int fc_dropout_bwd(int dtype, int64_t n, const void *gy, void *gx, double rate, uint64_t key, int nthreads)
{
    return dropout(dtype, n, gy, gx, rate, key, nthreads); /* the same mask and scale */
}

/* ---- Adam --------------------------------------------------------------------------- */
#define ADAM(T, SQRT)                                                                       \
    static void adam_##T(int64_t lo, int64_t hi, T *p, const T *g, T *m, T *v, T lr_t,      \
                         T c1, T c2, T eps)                                                 \
    {                                                                                       \
        for (int64_t i = lo; i < hi; i++) {                                                 \
            const T gi = g[i];                                                              \
            const T mi = m[i] + c1 * (gi - m[i]);                                           \
            const T vi = v[i] + c2 * (gi * gi - v[i]);                                      \
            m[i] = mi;                                                                      \
            v[i] = vi;                                                                      \
            p[i] -= lr_t * mi / (SQRT(vi) + eps);                                           \
        }                                                                                   \
    }
ADAM(float, sqrtf)
ADAM(double, sqrt)

int fc_adam_update(int dtype, int64_t n, void *p, const void *g, void *m, void *v,
                   double lr_t, double b1, double b2, double eps, int nthreads)
{
    if (dtype == FC_F32)
        FOR_CHUNKS(n, nthreads, adam_float(lo, hi, (float *)p, (const float *)g, (float *)m, (float *)v,
                                           (float)lr_t, (float)(1.0 - b1), (float)(1.0 - b2), (float)eps));
    else if (dtype == FC_F64)
        FOR_CHUNKS(n, nthreads, adam_double(lo, hi, (double *)p, (const double *)g, (double *)m, (double *)v,
                                            lr_t, 1.0 - b1, 1.0 - b2, eps));
    else
        return FC_EUNSUPPORTED;
    return FC_OK;
}
