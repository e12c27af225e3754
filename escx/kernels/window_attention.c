/* Swin window attention over 4x4 windows (16 tokens), one window per step, every head.
 *
 * Same function as escx.backbones.swin_inference's PyTorch route: softmax(q k^T / sqrt(hd) +
 * bias + mask) v, in fp32 whatever the storage type. PyTorch runs it as batched products of
 * 16x16 matrices, which cost more in call and copy overhead than in arithmetic; here one pass
 * reads a window's projections and writes its heads' outputs in token order.
 *
 * Layout: qkv (windows, 16, 3C) with C = heads * hd, the q, k and v parts head-major, as the
 * qkv linear writes them; out (windows, 16, C). bias_t (heads, 16, 16) and masks_t (3, 16, 16)
 * are transposed ([key][query]) because scores are kept as one vector over the 16 queries per
 * key: the softmax then needs no horizontal reductions. masks_t holds the masks of the last
 * window row, the last window column and the corner window of a shifted grid (NULL: unshifted).
 */
#include <stdlib.h>

#include "common.h"

#define N 16
#define MAX_C 512
#define PAD 32

/* exp(x) for x <= 0 (softmax after subtracting the maximum), lane-wise, within a few ulp:
 * Cody-Waite reduction by ln 2 and a degree-6 polynomial. Branch-free so it vectorises. */
ESCX_INLINE vf16 exp_nonpositive(vf16 x) {
    x = vmax(x, splat(-87.0f));
    const vi16 n = __builtin_convertvector(x * 1.44269504088896341f - 0.5f, vi16);
    const vf16 fn = __builtin_convertvector(n, vf16);
    const vf16 r = x - fn * 0.693145751953125f - fn * 1.42860682030941723e-6f;
    vf16 p = splat(1.0f / 720.0f);
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const vi16 bits = (n + 127) << 23;
    vf16 two_n;
    memcpy(&two_n, &bits, sizeof two_n);
    return p * two_n;
}

ESCX_INLINE void attend_window(const void *restrict qkv, void *restrict out,
                               const float *restrict bias_t, const float *restrict mask,
                               int64_t w, int heads, int hd, float scale, int bf16,
                               float (*restrict buf)[3 * MAX_C + PAD],
                               float (*restrict ob)[MAX_C + PAD]) {
    const int c = heads * hd, row = 3 * c;
    const int64_t base = w * N * row;
    for (int i = 0; i < N; ++i) {
        if (bf16) {
            const uint16_t *src = (const uint16_t *)qkv + base + (int64_t)i * row;
            for (int e = 0; e < row; ++e) buf[i][e] = bf16_to_f32(src[e]);
        } else {
            memcpy(buf[i], (const float *)qkv + base + (int64_t)i * row, row * sizeof(float));
        }
    }
    for (int h = 0; h < heads; ++h) {
        const int q0 = h * hd, k0 = c + q0, v0 = 2 * c + q0;
        const float *b = bias_t + (int64_t)h * N * N;
        vf16 st[N]; /* st[j][i]: score of query i for key j */
        for (int j = 0; j < N; ++j) st[j] = vload(b + j * N);
        if (mask)
            for (int j = 0; j < N; ++j) st[j] += vload(mask + j * N);
        for (int d = 0; d < hd; ++d) {
            float lanes[N];
            for (int i = 0; i < N; ++i) lanes[i] = buf[i][q0 + d];
            const vf16 qd = vload(lanes) * scale;
            for (int j = 0; j < N; ++j) st[j] += buf[j][k0 + d] * qd;
        }
        vf16 mx = st[0];
        for (int j = 1; j < N; ++j) mx = vmax(st[j], mx);
        vf16 sum = splat(0.0f);
        for (int j = 0; j < N; ++j) {
            st[j] = exp_nonpositive(st[j] - mx);
            sum += st[j];
        }
        const vf16 inv = 1.0f / sum;
        if (hd < 12) {
            /* narrow heads: outputs as vectors over the queries, stored transposed */
            for (int j = 0; j < N; ++j) st[j] *= inv;
            for (int d = 0; d < hd; ++d) {
                vf16 acc = splat(0.0f);
                for (int j = 0; j < N; ++j) acc += buf[j][v0 + d] * st[j];
                for (int i = 0; i < N; ++i) ob[i][q0 + d] = acc[i];
            }
        } else {
            /* wide heads: each query's output as vectors over channels, four queries at once;
             * lanes past hd spill into the next head's columns, which it overwrites later */
            float p[N][N] __attribute__((aligned(64)));
            for (int j = 0; j < N; ++j) vstore(p[j], st[j] * inv);
            for (int k = 0; k < hd; k += N) {
                for (int i = 0; i < N; i += 4) {
                    vf16 a0 = splat(0.0f), a1 = a0, a2 = a0, a3 = a0;
                    for (int j = 0; j < N; ++j) {
                        const vf16 vj = vload(buf[j] + v0 + k);
                        a0 += p[j][i] * vj;
                        a1 += p[j][i + 1] * vj;
                        a2 += p[j][i + 2] * vj;
                        a3 += p[j][i + 3] * vj;
                    }
                    vstore(ob[i] + q0 + k, a0);
                    vstore(ob[i + 1] + q0 + k, a1);
                    vstore(ob[i + 2] + q0 + k, a2);
                    vstore(ob[i + 3] + q0 + k, a3);
                }
            }
        }
    }
    for (int i = 0; i < N; ++i) {
        if (bf16) {
            uint16_t *dst = (uint16_t *)out + (w * N + i) * c;
            for (int e = 0; e < c; ++e) dst[e] = f32_to_bf16(ob[i][e]);
        } else {
            memcpy((float *)out + (w * N + i) * c, ob[i], c * sizeof(float));
        }
    }
}

