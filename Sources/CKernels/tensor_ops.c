// The composite tier's generic primitives (include/tensor_ops.h). Every loop walks rows of the
// innermost dimension; a row's start is decoded from its index once, so the inner loops are
// plain strided loops. Work is split over rows (or output elements) with the static partition.
#include "tensor_ops.h"
#include <math.h>
#include <stddef.h>
#include "parallel.h"

// Offsets of row `row` (all dimensions but the last) through up to three stride vectors.
static inline void row_offsets(int64_t row, const int64_t *shape, int rank, const int64_t *s0, const int64_t *s1,
                               const int64_t *s2, int64_t *o0, int64_t *o1, int64_t *o2) {
    int64_t a = 0, b = 0, c = 0;
    for (int k = rank - 2; k >= 0; k--) {
        const int64_t i = row % shape[k];
        row /= shape[k];
        if (s0) a += i * s0[k];
        if (s1) b += i * s1[k];
        if (s2) c += i * s2[k];
    }
    *o0 = a, *o1 = b, *o2 = c;
}

static int64_t element_count(const int64_t *shape, int rank) {
    int64_t n = 1;
    for (int k = 0; k < rank; k++) n *= shape[k];
    return n;
}

// ---- strided copy and scatter ----------------------------------------------------------------

typedef struct {
    const float *x;
    float *y;
    const int64_t *strides, *shape;
    int rank;
    int scatter;
} strided_args;

static void strided_rows(void *context, int64_t begin, int64_t end) {
    const strided_args *r = context;
    const int64_t len = r->rank ? r->shape[r->rank - 1] : 1, step = r->rank ? r->strides[r->rank - 1] : 0;
    for (int64_t row = begin; row < end; row++) {
        int64_t base, unused1, unused2;
        row_offsets(row, r->shape, r->rank, r->strides, NULL, NULL, &base, &unused1, &unused2);
        if (r->scatter) {
            const float *restrict x = r->x + row * len;
            float *restrict y = r->y + base;
            for (int64_t i = 0; i < len; i++) y[i * step] = x[i];
        } else {
            const float *restrict x = r->x + base;
            float *restrict y = r->y + row * len;
            if (step == 1)
                for (int64_t i = 0; i < len; i++) y[i] = x[i];
            else
                for (int64_t i = 0; i < len; i++) y[i] = x[i * step];
        }
    }
}

static void strided(const float *x, const int64_t *strides, const int64_t *shape, int rank, float *y, int scatter) {
    const int64_t count = element_count(shape, rank);
    if (count == 0) return;
    const int64_t len = rank ? shape[rank - 1] : 1;
    strided_args r = {x, y, strides, shape, rank, scatter};
    kn_parallel_for(count / len, len >= KN_GRAIN_ELEMENTS ? 1 : KN_GRAIN_ELEMENTS / len, strided_rows, &r);
}

void kn_strided_copy(const float *x, const int64_t *strides, const int64_t *shape, int rank, float *y) {
    strided(x, strides, shape, rank, y, 0);
}

void kn_strided_scatter(const float *x, const int64_t *shape, int rank, float *y, const int64_t *strides) {
    strided(x, strides, shape, rank, y, 1);
}

// ---- broadcasting binary ---------------------------------------------------------------------

typedef struct {
    int op;
    const float *a, *b;
    const int64_t *as, *bs, *shape;
    int rank;
    float *y;
} binary_args;

#define BINARY_LOOP(expr)                                                           \
    for (int64_t i = 0; i < len; i++) {                                             \
        const float u = a[i * sa], v = b[i * sb];                                   \
        y[i] = (expr);                                                              \
    }

