/*
 * implicit_driver.h: what the pieces of the implicit-GEMM driver share (conv_implicit.c is
 * the table entry and says how the algorithm works; implicit.h holds the micro-kernels).
 *
 *   implicit_plan.c          the plan of a call: tile rows, groups a tile, channel blocks,
 *                            weight-gradient chunks, where the band lives, the workspace
 *   implicit_phases.c        an input gradient's stride phases as unit-stride forwards
 *   implicit_band.c          the band (a copy of image rows, padding materialised) and the
 *                            per-tap offsets the micro-kernels read it through
 *   implicit_pack_wt.c       W^T, packed from the weights for the forward's tiles
 *   implicit_fwd.c           the forward: tiles of pixel groups over channel blocks
 *   implicit_bwd_data.c      the input gradient, through the forward
 *   implicit_bwd_weights.c   the weight gradient
 */
#ifndef FASTCONV_IMPLICIT_DRIVER_H
#define FASTCONV_IMPLICIT_DRIVER_H

#include <stddef.h>
#include <stdint.h>

#include "conv_internal.h"
#include "implicit.h"

#ifdef _OPENMP
#include <omp.h>
#define THREAD_ID() omp_get_thread_num()
#else
#define THREAD_ID() 0
#endif

typedef struct iplan {
    const fc_implicit_kernels *kr;
    int64_t cg, kg, KK, K;  /* of the problem computed (the transposed one for bwd_data) */
    int64_t kh, kw;
    int64_t wp;             /* band row width */
    int64_t rows, tiles;    /* output rows per tile, tiles per image */
    int64_t plane;          /* band elements per phase plane: band_rows(rows) * wp */
    int64_t mp;             /* bwd_weights: K rounded up to MR */
    int64_t kv, cb;         /* fwd: vectors of output channels (kg rounded up), blocks of <= NR */
    int64_t cparts;         /* fwd: work items a tile's channel blocks are split into (1: one item) */
    int64_t G, lg;          /* fwd: groups a tile (1, or 2^lg packed side by side; see group_pack) */
    int unphased;           /* fwd: the band holds the padded rows, not stride phases */
    int in_place;           /* fwd: BAND_COPIED, BAND_IN_PLACE or BAND_IN_PLACE_SKIPPING (band_in_place) */
    const int64_t *tap_of;  /* fwd of an input gradient: the weight's tap of each kernel tap */
    int64_t w_kk;           /* ... and the weight's taps per filter */
    int64_t ldb;            /* bwd_weights: G*kg rounded up to the tile width wnr */
    int64_t wnr;            /* bwd_weights: channels of one tile (wgrad_nr) and its kernel: */
    fc_implicit_wgrad_fn wgrad; /* kr->wgrad for NR, kr->wgrad_1v for one vector */
    int nt;
    int64_t chunks;         /* bwd_weights: batch chunks, each summed into its own dW^T (see wgrad_chunks) */
    int64_t nb;             /* bwd_weights: images a kernel call sums (see wgrad_images) */
    int direct_out;         /* bwd_weights: one chunk, G = 1: each unit's last call stores into grad_w */
    size_t chunk_bytes;     /* bwd_weights: one chunk's dW^T (+ its bias gradient) */
    size_t off_bytes, apack_bytes, bias_bytes, dwt_bytes, per_thread, band_bytes, tile_bytes;
} iplan;

/* Rows and width of a band plane for `rows` output rows, and the planes a channel has: the
   band is split by stride phase (phased), or, for a strided forward, holds the padded input
   rows as they are (unphased; see fwd_unphased). */
static inline int64_t band_rows(const fc_conv_desc *d, int64_t rows, int unphased)
{
    return unphased ? (rows - 1) * d->stride_h + (d->kh - 1) * d->dil_h + 1
                    : rows + (d->kh - 1) * d->dil_h / d->stride_h;
}

