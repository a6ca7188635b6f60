# _nn.pxi: the binding of csrc/nn/nn_ops.c (ReLU, max pooling, dropout, Adam), included into
# _core.pyx. Thin by design: fastconv/nn/_ops.py has checked every array (C-contiguous,
# native, aligned, float32/float64 of one dtype, matching sizes) before it gets here.

from libc.stdint cimport int32_t, int64_t, uint64_t


cdef extern from "nn/nn_ops.h" nogil:
    int fc_relu_fwd(int dtype, int64_t n, const void *x, void *y, int nthreads)
    int fc_relu_bwd(int dtype, int64_t n, const void *gy, const void *y, void *gx, int nthreads)
    int fc_maxpool_fwd(int dtype, int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow,
                       int64_t ph, int64_t pw, int64_t sh, int64_t sw, int64_t pad_top, int64_t pad_left,
                       const void *x, void *y, int32_t *argmax, int nthreads)
    int fc_maxpool_bwd(int dtype, int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow,
                       const int32_t *argmax, const void *gy, void *gx, int nthreads)
    int fc_dropout_fwd(int dtype, int64_t n, const void *x, void *y, double rate, uint64_t key, int nthreads)
    int fc_dropout_bwd(int dtype, int64_t n, const void *gy, void *gx, double rate, uint64_t key, int nthreads)
    int fc_adam_update(int dtype, int64_t n, void *p, const void *g, void *m, void *v,
                       double lr_t, double b1, double b2, double eps, int nthreads)


cdef inline void *_ptr(object a):
    return cnp.PyArray_DATA(<cnp.ndarray>a)


def relu_fwd(int dtype, x, y, int nthreads):
    cdef int64_t n = x.size
    cdef const void *px = _ptr(x)
    cdef void *py = _ptr(y)
    cdef int status
    with nogil:
        status = fc_relu_fwd(dtype, n, px, py, nthreads)
    check(status)


def relu_bwd(int dtype, gy, y, gx, int nthreads):
    cdef int64_t n = gy.size
    cdef const void *pgy = _ptr(gy)
    cdef const void *py = _ptr(y)
    cdef void *pgx = _ptr(gx)
    cdef int status
    with nogil:
        status = fc_relu_bwd(dtype, n, pgy, py, pgx, nthreads)
    check(status)


def maxpool_fwd(int dtype, x, y, argmax, int64_t ph, int64_t pw, int64_t sh, int64_t sw,
                int64_t pad_top, int64_t pad_left, int nthreads):
    """x: (P, H, W), y and argmax (int32): (P, OH, OW)."""
    cdef int64_t planes = x.shape[0], h = x.shape[1], w = x.shape[2]
    cdef int64_t oh = y.shape[1], ow = y.shape[2]
    cdef const void *px = _ptr(x)
    cdef void *py = _ptr(y)
    cdef int32_t *pa = <int32_t *>_ptr(argmax)
    cdef int status
    with nogil:
        status = fc_maxpool_fwd(dtype, planes, h, w, oh, ow, ph, pw, sh, sw, pad_top, pad_left,
                                px, py, pa, nthreads)
    check(status)


def maxpool_bwd(int dtype, argmax, gy, gx, int nthreads):
    """argmax and gy: (P, OH, OW), gx: (P, H, W)."""
    cdef int64_t planes = gx.shape[0], h = gx.shape[1], w = gx.shape[2]
    cdef int64_t oh = gy.shape[1], ow = gy.shape[2]
    cdef const int32_t *pa = <const int32_t *>_ptr(argmax)
    cdef const void *pgy = _ptr(gy)
    cdef void *pgx = _ptr(gx)
    cdef int status
    with nogil:
        status = fc_maxpool_bwd(dtype, planes, h, w, oh, ow, pa, pgy, pgx, nthreads)
    check(status)


def dropout(int dtype, x, y, double rate, uint64_t key, int nthreads, bint backward=False):
    cdef int64_t n = x.size
    cdef const void *px = _ptr(x)
    cdef void *py = _ptr(y)
    cdef int status
    with nogil:
        if backward:
            status = fc_dropout_bwd(dtype, n, px, py, rate, key, nthreads)
        else:
            status = fc_dropout_fwd(dtype, n, px, py, rate, key, nthreads)
    check(status)


def adam_update(int dtype, p, g, m, v, double lr_t, double b1, double b2, double eps, int nthreads):
    cdef int64_t n = p.size
    cdef void *pp = _ptr(p)
    cdef const void *pg = _ptr(g)
    cdef void *pm = _ptr(m)
    cdef void *pv = _ptr(v)
    cdef int status
    with nogil:
        status = fc_adam_update(dtype, n, pp, pg, pm, pv, lr_t, b1, b2, eps, nthreads)
    check(status)
