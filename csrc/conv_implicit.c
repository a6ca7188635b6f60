/*
 * conv_implicit.c: implicit GEMM, the im2col algorithm without the column matrix (see
 * implicit/implicit.h for the idea and the micro-kernels).
 *
 * Each work item copies a band of its image: the input rows a tile of output rows reads,
 * zero padding materialised, split by stride phase. With strides (sh, sw), channel c's
 * phase (a, b) is the plane P[i][j] = x_padded[c][sh*(i0 + i) + a][sw*j + b], rows of width
 * Wp = OW + (KW-1)*dw / sw. Tap (l, m) of output (t, j) then reads phase
 * ((l*dh) % sh, (m*dw) % sw) at row t + (l*dh) / sh, column j + (m*dw) / sw: a fixed offset
 * per tap plus q = t*Wp + j, so every stride is a unit-stride GEMM over the band (for
 * unit strides the band is simply the padded rows). The weight gradient reads its band that
 * way; the forward, which addresses every output pixel through its own pointer, copies a
 * strided layer's padded rows unphased (fwd_unphased). A grouped layer of few channels a
 * group packs G groups into one forward tile, their band values side by side (group_pack).
 * Then:
 *
 *   fwd          Y^T (pixels x Kg) = B(band)^T x W_g^T + bias: tiles of 8 output pixels
 *                (broadcast from the band) x NR channels (W^T packed once per call,
 *                aligned vector loads), over the whole K in one go, transposed in registers
 *                and stored straight into y. Only real output pixels are computed (an
 *                earlier channels x band-columns tiling also computed the Wp - OW gap
 *                columns of every row and split loads across cache lines: 7-10% slower on
 *                resnet_3x3 and mnist_c2). Splitting K to keep the band window in L1
 *                measured slower: the partial sums' traffic costs more.
 *   bwd_data     the input gradient of a unit-stride convolution is the forward
 *                convolution of grad_y with the kernel rotated by 180 degrees and its
 *                channel axes swapped (the packing reads the weights that way). With strides,
 *                each stride phase of the input (rows a, a + sh, ..., columns b, b + sw, ...)
 *                is such a forward with the taps that reach it (phase_problem), scattered
 *                into its positions; all phases run in one region (run_phases). Before, a
 *                strided input gradient took explicit im2col (col2im): this is 1.08-1.2x
 *                faster on dense 3x3 stride-2 layers and 1.6x on grouped ones (Zen 4).
 *   bwd_weights  dW^T (K x Kg) = sum over pixels of B(band) x grad_y^T, in batch chunks
 *                (wgrad_chunks, from sizes only): a work item owns whole MR-row blocks of
 *                one chunk's dW^T and walks that chunk's images and tiles in order; the
 *                chunks are added in chunk order. So each weight-gradient element is summed
 *                in one fixed order, whatever the thread count. Small images are summed
 *                several a kernel call (wgrad_images); with one chunk (and G = 1) the last
 *                call of each unit stores into grad_w itself, transposed in registers. G
 *                groups a tile as in the forward: grad_y^T's lanes in the order i*G + g
 *                (pack_bt_rows), the band's G-element chunks broadcast; 2x faster at 8
 *                channels a group, 3.6x at 4.
 *
 * Compared with explicit im2col this drops the pass that writes the column matrix and the
 * pass that packs it (together ~20% of a 3x3 layer's time on the reference machine).
 * NaN/inf: the band holds the padding as zeros, so the weight gradient multiplies it
 * exactly as the definition does. The forward skips kernel rows that read only padding
 * when the weights are finite, which its packing of W^T finds out on the way (no pass of
 * its own: a serial check took 6 % of a 512-channel 7x7 forward); otherwise it computes
 * every tap, as the definition does. The input gradient, via the forward, reads grad_y's
 * padding, which the definition has no term for, so the entry is inexact on non-finite
 * weights there: its packing finds them and it declines before computing anything
 * (bwd_data_checked), and the driver routes the call to an exact entry (conv.c).
 */
#include <string.h>

#include "conv_internal.h"
#include "cpu_info.h"
#include "implicit/implicit.h"

#ifdef _OPENMP
#include <omp.h>
#define THREAD_ID() omp_get_thread_num()
#else
#define THREAD_ID() 0
#endif

/* Per-thread tile (band, plus grad_y transposed for the weight gradient): the L2 of the CPU
   (cpu_info.c), within [512 KiB, 4 MiB]. On the reference machine (1 MiB L2) only a sliding
   window of it is hot at any time; 2-4 MiB tiles measured no faster there, 512 KiB ones
   (more tile edges) a few percent slower. */
static int64_t tile_bytes_limit(void)
{
    const int64_t l2 = fc_cpu_info_get()->l2;
    return l2 < ((int64_t)512 << 10) ? (int64_t)512 << 10 : l2 > ((int64_t)4 << 20) ? (int64_t)4 << 20 : l2;
}
#define TILE_BYTES (tile_bytes_limit())
/* Beyond this the band's padding would cost more memory than the lowering saves. */
#define MAX_BAND_ROW_BYTES ((int64_t)8 << 20)

const fc_implicit_kernels *fc_implicit_kernels_for(int dtype)
{
#ifdef FC_IMPLICIT_HAVE_X86
    if (fc_active_isa() >= FC_ISA_AVX512)
        return dtype == FC_F64 ? &fc_implicit_f64_8x24__avx512 : &fc_implicit_f32_8x32__avx512;
    if (fc_active_isa() >= FC_ISA_AVX2)
        return dtype == FC_F64 ? &fc_implicit_f64_6x8__avx2 : &fc_implicit_f32_6x16__avx2;
#endif
    (void)dtype;
    return NULL;
}

int fc_implicit_tile(int dtype, int *mr, int *nr)
{
    const fc_implicit_kernels *kr = fc_implicit_kernels_for(dtype);
    if (!kr)
        return 0;
    *mr = kr->mr;
    *nr = kr->nr;
    return 1;
}

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

/* Rows and width of a phase plane for `rows` output rows. */
/* The band is split by stride phase (phased), or, for a strided forward, holds the padded input
   rows as they are (unphased; see make_plan): rows, width and planes a channel of each. */
static int64_t band_rows(const fc_conv_desc *d, int64_t rows, int unphased)
{
    return unphased ? (rows - 1) * d->stride_h + (d->kh - 1) * d->dil_h + 1
                    : rows + (d->kh - 1) * d->dil_h / d->stride_h;
}

static int64_t band_width(const fc_conv_desc *d, int unphased)
{
    return unphased ? (d->ow - 1) * d->stride_w + (d->kw - 1) * d->dil_w + 1
                    : d->ow + (d->kw - 1) * d->dil_w / d->stride_w;
}

static int64_t phases(const fc_conv_desc *d, int unphased) { return unphased ? 1 : d->stride_h * d->stride_w; }

/* The forward's band is unphased where the layer is strided: its kernels read each pixel
   through its own pointer (px[t]), so output columns need not be unit-stride runs of the
   band, and the copy is plain padded rows instead of sh*sw passes reading every sw-th element
   (rows of a dozen elements in a stride-2 ResNeXt layer: half its time went to the copy).
   Measured on Zen 4, f32, 1 thread, phased / unphased ms: 256 -> 256 at 28x28 stride 2,
   32 groups 1.44 / 0.88 (2 threads 0.86 / 0.48); 128 at 56x56, 32 groups 2.24 / 1.35; dense
   128 -> 256 at 56x56 35.4 / 34.5; 64 at 56x56 4.99 / 4.63; ResNet's stem 9.89 / 9.78; 5x5
   stride 3 3.58 / 3.13; 3x3 stride 2 dilation 2 1.69 / 1.51. The weight gradient keeps the
   phase planes: its kernel reads runs of output columns as unit-stride runs of the band. */
static int fwd_unphased(const fc_conv_desc *d) { return d->stride_h > 1 || d->stride_w > 1; }

/* Groups one forward tile computes (d: the problem computed; for bwd_data the transposed one).
   A grouped layer whose kg channels a group fill less than the tile's NR lanes (ResNeXt's 4,
   8 or 16) can pack G groups side by side, G*kg = nv*vl, channel i of group g in lane i*G + g:
   the band interleaves the G groups' values, one broadcast of G elements feeds all G*kg lanes,
   and every lane is a real output. Each output is still one kernel call's sum over all of K in
   the same order, so results are bitwise those of one group a tile. G is a power of two from
   2 to vl/2 (one broadcast load) that divides the groups; *nv: the tile's vectors.
   Taken where kg < vl (the unpacked tile's one vector would be half empty or worse: 8 of 16
   lanes, 1.6-1.8x on Zen 4), and where kg already fills a vector only while the packed tile's
   L1 working set (its W^T panel and the band rows its taps read) stays within 3/4 of the L1d:
   there the 2-vector tile's extra FMA chains pay (f32 kg = 16, Zen 4, 32 KiB L1d: 7x7 1.13-1.19x,
   14x14 1.0-1.18x), beyond it the larger window costs more (28x28 1.0x, 32x32 0.95x, 56x56
   0.93-0.97x). With two 512-bit FMA ports the one-vector tile is bound by its loads (9 per 8
   FMAs), so the packed tile matters more there; the L1d of such CPUs is larger too (48 KiB).
   1 where no such G exists or the rule declines. */
static int64_t group_pack(const fc_implicit_kernels *kr, const fc_conv_desc *d, int64_t *nv)
{
    const int64_t kg = d->c_out / d->groups, cg = d->c_in / d->groups, es = (int64_t)fc_elem_size(d->dtype);
    *nv = 0;
    for (int64_t v = kr->nr / kr->vl; v >= 1; v--) {
        const int64_t lanes = v * kr->vl, G = lanes / kg;
        if (lanes % kg != 0 || G < 2 || G > kr->vl / 2 || (G & (G - 1)) != 0 || d->groups % G != 0)
            continue;
        if (kg >= kr->vl) {
            const int64_t panel = cg * d->kh * d->kw * lanes * es;
            const int64_t window = G * cg * phases(d, fwd_unphased(d)) * d->kh * band_width(d, fwd_unphased(d)) * es;
            if (4 * (panel + window) > 3 * fc_cpu_info_get()->l1d)
                return 1;
        }
        *nv = v;
        return G;
    }
    return 1;
}

/* Channels of one weight-gradient tile: NR, or one vector where the layer's kg fits in one
   (grouped layers of 8 or 16 channels a group: the NR tile computed 2-4x the channels). */
static int64_t wgrad_nr(const fc_implicit_kernels *kr, int64_t kg) { return kg <= kr->vl ? kr->vl : kr->nr; }

/* Bytes of the per-thread tile for `rows` output rows (band of G groups, plus bwd_weights'
   transposed grad_y). */
static int64_t tile_bytes_for(const fc_conv_desc *d, int pass, const fc_implicit_kernels *kr, int64_t rows,
                              int64_t G)
{
    const int64_t es = (int64_t)fc_elem_size(d->dtype), cg = d->c_in / d->groups, kg = d->c_out / d->groups;
    const int unph = pass != FC_BWD_WEIGHTS && fwd_unphased(d);
    const int64_t wp = band_width(d, unph);
    int64_t bytes = G * cg * phases(d, unph) * band_rows(d, rows, unph) * wp * es;
    if (pass == FC_BWD_WEIGHTS)
        bytes += rows * d->ow * (G > 1 ? G * kg : fc_round_up(kg, wgrad_nr(kr, kg))) * es;
    return bytes;
}

/* ---- the input gradient: one unit-stride forward per stride phase --------- */

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
static int phase_problem(const fc_conv_desc *d, int64_t a, int64_t b, fc_conv_desc *t, int64_t *tap_of)
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

