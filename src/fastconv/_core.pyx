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
    enum:
        FC_FWD
        FC_BWD_DATA
        FC_BWD_WEIGHTS
        FC_F32
        FC_F64
        FC_ALGO_AUTO
        FC_ALGO_IM2COL
        FC_ALGO_IMPLICIT_GEMM
        FC_ALGO_COUNT
        FC_PRECISION_HIGHEST
        FC_PRECISION_MEDIUM
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
        int precision
    int fc_cpu_best_isa()
    int fc_active_isa()
    int fc_set_isa(int isa)
    int fc_openmp_enabled()
    int fc_omp_max_threads()
    int fc_omp_num_procs()
    int fc_conv_choose(const fc_conv_desc *d, int pass_)
    int fc_implicit_tile(int dtype, int *mr, int *nr)
    int fc_pointwise_wgrad_suits(const fc_conv_desc *d)
    int fc_implicit_groups_a_tile(const fc_conv_desc *d, int pass_)
    int fc_direct_pixels(const fc_conv_desc *d, int pass_)
    int fc_implicit_wgrad_chunks(const fc_conv_desc *d)
    int fc_implicit_band_in_place(const fc_conv_desc *d, int pass_)
    int fc_im2col_wgrad_chunks(const fc_conv_desc *d)
    int fc_implicit_wgrad_images(const fc_conv_desc *d)
    int fc_conv_resolve(const fc_conv_desc *d, int pass_, int algo)
    const char *fc_conv_rejects(const fc_conv_desc *d, int pass_, int algo)
    const char *fc_algo_name(int algo)
    const char *fc_algo_family(int algo)
    int fc_algo_reduced_precision(int algo)
    size_t fc_conv_workspace_size(const fc_conv_desc *d, int pass_, int algo)
    int fc_conv_fwd(const fc_conv_desc *d, int algo, const void *x, const void *w,
                    const void *bias, void *y, void *workspace, int post)
    int fc_conv_bwd_data(const fc_conv_desc *d, int algo, const void *grad_y, const void *w,
                         void *grad_x, void *workspace, const void *relu_out)
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

DEF_ALIGN = 64
WORKSPACE_ALIGN = DEF_ALIGN
cdef uintptr_t ALIGN_MASK = DEF_ALIGN - 1


# The C enums, exported so Python never retypes their values.
FWD, BWD_DATA, BWD_WEIGHTS = FC_FWD, FC_BWD_DATA, FC_BWD_WEIGHTS
DTYPE_F32, DTYPE_F64 = FC_F32, FC_F64
ALGO_AUTO, ALGO_IM2COL = FC_ALGO_AUTO, FC_ALGO_IM2COL
PRECISION_HIGHEST, PRECISION_MEDIUM = FC_PRECISION_HIGHEST, FC_PRECISION_MEDIUM


def algorithms():
    """{name: (id, family, reduced_precision)} for "auto", "im2col" and every table entry."""
    out = {}
    cdef int a
    for a in range(FC_ALGO_COUNT):
        name = fc_algo_name(a)
        if name != NULL:
            out[name.decode()] = (a, fc_algo_family(a).decode(), bool(fc_algo_reduced_precision(a) == 1))
    return out


cdef class ConvDesc:
    """The C descriptor (fc_conv_desc), built by keyword: one struct on both sides."""
    cdef fc_conv_desc d

    def __init__(self, *, int64_t n, int64_t c_in, int64_t h, int64_t w, int64_t c_out, int64_t kh,
                 int64_t kw, int64_t oh, int64_t ow, int64_t stride_h, int64_t stride_w,
                 int64_t pad_top, int64_t pad_bottom, int64_t pad_left, int64_t pad_right,
                 int64_t dil_h, int64_t dil_w, int64_t groups, int dtype, int nthreads,
                 int precision=FC_PRECISION_HIGHEST):
        self.d.n, self.d.c_in, self.d.h, self.d.w = n, c_in, h, w
        self.d.c_out, self.d.kh, self.d.kw, self.d.oh, self.d.ow = c_out, kh, kw, oh, ow
        self.d.stride_h, self.d.stride_w = stride_h, stride_w
        self.d.pad_top, self.d.pad_bottom, self.d.pad_left, self.d.pad_right = pad_top, pad_bottom, pad_left, pad_right
        self.d.dil_h, self.d.dil_w, self.d.groups = dil_h, dil_w, groups
        self.d.dtype, self.d.nthreads, self.d.precision = dtype, nthreads, precision

    @property
    def nthreads(self):
        return self.d.nthreads


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
    if status == FC_EINVAL:
        raise ValueError("fastconv: the algorithm cannot run this problem")
    raise RuntimeError(f"fastconv: the C kernel returned status {status}")


def choose(ConvDesc desc, int pass_):
    """The entry id "auto" runs for this pass (before the NaN/inf routing)."""
    return fc_conv_choose(&desc.d, pass_)


def resolve(ConvDesc desc, int pass_, int algo):
    """The entry id a call with ``algo`` runs for this pass, or -1 when it cannot."""
    return fc_conv_resolve(&desc.d, pass_, algo)


def rejects(ConvDesc desc, int pass_, int algo):
    """None when ``algo`` can run this pass of the problem, else why not."""
    cdef const char *why = fc_conv_rejects(&desc.d, pass_, algo)
    return None if why == NULL else why.decode()


def implicit_accepts(ConvDesc desc, int pass_):
    """True when algorithm "im2col" runs this pass as implicit GEMM on the active ISA."""
    return fc_conv_resolve(&desc.d, pass_, FC_ALGO_IM2COL) == FC_ALGO_IMPLICIT_GEMM


