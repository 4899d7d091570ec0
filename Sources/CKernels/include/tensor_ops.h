// Generic tensor primitives of the composite op tier: strided copies (transpose, slice, concat,
// broadcast), broadcasting binary arithmetic, sums over axes and pointwise functions with their
// derivatives. Shapes are row-major with at most KN_MAX_RANK dimensions; a stride of 0 repeats an
// element (broadcasting). Compiled once (portable C): these are memory-bound, and the hot
// compositions become fusion rules instead.
#ifndef KILN_TENSOR_OPS_H
#define KILN_TENSOR_OPS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { KN_MAX_RANK = 8 };

/// y[i] = x[Σ idx_k · strides_k] for every multi-index idx of `shape` (y contiguous).
void kn_strided_copy(const float *x, const int64_t *strides, const int64_t *shape, int rank, float *y);

/// y[Σ idx_k · strides_k] = x[i] for every multi-index idx of `shape` (x contiguous); other
/// elements of y are left as they are.
void kn_strided_scatter(const float *x, const int64_t *shape, int rank, float *y, const int64_t *strides);

typedef enum { KN_BINARY_ADD = 0, KN_BINARY_SUB, KN_BINARY_MUL, KN_BINARY_DIV, KN_BINARY_MAX, KN_BINARY_MIN } kn_binary_op;

/// y = a ∘ b over `shape`, a and b read through their (broadcasting) strides; y contiguous.
void kn_broadcast_binary(int op, const float *a, const int64_t *a_strides, const float *b, const int64_t *b_strides,
                         const int64_t *shape, int rank, float *y);

/// y[o] = scale · Σ_r x[o·out_strides + r·red_strides] over the reduced index space, accumulated
/// in double in a fixed order (deterministic for any thread count).
void kn_reduce_sum(const float *x, const int64_t *out_shape, const int64_t *out_strides, int out_rank,
                   const int64_t *red_shape, const int64_t *red_strides, int red_rank, float scale, float *y);

typedef enum {
    KN_UNARY_SIGMOID = 0,
    KN_UNARY_TANH,
    KN_UNARY_HARD_SIGMOID,  // clamp(a·x + b, 0, 1)
    KN_UNARY_HARD_SWISH,    // x · clamp(x/6 + 1/2, 0, 1)
    KN_UNARY_LEAKY_RELU,    // x > 0 ? x : a·x
    KN_UNARY_CLIP,          // clamp(x, a, b)
    KN_UNARY_NEG,
    KN_UNARY_EXP,
    KN_UNARY_LOG,
    KN_UNARY_SQRT,
    KN_UNARY_RECIPROCAL,
    KN_UNARY_ABS,
    KN_UNARY_AFFINE,        // a·x + b
    KN_UNARY_POW,           // x^a
    KN_UNARY_ELU,           // x > 0 ? x : a·(eˣ − 1)
    KN_UNARY_SELU,          // b · (x > 0 ? x : a·(eˣ − 1))
    KN_UNARY_SOFTPLUS,      // log(1 + eˣ)
    KN_UNARY_SOFTSIGN,      // x / (1 + |x|)
    KN_UNARY_SILU,          // x · σ(x)
    KN_UNARY_COUNT
} kn_unary_fn;

/// y = f(x) elementwise; a and b are the function's parameters.
void kn_unary(int fn, float a, float b, const float *x, float *y, int64_t count);
/// dx = dy · f'(x), from the forward input x and output y.
void kn_unary_backward(int fn, float a, float b, const float *x, const float *y, const float *dy, float *dx, int64_t count);

#ifdef __cplusplus
}
#endif

#endif
