/* flowprep._tvl1: TV-L1 optical flow (the algorithm of OpenCV's DualTVL1), compiled.
 *
 * compute(prev, next, out, tau, lambda, theta, nscales, warps, epsilon,
 *         inner_iterations, outer_iterations, scale_step, gamma, median_filtering,
 *         stats=False) -> None, or a list of per-level dicts when stats is true
 *     prev, next: C-contiguous 2-D buffers of the same shape (H, W), format 'B'
 *                 (uint8) or 'f' (float32), grey values in [0, 255].
 *     out:        a writable C-contiguous float32 buffer of H*W*2 values: the flow
 *                 (H, W, 2) in pixels, [..., 0] = dx, [..., 1] = dy, with
 *                 next(x + d(x)) ~ prev(x).
 * isa() -> "avx2" | "avx" | "sse2" | "generic": the code path the
 *          hot loops dispatch to on this CPU.
 *
 * The scheme (Zach, Pock & Bischof 2007; Wedel et al. 2009; Sanchez et al., IPOL
 * 2013) with OpenCV's choices, step by step as cv::optflow::DualTVL1OpticalFlow
 * does it (opencv_contrib modules/optflow/src/tvl1flow.cpp); written from that
 * description, no code shared:
 *   - pyramid: level s+1 = resize(level s, scale_step, INTER_LINEAR), sizes
 *     rounded to nearest; no level with a side under 16 (level 0 always);
 *   - per level, coarsest first: centred gradient of I1; `warps` times: bicubic
 *     warp of I1 and its gradient by u (OpenCV remap: positions rounded to
 *     1/32 px, A = -0.75 kernel from a 32-entry table, taps outside read 0),
 *     linearised data term; then up to `outer` x (median filter of u1, u2;
 *     up to `inner` x (thresholding, u = v + theta div p, dual update));
 *     a warp stops once one iteration's sum of squared change of u is at most
 *     epsilon^2 * H * W of the level;
 *   - the flow is resized to the next finer level (INTER_LINEAR) and divided
 *     by scale_step; the duals restart at 0 on each level.
 * Where it differs from OpenCV (docs/native_tvl1.md): the stopping sum is
 * accumulated in a fixed order (float partial sums per row, then double;
 * OpenCV: one float running sum);
 * |grad u| is sqrtf(ux^2 + uy^2) (OpenCV: hypot); the warp's 16 taps are
 * summed separably (OpenCV: products wy*wx summed row by row); the
 * thresholding multiplies by 1/|grad I1w|^2 computed once per warp and the
 * dual update by one reciprocal (OpenCV: divisions); frames and the per-call
 * level count as in the module docstring of flowprep/flow/native_tvl1.py.
 *
 * Speed: each inner iteration is one pass over the rows that updates u of row
 * y and then the duals of row y-1 (which need u of rows y-1 and y), so u and p
 * are read and written once per iteration; the loops are plain float code the
 * compiler vectorises; no call into libm in the loops (sqrtf is an
 * instruction); one working block per call, its planes staggered modulo 4 KiB
 * (no cache-set aliasing between them) and kept for the next call. Hot functions are
 * compiled for AVX2, AVX and the baseline (SSE2 on x86-64) and
 * chosen at load time (GCC/Clang target_clones); -ffp-contract=off keeps the
 * arithmetic the same IEEE float operations in every version, so the result
 * does not depend on the CPU. The GIL is released while it runs.
 */
#ifndef FLOWPREP_NO_PYTHON /* tests/tvl1_standalone.c builds the kernel alone */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#endif

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && defined(__linux__) && \
    !defined(FLOWPREP_NO_CLONES)
#if defined(__has_attribute)
#if __has_attribute(target_clones)
/* no avx512f clone: on AMD Zen 4 (this project's machine) the AVX2 version of
 * these loops is 4-6 % faster than the AVX-512 one (measured), and Intel's
 * 512-bit paths lower the clock; the answer is the same either way */
#define HOT __attribute__((target_clones("avx2", "avx", "default")))
#define HAVE_CLONES 1
#endif
#endif
#endif
#ifndef HOT
#define HOT
#endif

#if defined(__GNUC__)
#define RESTRICT __restrict__
#define ALIGN32 __attribute__((aligned(32)))
/* GCC/Clang vector types for the warp's taps and the stopping sum; without them
 * (other compilers, or -DFLOWPREP_NO_VECTOR_EXT, which a test builds) plain C
 * loops perform the same operations in the same order: the same bits. */
#if !defined(FLOWPREP_NO_VECTOR_EXT)
#define HAVE_VEC4 1
typedef float v4sf __attribute__((vector_size(16)));
typedef float v8sf __attribute__((vector_size(32)));
#endif
#elif defined(_MSC_VER)
#define RESTRICT __restrict
#else
#define RESTRICT
#endif

#ifndef ALIGN32
#define ALIGN32
#endif

#define MIN_LEVEL_SIDE 16
#define TAB 32        /* remap's sub-pixel table size (INTER_TAB_SIZE) */

typedef struct {
    float l_t, theta, taut, gamma;
    double tau, lambda, theta_d, epsilon, scale_step, gamma_d;
    int nscales, warps, inner, outer, median;
} Params;

typedef struct {
    int h, w, warps_run, medians;
    long iterations;
    double t_warp, t_median, t_iter, t_resize;
} LevelStats;

/* ------------------------------------------------------------------ timing */

static double cpu_now(void) {
#if defined(CLOCK_THREAD_CPUTIME_ID)
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
#else
    return (double)clock() / CLOCKS_PER_SEC;
#endif
}

/* ------------------------------------------------------------------ resize */

/* OpenCV INTER_LINEAR taps along one axis: dst index d reads src i0[d], i1[d]
 * with weights a0[d], a1[d]; scale = source pixels per destination pixel. */
static void linear_taps(int src, int dst, double scale, int *i0, int *i1, float *a0, float *a1) {
    for (int d = 0; d < dst; d++) {
        float f = (float)((d + 0.5) * scale - 0.5);
        int s = (int)floorf(f);
        f -= (float)s;
        if (s < 0) { f = 0.f; s = 0; }
        if (s >= src - 1) { f = 0.f; s = src - 1; }
        i0[d] = s;
        i1[d] = s + 1 < src ? s + 1 : src - 1;
        a0[d] = 1.f - f;
        a1[d] = f;
    }
}

/* dst (dh, dw) = cv::resize(src (sh, sw), INTER_LINEAR) on float planes (row
 * strides sstride, dstride floats): a horizontal pass per source row then a
 * vertical blend, as OpenCV does. */
static void resize_linear(const float *src, int sh, int sw, int sstride, float *dst, int dh, int dw,
                          int dstride, double scale_y, double scale_x, int *itab, float *ftab,
                          float *rows) {
    int *xi0 = itab, *xi1 = itab + dw, *yi0 = itab + 2 * dw, *yi1 = itab + 2 * dw + dh;
    float *xa0 = ftab, *xa1 = ftab + dw, *ya0 = ftab + 2 * dw, *ya1 = ftab + 2 * dw + dh;
    linear_taps(sw, dw, scale_x, xi0, xi1, xa0, xa1);
    linear_taps(sh, dh, scale_y, yi0, yi1, ya0, ya1);
    float *r0 = rows, *r1 = rows + dw;
    int have0 = -1, have1 = -1;
    for (int y = 0; y < dh; y++) {
        int s0 = yi0[y], s1 = yi1[y];
        if (s0 != have0) {
            if (s0 == have1) { float *t = r0; r0 = r1; r1 = t; have1 = have0; }
            else {
                const float *S = src + (size_t)s0 * sstride;
                for (int x = 0; x < dw; x++) r0[x] = S[xi0[x]] * xa0[x] + S[xi1[x]] * xa1[x];
            }
            have0 = s0;
        }
        if (s1 != have1) {
            const float *S = src + (size_t)s1 * sstride;
            for (int x = 0; x < dw; x++) r1[x] = S[xi0[x]] * xa0[x] + S[xi1[x]] * xa1[x];
            have1 = s1;
        }
        float b0 = ya0[y], b1 = ya1[y];
        float *D = dst + (size_t)y * dstride;
        for (int x = 0; x < dw; x++) D[x] = r0[x] * b0 + r1[x] * b1;
    }
}

/* ------------------------------------------------------------- gradient */

