# _gemm.pxi: a thin testing/benchmark hook onto fastconv's own GEMM (csrc/gemm/), included
# into _core.pyx with
#     include "_gemm.pxi"
# after `cimport numpy as cnp` and `cnp.import_array()`. Private: not part of the public API.

from libc.stdint cimport int64_t

import numpy as _np_gemm


cdef extern from "gemm/gemm.h" nogil:
    ctypedef struct fc_gemm_args:
        int64_t m, n, k
        const void *a
        int64_t rsa, csa
        const void *b
        int64_t rsb, csb
        void *c
        int64_t rsc
        double alpha
        int beta
        const void *bias
        int dtype
    int fc_gemm(const fc_gemm_args *g, int nthreads)
    void fc_gemm_blocking(int dtype, int *mr, int *nr, int64_t *mc, int64_t *kc, int64_t *nc)
    void fc_gemm_init()
    int fc_gemm_panel_l2()
    int fc_gemm_row_groups(int dtype, int64_t m, int64_t n, int nthreads)


fc_gemm_init()  # derive the cache blocks from the CPU once, at import


cdef int _gemm_dtype_code(object dtype) except -1:
    if dtype == _np_gemm.float32:
        return 0
    if dtype == _np_gemm.float64:
        return 1
    raise TypeError(f"gemm: dtype must be float32 or float64, got {dtype}")


cdef object _gemm_operand(object x, object dtype, str name):
    """x as a 2-D native, aligned array of dtype whose strides are whole elements (a view
    when it already is one, transposed and strided views included; else a copy)."""
    if not isinstance(x, _np_gemm.ndarray) or x.ndim != 2:
        raise ValueError(f"gemm: {name} must be a 2-D numpy array")
    if x.dtype != dtype:
        raise TypeError(f"gemm: {name} has dtype {x.dtype}, expected {dtype}")
    cdef Py_ssize_t item = x.itemsize
    if (not x.flags.aligned or not x.dtype.isnative
            or x.strides[0] % item or x.strides[1] % item):
        x = _np_gemm.ascontiguousarray(x, dtype=dtype.newbyteorder("="))
    return x


def gemm_blocking(dtype):
    """Block sizes of the GEMM for ``dtype`` under the active ISA: a dict with the
    micro-kernel tile ``mr`` x ``nr``, the cache blocks ``mc``, ``kc``, ``nc`` and where the
    B panel is meant to stay, ``panel`` ("l2" or "l3", see gemm.c)."""
    cdef int code = _gemm_dtype_code(_np_gemm.dtype(dtype))
    cdef int mr, nr
    cdef int64_t mc, kc, nc
    fc_gemm_blocking(code, &mr, &nr, &mc, &kc, &nc)
    return {"mr": mr, "nr": nr, "mc": mc, "kc": kc, "nc": nc,
            "panel": "l2" if fc_gemm_panel_l2() else "l3"}


def gemm_row_groups(dtype, int64_t m, int64_t n, int nthreads):
    """Row groups a team of ``nthreads`` splits an ``m`` x ``n`` product into (the rest of
    the team splits columns; see gemm.c's choose_ic_ways), for the first NC panel."""
    return fc_gemm_row_groups(_gemm_dtype_code(_np_gemm.dtype(dtype)), m, n, nthreads)


def gemm(a, b, c=None, *, trans_a=False, trans_b=False, alpha=1.0, beta=0, bias=None,
         int nthreads=1):
    """C = alpha * op(A) @ op(B) + beta * C (+ bias[:, None]) with fastconv's own GEMM.

    Private testing/benchmark hook. ``a`` and ``b`` are 2-D float32 or float64 arrays of one
    dtype with any element strides (op(X) = X.T when ``trans_x``, a view, never a copy).
    ``c`` (shape (m, n), same dtype, unit column stride, any row stride, e.g. a row slice of
    a larger array) is allocated when None (then beta must be 0); with beta == 0 it is
    never read. ``bias`` has length m. ``beta`` is 0 or 1. Returns ``c``.
    """
    if not isinstance(a, _np_gemm.ndarray) or not isinstance(b, _np_gemm.ndarray):
        raise TypeError("gemm: a and b must be numpy arrays")
    dtype = a.dtype
    cdef int code = _gemm_dtype_code(dtype)
    a = _gemm_operand(a, dtype, "a")
    b = _gemm_operand(b, dtype, "b")
    if trans_a:
        a = a.T
    if trans_b:
        b = b.T
    cdef int64_t m = a.shape[0], k = a.shape[1], n = b.shape[1]
    if b.shape[0] != k:
        raise ValueError(f"gemm: inner dimensions differ: {a.shape} @ {b.shape}")
    if beta not in (0, 1):
        raise ValueError("gemm: beta must be 0 or 1")
    cdef Py_ssize_t item = a.itemsize
    cdef int64_t rsc = n
    if c is None:
        if beta:
            raise ValueError("gemm: beta=1 needs c")
        c = _np_gemm.empty((m, n), dtype=dtype)
    else:
        if not isinstance(c, _np_gemm.ndarray) or c.ndim != 2 or c.shape != (m, n):
            raise ValueError(f"gemm: c must be a 2-D array of shape {(m, n)}")
        if c.dtype != dtype or not c.dtype.isnative:
            raise TypeError(f"gemm: c must be native {dtype}")
        if not c.flags.writeable or not c.flags.aligned:
            raise ValueError("gemm: c must be writeable and aligned")
        if n > 1 and c.strides[1] != item:
            raise ValueError("gemm: c must have unit column stride")
        if m > 1:
            if c.strides[0] % item or c.strides[0] < 0:
                raise ValueError("gemm: the row stride of c must be a positive whole number of elements")
            rsc = c.strides[0] // item
    if bias is not None:
        bias = _np_gemm.ascontiguousarray(bias, dtype=dtype)
        if bias.ndim != 1 or bias.shape[0] != m:
            raise ValueError(f"gemm: bias must have shape ({m},)")

    cdef fc_gemm_args g
    g.m = m
    g.n = n
    g.k = k
    g.a = cnp.PyArray_DATA(<cnp.ndarray>a)
    g.rsa = a.strides[0] // item
    g.csa = a.strides[1] // item
    g.b = cnp.PyArray_DATA(<cnp.ndarray>b)
    g.rsb = b.strides[0] // item
    g.csb = b.strides[1] // item
    g.c = cnp.PyArray_DATA(<cnp.ndarray>c)
    g.rsc = rsc
    g.alpha = float(alpha)
    g.beta = 1 if beta else 0
    g.bias = NULL if bias is None else cnp.PyArray_DATA(<cnp.ndarray>bias)
    g.dtype = code
    cdef int status
    with nogil:
        status = fc_gemm(&g, nthreads)
    if status == 1:  # FC_ENOMEM
        raise MemoryError("fastconv.gemm: could not allocate the GEMM workspace")
    if status != 0:
        raise RuntimeError(f"fastconv.gemm: status {status}")
    return c
