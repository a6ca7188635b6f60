/*
 * gemm.c: the five-loop GEMM driver (BLIS's algorithm; our own code).
 *
 *   loop 5  jc over N in steps of NC      B panel (KC x NC, packed, shared by the team)
 *   loop 4  pc over K in steps of KC      (always in increasing order: deterministic sums)
 *             pack B panel into NR-wide micro-panels   b~[jr][p][0:NR]
 *   loop 3  ic over M in steps of MC      A block (MC x KC, packed, one per thread)
 *             pack A block into MR-tall micro-panels   a~[ir][p][0:MR]
 *   loop 2  ir over the block in steps of MR          A micro-panel (MR x KC) -> L1
 *   loop 1  jr over the panel in steps of NR          B micro-panels stream from L2/L3
 *             micro-kernel: MR x NR tile of C = A micro-panel x B micro-panel (registers)
 *
 * The kernels broadcast A and load B as vectors along the unit-stride rows of C, so the A
 * micro-panel (MR x KC) is the small one and is the one kept in L1: loop 2 sits outside
 * loop 1 (BLIS's column-major order, transposed). Packing turns any strides of A and B
 * (transposed operands included) into contiguous, aligned micro-panels, with register
 * transposes for the row-major A and the transposed B on AVX2/AVX-512 machines.
 *
 * Partial tiles (at the bottom and right edges of C) are computed by the same micro-kernel
 * (or its narrower variant for the last columns) into a temporary MR x NR tile (C copied in
 * first when beta = 1, padded bias), then the valid part is copied out: the kernel never
 * reads or writes outside C, and edge elements round exactly like interior ones. The packed
 * panels are zero-padded to full MR rows and whole vectors of columns.
 *
 * alpha, beta and bias are applied by the micro-kernel when it stores its tile: the first
 * KC block stores alpha*AB + beta*C + bias, the later ones alpha*AB + C.
 *
 * Threads: a team of nt threads is laid out as ic_ways x jr_ways (ic_ways * jr_ways = nt).
 * The ic_ways groups split the rows of C (in whole MR tiles, each thread then walks its rows
 * in MC blocks with its own packed A block); the jr_ways threads of a group split the columns
 * of every NC panel in whole vectors of the kernel (a share may end inside a micro-panel: the
 * narrower kernel variants compute just its vectors). The layout minimising the largest
 * per-thread cost (FMAs plus the elements each thread packs or reads from another's
 * packing, row splits weighted 5% heavier, see choose_ic_ways) is chosen per panel, so one
 * large GEMM and skinny ones (m = 64, n = 676 or 43264; m = 700, n = 20; m = 9216, n = 128)
 * all keep every thread busy. With ic_ways = 1 each thread packs only the B columns it uses and no
 * barrier is needed inside the loops; otherwise the team packs the B panel together
 * (barrier), computes, and waits (barrier) before the panel is overwritten. K is never split
 * across threads, and every element of C gets the same operations in the same order whichever
 * tile, kernel variant or thread computes it, so the result is bitwise the same for every
 * team size.
 */
#include <stdlib.h>
#include <string.h>

#include "../fastconv.h"
#include "../cpu_info.h"
#include "../threads.h"
#include "gemm.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define FC_ALIGN 64
#define FC_MAX_TILE_BYTES 2048 /* >= MR * NR * sizeof(element) of every kernel below (<= 1536) */

typedef struct gemm_cfg {
    int mr, nr;
    int64_t mc, kc, nc;
    fc_gemm_ukernel_fn ukr;
    int vl;                          /* columns per vector of the kernel (nr: no variants) */
    fc_gemm_ukernel_fn ukr_part[4];  /* [v]: first v vectors only, for a last partial panel */
} gemm_cfg;