/* src4: per pixel (I1, dI1/dx, dI1/dy, 0); centred differences / 2, one-sided
 * at the borders (OpenCV's centeredGradient; 0 along a side of length 1). */
static void gradient4(const float *I, int h, int w, float *src4) {
    for (int y = 0; y < h; y++) {
        const float *row = I + (size_t)y * w;
        const float *up = I + (size_t)(y > 0 ? y - 1 : 0) * w;
        const float *dn = I + (size_t)(y + 1 < h ? y + 1 : h - 1) * w;
        float *o = src4 + (size_t)y * w * 4;
        for (int x = 0; x < w; x++) {
            int xl = x > 0 ? x - 1 : 0, xr = x + 1 < w ? x + 1 : w - 1;
            o[4 * x] = row[x];
            o[4 * x + 1] = 0.5f * (row[xr] - row[xl]);
            o[4 * x + 2] = 0.5f * (dn[x] - up[x]);
            o[4 * x + 3] = 0.f;
        }
    }
}

/* ----------------------------------------------------------------- warp */

/* v rounded to the nearest integer, ties to even (what lrintf does in the
 * default rounding mode, and OpenCV's cvRound), for |v| < 2^22: adding 1.5 *
 * 2^23 lands in [2^23, 2^24), where floats are the integers, so the addition
 * rounds and the subtraction is exact. Plain float operations, so the loop
 * around it vectorises (lrintf returns a long, which kept it scalar). */
static inline int round_even(float v) {
    const float magic = 12582912.f; /* 1.5 * 2^23 */
    return (int)((v + magic) - magic);
}

static float cubic_tab[TAB][4];
/* the x weights of a table entry laid out for two taps per 8-float vector:
 * [0] = {w0 x4, w1 x4}, [1] = {w2 x4, w3 x4} */
static float cubic_x8[TAB][2][8] ALIGN32;

static void init_cubic_tab(void) {
    const float A = -0.75f;
    for (int i = 0; i < TAB; i++) {
        float x = i * (1.f / TAB);
        float *c = cubic_tab[i];
        c[0] = ((A * (x + 1) - 5 * A) * (x + 1) + 8 * A) * (x + 1) - 4 * A;
        c[1] = ((A + 2) * x - (A + 3)) * x * x + 1;
        c[2] = ((A + 2) * (1 - x) - (A + 3)) * (1 - x) * (1 - x) + 1;
        c[3] = 1.f - c[0] - c[1] - c[2];
        for (int l = 0; l < 4; l++) {
            cubic_x8[i][0][l] = c[0]; cubic_x8[i][0][4 + l] = c[1];
            cubic_x8[i][1][l] = c[2]; cubic_x8[i][1][4 + l] = c[3];
        }
    }
}

/* Bicubic samples of src4 at (x + u1, y + u2) as OpenCV's remap(INTER_CUBIC,
 * BORDER_CONSTANT 0) computes them (same positions, weights and taps; the sums
 * separable), then the data term's per-warp constants (calcGradRho): lg =
 * lambda theta |grad I1w|^2, ig = 1/|grad I1w|^2 (0 where |grad I1w|^2 <=
 * FLT_EPSILON, OpenCV's branch), rho_c = I1w - I1wx u1 - I1wy u2 - I0.
 * u1, u2 and the outputs have row stride ws, src4 and I0 row stride w.
 * ixs, iys: scratch rows of w ints; r4: of 4 w floats (the samples of a row). */
HOT static void warp_level(const float *RESTRICT src4, const float *RESTRICT I0,
                           const float *RESTRICT u1, const float *RESTRICT u2, int h, int w, int ws,
                           float l_t, float *RESTRICT Ix, float *RESTRICT Iy, float *RESTRICT lg,
                           float *RESTRICT ig, float *RESTRICT rhoc, int *RESTRICT ixs,
                           int *RESTRICT iys, float *RESTRICT r4) {
    const float lo = -8.f, hix = (float)w + 8.f, hiy = (float)h + 8.f;
    for (int y = 0; y < h; y++) {
        const size_t o = (size_t)y * ws; /* flow planes: row stride ws; I0: w */
        const float *RESTRICT I0r = I0 + (size_t)y * w;
        /* pass 1 (vectorised): positions in 1/32 pixel */
        for (int x = 0; x < w; x++) {
            float mx = (float)x + u1[o + x], my = (float)y + u2[o + x];
            /* outside by more than the kernel: 0 either way; keeps ints small */
            mx = mx < lo ? lo : (mx > hix ? hix : mx);
            my = my < lo ? lo : (my > hiy ? hiy : my);
            ixs[x] = round_even(mx * (float)TAB);
            iys[x] = round_even(my * (float)TAB);
        }
        /* pass 2: the 16 taps per pixel */
        for (int x = 0; x < w; x++) {
            int ix = ixs[x], iy = iys[x];
            int sx = (ix >> 5) - 1, sy = (iy >> 5) - 1;
            const float *wx = cubic_tab[ix & (TAB - 1)], *wy = cubic_tab[iy & (TAB - 1)];
            float r0 = 0.f, r1 = 0.f, r2 = 0.f;
            if ((unsigned)sx < (unsigned)(w > 3 ? w - 3 : 0) &&
                (unsigned)sy < (unsigned)(h > 3 ? h - 3 : 0)) {
#ifdef HAVE_VEC4
                /* separable: per tap row, x weights on two taps at once (lanes
                 * 0-3: taps 0 and 2, lanes 4-7: taps 1 and 3), then the rows
                 * weighted by wy, then the two halves added */
                const float *S = src4 + ((size_t)sy * w + sx) * 4;
                const v8sf wa = *(const v8sf *)cubic_x8[ix & (TAB - 1)][0];
                const v8sf wb = *(const v8sf *)cubic_x8[ix & (TAB - 1)][1];
                v8sf sum = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
                for (int k1 = 0; k1 < 4; k1++) {
                    v8sf A, B;
                    memcpy(&A, S, sizeof A);
                    memcpy(&B, S + 8, sizeof B);
                    v8sf row = A * wa + B * wb;
                    float b = wy[k1];
                    v8sf wv = {b, b, b, b, b, b, b, b};
                    sum = k1 ? sum + row * wv : row * wv;
                    S += (size_t)w * 4;
                }
                /* lanes 0-2 of the two halves' sum: (I1, I1x, I1y) at the position */
                v4sf lo4 = {sum[0], sum[1], sum[2], sum[3]}, hi4 = {sum[4], sum[5], sum[6], sum[7]};
                v4sf r = lo4 + hi4;
                memcpy(r4 + 4 * (size_t)x, &r, sizeof r);
                continue;
#else
                const float *S = src4 + ((size_t)sy * w + sx) * 4;
                const float *wa = cubic_x8[ix & (TAB - 1)][0], *wb = cubic_x8[ix & (TAB - 1)][1];
                float sum[8];
                for (int k1 = 0; k1 < 4; k1++) {
                    for (int l = 0; l < 8; l++) {
                        float t = (S[l] * wa[l] + S[8 + l] * wb[l]) * wy[k1];
                        sum[l] = k1 ? sum[l] + t : t;
                    }
                    S += (size_t)w * 4;
                }
                r0 = sum[0] + sum[4]; r1 = sum[1] + sum[5]; r2 = sum[2] + sum[6];
#endif
            } else if (!(sx >= w || sx + 4 <= 0 || sy >= h || sy + 4 <= 0)) {
                for (int k1 = 0; k1 < 4; k1++) {
                    int yy = sy + k1;
                    if (yy < 0 || yy >= h) continue;
                    for (int k2 = 0; k2 < 4; k2++) {
                        int xx = sx + k2;
                        if (xx < 0 || xx >= w) continue;
                        const float *P = src4 + ((size_t)yy * w + xx) * 4;
                        float wt = wy[k1] * wx[k2];
                        r0 += P[0] * wt; r1 += P[1] * wt; r2 += P[2] * wt;
                    }
                }
            }
            r4[4 * (size_t)x] = r0;
            r4[4 * (size_t)x + 1] = r1;
            r4[4 * (size_t)x + 2] = r2;
        }
        /* pass 3 (vectorised): the data term's constants for this warp */
        for (int x = 0; x < w; x++) {
            size_t i = o + x;
            float r1 = r4[4 * (size_t)x + 1], r2 = r4[4 * (size_t)x + 2];
            float g = r1 * r1 + r2 * r2;
            Ix[i] = r1;
            Iy[i] = r2;
            lg[i] = l_t * g;
            ig[i] = g > FLT_EPSILON ? 1.f / g : 0.f;
            rhoc[i] = r4[4 * (size_t)x] - r1 * u1[i] - r2 * u2[i] - I0r[x];
        }
    }
}

