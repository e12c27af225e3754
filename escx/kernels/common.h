/* Shared helpers of escx's native CPU kernels: bf16 conversion and 16-lane float vectors.
 *
 * bf16 values travel as uint16_t. Conversion to bf16 rounds to nearest even and keeps NaN a
 * quiet NaN, as PyTorch's c10::BFloat16 does, so results round exactly as PyTorch's would.
 * The vectors are GCC vector extensions: the compiler maps them onto AVX-512 registers where the
 * CPU has them and onto narrower ones elsewhere.
 */
#ifndef ESCX_KERNELS_COMMON_H
#define ESCX_KERNELS_COMMON_H

#include <stdint.h>
#include <string.h>

#define ESCX_INLINE static inline __attribute__((always_inline))

typedef float vf16 __attribute__((vector_size(64)));
typedef int32_t vi16 __attribute__((vector_size(64)));

ESCX_INLINE float bf16_to_f32(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

ESCX_INLINE uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u = (u & 0x7fffffffu) > 0x7f800000u ? 0x7fc00000u : u + 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

ESCX_INLINE vf16 splat(float x) { return (vf16){} + x; }

ESCX_INLINE vf16 vload(const float *p) {
    vf16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

ESCX_INLINE void vstore(float *p, vf16 v) { memcpy(p, &v, sizeof v); }

ESCX_INLINE vf16 vmax(vf16 a, vf16 b) {
    vi16 m = a > b;
    return (vf16)(((vi16)a & m) | ((vi16)b & ~m));
}

#endif
