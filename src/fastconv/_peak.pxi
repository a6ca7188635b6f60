# _peak.pxi: the FMA peak probe (csrc/peak.c), included into _core.pyx with
#     include "_peak.pxi"
# so that it shares the one extension module. Used by ``fastconv.bench.peak``.

cdef extern from "peak.h" nogil:
    double fc_fma_peak_gflops(int dtype, int nthreads, double seconds)


def fma_peak_gflops(str dtype, int nthreads, double seconds):
    """Measured FMA throughput of this machine, in GFLOP/s (an FMA counts as 2 FLOP).

    Runs independent FMA chains with the instruction set the kernels use now on
    ``nthreads`` threads for about ``seconds`` (plus ~20 ms of warm-up), GIL released.

    Parameters
    ----------
    dtype : {"f32", "float32", "f64", "float64"}
    nthreads : int
        Threads (>= 1); a build without OpenMP always uses one.
    seconds : float
        Measuring time, > 0.

    Returns
    -------
    float
        GFLOP/s summed over the threads.
    """
    cdef int code
    if dtype in ("f32", "float32"):
        code = 0
    elif dtype in ("f64", "float64"):
        code = 1
    else:
        raise ValueError(f"dtype must be 'f32' or 'f64', got {dtype!r}")
    if nthreads < 1:
        raise ValueError(f"nthreads must be >= 1, got {nthreads}")
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    cdef double result
    with nogil:
        result = fc_fma_peak_gflops(code, nthreads, seconds)
    if result < 0:
        raise RuntimeError("fastconv: the FMA peak probe failed")
    return result
