/* cpu.c: CPU feature detection (once) and the ISA the kernels use now. */
#include "fastconv.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static int detect_best_isa(void)
{
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    __builtin_cpu_init();
    /* libgcc's checks include the OS's XSAVE support (XCR0) for AVX and AVX-512 state. */
    if (__builtin_cpu_supports("avx512f"))
        return FC_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return FC_ISA_AVX2;
#endif
    return FC_ISA_GENERIC;
}

/* -1 = not detected yet. Written once at import (under the GIL) and by fc_set_isa. */
static int best_isa = -1;
static int active_isa = -1;

int fc_cpu_best_isa(void)
{
    if (best_isa < 0)
        best_isa = detect_best_isa();
    return best_isa;
}

int fc_active_isa(void)
{
    if (active_isa < 0)
        active_isa = fc_cpu_best_isa();
    return active_isa;
}

int fc_set_isa(int isa)
{
    int best = fc_cpu_best_isa();
    if (isa < FC_ISA_GENERIC)
        isa = FC_ISA_GENERIC;
    active_isa = isa > best ? best : isa;
    return active_isa;
}

int fc_openmp_enabled(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int fc_omp_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int fc_omp_num_procs(void)
{
#ifdef _OPENMP
    return omp_get_num_procs();
#else
    return 1;
#endif
}