static void binary_rows(void *context, int64_t begin, int64_t end) {
    const binary_args *r = context;
    const int last = r->rank - 1;
    const int64_t len = r->rank ? r->shape[last] : 1;
    const int64_t sa = r->rank ? r->as[last] : 0, sb = r->rank ? r->bs[last] : 0;
    for (int64_t row = begin; row < end; row++) {
        int64_t oa, ob, unused;
        row_offsets(row, r->shape, r->rank, r->as, r->bs, NULL, &oa, &ob, &unused);
        const float *restrict a = r->a + oa, *restrict b = r->b + ob;
        float *restrict y = r->y + row * len;
        switch (r->op) {
        case KN_BINARY_ADD: BINARY_LOOP(u + v) break;
        case KN_BINARY_SUB: BINARY_LOOP(u - v) break;
        case KN_BINARY_MUL: BINARY_LOOP(u * v) break;
        case KN_BINARY_DIV: BINARY_LOOP(u / v) break;
        case KN_BINARY_MAX: BINARY_LOOP(u > v || u != u ? u : v) break;
        case KN_BINARY_MIN: BINARY_LOOP(u < v || u != u ? u : v) break;
        }
    }
}

void kn_broadcast_binary(int op, const float *a, const int64_t *a_strides, const float *b, const int64_t *b_strides,
                         const int64_t *shape, int rank, float *y) {
    const int64_t count = element_count(shape, rank);
    if (count == 0) return;
    const int64_t len = rank ? shape[rank - 1] : 1;
    binary_args r = {op, a, b, a_strides, b_strides, shape, rank, y};
    kn_parallel_for(count / len, len >= KN_GRAIN_ELEMENTS ? 1 : KN_GRAIN_ELEMENTS / len, binary_rows, &r);
}

// ---- sum over axes ---------------------------------------------------------------------------

typedef struct {
    const float *x;
    const int64_t *out_shape, *out_strides, *red_shape, *red_strides;
    int out_rank, red_rank;
    float scale;
    float *y;
} reduce_args;

static void reduce_outputs(void *context, int64_t begin, int64_t end) {
    const reduce_args *r = context;
    const int64_t red_count = element_count(r->red_shape, r->red_rank);
    const int64_t len = r->red_rank ? r->red_shape[r->red_rank - 1] : 1;
    const int64_t step = r->red_rank ? r->red_strides[r->red_rank - 1] : 0;
    for (int64_t o = begin; o < end; o++) {
        // The output element's offset: decode o over all of out_shape (row_offsets skips the last).
        int64_t base = 0, rest = o;
        for (int k = r->out_rank - 1; k >= 0; k--) {
            base += (rest % r->out_shape[k]) * r->out_strides[k];
            rest /= r->out_shape[k];
        }
        double acc = 0;
        for (int64_t row = 0; row < red_count / len; row++) {
            int64_t off, unused1, unused2;
            row_offsets(row, r->red_shape, r->red_rank, r->red_strides, NULL, NULL, &off, &unused1, &unused2);
            const float *restrict x = r->x + base + off;
            for (int64_t i = 0; i < len; i++) acc += x[i * step];
        }
        r->y[o] = (float)(acc * r->scale);
    }
}

void kn_reduce_sum(const float *x, const int64_t *out_shape, const int64_t *out_strides, int out_rank,
                   const int64_t *red_shape, const int64_t *red_strides, int red_rank, float scale, float *y) {
    const int64_t outputs = element_count(out_shape, out_rank);
    const int64_t per_output = element_count(red_shape, red_rank);
    if (outputs == 0) return;
    if (per_output == 0) {
        for (int64_t o = 0; o < outputs; o++) y[o] = 0;
        return;
    }
    reduce_args r = {x, out_shape, out_strides, red_shape, red_strides, out_rank, red_rank, scale, y};
    const int64_t grain = per_output >= KN_GRAIN_ELEMENTS ? 1 : KN_GRAIN_ELEMENTS / per_output;
    kn_parallel_for(outputs, grain, reduce_outputs, &r);
}

// ---- pointwise functions -----------------------------------------------------------------------

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