/* The tap map ahead of each phase's workspace. */
static size_t tap_map_bytes(const fc_conv_desc *d) { return fc_align_up((size_t)(d->kh * d->kw) * sizeof(int64_t)); }

static int strided(const fc_conv_desc *d) { return d->stride_h > 1 || d->stride_w > 1; }

/* Stride phases an input gradient may have here (4 x 4: a patchify stem's); more go to
   explicit im2col. */
#define MAX_PHASES 16

int fc_implicit_groups_a_tile(const fc_conv_desc *d, int pass)
{
    const fc_implicit_kernels *kr = fc_implicit_kernels_for(d->dtype);
    if (!kr)
        return 1;
    int64_t nv;
    if (pass != FC_BWD_DATA)
        return (int)group_pack(kr, d, &nv);
    /* the input gradient's phases share one G: that of the phase with the most taps (the
       largest W^T panel; for unit strides the one phase, the transposed problem) */
    fc_conv_desc t, most;
    int64_t taps = -1;
    for (int64_t a = 0; a < d->stride_h; a++)
        for (int64_t b = 0; b < d->stride_w; b++)
            if (phase_problem(d, a, b, &t, NULL) && t.kh * t.kw > taps) {
                most = t;
                taps = t.kh * t.kw;
            }
    return taps < 0 ? 1 : (int)group_pack(kr, &most, &nv);
}


/* pointwise: an unpadded unit-stride 1x1 problem is taken (a forward, or an input gradient
   and its phase problem, the transposed 1x1 forward); the weight gradient of such a layer
   reads its operands in place elsewhere (pointwise_wgrad.c, conv_im2col.c's gemm_1x1), and
   a strided one (stride <= dilation) stays with explicit im2col, as before. */
static int problem_accepted(const fc_conv_desc *d, int pointwise)
{
    if (d->stride_h > d->kh * d->dil_h || d->stride_w > d->kw * d->dil_w)
        return 0; /* strides that skip input the kernel never reads: the band would copy it */
    if ((!pointwise || d->stride_h != 1 || d->stride_w != 1) && d->kh == 1 && d->kw == 1 && d->pad_top == 0 &&
        d->pad_bottom == 0 && d->pad_left == 0 && d->pad_right == 0)
        return 0;
    const int64_t wp = band_width(d, 0), cg = d->c_in / d->groups;
    if (wp > 4 * d->ow + 64)
        return 0; /* padding that dwarfs the output */
    return cg * phases(d, 0) * band_rows(d, 1, 0) * wp * (int64_t)fc_elem_size(d->dtype) <= MAX_BAND_ROW_BYTES;
}

static int implicit_accepts(const fc_conv_desc *d, int pass)
{
    if (fc_implicit_kernels_for(d->dtype) == NULL)
        return 0;
    if (pass == FC_BWD_DATA) { /* the forward of each stride phase (phase_problem) */
        if (!problem_accepted(d, 1) || d->stride_h * d->stride_w > MAX_PHASES)
            return 0;
        for (int64_t a = 0; a < d->stride_h; a++)
            for (int64_t b = 0; b < d->stride_w; b++) {
                fc_conv_desc t;
                if (phase_problem(d, a, b, &t, NULL) && !problem_accepted(&t, 1))
                    return 0;
            }
        return 1;
    }
    return problem_accepted(d, pass == FC_FWD);
}

/* Batch chunks of the weight gradient. Its work is split by output blocks (units: tile of
   groups, block of K rows, block of channels), and every thread that runs units of an image
   tile copies that tile's band and transposes its whole grad_y tile (pack_bt): for small K
   that copy and transpose are a large part of the work, and with the units split over
   nt threads each did it nt times (the 3 -> 32 channel first layer of a CIFAR net: 1.6 ms
   of transposes per thread beside 1.3 ms of kernels at 2 threads, 1.38x its 1-thread
   speed). With chunks, a work item is (chunk of images, range of units): the chunks sum
   into dW^T copies, added in chunk order at the end, so a thread takes whole images and
   transposes a tile only once for all of its units. The count depends on sizes only (the
   sums, and so the results, must not depend on the thread count): a power of two up to
   8 and the batch, while the partials to add, (chunks - 1) * K per channel, stay within a
   sixteenth of the pixels each channel's transpose reads (resnet_3x3, K = 1152 for 6272
   pixels: 1 chunk, as before; the CIFAR net's layers: 4-8). */
#define WGRAD_MAX_CHUNKS 8
static int64_t wgrad_chunks(const fc_conv_desc *d, int64_t K)
{
    const int64_t pixels = d->n * d->oh * d->ow;
    int64_t P = 1;
    while (2 * P <= WGRAD_MAX_CHUNKS && 2 * P <= d->n && (2 * P - 1) * K * 16 <= pixels)
        P *= 2;
    return P;
}

/* Images one weight-gradient kernel call sums. A call sums one tile's pixels into its
   MR x NR block of dW^T held in registers, then adds the block to dW^T in memory: a 7x7
   image gives it 49 pixels (784 FMA cycles on one 512-bit pipe) against a few hundred
   cycles of call, prologue and the block's read and write (for 512 -> 512 channels 9.4 MB
   of dW^T, read and written once per image). Where an image is one tile, a call sums nb
   images (their bands side by side, their grad_y^T rows one after another; a chunk's
   last block may have fewer): a power of two up to 8, the images of a chunk, 512 pixels in
   all, and twice the tile budget. Zen 4, 1 thread, nb = 1 -> chosen: 8 x 512 -> 512 at 7x7
   20.9 -> 18.5 ms (nb 4; 2 threads -11 %, AVX2 -11 %, f64 -8 %), 8 x 256 -> 512 14x14
   stride 2 -12 %, 8 x 256 -> 256 at 14x14 -2 % (nb 2), a CIFAR net's 16x16 layers -1.5 to
   -2 %; 1024 pixels measured no faster. Sizes only: nb fixes the summation order. */
#define WGRAD_BLOCK_PIXELS 512
#define WGRAD_MAX_IMAGES 8
static int64_t wgrad_images(const fc_conv_desc *d, int64_t chunks, int64_t tiles, int64_t band_bytes,
                            int64_t bt_bytes)
{
    const int64_t per_chunk = fc_ceil_div(d->n, chunks);
    int64_t nb = 1;
    /* doubled while the doubled block stays within the limits (its bytes within twice the
       tile budget: the current block within it) */
    while (tiles == 1 && 2 * nb <= WGRAD_MAX_IMAGES && 2 * nb <= per_chunk &&
           2 * nb * d->oh * d->ow <= WGRAD_BLOCK_PIXELS && nb * (band_bytes + bt_bytes) <= TILE_BYTES)
        nb *= 2;
    return nb;
}

int fc_implicit_wgrad_chunks(const fc_conv_desc *d)
{
    const int64_t cg = d->c_in / d->groups;
    return (int)wgrad_chunks(d, cg * d->kh * d->kw);
}

static void make_plan(const fc_conv_desc *d, int pass, iplan *p);

int fc_implicit_wgrad_images(const fc_conv_desc *d)
{
    if (fc_implicit_kernels_for(d->dtype) == NULL)
        return 0;
    iplan p;
    make_plan(d, FC_BWD_WEIGHTS, &p);
    return (int)p.nb;
}

/* Where the forward's kernels read: a band copied from the image (padding materialised), or
   the image itself (x, or grad_y for an input gradient), in place. */
enum { BAND_COPIED, BAND_IN_PLACE, BAND_IN_PLACE_SKIPPING };

static int edge_columns(const fc_conv_desc *d, const iplan *p, int skip);
static int group_edge(int cols, int64_t ow, int64_t j_first, int64_t j_last);

/* Whether pixel t of a group of n with edge case e computes kernel column m: the rule of the
   kernels' fwd_nv (implicit_kernels.inc) for 3-column kernels, whose e leaves out the taps
   of the group's edge pixels that read a padding column. */
static int edge_computes(int e, int64_t t, int64_t n, int64_t m)
{
    if (e == 0)
        return 1;
    const int kind = e >> 2;
    const int64_t l0 = e & 1 ? (kind ? 2 : 1) : 0, l1 = (e & 1) && kind == 1;
    const int64_t r2 = e & 2 ? (kind ? 2 : 1) : 0, r1 = (e & 2) && kind == 1;
    return m == 0 ? t >= l0 : m == 1 ? t >= l1 && t < n - r1 : t < n - r2;
}

/* Whether a unit-stride layer's pixel groups, starting at every row's first pixel, compute
   no tap that reads a padding column when skipping (edge_columns' cases, edge_computes). */
static int row_groups_skip_padding_columns(const fc_conv_desc *d, const iplan *p)
{
    const int cols = edge_columns(d, p, 1);
    const int64_t MR = p->kr->mr;
    for (int64_t j0 = 0; j0 < d->ow; j0 += MR) {
        const int64_t n = fc_min64(MR, d->ow - j0);
        const int e = group_edge(cols, d->ow, j0, j0 + n - 1);
        for (int64_t t = 0; t < n; t++)
            for (int64_t m = 0; m < d->kw; m++) {
                const int64_t col = j0 + t - d->pad_left + m * d->dil_w;
                if ((col < 0 || col >= d->w) && (d->kw != 3 || edge_computes(e, t, n, m)))
                    return 0;
            }
    }
    return 1;
}

/* Whether the forward's kernels can read the image in place instead of a band copied from
   it. The band is a copy of image rows with one group a tile and unit strides (band row r of
   a tile is image row i0 + r - pad_top, column j image column j - pad_left); the kernels
   read it by single-element broadcasts through the tap offsets, which in place step by the
   image's rows (W) and planes (H*W) and carry the padding's shift (build_offsets). Without
   padding nothing they read lies outside the image: BAND_IN_PLACE. With padding they read
   none of it where taps reading only padding are left out (finite weights, skip): kernel
   rows per pixel group, exactly where each group lies in one row (rows_aligned, or OW a
   multiple of MR), and kernel columns where the edge cases leave out every tap that reads a
   padding column (3-column kernels with padding 1, or 2 as in an unpadded layer's input
   gradient; row_groups_skip_padding_columns): BAND_IN_PLACE_SKIPPING, decided per tile
   (fwd_items), the copy kept for the other tiles and for non-finite weights. Zen 4, 1 thread:
   the copy was 6 % of a 2048 -> 512 1x1 forward at 7x7, 16 % of a 960 -> 160 one, 5 % of
   the CIFAR net's 32 -> 32 3x3 one at 32x32 (padding 1). */
static int band_in_place(const fc_conv_desc *d, const iplan *p)
{
    if (p->G != 1 || d->stride_h != 1 || d->stride_w != 1)
        return BAND_COPIED;
    /* Each side's padding within the kernel's reach (a 'same' layer, an unpadded layer's
       input gradient: the cases measured; wider padding keeps the copy), and every pixel
       pointer (output pixel (i, j) at element i*W + j of its image group, rows of an input
       gradient's padding 2 running past the image's H) inside the group's channels of the
       image, so that no pointer is formed outside x. */
    if (d->pad_top > (d->kh - 1) * d->dil_h || d->pad_bottom > (d->kh - 1) * d->dil_h ||
        (d->oh - 1) * d->w + d->ow > p->cg * d->h * d->w)
        return BAND_COPIED;
    if (d->pad_top == 0 && d->pad_bottom == 0 && d->pad_left == 0 && d->pad_right == 0)
        return BAND_IN_PLACE;
    return row_groups_skip_padding_columns(d, p) ? BAND_IN_PLACE_SKIPPING : BAND_COPIED;
}

/* d is the problem computed (for bwd_data, a phase problem); G > 0: that many groups a tile
   rather than group_pack's choice; max_rows > 0: at most that many tile rows (the phases of
   one input gradient share G and their tiling, see run_phases). */
