/*
 * conv.c: the driver. One ordered table of implementations, most specialised first (as
 * oneDNN's cpu_convolution_list.cpp): each entry says whether it can run a pass of a
 * problem (capability only), how much workspace it needs, and runs it. The choice "auto"
 * makes is a separate rule (conv_choose.c). The driver also owns the NaN/inf policy: an
 * entry declares per pass which operands it is not exact on, and a call whose such
 * operand holds a NaN or inf runs on the first exact entry that accepts the problem.
 *
 * Adding an algorithm = one table line here plus its own file(s) defining its entry.
 */
#include <stdlib.h>
#include <string.h>

#include "conv_internal.h"
#include "nn/nn_ops.h"

static const fc_conv_impl *const TABLE[] = {
    &fc_impl_depthwise,     /* groups == C_in: one plane per group */
    &fc_impl_winograd,      /* 3x3, stride 1, dilation 1: fewer multiplies (tile by rule) */
    &fc_impl_winograd_f2,   /* ... with F(2x2, 3x3) */
    &fc_impl_winograd_f4,   /* ... with F(4x4, 3x3) */
    &fc_impl_winograd_f6,   /* ... with F(6x6, 3x3) */
    &fc_impl_gemm_1x1,      /* 1x1, stride 1, unpadded: the input is the column matrix */
    &fc_impl_implicit_gemm, /* GEMM reading the lowered matrix through an offset table */
    &fc_impl_im2col,        /* explicit im2col + GEMM: any problem, exact on NaN/inf */
    &fc_impl_direct,        /* any problem */
};
#define TABLE_LEN ((int)(sizeof(TABLE) / sizeof(TABLE[0])))

const fc_conv_impl *fc_impl_at(int index)
{
    return index >= 0 && index < TABLE_LEN ? TABLE[index] : NULL;
}

const fc_conv_impl *fc_impl_by_id(int id)
{
    for (int i = 0; i < TABLE_LEN; i++)
        if (TABLE[i]->id == id)
            return TABLE[i];
    return NULL;
}

static int accepts(const fc_conv_impl *e, const fc_conv_desc *d, int pass)
{
    return e->rejects(d, pass) == NULL;
}

const char *fc_algo_name(int algo)
{
    if (algo == FC_ALGO_AUTO)
        return "auto";
    if (algo == FC_ALGO_IM2COL)
        return "im2col";
    const fc_conv_impl *e = fc_impl_by_id(algo);
    return e ? e->name : NULL;
}

const char *fc_algo_family(int algo)
{
    if (algo == FC_ALGO_AUTO || algo == FC_ALGO_IM2COL)
        return fc_algo_name(algo);
    const fc_conv_impl *e = fc_impl_by_id(algo);
    return e ? e->family : NULL;
}

int fc_algo_reduced_precision(int algo)
{
    const fc_conv_impl *e = fc_impl_by_id(algo);
    return e ? e->reduced_precision : (algo == FC_ALGO_AUTO || algo == FC_ALGO_IM2COL ? 0 : -1);
}

/* The first entry of the GEMM family ("im2col") that accepts the problem. */
static int first_gemm(const fc_conv_desc *d, int pass)
{
    for (int i = 0; i < TABLE_LEN; i++)
        if (strcmp(TABLE[i]->family, "im2col") == 0 && accepts(TABLE[i], d, pass))
            return TABLE[i]->id;
    return FC_ALGO_IM2COL_EXPLICIT;
}

int fc_conv_resolve(const fc_conv_desc *d, int pass, int algo)
{
    if (pass < FC_FWD || pass > FC_BWD_WEIGHTS)
        return -1;
    if (algo == FC_ALGO_AUTO)
        algo = fc_conv_prefer(d, pass);
    if (algo == FC_ALGO_IM2COL)
        return first_gemm(d, pass);
    const fc_conv_impl *e = fc_impl_by_id(algo);
    return e && accepts(e, d, pass) ? algo : -1;
}

int fc_conv_choose(const fc_conv_desc *d, int pass) { return fc_conv_resolve(d, pass, FC_ALGO_AUTO); }

const char *fc_conv_rejects(const fc_conv_desc *d, int pass, int algo)
{
    if (pass < FC_FWD || pass > FC_BWD_WEIGHTS)
        return "unknown pass";
    if (algo == FC_ALGO_AUTO || algo == FC_ALGO_IM2COL)
        return NULL;
    const fc_conv_impl *e = fc_impl_by_id(algo);
    return e ? e->rejects(d, pass) : "unknown algorithm";
}

size_t fc_conv_workspace_size(const fc_conv_desc *d, int pass, int algo)
{
    const fc_conv_impl *e = fc_impl_by_id(fc_conv_resolve(d, pass, algo));
    return e ? e->workspace_size(d, pass) : 0;
}

/* ---- NaN/inf routing ------------------------------------------------------ */

static int64_t operand_elems(const fc_conv_desc *d, int pass, int which)
{
    const int64_t x = d->n * d->c_in * d->h * d->w, y = d->n * d->c_out * d->oh * d->ow;
    const int64_t w = d->c_out * (d->c_in / d->groups) * d->kh * d->kw;
    if (pass == FC_FWD)
        return which == 0 ? x : w;
    if (pass == FC_BWD_DATA)
        return which == 0 ? y : w;
    return which == 0 ? y : x;
}

/* The first entry of the table that is exact on every operand and accepts the problem
   (explicit im2col accepts every problem; for a forward that is implicit GEMM, exact since
   its packing finds non-finite weights). */