static inline float unary_value(int fn, float a, float b, float x) {
    switch (fn) {
    case KN_UNARY_SIGMOID: return sigmoidf(x);
    case KN_UNARY_TANH: return tanhf(x);
    case KN_UNARY_HARD_SIGMOID: return fminf(fmaxf(a * x + b, 0.0f), 1.0f);
    case KN_UNARY_HARD_SWISH: return x * fminf(fmaxf(x / 6.0f + 0.5f, 0.0f), 1.0f);
    case KN_UNARY_LEAKY_RELU: return x > 0 ? x : a * x;
    case KN_UNARY_CLIP: return x < a ? a : (x > b ? b : x);
    case KN_UNARY_NEG: return -x;
    case KN_UNARY_EXP: return expf(x);
    case KN_UNARY_LOG: return logf(x);
    case KN_UNARY_SQRT: return sqrtf(x);
    case KN_UNARY_RECIPROCAL: return 1.0f / x;
    case KN_UNARY_ABS: return fabsf(x);
    case KN_UNARY_AFFINE: return a * x + b;
    case KN_UNARY_POW: return powf(x, a);
    case KN_UNARY_ELU: return x > 0 ? x : a * expm1f(x);
    case KN_UNARY_SELU: return b * (x > 0 ? x : a * expm1f(x));
    case KN_UNARY_SOFTPLUS: return x > 20.0f ? x : log1pf(expf(x));
    case KN_UNARY_SOFTSIGN: return x / (1.0f + fabsf(x));
    case KN_UNARY_SILU: return x * sigmoidf(x);
    default: return NAN;
    }
}

// f'(x), given x and y = f(x).
static inline float unary_slope(int fn, float a, float b, float x, float y) {
    switch (fn) {
    case KN_UNARY_SIGMOID: return y * (1.0f - y);
    case KN_UNARY_TANH: return 1.0f - y * y;
    case KN_UNARY_HARD_SIGMOID: {
        const float t = a * x + b;
        return t > 0 && t < 1 ? a : 0.0f;
    }
    case KN_UNARY_HARD_SWISH: return x < -3.0f ? 0.0f : (x > 3.0f ? 1.0f : (2.0f * x + 3.0f) / 6.0f);
    case KN_UNARY_LEAKY_RELU: return x > 0 ? 1.0f : a;
    case KN_UNARY_CLIP: return x >= a && x <= b ? 1.0f : 0.0f;
    case KN_UNARY_NEG: return -1.0f;
    case KN_UNARY_EXP: return y;
    case KN_UNARY_LOG: return 1.0f / x;
    case KN_UNARY_SQRT: return 0.5f / y;
    case KN_UNARY_RECIPROCAL: return -y * y;
    case KN_UNARY_ABS: return x > 0 ? 1.0f : (x < 0 ? -1.0f : 0.0f);
    case KN_UNARY_AFFINE: return a;
    case KN_UNARY_POW: return a * powf(x, a - 1.0f);
    case KN_UNARY_ELU: return x > 0 ? 1.0f : y + a;
    case KN_UNARY_SELU: return x > 0 ? b : y + a * b;
    case KN_UNARY_SOFTPLUS: return sigmoidf(x);
    case KN_UNARY_SOFTSIGN: {
        const float d = 1.0f + fabsf(x);
        return 1.0f / (d * d);
    }
    case KN_UNARY_SILU: {
        const float s = sigmoidf(x);
        return s * (1.0f + x * (1.0f - s));
    }
    default: return NAN;
    }
}

typedef struct {
    int fn;
    float a, b;
    const float *x, *y, *dy;
    float *out;
} unary_args;

static void unary_range(void *context, int64_t begin, int64_t end) {
    const unary_args *r = context;
    for (int64_t i = begin; i < end; i++) r->out[i] = unary_value(r->fn, r->a, r->b, r->x[i]);
}

static void unary_backward_range(void *context, int64_t begin, int64_t end) {
    const unary_args *r = context;
    for (int64_t i = begin; i < end; i++) r->out[i] = r->dy[i] * unary_slope(r->fn, r->a, r->b, r->x[i], r->y[i]);
}

void kn_unary(int fn, float a, float b, const float *x, float *y, int64_t count) {
    unary_args r = {fn, a, b, x, NULL, NULL, y};
    kn_parallel_for(count, KN_GRAIN_ELEMENTS, unary_range, &r);
}

void kn_unary_backward(int fn, float a, float b, const float *x, const float *y, const float *dy, float *dx, int64_t count) {
    unary_args r = {fn, a, b, x, y, dy, dx};
    kn_parallel_for(count, KN_GRAIN_ELEMENTS, unary_backward_range, &r);
}