/* --------------------------------------------------------------- median */

/* 5x5 median from sorted columns (one row at a time: planes under 16 wide and an
 * odd height's last row; the rest goes by 2x2 tiles, below): input slot c*5 + r
 * holds rank r (ascending) of the window's column c. Batcher's odd-even merge of the five columns, laid
 * out in groups 0, 1, 2, 4, 5 of an 8 x 8 merge with +inf in the empty ranks
 * and groups (the first of the layouts that prune smallest), comparators on
 * +inf removed, comparators that never
 * exchange on sorted columns removed, then pruned to the middle output: 74
 * comparators, 124 min/max operations (MN/MX: only the min or max is used),
 * against 113 comparators (226 operations) on unsorted inputs. Generated and
 * checked on every 0-1 input with sorted columns (6^5 of them) and on random
 * inputs with ties by tests/make_median_net.py (a test runs its check on this
 * file); the tests compare the flow with OpenCV's. */
#define MED25_COLS_OUT 14
#define MED25_COLS_NET \
CE(0,5) CE(4,9) CE(4,5) CE(2,7) CE(2,4) CE(7,5) CE(1,6) CE(3,8) \
CE(3,6) CE(1,2) CE(3,4) CE(6,7) CE(8,5) CE(15,20) CE(19,24) CE(19,20) \
CE(17,22) CE(17,19) CE(22,20) CE(16,21) CE(18,23) CE(18,21) CE(16,17) CE(18,19) \
CE(21,22) CE(23,20) CE(0,10) CE(5,10) CE(4,14) CE(4,5) CE(14,10) CE(2,12) \
CE(7,12) CE(2,4) CE(7,5) CE(12,14) CE(1,11) CE(9,11) CE(6,9) CE(3,13) \
CE(8,13) CE(3,6) CE(8,9) CE(13,11) CE(1,2) CE(3,4) CE(6,7) CE(8,5) \
CE(9,12) CE(13,14) MN(11,10) MX(0,15) MN(5,20) MX(5,15) MX(4,19) MN(14,19) \
MN(14,15) MX(2,17) MN(12,17) MN(7,22) MX(7,12) MX(12,14) MX(1,16) MN(9,24) \
MX(9,16) MX(6,21) MN(11,21) MN(11,16) MX(3,18) MN(13,18) MN(8,23) MX(8,13) \
MN(13,11) MX(13,14)
/* 5x5 median of a 2x2 tile of outputs (x, y), (x+1, y), (x, y+1), (x+1, y+1), x
 * even. The four windows share columns x+1..x+4 of rows y-1..y+2 (the core, 16
 * values); the vertical pair at x also shares column x of those rows, the one at
 * x+1 column x+5; the horizontal pair in row y shares columns x+1..x+4 of row y-2,
 * the one in row y+1 those of row y+3. The columns of rows y-1..y+2 are sorted
 * once per row pair, the row's 4 shared values once per tile (SORT4_NET). The
 * median of 25 is rank 12:
 *   MED16_NET: the core's 4 sorted columns (slots c*4 + r: rank r of column c)
 *     -> its ranks 3..12, sorted, in the slots MED16_SEL lists (each window adds 9
 *     values to the 16: the 3 lowest and 3 highest lie below / above every median);
 *   MED14_NET: those 10 (slots 0..9) and column x resp. x+5 sorted (10..13) ->
 *     ranks 4..9 of the 14 = ranks 7..12 of the 20 values the vertical pair
 *     shares, sorted, in the slots MED14_SEL lists (each window adds 5 values);
 *   MED11_NET: those 6 (slots 0..5), the sorted 4 shared values of the window's
 *     extra row (6..9) and its fifth value (10) -> rank 5 of the 11, the median,
 *     in slot MED11_OUT.
 * Each: Batcher's merge of the sorted groups padded with infinities, minimised
 * as MED25_COLS_NET. Per tile 2 x 10 (columns) + 76 + 2 x 26 + 2 x 10 (rows) +
 * 4 x 12 = 216 min/max operations, 54 an output (before: 18 + 124 = 142).
 * Generated and checked (every 0-1 input of each network; random 6x6 blocks with
 * ties through all of them) by tests/make_median_net.py --tile / --check. */
#define MED16_SEL v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12]
#define MED16_NET \
CE(0,4) CE(2,6) CE(2,4) CE(1,5) CE(3,7) CE(3,5) CE(1,2) CE(3,4) \
CE(5,6) CE(8,12) CE(10,14) CE(10,12) CE(9,13) CE(11,15) CE(11,13) CE(9,10) \
CE(11,12) CE(13,14) MX(0,8) CE(4,12) CE(4,8) CE(2,10) MN(6,14) CE(6,10) \
MX(2,4) CE(6,8) CE(10,12) MX(1,9) CE(5,13) CE(5,9) CE(3,11) MN(7,15) \
CE(7,11) CE(3,5) CE(7,9) MN(11,13) CE(3,4) CE(5,6) CE(7,8) CE(9,10) \
CE(11,12)
#define MED14_SEL v[3], v[4], v[5], v[6], v[10], v[0]
#define MED14_NET \
MN(8,11) MX(8,0) CE(4,0) CE(13,2) MN(6,2) MX(13,4) CE(6,0) MN(9,12) \
MX(9,1) CE(5,1) CE(7,10) MX(7,3) CE(3,5) MN(10,1) CE(3,4) CE(5,6) \
CE(10,0)
#define MED11_OUT 0
#define MED11_NET \
MN(4,7) MX(4,0) MN(9,2) MX(9,0) MN(5,8) MX(5,1) MX(3,6) MN(6,1) \
CE(6,0) MN(0,10) MX(6,0)
/* sorts 4 values ascending (5 comparators, optimal) */
#define SORT4_NET CE(0,1) CE(2,3) CE(0,2) CE(1,3) CE(1,2)
/* 3x3 median from sorted columns (slot c*3 + r: rank r of column c): the median
 * of the highest low, the middle middle and the lowest high (exact; 12 min/max
 * operations, against 48 for the 24-comparator network on the 9 unsorted
 * values used before; the columns sorted once per row by SORT3_NET, shared by the 3 outputs
 * that see them). Checked on every 0-1 input with sorted columns and on random
 * inputs with ties by tests/make_median_net.py --check. */
#define MED9_COLS_OUT 6
#define MED9_COLS_NET MX(0,3) MX(3,6) MN(2,5) MN(2,8) CE(1,4) MN(4,7) MX(1,4) CE(2,6) MN(6,4) MX(2,6)
/* sorts 3 values ascending */
#define SORT3_NET CE(0,1) CE(1,2) CE(0,1)
/* sorts 5 values ascending (9 comparators, optimal) */
#define SORT5_NET CE(0,1) CE(3,4) CE(2,4) CE(2,3) CE(0,3) CE(0,2) CE(1,4) CE(1,3) CE(1,2)

#define CE(a, b) { float lo_ = v[a] < v[b] ? v[a] : v[b]; v[b] = v[a] < v[b] ? v[b] : v[a]; v[a] = lo_; }
#define MN(a, b) { v[a] = v[a] < v[b] ? v[a] : v[b]; }
#define MX(a, b) { v[b] = v[a] < v[b] ? v[b] : v[a]; }

/* c + r * pw (r = 0..2) := rank r of column x of the 3 rows from P (stride pw). */
static inline void sort_columns3(const float *RESTRICT P, int pw, float *RESTRICT c) {
    const float *RESTRICT P0 = P, *RESTRICT P1 = P + pw, *RESTRICT P2 = P + 2 * (size_t)pw;
    float *RESTRICT c0 = c, *RESTRICT c1 = c + pw, *RESTRICT c2 = c + 2 * (size_t)pw;
    for (int x = 0; x < pw; x++) {
        float v[3] = {P0[x], P1[x], P2[x]};
        SORT3_NET
        c0[x] = v[0]; c1[x] = v[1]; c2[x] = v[2];
    }
}

