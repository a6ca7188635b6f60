/*
 * conv_choose.c: the preference rule of "auto", kept apart from the table (conv.c), whose
 * entries only say what they can run. Measured on this project's shape table
 * (benchmarks/README.md, docs/architecture.md):
 *
 *   1. depthwise wherever it accepts (groups == C_in), but for the strided input gradient
 *      of a single input channel (strided_single_channel_input_grad: explicit im2col) and a
 *      weight gradient of few taps on direct's pixel-vector kernel (few_taps_pixel_weight_grad:
 *      one input channel, or K <= 27 on rows of whole vectors; direct);
 *      then a forward of few taps a pixel (K = C_in * kh * kw <= FC_PIXELS_MAX_K, not 1x1)
 *      that the direct entry runs on its pixel-vector kernel (float32 AVX-512 or AVX2, unit
 *      stride, filters in blocks of 8: fc_direct_pixels): direct (first layers; measured
 *      below);
 *   2. winograd where it accepts, the precision setting allows a reduced-accuracy
 *      algorithm, and its own rule says it is faster (fc_winograd_preferred);
 *   3. the GEMM family (1x1, implicit, explicit im2col; the first that accepts) once its
 *      dimensions are large enough: Kg >= 8 and K >= 16, or K >= 8 on the implicit path
 *      (no lowering pass to amortise: mnist_c1's forward, one input channel, 3x3, 32
 *      outputs, takes 0.53 ms against the direct kernels' 0.63 ms at 1 thread);
 *      Within the family, the first entry that accepts (1x1, implicit, explicit; implicit takes
 *      strided input gradients too, one forward per stride phase: Zen 4, f32, 8 images, 3x3
 *      stride 2, implicit / explicit ms at 1 and 2 threads: 128 -> 256 at 56x56 36.1 / 39.5,
 *      18.2 / 19.7; 64 -> 128 at 56x56 10.3 / 11.5, 4.92 / 5.51; 128 -> 256 at 28x28 9.98 /
 *      10.7, 5.24 / 5.64; 256 -> 512 at 14x14 12.2 / 13.3, 6.44 / 6.56 (2 threads: +-10 %
 *      between repeated runs on this VM, implicit 0.95-1.14x explicit); 256 at
 *      28x28 in 32 groups 1.77 / 3.39, 0.95 / 1.81; 32 at 28x28 0.47 / 0.62, 0.25 / 0.32),
 *      except that
 *      a forward (or input-gradient) problem whose lowered K = C_in/groups * kh * kw is
 *      below FC_IMPLICIT_MIN_K takes explicit im2col: the implicit kernel's per-tile
 *      epilogue (an 8x32 register transpose) outweighs its few FMAs. Measured on Zen 5,
 *      128x3x32x32 -> 32, 3x3 "same" (CIFAR's first layer, K = 27): implicit 4.58 ms,
 *      explicit 2.22 (1 thread); C_in = 4..7 (K = 36..63) explicit 1.2-2.4x faster; K = 72
 *      implicit 1.16x faster (1.05x at 2 threads), K >= 144 implicit 1.5x. The weight
 *      gradient keeps implicit (1.0-1.8x faster at every K measured).
 *      An input gradient with few input channels per group (cg, the channels the transposed
 *      problem writes) fills at most half of the implicit kernel's one channel vector
 *      (2 cg <= its lanes: cg <= 8 in f32 / 4 in f64 on AVX-512), and implicit GEMM then
 *      costs what cg = 16 costs. There explicit im2col (cols = W^T grad_y, a GEMM of
 *      M = cg kh kw rows over the pixels, then col2im) wins when its K = kg >= 24, the
 *      direct kernels below that. Measured on Zen 4 (one thread; 2 threads alike), f32
 *      32 x cg x 32 x 32 -> kg, 3x3 "same": cg = 3, kg = 32: implicit 2.93 ms, explicit
 *      0.97, direct 1.21 (CIFAR's first layer at batch 128: 12.1 -> 5.2 ms); cg = 8, kg = 32:
 *      2.95 / 2.20 / 2.35; cg = 4, kg = 64: 5.84 / 2.33 / 2.69; cg = 8, kg = 16: 1.50 / 1.34 /
 *      1.10; cg = 3, kg = 8: 0.76 / 0.42 / 0.32; groups 8, cg = kg = 8 (before groups were
 *      packed, below): 6.52 / 8.19 / 5.48; cg = 12: implicit 3.01, explicit 3.29. f64 cg = 3,
 *      4 (kg = 32): explicit 1.35-1.45x implicit; cg = 6: implicit 1.10x explicit.
 *      The same half-empty vector in a unit-stride forward (kg = 8 in f32 on AVX-512; fewer
 *      channels never reach the family) runs faster on the direct kernels: 32 x 32 x 32 x 32
 *      -> 8, 3x3 same, implicit 2.95 ms, direct 2.42 (2 threads 1.91 / 1.61); 16 -> 8 1.48 /
 *      1.10; 64 -> 8 5.99 / 5.12; 3 -> 8 0.35 / 0.25 (explicit 0.39); groups 4 of 8 (unpacked)
 *      3.33 / 2.74; 5x5 7.49 / 5.19. At stride 2 direct loses (1.17 / 4.38); f64 kg = 8 fills its
 *      vector and implicit wins (3.40 / 5.10).
 *      Grouped layers of few channels a group (ResNeXt's 4, 8, 16; kg the channels the pass's
 *      kernels write: C_in/groups for bwd_data) whose groups implicit GEMM packs side by side
 *      (fc_implicit_groups_a_tile > 1) take implicit GEMM in every pass, before the rest of this
 *      rule, at any K: the packed tile fills its lanes. Weight gradients, implicit / direct /
 *      explicit ms (Zen 4, f32, 1 thread, 8 images, 3x3): 128 at 56x56 in 32 groups 3.81 / 9.36 /
 *      17.6; 64 at 28x28 in 32 groups 0.35 / 0.94 / 2.69; 256 at 28x28 in 32 groups 2.88 / 9.08 /
 *      8.10. Measured on Zen 4, f32, AVX-512, 1 thread, 8 images, 3x3,
 *      implicit / direct / explicit ms: fwd 256 -> 256 at 28x28, 32 groups (of 8) 3.01 / 4.71;
 *      the same at 14x14 0.71 / 1.20; 128 at 56x56, 32 groups (of 4) 4.33 / 5.14 / 11.9; 64 at
 *      28x28, 32 groups (of 2) 0.32 / 0.81 / 1.76; 256 at 14x14 stride 2, 32 groups 0.55 /
 *      4.30 / 1.25; bwd_data 256 at 28x28 3.05 / 4.75 / 6.73, 128 at 56x56 4.52 / 5.35 / 10.5,
 *      64 -> 128 at 28x28 (cg 2, kg 4) 0.54 / 1.13 / 1.49. AVX2 (FASTCONV_ISA=avx2), implicit /
 *      direct: 256 at 28x28, 32 groups 2.92 / 4.33; 128 at 56x56, 32 groups 3.82 / 4.55 (bwd_data
 *      3.89 / 4.61); f64 64 at 56x56, 16 groups 3.60 / 4.41.
 *      An unpadded 1x1 forward or input gradient of small images (<= 64 pixels), >= 392
 *      pixels in all and (forward) enough work takes implicit GEMM rather than gemm_1x1
 *      (pointwise_prefers_implicit, measured there).
 *   4. else direct (few channels: the GEMM's M or K is tiny).
 */
