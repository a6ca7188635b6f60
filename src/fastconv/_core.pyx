# cython: freethreading_compatible = True
"""Cython binding of the C kernels: buffers in, GIL released, C called, errors raised.

Everything here trusts its caller (``fastconv.functional``): arrays arrive C-contiguous,
aligned, native-endian and of the descriptor's dtype; the descriptor is validated.
"""
cimport numpy as cnp
from libc.stdint cimport int64_t, uintptr_t

cnp.import_array()

cdef extern from "fastconv.h" nogil:
    enum:
        FC_OK
        FC_ENOMEM
        FC_EINVAL
        FC_EUNSUPPORTED
    ctypedef struct fc_conv_desc:
        int64_t n, c_in, h, w
        int64_t c_out, kh, kw
        int64_t oh, ow
        int64_t stride_h, stride_w
        int64_t pad_top, pad_bottom, pad_left, pad_right
        int64_t dil_h, dil_w
        int64_t groups
        int dtype
        int nthreads
    int fc_cpu_best_isa()
    int fc_active_isa()
    int fc_set_isa(int isa)
    int fc_openmp_enabled()
    int fc_omp_max_threads()
    int fc_omp_num_procs()
    int fc_conv_choose(const fc_conv_desc *d, int pass_)
    size_t fc_conv_workspace_size(const fc_conv_desc *d, int pass_, int algo)
    int fc_conv_fwd(const fc_conv_desc *d, int algo, const void *x, const void *w,
                    const void *bias, void *y, void *workspace)
    int fc_conv_bwd_data(const fc_conv_desc *d, int algo, const void *grad_y, const void *w,
                         void *grad_x, void *workspace)
    int fc_conv_bwd_weights(const fc_conv_desc *d, int algo, const void *grad_y, const void *x,
                            void *grad_w, void *grad_bias, void *workspace)

cdef extern from "cpu_info.h" nogil:
    ctypedef struct fc_cpu_info:
        char vendor[16]
        int family, model
        int64_t l1d, l2, l3
        int fma512_ports
        double fma512_ratio
        int overridden
    void fc_cpu_info_copy(fc_cpu_info *out)

cdef extern from "threads.h" nogil:
    void fc_threads_init()
    int fc_fork_serial()

cdef extern from "conv_internal.h" nogil:
    int fc_implicit_accepts(const fc_conv_desc *d, int pass_)

DEF_ALIGN = 64
WORKSPACE_ALIGN = DEF_ALIGN
cdef uintptr_t ALIGN_MASK = DEF_ALIGN - 1


cdef fc_conv_desc make_desc(tuple desc) except *:
    """desc = (n, c_in, h, w, c_out, kh, kw, oh, ow, sh, sw, pt, pb, pl, pr, dh, dw, groups, dtype, nthreads)."""
    cdef fc_conv_desc d
    (d.n, d.c_in, d.h, d.w, d.c_out, d.kh, d.kw, d.oh, d.ow, d.stride_h, d.stride_w,
     d.pad_top, d.pad_bottom, d.pad_left, d.pad_right, d.dil_h, d.dil_w, d.groups,
     d.dtype, d.nthreads) = desc
    return d


cdef void *data_or_null(object a):
    if a is None:
        return NULL
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef void *workspace_ptr(object ws):
    """An aligned pointer into a caller's uint8 workspace (functional.py sized it
    workspace_size + WORKSPACE_ALIGN), or NULL to let the C call allocate its own."""
    if ws is None:
        return NULL
    cdef uintptr_t p = <uintptr_t>cnp.PyArray_DATA(<cnp.ndarray>ws)
    return <void *>((p + ALIGN_MASK) & ~ALIGN_MASK)


cdef int check(int status) except -1:
    if status == FC_OK:
        return 0
    if status == FC_ENOMEM:
        raise MemoryError("fastconv: the C kernel could not allocate its workspace")
    raise RuntimeError(f"fastconv: the C kernel returned status {status}")