/* c + r * pw (r = 0..4) := rank r of column x of the 5 rows from P (stride pw). */
static inline void sort_columns5(const float *RESTRICT P, int pw, float *RESTRICT c) {
    const float *RESTRICT P0 = P, *RESTRICT P1 = P + pw, *RESTRICT P2 = P + 2 * (size_t)pw;
    const float *RESTRICT P3 = P + 3 * (size_t)pw, *RESTRICT P4 = P + 4 * (size_t)pw;
    float *RESTRICT c0 = c, *RESTRICT c1 = c + pw, *RESTRICT c2 = c + 2 * (size_t)pw;
    float *RESTRICT c3 = c + 3 * (size_t)pw, *RESTRICT c4 = c + 4 * (size_t)pw;
    for (int x = 0; x < pw; x++) {
        float v[5] = {P0[x], P1[x], P2[x], P3[x], P4[x]};
        SORT5_NET
        c0[x] = v[0]; c1[x] = v[1]; c2[x] = v[2]; c3[x] = v[3]; c4[x] = v[4];
    }
}

#define MEDIAN_SPAN 128 /* outputs a span of median5_rows2 (a multiple of 16) */
#if defined(__GNUC__)
#define MEDIAN_INLINE static inline __attribute__((always_inline)) /* into each clone */
#else
#define MEDIAN_INLINE static inline
#endif

/* The 2x2 tiles' padded plane: row y (of h + 4, stride pw = w + 4) holds the
 * padded columns c = 0, 2, 4, ... in its first (pw + 1) / 2 floats and c = 1, 3,
 * ... after them, so that a tile per vector lane (columns x, x+2, ... in
 * consecutive lanes) reads contiguous vectors. Padded column c is column
 * min(max(c - 2, 0), w - 1) of row min(max(y - 2, 0), h - 1) of u (stride us). */
static void median5_pad_split(const float *RESTRICT u, int h, int w, int us, float *RESTRICT pad) {
    int pw = w + 4, he = (pw + 1) / 2;
    for (int y = 0; y < h + 4; y++) {
        int sy = y - 2;
        sy = sy < 0 ? 0 : (sy >= h ? h - 1 : sy);
        const float *RESTRICT S = u + (size_t)sy * us;
        float *RESTRICT E = pad + (size_t)y * pw, *RESTRICT O = E + he;
        for (int j = 1; 2 * j <= w + 1; j++) E[j] = S[2 * j - 2];
        for (int j = 1; 2 * j + 1 <= w + 1; j++) O[j] = S[2 * j - 1];
        E[0] = S[0]; O[0] = S[0];
        for (int c = w + 2; c < pw; c++) {
            if (c % 2 == 0) E[c / 2] = S[w - 1]; else O[c / 2] = S[w - 1];
        }
    }
}

/* o0[x0 + x], o1[x0 + x] (x < n, n a multiple of 16, x0 + n <= w) := 5x5 medians
 * of the output rows y, y+1 from the split padded rows P .. P + 5 * pw (P = row y),
 * one 2x2 tile (x0 + 2j, x0 + 2j + 1) per iteration j. The span's columns of the
 * 4 shared rows are sorted first (on the stack, in L1). */
MEDIAN_INLINE void median5_span(const float *RESTRICT P, int pw, float *RESTRICT o0, float *RESTRICT o1,
                                int x0, int n) {
    enum { NJ = MEDIAN_SPAN / 2 + 8 };
    float Ce[4][NJ], Co[4][NJ];
    int he = (pw + 1) / 2;
    /* the tile's even columns x0 + 2j and odd ones x0 + 2j + 1, by the parity of x0 */
    size_t ev = x0 % 2 ? (size_t)he + (size_t)(x0 - 1) / 2 : (size_t)x0 / 2;
    size_t od = x0 % 2 ? (size_t)(x0 + 1) / 2 : (size_t)he + (size_t)x0 / 2;
    const float *RESTRICT Te = P + ev, *RESTRICT To = P + od;
    const float *RESTRICT Be = P + 5 * (size_t)pw + ev, *RESTRICT Bo = P + 5 * (size_t)pw + od;
    const float *RESTRICT E1 = P + pw + ev, *RESTRICT E2 = P + 2 * (size_t)pw + ev,
                *RESTRICT E3 = P + 3 * (size_t)pw + ev, *RESTRICT E4 = P + 4 * (size_t)pw + ev;
    const float *RESTRICT O1 = P + pw + od, *RESTRICT O2 = P + 2 * (size_t)pw + od,
                *RESTRICT O3 = P + 3 * (size_t)pw + od, *RESTRICT O4 = P + 4 * (size_t)pw + od;
    int nj = n / 2, mj = nj + 2;
    /* columns x0 .. x0 + n + 3 (the last tile's window reaches x0 + n + 3); up to
     * x0 + n + 15 where the row has them, so that no scalar remainder is left */
    if (x0 + 2 * (nj + 8) <= pw)
        mj = nj + 8;
    for (int j = 0; j < mj; j++) {
        {
            float v[4] = {E1[j], E2[j], E3[j], E4[j]};
            SORT4_NET
            Ce[0][j] = v[0]; Ce[1][j] = v[1]; Ce[2][j] = v[2]; Ce[3][j] = v[3];
        }
        {
            float v[4] = {O1[j], O2[j], O3[j], O4[j]};
            SORT4_NET
            Co[0][j] = v[0]; Co[1][j] = v[1]; Co[2][j] = v[2]; Co[3][j] = v[3];
        }
    }
    o0 += x0; o1 += x0;
    for (int j = 0; j < nj; j++) {
        float core[10], left[6], right[6], rt[4], rb[4];
        {   /* the core: columns 2j+1 .. 2j+4 */
            float v[16];
            for (int r = 0; r < 4; r++) {
                v[r] = Co[r][j]; v[4 + r] = Ce[r][j + 1]; v[8 + r] = Co[r][j + 1]; v[12 + r] = Ce[r][j + 2];
            }
            MED16_NET
            float s_[10] = {MED16_SEL};
            for (int i = 0; i < 10; i++) core[i] = s_[i];
        }
        {   /* + column 2j */
            float v[14];
            for (int i = 0; i < 10; i++) v[i] = core[i];
            for (int r = 0; r < 4; r++) v[10 + r] = Ce[r][j];
            MED14_NET
            float s_[6] = {MED14_SEL};
            for (int i = 0; i < 6; i++) left[i] = s_[i];
        }
        {   /* + column 2j+5 */
            float v[14];
            for (int i = 0; i < 10; i++) v[i] = core[i];
            for (int r = 0; r < 4; r++) v[10 + r] = Co[r][j + 2];
            MED14_NET
            float s_[6] = {MED14_SEL};
            for (int i = 0; i < 6; i++) right[i] = s_[i];
        }
        {   /* the extra rows' shared values: columns 2j+1 .. 2j+4 */
            float v[4] = {To[j], Te[j + 1], To[j + 1], Te[j + 2]};
            SORT4_NET
            for (int i = 0; i < 4; i++) rt[i] = v[i];
        }
        {
            float v[4] = {Bo[j], Be[j + 1], Bo[j + 1], Be[j + 2]};
            SORT4_NET
            for (int i = 0; i < 4; i++) rb[i] = v[i];
        }
#define MEDIAN_TILE_OUT(dst, mid, row, fifth)                    \
        {                                                        \
            float v[11];                                         \
            for (int i = 0; i < 6; i++) v[i] = mid[i];           \
            for (int i = 0; i < 4; i++) v[6 + i] = row[i];       \
            v[10] = fifth;                                       \
            MED11_NET                                            \
            dst = v[MED11_OUT];                                  \
        }
        MEDIAN_TILE_OUT(o0[2 * j], left, rt, Te[j])
        MEDIAN_TILE_OUT(o0[2 * j + 1], right, rt, To[j + 2])
        MEDIAN_TILE_OUT(o1[2 * j], left, rb, Be[j])
        MEDIAN_TILE_OUT(o1[2 * j + 1], right, rb, Bo[j + 2])
#undef MEDIAN_TILE_OUT
    }
}

/* the 5x5 median of u (h >= 2, w >= 16, row stride us) by 2x2 tiles: rows y, y+1 for even y, and
 * for an odd h rows h-2, h-1 (row h-2 computed again: the same values). Spans of
 * MEDIAN_SPAN outputs; the last w % 16 as one more span of 16 overlapping the
 * previous ones (the same values written again), not by the compiler's scalar
 * epilogue, which is several times slower per pixel (min/max as compare and
 * blend). pad: (h + 4) * (w + 4) floats. */