#include "conv_internal.h"
#include "implicit/implicit.h"
#include "winograd/winograd.h"

/* Lowered K below which the forward passes prefer explicit im2col to implicit GEMM (3.). */
#define FC_IMPLICIT_MIN_K 72
/* A narrow input gradient (3.) takes explicit im2col from this many output channels per
   group (its GEMM's K), direct below. */
#define FC_NARROW_BWD_DATA_MIN_KG 24

static int accepts(const fc_conv_impl *e, const fc_conv_desc *d, int pass)
{
    return e->rejects(d, pass) == NULL;
}

/* An unpadded 1x1 forward or input gradient of small images takes implicit GEMM rather than
   gemm_1x1 where its work is large. gemm_1x1's GEMM puts an image's pixels on its vector
   lanes (N = oh * ow per image): 49 pixels at 7x7 run as 64 (two micro-panels, the second
   through the partial-tile path), so ResNet-50's last stage ran its 1x1 layers at 52-66 % of
   the FMA peak. Implicit GEMM puts the output channels on the lanes (the input channels for
   the input gradient, the transposed forward) and computes exactly the pixels (narrow
   kernels for the last group). Zen 4, f32 AVX-512, gemm_1x1 / implicit ms at 1 and 2 threads:
     forward: 8 x 512 -> 2048 at 7x7 11.1 / 8.6, 5.38 / 4.13; 2048 -> 512 11.1 / 8.7, 5.41 /
     4.27; 32 x 160 -> 960 6.27 / 5.23, 3.28 / 2.94. Below ~128 M multiply-adds the second
     thread gains less on implicit GEMM (its weight packing is a few channel blocks): 8 x 160
     -> 960 1.56 / 1.30 at 1 thread but 0.81 / 0.85 at 2; 1 x 2048 -> 512 1.41 / 1.39, 0.74 /
     0.79. f64 on AVX-512 0.79-0.91x gemm_1x1's time, f32 on AVX2 0.75-0.80x; f64 on AVX2
     (four lanes a vector: 49 pixels as 52) 0.94-1.09x, left out. Few images lose however
     large the layer: W^T is packed once a call for few pixels, and at 2 threads the few
     items split unevenly (1 x 2048 -> 2048 5.84 / 6.63, 2.95 / 3.21; 2 x 2048 -> 1024 5.78 /
     5.36, 2.73 / 4.12; 16 x 2048 -> 512 at 4x4 6.71 / 5.91, 3.41 / 3.87): from 392 pixels in
     all, as the input gradient.
     input gradient (W^T's rows copied from w, pack_wt): 8 x 512 -> 2048 11.7 / 8.8, 5.77 /
     4.38; 2048 -> 512 13.4 / 8.6, 6.66 / 4.24; 8 x 160 -> 960 1.68 / 1.41, 0.82 / 0.76; 960 ->
     160 1.58 / 1.27, 0.81 / 0.68; f64 0.68-0.87x. At batch 1 the copy of W^T is not
     amortised (1 x 512 -> 2048 1.43 / 1.61, f64 1.16-1.19x): taken from 8 images of 7x7
     (392 pixels). Not on AVX2 (f32 0.87-1.07x, f64 1.0-1.8x).
   At 14x14 (196 pixels, 13 vectors for 12.25) and above gemm_1x1 wins or ties: forward 8 x
   256 -> 1024 8.19 / 8.63, 4.46 / 4.92; 8 x 128 -> 512 at 28x28 7.96 / 9.39; input gradients
   0.96-1.02x at 14x14, 1.09-1.23x at 28x28. The rule reads sizes only, never the thread
   count, so that the results do not depend on it. */