static void make_plan_with(const fc_conv_desc *d, int pass, int64_t G, int64_t max_rows, iplan *p)
{
    const int64_t es = (int64_t)fc_elem_size(d->dtype);
    const fc_implicit_kernels *kr = fc_implicit_kernels_for(d->dtype);
    p->kr = kr;
    p->cg = d->c_in / d->groups;
    p->kg = d->c_out / d->groups;
    p->kh = d->kh;
    p->kw = d->kw;
    p->KK = d->kh * d->kw;
    p->K = p->cg * p->KK;
    p->unphased = pass != FC_BWD_WEIGHTS && fwd_unphased(d);
    p->wp = band_width(d, p->unphased);
    p->nt = fc_team_size(d);
    int64_t gnv = 0;
    p->G = group_pack(kr, d, &gnv);
    if (pass != FC_BWD_WEIGHTS && G > 0) {
        p->G = G;
        gnv = G * p->kg / kr->vl;
    }
    for (p->lg = 0; ((int64_t)1 << p->lg) < p->G; p->lg++)
        ;

    /* fwd: kv vectors of channels split evenly into cb blocks (f64, kg = 32: 16 + 16, not
       24 + 24 with a third wasted); G groups a tile: one block of G*kg lanes */
    p->kv = pass == FC_BWD_WEIGHTS ? 0 : p->G > 1 ? gnv : fc_ceil_div(p->kg, kr->vl);
    p->cb = fc_ceil_div(p->kv * kr->vl, kr->nr);

    /* Tile rows: as many as fit TILE_BYTES. The forward (whose result does not depend on
       the tiling) also makes enough work items to feed every thread twice (row tiles, or
       parts of the channel blocks, below); the weight gradient's tiles fix its summation
       order, so they depend on sizes only. */
    int64_t rows = d->oh;
    while (rows > 1 && tile_bytes_for(d, pass, kr, rows, p->G) > TILE_BYTES)
        rows = (rows + 1) / 2;
    p->cparts = 1;
    if (pass != FC_BWD_WEIGHTS) {
        int64_t want = fc_ceil_div(2 * p->nt, d->n * (d->groups / p->G)); /* items per image */
        /* Each work item reads the W^T of every channel block it computes. Where a whole
           image is one tile and its W^T is more than that tile's band (late layers: 512 ->
           512 channels at 7x7, 9.4 MB of W^T against a 166 KB band), the items split the
           channel blocks first, so W^T is read once per image, not once per row tile (a
           batch of one at two threads read it four times); rows are cut only for the items
           still wanted. Not for an input gradient's phases (G > 0), which share one row
           tiling. */
        if (want > 1 && G <= 0 && max_rows <= 0 && rows == d->oh && p->cb > 1 &&
            p->K * p->kv * kr->vl * es > tile_bytes_for(d, pass, kr, rows, p->G)) {
            p->cparts = fc_min64(p->cb, want);
            want = fc_ceil_div(want, p->cparts);
        }
        if (want > 1)
            rows = fc_min64(rows, fc_max64(1, fc_ceil_div(d->oh, want)));
    }
    if (max_rows > 0)
        rows = fc_min64(rows, max_rows);
    p->rows = rows;
    p->tiles = fc_ceil_div(d->oh, rows);
    p->plane = band_rows(d, rows, p->unphased) * p->wp;
    p->in_place = pass != FC_BWD_WEIGHTS && G <= 0 && max_rows <= 0 ? band_in_place(d, p) : BAND_COPIED;
    /* cg*sh*sw phase planes; no slack: the kernels read single elements, all inside a plane
       (row < band_rows, column < OW + (KW-1)*dw/sw = wp) */
    p->band_bytes = p->in_place == BAND_IN_PLACE
                        ? 0
                        : fc_align_up((size_t)(p->G * p->cg * phases(d, p->unphased) * p->plane * es));
    if (p->G > 1) { /* G groups a tile: their G*kg lanes, one tile wide */
        p->wnr = gnv * kr->vl;
        p->wgrad = kr->wgrad_grp[p->lg][gnv];
    } else {
        p->wnr = wgrad_nr(kr, p->kg);
        p->wgrad = p->wnr == kr->nr ? kr->wgrad : kr->wgrad_1v;
    }
    p->ldb = pass == FC_BWD_WEIGHTS ? fc_round_up(p->G * p->kg, p->wnr) : fc_round_up(p->kg, kr->nr);
    /* (two tables where the band is copied for some tiles and read in place for others) */
    p->off_bytes = fc_align_up((size_t)p->K * sizeof(int64_t)) * (p->in_place == BAND_IN_PLACE_SKIPPING ? 2 : 1);
    if (pass == FC_BWD_WEIGHTS) {
        p->mp = fc_round_up(p->K, kr->mr);
        p->apack_bytes = 0;
        p->bias_bytes = 0;
        p->chunks = wgrad_chunks(d, p->K);
        p->nb = wgrad_images(d, p->chunks, p->tiles, (int64_t)p->band_bytes, rows * d->ow * p->ldb * es);
        p->tile_bytes = fc_align_up((size_t)(p->nb * rows * d->ow * p->ldb * es));
        /* per chunk: dW^T of each tile of groups, then its bias gradient (G > 1: in lane
           order; G = 1: by channel, unused by chunk 0, which sums into grad_b itself) */
        p->chunk_bytes = fc_align_up((size_t)(d->groups / p->G * p->mp * p->ldb * es)) +
                         fc_align_up((size_t)(p->G > 1 ? d->groups / p->G * p->ldb : d->c_out) * es);
        /* One chunk, G = 1: the last image block's last tile of each unit stores its finished
           sum transposed straight into grad_w (the kernels' out), so no pass transposes dW^T
           after the loop: that pass was a third of a batch-1 512 -> 512 7x7 weight gradient
           (9.4 MB of dW^T, 49 pixels of work a tile). Where that call is the unit's only one
           (one image block, one tile), there is no dW^T at all, and the bias sums into grad_b:
           nb being a power of two, a batch of 1, 2, 4 or 8 small images; a batch of 3 keeps
           its dW^T for the first block. */
        p->direct_out = p->chunks == 1 && p->G == 1;
        if (p->direct_out && p->tiles == 1 && d->n <= p->nb)
            p->chunk_bytes = 0;
        p->dwt_bytes = (size_t)p->chunks * p->chunk_bytes;
    } else {
        p->mp = 0;
        /* per tile of G groups: kv*vl lanes of W^T and bias */
        p->apack_bytes = fc_align_up((size_t)(d->groups / p->G * p->kv * kr->vl * p->K * es));
        p->bias_bytes = fc_align_up((size_t)(d->groups / p->G * p->kv * kr->vl * es));
        p->tile_bytes = 0;
        p->nb = 1;
        p->direct_out = 0;
        p->dwt_bytes = 0;
        p->chunks = 0;
        p->chunk_bytes = 0;
    }
    p->tap_of = NULL;
    p->w_kk = d->kh * d->kw;
    p->per_thread = fc_thread_slot_stride((size_t)p->nb * p->band_bytes + p->tile_bytes, p->nt);
}

static void make_plan(const fc_conv_desc *d, int pass, iplan *p)
{
    make_plan_with(d, pass, 0, 0, p);
}

int fc_implicit_band_in_place(const fc_conv_desc *d, int pass)
{
    /* (a strided input gradient runs its phases on copied bands: run_phases) */
    if (fc_implicit_kernels_for(d->dtype) == NULL || pass == FC_BWD_WEIGHTS || (pass == FC_BWD_DATA && strided(d)))
        return BAND_COPIED;
    fc_conv_desc t = *d;
    if (pass == FC_BWD_DATA) /* the one phase of a unit stride: the transposed forward */
        phase_problem(d, 0, 0, &t, NULL);
    iplan p;
    make_plan(&t, FC_FWD, &p);
    return p.in_place;
}

static size_t plan_bytes(const iplan *p)
{
    return p->off_bytes + p->apack_bytes + p->bias_bytes + p->dwt_bytes + fc_thread_slots_bytes(p->per_thread, p->nt);
}

/* Workspace: offset table | shared block (packed W^T and padded bias for fwd; for
   bwd_weights each chunk's dW^T and bias) | one tile per thread, fc_thread_slot_stride apart. */
static void carve(const iplan *p, void *ws, int64_t **off, char **shared, char **thread0)
{
    *off = (int64_t *)ws;
    *shared = (char *)ws + p->off_bytes;
    *thread0 = *shared + p->apack_bytes + p->bias_bytes + p->dwt_bytes;
}

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

