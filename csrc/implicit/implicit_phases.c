/* implicit_phases.c: an input gradient's stride phases: each phase of the input (rows a,
   a + sh, ..., columns b, b + sw, ...) receives only some taps, and is the unit-stride
   forward of grad_y with those taps (phase_problem); plan_phases plans them for one
   parallel region (implicit_bwd_data.c) */
#include "implicit_driver.h"

/* One axis of a stride phase: input positions a, a + s, ... (out of them) receive the taps
   l with (a + pad - l*dil) divisible by s (taps of them), which read grad_y at position
   i + (a + pad - l*dil) / s. Rotated (the largest such l first, every step-th before it) they
   are a kernel of `taps` taps with dilation step*dil/s whose first tap reads i + e0. */
typedef struct phase_axis {
    int64_t out, taps, l0, step, e0, dil;
} phase_axis;

static void phase_axis_of(int64_t in, int64_t k, int64_t s, int64_t pad, int64_t dil, int64_t a, phase_axis *x)
{
    x->out = a < in ? (in - a + s - 1) / s : 0;
    x->taps = x->l0 = x->e0 = 0;
    x->step = 1;
    for (int64_t l = k - 1; l >= 0; l--) {
        const int64_t num = a + pad - l * dil;
        if (num % s != 0)
            continue;
        if (x->taps == 0) {
            x->l0 = l;
            x->e0 = num / s; /* exact */
        } else if (x->taps == 1) {
            x->step = x->l0 - l;
        }
        x->taps++;
    }
    x->dil = x->taps > 1 ? x->step * dil / s : 1;
}

/* Phase (a, b) of problem d's input gradient, gx[c, i*sh + a, j*sw + b] (i < t->oh, j < t->ow),
   as the unit-stride forward *t of grad_y (C_out channels in, C_in out) with the taps of that
   phase; tap_of[l'*t->kw + m'] = the weight's tap (l, m) of kernel tap (l', m'). With unit
   strides this is the whole input gradient, the forward of the kernel rotated by 180 degrees
   (tap_of[t] = KK - 1 - t). tap_of may be NULL (sizes only). Returns 0 where no tap falls in
   the phase (its elements are 0). */
int implicit_phase_problem(const fc_conv_desc *d, int64_t a, int64_t b, fc_conv_desc *t, int64_t *tap_of)
{
    phase_axis r, c;
    phase_axis_of(d->h, d->kh, d->stride_h, d->pad_top, d->dil_h, a, &r);
    phase_axis_of(d->w, d->kw, d->stride_w, d->pad_left, d->dil_w, b, &c);
    fc_transposed_problem(d, t);
    t->stride_h = t->stride_w = 1;
    t->oh = r.out;
    t->ow = c.out;
    t->kh = r.taps;
    t->kw = c.taps;
    t->dil_h = r.dil;
    t->dil_w = c.dil;
    t->pad_top = -r.e0;
    t->pad_left = -c.e0;
    /* from oh = H' + pad_top + pad_bottom - dil*(kh - 1) at unit stride (negative: a crop) */
    t->pad_bottom = r.out - d->oh - t->pad_top + r.dil * (r.taps - 1);
    t->pad_right = c.out - d->ow - t->pad_left + c.dil * (c.taps - 1);
    if (r.taps == 0 || c.taps == 0 || r.out == 0 || c.out == 0)
        return 0;
    for (int64_t l = 0; tap_of && l < r.taps; l++)
        for (int64_t m = 0; m < c.taps; m++)
            tap_of[l * c.taps + m] = (r.l0 - l * r.step) * d->kw + (c.l0 - m * c.step);
    return 1;
}

void implicit_plan_phases(const fc_conv_desc *d, phase_set *S)
{
    const int64_t G = fc_implicit_groups_a_tile(d, FC_BWD_DATA);
    S->n = 0;
    S->rows = d->h;
    for (int64_t a = 0; a < d->stride_h; a++)
        for (int64_t b = 0; b < d->stride_w; b++) {
            const int q = S->n;
            if (q == MAX_PHASES || !implicit_phase_problem(d, a, b, &S->t[q], NULL))
                continue;
            S->a[q] = a;
            S->b[q] = b;
            implicit_make_plan_with(&S->t[q], FC_FWD, G, 0, &S->p[q]);
            S->rows = fc_min64(S->rows, S->p[q].rows);
            S->n++;
        }
    S->band = S->slot = 0;
    S->tiles = 0;
    S->total = (size_t)S->n * tap_map_bytes(d);
    for (int q = 0; q < S->n; q++) {
        iplan *p = &S->p[q];
        implicit_make_plan_with(&S->t[q], FC_FWD, G, S->rows, p);
        p->nt = fc_team_size(d); /* the whole input gradient's work, not this phase's */
        S->shared[q] = p->off_bytes + p->apack_bytes + p->bias_bytes;
        S->band = S->band > p->band_bytes ? S->band : p->band_bytes;
        S->tiles = fc_max64(S->tiles, p->tiles);
        S->total += S->shared[q];
    }
    /* a band, then one output tile per column phase (merged into gx rows together), each
       room for the widest phase, ceil(W / sw) columns, present or not */
    if (S->n > 0)
        S->slot = fc_align_up((size_t)(S->p[0].G * S->p[0].kg * S->rows * fc_ceil_div(d->w, d->stride_w)) *
                              fc_elem_size(d->dtype));
    S->per_thread = fc_thread_slot_stride(S->band + (size_t)d->stride_w * S->slot, fc_team_size(d));
    S->total += fc_thread_slots_bytes(S->per_thread, fc_team_size(d));
}