#define FC_POINTWISE_IMPLICIT_MAX_PIXELS 64
#define FC_POINTWISE_IMPLICIT_MIN_MACS ((int64_t)128 << 20)
#define FC_POINTWISE_IMPLICIT_MIN_PIXELS 392

static int pointwise_prefers_implicit(const fc_conv_desc *d, int pass)
{
    if (pass == FC_BWD_WEIGHTS || !fc_is_pointwise(d) || d->groups != 1)
        return 0;
    const fc_implicit_kernels *kr = fc_implicit_kernels_for(d->dtype);
    const int64_t pixels = d->oh * d->ow, vector_bytes = kr ? kr->vl * (int64_t)fc_elem_size(d->dtype) : 0;
    if (pixels > FC_POINTWISE_IMPLICIT_MAX_PIXELS || d->n * pixels < FC_POINTWISE_IMPLICIT_MIN_PIXELS ||
        !accepts(&fc_impl_implicit_gemm, d, pass))
        return 0;
    if (pass == FC_FWD)
        return kr->vl >= 8 && d->n * d->c_in * d->c_out * pixels >= FC_POINTWISE_IMPLICIT_MIN_MACS;
    return vector_bytes >= 64;
}

/* A forward of few taps a pixel on the direct entry's pixel-vector kernel (conv_direct.c):
   no lowering pass, no B packing, no tile transpose, which is most of such a layer's time
   on the GEMM paths. Zen 4, f32 AVX-512, 1 thread, 3x3 "same" unless named, pixel-vector /
   the rule's previous choice (explicit im2col below K = 72, implicit GEMM above) ms:
   128 x 3 -> 32 at 32x32 (K = 27, CIFAR's first layer) 2.40-2.45 / 3.42-3.67, 2 threads
   1.18-1.20 / 1.70-1.77; 1 -> 32 (K = 9) 0.93 / 1.40; 3 -> 16 1.19 / 2.17; 3 -> 64 5.03 /
   6.00; 32 x 3 -> 32 at 64x64 2.42 / 3.13; 8 x 3 -> 32 at 96x96 1.26 / 1.69; 64 x 3 -> 32
   5x5 (K = 75) 2.91 / 3.58; 8 -> 32 (K = 72) 6.25 / 7.30; 16 -> 32 (K = 144) 11.8 / 12.2
   but at 16x16 2.88 / 2.76, and 32 -> 32 (K = 288) ties; 1x1, 32 -> 32 (K = 32) 4.34 /
   4.08 (gemm_1x1). Output rows whose last 16-pixel run is mostly empty waste the kernel's
   lanes, and there implicit GEMM wins even at K = 27 (3 -> 32, batch 128, direct /
   explicit im2col / implicit ms): 17x17 1.25 / 1.13-1.45 / 0.82-0.87, 20x20 1.49 / 1.43 /
   1.16-1.20, 24x24 1.86 / 1.98 / 1.71-1.87, 9x9 (batch 256) 0.84 / 0.96 / 0.49; from 26
   pixels (81 % of the lanes) direct ties or wins: 26x26 2.11 / 2.30 / 2.12, 28x28 2.18 /
   2.78 / 2.82, 30x30 2.65 / 3.21 / 3.18, mnist_c1 (26 wide, K = 9, batch 64) 0.39 / 0.43 /
   0.50.
   The AVX2 twin (direct_fwd_pixels_avx2.c) runs 8-pixel runs, and the same 80 % of its
   lanes holds (FASTCONV_ISA=avx2 on Zen 4, 3 -> 32 unless named, direct / explicit /
   implicit ms, one process each): 32x32 3.70 / 4.45 / 4.41 (2 threads 1.87 / 2.20 / 2.93),
   mnist_c1 0.52 / 0.57 / 0.59, 3 -> 16 1.55 / 2.87 / 2.20, 8 -> 32 (K = 72) 7.13 / 10.6 /
   7.82, 5x5 (K = 75) 3.49 / 5.30 / 3.71, 16x16 0.89 / 1.32 / 1.21, 20x20 1.29 / 1.81 /
   1.37, 24x24 1.94 / 2.53 / 2.32; 1 -> 32 1.82 / 1.87 / 2.84 and 3 -> 64 6.95 / 6.87 / 8.34
   tie. Below 80 % implicit GEMM wins some (9x9 0.74 / 1.08 / 0.57, 18x18 1.18 / 1.45 / 1.01,
   8 -> 32 at 12x12 2.59 / 3.83 / 2.04), though not all (17x17 1.73 / 2.10 / 1.82). */
