// Elementwise kernels: activations, residual add, copy, dropout.
#include "kernels.h"
#include "mix64.h"
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

void kn_dropout(const float *x, float *y, int64_t count, float p, uint64_t seed) {
    const float keep_scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    const uint64_t threshold = (uint64_t)((double)p * 18446744073709551616.0 /* 2^64 */);
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; i++) {
        float s = (p >= 1.0f || mix64(seed ^ mix64((uint64_t)i)) < threshold) ? 0.0f : keep_scale;
        if (p <= 0.0f) s = 1.0f;
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