/*
 * Kernels and block sizes per ISA and dtype: [isa][dtype].
 * Caches of the reference machine (AMD Zen4): L1d 32 KiB, L2 1 MiB per core, L3 32 MiB shared.
 * Loop order as in the header of this file: A micro-panel (loop 2) outside, B micro-panels
 * (loop 1) inside, so the broadcast operand, the smaller of the two micro-panels, is the one
 * held in L1. Every value below was measured on that machine against its neighbours (square
 * n = 512..2048 and the convolution shapes m = 32/64, n = 288..5408, k = 64..5408); the
 * optimum is flat within ~2% around them.
 *
 * KC: the A micro-panel (MR x KC) is reused by every micro-kernel call of loop 1 and must stay
 *     in L1 while B streams past it: MR * KC * size = 1/2 to 3/4 of the 32 KiB L1d. A long KC
 *     also amortises the C tile load/store of each call (KC FMAs per C element and call).
 * NC: the packed B panel (KC x NC) is shared by the team and streamed once per A micro-panel
 *     (from L2 when small, else from L3 with the hardware prefetcher ahead of the sequential
 *     reads); KC * NC * size of 3-4 MiB sits well inside the 32 MiB L3, and each of two
 *     threads streams its own half. Smaller NC (<= 1024) measured slower: A is repacked once
 *     per NC panel. A multiple of 2*NR, so two threads split a full panel evenly.
 * MC: the packed A block (MC x KC, one per thread) is consumed one micro-panel at a time, so
 *     MC needs no cache of its own; it bounds the per-thread workspace (~0.5 MiB, which keeps
 *     the block just packed in L2 for its use). A multiple of MR.
 * KC, NC and MC are upper bounds: a dimension is cut into equal blocks no larger than them.
 */
static const gemm_cfg cfg_table[3][2] = {
    /* generic (SSE2 baseline when compiled for x86-64; the kernel, not memory, is the limit) */
    {
        /* f32 4x8: A micro-panel 4*384*4 = 6 KiB; B panel 384*2048*4 = 3 MiB; A block 384 KiB */
        {4, 8, 256, 384, 2048, fc_f32_gemm_ukernel_4x8__generic, 8, {NULL}},
        /* f64 4x4: A micro-panel 4*384*8 = 12 KiB; B panel 384*2048*8 = 6 MiB; A block 768 KiB */
        {4, 4, 256, 384, 2048, fc_f64_gemm_ukernel_4x4__generic, 4, {NULL}},
    },
#ifdef FC_GEMM_HAVE_X86_KERNELS
    /* AVX2 + FMA */
    {
        /* f32 6x16: A micro-panel 6*384*4 = 9 KiB; B panel 384*2048*4 = 3 MiB; A block 360 KiB */
        {6, 16, 240, 384, 2048, fc_f32_gemm_ukernel_6x16__avx2, 8,
         {NULL, fc_f32_gemm_ukernel_6x16_n8__avx2}},
        /* f64 6x8: A micro-panel 6*256*8 = 12 KiB; B panel 256*2048*8 = 4 MiB; A block 240 KiB
           (KC = 384 and 512 measured 2% and 8% slower) */
        {6, 8, 120, 256, 2048, fc_f64_gemm_ukernel_6x8__avx2, 4,
         {NULL, fc_f64_gemm_ukernel_6x8_n4__avx2}},
    },
    /* AVX-512F */
    {
        /* f32 8x32: A micro-panel 8*512*4 = 16 KiB; B panel 512*2048*4 = 4 MiB; A block 512 KiB */
        {8, 32, 256, 512, 2048, fc_f32_gemm_ukernel_8x32__avx512, 16,
         {NULL, fc_f32_gemm_ukernel_8x32_n16__avx512}},
        /* f64 8x24: A micro-panel 8*384*8 = 24 KiB; B panel 384*2016*8 = 6 MiB; A block 768 KiB */
        {8, 24, 256, 384, 2016, fc_f64_gemm_ukernel_8x24__avx512, 8,
         {NULL, fc_f64_gemm_ukernel_8x24_n8__avx512, fc_f64_gemm_ukernel_8x24_n16__avx512}},
    },
#endif
};

#ifdef FC_GEMM_HAVE_X86_KERNELS
#define FC_GEMM_NUM_ISA 3
#else
#define FC_GEMM_NUM_ISA 1
#endif