HOT static void median5_tiles(float *RESTRICT u, int h, int w, int us, float *RESTRICT pad) {
    int pw = w + 4, w16 = w & ~15;
    median5_pad_split(u, h, w, us, pad);
    for (int y = 0; y < h; y += 2) {
        int y0 = y + 2 <= h ? y : h - 2;
        const float *P = pad + (size_t)y0 * pw;
        float *o0 = u + (size_t)y0 * us, *o1 = o0 + us;
        for (int x0 = 0; x0 < w16; x0 += MEDIAN_SPAN)
            median5_span(P, pw, o0, o1, x0, w16 - x0 < MEDIAN_SPAN ? w16 - x0 : MEDIAN_SPAN);
        if (w16 < w)
            median5_span(P, pw, o0, o1, w - 16, 16);
    }
}

/* k x k median (k = 3 or 5) of the (h, w) plane u (row stride us), in place, replicated
 * border, as cv::medianBlur computes it on float planes. pad: (h+k-1)*(w+k-1)
 * floats of scratch. */
HOT static void median_plane(float *RESTRICT u, int h, int w, int us, int k, float *RESTRICT pad) {
    int r = k / 2, pw = w + 2 * r;
    if (k == 5 && w >= 16 && h >= 2) {
        median5_tiles(u, h, w, us, pad);
        return;
    }
    float *RESTRICT srt = pad + (size_t)(h + 2 * r) * pw; /* 5 rows of pw floats after the pad */
    for (int y = 0; y < h + 2 * r; y++) {
        int sy = y - r;
        sy = sy < 0 ? 0 : (sy >= h ? h - 1 : sy);
        const float *S = u + (size_t)sy * us;
        float *D = pad + (size_t)y * pw;
        for (int x = 0; x < r; x++) { D[x] = S[0]; D[pw - 1 - x] = S[w - 1]; }
        memcpy(D + r, S, sizeof(float) * (size_t)w);
    }
    for (int y = 0; y < h; y++) {
        float *RESTRICT o = u + (size_t)y * us;
        const float *RESTRICT P = pad + (size_t)y * pw;
        if (k == 5) {
            /* the window's columns sorted once per row (shared by 5 outputs) */
            const float *c0 = srt, *c1 = srt + pw, *c2 = srt + 2 * pw, *c3 = srt + 3 * pw,
                        *c4 = srt + 4 * pw;
            sort_columns5(P, pw, srt);
            for (int x = 0; x < w; x++) {
                float v[25];
                for (int dx = 0; dx < 5; dx++) {
                    v[dx * 5] = c0[x + dx]; v[dx * 5 + 1] = c1[x + dx]; v[dx * 5 + 2] = c2[x + dx];
                    v[dx * 5 + 3] = c3[x + dx]; v[dx * 5 + 4] = c4[x + dx];
                }
                MED25_COLS_NET
                o[x] = v[MED25_COLS_OUT];
            }
        } else {
            /* the window's columns sorted once per row (shared by 3 outputs) */
            const float *c0 = srt, *c1 = srt + pw, *c2 = srt + 2 * (size_t)pw;
            sort_columns3(P, pw, srt);
            for (int x = 0; x < w; x++) {
                float v[9];
                for (int dx = 0; dx < 3; dx++) {
                    v[dx * 3] = c0[x + dx]; v[dx * 3 + 1] = c1[x + dx]; v[dx * 3 + 2] = c2[x + dx];
                }
                MED9_COLS_NET
                o[x] = v[MED9_COLS_OUT];
            }
        }
    }
}

/* ------------------------------------------------------ inner iteration */

/* Row sum of e[0..w): 16 interleaved partial sums in float over the whole
 * blocks of 16 (lane k sums e[16 b + k] in order of b; two 8-float vectors),
 * lanes k and k + 8 then added in double, the last w % 16 values added to them
 * in double, and the 8 sums added pairwise: a fixed order, the same bits in
 * the vector and the plain build. (Float partial sums: one vector add per 8
 * values instead of two conversions and two double adds; a row holds few
 * terms, and OpenCV keeps one float sum over the whole frame.) */