static inline int64_t band_width(const fc_conv_desc *d, int unphased)
{
    return unphased ? (d->ow - 1) * d->stride_w + (d->kw - 1) * d->dil_w + 1
                    : d->ow + (d->kw - 1) * d->dil_w / d->stride_w;
}

static inline int64_t phases(const fc_conv_desc *d, int unphased) { return unphased ? 1 : d->stride_h * d->stride_w; }

/* The forward's band is unphased where the layer is strided: its kernels read each pixel
   through its own pointer (px[t]), so output columns need not be unit-stride runs of the
   band, and the copy is plain padded rows instead of sh*sw passes reading every sw-th element
   (rows of a dozen elements in a stride-2 ResNeXt layer: half its time went to the copy).
   Measured on Zen 4, f32, 1 thread, phased / unphased ms: 256 -> 256 at 28x28 stride 2,
   32 groups 1.44 / 0.88 (2 threads 0.86 / 0.48); 128 at 56x56, 32 groups 2.24 / 1.35; dense
   128 -> 256 at 56x56 35.4 / 34.5; 64 at 56x56 4.99 / 4.63; ResNet's stem 9.89 / 9.78; 5x5
   stride 3 3.58 / 3.13; 3x3 stride 2 dilation 2 1.69 / 1.51. The weight gradient keeps the
   phase planes: its kernel reads runs of output columns as unit-stride runs of the band. */
static inline int fwd_unphased(const fc_conv_desc *d) { return d->stride_h > 1 || d->stride_w > 1; }

/* Channels of one weight-gradient tile: NR, or one vector where the layer's kg fits in one
   (grouped layers of 8 or 16 channels a group: the NR tile computed 2-4x the channels). */
static inline int64_t wgrad_nr(const fc_implicit_kernels *kr, int64_t kg) { return kg <= kr->vl ? kr->vl : kr->nr; }

/* The tap map ahead of each phase's workspace. */
static inline size_t tap_map_bytes(const fc_conv_desc *d)
{
    return fc_align_up((size_t)(d->kh * d->kw) * sizeof(int64_t));
}

static inline int strided(const fc_conv_desc *d) { return d->stride_h > 1 || d->stride_w > 1; }

/* Stride phases an input gradient may have here (4 x 4: a patchify stem's); more go to
   explicit im2col. */
#define MAX_PHASES 16

/* Where the forward's kernels read: a band copied from the image (padding materialised), or
   the image itself (x, or grad_y for an input gradient), in place. */
enum { BAND_COPIED, BAND_IN_PLACE, BAND_IN_PLACE_SKIPPING };

/* The phases of a strided input gradient, run in one parallel region (run_phases): each
   work item (image, tile of groups, tile of rows) runs every phase's forward on the same rows,
   so the gx lines the sw column phases share are written while in cache (one region per phase
   wrote each line sw times from memory: at 2 threads 0.87-0.96x explicit im2col, though
   1.24-1.58x at 1). They share the G of the whole problem and the fewest tile rows of any. */
typedef struct phase_set {
    int n;                              /* phases with taps */
    int64_t a[MAX_PHASES], b[MAX_PHASES];
    fc_conv_desc t[MAX_PHASES];
    iplan p[MAX_PHASES];
    size_t shared[MAX_PHASES];          /* offsets and W^T of each */
    size_t band, slot;                  /* per thread: the largest band, and one output tile */
    size_t per_thread, total;           /* workspace: tap maps | each phase's shared | threads */
    int64_t rows, tiles;                /* tiles of phase rows, common to all */
} phase_set;

/* Vectors [*v0, *v0 + *nv) of channel block cb (the kv vectors split evenly, larger first). */
static inline void block_vectors(const iplan *p, int64_t cb, int64_t *v0, int64_t *nv)
{
    const int64_t base = p->kv / p->cb, extra = p->kv % p->cb;
    *nv = base + (cb < extra);
    *v0 = cb * base + fc_min64(cb, extra);
}

