/* implicit_band.c: the band a tile's micro-kernels read (a copy of the image rows it
   needs, padding materialised, split by stride phase where the pass reads phase planes)
   and the per-tap offsets they read it, or the image in place, through */
#include <string.h>

#include "implicit_driver.h"

/* off[(c*KH + l)*KW + m]: the tap's phase plane, then its row and column shift in it (in
   chunks of G elements, one per group of the tile). */
/* rows_first: index the taps (l, c, m) instead of the weight's (c, l, m), so that the taps
   of one kernel row are contiguous (the forward skips whole kernel rows in the padding). */
/* in_place (band_in_place): the offsets in the image itself, from a tile's first output
   pixel, image row i0 (reading outside the image where a tap reads padding, left out then). */
void implicit_build_offsets(const fc_conv_desc *d, const iplan *p, int rows_first, int in_place, int64_t *off)
{
    const int64_t sh = p->unphased ? 1 : d->stride_h, sw = p->unphased ? 1 : d->stride_w;
    const int64_t plane_size = in_place ? d->h * d->w : p->plane, wp = in_place ? d->w : p->wp;
    const int64_t shift = in_place ? d->pad_top * d->w + d->pad_left : 0;
    for (int64_t c = 0; c < p->cg; c++)
        for (int64_t l = 0; l < d->kh; l++)
            for (int64_t m = 0; m < d->kw; m++) {
                const int64_t ly = l * d->dil_h, mx = m * d->dil_w;
                const int64_t plane = (c * sh + ly % sh) * sw + mx % sw;
                const int64_t k = rows_first ? (l * p->cg + c) * d->kw + m : (c * d->kh + l) * d->kw + m;
                off[k] = (plane * plane_size + ly / sh * wp + mx / sw - shift) * p->G;
            }
}

/* The band's rows are read in address order (rows of a channel, then the next channel), but
   the hardware prefetchers stop at every 4 KiB page, a few rows apart on small images: the
   copy of a grouped 3x3 layer's band waited on L3 for 7 % of its forward. Each source row is
   therefore prefetched this far ahead (a prefetch past the end of x is harmless). */
#define COPY_PF_BYTES 2048

/* Band of channels [c0, c1) of image group x_g for output rows [i0, i0 + rows): phase
   plane (c, a, b) row r holds input row sh*(i0 + r) + a - pad_top, column j input column
   sw*j + b - pad_left; zero outside the image (and in rows past this tile's). With G groups
   a tile (x_g: the first one's channels) each element is a chunk of G, one per group. One
   group and unit column steps (most layers): each channel's image rows in one copy_rows call
   (per row, memcpy and the padding's zeroing loops took 3.6 % of a 26x26 forward), 2 or 4
   groups at column steps 1 or 2 in one copy_rows_grp call where the ISA has one; else per
   row, the groups interleaved by the ISA's kernel or the stride's columns gathered. */