/* Per-thread scratch: a window's projections in fp32 and its output rows. On the heap: OpenMP
 * worker threads may have small stacks. */
struct scratch {
    float buf[N][3 * MAX_C + PAD];
    float ob[N][MAX_C + PAD];
};

ESCX_INLINE int attend(const void *restrict qkv, void *restrict out, const float *restrict bias_t,
                       const float *restrict masks_t, int64_t windows, int64_t nh, int64_t nw,
                       int heads, int hd, float scale, int bf16, int threads) {
    int failed = 0;
#pragma omp parallel num_threads(threads)
    {
        struct scratch *s = 0;
        if (posix_memalign((void **)&s, 64, sizeof *s)) {
            s = 0;
#pragma omp atomic write
            failed = 1;
        }
#pragma omp barrier
        if (!failed) {
            /* the last head's wide-path reads run up to PAD floats past a row: keep them finite */
            for (int i = 0; i < N; ++i) memset(s->buf[i] + 3 * heads * hd, 0, PAD * sizeof(float));
#pragma omp for schedule(static)
            for (int64_t w = 0; w < windows; ++w) {
                const float *mask = 0;
                if (masks_t) {
                    const int last_row = (w / nw) % nh == nh - 1, last_col = w % nw == nw - 1;
                    mask = last_row && last_col ? masks_t + 2 * N * N
                           : last_row           ? masks_t
                           : last_col           ? masks_t + N * N
                                                : 0;
                }
                attend_window(qkv, out, bias_t, mask, w, heads, hd, scale, bf16, s->buf, s->ob);
            }
        }
        free(s);
    }
    return failed ? -1 : 0;
}

/* Head sizes of ESC's stages get a specialised copy (the loops over hd unroll). */
#define CALL(HD, BF16) attend(qkv, out, bias_t, masks_t, windows, nh, nw, heads, HD, scale, BF16, threads)
#define CASE(HD, BF16) case HD: return CALL(HD, BF16);
#define DISPATCH(BF16)                                                                          \
    switch (hd) {                                                                               \
    CASE(6, BF16) CASE(8, BF16) CASE(12, BF16) CASE(15, BF16) CASE(16, BF16) CASE(24, BF16)     \
    default: return CALL(hd, BF16);                                                             \
    }

/* Returns 0, or -1 when the width is past what the kernel's buffers hold or memory ran out (the
 * caller then uses PyTorch). */
int escx_window_attention(const void *qkv, void *out, const float *bias_t, const float *masks_t,
                          int64_t windows, int64_t nh, int64_t nw, int heads, int hd, float scale,
                          int bf16, int threads) {
    if (heads * hd > MAX_C || hd < 1) return -1;
    if (bf16) DISPATCH(1)
    DISPATCH(0)
}