/* Whether the tile's groups have narrow and edge kernels (fwd[e][v][k-1] all built; for G
   groups a tile, those GROUP_EDGE_TILES lists: fwd_grp[lg][v][e][k-1]). Else only full groups
   run on across rows, none leaving out edge taps. */
static inline int narrow_kernels(const iplan *p) { return p->G == 1 || p->kr->fwd_grp[p->lg][p->kv][0][0] != NULL; }

/* The edge case (the kernels' e) of a group whose first and last pixels are in columns
   j_first and j_last of their rows, given edge_columns' mask: 0 where nothing is left out. */
static inline int group_edge(int cols, int64_t ow, int64_t j_first, int64_t j_last)
{
    const int side = (cols & 1 && j_first == 0) | (cols & 2 && j_last == ow - 1) << 1;
    return side ? side | (cols & 12) : 0;
}

/* Whether the ISA's copy_rows_grp takes G groups at source column step sx (copy_band's band
   rows, merge_rows' column phases). */
static inline int copy_rows_grp_takes(const fc_implicit_kernels *kr, int64_t G, int64_t sx)
{
    return kr->copy_rows_grp != NULL && (G == 2 || G == 4) && (sx == 1 || sx == 2);
}

/* rows_aligned of a tile, remembered by each thread across its work items: the same tile
   rows recur for every image, group and channel part (computed per item, it was 1 % of a
   4-group 28x28 layer's forward). */
typedef struct align_memo {
    const fc_conv_desc *d;
    int64_t i0, rows;
    int aligned;
} align_memo;

/* implicit_plan.c */
void implicit_make_plan_with(const fc_conv_desc *d, int pass, int64_t G, int64_t max_rows, iplan *p);
void implicit_make_plan(const fc_conv_desc *d, int pass, iplan *p);
size_t implicit_plan_bytes(const iplan *p);
void implicit_carve(const iplan *p, void *ws, int64_t **off, char **shared, char **thread0);
int implicit_edge_columns(const fc_conv_desc *d, const iplan *p, int skip);

/* implicit_phases.c */
int implicit_phase_problem(const fc_conv_desc *d, int64_t a, int64_t b, fc_conv_desc *t, int64_t *tap_of);
void implicit_plan_phases(const fc_conv_desc *d, phase_set *S);

/* implicit_band.c */
void implicit_build_offsets(const fc_conv_desc *d, const iplan *p, int rows_first, int in_place, int64_t *off);
void implicit_copy_band(const fc_conv_desc *d, const iplan *p, const char *x_g, int64_t i0, int64_t rows,
                        int64_t c0, int64_t c1, char *band);

/* implicit_pack_wt.c */
int implicit_pack_block(int dtype, const iplan *p, const void *w, int flip, int64_t gt, int64_t cb, char *wt);
int implicit_pack_phases_block(int dtype, const phase_set *S, char *const *wt, const void *w, int64_t gt,
                               int64_t cb);

/* implicit_fwd.c */
void implicit_fwd_tile(const fc_conv_desc *d, const iplan *p, const char *wt, const char *bias, const int64_t *off,
                       const char *band, int64_t wp, const char *img, char *y_t, int64_t y_plane, int64_t i0,
                       int64_t rows, int64_t cb0, int64_t cb1, int skip, int relu, align_memo *memo);
int implicit_run_fwd(const fc_conv_desc *d, const void *x_, const void *w_, const int64_t *tap_of, int64_t w_kk,
                     const void *bias_, int relu, const void *mask, void *y_, void *ws, int decline);

/* implicit_bwd_data.c */
int implicit_bwd_data_checked(const fc_conv_desc *d, const void *gy, const void *w, const void *relu_out, void *gx,
                              void *ws);

/* implicit_bwd_weights.c */
void implicit_bwd_weights(const fc_conv_desc *d, const void *gy_, const void *x_, void *gw_, void *gb_, void *ws);

#endif