#define DEFINE_COPY_BAND(REAL, SFX)                                                               \
    static void copy_band_##SFX(const fc_conv_desc *d, const iplan *p, const REAL *x_g, int64_t i0, \
                                int64_t rows, int64_t c0, int64_t c1, REAL *band)                 \
    {                                                                                             \
        const int64_t G = p->G, wp = p->wp, gstride = p->cg * d->h * d->w;                        \
        const int64_t br = band_rows(d, p->rows, p->unphased), used = band_rows(d, rows, p->unphased); \
        /* phase strides (1 unphased): row r of phase a is input row sh*i0 + sh_p*r + a - pad */  \
        const int64_t sh = p->unphased ? 1 : d->stride_h, sw = p->unphased ? 1 : d->stride_w;     \
        for (int64_t c = c0; c < c1; c++)                                                         \
            for (int64_t a = 0; a < sh; a++)                                                      \
                for (int64_t b = 0; b < sw; b++) {                                                \
                    /* columns j with 0 <= sw*j + b - pad_left < W: [lo, hi) */                   \
                    const int64_t first = d->pad_left - b; /* sw*j >= first */                    \
                    const int64_t lo = fc_min64(wp, fc_max64(0, first > 0 ? (first + sw - 1) / sw : 0)); \
                    const int64_t last = d->w + d->pad_left - b; /* sw*j < last */                \
                    const int64_t hi = fc_max64(lo, fc_min64(wp, last > 0 ? (last + sw - 1) / sw : 0)); \
                    REAL *restrict dst = band + ((c * sh + a) * sw + b) * p->plane * G;           \
                    /* band rows [r0, r1) read the image (ih = base + sh*r); the others are zero */ \
                    const int64_t base = d->stride_h * i0 + a - d->pad_top;                       \
                    int64_t r0 = 0, r1 = used;                                                    \
                    while (r0 < r1 && base + sh * r0 < 0)                                         \
                        r0++;                                                                     \
                    while (r1 > r0 && base + sh * (r1 - 1) >= d->h)                               \
                        r1--;                                                                     \
                    memset(dst, 0, (size_t)(r0 * wp * G) * sizeof(REAL));                         \
                    memset(dst + r1 * wp * G, 0, (size_t)((br - r1) * wp * G) * sizeof(REAL));    \
                    const REAL *src = x_g + (c * d->h + base + sh * r0) * d->w + (sw * lo + b - d->pad_left); \
                    if (G == 1 && sw == 1) { /* one kernel call */                                \
                        p->kr->copy_rows(dst + r0 * wp, src, sh * d->w, r1 - r0, lo, hi, wp, COPY_PF_BYTES); \
                        continue;                                                                 \
                    }                                                                             \
                    if (copy_rows_grp_takes(p->kr, G, sw)) { /* G groups: one call */             \
                        p->kr->copy_rows_grp(dst + r0 * wp * G, wp * G, src, sh * d->w, sw, gstride, G, r1 - r0, \
                                             lo, hi, wp, COPY_PF_BYTES);                          \
                        continue;                                                                 \
                    }                                                                             \
                    dst += r0 * wp * G;                                                           \
                    for (int64_t r = r0; r < r1; r++, dst += wp * G, src += sh * d->w) {          \
                        for (int64_t j = 0; j < lo * G; j++)                                      \
                            dst[j] = 0;                                                           \
                        if (hi > lo) {                                                            \
                            for (int64_t g = 0; g < G; g++) {                                     \
                                const char *ahead = (const char *)(src + g * gstride) + COPY_PF_BYTES; \
                                for (int64_t o = 0; o < (hi - lo) * sw * (int64_t)sizeof(REAL); o += 64) \
                                    __builtin_prefetch(ahead + o);                                \
                            }                                                                     \
                            if (G > 1)                                                            \
                                p->kr->interleave(dst + lo * G, src, gstride, hi - lo, sw, G);    \
                            else if (sw == 2) /* a constant stride: the compiler vectorises it */ \
                                for (int64_t j = lo; j < hi; j++)                                 \
                                    dst[j] = src[(j - lo) * 2];                                   \
                            else                                                                  \
                                for (int64_t j = lo; j < hi; j++)                                 \
                                    dst[j] = src[(j - lo) * sw];                                  \
                        }                                                                         \
                        for (int64_t j = hi * G; j < wp * G; j++)                                 \
                            dst[j] = 0;                                                           \
                    }                                                                             \
                }                                                                                 \
    }
DEFINE_COPY_BAND(float, f32)
DEFINE_COPY_BAND(double, f64)

void implicit_copy_band(const fc_conv_desc *d, const iplan *p, const char *x_g, int64_t i0, int64_t rows,
                      int64_t c0, int64_t c1, char *band)
{
    if (d->dtype == FC_F64)
        copy_band_f64(d, p, (const double *)x_g, i0, rows, c0, c1, (double *)band);
    else
        copy_band_f32(d, p, (const float *)x_g, i0, rows, c0, c1, (float *)band);
}