def implicit_tile(int dtype):
    """(MR, NR) of the implicit-GEMM micro-kernel for ``dtype`` (DTYPE_F32 or DTYPE_F64) on
    the active ISA, or None where it has none (the "im2col" family then lowers explicitly)."""
    cdef int mr = 0, nr = 0
    if dtype not in (FC_F32, FC_F64):
        raise ValueError(f"implicit_tile: dtype must be DTYPE_F32 or DTYPE_F64, got {dtype}")
    return (mr, nr) if fc_implicit_tile(dtype, &mr, &nr) else None


def pointwise_wgrad_runs(ConvDesc desc):
    """True when the gemm_1x1 entry computes this problem's weight gradient on the
    implicit-GEMM micro-kernels (csrc/pointwise_wgrad.c) on the active ISA, False when on
    the GEMM. Meaningful for pointwise problems (1x1, stride 1, unpadded) only."""
    return fc_pointwise_wgrad_suits(&desc.d) != 0


def implicit_groups_a_tile(ConvDesc desc, int pass_):
    """Groups one implicit-GEMM tile computes for ``pass_`` (FWD, BWD_DATA or BWD_WEIGHTS)
    on the active ISA: > 1 where a grouped layer's channels a group fill less than the tile
    and that many groups are packed side by side (csrc/implicit/implicit_plan.c), else 1."""
    return fc_implicit_groups_a_tile(&desc.d, pass_)


def direct_pixels(ConvDesc desc, int pass_):
    """Whether the direct entry runs ``pass_`` (FWD, BWD_DATA at unit strides, or
    BWD_WEIGHTS) on its pixel-vector kernels under the active ISA (csrc/conv_direct.c)."""
    return fc_direct_pixels(&desc.d, pass_) != 0


def implicit_band_in_place(ConvDesc desc, int pass_):
    """Where implicit GEMM's ``pass_`` (FWD, or BWD_DATA at unit strides) reads its operand
    on the active ISA: 0, a band copied from it; 1, in place; 2, in place for the tiles whose
    pixel groups leave out every tap reading padding (finite weights), else copied (see
    csrc/implicit/implicit_plan.c, band_in_place). 0 for BWD_WEIGHTS."""
    return fc_implicit_band_in_place(&desc.d, pass_)


def implicit_wgrad_chunks(ConvDesc desc):
    """Batch chunks the implicit-GEMM weight gradient of this problem sums separately and
    adds in chunk order (csrc/implicit/implicit_plan.c, wgrad_chunks): 1 to 8, from sizes only."""
    return fc_implicit_wgrad_chunks(&desc.d)


def im2col_wgrad_chunks(ConvDesc desc):
    """Batch chunks the GEMM weight gradient (explicit im2col, gemm_1x1) of this problem sums
    separately and adds in chunk order (csrc/conv_im2col.c); 0 where the whole team sums the
    images one by one. From sizes only. Not used where gemm_1x1's weight gradient runs on the
    implicit micro-kernels (pointwise_wgrad_runs)."""
    return fc_im2col_wgrad_chunks(&desc.d)


def implicit_wgrad_images(ConvDesc desc):
    """Images one implicit-GEMM weight-gradient kernel call sums (csrc/implicit/implicit_plan.c,
    wgrad_images): 1 to 8, from sizes only; 0 where the active ISA has no such kernels."""
    return fc_implicit_wgrad_images(&desc.d)


def workspace_size(ConvDesc desc, int pass_, int algo):
    return fc_conv_workspace_size(&desc.d, pass_, algo)


def conv_fwd(ConvDesc desc, int algo, x, w, bias, y, workspace=None, int post=0):
    """The forward into y; post: 0 none, 1 ReLU (enum fc_post)."""
    if post not in (0, 1):
        raise ValueError(f"conv_fwd: post must be 0 (none) or 1 (relu), got {post}")
    cdef const void *px = data_or_null(x)
    cdef const void *pw = data_or_null(w)
    cdef const void *pb = data_or_null(bias)
    cdef void *py = data_or_null(y)
    cdef void *pws = workspace_ptr(workspace)
    cdef int status
    with nogil:
        status = fc_conv_fwd(&desc.d, algo, px, pw, pb, py, pws, post)
    check(status)


def conv_bwd_data(ConvDesc desc, int algo, grad_y, w, grad_x, workspace=None, relu_out=None):
    """The input gradient into grad_x; relu_out (grad_x's shape and dtype, or None): x was a
    ReLU's output and grad_x is returned through that ReLU."""
    cdef const void *pr = data_or_null(relu_out)
    cdef const void *pgy = data_or_null(grad_y)
    cdef const void *pw = data_or_null(w)
    cdef void *pgx = data_or_null(grad_x)
    cdef void *pws = workspace_ptr(workspace)
    cdef int status
    with nogil:
        status = fc_conv_bwd_data(&desc.d, algo, pgy, pw, pgx, pws, pr)
    check(status)


def conv_bwd_weights(ConvDesc desc, int algo, grad_y, x, grad_w, grad_bias, workspace=None):
    cdef const void *pgy = data_or_null(grad_y)
    cdef const void *px = data_or_null(x)
    cdef void *pgw = data_or_null(grad_w)
    cdef void *pgb = data_or_null(grad_bias)
    cdef void *pws = workspace_ptr(workspace)
    cdef int status
    with nogil:
        status = fc_conv_bwd_weights(&desc.d, algo, pgy, px, pgw, pgb, pws)
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