static void plan_phases(const fc_conv_desc *d, phase_set *S)
{
    const int64_t G = fc_implicit_groups_a_tile(d, FC_BWD_DATA);
    S->n = 0;
    S->rows = d->h;
    for (int64_t a = 0; a < d->stride_h; a++)
        for (int64_t b = 0; b < d->stride_w; b++) {
            const int q = S->n;
            if (q == MAX_PHASES || !phase_problem(d, a, b, &S->t[q], NULL))
                continue;
            S->a[q] = a;
            S->b[q] = b;
            make_plan_with(&S->t[q], FC_FWD, G, 0, &S->p[q]);
            S->rows = fc_min64(S->rows, S->p[q].rows);
            S->n++;
        }
    S->band = S->slot = 0;
    S->tiles = 0;
    S->total = (size_t)S->n * tap_map_bytes(d);
    for (int q = 0; q < S->n; q++) {
        iplan *p = &S->p[q];
        make_plan_with(&S->t[q], FC_FWD, G, S->rows, p);
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

static size_t implicit_workspace_size(const fc_conv_desc *d, int pass)
{
    iplan p;
    if (pass != FC_BWD_DATA) {
        make_plan(d, pass, &p);
        return plan_bytes(&p);
    }
    if (strided(d)) {
        phase_set S;
        plan_phases(d, &S);
        return S.total;
    }
    fc_conv_desc t;
    phase_problem(d, 0, 0, &t, NULL);
    make_plan(&t, FC_FWD, &p);
    return tap_map_bytes(d) + plan_bytes(&p);
}

/* ---- pieces shared by the passes ------------------------------------------ */

/* off[(c*KH + l)*KW + m]: the tap's phase plane, then its row and column shift in it (in
   chunks of G elements, one per group of the tile). */
/* rows_first: index the taps (l, c, m) instead of the weight's (c, l, m), so that the taps
   of one kernel row are contiguous (the forward skips whole kernel rows in the padding). */
/* in_place (band_in_place): the offsets in the image itself, from a tile's first output
   pixel, image row i0 (reading outside the image where a tap reads padding, left out then). */
static void build_offsets(const fc_conv_desc *d, const iplan *p, int rows_first, int in_place, int64_t *off)
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

/* The offset table of in-place tiles (run_fwd's second one where some tiles copy). */
static const int64_t *offsets_in_place(const iplan *p, const int64_t *off)
{
    return p->in_place == BAND_IN_PLACE_SKIPPING ? off + p->off_bytes / 2 / sizeof(int64_t) : off;
}

/* The band's rows are read in address order (rows of a channel, then the next channel), but
   the hardware prefetchers stop at every 4 KiB page, a few rows apart on small images: the
   copy of a grouped 3x3 layer's band waited on L3 for 7 % of its forward. Each source row is
   therefore prefetched this far ahead (a prefetch past the end of x is harmless). */
#define COPY_PF_BYTES 2048

/* Whether the ISA's copy_rows_grp takes G groups at source column step sx (copy_band's band
   rows, merge_rows' column phases). */
static int copy_rows_grp_takes(const fc_implicit_kernels *kr, int64_t G, int64_t sx)
{
    return kr->copy_rows_grp != NULL && (G == 2 || G == 4) && (sx == 1 || sx == 2);
}

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

static void copy_band(const fc_conv_desc *d, const iplan *p, const char *x_g, int64_t i0, int64_t rows,
                      int64_t c0, int64_t c1, char *band)
{
    if (d->dtype == FC_F64)
        copy_band_f64(d, p, (const double *)x_g, i0, rows, c0, c1, (double *)band);
    else
        copy_band_f32(d, p, (const float *)x_g, i0, rows, c0, c1, (float *)band);
}

/* ---- forward (and bwd_data through it) ------------------------------------ */

/* Vectors [*v0, *v0 + *nv) of channel block cb (the kv vectors split evenly, larger first). */
static void block_vectors(const iplan *p, int64_t cb, int64_t *v0, int64_t *nv)
{
    const int64_t base = p->kv / p->cb, extra = p->kv % p->cb;
    *nv = base + (cb < extra);
    *v0 = cb * base + fc_min64(cb, extra);
}

/* The output channels of blocks [cb0, cb1): [*c0, *c1) of the tile's lanes (all G*kg of them
   for G > 1, one block). */
static void block_channels(const iplan *p, int64_t cb0, int64_t cb1, int64_t *c0, int64_t *c1)
{
    int64_t v0, v1, nv;
    block_vectors(p, cb0, &v0, &nv);
    block_vectors(p, cb1 - 1, &v1, &nv);
    *c0 = p->G > 1 ? 0 : v0 * p->kr->vl;
    *c1 = p->G > 1 ? p->G * p->kg : fc_min64(p->kg, (v1 + nv) * p->kr->vl);
}

/* Source elements a gather_wt call takes (its table is on the stack). */
#define PACK_MAX_TAPS 64

/* The W^T row (in lanes of width) of tap t of a flipped (bwd_data phase) problem, less its
   channel's part: the forward's tap order (l*cg + c)*KW + m, build_offsets'. */
static int64_t flip_row(const iplan *p, int64_t t, int64_t width)
{
    return (t / p->kw * p->cg * p->kw + t % p->kw) * width;
}

/* The table of source elements [e0, e0 + n) of a gather_wt call, for runs that start at
   channel c of each filter: the W^T row, less c's part, of the tap that reads element e, or
   -1 for none. Not flipped, element e is tap e (channel c + e / KK, kernel tap e % KK); its
   row is (l*cg + k)*KW + m. flip (one channel a run): element e is the weight's tap e, read
   by the tap t with p->tap_of[t] == e, if any (a phase problem takes some of the taps). */
static void wt_tables(const iplan *p, int flip, int64_t e0, int64_t n, int64_t width, int64_t *drow)
{
    for (int64_t i = 0; i < n; i++) {
        const int64_t t = e0 + i, k = t / p->KK, l = t % p->KK / p->kw, m = t % p->kw;
        drow[i] = flip ? -1 : ((l * p->cg + k) * p->kw + m) * width;
    }
    if (!flip)
        return;
    for (int64_t t = 0; t < p->KK; t++) {
        const int64_t e = p->tap_of[t];
        if (e >= e0 && e < e0 + n)
            drow[e - e0] = flip_row(p, t, width);
    }
}

/* The filters of lanes [j0, j0 + vl) of a block starting at channel c0 (lane j: channel
   c0 + j / G of group gt*G + j % G) at their channel 0, NULL past kg; flip: a bwd_data
   problem's, the original weight's input channel read transposed. */
static void lane_filters(const iplan *p, const char *w, size_t es, int flip, int64_t gt, int64_t c0, int64_t j0,
                         const void **f)
{
    for (int64_t i = 0; i < p->kr->vl; i++) {
        const int64_t j = j0 + i, ch = c0 + j / p->G, g = gt * p->G + j % p->G;
        f[i] = ch >= p->kg ? NULL
               : w + (size_t)(flip ? (g * p->cg * p->kg + ch) * p->w_kk : (g * p->kg + ch) * p->cg * p->KK) * es;
    }
}

/* W^T of tile gt (groups gt*G ..), lanes [c0, c0 + width), for one block: wt[p*width + j] =
   W(g, ch, p) with lane j = channel ch = c0 + j / G of group g = gt*G + j % G, zero for
   channels past kg. flip: w is the original weight of a bwd_data problem (a phase problem),
   read transposed (its input channels are our output channels), tap t from the weight's
   tap p->tap_of[t] (for unit strides: rotated by 180 degrees); tap t goes to row
   (l*cg + c)*KW + m, the forward's tap order (build_offsets).
   Through the ISA's gather_wt: vl lanes (filters) at a time, a register transpose of their
   taps (the element-by-element copy took 39 % of a 512-channel 7x7 forward at batch 1). A
   filter holds its channels' taps one after another (not so a bwd_data problem's, read
   transposed), so a run takes as many channels as PACK_MAX_TAPS elements hold and each
   filter is read in runs of up to 64 elements, not of KK (36 bytes for 3x3); one call takes
   a lane block's runs (a bwd_data problem's: one channel each, cstep apart), and filters of
   more than PACK_MAX_TAPS taps go a channel at a time in windows. Returns whether the
   weights read are all finite. */
static int pack_wt(const iplan *p, const char *w, size_t es, int flip, int64_t gt, int64_t c0, int64_t width,
                   char *wt)
{
    const int64_t KW = p->kw, KK = p->KK, vl = p->kr->vl;
    const int64_t cc = flip || KK > PACK_MAX_TAPS ? 1 : fc_min64(p->cg, PACK_MAX_TAPS / KK);
    const int64_t run = flip ? p->w_kk : cc * KK; /* elements of a full run */
    const int64_t cstep = flip ? p->kg * p->w_kk : KK; /* elements to a filter's next channel */
    int64_t drow[PACK_MAX_TAPS], dstep[PACK_MAX_TAPS];
    for (int64_t e = 0; e < PACK_MAX_TAPS; e++) /* every element: a run is cc channels */
        dstep[e] = cc * KW * width;
    if (run <= PACK_MAX_TAPS) /* one window: the table does not change */
        wt_tables(p, flip, 0, run, width, drow);
    int finite = 1;
    if (flip && p->w_kk == 1 && p->G == 1) {
        /* a 1x1 input gradient: lane j's one tap of channel c is w[c*cstep + c0 + j] (group
           gt's block), so a run's lanes lie side by side and W^T's rows are rows of w: copied,
           not transposed (gather_wt took them one element a lane: 1.4 ms of a 2048 -> 512
           input gradient at 7x7, 8.5 for the rest) */
        const int64_t lanes = fc_max64(0, fc_min64(width, p->kg - c0));
        const char *src = w + (size_t)(gt * p->cg * p->kg + c0) * es;
        for (int64_t c = 0; c < p->cg; c++) {
            char *row = wt + (size_t)(c * width) * es;
            memcpy(row, src + (size_t)(c * cstep) * es, (size_t)lanes * es);
            memset(row + (size_t)lanes * es, 0, (size_t)(width - lanes) * es);
        }
        return fc_all_finite(wt, p->cg * width, es == sizeof(double) ? FC_F64 : FC_F32, 1);
    }
    const void *f[16], *fw[16]; /* lane i's filter at channel 0; at the call's first element */
    /* lanes outer: each lane's filter is then read front to back, one stream per lane */
    for (int64_t j0 = 0; j0 < width; j0 += vl) {
        lane_filters(p, w, es, flip, gt, c0, j0, f);
        char *dst = wt + (size_t)j0 * es;
        if (run <= PACK_MAX_TAPS) { /* the full runs in one call, then the channels left */
            const int64_t full = p->cg / cc, rest = p->cg % cc;
            finite &= p->kr->gather_wt(f, run, full, cc * cstep, dst, dstep, drow);
            for (int64_t i = 0; i < vl && rest > 0; i++)
                fw[i] = f[i] ? (const char *)f[i] + (size_t)(full * cc * cstep) * es : NULL;
            if (rest > 0)
                finite &= p->kr->gather_wt(fw, rest * KK, 1, 0, dst + (size_t)(full * cc * KW * width) * es, dstep, drow);
            continue;
        }
        for (int64_t c = 0; c < p->cg; c++) /* a channel at a time, in windows of taps */
            for (int64_t e0 = 0; e0 < run; e0 += PACK_MAX_TAPS) {
                const int64_t ne = fc_min64(PACK_MAX_TAPS, run - e0);
                wt_tables(p, flip, e0, ne, width, drow);
                for (int64_t i = 0; i < vl; i++)
                    fw[i] = f[i] ? (const char *)f[i] + (size_t)(c * cstep + e0) * es : NULL;
                finite &= p->kr->gather_wt(fw, ne, 1, 0, dst + (size_t)(c * KW * width) * es, dstep, drow);
            }
    }
    return finite;
}

/* Channel block cb of tile gt into wt (the plan's W^T: tiles of kv*vl lanes, K rows each);
   whether its weights are all finite. */
static int pack_block(int dtype, const iplan *p, const void *w, int flip, int64_t gt, int64_t cb, char *wt)
{
    const size_t es = fc_elem_size(dtype);
    int64_t v0, nv;
    block_vectors(p, cb, &v0, &nv);
    const int64_t c0 = v0 * p->kr->vl, width = nv * p->kr->vl;
    char *dst = wt + (size_t)((gt * p->kv * p->kr->vl + c0) * p->K) * es;
    return pack_wt(p, (const char *)w, es, flip, gt, c0, width, dst);
}

/* Kernel rows [*lo, *hi) that read inside the image for some output row in [first, last]
   (all of them when skipping is off; *lo == *hi when none does). Input row oh*sh + l*dh -
   pad_top is inside for l in [ceil((pad_top - oh*sh) / dh), floor((H-1 + pad_top - oh*sh) / dh)];
   both ends fall as oh grows, so the union over the rows runs from the last row's lower end
   to the first row's upper end. */
static void valid_kernel_rows(const fc_conv_desc *d, int64_t first, int64_t last, int skip, int64_t *lo,
                              int64_t *hi)
{
    *lo = 0;
    *hi = d->kh;
    if (!skip)
        return;
    const int64_t top = d->pad_top - last * d->stride_h;
    const int64_t bottom = d->h - 1 + d->pad_top - first * d->stride_h;
    if (top <= 0 && bottom >= (d->kh - 1) * d->dil_h)
        return; /* all rows, as for most groups: no divisions */
    *lo = top > 0 ? fc_min64(d->kh, (top + d->dil_h - 1) / d->dil_h) : 0;
    *hi = bottom >= 0 ? fc_min64(d->kh, bottom / d->dil_h + 1) : 0;
    if (*hi < *lo)
        *hi = *lo;
}

/* Pixel groups (of MR) per chunk of fwd_tile: every channel block's packed weights are read
   once per chunk rather than once per group. The whole W^T of a large layer (VGG-sized,
   256 -> 256 channels 3x3: 2.4 MB) does not fit L2, so with one group per pass it streamed
   from L3 at ~16 bytes per cycle at two FMAs a cycle: more than a mesh L3 delivers to a core
   (issue 12's Xeon ran such layers at 60 % of peak). With 8 groups (64 pixels) the weights
   come at ~2 bytes a cycle; the chunk's band window stays in L1/L2. Results are unchanged:
   each output is still one kernel call's sum over all of K. Measured on Zen 5 (fast L3),
   interleaved runs against one group per pass: VGG-sized 1.05x at 1 and 2 threads,
   resnet_3x3 and mnist_c2 1.02-1.03x, the small layers within +-1 %; 16 groups no better. */
#define FWD_CHUNK_GROUPS 8

/* Whether the tile's groups have narrow and edge kernels (fwd[e][v][k-1] all built; for G
   groups a tile, those GROUP_EDGE_TILES lists: fwd_grp[lg][v][e][k-1]). Else only full groups
   run on across rows, none leaving out edge taps. */
static int narrow_kernels(const iplan *p) { return p->G == 1 || p->kr->fwd_grp[p->lg][p->kv][0][0] != NULL; }

/* Which edge columns' padding taps a tile's groups may leave out (fwd[e]): bit 0, the
   left (a row's first pixel reads it through each first kernel column), bit 1, the right (a
   row's last pixel, through each last column); bits 2-3, the kind (fwd_nv): 1 where the
   second pixel from each such edge reads padding through the edge column and the edge
   pixel through the middle one too (padding 2, as in an unpadded layer's input gradient),
   2 where only the first holds (padding 2 at dilation 2), else 0 (always 0 for G groups a
   tile: fwd_grp has kind 0 only). For 3-column kernels and finite weights (skip). */
static int edge_columns(const fc_conv_desc *d, const iplan *p, int skip)
{
    if (!skip || d->kw != 3 || !narrow_kernels(p))
        return 0;
    const int64_t sw = d->stride_w, dil = d->dil_w; /* sw: 1 in phase planes, as in the band */
    /* pixels of a row whose tap m reads the left padding (j*sw + m*dil < pad_left), and the
       right (j*sw - pad_left + m*dil >= W, j < ow) */
    int64_t lpx[2], rpx[3];
    for (int m = 0; m < 3; m++) {
        const int64_t lead = d->pad_left - m * dil, first = d->w + d->pad_left - m * dil;
        if (m < 2)
            lpx[m] = lead > 0 ? fc_ceil_div(lead, sw) : 0;
        rpx[m] = fc_max64(0, d->ow - (first > 0 ? fc_ceil_div(first, sw) : 0));
    }
    const int left = lpx[0] >= 1, right = rpx[2] >= 1;
    int kind = 0;
    if ((!left || (lpx[0] >= 2 && lpx[1] >= 1)) && (!right || (rpx[2] >= 2 && rpx[1] >= 1)))
        kind = 1;
    else if ((!left || lpx[0] >= 2) && (!right || rpx[2] >= 2))
        kind = 2;
    if (p->G > 1) /* the grouped kernels have kind 0 only, which leaves out a subset of any kind's taps */
        kind = 0;
    return left | right << 1 | (left || right ? kind << 2 : 0);
}

/* The edge case (the kernels' e) of a group whose first and last pixels are in columns
   j_first and j_last of their rows, given edge_columns' mask: 0 where nothing is left out. */
static int group_edge(int cols, int64_t ow, int64_t j_first, int64_t j_last)
{
    const int side = (cols & 1 && j_first == 0) | (cols & 2 && j_last == ow - 1) << 1;
    return side ? side | (cols & 12) : 0;
}

/* The fewest pixels a narrow group is counted as: its k x NV accumulators are the kernel's
   independent FMA chains, and FMA pipes x 4 cycles of latency of them keep the pipes busy
   (fewer wait on the latency). AVX-512 on Zen 4 (one 512-bit pipe): 2 pixels of 2 vectors;
   with two pipes (Xeon, Zen 5) or 256-bit vectors (two pipes on every AVX2 CPU): 4. */
static int64_t narrow_min_pixels(const fc_implicit_kernels *kr, int dtype)
{
    const int64_t bits = kr->vl * (int64_t)fc_elem_size(dtype) * 8, nv = kr->nr / kr->vl;
    const int64_t pipes = bits == 512 ? fc_max64(1, fc_cpu_info_get()->fma512_ports) : 2;
    return fc_min64(kr->mr, (4 * pipes + nv - 1) / nv);
}

/* The FMA cycles of a group, per channel, in pixel-taps: npx pixels (a narrow group counted
   as at least min_px, narrow_min_pixels) times KW taps over kernel rows [lo, hi), less the
   edge taps e leaves out (per side: 1, 3 or 2 by its kind; 2 or 1 of a one-pixel group). */
static double group_cost(const fc_conv_desc *d, int64_t min_px, int64_t npx, int64_t lo, int64_t hi, int e)
{
    const int kind = e >> 2, sides = (e & 1) + (e >> 1 & 1);
    const int64_t per_side = kind == 0 ? 1 : fc_min64(2, npx) + (kind == 1);
    return (double)(hi - lo) * (double)(fc_max64(npx, min_px) * d->kw - sides * per_side);
}

/* Whether a tile's pixel groups should start at every output row rather than run on across
   rows. Run on, every group but the last is full; row-aligned, a row ends in a narrow group
   (fwd[0][v][k-1], k < MR) but a group then lies in one row, so rows that read padding rows
   leave those kernel rows out whole (across rows, a group takes the union of its rows' kernel rows), and
   every row's first and last pixel start and end a group, whose edge columns' padding taps
   are left out (fwd[e]). At 7x7 with padding 1 that is 2 of 7 rows a third short, and the
   49 pixels no longer end in a group of one: 8 x 512 -> 512 channels 19.3 -> 16.5 ms on Zen 4.
   Decided by counting the FMAs of both ways (group_cost); the row-aligned way must save 1 %
   (with the edge taps in the count, 28-wide rows save 1.2 %: 0.4-1.1 % faster on Zen 4
   aligned, AVX-512 and AVX2; 27-wide ones, which are not, measured the same either way). */
static int rows_aligned(const fc_conv_desc *d, const iplan *p, int64_t i0, int64_t rows, int skip, int cols)
{
    const int64_t MR = p->kr->mr, ow = d->ow, pixels = rows * ow;
    if (ow % MR == 0)
        return 0; /* the same groups either way */
    const int64_t min_px = narrow_min_pixels(p->kr, d->dtype);
    double run = 0, row = 0;
    int64_t lo, hi;
    for (int64_t P0 = 0; P0 < pixels; P0 += MR) { /* run on: groups of MR, the last short */
        const int64_t n = fc_min64(MR, pixels - P0);
        valid_kernel_rows(d, i0 + P0 / ow, i0 + (P0 + n - 1) / ow, skip, &lo, &hi);
        run += group_cost(d, min_px, n, lo, hi, group_edge(cols, ow, P0 % ow, (P0 + n - 1) % ow));
    }
    for (int64_t r = 0; r < rows; r++) {
        valid_kernel_rows(d, i0 + r, i0 + r, skip, &lo, &hi);
        for (int64_t j = 0; j < ow; j += MR) {
            const int64_t n = fc_min64(MR, ow - j);
            row += group_cost(d, min_px, n, lo, hi, group_edge(cols, ow, j, j + n - 1));
        }
    }
    return row < 0.99 * run;
}

/* rows_aligned of a tile, remembered by each thread across its work items: the same tile
   rows recur for every image, group and channel part (computed per item, it was 1 % of a
   4-group 28x28 layer's forward). */
typedef struct align_memo {
    const fc_conv_desc *d;
    int64_t i0, rows;
    int aligned;
} align_memo;

static int tile_rows_aligned(align_memo *m, const fc_conv_desc *d, const iplan *p, int64_t i0, int64_t rows,
                             int skip, int cols)
{
    if (m->d != d || m->i0 != i0 || m->rows != rows) {
        m->d = d, m->i0 = i0, m->rows = rows;
        m->aligned = narrow_kernels(p) && rows_aligned(d, p, i0, rows, skip, cols);
    }
    return m->aligned;
}

/* Lines of output pixels [P0, P1) of channels [c_lo, c_hi), for writing. */
static void prefetch_out(const char *y_t, int64_t y_plane, int64_t c_lo, int64_t c_hi, int64_t P0, int64_t P1,
                         size_t es)
{
    for (int64_t c = c_lo; c < c_hi; c++) {
        const char *row = y_t + (size_t)(c * y_plane + P0) * es;
        for (size_t o = 0; o < (size_t)(P1 - P0) * es; o += 64)
            __builtin_prefetch(row + o, 1);
    }
}

/* Lines of image rows [r0, r1) (clamped to the image) of channels [c0, c1) of img, for
   reading. Where the kernels read the image in place (band_in_place), the rows a chunk of
   pixels reads first: the band copy had streamed them in ahead of the kernels, whose
   broadcasts then waited on them (the CIFAR net's 32 -> 32 3x3 layer: no faster in place
   than copied until fetched ahead). */
static void prefetch_in(const fc_conv_desc *d, const char *img, int64_t c0, int64_t c1, int64_t r0, int64_t r1,
                        size_t es)
{
    r0 = fc_max64(r0, 0);
    r1 = fc_min64(r1, d->h);
    for (int64_t c = c0; c < c1; c++)
        for (int64_t r = r0; r < r1; r++) {
            const uintptr_t a = (uintptr_t)(img + (size_t)((c * d->h + r) * d->w) * es);
            for (uintptr_t line = a & ~(uintptr_t)63; line < a + (uintptr_t)d->w * es; line += 64)
                __builtin_prefetch((const void *)line, 0, 2);
        }
}

/* One tile: the rows*OW output pixels in groups of MR (the micro-kernel's), running on across
   rows or, where rows_aligned says so, starting at every row; each group against channel
   blocks [cb0, cb1), FWD_CHUNK_GROUPS groups at a time. Pixel P of the tile (row r = P / OW,
   column j = P % OW) is band element (r*rstep*wp + j*cstep)*G (steps of the stride in an
   unphased band); a group of fewer than MR pixels takes a narrow kernel (fwd[e][v][k-1],
   fwd_grp[lg][v][e][k-1]; a grouped tile without them, narrow_kernels, the full one; its
   unused px slots repeat the first pixel).
   skip: the weights are finite, so taps that read only padding add exact zeros and are left
   out: whole kernel rows (a tap range per pixel group: the union over its rows) and, for
   3-column kernels, the edge columns' taps of a group's first and last pixel where they
   start or end a row (fwd[e]). The partial sums of the other taps are bitwise the same
   (the accumulators start at +0), so tiling and thread count still do not matter.
   band: the copied band (rows wp wide), or the image read in place from row i0 (wp = W; img,
   non-NULL, the tile's image for prefetch_in, unit strides only). */
static void fwd_tile(const fc_conv_desc *d, const iplan *p, const char *wt, const char *bias,
                     const int64_t *off, const char *band, int64_t wp, const char *img, char *y_t, int64_t y_plane,
                     int64_t i0, int64_t rows,
                     int64_t cb0, int64_t cb1, int skip, int relu, align_memo *memo)
{
    const size_t es = fc_elem_size(d->dtype);
    const int64_t MR = p->kr->mr, vl = p->kr->vl, pixels = rows * d->ow;
    const int64_t G = p->G;
    /* band rows and columns between neighbouring output pixels: 1 in phase planes */
    const int64_t rstep = p->unphased ? d->stride_h : 1, cstep = p->unphased ? d->stride_w : 1;
    /* G groups a tile: lane L (channel L / G of group L % G) is stored in its channel's row */
    int64_t lane_rows[64];
    for (int64_t L = 0; G > 1 && L < p->kv * vl; L++)
        lane_rows[L] = (L % G * p->kg + L / G) * y_plane;
    const int64_t row_taps = p->cg * p->kw; /* taps of one kernel row (build_offsets' order) */
    const void *px[FWD_CHUNK_GROUPS][8];
    int64_t g0[FWD_CHUNK_GROUPS], gk0[FWD_CHUNK_GROUPS], gkc[FWD_CHUNK_GROUPS], gn[FWD_CHUNK_GROUPS];
    int ge[FWD_CHUNK_GROUPS];
    const int cols = edge_columns(d, p, skip);
    const int aligned = tile_rows_aligned(memo, d, p, i0, rows, skip, cols);
    int64_t ch0, ch1; /* the channels of blocks [cb0, cb1) */
    block_channels(p, cb0, cb1, &ch0, &ch1);
    const int64_t nc = ch1 - ch0;
    int64_t r = 0, j = 0; /* of the next group's first pixel */
    for (int64_t C0 = 0, P0 = 0; C0 < pixels; C0 = P0) {
        int ng = 0;
        for (; P0 < pixels && ng < FWD_CHUNK_GROUPS; ng++) {
            const int64_t npx = fc_min64(MR, aligned ? d->ow - j : pixels - P0), r_first = r, j_first = j;
            int64_t r_last = r, j_last = j;
            for (int64_t t = 0; t < MR; t++) {
                if (t >= npx) {
                    px[ng][t] = px[ng][0];
                    continue;
                }
                px[ng][t] = band + (size_t)((r * rstep * wp + j * cstep) * G) * es;
                r_last = r, j_last = j;
                if (++j == d->ow) {
                    j = 0;
                    r++;
                }
            }
            int64_t lo, hi;
            valid_kernel_rows(d, i0 + r_first, i0 + r_last, skip, &lo, &hi);
            g0[ng] = P0, gn[ng] = npx, gk0[ng] = lo * row_taps, gkc[ng] = (hi - lo) * row_taps;
            ge[ng] = group_edge(cols, d->ow, j_first, j_last);
            P0 += npx;
        }
        /* The output lines of the chunk's pixels, in the blocks' channels, fetched before the
           kernels store into them: a layer's output rarely sits in cache, and each kernel's
           2 x 16 stores of half a line then waited on memory (read for ownership). ResNet's
           stem (K = 147) spent ~500 cycles per 2352-cycle kernel call outside its loop. The
           first chunk's at once; each next chunk's a slice of channels before each of this
           chunk's first-block kernels: all at once, the prefetches (128 lines a chunk)
           stalled on the full miss queue, 4 % of a layer of 4 channels a group (K = 36). */
        const int64_t C1 = P0, C2 = fc_min64(pixels, C1 + (C1 - C0)); /* this chunk's and the next's */
        if (C0 == 0)
            prefetch_out(y_t, y_plane, ch0, ch1, 0, C1, es);
        /* in place: the image rows this chunk reads, [in0, in1), and those the next chunk
           reads first, [in1, in2) (the first chunk's at once, the next's in slices; output
           row i reads image rows [i - pad_top, i + reach)) */
        const int64_t reach = (d->kh - 1) * d->dil_h + 1 - d->pad_top;
        const int64_t in0 = i0 - d->pad_top, in1 = i0 + (C1 - 1) / d->ow + reach;
        const int64_t in2 = i0 + (C2 - 1) / d->ow + reach;
        if (img && C0 == 0)
            prefetch_in(d, img, 0, p->cg, in0, in1, es);
        for (int64_t cb = cb0; cb < cb1; cb++) {
            int64_t v0, nv;
            block_vectors(p, cb, &v0, &nv);
            const int64_t c0 = v0 * vl, nch = fc_min64(nv * vl, p->kg - c0);
            const char *wcb = wt + (size_t)(c0 * p->K) * es, *bcb = bias ? bias + (size_t)c0 * es : NULL;
            if (G > 1) { /* one block: all of the G groups' lanes */
                const fc_implicit_fwd_grp_fn(*kernels)[8] = p->kr->fwd_grp[p->lg][nv];
                const int narrow = kernels[0][0] != NULL; /* (narrow_kernels) */
                for (int q = 0; q < ng; q++) {
                    if (C1 < pixels)
                        prefetch_out(y_t, y_plane, ch0 + q * nc / ng, ch0 + (q + 1) * nc / ng, C1, C2, es);
                    /* (a tile without narrow kernels: its last, short group computed whole) */
                    const fc_implicit_fwd_grp_fn kernel = narrow ? kernels[ge[q]][gn[q] - 1] : kernels[0][MR - 1];
                    kernel(gkc[q], wcb + (size_t)(gk0[q] * nv * vl) * es, px[q], off + gk0[q],
                           y_t + (size_t)g0[q] * es, lane_rows, gn[q], bcb, relu);
                }
                continue;
            }
            for (int q = 0; q < ng; q++) {
                if (cb == cb0 && C1 < pixels) {
                    prefetch_out(y_t, y_plane, ch0 + q * nc / ng, ch0 + (q + 1) * nc / ng, C1, C2, es);
                    if (img)
                        prefetch_in(d, img, q * p->cg / ng, (q + 1) * p->cg / ng, in1, in2, es);
                }
                p->kr->fwd[ge[q]][nv][gn[q] - 1](gkc[q], wcb + (size_t)(gk0[q] * nv * vl) * es, px[q],
                                                 off + gk0[q], y_t + (size_t)(c0 * y_plane + g0[q]) * es, y_plane,
                                                 gn[q], nch, bcb, relu);
            }
        }
    }
}

/* gx rows (i0 + i)*sh + a, i < rows, of channels [c0, c0 + count) of image n, from the output
   tiles of the column phases b of row phase a: slot[b] + (c*rows + i)*ow[b] (ow[b] columns;
   zeros where no tap reaches the phase). Whole rows are written at once, so each gx
   line is written once (scattered phase by phase, the lines the column phases share were
   written sw times: at 2 threads 1.6x the 1-thread speed against explicit im2col's 2.0x).
   Then, with a mask (relu_out, gx's layout), the ReLU's backward on those rows. */
static void merge_rows(const fc_conv_desc *d, const fc_implicit_kernels *kr, char *const *slot, const int64_t *ow,
                       int64_t a, char *gx, int64_t n, int64_t c0, int64_t count, int64_t i0, int64_t rows,
                       const char *mask)
{
    const size_t es = fc_elem_size(d->dtype);
    const int64_t sw = d->stride_w, W = d->w, full = W / sw; /* columns every phase has */
    const int vector = sw == 2 || ((sw == 4 || sw == 8) && W % sw == 0); /* kr->interleave's cases */
    if (W % sw == 0 && copy_rows_grp_takes(kr, sw, 1)) { /* sw column phases as sw groups */
        /* every phase full, its slots equally apart: a channel's rows in one call (per row, the
           call and loop took a third of a stride-2 grouped input gradient, 14-column phases) */
        const int64_t gstride = (int64_t)((slot[1] - slot[0]) / (ptrdiff_t)es);
        for (int64_t c = 0; c < count; c++) {
            const size_t row = (size_t)(((n * d->c_in + c0 + c) * d->h + i0 * d->stride_h + a) * W);
            kr->copy_rows_grp(gx + row * es, d->stride_h * W, slot[0] + (size_t)(c * rows * full) * es, full, 1,
                              gstride, sw, rows, 0, full, full, 0);
            for (int64_t i = 0; i < rows && mask; i++)
                fc_relu_mask_rows(d->dtype, gx + (row + (size_t)(i * d->stride_h * W)) * es,
                                  mask + (row + (size_t)(i * d->stride_h * W)) * es, 0, 1, W);
        }
        return;
    }
    for (int64_t c = 0; c < count; c++)
        for (int64_t i = 0; i < rows; i++) {
            const size_t row = (size_t)(((n * d->c_in + c0 + c) * d->h + (i0 + i) * d->stride_h + a) * W);
            char *dst = gx + row * es;
            const char *src0 = slot[0] + (size_t)((c * rows + i) * ow[0]) * es;
            if (vector && full > 0) {
                const char *src1 = slot[1] + (size_t)((c * rows + i) * ow[1]) * es;
                kr->interleave(dst, src0, (int64_t)((src1 - src0) / (ptrdiff_t)es), full, 1, sw);
            }
            for (int64_t j = vector ? full * sw : 0; j < W; j++) {
                const int64_t b = j % sw;
                memcpy(dst + (size_t)j * es, slot[b] + (size_t)((c * rows + i) * ow[b] + j / sw) * es, es);
            }
            if (mask)
                fc_relu_mask_rows(d->dtype, dst, mask + row * es, 0, 1, W);
        }
}

/* run_fwd's work after the packing, on the region's threads (orphaned worksharing): the
   bias padded to whole vectors, then the items (tile, channel part) of every image. */
static void fwd_items(const fc_conv_desc *d, const iplan *p, const char *x, const char *wt, const char *bias,
                      char *bias_pad, const int64_t *off, char *y, char *thread0, int64_t items, int skip, int relu,
                      const char *mask)
{
    const size_t es = fc_elem_size(d->dtype);
    const int64_t tgroups = d->groups / p->G, lanes = p->kv * p->kr->vl;
#pragma omp single
    if (bias) { /* padded to whole vectors: the kernels load it as vectors; lane order */
        memset(bias_pad, 0, p->bias_bytes);
        for (int64_t gt = 0; gt < tgroups; gt++)
            for (int64_t j = 0; j < lanes && j / p->G < p->kg; j++)
                memcpy(bias_pad + (size_t)(gt * lanes + j) * es,
                       bias + (size_t)((gt * p->G + j % p->G) * p->kg + j / p->G) * es, es);
    }
    char *band = thread0 + (size_t)THREAD_ID() * p->per_thread;
    align_memo memo = {NULL, 0, 0, 0};
    const int64_t *off_ip = offsets_in_place(p, off);
    const int cols = edge_columns(d, p, skip);
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; it++) {
        const int64_t part = it % p->cparts, tile = it / p->cparts; /* channel blocks of a tile */
        const int64_t n = tile / (tgroups * p->tiles), gt = (tile / p->tiles) % tgroups, t = tile % p->tiles;
        const int64_t g = gt * p->G; /* the tile's first group */
        const int64_t i0 = t * p->rows, rows = fc_min64(p->rows, d->oh - i0);
        const int64_t cb0 = part * p->cb / p->cparts, cb1 = (part + 1) * p->cb / p->cparts;
        const char *x_g = x + (size_t)((n * d->c_in + g * p->cg) * d->h * d->w) * es;
        /* the image read in place (band_in_place), or the tile's band copied */
        const int in_place = p->in_place == BAND_IN_PLACE ||
                             (p->in_place == BAND_IN_PLACE_SKIPPING && skip &&
                              (d->ow % p->kr->mr == 0 || tile_rows_aligned(&memo, d, p, i0, rows, skip, cols)));
        if (!in_place)
            copy_band(d, p, x_g, i0, rows, 0, p->cg, band);
        const char *wg = wt + (size_t)(gt * lanes * p->K) * es;
        const char *bg = bias ? bias_pad + (size_t)(gt * lanes) * es : NULL;
        const size_t y_off = (size_t)(((n * d->c_out + g * p->kg) * d->oh + i0) * d->ow) * es;
        const char *tile_band = in_place ? x_g + (size_t)(i0 * d->w) * es : band;
        fwd_tile(d, p, wg, bg, in_place ? off_ip : off, tile_band, in_place ? d->w : p->wp, in_place ? x_g : NULL,
                 y + y_off, d->oh * d->ow, i0, rows, cb0, cb1, skip, relu, &memo);
        if (mask) { /* the channels of blocks [cb0, cb1) */
            int64_t c0, c1;
            block_channels(p, cb0, cb1, &c0, &c1);
            const size_t m_off = y_off + (size_t)(c0 * d->oh * d->ow) * es;
            fc_relu_mask_rows(d->dtype, y + m_off, mask + m_off, d->oh * d->ow, c1 - c0, rows * d->ow);
        }
    }
}

/* The forward of problem d; tap_of (non-NULL): d is the phase problem of a unit-stride input
   gradient, w that layer's weight of w_kk taps a filter (pack_wt's flip); relu: the post-op,
   in the kernels' store; mask (nullable, y's layout): y = mask > 0 ? y : 0 on each tile once
   stored, in cache (an input gradient through a ReLU whose output is mask). decline: where
   the packing finds a NaN or inf weight, compute nothing and return 1 (an input gradient,
   bwd_data_checked); else 0. */
static int run_fwd(const fc_conv_desc *d, const void *x_, const void *w_, const int64_t *tap_of, int64_t w_kk,
                   const void *bias_, int relu, const void *mask, void *y_, void *ws, int decline)
{
    iplan p;
    make_plan(d, FC_FWD, &p);
    p.tap_of = tap_of;
    if (tap_of)
        p.w_kk = w_kk;
    int64_t *off;
    char *wt, *thread0;
    carve(&p, ws, &off, &wt, &thread0);
    char *bias_pad = wt + p.apack_bytes;
    const char *x = (const char *)x_, *bias = (const char *)bias_;
    char *y = (char *)y_;
    const int64_t tgroups = d->groups / p.G; /* tiles of G groups across the channels */
    const int64_t items = d->n * tgroups * p.tiles * p.cparts;
    build_offsets(d, &p, 1, p.in_place == BAND_IN_PLACE, off);
    if (p.in_place == BAND_IN_PLACE_SKIPPING)
        build_offsets(d, &p, 1, 1, (int64_t *)offsets_in_place(&p, off));
    /* skip (fwd_tile): leave out the taps that read only padding rows, where the weights are
       finite (then those taps add exact zeros). The packing finds out; with a NaN or inf
       weight the forward computes every tap (0 * inf is NaN, as the definition has it). A
       bwd_data problem with such weights declines (its padding taps have no term in the
       definition, so computing them is not exact either). */
    int skip = 1;

#pragma omp parallel num_threads(p.nt)
    {
#pragma omp for schedule(static) reduction(&& : skip)
        for (int64_t gb = 0; gb < tgroups * p.cb; gb++)
            skip = pack_block(d->dtype, &p, w_, tap_of != NULL, gb / p.cb, gb % p.cb, wt) && skip;
        /* (the loop's barrier: every thread sees the reduced skip and takes the same way) */
        if (skip || !decline)
            fwd_items(d, &p, x, wt, bias, bias_pad, off, y, thread0, items, skip, relu, (const char *)mask);
    }
    return decline && !skip;
}

static void implicit_fwd(const fc_conv_desc *d, const void *x, const void *w, const void *bias, void *y, void *ws)
{
    run_fwd(d, x, w, NULL, 0, bias, 0, NULL, y, ws, 0);
}

static void implicit_fwd_post(const fc_conv_desc *d, const void *x, const void *w, const void *bias, int post,
                              void *y, void *ws)
{
    run_fwd(d, x, w, NULL, 0, bias, post == FC_POST_RELU, NULL, y, ws, 0);
}

/* Channel block cb of tile gt of every phase's W^T (wt[q]: phase q's, laid out as pack_block
   lays one problem's) in one pass over the weights: each weight tap is in one phase, so a
   lane block's runs (one output channel's taps) are read and transposed once, each element
   stored to its phase's row (dstep: that phase's row step per channel). Packed phase by
   phase, the weights were read and transposed once per phase: 7 % of a 256 -> 512 stride-2
   layer's input gradient at batch 8 (4 phases of its 4.7 MB of weights). Kernels of more
   taps than PACK_MAX_TAPS go phase by phase (pack_block). Whether the weights read are all
   finite. */
static int pack_phases_block(int dtype, const phase_set *S, char *const *wt, const void *w, int64_t gt, int64_t cb)
{
    const iplan *p0 = &S->p[0];
    const size_t es = fc_elem_size(dtype);
    const int64_t vl = p0->kr->vl, span = p0->w_kk;
    int finite = 1;
    if (span > PACK_MAX_TAPS) {
        for (int q = 0; q < S->n; q++)
            finite &= pack_block(dtype, &S->p[q], w, 1, gt, cb, wt[q]);
        return finite;
    }
    int64_t v0, nv;
    block_vectors(p0, cb, &v0, &nv);
    const int64_t c0 = v0 * vl, width = nv * vl;
    char *base = wt[0] + (size_t)((gt * p0->kv * vl + c0) * p0->K) * es; /* phase 0's block */
    int64_t drow[PACK_MAX_TAPS], dstep[PACK_MAX_TAPS];
    for (int64_t e = 0; e < span; e++)
        drow[e] = -1, dstep[e] = 0;
    for (int q = 0; q < S->n; q++) { /* as wt_tables (flip), relative to phase 0's block */
        const iplan *p = &S->p[q];
        const int64_t rel = (int64_t)((wt[q] + (size_t)((gt * p->kv * vl + c0) * p->K) * es) - base) / (int64_t)es;
        for (int64_t t = 0; t < p->KK; t++) {
            drow[p->tap_of[t]] = rel + flip_row(p, t, width);
            dstep[p->tap_of[t]] = p->kw * width;
        }
    }
    const void *f[16];
    for (int64_t j0 = 0; j0 < width; j0 += vl) {
        lane_filters(p0, (const char *)w, es, 1, gt, c0, j0, f);
        finite &= p0->kr->gather_wt(f, span, p0->cg, p0->kg * span, base + (size_t)j0 * es, dstep, drow);
    }
    return finite;
}

/* run_phases' work after the packing, on the region's threads (orphaned worksharing): the
   items (image, tile of groups, tile of phase rows), each phase's forward into its column
   phase's slot, merged into gx rows. */
static void phase_items(const fc_conv_desc *d, const phase_set *S, const char *gy, char *const *wt,
                        int64_t *const *off, char *gx, char *thread0, int64_t items, const char *mask)
{
    const size_t es = fc_elem_size(d->dtype);
    const iplan *p0 = &S->p[0];
    const int64_t tgroups = d->groups / p0->G, lanes = p0->kv * p0->kr->vl;
    char *band = thread0 + (size_t)THREAD_ID() * S->per_thread;
    align_memo memo[MAX_PHASES] = {{NULL, 0, 0, 0}}; /* one per phase */
    char *slot[MAX_PHASES];
    int64_t ow[MAX_PHASES];
    for (int64_t b = 0; b < d->stride_w; b++) {
        slot[b] = band + S->band + (size_t)b * S->slot;
        ow[b] = (d->w - b + d->stride_w - 1) / d->stride_w;
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; it++) {
        const int64_t n = it / (tgroups * S->tiles), gt = (it / S->tiles) % tgroups, i0 = it % S->tiles * S->rows;
        const int64_t g = gt * p0->G; /* the tile's first group */
        for (int q = 0; q < S->n;) { /* the phases of one row phase a, then their rows merged */
            const int64_t a = S->a[q], oh = S->t[q].oh;
            int q1 = q;
            while (q1 < S->n && S->a[q1] == a)
                q1++;
            if (i0 >= oh) {
                q = q1;
                continue;
            }
            const int64_t rows = fc_min64(S->rows, oh - i0), count = p0->G * p0->kg;
            for (int64_t b = 0, r = q; b < d->stride_w; b++) {
                if (r < q1 && S->b[r] == b) {
                    const fc_conv_desc *t = &S->t[r];
                    const iplan *p = &S->p[r];
                    copy_band(t, p, gy + (size_t)((n * t->c_in + g * p->cg) * t->h * t->w) * es, i0, rows, 0,
                              p->cg, band);
                    /* skip = 1: with a non-finite weight run_phases declines */
                    fwd_tile(t, p, wt[r] + (size_t)(gt * lanes * p->K) * es, NULL, off[r], band, p->wp, NULL, slot[b],
                             rows * t->ow, i0, rows, 0, p->cb, 1, 0, &memo[r]);
                    r++;
                } else { /* no tap reaches this column phase */
                    memset(slot[b], 0, (size_t)(count * rows * ow[b]) * es);
                }
            }
            merge_rows(d, p0->kr, slot, ow, a, gx, n, g * p0->kg, count, i0, rows, mask);
            q = q1;
        }
    }
}

/* A strided input gradient: every phase with taps (plan_phases) in one parallel region, work
   items of (image, tile of groups, tile of phase rows) running each phase's forward on their
   rows into a per-thread tile per column phase, merged into whole gx rows (merge_rows); the
   phases no tap reaches are zeroed (after, for row phases none reaches at all). Returns 1,
   having written nothing of gx, where the packing finds a NaN or inf weight
   (bwd_data_checked). */
static int run_phases(const fc_conv_desc *d, const void *gy_, const void *w_, const void *mask, void *gx_,
                      void *ws)
{
    phase_set S;
    plan_phases(d, &S);
    const size_t es = fc_elem_size(d->dtype);
    const char *gy = (const char *)gy_;
    char *gx = (char *)gx_, *cur = (char *)ws;
    int64_t *off[MAX_PHASES];
    char *wt[MAX_PHASES];
    for (int q = 0; q < S.n; q++, cur += tap_map_bytes(d)) {
        phase_problem(d, S.a[q], S.b[q], &S.t[q], (int64_t *)cur);
        S.p[q].tap_of = (const int64_t *)cur;
        S.p[q].w_kk = d->kh * d->kw;
    }
    for (int q = 0; q < S.n; q++) {
        off[q] = (int64_t *)cur;
        wt[q] = cur + S.p[q].off_bytes;
        cur += S.shared[q];
        build_offsets(&S.t[q], &S.p[q], 1, 0, off[q]);
    }
    char *thread0 = cur;
    int finite = 1;
    if (S.n > 0) {
        const iplan *p0 = &S.p[0];
        const int64_t tgroups = d->groups / p0->G, items = d->n * tgroups * S.tiles;
#pragma omp parallel num_threads(p0->nt)
        {
            const int64_t cbs = p0->cb; /* channel blocks, the same in every phase */
#pragma omp for schedule(dynamic, 1) reduction(&& : finite)
            for (int64_t gc = 0; gc < tgroups * cbs; gc++) /* the phases' W^T, block by block */
                finite = pack_phases_block(d->dtype, &S, wt, w_, gc / cbs, gc % cbs) && finite;
            /* (the loop's barrier: every thread sees the reduced flag) a NaN or inf weight:
               decline, with nothing of gx written */
            if (finite)
                phase_items(d, &S, gy, wt, off, gx, thread0, items, (const char *)mask);
        }
        if (!finite)
            return 1;
    }
    /* rows of a row phase no tap reaches: zero (merge_rows writes every other row, zeros in
       the column phases no tap reaches) */
    for (int64_t a = 0, q = 0; a < d->stride_h; a++) {
        if (q < S.n && S.a[q] == a) {
            while (q < S.n && S.a[q] == a)
                q++;
            continue;
        }
#pragma omp parallel for num_threads(fc_team_size(d)) schedule(static)
        for (int64_t r = 0; r < d->n * d->c_in; r++)
            for (int64_t i = a; i < d->h; i += d->stride_h)
                memset(gx + (size_t)((r * d->h + i) * d->w) * es, 0, (size_t)d->w * es);
    }
    return 0;
}

/* The input gradient (through the ReLU whose output is relu_out, unless NULL) as forwards of
   grad_y (phase_problem): for unit strides the one phase, written straight into gx;
   strided, run_phases. FC_DECLINED, having computed nothing, where w holds a NaN or inf
   (found by the packing; see the table entry). */
static int implicit_bwd_data_checked(const fc_conv_desc *d, const void *gy, const void *w, const void *relu_out,
                                     void *gx, void *ws)
{
    int declined;
    if (strided(d)) {
        declined = run_phases(d, gy, w, relu_out, gx, ws);
    } else {
        fc_conv_desc t;
        phase_problem(d, 0, 0, &t, (int64_t *)ws);
        declined = run_fwd(&t, gy, w, (const int64_t *)ws, d->kh * d->kw, NULL, 0, relu_out, gx,
                           (char *)ws + tap_map_bytes(d), 1);
    }
    return declined ? FC_DECLINED : 0;
}

/* ---- backward weights ----------------------------------------------------- */

/* Channels per store item of the weight gradient: whole register blocks of the transpose. */
#define STORE_DW_CHANNELS 16

#define SUM_BLOCK 4096 /* elements a work item of the chunk reduction adds */

static void implicit_bwd_weights(const fc_conv_desc *d, const void *gy_, const void *x_, void *gw_, void *gb_,
                             void *ws)
{
    iplan p;
    make_plan(d, FC_BWD_WEIGHTS, &p);
    const size_t es = fc_elem_size(d->dtype);
    int64_t *off;
    char *dwt, *thread0;
    carve(&p, ws, &off, &dwt, &thread0);
    const char *gy = (const char *)gy_, *x = (const char *)x_;
    char *gw = (char *)gw_, *gb = (char *)gb_;
    const int64_t MR = p.kr->mr, NR = p.wnr, G = p.G, tgroups = d->groups / G;
    const int64_t rblocks = p.mp / MR, cblocks = p.ldb / NR, units = tgroups * rblocks * cblocks;
    const int64_t plane = d->oh * d->ow;
    const fc_implicit_wgrad_fn wgrad = p.wgrad;
    /* G > 1: lane L of a tile is channel L / G of its group L % G (grad_y row lane_row[L] of
       the tile's channels), and the bias gradient is summed in lane order into each chunk's
       gbl (after its dW^T) */
    const size_t gbl_off = fc_align_up((size_t)(tgroups * p.mp * p.ldb) * es);
    char *gbl = dwt + gbl_off;
    int64_t lane_row[64];
    for (int64_t L = 0; G > 1 && L < p.ldb; L++)
        lane_row[L] = L % G * p.kg + L / G;
    build_offsets(d, &p, 0, 0, off);
    /* work items: (chunk of images, range of units); R ranges a chunk, so that the items,
       P*R = lcm(P, nt), split evenly over the team (P = 1: one range per thread) */
    const int64_t P = p.chunks;
    int64_t gcd = P;
    for (int64_t b = p.nt; b;) {
        const int64_t r = gcd % b;
        gcd = b;
        b = r;
    }
    const int64_t R = fc_max64(1, fc_min64(units, p.nt / gcd));
    const int direct_out = p.direct_out; /* (see make_plan_with) */

#pragma omp parallel num_threads(p.nt)
    {
        char *band = thread0 + (size_t)THREAD_ID() * p.per_thread, *bt = band + (size_t)p.nb * p.band_bytes;
#pragma omp for schedule(dynamic, 1)
        for (int64_t item = 0; item < P * R; item++) {
            const int64_t c = item / R, r = item % R;
            const int64_t n0 = d->n * c / P, n1 = d->n * (c + 1) / P;
            /* this item's units: a contiguous range */
            const int64_t u0 = units * r / R, u1 = units * (r + 1) / R;
            char *dwt_c = dwt + (size_t)c * p.chunk_bytes;
            for (int64_t n = n0; n < n1; n += p.nb) {
                const int64_t nb = fc_min64(p.nb, n1 - n); /* images [n, n + nb): nb > 1 only where tiles = 1 */
                for (int64_t t = 0; t < p.tiles; t++) {
                    const int64_t i0 = t * p.rows, rows = fc_min64(p.rows, d->oh - i0);
                    const int first = n == n0 && t == 0, last = direct_out && n + nb == n1 && t == p.tiles - 1;
                    for (int64_t u = u0; u < u1;) {
                        /* the units of one tile of groups: copy what they read, then run them */
                        const int64_t gt = u / (rblocks * cblocks), g = gt * G;
                        const int64_t ue = fc_min64(u1, (gt + 1) * rblocks * cblocks);
                        const int64_t k_lo = (u % (rblocks * cblocks)) / cblocks * MR;
                        const int64_t k_hi = fc_min64(p.K, ((ue - 1) % (rblocks * cblocks) / cblocks + 1) * MR);
                        for (int64_t b = 0; b < nb; b++) {
                            const char *x_g = x + (size_t)(((n + b) * d->c_in + g * p.cg) * d->h * d->w) * es;
                            const char *gy_g = gy + (size_t)(((n + b) * d->c_out + g * p.kg) * plane) * es;
                            /* image b's band, and its bt rows after image b - 1's */
                            char *band_b = band + (size_t)b * p.band_bytes;
                            char *bt_b = bt + (size_t)(b * rows * d->ow * p.ldb) * es;
                            copy_band(d, &p, x_g, i0, rows, k_lo / p.KK, (k_hi - 1) / p.KK + 1, band_b);
                            /* bt[(r*OW + j)*ldb + k] = grad_y[g*kg + k, i0 + r, j] (G > 1: lane order) */
                            if (G > 1)
                                p.kr->pack_bt_rows(p.ldb, rows * d->ow, gy_g + (size_t)(i0 * d->ow) * es, plane,
                                                   lane_row, bt_b, p.ldb);
                            else
                                p.kr->pack_bt(p.kg, rows * d->ow, gy_g + (size_t)(i0 * d->ow) * es, plane, bt_b,
                                              p.ldb);
                        }
                        if (gb) { /* the bias from the tile in L2, not a second pass over grad_y */
                            char *gb_g = G > 1    ? dwt_c + gbl_off + (size_t)(gt * p.ldb) * es
                                         : c == 0 ? gb + (size_t)(g * p.kg) * es
                                                  : dwt_c + gbl_off + (size_t)(g * p.kg) * es;
                            fc_bias_add_bt_share(d->dtype, bt, nb * rows * d->ow, p.ldb, G > 1 ? p.ldb : p.kg, units,
                                                 (int)R, (int)r, gt * rblocks * cblocks, (gt + 1) * rblocks * cblocks,
                                                 gb_g, first);
                        }
                        /* unit u's dW^T tile: MR rows of NR lanes */
#define OUT_TILE(u) (gw + (size_t)((g * p.kg + (u) % cblocks * NR) * p.K + (u) / cblocks % rblocks * MR) * es)
#define UNIT_TILE(u) (dwt_c + (size_t)((gt * p.mp + (u) / cblocks % rblocks * MR) * p.ldb + (u) % cblocks * NR) * es)
                        for (; u < ue; u++) {
                            const int64_t rb = (u / cblocks) % rblocks, cb = u % cblocks;
                            const void *a[8];
                            for (int64_t i = 0; i < MR; i++) {
                                /* rows past K (dropped): the last tap's row, which this item has copied */
                                const int64_t k = rb * MR + i < p.K ? rb * MR + i : p.K - 1;
                                a[i] = band + (size_t)off[k] * es;
                            }
                            char *cc = UNIT_TILE(u);
                            /* The next unit's dW^T tile, for writing: dW^T outgrows L2 on
                               late layers (9.4 MB for 512 -> 512 channels), and a 7x7 image's
                               49 pixels give a kernel call too few FMAs to hide the read of
                               its tile (12 % of that weight gradient, 1 thread). */
                            if (u + 1 < ue && !(last && first)) {
                                const char *c1 = UNIT_TILE(u + 1);
                                for (int64_t i = 0; i < MR; i++)
                                    for (size_t o = 0; o < (size_t)NR * es; o += 64)
                                        __builtin_prefetch(c1 + (size_t)(i * p.ldb) * es + o, 1);
                            }
                            /* grad_w rows of this unit's channels, from its first tap (last only) */
                            char *out = last ? OUT_TILE(u) : NULL;
                            wgrad(rows, d->ow, a, p.wp * G, nb, (int64_t)(p.band_bytes / es),
                                  bt + (size_t)(cb * NR) * es, p.ldb, cc, p.ldb, !first, out, p.K,
                                  fc_min64(MR, p.K - rb * MR), fc_min64(NR, p.kg - cb * NR));
                        }
#undef UNIT_TILE
#undef OUT_TILE
                    }
                }
            }
        }
        /* (implicit barrier) the other chunks' dW^T and bias gradients added to chunk 0's
           (G = 1: to grad_b), in chunk order, split over blocks of elements */
        if (P > 1) {
            const int64_t nd = tgroups * p.mp * p.ldb, nb = gb ? (G > 1 ? tgroups * p.ldb : d->c_out) : 0;
            const int64_t blocks = fc_ceil_div(nd + nb, SUM_BLOCK);
#pragma omp for schedule(static)
            for (int64_t blk = 0; blk < blocks; blk++) {
                const int64_t e0 = blk * SUM_BLOCK, e1 = fc_min64(nd + nb, e0 + SUM_BLOCK);
                for (int64_t c = 1; c < P; c++) {
                    const char *src = dwt + (size_t)c * p.chunk_bytes;
                    if (e0 < nd)
                        fc_add_elems(d->dtype, dwt, src, e0, fc_min64(e1, nd));
                    if (e1 > nd) /* the bias part: chunk 0's is gbl, or grad_b itself */
                        fc_add_elems(d->dtype, G > 1 ? gbl : gb, src + gbl_off, fc_max64(e0, nd) - nd, e1 - nd);
                }
            }
        }
        /* (implicit barrier of the loop before) */
        if (G > 1) {
            /* grad_w[(gt*G + L % G)*kg + L / G, k] = dwt[gt][k][L], lane by lane (a tile's
               dW^T is K x G*kg elements: small beside the pixels' work) */
#pragma omp for schedule(static)
            for (int64_t s = 0; s < tgroups * p.ldb; s++) {
                const int64_t gt = s / p.ldb, L = s % p.ldb;
                const size_t row = (size_t)((gt * G + L % G) * p.kg + L / G);
                const char *src = dwt + (size_t)(gt * p.mp * p.ldb + L) * es;
                for (int64_t k = 0; k < p.K; k++)
                    memcpy(gw + (row * (size_t)p.K + (size_t)k) * es, src + (size_t)(k * p.ldb) * es, es);
                if (gb)
                    memcpy(gb + row * es, gbl + (size_t)(gt * p.ldb + L) * es, es);
            }
        } else if (!direct_out) {
            /* grad_w[g*kg + i, k] = dwt[g][k][i]: the transpose pack_bt does, in register blocks
               (element by element, its strided reads took 3 % of a VGG-sized weight gradient) */
            const int64_t sblocks = fc_ceil_div(p.kg, STORE_DW_CHANNELS);
#pragma omp for schedule(static)
            for (int64_t s = 0; s < d->groups * sblocks; s++) {
                const int64_t g = s / sblocks, i0 = s % sblocks * STORE_DW_CHANNELS;
                const int64_t width = fc_min64(STORE_DW_CHANNELS, p.kg - i0);
                p.kr->pack_bt(p.K, width, dwt + (size_t)(g * p.mp * p.ldb + i0) * es, p.ldb,
                              gw + (size_t)((g * p.kg + i0) * p.K) * es, p.K);
            }
        }
    }
}

/* ---- the table entry ------------------------------------------------------ */

static const char *implicit_rejects(const fc_conv_desc *d, int pass)
{
    if (fc_implicit_kernels_for(d->dtype) == NULL)
        return "implicit_gemm needs AVX2 or AVX-512 (not active on this CPU or disabled by FASTCONV_ISA)";
    return implicit_accepts(d, pass) ? NULL
                                     : "implicit_gemm does not take this geometry (a 1x1 unpadded weight "
                                       "gradient, strides longer than the kernel, padding that dwarfs the "
                                       "output, or a band too large)";
}

const fc_conv_impl fc_impl_implicit_gemm = {
    FC_ALGO_IMPLICIT_GEMM, "implicit_gemm", "im2col", 0, {0, FC_OPND_1, 0},
    implicit_rejects, implicit_workspace_size, implicit_fwd, NULL, implicit_bwd_weights,
    implicit_fwd_post, NULL, implicit_bwd_data_checked,
};
