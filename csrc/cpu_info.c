/* cpu_info.c: cache sizes, vendor/family/model and 512-bit FMA ports (see cpu_info.h). */
#include "cpu_info.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fastconv.h"

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define FC_CPUINFO_X86 1
#include <cpuid.h>
#include <immintrin.h>
#include "isa_target.h"
#endif

static fc_cpu_info info;
static int ready = 0;

static int64_t env_bytes(const char *name)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return 0;
    char *end = NULL;
    double v = strtod(s, &end);
    if (end && (*end == 'k' || *end == 'K'))
        v *= 1024.0;
    else if (end && (*end == 'm' || *end == 'M'))
        v *= 1024.0 * 1024.0;
    return v >= 1024.0 && v < 1e12 ? (int64_t)v : 0;
}

#ifdef FC_CPUINFO_X86
/* Deterministic cache parameters: Intel leaf 4, AMD leaf 0x8000001D (same layout). */
static void x86_caches(unsigned leaf)
{
    for (unsigned i = 0; i < 16; i++) {
        unsigned a, b, c, d;
        __cpuid_count(leaf, i, a, b, c, d);
        const unsigned type = a & 31, level = (a >> 5) & 7;
        if (type == 0)
            break;
        if (type == 2) /* instruction cache */
            continue;
        const int64_t bytes = (int64_t)(((b >> 22) & 1023) + 1) * (((b >> 12) & 1023) + 1) *
                              ((b & 4095) + 1) * ((int64_t)c + 1);
        if (level == 1)
            info.l1d = bytes;
        else if (level == 2)
            info.l2 = bytes;
        else if (level == 3)
            info.l3 = bytes;
    }
}

static void x86_identify(void)
{
    unsigned a, b, c, d, max_leaf;
    __cpuid(0, max_leaf, b, c, d);
    memcpy(info.vendor, &b, 4);
    memcpy(info.vendor + 4, &d, 4);
    memcpy(info.vendor + 8, &c, 4);
    info.vendor[12] = 0;
    if (max_leaf >= 1) {
        __cpuid(1, a, b, c, d);
        int family = (a >> 8) & 15, model = (a >> 4) & 15;
        if (family == 15)
            family += (a >> 20) & 255;
        if (family == 6 || family >= 15)
            model += ((a >> 16) & 15) << 4;
        info.family = family;
        info.model = model;
    }
    if (!strcmp(info.vendor, "AuthenticAMD") || !strcmp(info.vendor, "HygonGenuine")) {
        unsigned ext;
        __cpuid(0x80000000u, ext, b, c, d);
        if (ext >= 0x8000001Du)
            x86_caches(0x8000001Du);
    } else if (max_leaf >= 4) {
        x86_caches(4);
    }
}

/* Vector FMAs per second of 12 independent accumulator chains over `iters` rounds
   (12 chains cover a 4-cycle latency on two pipes, with slack). */
#define DEFINE_FMA_RATE(NAME, VT, SET1, FMA, ADD, FIRST)                                      \
    static double NAME(int64_t iters)                                                         \
    {                                                                                         \
        VT acc[12];                                                                           \
        const VT a = SET1(0.999f), b = SET1(1e-3f);                                           \
        for (int i = 0; i < 12; i++)                                                          \
            acc[i] = SET1((float)i);                                                          \
        struct timespec t0, t1;                                                               \
        clock_gettime(CLOCK_MONOTONIC, &t0);                                                  \
        for (int64_t r = 0; r < iters; r++)                                                   \
            for (int i = 0; i < 12; i++)                                                      \
                acc[i] = FMA(acc[i], a, b);                                                   \
        clock_gettime(CLOCK_MONOTONIC, &t1);                                                  \
        VT s = acc[0];                                                                        \
        for (int i = 1; i < 12; i++)                                                          \
            s = ADD(s, acc[i]);                                                               \
        volatile float keep = FIRST(s); /* the chains' result is observable */                \
        (void)keep;                                                                           \
        const double dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec); \
        return dt > 0 ? (double)iters * 12.0 / dt : 0.0;                                      \
    }
