/*
 * implicit.h: micro-kernels of the implicit-GEMM convolution (conv_implicit.c).
 *
 * A unit-stride convolution (a strided forward reads the band at the stride's steps, the
 * strided weight gradient goes over phase planes, see conv_implicit.c) over an image band
 * whose rows are padded to width Wp is a
 * GEMM whose column matrix never needs to exist: with output column q = r*Wp + j of the
 * band, the lowered matrix is
 *     B(k, q) = band[off[k] + q],   off[(c*KH + l)*KW + m] = c*plane + l*dh*Wp + m*dw,
 * so each row of B is a contiguous run of the band, shifted by a per-row offset. The
 * micro-kernels below read the band in place through that offset table: no im2col pass, no
 * B packing; the band, a few rows of a few channels, stays in L1/L2.
 *
 * fwd: MR (<= 8) output pixels x v vectors (v*vl channels, v*vl <= NR). For pixel t with band
 *         pointer px[t] (= band + its q) and channel j: sum over p < kc of
 *         px[t][off[p]] * wt[p*v*vl + j], wt = W^T packed for those channels (64-byte
 *         aligned), + bias[j] when bias is not NULL (v*vl elements), then ReLU'd when relu
 *         (x > 0 or NaN ? x : +0, as fc_relu_fwd). The tile is transposed in registers and stored as
 *         y[j*y_plane + t] for t < npx, j < nch: MR consecutive output pixels per channel.
 *         Pixels are broadcast, weights loaded as aligned vectors: no load splits a cache
 *         line, and gap columns (j >= OW of a band row) are never computed.
 *         fwd[e][v][k-1] is the kernel for a group of k <= MR pixels, computing only those k (k < MR: a row's
 *         or an image's last group; see fwd_tile's row-aligned groups). e > 0, for a kernel 3
 *         columns wide (taps in threes, one per column): e & 1, the first pixel leaves out
 *         each first column's tap; e & 2, the last pixel each last column's (the taps that
 *         read the left or right padding when the group starts or ends a row); e >> 2, the
 *         kind: 1, padding 2 (the second pixel from each edge leaves out the edge column's
 *         tap, the edge pixel also the middle one's); 2, padding 2 at dilation 2 (the
 *         second pixel from each edge leaves out the edge column's tap). e = 4, 8: unused.
 * wgrad:  C[0:MR, 0:NR] (row stride rsc, + C when accumulate) = sum over b < nimg, t < rows,
 *         j < ow of
 *             a_i[b*a_is + t*a_rs + j] * bt[((b*rows + t)*ow + j)*ldb + 0:NR]        (i < MR)
 *         a_i = MR band row pointers (one per weight tap k) of the first of nimg images whose
 *         bands lie a_is elements apart; bt = grad_y transposed, one row of ldb >= NR elements
 *         per output pixel, the images' rows one after another. The sum runs over the images
 *         and pixels in order.
 *         It touches the full MR x NR tile of C: callers pad C, the taps and bt.
 *         out non-NULL (G = 1 only): C is not written; the sum (+ C when accumulate) goes
 *         transposed to out[c*ldo + i] for taps i < nk and channels c < nch (grad_w itself).
 * wgrad_1v: the same, MR x vl (one vector of channels), for kg <= vl.
 * wgrad_grp[lg][v]: wgrad for G = 2^lg groups a tile (v*vl = G*kg lanes, channel i of group g
 *         in lane i*G + g): a_i address chunks of G elements of the interleaved band, broadcast
 *         whole; bt holds the lanes in that order (pack_bt_rows).
 * gather_wt: W^T rows for the forward's packing, vl filters (lanes) at a time by register
 *         transposes: dst[q*dstep[e] + drow[e] + j] = f[j][q*fstep + e] for runs q < runs and
 *         elements e < span with drow[e] >= 0 (see implicit_pack_wt.c, pack_wt); returns
 *         whether all the elements read are finite.
 * fwd_grp[lg][v][e][k-1]: fwd for G = 2^lg groups at once, v*vl = G*kg lanes (grouped layers
 *         whose kg channels a group fill less than the tile). The band holds the G groups'
 *         values of each (channel, position) side by side, so px and off address G-element
 *         chunks, and one broadcast of a chunk feeds lane L = i*G + g with channel i of group g
 *         (wt and bias packed in that lane order). Lane L's first npx pixels are stored at
 *         y + lane_rows[L] (all v*vl lanes are real channels). k pixels computed and e the
 *         edge case, as fwd's (kind 0 only: e < 4).
 */
#ifndef FASTCONV_IMPLICIT_H
#define FASTCONV_IMPLICIT_H

#include <stdint.h>

typedef void (*fc_implicit_wgrad_fn)(int64_t rows, int64_t ow, const void *const *a, int64_t a_rs, int64_t nimg,
                                     int64_t a_is, const void *bt, int64_t ldb, void *c, int64_t rsc,
                                     int accumulate, void *out, int64_t ldo, int64_t nk, int64_t nch);

