/*
 * peak.c: measure this machine's FMA throughput (see peak.h).
 *
 * Each kernel runs `iters` rounds of NACC independent FMA chains acc = acc * a + b,
 * with a = 1 - 2^-16 and b = 2^-16 so every accumulator converges to 1: no overflow,
 * no denormals, and values the compiler cannot fold away. NACC (12-16) independent
 * chains cover the FMA latency (4 cycles) times the FMA issue rate (2 per cycle).
 * The ISA-specific kernels are compiled with function-level `#pragma GCC target`, so
 * the default build (no -march) still has them; the one matching fc_active_isa() runs.
 */
#include "peak.h"
#include "fastconv.h"
#include "threads.h"

#include <stdint.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#define FC_PEAK_X86 1
#include <immintrin.h>
#include "isa_target.h"
#endif

#define PEAK_A 0.9999847412109375 /* 1 - 2^-16 */
#define PEAK_B 0.0000152587890625 /* 2^-16 */
#define PEAK_CHUNK 2048           /* rounds per call: ~10 us, so timer reads are free */
#define PEAK_WARMUP_S 0.02        /* clocks and the wide-vector power state settle */

/* Runs `iters` rounds, stores a value depending on every FMA into *sink,
   returns the FLOP done (2 per lane per FMA). */
typedef double (*peak_fn)(int64_t iters, double *sink);

static double now_s(void)
{
#ifdef _OPENMP
    return omp_get_wtime();
#elif defined(CLOCK_MONOTONIC)
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
#else
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
#endif
}

/* ---- generic C: whatever the baseline ISA does with 12 scalar chains ---------- */
#define GENERIC_NACC 12
#define DEFINE_GENERIC(NAME, T)                                               \
    static double NAME(int64_t iters, double *sink)                           \
    {                                                                         \
        T acc[GENERIC_NACC];                                                  \
        const T a = (T)PEAK_A, b = (T)PEAK_B;                                 \
        for (int i = 0; i < GENERIC_NACC; i++)                                \
            acc[i] = (T)(*sink) + (T)i * (T)0.001;                            \
        for (int64_t r = 0; r < iters; r++)                                   \
            for (int i = 0; i < GENERIC_NACC; i++)                            \
                acc[i] = acc[i] * a + b;                                      \
        T s = 0;                                                              \
        for (int i = 0; i < GENERIC_NACC; i++)                                \
            s += acc[i];                                                      \
        *sink = (double)s * 1e-3;                                             \
        return 2.0 * (double)iters * GENERIC_NACC;                            \
    }
DEFINE_GENERIC(peak_f32_generic, float)
DEFINE_GENERIC(peak_f64_generic, double)

#ifdef FC_PEAK_X86
/* ---- AVX2 + FMA: 12 ymm accumulators ----------------------------------------- */
FC_TARGET_PUSH("avx2,fma")
#define AVX2_NACC 12
#define DEFINE_AVX2(NAME, VT, LANES, SET1, FMA, ADD, STORE, ST)              \
    static double NAME(int64_t iters, double *sink)                           \
    {                                                                         \
        VT acc[AVX2_NACC];                                                    \
        const VT a = SET1((ST)PEAK_A), b = SET1((ST)PEAK_B);                  \
        for (int i = 0; i < AVX2_NACC; i++)                                   \
            acc[i] = SET1((ST)(*sink) + (ST)i * (ST)0.001);                   \
        for (int64_t r = 0; r < iters; r++) {                                 \
            acc[0] = FMA(acc[0], a, b);   acc[1] = FMA(acc[1], a, b);         \
            acc[2] = FMA(acc[2], a, b);   acc[3] = FMA(acc[3], a, b);         \
            acc[4] = FMA(acc[4], a, b);   acc[5] = FMA(acc[5], a, b);         \
            acc[6] = FMA(acc[6], a, b);   acc[7] = FMA(acc[7], a, b);         \
            acc[8] = FMA(acc[8], a, b);   acc[9] = FMA(acc[9], a, b);         \
            acc[10] = FMA(acc[10], a, b); acc[11] = FMA(acc[11], a, b);       \
        }                                                                     \
        VT s = acc[0];                                                        \
        for (int i = 1; i < AVX2_NACC; i++)                                   \
            s = ADD(s, acc[i]);                                               \
        ST out[LANES];                                                        \
        STORE(out, s);                                                        \
        *sink = (double)out[0] * 1e-3;                                        \
        return 2.0 * (double)iters * AVX2_NACC * LANES;                       \
    }