#define FC_PIXELS_MAX_K 96

/* Pixels a vector of the active pixel-vector kernels (AVX-512 16, AVX2 8). */
static int64_t pixel_run(void)
{
    return fc_active_isa() >= FC_ISA_AVX512 ? 16 : 8;
}

static int few_taps_pixel_forward(const fc_conv_desc *d, int pass)
{
    /* rows of runs at least 80 % full: with AVX-512's 16-pixel runs 26 pixels wide and more,
       not 17-24 nor 36; with AVX2's 8-pixel runs 13-16, 20-24, 26 and more */
    const int64_t run = pixel_run(), lanes = (d->ow + run - 1) / run * run;
    return pass == FC_FWD && d->kh * d->kw > 1 && d->c_in / d->groups * d->kh * d->kw <= FC_PIXELS_MAX_K &&
           5 * d->ow >= 4 * lanes && fc_direct_pixels(d, pass);
}

/* A weight gradient of few taps on the direct entry's pixel-vector kernel (conv_direct.c):
   grad_y read as it lies, where implicit GEMM transposes it into pixel-major tiles (a
   quarter of a first layer's weight gradient). Its loads (4 + 4 a 16-FMA step, the tap
   vectors unaligned) hold it to ~75 % of the FMA peak, so it wins where the transpose
   weighs most: K <= 27 and rows of whole vectors, or one input channel (where the rule
   would take depthwise). Zen 4, 1 thread, separate processes, pixel-vector / implicit GEMM
   (or depthwise) ms, AVX-512 then FASTCONV_ISA=avx2: 128 x 3 -> 32 at 32x32 (CIFAR's first
   layer) 3.4-3.6 / 4.0-4.6, 3.7-3.8 / 4.3-4.9 (2 threads 1.5-1.8 / 2.0-2.5); 3 -> 16 1.81 /
   2.27, 1.72 / 1.95; 3 -> 64 7.05 / 8.11, 6.73 / 7.92; 32 x 3 -> 32 at 64x64 3.36 / 4.46, 3.14 /
   4.22; 8 x 3 -> 64 at 224x224 17.9 / 28.1, 18.2 / 25.8; mnist_c1 (1 -> 32, 26 wide) 0.38-0.40 /
   0.43-0.49 depthwise, 0.41 / 0.52-0.60; 1 -> 32 at 28x28 "same" 0.42 / 0.64, 0.56 / 0.69; at
   20x20 0.60 / 0.81, 0.54 / 0.86. Left to the rest of the rule, measured: rows with a masked
   last run (3 -> 32 at 26x26 2.89 / 2.50, 28x28 3.03 / 3.06, AVX2 3.17 / 2.69; 17x17 1.47 /
   0.96), K = 36 at 32x32 (4.30 / 5.07 but AVX2 4.97 / 4.53), 48x48 (4.20 / 3.94, AVX2 4.06 /
   4.30), K = 72 (8.90 / 8.83) and 5x5 (K = 75: 4.59 / 3.89; one channel, K = 25: 0.57 / 0.51
   depthwise). */