typedef void (*fc_implicit_pack_bt_fn)(int64_t kg, int64_t pixels, const void *src, int64_t lds, void *dst,
                                       int64_t ldb);

typedef void (*fc_implicit_fwd_fn)(int64_t kc, const void *wt, const void *const *px, const int64_t *off,
                                    void *y, int64_t y_plane, int64_t npx, int64_t nch, const void *bias,
                                    int relu);

typedef void (*fc_implicit_fwd_grp_fn)(int64_t kc, const void *wt, const void *const *px, const int64_t *off,
                                       void *y, const int64_t *lane_rows, int64_t npx, const void *bias,
                                       int relu);

typedef void (*fc_implicit_pack_bt_rows_fn)(int64_t lanes, int64_t pixels, const void *src, int64_t lds,
                                           const int64_t *rows, void *dst, int64_t ldb);

typedef void (*fc_implicit_interleave_fn)(void *dst, const void *src, int64_t gstride, int64_t n, int64_t sw,
                                          int64_t G);

typedef void (*fc_implicit_copy_rows_fn)(void *dst, const void *src, int64_t lds, int64_t rows, int64_t lo,
                                         int64_t hi, int64_t wp, int64_t pf);

typedef void (*fc_implicit_copy_rows_grp_fn)(void *dst, int64_t ldd, const void *src, int64_t lds, int64_t sx,
                                             int64_t gstride, int64_t G, int64_t rows, int64_t lo, int64_t hi,
                                             int64_t wp, int64_t pf);

typedef int (*fc_implicit_gather_wt_fn)(const void *const *f, int64_t span, int64_t runs, int64_t fstep, void *dst,
                                        const int64_t *dstep, const int64_t *drow);

typedef struct fc_implicit_kernels {
    int mr, nr, vl;                 /* tiles: MR pixels (fwd) or taps (wgrad) x NR channels */
    const fc_implicit_fwd_fn (*fwd)[4][8]; /* [e][v][k - 1], e < 12: fwd of k pixels, v vectors of vl channels
                                            (v up to NR / vl), e: edge columns' padding taps left out */
    const fc_implicit_fwd_grp_fn (*fwd_grp[4][4])[8]; /* [log2 G][v][e][k - 1]: G = 2 .. vl/2 groups a tile
                                                        (NULL: none), k pixels, edge case e < 4 (as fwd's) */
    fc_implicit_wgrad_fn wgrad;
    fc_implicit_wgrad_fn wgrad_1v;  /* MR x vl: the weight gradient of kg <= vl channels */
    fc_implicit_wgrad_fn wgrad_grp[4][4]; /* [log2 G][v]: wgrad for G groups a tile (as fwd_grp) */
    fc_implicit_pack_bt_fn pack_bt; /* bt for wgrad: bt[q*ldb + k] = src[k*lds + q], zero for k >= kg */
    fc_implicit_pack_bt_rows_fn pack_bt_rows; /* pack_bt from source rows rows[k] (G groups a tile) */
    fc_implicit_interleave_fn interleave; /* band rows of G groups: dst[j*G + g] = src[g*gstride + j*sw], G = 2, 4, 8 */
    fc_implicit_gather_wt_fn gather_wt; /* W^T rows: dst[q*dstep[e] + drow[e] + j] = f[j][q*fstep + e], q < runs,
                                           e < span, drow[e] >= 0, j < vl (f[j] NULL: 0); 1 when all finite */
    fc_implicit_copy_rows_fn copy_rows; /* band rows: dst[r*wp + j] = src[r*lds + j - lo] for lo <= j < hi,
                                           else 0; r < rows; source lines pf bytes ahead prefetched */
    fc_implicit_copy_rows_grp_fn copy_rows_grp; /* copy_rows of G = 2 or 4 groups interleaved: dst[r*ldd + j*G
                                                   + g] = src[g*gstride + r*lds + (j - lo)*sx] (j < wp; 0
                                                   outside [lo, hi); sx = 1 or 2); pf > 0: prefetch; NULL:
                                                   none (per row, interleave) */
} fc_implicit_kernels;

/* The kernels for this dtype on the active ISA, or NULL where there are none (the caller
   then lowers explicitly). */
const fc_implicit_kernels *fc_implicit_kernels_for(int dtype);

#if (defined(__x86_64__) || defined(_M_X64)) && !defined(FC_GEMM_NO_X86_KERNELS)
#define FC_IMPLICIT_HAVE_X86 1
extern const fc_implicit_kernels fc_implicit_f32_8x32__avx512;
extern const fc_implicit_kernels fc_implicit_f64_8x24__avx512;
extern const fc_implicit_kernels fc_implicit_f32_6x16__avx2;
extern const fc_implicit_kernels fc_implicit_f64_6x8__avx2;
#endif

#endif /* FASTCONV_IMPLICIT_H */
