// Elementwise kernels: activations, residual add, copy, dropout.
#include "kernels.h"
#include "mix64.h"
#include "../parallel.h"
#include <math.h>
#include <string.h>

typedef struct {
    const float *a, *b;
    float *y;
} unary_args;

// The range bodies copy the arguments into restrict locals first: stores through r->y could
// otherwise alias *r itself, which keeps the compiler from vectorising the loop.
static void relu_range(void *p, int64_t begin, int64_t end) {
    const unary_args *r = p;
    const float *restrict a = r->a;
    float *restrict y = r->y;
    for (int64_t i = begin; i < end; i++) y[i] = a[i] > 0.0f ? a[i] : 0.0f;
}

static void relu6_range(void *p, int64_t begin, int64_t end) {
    const unary_args *r = p;
    const float *restrict a = r->a;
    float *restrict y = r->y;
    for (int64_t i = begin; i < end; i++) {
        const float v = a[i] > 0.0f ? a[i] : 0.0f;
        y[i] = v < 6.0f ? v : 6.0f;
    }
}

static void add_range(void *p, int64_t begin, int64_t end) {
    const unary_args *r = p;
    const float *restrict a = r->a, *restrict b = r->b;
    float *restrict y = r->y;
    for (int64_t i = begin; i < end; i++) y[i] = a[i] + b[i];
}

void kn_relu(const float *x, float *y, int64_t count) {
    unary_args r = {x, NULL, y};
    kn_parallel_for(count, KN_GRAIN_ELEMENTS, relu_range, &r);
}

void kn_relu6(const float *x, float *y, int64_t count) {
    unary_args r = {x, NULL, y};
    kn_parallel_for(count, KN_GRAIN_ELEMENTS, relu6_range, &r);
}

void kn_add(const float *a, const float *b, float *y, int64_t count) {
    unary_args r = {a, b, y};
    kn_parallel_for(count, KN_GRAIN_ELEMENTS, add_range, &r);
}

void kn_copy(const float *x, float *y, int64_t count) {
    if (x != y) memmove(y, x, sizeof(float) * count);
}

typedef struct {
    const float *x;
    float *y;
    float p, keep_scale;
    uint64_t threshold, seed;
} dropout_args;

static void dropout_range(void *context, int64_t begin, int64_t end) {
    const dropout_args *r = context;
    const float *restrict x = r->x;
    float *restrict y = r->y;
    const float p = r->p, keep_scale = r->keep_scale;
    const uint64_t seed = r->seed, threshold = r->threshold;
    for (int64_t i = begin; i < end; i++) {
        float s = (p >= 1.0f || mix64(seed ^ mix64((uint64_t)i)) < threshold) ? 0.0f : keep_scale;
        if (p <= 0.0f) s = 1.0f;
        y[i] = x[i] * s;
    }
}

void kn_dropout(const float *x, float *y, int64_t count, float p, uint64_t seed) {
    dropout_args r = {x, y, p, p < 1.0f ? 1.0f / (1.0f - p) : 0.0f,
                      (uint64_t)((double)p * 18446744073709551616.0 /* 2^64 */), seed};
    kn_parallel_for(count, KN_GRAIN_ELEMENTS, dropout_range, &r);
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