/*
 * Blocks derived from the caches of the CPU we run on (cpu_info.c). The table holds the
 * values measured best on the reference machine (32 KiB L1d, 1 MiB L2, 32 MiB L3); each
 * block keeps the share of its cache that the rules above give it there:
 *   KC scales with L1d (the A micro-panel's share of L1), a multiple of 32;
 *   MC scales with L2 (the A block), a multiple of MR;
 *   NC scales with L3 (the shared B panel), a multiple of 2*NR;
 * each factor clamped to [1/2, 2] (NC: [1/4, 2]), so an odd cache report cannot produce a
 * pathological block. On the reference machine the table comes back exactly; on a Zen 5
 * (48 KiB L1d) or a Xeon (48 KiB L1d, 2 MiB L2) KC and MC grow with the caches.
 * FASTCONV_GEMM_BLOCKS="kc=..,mc=..,nc=.." overrides (every ISA and dtype), for experiments.
 *
 * Where the B panel lives. Loop 1 streams the B micro-panels past the A micro-panel held in
 * L1: at two 512-bit FMAs a cycle the 8x32 kernel takes 16 bytes of B a cycle. An AMD L3
 * (one CCX's, next to the core) delivers that, so the panel is sized to L3 as measured best
 * on Zen 4 and confirmed on Zen 5. A mesh L3 (Intel server parts) gives one core less:
 * issue 12's Xeon lost ground as the panel outgrew its 2 MiB L2 (sgemm 0.82x OpenBLAS at
 * n = 1024, 0.68x at 2048, 0.57x on 2 threads). There ("l2" placement) the panel is cut to
 * half the L2: NC = 1024 (f32) / 480 (f64) columns and KC = what fits, >= 128, so it stays
 * in L2 for every A micro-panel; A is repacked per panel. Cost where L3 is fast: on Zen 5
 * with the placement forced (KC 128 there, its L2 being 1 MiB) 0-4 % against "l3". Chosen by
 * vendor (GenuineIntel: l2, else l3), FASTCONV_GEMM_PANEL=l2|l3 overrides. NC and MC never
 * change a result; KC does (the order of the partial sums), so this choice is fixed per CPU
 * model, never timed at run time.
 */
