// Elementwise kernels: activations, residual add, copy, dropout.
#include "kernels.h"
#include <math.h>
#include <string.h>

void kn_relu(const float *x, float *y, int64_t count) {
    #pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < count; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void kn_relu6(const float *x, float *y, int64_t count) {
    #pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < count; i++) {
        float v = x[i] > 0.0f ? x[i] : 0.0f;
        y[i] = v < 6.0f ? v : 6.0f;
    }
}

void kn_add(const float *a, const float *b, float *y, int64_t count) {
    #pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < count; i++) y[i] = a[i] + b[i];
}

void kn_copy(const float *x, float *y, int64_t count) {
    if (x != y) memmove(y, x, sizeof(float) * count);
}

// SplitMix64 finaliser: a good 64-bit mix, so element i's draw depends only on (seed, i).
static inline uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void kn_dropout(const float *x, float *y, float *mask, int64_t count, float p, uint64_t seed) {
    const float keep_scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    const uint64_t threshold = (uint64_t)((double)p * 18446744073709551616.0 /* 2^64 */);
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; i++) {
        float s = (p >= 1.0f || mix64(seed ^ mix64((uint64_t)i)) < threshold) ? 0.0f : keep_scale;
        if (p <= 0.0f) s = 1.0f;
        if (mask) mask[i] = s;
        y[i] = x[i] * s;
    }
}

int64_t kn_count_nonfinite(const float *x, int64_t count, int64_t *first) {
    int64_t bad = 0, at = -1;
    for (int64_t i = 0; i < count; i++)
        if (!isfinite(x[i])) {
            if (at < 0) at = i;
            bad++;
        }
    *first = at;
    return bad;
}
