/* LayerNorm over the last axis of (rows, C), in fp32 whatever the storage type.
 *
 * PyTorch's CPU LayerNorm handles ESC's narrow rows (45 to 384 channels) one row at a time with
 * scalar tails; with AVX-512 a row is a few masked 16-lane vectors here, about 2 to 4 times
 * faster at 45 channels. Without AVX-512 a portable loop does the same arithmetic.
 * Statistics are two-pass: the mean, then the mean of squared deviations from it.
 */
#include <math.h>

#include "common.h"

#if defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>

#define MAX_CHUNKS 64 /* 1024 channels */

ESCX_INLINE __m512 load_lanes(const void *p, int64_t off, __mmask16 m, int bf16) {
    if (bf16) {
        const __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)p + off);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    return _mm512_maskz_loadu_ps(m, (const float *)p + off);
}

ESCX_INLINE void store_lanes(void *p, int64_t off, __mmask16 m, __m512 v, int bf16) {
    if (!bf16) {
        _mm512_mask_storeu_ps((float *)p + off, m, v);
        return;
    }
    /* round to nearest even, NaN stays a quiet NaN (as f32_to_bf16) */
    const __m512i u = _mm512_castps_si512(v);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd));
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(
        _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
    r = _mm512_mask_mov_epi32(r, nan, _mm512_set1_epi32(0x7fc00000));
    _mm256_mask_storeu_epi16((uint16_t *)p + off, m, _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16)));
}

ESCX_INLINE void norm_row(const void *restrict x, void *restrict y, const float *restrict gamma,
                          const float *restrict beta, int64_t r, int c, float eps, int bf16) {
    const int chunks = (c + 15) / 16;
    const __mmask16 tail = (__mmask16)((1u << (c - 16 * (chunks - 1))) - 1u);
    __m512 v[MAX_CHUNKS];
    __m512 acc = _mm512_setzero_ps();
    for (int k = 0; k < chunks; ++k) {
        v[k] = load_lanes(x, r * c + 16 * k, k == chunks - 1 ? tail : 0xffff, bf16);
        acc = _mm512_add_ps(acc, v[k]);
    }
    const __m512 mean = _mm512_set1_ps(_mm512_reduce_add_ps(acc) / c);
    __m512 sq = _mm512_setzero_ps();
    for (int k = 0; k < chunks; ++k) {
        v[k] = _mm512_maskz_sub_ps(k == chunks - 1 ? tail : 0xffff, v[k], mean);
        sq = _mm512_fmadd_ps(v[k], v[k], sq);
    }
    const __m512 rstd = _mm512_set1_ps(1.0f / sqrtf(_mm512_reduce_add_ps(sq) / c + eps));
    for (int k = 0; k < chunks; ++k) {
        const __mmask16 m = k == chunks - 1 ? tail : 0xffff;
        const __m512 g = _mm512_maskz_loadu_ps(m, gamma + 16 * k);
        const __m512 b = _mm512_maskz_loadu_ps(m, beta + 16 * k);
        store_lanes(y, r * c + 16 * k, m, _mm512_fmadd_ps(_mm512_mul_ps(v[k], rstd), g, b), bf16);
    }
}

#else

#define MAX_CHUNKS 64

ESCX_INLINE void norm_row(const void *restrict x, void *restrict y, const float *restrict gamma,
                          const float *restrict beta, int64_t r, int c, float eps, int bf16) {
    float v[16 * MAX_CHUNKS];
    for (int e = 0; e < c; ++e)
        v[e] = bf16 ? bf16_to_f32(((const uint16_t *)x)[r * c + e]) : ((const float *)x)[r * c + e];
    float sum = 0.0f;
    for (int e = 0; e < c; ++e) sum += v[e];
    const float mean = sum / c;
    float sq = 0.0f;
    for (int e = 0; e < c; ++e) {
        v[e] -= mean;
        sq += v[e] * v[e];
    }
    const float rstd = 1.0f / sqrtf(sq / c + eps);
    for (int e = 0; e < c; ++e) {
        const float o = v[e] * rstd * gamma[e] + beta[e];
        if (bf16) ((uint16_t *)y)[r * c + e] = f32_to_bf16(o);
        else ((float *)y)[r * c + e] = o;
    }
}

#endif

ESCX_INLINE void norm_rows(const void *restrict x, void *restrict y, const float *restrict gamma,
                           const float *restrict beta, int64_t rows, int c, float eps, int bf16,
                           int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t r = 0; r < rows; ++r) norm_row(x, y, gamma, beta, r, c, eps, bf16);
}

/* Returns 0, or -1 when the width is past what the kernel handles (use PyTorch). */
int escx_layer_norm(const void *x, void *y, const float *gamma, const float *beta, int64_t rows,
                    int c, float eps, int bf16, int threads) {
    if (c < 1 || c > 16 * MAX_CHUNKS) return -1;
    if (c == 45) { /* ESC's full-resolution width: the chunk loops unroll */
        norm_rows(x, y, gamma, beta, rows, 45, eps, bf16, threads);
        return 0;
    }
    norm_rows(x, y, gamma, beta, rows, c, eps, bf16, threads);
    return 0;
}
