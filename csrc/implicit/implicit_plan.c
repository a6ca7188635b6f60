/* implicit_plan.c: the plan of an implicit-GEMM call (implicit_driver.h's iplan): which
   micro-kernels, how many output rows a tile, how many groups a tile, the channel blocks,
   the weight gradient's batch chunks and images a call, whether the forward reads the
   image in place, and the workspace these take. Sizes only, never the thread count, where
   they fix a summation order */
#include "implicit_driver.h"

#include "cpu_info.h"

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
            if (implicit_phase_problem(d, a, b, &t, NULL) && t.kh * t.kw > taps) {
                most = t;
                taps = t.kh * t.kw;
            }
    return taps < 0 ? 1 : (int)group_pack(kr, &most, &nv);
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

int fc_implicit_wgrad_images(const fc_conv_desc *d)
{
    if (fc_implicit_kernels_for(d->dtype) == NULL)
        return 0;
    iplan p;
    implicit_make_plan(d, FC_BWD_WEIGHTS, &p);
    return (int)p.nb;
}

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
    const int cols = implicit_edge_columns(d, p, 1);
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
void implicit_make_plan_with(const fc_conv_desc *d, int pass, int64_t G, int64_t max_rows, iplan *p)
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

void implicit_make_plan(const fc_conv_desc *d, int pass, iplan *p)
{
    implicit_make_plan_with(d, pass, 0, 0, p);
}

int fc_implicit_band_in_place(const fc_conv_desc *d, int pass)
{
    /* (a strided input gradient runs its phases on copied bands: run_phases) */
    if (fc_implicit_kernels_for(d->dtype) == NULL || pass == FC_BWD_WEIGHTS || (pass == FC_BWD_DATA && strided(d)))
        return BAND_COPIED;
    fc_conv_desc t = *d;
    if (pass == FC_BWD_DATA) /* the one phase of a unit stride: the transposed forward */
        implicit_phase_problem(d, 0, 0, &t, NULL);
    iplan p;
    implicit_make_plan(&t, FC_FWD, &p);
    return p.in_place;
}

size_t implicit_plan_bytes(const iplan *p)
{
    return p->off_bytes + p->apack_bytes + p->bias_bytes + p->dwt_bytes + fc_thread_slots_bytes(p->per_thread, p->nt);
}

/* Workspace: offset table | shared block (packed W^T and padded bias for fwd; for
   bwd_weights each chunk's dW^T and bias) | one tile per thread, fc_thread_slot_stride apart. */
void implicit_carve(const iplan *p, void *ws, int64_t **off, char **shared, char **thread0)
{
    *off = (int64_t *)ws;
    *shared = (char *)ws + p->off_bytes;
    *thread0 = *shared + p->apack_bytes + p->bias_bytes + p->dwt_bytes;
}

/* Which edge columns' padding taps a tile's groups may leave out (fwd[e]): bit 0, the
   left (a row's first pixel reads it through each first kernel column), bit 1, the right (a
   row's last pixel, through each last column); bits 2-3, the kind (fwd_nv): 1 where the
   second pixel from each such edge reads padding through the edge column and the edge
   pixel through the middle one too (padding 2, as in an unpadded layer's input gradient),
   2 where only the first holds (padding 2 at dilation 2), else 0 (always 0 for G groups a
   tile: fwd_grp has kind 0 only). For 3-column kernels and finite weights (skip). */
int implicit_edge_columns(const fc_conv_desc *d, const iplan *p, int skip)
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