def choose(tuple desc, int pass_):
    cdef fc_conv_desc d = make_desc(desc)
    return fc_conv_choose(&d, pass_)


def implicit_accepts(tuple desc, int pass_):
    """True when algorithm "im2col" runs this pass as implicit GEMM on the active ISA."""
    cdef fc_conv_desc d = make_desc(desc)
    return bool(fc_implicit_accepts(&d, pass_))


def workspace_size(tuple desc, int pass_, int algo):
    cdef fc_conv_desc d = make_desc(desc)
    return fc_conv_workspace_size(&d, pass_, algo)


def conv_fwd(tuple desc, int algo, x, w, bias, y, workspace=None):
    cdef fc_conv_desc d = make_desc(desc)
    cdef const void *px = data_or_null(x)
    cdef const void *pw = data_or_null(w)
    cdef const void *pb = data_or_null(bias)
    cdef void *py = data_or_null(y)
    cdef void *pws = workspace_ptr(workspace)
    cdef int status
    with nogil:
        status = fc_conv_fwd(&d, algo, px, pw, pb, py, pws)
    check(status)


def conv_bwd_data(tuple desc, int algo, grad_y, w, grad_x, workspace=None):
    cdef fc_conv_desc d = make_desc(desc)
    cdef const void *pgy = data_or_null(grad_y)
    cdef const void *pw = data_or_null(w)
    cdef void *pgx = data_or_null(grad_x)
    cdef void *pws = workspace_ptr(workspace)
    cdef int status
    with nogil:
        status = fc_conv_bwd_data(&d, algo, pgy, pw, pgx, pws)
    check(status)


def conv_bwd_weights(tuple desc, int algo, grad_y, x, grad_w, grad_bias, workspace=None):
    cdef fc_conv_desc d = make_desc(desc)
    cdef const void *pgy = data_or_null(grad_y)
    cdef const void *px = data_or_null(x)
    cdef void *pgw = data_or_null(grad_w)
    cdef void *pgb = data_or_null(grad_bias)
    cdef void *pws = workspace_ptr(workspace)
    cdef int status
    with nogil:
        status = fc_conv_bwd_weights(&d, algo, pgy, px, pgw, pgb, pws)
    check(status)


def best_isa():
    """Best instruction set this CPU and OS support (0 generic, 1 AVX2+FMA, 2 AVX-512F)."""
    return fc_cpu_best_isa()


def active_isa():
    """Instruction set the kernels use now."""
    return fc_active_isa()


def set_isa(int isa):
    """Use at most ``isa``; clamped to what the CPU supports. Returns the ISA now active."""
    return fc_set_isa(isa)


def openmp_enabled():
    return bool(fc_openmp_enabled())


def omp_max_threads():
    return fc_omp_max_threads()


def omp_num_procs():
    return fc_omp_num_procs()


def cpu_info():
    """What the blocking depends on: vendor, family, model, cache sizes (bytes) and the
    512-bit FMA pipes (measured), as detected at import or set by FASTCONV_CPU_*."""
    cdef fc_cpu_info c
    fc_cpu_info_copy(&c)
    return {"vendor": c.vendor.decode("ascii", "replace"), "family": c.family, "model": c.model,
            "l1d": c.l1d, "l2": c.l2, "l3": c.l3, "fma512_ports": c.fma512_ports,
            "fma512_ratio": c.fma512_ratio, "caches_overridden": bool(c.overridden & 1),
            "ports_overridden": bool(c.overridden & 2)}


def fork_serial():
    """True in a child forked after fastconv's OpenMP team had started: its kernels run on
    the calling thread (GNU libgomp's pool does not survive fork)."""
    return bool(fc_fork_serial())


fc_threads_init()  # the at-fork handler exists before any team does
cpu_info()  # detect the caches and FMA pipes once, at import


# Test and benchmark hooks, kept in their own files.
include "_gemm.pxi"
include "_peak.pxi"
include "_nn.pxi"