DEFINE_AVX2(peak_f32_avx2, __m256, 8, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps,
            _mm256_storeu_ps, float)
DEFINE_AVX2(peak_f64_avx2, __m256d, 4, _mm256_set1_pd, _mm256_fmadd_pd, _mm256_add_pd,
            _mm256_storeu_pd, double)
FC_TARGET_POP

/* ---- AVX-512F: 16 zmm accumulators ------------------------------------------- */
FC_TARGET_PUSH("avx512f,avx2,fma")
#define AVX512_NACC 16
#define DEFINE_AVX512(NAME, VT, LANES, SET1, FMA, ADD, STORE, ST)            \
    static double NAME(int64_t iters, double *sink)                           \
    {                                                                         \
        VT acc[AVX512_NACC];                                                  \
        const VT a = SET1((ST)PEAK_A), b = SET1((ST)PEAK_B);                  \
        for (int i = 0; i < AVX512_NACC; i++)                                 \
            acc[i] = SET1((ST)(*sink) + (ST)i * (ST)0.001);                   \
        for (int64_t r = 0; r < iters; r++) {                                 \
            acc[0] = FMA(acc[0], a, b);   acc[1] = FMA(acc[1], a, b);         \
            acc[2] = FMA(acc[2], a, b);   acc[3] = FMA(acc[3], a, b);         \
            acc[4] = FMA(acc[4], a, b);   acc[5] = FMA(acc[5], a, b);         \
            acc[6] = FMA(acc[6], a, b);   acc[7] = FMA(acc[7], a, b);         \
            acc[8] = FMA(acc[8], a, b);   acc[9] = FMA(acc[9], a, b);         \
            acc[10] = FMA(acc[10], a, b); acc[11] = FMA(acc[11], a, b);       \
            acc[12] = FMA(acc[12], a, b); acc[13] = FMA(acc[13], a, b);       \
            acc[14] = FMA(acc[14], a, b); acc[15] = FMA(acc[15], a, b);       \
        }                                                                     \
        VT s = acc[0];                                                        \
        for (int i = 1; i < AVX512_NACC; i++)                                 \
            s = ADD(s, acc[i]);                                               \
        ST out[LANES];                                                        \
        STORE(out, s);                                                        \
        *sink = (double)out[0] * 1e-3;                                        \
        return 2.0 * (double)iters * AVX512_NACC * LANES;                     \
    }
DEFINE_AVX512(peak_f32_avx512, __m512, 16, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps,
              _mm512_storeu_ps, float)
DEFINE_AVX512(peak_f64_avx512, __m512d, 8, _mm512_set1_pd, _mm512_fmadd_pd, _mm512_add_pd,
              _mm512_storeu_pd, double)
FC_TARGET_POP
#endif /* FC_PEAK_X86 */

static peak_fn pick_kernel(int dtype, int isa)
{
    int f64 = dtype == FC_F64;
#ifdef FC_PEAK_X86
    if (isa >= FC_ISA_AVX512)
        return f64 ? peak_f64_avx512 : peak_f32_avx512;
    if (isa >= FC_ISA_AVX2)
        return f64 ? peak_f64_avx2 : peak_f32_avx2;
#else
    (void)isa;
#endif
    return f64 ? peak_f64_generic : peak_f32_generic;
}

/* One thread's measured rate in FLOP/s: warm up, wait for the team, then count. */
static double thread_rate(peak_fn fn, double seconds)
{
    double sink = 1.0, flops = 0.0, t0, t1;
    t0 = now_s();
    do {
        fn(PEAK_CHUNK, &sink);
    } while (now_s() - t0 < PEAK_WARMUP_S);
#ifdef _OPENMP
#pragma omp barrier
#endif
    t0 = now_s();
    do {
        flops += fn(PEAK_CHUNK, &sink);
        t1 = now_s();
    } while (t1 - t0 < seconds);
    volatile double keep = sink; /* the FMAs' result is observable */
    (void)keep;
    return flops / (t1 - t0);
}

double fc_fma_peak_gflops(int dtype, int nthreads, double seconds)
{
    if (dtype != FC_F32 && dtype != FC_F64)
        return -1.0;
    nthreads = fc_team_limit(nthreads);
    if (!(seconds > 1e-4))
        seconds = 1e-4;
    if (seconds > 60.0)
        seconds = 60.0;
    peak_fn fn = pick_kernel(dtype, fc_active_isa());
    double total = 0.0;
#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads) reduction(+ : total)
    total += thread_rate(fn, seconds);
#else
    (void)nthreads;
    total = thread_rate(fn, seconds);
#endif
    return total * 1e-9;
}