static inline double row_sum(const float *RESTRICT e, int w) {
    int x = 0;
#ifdef HAVE_VEC4
    v8sf lo = {0, 0, 0, 0, 0, 0, 0, 0}, hi = {0, 0, 0, 0, 0, 0, 0, 0};
    for (; x + 16 <= w; x += 16) {
        v8sf a, b;
        memcpy(&a, e + x, sizeof a);
        memcpy(&b, e + x + 8, sizeof b);
        lo += a;
        hi += b;
    }
    float f[16];
    memcpy(f, &lo, sizeof lo);
    memcpy(f + 8, &hi, sizeof hi);
#else
    float f[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    for (; x + 16 <= w; x += 16)
        for (int k = 0; k < 16; k++) f[k] += e[x + k];
#endif
    double acc[8];
    for (int k = 0; k < 8; k++) acc[k] = (double)f[k] + (double)f[k + 8];
    for (; x < w; x++) acc[x & 7] += (double)e[x];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* u of one row: thresholding (OpenCV's estimateV), then u = v + theta div p
 * (divergence with p = 0 outside; at x = 0 in OpenCV's order (p1 + p2) - p2_up);
 * e = squared change. In place in u1, u2 (each pixel reads only itself). */
#define U2_CALC(D1, D2)                                                     \
        float rho = rhoc[x] + (Ix[x] * u1[x] + Iy[x] * u2[x]);              \
        float lg = LG[x];                                                   \
        float fi = -rho * IG[x];                                            \
        fi = rho < -lg ? l_t : fi;                                          \
        fi = rho > lg ? -l_t : fi;                                          \
        float v1 = u1[x] + fi * Ix[x];                                      \
        float v2 = u2[x] + fi * Iy[x];                                      \
        float n1 = v1 + theta * (D1), n2 = v2 + theta * (D2);               \
        float a = n1 - u1[x], b = n2 - u2[x];                               \
        float ee = a * a + b * b;
#define U2_BODY(D1, D2) { U2_CALC(D1, D2) e[x] = ee; u1[x] = n1; u2[x] = n2; }

static inline void u_row2(int ws, const float *RESTRICT Ix, const float *RESTRICT Iy,
                          const float *RESTRICT LG, const float *RESTRICT IG, const float *RESTRICT rhoc,
                          float *RESTRICT u1, float *RESTRICT u2, const float *RESTRICT p11,
                          const float *RESTRICT p12, const float *RESTRICT p12u,
                          const float *RESTRICT p21, const float *RESTRICT p22,
                          const float *RESTRICT p22u, float *RESTRICT e, float l_t, float theta) {
    /* x = 0 in OpenCV's order, kept aside; the loop then runs over the whole
     * padded row, x = 0 .. ws - 1 (aligned vectors, no scalar tail), reading
     * p11[-1] and p21[-1] (the padding before the row) for a result at x = 0
     * that is replaced. The padding columns w .. ws - 1 compute values nothing
     * reads (the row sum, the median, the warp and the resize read x < w). */
    int x = 0;
    U2_CALC((p11[0] + p12[0]) - p12u[0], (p21[0] + p22[0]) - p22u[0])
    for (x = 0; x < ws; x++)
        U2_BODY((p11[x] - p11[x - 1]) + (p12[x] - p12u[x]), (p21[x] - p21[x - 1]) + (p22[x] - p22u[x]))
    e[0] = ee; u1[0] = n1; u2[0] = n2;
}

/* Dual update of one row from forward differences of the new u (row u and
 * the next row un; un == u on the last row so that dy = 0 there). The last
 * column (dx = 0, |grad| = |dy|) is computed first and kept aside; the loop
 * runs over the whole padded row (no scalar tail) and its result at x = w - 1,
 * which read the padding, is replaced. */
static inline void dual_row1(int w, int ws, const float *RESTRICT u, const float *RESTRICT un,
                             float *RESTRICT pa, float *RESTRICT pb, float taut) {
    int l = w - 1;
    float uyl = un[l] - u[l];
    float rl = 1.f / (1.f + taut * fabsf(uyl));
    float pal = pa[l] * rl, pbl = (pb[l] + taut * uyl) * rl;
    for (int x = 0; x < ws; x++) {
        float ux = u[x + 1] - u[x], uy = un[x] - u[x];
        float r = 1.f / (1.f + taut * sqrtf(ux * ux + uy * uy));
        pa[x] = (pa[x] + taut * ux) * r;
        pb[x] = (pb[x] + taut * uy) * r;
    }
    pa[l] = pal;
    pb[l] = pbl;
}

/* One fused row step of an inner iteration: u of row y (y < h), then the duals
 * of row y - 1 (y > 0; they need u of rows y - 1 and y). Returns row y's sum of
 * squared change of u (0 for y == h). */
static inline double step2(int y, int h, int w, int ws, const float *Ix, const float *Iy, const float *LG,
                           const float *IG, const float *rhoc, float *u1, float *u2, float *p11,
                           float *p12, float *p21, float *p22, float *e, const float *zero, float l_t,
                           float theta, float taut) {
    double sum = 0.0;
    if (y < h) {
        size_t o = (size_t)y * ws;
        const float *p12u = y ? p12 + o - ws : zero, *p22u = y ? p22 + o - ws : zero;
        u_row2(ws, Ix + o, Iy + o, LG + o, IG + o, rhoc + o, u1 + o, u2 + o, p11 + o, p12 + o, p12u,
               p21 + o, p22 + o, p22u, e, l_t, theta);
        sum = row_sum(e, w);
    }
    if (y > 0) {
        size_t o = (size_t)(y - 1) * ws, on = y < h ? o + ws : o;
        dual_row1(w, ws, u1 + o, u1 + on, p11 + o, p12 + o, taut);
        dual_row1(w, ws, u2 + o, u2 + on, p21 + o, p22 + o, taut);
    }
    return sum;
}

/* One inner iteration: row steps 0..h in order (row y's u, then row y-1's
 * duals), so u and p are read and written once. Returns the sum of squared
 * change of u, rows added in order. */
HOT static double iterate2(int h, int w, int ws, const float *Ix, const float *Iy, const float *LG,
                           const float *IG, const float *rhoc, float *u1, float *u2, float *p11,
                           float *p12, float *p21, float *p22, float *e, const float *zero, float l_t,
                           float theta, float taut) {
    double total = 0.0;
    for (int y = 0; y <= h; y++)
        total += step2(y, h, w, ws, Ix, Iy, LG, IG, rhoc, u1, u2, p11, p12, p21, p22, e, zero, l_t, theta,
                       taut);
    return total;
}

/* gamma > 0: the illumination variable u3 with its duals p31, p32 (OpenCV's
 * use_gamma branches: rho gains gamma u3, u3 moves by fi gamma). */
#define U3_CALC(D1, D2, D3)                                                 \
        float rho = rhoc[x] + (Ix[x] * u1[x] + Iy[x] * u2[x]) + gamma * u3[x]; \
        float lg = LG[x];                                                   \
        float fi = -rho * IG[x];                                            \
        fi = rho < -lg ? l_t : fi;                                          \
        fi = rho > lg ? -l_t : fi;                                          \
        float v1 = u1[x] + fi * Ix[x], v2 = u2[x] + fi * Iy[x];             \
        float v3 = u3[x] + fi * gamma;                                      \
        float n1 = v1 + theta * (D1), n2 = v2 + theta * (D2);               \
        float n3 = v3 + theta * (D3);                                       \
        float a = n1 - u1[x], b = n2 - u2[x], c = n3 - u3[x];               \
        float ee = a * a + b * b + c * c;
#define U3_BODY(D1, D2, D3) { U3_CALC(D1, D2, D3) e[x] = ee; u1[x] = n1; u2[x] = n2; u3[x] = n3; }

static inline void u_row3(int ws, const float *RESTRICT Ix, const float *RESTRICT Iy,
                          const float *RESTRICT LG, const float *RESTRICT IG, const float *RESTRICT rhoc,
                          float *RESTRICT u1, float *RESTRICT u2, float *RESTRICT u3,
                          const float *RESTRICT p11, const float *RESTRICT p12,
                          const float *RESTRICT p12u, const float *RESTRICT p21,
                          const float *RESTRICT p22, const float *RESTRICT p22u,
                          const float *RESTRICT p31, const float *RESTRICT p32,
                          const float *RESTRICT p32u, float *RESTRICT e, float l_t, float theta,
                          float gamma) {
    int x = 0; /* x = 0 kept aside, the padded row computed, as in u_row2 */
    U3_CALC((p11[0] + p12[0]) - p12u[0], (p21[0] + p22[0]) - p22u[0], (p31[0] + p32[0]) - p32u[0])
    for (x = 0; x < ws; x++)
        U3_BODY((p11[x] - p11[x - 1]) + (p12[x] - p12u[x]), (p21[x] - p21[x - 1]) + (p22[x] - p22u[x]),
                (p31[x] - p31[x - 1]) + (p32[x] - p32u[x]))
    e[0] = ee; u1[0] = n1; u2[0] = n2; u3[0] = n3;
}

static inline double step3(int y, int h, int w, int ws, const float *Ix, const float *Iy, const float *LG,
                           const float *IG, const float *rhoc, float *u1, float *u2, float *u3,
                           float *p11, float *p12, float *p21, float *p22, float *p31, float *p32,
                           float *e, const float *zero, float l_t, float theta, float taut,
                           float gamma) {
    double sum = 0.0;
    if (y < h) {
        size_t o = (size_t)y * ws;
        const float *p12u = y ? p12 + o - ws : zero, *p22u = y ? p22 + o - ws : zero;
        const float *p32u = y ? p32 + o - ws : zero;
        u_row3(ws, Ix + o, Iy + o, LG + o, IG + o, rhoc + o, u1 + o, u2 + o, u3 + o, p11 + o,
               p12 + o, p12u, p21 + o, p22 + o, p22u, p31 + o, p32 + o, p32u, e, l_t, theta, gamma);
        sum = row_sum(e, w);
    }
    if (y > 0) {
        size_t o = (size_t)(y - 1) * ws, on = y < h ? o + ws : o;
        dual_row1(w, ws, u1 + o, u1 + on, p11 + o, p12 + o, taut);
        dual_row1(w, ws, u2 + o, u2 + on, p21 + o, p22 + o, taut);
        dual_row1(w, ws, u3 + o, u3 + on, p31 + o, p32 + o, taut);
    }
    return sum;
}

HOT static double iterate3(int h, int w, int ws, const float *Ix, const float *Iy, const float *LG,
                           const float *IG, const float *rhoc, float *u1, float *u2, float *u3,
                           float *p11, float *p12, float *p21, float *p22, float *p31, float *p32,
                           float *e, const float *zero, float l_t, float theta, float taut,
                           float gamma) {
    double total = 0.0;
    for (int y = 0; y <= h; y++)
        total += step3(y, h, w, ws, Ix, Iy, LG, IG, rhoc, u1, u2, u3, p11, p12, p21, p22, p31, p32, e, zero,
                       l_t, theta, taut, gamma);
    return total;
}

/* ----------------------------------------------------------- the solver */

typedef struct {
    int H, W, levels;
    int hs[64], ws[64];
    float *I0s[64], *I1s[64];
    float *u[3], *un[3];            /* current level's flow (u3 with gamma), next level's */
    float *src4, *Ix, *Iy, *lg, *ig, *rhoc;
    float *p[6];
    float *pad, *e, *zero, *rows, *ftab;
    int *itab;
    void *mem;
} Work;

/* Slice length (floats) of a plane of n floats: a multiple of 16 (64 bytes)
 * that leaves consecutive slices 1280 bytes apart modulo 4096. Planes of
 * 340x256 floats are exactly 85 pages long; packed back to back, the 15 planes
 * an inner iteration streams through would all map to the same L1 cache sets
 * (and alias in the load/store unit's 4 KiB check) at every x, which cost more
 * than all its arithmetic. Staggered, they fall on 16 different set groups. */
/* Row stride (floats) of the flow's planes (u, the duals, the warp's
 * constants): w rounded up to 16, so that every row starts on a 64-byte
 * boundary and the inner iteration's vectors never straddle a cache line. */
static int row_stride(int w) { return (w + 15) & ~15; }

static size_t plane_len(size_t n) {
    n = (n + 15) & ~(size_t)15;
    size_t r = (n * sizeof(float)) % 4096, want = 1280;
    return n + ((want + 4096 - r) % 4096) / sizeof(float);
}

/* One working block per call, kept for the next call (same or smaller frames)
 * instead of being returned: a fresh ~10 MB calloc per pair cost page faults
 * and zeroing, ~10 % of a 340x256 pair. Concurrent calls (the GIL is released)
 * each take the cached block or allocate their own; at most one is kept. */
typedef struct { size_t cap; float *data; void *raw; } Block;
static Block *block_cache = NULL;

static Block *block_take(size_t nfloats) {
#if defined(__GNUC__)
    Block *b = __atomic_exchange_n(&block_cache, (Block *)NULL, __ATOMIC_ACQ_REL);
#else
    Block *b = NULL;
#endif
    if (b && b->cap >= nfloats) return b;
    if (b) { free(b->raw); free(b); }
    b = (Block *)malloc(sizeof *b);
    if (!b) return NULL;
    b->raw = malloc(nfloats * sizeof(float) + 64);
    if (!b->raw) { free(b); return NULL; }
    b->cap = nfloats;
    b->data = (float *)(((uintptr_t)b->raw + 63) & ~(uintptr_t)63);
    return b;
}

static void block_give(Block *b) {
#if defined(__GNUC__)
    b = __atomic_exchange_n(&block_cache, b, __ATOMIC_ACQ_REL);
#endif
    if (b) { free(b->raw); free(b); }
}

static int work_alloc(Work *wk, int H, int W, const Params *p) {
    wk->H = H; wk->W = W;
    wk->hs[0] = H; wk->ws[0] = W;
    int L = 1;
    while (L < p->nscales && L < 64) {
        int nh = (int)lrint(wk->hs[L - 1] * p->scale_step), nw = (int)lrint(wk->ws[L - 1] * p->scale_step);
        if (nh < MIN_LEVEL_SIDE || nw < MIN_LEVEL_SIDE) break;
        wk->hs[L] = nh; wk->ws[L] = nw; L++;
    }
    wk->levels = L;
    size_t side = (size_t)(H > W ? H : W), pyr = 0;
    for (int s = 0; s < L; s++) pyr += 2 * plane_len((size_t)wk->hs[s] * wk->ws[s]);
    size_t N = plane_len((size_t)H * row_stride(W)), N4 = plane_len(4 * (size_t)H * W);
    size_t padn = plane_len((size_t)(H + 4 + 5) * (W + 4));
    size_t Wl = plane_len((size_t)W);
    size_t total = pyr + 17 * N + N4 + padn + 2 * Wl + 4 * side + 16;
    size_t nint = 4 * side + 16;
    Block *blk = block_take(total + nint); /* ints after the floats (same size, 4 bytes) */
    if (!blk) return -1;
    wk->mem = blk;
    float *m = blk->data;
    wk->itab = (int *)(m + total);
    /* every slice starts on a 64-byte boundary (the first is rounded up) */
    m = (float *)(((uintptr_t)m + 63) & ~(uintptr_t)63);
    for (int s = 0; s < L; s++) {
        size_t n = plane_len((size_t)wk->hs[s] * wk->ws[s]);
        wk->I0s[s] = m; m += n; wk->I1s[s] = m; m += n;
    }
    for (int c = 0; c < 3; c++) { wk->u[c] = m; m += N; wk->un[c] = m; m += N; }
    wk->src4 = m; m += N4;
    wk->Ix = m; m += N; wk->Iy = m; m += N; wk->lg = m; m += N; wk->ig = m; m += N; wk->rhoc = m; m += N;
    for (int c = 0; c < 6; c++) { wk->p[c] = m; m += N; }
    wk->pad = m; m += padn;
    wk->e = m; m += Wl; wk->zero = m; m += Wl;
    wk->ftab = m; m += 4 * side;
    memset(wk->zero, 0, Wl * sizeof(float));
    wk->rows = wk->pad; /* resize's two rows (2*dw <= 2*W floats) borrow the median's pad */
    return 0;
}

static void solve_level(Work *wk, int s, const Params *p, LevelStats *st) {
    int h = wk->hs[s], w = wk->ws[s], ws = row_stride(w);
    size_t n = (size_t)h * ws;
    int g3 = p->gamma != 0.f;
    double t0 = 0;
    float eps = (float)(p->epsilon * p->epsilon * (double)h * (double)w);
    gradient4(wk->I1s[s], h, w, wk->src4);
    for (int c = 0; c < (g3 ? 6 : 4); c++) memset(wk->p[c], 0, n * sizeof(float));
    for (int warp = 0; warp < p->warps; warp++) {
        if (st) t0 = cpu_now();
        warp_level(wk->src4, wk->I0s[s], wk->u[0], wk->u[1], h, w, ws, p->l_t, wk->Ix, wk->Iy, wk->lg,
                   wk->ig, wk->rhoc, wk->itab, wk->itab + wk->W, wk->pad);
        if (st) { st->t_warp += cpu_now() - t0; st->warps_run++; }
        double err = DBL_MAX;
        for (int outer = 0; err > eps && outer < p->outer; outer++) {
            if (p->median > 1) {
                if (st) t0 = cpu_now();
                median_plane(wk->u[0], h, w, ws, p->median, wk->pad);
                median_plane(wk->u[1], h, w, ws, p->median, wk->pad);
                if (st) { st->t_median += cpu_now() - t0; st->medians++; }
            }
            if (st) t0 = cpu_now();
            for (int inner = 0; err > eps && inner < p->inner; inner++) {
                if (g3)
                    err = iterate3(h, w, ws, wk->Ix, wk->Iy, wk->lg, wk->ig, wk->rhoc, wk->u[0], wk->u[1],
                                   wk->u[2], wk->p[0], wk->p[1], wk->p[2], wk->p[3], wk->p[4], wk->p[5],
                                   wk->e, wk->zero, p->l_t, p->theta, p->taut, p->gamma);
                else
                    err = iterate2(h, w, ws, wk->Ix, wk->Iy, wk->lg, wk->ig, wk->rhoc, wk->u[0], wk->u[1],
                                   wk->p[0], wk->p[1], wk->p[2], wk->p[3], wk->e, wk->zero, p->l_t,
                                   p->theta, p->taut);
                if (st) st->iterations++;
            }
            if (st) st->t_iter += cpu_now() - t0;
        }
    }
}

/* n grey values, uint8 (u8) or float32, as float32 values in [0, 255]. */
static void grey_to_float(const void *src, int u8, size_t n, float *dst) {
    if (u8) {
        const unsigned char *s = (const unsigned char *)src;
        for (size_t i = 0; i < n; i++) dst[i] = (float)s[i];
    } else {
        memcpy(dst, src, n * sizeof(float));
    }
}

/* prev, next: grey planes (H, W) in [0, 255], uint8 (u8) or float32, converted
 * straight into the working block; out: (H, W, 2). stats: one per level or
 * NULL. Returns 0, or -1 when memory runs out. */
static int tvl1_run(const void *prev, const void *next, int u8, int H, int W, const Params *p,
                    float *out, LevelStats *stats, int *levels_out) {
    Work wk;
    memset(&wk, 0, sizeof wk);
    if (work_alloc(&wk, H, W, p) != 0) return -1;
    int L = wk.levels, g3 = p->gamma != 0.f;
    *levels_out = L;
    double t0 = stats ? cpu_now() : 0;
    grey_to_float(prev, u8, (size_t)H * W, wk.I0s[0]);
    grey_to_float(next, u8, (size_t)H * W, wk.I1s[0]);
    double inv = 1.0 / p->scale_step;
    for (int s = 1; s < L; s++) {
        resize_linear(wk.I0s[s - 1], wk.hs[s - 1], wk.ws[s - 1], wk.ws[s - 1], wk.I0s[s], wk.hs[s], wk.ws[s],
                      wk.ws[s], inv, inv,
                      wk.itab, wk.ftab, wk.rows);
        resize_linear(wk.I1s[s - 1], wk.hs[s - 1], wk.ws[s - 1], wk.ws[s - 1], wk.I1s[s], wk.hs[s], wk.ws[s],
                      wk.ws[s], inv, inv,
                      wk.itab, wk.ftab, wk.rows);
    }
    if (stats) stats[0].t_resize += cpu_now() - t0;
    /* the coarsest level starts from zero flow */
    for (int c = 0; c < 3; c++)
        memset(wk.u[c], 0, sizeof(float) * (size_t)wk.hs[L - 1] * row_stride(wk.ws[L - 1]));
    float upscale = (float)(1.0 / p->scale_step);
    for (int s = L - 1; s >= 0; s--) {
        LevelStats *st = stats ? &stats[s] : NULL;
        if (st) { st->h = wk.hs[s]; st->w = wk.ws[s]; }
        solve_level(&wk, s, p, st);
        if (s == 0) break;
        if (st) t0 = cpu_now();
        int dh = wk.hs[s - 1], dw = wk.ws[s - 1];
        double sy = 1.0 / ((double)dh / wk.hs[s]), sx = 1.0 / ((double)dw / wk.ws[s]);
        for (int c = 0; c < (g3 ? 3 : 2); c++) {
            resize_linear(wk.u[c], wk.hs[s], wk.ws[s], row_stride(wk.ws[s]), wk.un[c], dh, dw, row_stride(dw),
                          sy, sx, wk.itab, wk.ftab, wk.rows);
            float *t = wk.u[c]; wk.u[c] = wk.un[c]; wk.un[c] = t;
        }
        size_t n = (size_t)dh * row_stride(dw);
        for (size_t i = 0; i < n; i++) { wk.u[0][i] *= upscale; wk.u[1][i] *= upscale; }
        if (st) st->t_resize += cpu_now() - t0;
    }
    for (int y = 0; y < H; y++) {
        const float *a = wk.u[0] + (size_t)y * row_stride(W), *b = wk.u[1] + (size_t)y * row_stride(W);
        float *o = out + (size_t)y * W * 2;
        for (int x = 0; x < W; x++) { o[2 * x] = a[x]; o[2 * x + 1] = b[x]; }
    }
    block_give((Block *)wk.mem);
    return 0;
}

/* The solver's parameters from OpenCV's (checked by the caller). */
static void params_make(Params *p, double tau, double lambda, double theta, int nscales, int warps,
                        double epsilon, int inner, int outer, double scale_step, double gamma,
                        int median) {
    p->tau = tau; p->lambda = lambda; p->theta_d = theta; p->epsilon = epsilon;
    p->scale_step = scale_step; p->gamma_d = gamma;
    p->l_t = (float)(lambda * theta);
    p->theta = (float)theta;
    p->taut = (float)(tau / theta);
    p->gamma = (float)gamma;
    p->nscales = nscales; p->warps = warps; p->inner = inner; p->outer = outer; p->median = median;
}

/* ------------------------------------------------------------- Python */
#ifndef FLOWPREP_NO_PYTHON

static int get_plane(PyObject *obj, Py_buffer *view, const char *name) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_ND) != 0) return -1;
    const char *f = view->format ? view->format : "B";
    int ok8 = (strcmp(f, "B") == 0 || strcmp(f, "=B") == 0 || strcmp(f, "<B") == 0) && view->itemsize == 1;
    int okf = (strcmp(f, "f") == 0 || strcmp(f, "=f") == 0 || strcmp(f, "<f") == 0) && view->itemsize == 4;
    if (view->ndim != 2 || !(ok8 || okf)) {
        PyErr_Format(PyExc_ValueError, "%s must be a C-contiguous 2-D uint8 or float32 buffer", name);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *py_compute(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kw[] = {"prev", "next", "out", "tau", "lambda_", "theta", "nscales", "warps",
                         "epsilon", "inner_iterations", "outer_iterations", "scale_step", "gamma",
                         "median_filtering", "stats", NULL};
    PyObject *o0, *o1, *oo;
    double tau, lambda, theta, epsilon, scale_step, gamma;
    int nscales, warps, inner, outer, median, want_stats = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOdddiidiiddi|p", kw, &o0, &o1, &oo, &tau,
                                     &lambda, &theta, &nscales, &warps, &epsilon, &inner, &outer,
                                     &scale_step, &gamma, &median, &want_stats))
        return NULL;
    if (!(tau > 0) || !(lambda > 0) || !(theta > 0) || !(epsilon >= 0) || !(scale_step > 0 && scale_step < 1) ||
        !(gamma >= 0) || nscales < 1 || warps < 1 || inner < 1 || outer < 1 ||
        !(median == 0 || median == 1 || median == 3 || median == 5)) {
        PyErr_SetString(PyExc_ValueError, "bad TV-L1 parameter (see flowprep.flow.torch_tvl1.validate_tvl1_params)");
        return NULL;
    }
    Py_buffer b0, b1, bo;
    if (get_plane(o0, &b0, "prev") != 0) return NULL;
    if (get_plane(o1, &b1, "next") != 0) { PyBuffer_Release(&b0); return NULL; }
    if (PyObject_GetBuffer(oo, &bo, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE | PyBUF_FORMAT) != 0) {
        PyBuffer_Release(&b0); PyBuffer_Release(&b1); return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t H = b0.shape[0], W = b0.shape[1];
    const char *fo = bo.format ? bo.format : "B";
    if (b1.shape[0] != H || b1.shape[1] != W || b0.itemsize != b1.itemsize) {
        PyErr_SetString(PyExc_ValueError, "prev and next must have the same shape and dtype");
        goto done;
    }
    if (H < 1 || W < 1 || H > 65535 || W > 65535) {
        PyErr_SetString(PyExc_ValueError, "frames must be between 1x1 and 65535x65535 pixels");
        goto done;
    }
    if (!(strchr(fo, 'f') && bo.itemsize == 4) || bo.len != (Py_ssize_t)(H * W * 2 * 4)) {
        PyErr_SetString(PyExc_ValueError, "out must be a writable C-contiguous float32 buffer of H*W*2 values");
        goto done;
    }
    Params p;
    params_make(&p, tau, lambda, theta, nscales, warps, epsilon, inner, outer, scale_step, gamma, median);
    LevelStats stats[64];
    memset(stats, 0, sizeof stats);
    int levels = 0, rc;
    Py_BEGIN_ALLOW_THREADS
    rc = tvl1_run(b0.buf, b1.buf, b0.itemsize == 1, (int)H, (int)W, &p, (float *)bo.buf,
                  want_stats ? stats : NULL, &levels);
    Py_END_ALLOW_THREADS
    if (rc != 0) { PyErr_NoMemory(); goto done; }
    if (!want_stats) { Py_INCREF(Py_None); result = Py_None; goto done; }
    result = PyList_New(levels);
    if (!result) goto done;
    for (int s = 0; s < levels; s++) {
        LevelStats *st = &stats[s];
        PyObject *d = Py_BuildValue("{s:i,s:i,s:i,s:i,s:i,s:l,s:d,s:d,s:d,s:d}", "level", s, "height",
                                    st->h, "width", st->w, "warps", st->warps_run, "medians", st->medians,
                                    "iterations", st->iterations, "warp_s", st->t_warp, "median_s",
                                    st->t_median, "iterate_s", st->t_iter, "resize_s", st->t_resize);
        if (!d) { Py_CLEAR(result); goto done; }
        PyList_SET_ITEM(result, s, d);
    }
done:
    PyBuffer_Release(&b0);
    PyBuffer_Release(&b1);
    PyBuffer_Release(&bo);
    return result;
}

static PyObject *py_isa(PyObject *self, PyObject *unused) {
    (void)self; (void)unused;
#if defined(HAVE_CLONES)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) return PyUnicode_FromString("avx2");
    if (__builtin_cpu_supports("avx")) return PyUnicode_FromString("avx");
    return PyUnicode_FromString("sse2");
#else
    return PyUnicode_FromString("generic");
#endif
}

static PyMethodDef methods[] = {
    {"compute", (PyCFunction)(void (*)(void))py_compute, METH_VARARGS | METH_KEYWORDS,
     "compute(prev, next, out, tau, lambda_, theta, nscales, warps, epsilon, inner_iterations, "
     "outer_iterations, scale_step, gamma, median_filtering, stats=False): TV-L1 flow into out."},
    {"isa", py_isa, METH_NOARGS, "isa() -> the instruction set the hot loops run with here."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "flowprep._tvl1",
                                    "TV-L1 optical flow (OpenCV DualTVL1's algorithm), compiled.", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__tvl1(void) {
    init_cubic_tab();
    return PyModule_Create(&module);
}
#endif /* FLOWPREP_NO_PYTHON */