#define FC_PIXELS_WGRAD_MAX_K 27

static int few_taps_pixel_weight_grad(const fc_conv_desc *d, int pass)
{
    const int64_t run = pixel_run(), K = d->c_in / d->groups * d->kh * d->kw;
    if (pass != FC_BWD_WEIGHTS || d->kh * d->kw == 1 || K > FC_PIXELS_WGRAD_MAX_K)
        return 0;
    return (d->c_in == 1 ? K <= 9 : d->ow >= 32 && d->ow % run == 0) && fc_direct_pixels(d, pass);
}

/* The input gradient of one input channel feeding many outputs at a stride (a grayscale
   image's strided first layer): depthwise accepts it (groups == C_in == 1) but scatters each
   of the C_out grad_y planes back through the stride; explicit im2col's one GEMM (M = kh*kw,
   K = C_out) and col2im are 2-7x faster. Zen 4, 1 thread, depthwise / explicit ms: f32 8 x 1
   -> 32 at 128x128, 3x3/2, 1.8-4.1 / 0.69-0.70; 64 x 1 -> 16 at 28x28 0.64-0.79 / 0.21-0.22;
   8 x 1 -> 16 at 128x128 0.92 / 0.46; 4 x 1 -> 64 at 224x224, 7x7/2, 20-32 / 6.4-7.7; 3x3/3
   0.50-0.72 / 0.10-0.14; 2 threads 1.3 / 0.47 and 12.6 / 3.5; f64 3.1 / 1.2 and 40.8 / 13.1;
   AVX2 4.1 / 0.70, 0.79 / 0.21 and (the 7x7/2) 32 / 6.5. At stride 1 neither
   wins everywhere (mnist_c1's 1.0-1.4 against 0.82-0.93 ms, 16 x 1 -> 32 at 256x256 18.7
   against 29.9): depthwise keeps those. */