/* (the target pragmas stay outside the macro: gcc misplaces a _Pragma from a macro body) */
FC_TARGET_PUSH("avx2,fma")
DEFINE_FMA_RATE(fma256_rate, __m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_cvtss_f32)
FC_TARGET_POP
FC_TARGET_PUSH("avx512f")
DEFINE_FMA_RATE(fma512_rate, __m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, _mm512_cvtss_f32)
FC_TARGET_POP

/* The ratio of 512-bit to 256-bit vector FMAs per second is the number of 512-bit FMA pipes
   (a 256-bit FMA always has two). Measured after a warm-up (a core coming out of idle ramps
   its clock, and may power its vector units up, within the first fraction of a millisecond:
   a 256-bit trial run slow there and a 512-bit one fast read as two pipes on a one-pipe
   Zen 4), as the median of five adjacent 256/512 pairs (a pair shares its clock; one
   preempted trial moves one pair). About 1 ms in all on Zen 4, once per process. */
#define FMA_PAIRS 5
static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void measure_fma512(void)
{
    for (int t = 0; t < 2; t++) {
        fma256_rate(40000);
        fma512_rate(40000);
    }
    double ratio[FMA_PAIRS];
    for (int t = 0; t < FMA_PAIRS; t++) {
        const double x = fma256_rate(20000), y = fma512_rate(20000);
        ratio[t] = x > 0 ? 2.0 * y / x : 0.0; /* 512-bit FMAs per cycle */
    }
    qsort(ratio, FMA_PAIRS, sizeof ratio[0], cmp_double);
    info.fma512_ratio = ratio[FMA_PAIRS / 2];
    info.fma512_ports = info.fma512_ratio >= 1.5 ? 2 : 1;
}
#endif /* FC_CPUINFO_X86 */

static void detect(void)
{
    memset(&info, 0, sizeof info);
#ifdef FC_CPUINFO_X86
    x86_identify();
    if (fc_cpu_best_isa() >= FC_ISA_AVX512)
        measure_fma512();
#endif
#if defined(_SC_LEVEL1_DCACHE_SIZE)
    if (info.l1d <= 0)
        info.l1d = sysconf(_SC_LEVEL1_DCACHE_SIZE) > 0 ? sysconf(_SC_LEVEL1_DCACHE_SIZE) : 0;
    if (info.l2 <= 0)
        info.l2 = sysconf(_SC_LEVEL2_CACHE_SIZE) > 0 ? sysconf(_SC_LEVEL2_CACHE_SIZE) : 0;
    if (info.l3 <= 0)
        info.l3 = sysconf(_SC_LEVEL3_CACHE_SIZE) > 0 ? sysconf(_SC_LEVEL3_CACHE_SIZE) : 0;
#endif
    if (info.l1d < 4096 || info.l1d > ((int64_t)1 << 22))
        info.l1d = 32 << 10;
    if (info.l2 < info.l1d || info.l2 > ((int64_t)1 << 30))
        info.l2 = 1 << 20;
    if (info.l3 < info.l2)
        info.l3 = info.l2 > (8 << 20) ? info.l2 : 8 << 20;
    int64_t v;
    if ((v = env_bytes("FASTCONV_CPU_L1D")) > 0) { info.l1d = v; info.overridden |= 1; }
    if ((v = env_bytes("FASTCONV_CPU_L2")) > 0) { info.l2 = v; info.overridden |= 1; }
    if ((v = env_bytes("FASTCONV_CPU_L3")) > 0) { info.l3 = v; info.overridden |= 1; }
    const char *p = getenv("FASTCONV_CPU_FMA512_PORTS");
    if (p && (p[0] == '1' || p[0] == '2') && p[1] == 0) {
        info.fma512_ports = p[0] - '0';
        info.overridden |= 2;
    }
}

const fc_cpu_info *fc_cpu_info_get(void)
{
#if defined(__GNUC__) || defined(__clang__)
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        detect(); /* first call at import, under the GIL; later calls only read */
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
#else
    if (!ready) {
        detect();
        ready = 1;
    }
#endif
    return &info;
}

void fc_cpu_info_copy(fc_cpu_info *out) { *out = *fc_cpu_info_get(); }