static const fc_conv_impl *exact_entry(const fc_conv_desc *d, int pass)
{
    for (int i = 0; i < TABLE_LEN; i++)
        if ((fc_impl_inexact(TABLE[i], d, pass) & (FC_OPND_0 | FC_OPND_1)) == 0 && accepts(TABLE[i], d, pass))
            return TABLE[i];
    return &fc_impl_im2col;
}

/* The entry that runs the call: e, or, when an operand e is not exact on holds a NaN or
   inf, exact_entry. Checking costs one pass over the operands e declares, on the call's
   threads (the weights, for most entries: small next to the call, except where weights
   outweigh the data, as at 7x7 with 512 channels, which is why the implicit input gradient
   checks them as it packs them instead: bwd_data_checked). */
static const fc_conv_impl *route(const fc_conv_impl *e, const fc_conv_desc *d, int pass,
                                 const void *op0, const void *op1)
{
    const unsigned mask = fc_impl_inexact(e, d, pass);
    const int padded = d->pad_top || d->pad_bottom || d->pad_left || d->pad_right;
    if ((mask & (FC_OPND_0 | FC_OPND_1)) == 0 || ((mask & FC_OPND_IF_PADDED) && !padded))
        return e;
    const int nt = fc_team_size(d);
    const int finite = (!(mask & FC_OPND_0) || fc_all_finite(op0, operand_elems(d, pass, 0), d->dtype, nt)) &&
                       (!(mask & FC_OPND_1) || fc_all_finite(op1, operand_elems(d, pass, 1), d->dtype, nt));
    return finite ? e : exact_entry(d, pass);
}

/* A workspace for entry r allocated here (*own, freed by the caller), as *ws. */
static int own_workspace(const fc_conv_impl *r, const fc_conv_desc *d, int pass, void **ws, void **own)
{
    *own = fc_aligned_alloc(r->workspace_size(d, pass));
    if (*own == NULL)
        return FC_ENOMEM;
    *ws = *own;
    return FC_OK;
}

/* Resolves, routes, and provides the workspace: the caller's, or (when none was given or
   the routing moved the call to another entry, whose needs the caller did not size for)
   one allocated here and freed by finish(). */
static int begin(const fc_conv_desc *d, int pass, int algo, const void *op0, const void *op1,
                 void **ws, void **own, const fc_conv_impl **out)
{
    const fc_conv_impl *e = fc_impl_by_id(fc_conv_resolve(d, pass, algo));
    *own = NULL;
    if (e == NULL)
        return FC_EINVAL;
    /* an entry that checks the weights itself is routed after it declines (fc_conv_bwd_data);
       only where they are all it is inexact on (grad_y would otherwise go unchecked) */
    const int checks_itself = pass == FC_BWD_DATA && e->bwd_data_checked && !(fc_impl_inexact(e, d, pass) & FC_OPND_0);
    const fc_conv_impl *r = checks_itself ? e : route(e, d, pass, op0, op1);
    *out = r;
    return *ws == NULL || r != e ? own_workspace(r, d, pass, ws, own) : FC_OK;
}

int fc_conv_fwd(const fc_conv_desc *d, int algo, const void *x, const void *w, const void *bias,
                void *y, void *workspace, int post)
{
    if (post != FC_POST_NONE && post != FC_POST_RELU)
        return FC_EINVAL;
    const fc_conv_impl *e;
    void *own;
    const int st = begin(d, FC_FWD, algo, x, w, &workspace, &own, &e);
    if (st != FC_OK)
        return st;
    if (post != FC_POST_NONE && e->fwd_post != NULL) {
        e->fwd_post(d, x, w, bias, post, y, workspace);
    } else {
        e->fwd(d, x, w, bias, y, workspace);
        if (post == FC_POST_RELU) /* a pass at memory speed, in place */
            fc_relu_fwd(d->dtype, d->n * d->c_out * d->oh * d->ow, y, y, d->nthreads);
    }
    free(own);
    return FC_OK;
}

int fc_conv_bwd_data(const fc_conv_desc *d, int algo, const void *grad_y, const void *w,
                     void *grad_x, void *workspace, const void *relu_out)
{
    const fc_conv_impl *e;
    void *own;
    const int st = begin(d, FC_BWD_DATA, algo, grad_y, w, &workspace, &own, &e);
    if (st != FC_OK)
        return st;
    if (e->bwd_data_checked != NULL) {
        if (e->bwd_data_checked(d, grad_y, w, relu_out, grad_x, workspace) != FC_DECLINED) {
            free(own);
            return FC_OK;
        }
        /* w holds a NaN or inf: the exact entry, with a workspace of its own */
        free(own);
        e = exact_entry(d, FC_BWD_DATA);
        if (own_workspace(e, d, FC_BWD_DATA, &workspace, &own) != FC_OK)
            return FC_ENOMEM;
    }
    if (relu_out != NULL && e->bwd_data_relu != NULL) {
        e->bwd_data_relu(d, grad_y, w, relu_out, grad_x, workspace);
    } else {
        e->bwd_data(d, grad_y, w, grad_x, workspace);
        if (relu_out != NULL) /* a pass at memory speed, in place */
            fc_relu_bwd(d->dtype, d->n * d->c_in * d->h * d->w, grad_x, relu_out, grad_x, d->nthreads);
    }
    free(own);
    return FC_OK;
}

int fc_conv_bwd_weights(const fc_conv_desc *d, int algo, const void *grad_y, const void *x,
                        void *grad_w, void *grad_bias, void *workspace)
{
    const fc_conv_impl *e;
    void *own;
    const int st = begin(d, FC_BWD_WEIGHTS, algo, grad_y, x, &workspace, &own, &e);
    if (st != FC_OK)
        return st;
    e->bwd_weights(d, grad_y, x, grad_w, grad_bias, workspace);
    free(own);
    return FC_OK;
}