static int strided_single_channel_input_grad(const fc_conv_desc *d, int pass)
{
    return pass == FC_BWD_DATA && d->groups == 1 && d->c_in == 1 && d->c_out >= 16 &&
           (d->stride_h > 1 || d->stride_w > 1) && accepts(&fc_impl_im2col, d, pass);
}

int fc_conv_prefer(const fc_conv_desc *d, int pass)
{
    if (strided_single_channel_input_grad(d, pass))
        return FC_ALGO_IM2COL_EXPLICIT;
    if (few_taps_pixel_weight_grad(d, pass))
        return FC_ALGO_DIRECT;
    if (accepts(&fc_impl_depthwise, d, pass))
        return FC_ALGO_DEPTHWISE;
    if (few_taps_pixel_forward(d, pass))
        return FC_ALGO_DIRECT;
    if (d->precision >= FC_PRECISION_MEDIUM && accepts(&fc_impl_winograd, d, pass) &&
        fc_winograd_preferred(d, pass))
        return FC_ALGO_WINOGRAD;
    const int64_t cg = d->c_in / d->groups, kg = d->c_out / d->groups;
    const int64_t K = cg * d->kh * d->kw;
    if (pointwise_prefers_implicit(d, pass))
        return FC_ALGO_IMPLICIT_GEMM;
    /* (an unpadded unit-stride 1x1 forward or input gradient is accepted by implicit GEMM
       too, but the rest of this rule was measured with it on gemm_1x1 and direct: it stays
       there) */
    const int implicit = !fc_is_pointwise(d) && accepts(&fc_impl_implicit_gemm, d, pass);
    if (implicit && fc_implicit_groups_a_tile(d, pass) > 1)
        return FC_ALGO_IM2COL; /* grouped layers whose groups implicit GEMM packs side by side */
    if (kg >= 8 && K >= (implicit ? 8 : 16)) {
        /* the problem the forward kernels compute: bwd_data runs the transposed one */
        const int64_t K_run = pass == FC_BWD_DATA ? kg * d->kh * d->kw : K;
        if (implicit && pass != FC_BWD_WEIGHTS && !accepts(&fc_impl_gemm_1x1, d, pass)) {
            /* explicit im2col and direct accept every problem */
            const fc_implicit_kernels *kr = fc_implicit_kernels_for(d->dtype);
            if (pass == FC_FWD && kr && 2 * kg <= kr->vl && d->stride_h == 1 && d->stride_w == 1)
                return FC_ALGO_DIRECT;
            if (K_run < FC_IMPLICIT_MIN_K)
                return FC_ALGO_IM2COL_EXPLICIT;
            if (pass == FC_BWD_DATA && kr && 2 * cg <= kr->vl)
                return kg >= FC_NARROW_BWD_DATA_MIN_KG ? FC_ALGO_IM2COL_EXPLICIT : FC_ALGO_DIRECT;
        }
        return FC_ALGO_IM2COL;
    }
    return FC_ALGO_DIRECT;
}
