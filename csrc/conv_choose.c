/*
 * conv_choose.c: the preference rule of "auto", kept apart from the table (conv.c), whose
 * entries only say what they can run. Measured on this project's shape table
 * (benchmarks/README.md, docs/architecture.md):
 *
 *   1. depthwise wherever it accepts (groups == C_in);
 *   2. winograd where it accepts, the precision setting allows a reduced-accuracy
 *      algorithm, and its own rule says it is faster (fc_winograd_preferred);
 *   3. the GEMM family (1x1, implicit, explicit im2col; the first that accepts) once its
 *      dimensions are large enough: Kg >= 8 and K >= 16, or K >= 8 on the implicit path
 *      (no lowering pass to amortise: mnist_c1's forward, one input channel, 3x3, 32
 *      outputs, takes 0.53 ms against the direct kernels' 0.63 ms at 1 thread);
 *   4. else direct (few channels: the GEMM's M or K is tiny).
 */
#include "conv_internal.h"
#include "winograd/winograd.h"

static int accepts(const fc_conv_impl *e, const fc_conv_desc *d, int pass)
{
    return e->rejects(d, pass) == NULL;
}

int fc_conv_prefer(const fc_conv_desc *d, int pass)
{
    if (accepts(&fc_impl_depthwise, d, pass))
        return FC_ALGO_DEPTHWISE;
    if (d->precision >= FC_PRECISION_MEDIUM && accepts(&fc_impl_winograd, d, pass) &&
        fc_winograd_preferred(d, pass))
        return FC_ALGO_WINOGRAD;
    const int64_t cg = d->c_in / d->groups, kg = d->c_out / d->groups;
    const int64_t K = cg * d->kh * d->kw;
    const int implicit = accepts(&fc_impl_implicit_gemm, d, pass);
    if (kg >= 8 && K >= (implicit ? 8 : 16))
        return FC_ALGO_IM2COL;
    return FC_ALGO_DIRECT;
}
