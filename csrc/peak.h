/*
 * peak.h: a short FMA-throughput probe, the "100 %" of the benchmark's "% of peak".
 *
 * fc_fma_peak_gflops(dtype, nthreads, seconds) runs independent chains of fused
 * multiply-adds (enough vector accumulators to cover the FMA latency) on `nthreads`
 * threads for about `seconds` (plus a short warm-up) with the instruction set the
 * kernels use now (fc_active_isa()), and returns the measured GFLOP/s, counting an FMA
 * as 2 FLOP. dtype is enum fc_dtype (FC_F32 = 0, FC_F64 = 1). Returns a negative number
 * for an unknown dtype. Built without OpenMP, it runs on one thread whatever nthreads is.
 */
#ifndef FASTCONV_PEAK_H
#define FASTCONV_PEAK_H

#ifdef __cplusplus
extern "C" {
#endif

double fc_fma_peak_gflops(int dtype, int nthreads, double seconds);

#ifdef __cplusplus
}
#endif
#endif /* FASTCONV_PEAK_H */
