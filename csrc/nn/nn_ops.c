/* nn_ops.c: ReLU, max pooling, dropout and Adam on fastconv's thread team (see nn_ops.h). */
#include "nn_ops.h"

/* No FP exception is ever observed here, and with gcc's default -ftrapping-math the
   compare-and-select loops below are not if-converted, so not vectorised (clang's default
   is already this). Results are unchanged: only speculation of compares is allowed. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include <math.h>
#include <string.h>

#include "../fastconv.h"
#include "../threads.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* The elementwise loops are cloned per ISA (gcc/clang ifunc dispatch on glibc x86-64), so
   they use AVX2/AVX-512 where the CPU has them from one baseline build. */
#if defined(__x86_64__) && defined(__GLIBC__) && (defined(__GNUC__) || defined(__clang__)) && !defined(FC_NO_CLONES)
#define FC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FC_CLONES
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
    FC_CLONES static void relu_fwd_##T(int64_t lo, int64_t hi, const T *x, T *y)               \
    {                                                                                \
        for (int64_t i = lo; i < hi; i++) {                                          \
            const T v = x[i];                                                        \
            y[i] = (v > 0 || v != v) ? v : (T)0;                                     \
        }                                                                            \
    }                                                                                \
    /* A select the vectoriser turns into compare + and (a branch here mispredicts on  \
       every other element: random signs). */                                        \
    FC_CLONES static void relu_bwd_##T(int64_t lo, int64_t hi, const T *gy, const T *y, T *gx) \
    {                                                                                \
        for (int64_t i = lo; i < hi; i++) {                                          \
            const T g = gy[i], v = y[i];                                             \
            gx[i] = v > 0 ? g : (T)0;                                                \
        }                                                                            \
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

void fc_relu_fwd_serial(int dtype, int64_t n, const void *x, void *y)
{
    if (dtype == FC_F64)
        relu_fwd_double(0, n, (const double *)x, (double *)y);
    else
        relu_fwd_float(0, n, (const float *)x, (float *)y);
}

void fc_relu_bwd_serial(int dtype, int64_t n, const void *gy, const void *y, void *gx)
{
    if (dtype == FC_F64)
        relu_bwd_double(0, n, (const double *)gy, (const double *)y, (double *)gx);
    else
        relu_bwd_float(0, n, (const float *)gy, (const float *)y, (float *)gx);
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

/* The common case, 2x2 windows with stride 2 and no padding, as compare-and-select the
   vectoriser handles: the max of each row pair, then of the two (strict >: the first
   maximum in row-major order wins ties). A NaN must win its window; these selects would
   drop it, so a plane that holds one is redone by the general loop above. */
#define MAXPOOL2(T)                                                                         \
    FC_CLONES static int maxpool2_plane_##T(const T *x, T *y, int32_t *arg, int64_t w,      \
                                            int64_t oh, int64_t ow)                         \
    {                                                                                       \
        int nan = 0;                                                                        \
        for (int64_t i = 0; i < oh; i++) {                                                  \
            const T *r0 = x + 2 * i * w, *r1 = r0 + w;                                      \
            T *yr = y + i * ow;                                                             \
            int32_t *ar = arg + i * ow;                                                     \
            const int32_t base = (int32_t)(2 * i * w), wi = (int32_t)w;                     \
            for (int64_t j = 0; j < ow; j++) {                                              \
                const T a = r0[2 * j], b = r0[2 * j + 1], c = r1[2 * j], d = r1[2 * j + 1]; \
                const T m1 = b > a ? b : a, m2 = d > c ? d : c;                             \
                const int32_t i1 = b > a ? 1 : 0, i2 = d > c ? wi + 1 : wi;                 \
                yr[j] = m2 > m1 ? m2 : m1;                                                  \
                ar[j] = base + 2 * (int32_t)j + (m2 > m1 ? i2 : i1);                        \
                nan |= (a != a) | (b != b) | (c != c) | (d != d);                           \
            }                                                                               \
        }                                                                                   \
        return nan;                                                                         \
    }
MAXPOOL2(float)
MAXPOOL2(double)

/* float32 on AVX-512 and AVX2: the explicit kernels (maxpool2_avx512.c, maxpool2_avx2.c),
   same results as the portable loop. */
static int maxpool2_fast_float(const float *x, float *y, int32_t *arg, int64_t w, int64_t oh,
                               int64_t ow)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (fc_active_isa() == FC_ISA_AVX512)
        return fc_maxpool2_plane_f32_avx512(x, y, arg, w, oh, ow);
    if (fc_active_isa() == FC_ISA_AVX2)
        return fc_maxpool2_plane_f32_avx2(x, y, arg, w, oh, ow);
#endif
    return maxpool2_plane_float(x, y, arg, w, oh, ow);
}