static gemm_cfg derived[3][2];
static int panel_l2 = 0;
static int derived_ready = 0;

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }
static double fclamp(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

static int64_t env_block(const char *spec, const char *key)
{
    if (!spec)
        return 0;
    const char *p = strstr(spec, key);
    if (!p || p[strlen(key)] != '=')
        return 0;
    long v = strtol(p + strlen(key) + 1, NULL, 10);
    return v > 0 && v < (1L << 20) ? (int64_t)v : 0;
}

static int choose_panel_l2(const fc_cpu_info *ci)
{
    const char *env = getenv("FASTCONV_GEMM_PANEL");
    if (env && strcmp(env, "l2") == 0)
        return 1;
    if (env && strcmp(env, "l3") == 0)
        return 0;
    return strcmp(ci->vendor, "GenuineIntel") == 0;
}

static void derive_blocks(void)
{
    const fc_cpu_info *ci = fc_cpu_info_get();
    const char *env = getenv("FASTCONV_GEMM_BLOCKS");
    panel_l2 = choose_panel_l2(ci);
    for (int isa = 0; isa < FC_GEMM_NUM_ISA; isa++)
        for (int dt = 0; dt < 2; dt++) {
            gemm_cfg cf = cfg_table[isa][dt];
            const double f1 = fclamp((double)ci->l1d / (32 << 10), 0.5, 2.0);
            const double f2 = fclamp((double)ci->l2 / (1 << 20), 0.5, 2.0);
            const double f3 = fclamp((double)ci->l3 / (32 << 20), 0.25, 2.0);
            int64_t kc = clamp64((int64_t)(cf.kc * f1) / 32 * 32, 32, 4096);
            int64_t mc = clamp64((int64_t)(cf.mc * f2) / cf.mr * cf.mr, cf.mr, 4096);
            int64_t nc = clamp64((int64_t)(cf.nc * f3) / (2 * cf.nr) * (2 * cf.nr), 2 * cf.nr, 8192);
            if (panel_l2) {
                const int64_t es = dt == FC_F64 ? 8 : 4;
                const int64_t ncl2 = (dt == FC_F64 ? 512 : 1024) / (2 * cf.nr) * (2 * cf.nr);
                const int64_t kcl2 = clamp64(ci->l2 / 2 / (ncl2 * es) / 32 * 32, 128, 4096);
                kc = kc < kcl2 ? kc : kcl2;
                nc = nc < ncl2 ? nc : ncl2;
            }
            int64_t v;
            if ((v = env_block(env, "kc")) > 0)
                kc = v;
            if ((v = env_block(env, "mc")) > 0)
                mc = (v + cf.mr - 1) / cf.mr * cf.mr;
            if ((v = env_block(env, "nc")) > 0)
                nc = (v + 2 * cf.nr - 1) / (2 * cf.nr) * (2 * cf.nr);
            cf.kc = kc;
            cf.nc = nc;
            cf.mc = mc;
            derived[isa][dt] = cf;
        }
}

/* Called once at import (fc_gemm_init), before any thread can ask. */
void fc_gemm_init(void)
{
    if (!derived_ready) {
        derive_blocks();
        derived_ready = 1;
    }
}

static const gemm_cfg *select_cfg(int dtype, int isa)
{
    if (isa < 0)
        isa = 0;
    if (isa >= FC_GEMM_NUM_ISA)
        isa = FC_GEMM_NUM_ISA - 1;
    if (!derived_ready)
        fc_gemm_init();
    return &derived[isa][dtype == FC_F64 ? 1 : 0];
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static size_t align_up(size_t x) { return (x + FC_ALIGN - 1) & ~(size_t)(FC_ALIGN - 1); }

/* Balanced contiguous split of [0, n) into parts; part idx gets [*lo, *hi). */
static void split_range(int64_t n, int parts, int idx, int64_t *lo, int64_t *hi)
{
    *lo = n * idx / parts;
    *hi = n * (idx + 1) / parts;
}

/* ---- Workspace --------------------------------------------------------------------------- */

static size_t b_panel_bytes(const gemm_cfg *cf, size_t es, int64_t n, int64_t k)
{
    return align_up((size_t)min64(k, cf->kc) * (size_t)round_up(min64(n, cf->nc), cf->nr) * es);
}

static size_t a_block_bytes(const gemm_cfg *cf, size_t es, int64_t m, int64_t k)
{
    return align_up((size_t)min64(k, cf->kc) * (size_t)round_up(min64(m, cf->mc), cf->mr) * es);
}

size_t fc_gemm_workspace_size(int dtype, int64_t m, int64_t n, int64_t k, int nthreads)
{
    if (m <= 0 || n <= 0 || k <= 0)
        return 0;
    if (nthreads < 1)
        nthreads = 1;
    const size_t es = dtype == FC_F64 ? sizeof(double) : sizeof(float);
    size_t best = 0;
    /* Largest over every ISA compiled in: the active ISA may change between query and call. */
    for (int isa = 0; isa < FC_GEMM_NUM_ISA; isa++) {
        const gemm_cfg *cf = select_cfg(dtype, isa);
        size_t s = b_panel_bytes(cf, es, n, k) + (size_t)nthreads * a_block_bytes(cf, es, m, k);
        if (s > best)
            best = s;
    }
    return best + FC_ALIGN; /* slack to align the caller's pointer */
}

int fc_gemm_panel_l2(void)
{
    fc_gemm_init();
    return panel_l2;
}

void fc_gemm_blocking(int dtype, int *mr, int *nr, int64_t *mc, int64_t *kc, int64_t *nc)
{
    const gemm_cfg *cf = select_cfg(dtype, fc_active_isa());
    *mr = cf->mr;
    *nr = cf->nr;
    *mc = cf->mc;
    *kc = cf->kc;
    *nc = cf->nc;
}

/* ---- Driver ------------------------------------------------------------------------------ */

static void team_barrier(int nt)
{
    if (nt > 1) {
#ifdef _OPENMP
#pragma omp barrier
#endif
    }
}

/* k == 0 or alpha == 0: C = beta*C + bias over rows [i0, i1) (A and B are not read). */
static void scale_rows(const fc_gemm_args *g, int64_t i0, int64_t i1)
{
    for (int64_t i = i0; i < i1; i++) {
        if (g->dtype == FC_F64) {
            double *c = (double *)g->c + i * g->rsc;
            const double bi = g->bias ? ((const double *)g->bias)[i] : 0.0;
            if (g->beta) {
                if (g->bias)
                    for (int64_t j = 0; j < g->n; j++)
                        c[j] += bi;
            } else {
                for (int64_t j = 0; j < g->n; j++)
                    c[j] = bi;
            }
        } else {
            float *c = (float *)g->c + i * g->rsc;
            const float bi = g->bias ? ((const float *)g->bias)[i] : 0.0f;
            if (g->beta) {
                if (g->bias)
                    for (int64_t j = 0; j < g->n; j++)
                        c[j] += bi;
            } else {
                for (int64_t j = 0; j < g->n; j++)
                    c[j] = bi;
            }
        }
    }
}

/* Cost of a layout with ic_ways = d row groups, in one thread's vector FMAs and packed
   elements per step of k (each about a cycle: a packed element is a load and a store, often
   from L3): the FMAs of its share of rows x vectors of columns, plus the A rows it packs (the
   jr_ways threads of a group each pack the group's whole A block), plus the B columns it
   packs, plus, when the rows are split, the columns of its share that other threads packed
   (read from their caches); 5% more when d > 1 (two barriers per K block, which stall the
   team whenever one thread is descheduled). Counting A's packing moves a tall, narrow GEMM
   (a Dense layer's weight gradient, m = 9216, n = 128, k = 128) to row groups: with column
   groups both threads packed all of A (2 threads, Zen 4: 1.88 -> 1.62 ms; m = 4096, n = 256
   1.89 -> 1.32 ms); where A is short they mostly leave the choice as it was (a few small
   products, m <= 256 at 2 threads, changed layout either way). The cheapest layout wins,
   ties to fewer row groups. */
static int choose_ic_ways(int nt, int64_t mt, int64_t nu, int mr, int vl)
{
    int best_d = 1;
    double best = -1;
    for (int d = 1; d <= nt; d++) {
        if (nt % d)
            continue;
        const double rows = (double)(ceil_div(mt, d) * mr), cols = (double)(ceil_div(nu, nt / d) * vl);
        const double fmas = rows * cols / vl;
        const double pack_b = (double)(d == 1 ? cols : ceil_div(nu, nt) * vl);
        const double foreign_b = cols * (d - 1) / d;
        const double cost = (fmas + rows + pack_b + foreign_b) * (d > 1 ? 1.05 : 1.0);
        if (best < 0 || cost < best) {
            best = cost;
            best_d = d;
        }
    }
    return best_d;
}

/* NC: N cut into equal panels no larger than the table's nc, in whole pairs of micro-panels
   (depends on n only, never on the team). */
static int64_t panel_width(const gemm_cfg *cf, int64_t n)
{
    return min64(cf->nc, round_up(ceil_div(n, ceil_div(n, cf->nc)), 2 * (int64_t)cf->nr));
}

int fc_gemm_row_groups(int dtype, int64_t m, int64_t n, int nthreads)
{
    const gemm_cfg *cf = select_cfg(dtype == FC_F64 ? FC_F64 : FC_F32, fc_active_isa());
    if (m <= 0 || n <= 0 || nthreads < 1)
        return 1;
    return choose_ic_ways(nthreads, ceil_div(m, cf->mr), ceil_div(min64(panel_width(cf, n), n), cf->vl), cf->mr,
                          cf->vl);
}

/* One partial tile: through a temporary MR x NR tile, same kernel, same arithmetic. The
   kernel ukr computes the tile's first w >= nv columns (w = NR for the full kernel). */
static void edge_tile(fc_gemm_ukernel_fn ukr, int mr, int nr, size_t es, int64_t kc, const char *ap,
                      const char *bp, char *c, int64_t rsc, int64_t mv, int64_t nv,
                      const void *alpha, int beta, const char *bias, char *tmp)
{
    _Alignas(FC_ALIGN) char bias_tmp[64 * sizeof(double)];
    if (beta)
        for (int64_t i = 0; i < mv; i++)
            memcpy(tmp + (size_t)i * nr * es, c + (size_t)(i * rsc) * es, (size_t)nv * es);
    if (bias) {
        memset(bias_tmp, 0, (size_t)mr * es);
        memcpy(bias_tmp, bias, (size_t)mv * es);
    }
    ukr(kc, ap, bp, tmp, nr, alpha, beta, bias ? bias_tmp : NULL);
    for (int64_t i = 0; i < mv; i++)
        memcpy(c + (size_t)(i * rsc) * es, tmp + (size_t)i * nr * es, (size_t)nv * es);
}

static void gemm_driver(const fc_gemm_args *g, void *workspace, int tid, int nt)
{
    const int64_t m = g->m, n = g->n, k = g->k;
    if (m <= 0 || n <= 0)
        return;
    if (k <= 0 || g->alpha == 0.0) {
        int64_t i0, i1;
        split_range(m, nt, tid, &i0, &i1);
        scale_rows(g, i0, i1);
        team_barrier(nt);
        return;
    }

    const int dtype = g->dtype == FC_F64 ? FC_F64 : FC_F32;
    const int isa = fc_active_isa();
    const gemm_cfg *cf = select_cfg(dtype, isa);
    const size_t es = dtype == FC_F64 ? sizeof(double) : sizeof(float);
    const int mr = cf->mr, nr = cf->nr;
    const int64_t mt = ceil_div(m, mr);
    /* K and N are cut into equal blocks no larger than KC and NC (k = KC + 1 gives two
       blocks of about KC/2, not KC and 1: a 1-long block would pay a whole C tile
       load/store per FMA). The cut depends on k and n only, never on the team. */
    const int64_t KC = ceil_div(k, ceil_div(k, cf->kc));
    const int64_t NC = panel_width(cf, n);
    /* Micro-panel stride in the packed B panel: fixed for the whole call, so that a thread
       repacking its own micro-panels for the next K block (shorter or not) never writes
       over another thread's micro-panels still in use. */
    const int64_t kcap = KC;

    float alpha_f = (float)g->alpha;
    double alpha_d = g->alpha;
    const void *alpha = dtype == FC_F64 ? (const void *)&alpha_d : (const void *)&alpha_f;

    char *ws = (char *)(((uintptr_t)workspace + FC_ALIGN - 1) & ~(uintptr_t)(FC_ALIGN - 1));
    char *bpack = ws;
    char *apack = ws + b_panel_bytes(cf, es, n, k) + (size_t)tid * a_block_bytes(cf, es, m, k);
    _Alignas(FC_ALIGN) char tmp[FC_MAX_TILE_BYTES];
    memset(tmp, 0, sizeof tmp);

    const char *a = (const char *)g->a;
    const char *b = (const char *)g->b;
    char *c = (char *)g->c;
    const char *bias = (const char *)g->bias;
    const int64_t rsa = g->rsa, csa = g->csa, rsb = g->rsb, csb = g->csb, rsc = g->rsc;

    /* Columns are dealt to threads in whole vectors of the kernel (vl columns; vl = NR for the
       portable kernels): a thread's share may start or end inside a micro-panel, and the
       narrower kernel variants compute just its vectors, so two threads split n = 512 into
       256 + 256 even with NR = 24. Shares are disjoint, so is what each thread packs. */
    const int vl = cf->vl, nvec = nr / vl;
    int prev_ic_ways = 0;
    int64_t prev_nu = 0;
    for (int64_t jc = 0; jc < n; jc += NC) {
        const int64_t nc = min64(NC, n - jc);
        const int64_t nu = ceil_div(nc, vl); /* vectors of columns in this panel */
        const int ic_ways = choose_ic_ways(nt, mt, nu, mr, vl);
        /* A different layout (only the last, narrower panel can have one) moves columns
           between threads: wait until everyone is done with the previous panel. */
        if (jc > 0 && (ic_ways != prev_ic_ways || nu != prev_nu))
            team_barrier(nt);
        prev_ic_ways = ic_ways;
        prev_nu = nu;
        const int jr_ways = nt / ic_ways;
        const int ti = tid / jr_ways, tj = tid % jr_ways;
        int64_t u0, u1, t0, t1;
        split_range(nu, jr_ways, tj, &u0, &u1);
        split_range(mt, ic_ways, ti, &t0, &t1);
        const int64_t j0 = u0 * vl, j1 = u1 * vl; /* this thread's columns (zeros past nc) */
        const int64_t row0 = t0 * mr, row1 = min64(t1 * mr, m);

        for (int64_t pc = 0; pc < k; pc += KC) {
            const int64_t kc = min64(KC, k - pc);
            const int first = pc == 0;
            const int beta = first ? g->beta : 1;
            const char *bias_pc = first ? bias : NULL;
            const char *bsrc = b + (size_t)(pc * rsb + jc * csb) * es;

            if (ic_ways == 1) {
                /* Each thread packs exactly the columns it will use: no barrier. */
                fc_gemm_pack_b(dtype, isa, j0, j1, nc, kc, kcap, bsrc, rsb, csb, bpack, nr);
            } else {
                int64_t p0, p1;
                split_range(nu, nt, tid, &p0, &p1);
                fc_gemm_pack_b(dtype, isa, p0 * vl, p1 * vl, nc, kc, kcap, bsrc, rsb, csb, bpack, nr);
                team_barrier(nt);
            }

            /* This thread's rows in equal blocks of at most MC (a multiple of MR). */
            const int64_t rows = row1 - row0; /* may be 0 for a thread of a large team */
            const int64_t MC = rows > 0 ? round_up(ceil_div(rows, ceil_div(rows, cf->mc)), mr) : mr;
            for (int64_t ic = row0; ic < row1; ic += MC) {
                const int64_t mc = min64(MC, row1 - ic);
                fc_gemm_pack_a(dtype, isa, mc, kc, a + (size_t)(ic * rsa + pc * csa) * es, rsa, csa, apack, mr);

                /* Macro-kernel: loop 2 (ir) around loop 1 (jr). */
                for (int64_t ir = 0; ir < mc; ir += mr) {
                    const int64_t mv = min64(mr, mc - ir);
                    const char *ap = apack + (size_t)(ir * kc) * es;
                    const char *bt = bias_pc ? bias_pc + (size_t)(ic + ir) * es : NULL;
                    for (int64_t jr = j0 / nr; j0 < j1 && jr * nr < j1; jr++) {
                        /* columns [cs, ce) of micro-panel jr are ours, [cs, cs + nv) inside C */
                        const int64_t base = jr * nr;
                        const int64_t cs = (j0 > base ? j0 : base) - base;
                        const int64_t ce = min64(j1, base + nr) - base;
                        const int64_t nv = min64(ce, nc - base) - cs;
                        const int64_t cnt = (ce - cs) / vl;
                        const fc_gemm_ukernel_fn ukr = cnt == nvec ? cf->ukr : cf->ukr_part[cnt];
                        const char *bp = bpack + (size_t)(base * kcap + cs) * es;
                        char *ct = c + (size_t)((ic + ir) * rsc + jc + base + cs) * es;
                        if (mv == mr && nv == ce - cs)
                            ukr(kc, ap, bp, ct, rsc, alpha, beta, bt);
                        else
                            edge_tile(ukr, mr, nr, es, kc, ap, bp, ct, rsc, mv, nv, alpha, beta, bt, tmp);
                    }
                }
            }
            if (ic_ways > 1)
                team_barrier(nt); /* the panel is repacked by the next iteration */
        }
    }
    team_barrier(nt);
}

void fc_gemm_serial(const fc_gemm_args *g, void *workspace) { gemm_driver(g, workspace, 0, 1); }

void fc_gemm_team(const fc_gemm_args *g, void *workspace)
{
#ifdef _OPENMP
    gemm_driver(g, workspace, omp_get_thread_num(), omp_get_num_threads());
#else
    gemm_driver(g, workspace, 0, 1);
#endif
}

int fc_gemm(const fc_gemm_args *g, int nthreads)
{
    if (g->m <= 0 || g->n <= 0)
        return FC_OK;
    nthreads = fc_team_limit(nthreads);
#ifndef _OPENMP
    nthreads = 1;
#endif
    const size_t size = fc_gemm_workspace_size(g->dtype, g->m, g->n, g->k, nthreads);
    void *ws = NULL;
    if (size) {
        ws = malloc(size);
        if (!ws)
            return FC_ENOMEM;
    }
    if (nthreads == 1) {
        fc_gemm_serial(g, ws);
    } else {
#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads)
        fc_gemm_team(g, ws);
#endif
    }
    free(ws);
    return FC_OK;
}
