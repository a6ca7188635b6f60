/*
 * cpu_info.h: what the blocking of the kernels depends on, detected once at run time.
 *
 *   caches   L1d, L2 (per core) and L3 (shared) sizes: CPUID leaf 4 (Intel) or 0x8000001D
 *            (AMD) on x86-64, else sysconf, else conservative defaults (32 KiB / 1 MiB / 8 MiB)
 *   vendor, family, model   CPUID leaves 0 and 1 (0 elsewhere)
 *   fma512_ports   512-bit FMAs issued per cycle: measured, as the ratio of the 512-bit to
 *            the 256-bit FMA throughput (frequency-independent: ~2 on CPUs with two 512-bit
 *            FMA pipes such as Intel Xeon server cores and AMD Zen 5, ~1 where a 512-bit FMA
 *            takes both 256-bit pipes, as on Zen 4); 0 without AVX-512
 *
 * FASTCONV_CPU_L1D / _L2 / _L3 (bytes, or with a K/M suffix) and FASTCONV_CPU_FMA512_PORTS
 * override what was detected, for experiments. Read once, at the first query.
 */
#ifndef FASTCONV_CPU_INFO_H
#define FASTCONV_CPU_INFO_H

#include <stdint.h>

typedef struct fc_cpu_info {
    char vendor[16];          /* "GenuineIntel", "AuthenticAMD", ... or "" */
    int family, model;        /* display family/model (extended fields folded in) */
    int64_t l1d, l2, l3;      /* bytes */
    int fma512_ports;         /* 1 or 2 (0: no AVX-512) */
    double fma512_ratio;      /* measured 512-bit / 256-bit FMA throughput (0: not measured) */
    int overridden;           /* bit 0: caches from the environment, bit 1: ports */
} fc_cpu_info;

/* The detected (or overridden) CPU; never NULL. Thread-safe after the first call, which
   the extension makes at import. */
const fc_cpu_info *fc_cpu_info_get(void);
/* A copy of it (for the binding). */
void fc_cpu_info_copy(fc_cpu_info *out);

#endif /* FASTCONV_CPU_INFO_H */