/* float64 on AVX2 and AVX-512: maxpool2_avx2.c's kernel. */
static int maxpool2_fast_double(const double *x, double *y, int32_t *arg, int64_t w, int64_t oh,
                                int64_t ow)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (fc_active_isa() >= FC_ISA_AVX2)
        return fc_maxpool2_plane_f64_avx2(x, y, arg, w, oh, ow);
#endif
    return maxpool2_plane_double(x, y, arg, w, oh, ow);
}

#define MAXPOOL2_OR_GENERAL(T)                                                              \
    static void maxpool2_or_general_##T(const T *x, T *y, int32_t *arg, int64_t h, int64_t w, \
                                        int64_t oh, int64_t ow)                             \
    {                                                                                       \
        if (maxpool2_fast_##T(x, y, arg, w, oh, ow))                                        \
            maxpool_plane_##T(x, y, arg, h, w, oh, ow, 2, 2, 2, 2, 0, 0);                   \
    }
MAXPOOL2_OR_GENERAL(float)
MAXPOOL2_OR_GENERAL(double)

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
    const int fast2 = ph == 2 && pw == 2 && sh == 2 && sw == 2 && pad_top == 0 && pad_left == 0
                      && 2 * oh <= h && 2 * ow <= w;
    if (fast2 && dtype == FC_F32)
        FOR_PLANES(planes, hw, nthreads,
                   maxpool2_or_general_float((const float *)x + p * hw, (float *)y + p * ohw, argmax + p * ohw, h, w, oh, ow));
    else if (fast2 && dtype == FC_F64)
        FOR_PLANES(planes, hw, nthreads,
                   maxpool2_or_general_double((const double *)x + p * hw, (double *)y + p * ohw, argmax + p * ohw, h, w, oh, ow));
    else if (dtype == FC_F32)
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
/* 32-bit counter hash (two rounds of a lowbias32-style mixer, keyed by both halves of the
   64-bit key): 32-bit multiplies vectorise (pmulld), 64-bit ones do not before AVX-512DQ. */
static inline uint32_t mix32(uint32_t z)
{
    z ^= z >> 16;
    z *= 0x7feb352dU;
    z ^= z >> 15;
    z *= 0x846ca68bU;
    z ^= z >> 16;
    return z;
}

/* Keep iff the top 24 bits, as an integer, reach rate * 2^24: exact in both dtypes. */
static inline uint32_t keep_threshold(double rate)
{
    double t = ceil(rate * 16777216.0);
    return t <= 0 ? 0u : t >= 16777216.0 ? 16777216u : (uint32_t)t;
}

#define DROPOUT(T)                                                                          \
    FC_CLONES static void dropout_##T(int64_t lo, int64_t hi, const T *x, T *y, uint32_t thr, \
                                      T scale, uint64_t key)                                \
    {                                                                                       \
        /* the element's 64-bit index: its high half goes into the key, per chunk */       \
        const uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32) ^ mix32((uint32_t)(lo >> 32)); \
        for (int64_t i = lo; i < hi; i++) {                                                 \
            const uint32_t u = mix32(mix32((uint32_t)i ^ k0) + k1) >> 8;                    \
            const T v = x[i] * scale;                                                       \
            y[i] = u >= thr ? v : (T)0;                                                     \
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
    FC_CLONES static void adam_##T(int64_t lo, int64_t hi, T *p, const T *g, T *m, T *v, T lr_t,      \
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
