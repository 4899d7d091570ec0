// Kernels of the fused conv + BN (+ residual) (+ activation) steps.
#include "kernels.h"
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include "../parallel.h"
#include "activation.h"

// What the per-channel loops below need; each kernel fills the fields it uses.
typedef struct {
    const float *w, *bias, *gamma, *beta, *mean, *var, *z, *y_mask, *saved_scale_shift, *dy, *residual, *reduced;
    const double *stats;
    double *totals;
    float *w_out, *b_out, *y, *running_mean, *running_var, *out, *scale_shift_out;
    float eps, momentum;
    double count;
    int64_t per_output;
    int activation, n, c, hw;
} channel_args;

static void fold_channels(void *context, int64_t begin, int64_t end) {
    const channel_args *r = context;
    for (int64_t k = begin; k < end; k++) {
        const float scale = r->gamma[k] / sqrtf(r->var[k] + r->eps);
        const int64_t per_output = r->per_output;
        const float *restrict w = r->w + k * per_output;
        float *restrict w_out = r->w_out + k * per_output;
        for (int64_t i = 0; i < per_output; i++) w_out[i] = w[i] * scale;
        r->b_out[k] = r->beta[k] + ((r->bias ? r->bias[k] : 0.0f) - r->mean[k]) * scale;
    }
}

void kn_fold_batchnorm(const float *w, const float *bias, const float *gamma, const float *beta, const float *mean,
                       const float *var, float eps, int o, int64_t per_output, float *w_out, float *b_out) {
    channel_args r = {.w = w, .bias = bias, .gamma = gamma, .beta = beta, .mean = mean, .var = var, .eps = eps,
                      .per_output = per_output, .w_out = w_out, .b_out = b_out};
    kn_parallel_for(o, KN_GRAIN_ROWS, fold_channels, &r);
}

// The plane loops below are instantiated per activation (KN_WITH_ACTIVATION) and residual
// presence, with the choice a constant inside, so each vectorises without testing it per element.
#define INLINE static inline __attribute__((always_inline))

// The value a training step activates (before any residual): written once, so the backward's
// masks from z·scale + shift round exactly as the forward's y did.
INLINE float bn_affine(float z, float scale, float shift) { return z * scale + shift; }

INLINE void apply_plane_as(const float *restrict z, const float *restrict residual, float *restrict y, float scale, float shift,
                           const int activation, const int has_residual, int hw) {
    for (int p = 0; p < hw; p++) {
        float v = bn_affine(z[p], scale, shift);
        if (has_residual) v += residual[p];
        y[p] = kn_activate(v, activation);
    }
}

// y = act(z·scale + shift [+ residual]) over one plane.
static void apply_plane(const float *z, const float *residual, float *y, float scale, float shift, int activation, int hw) {
    if (residual) {
        KN_WITH_ACTIVATION(activation, act, apply_plane_as(z, residual, y, scale, shift, act, 1, hw))
    } else {
        KN_WITH_ACTIVATION(activation, act, apply_plane_as(z, NULL, y, scale, shift, act, 0, hw))
    }
}

static void apply_moments_channels(void *context, int64_t begin, int64_t end) {
    const channel_args *r = context;
    const int n = r->n, c = r->c, hw = r->hw, activation = r->activation;
    const double count = r->count, *moments = r->stats;
    const float *z = r->z, *residual = r->residual, *gamma = r->gamma, *beta = r->beta;
    const float eps = r->eps, momentum = r->momentum;
    float *y = r->y, *running_mean = r->running_mean, *running_var = r->running_var;
    for (int ch = (int)begin; ch < end; ch++) {
        const double mean = moments[2 * ch] / count;
        double var = moments[2 * ch + 1] / count - mean * mean;
        if (var < 0.0) var = 0.0;
        const float invstd = (float)(1.0 / sqrt(var + eps));
        const float scale = gamma[ch] * invstd, shift = beta[ch] - (float)mean * scale;
        if (r->scale_shift_out) r->scale_shift_out[ch] = scale, r->scale_shift_out[c + ch] = shift;
        for (int i = 0; i < n; i++) {
            const int64_t base = ((int64_t)i * c + ch) * hw;
            apply_plane(z + base, residual ? residual + base : NULL, y + base, scale, shift, activation, hw);
        }
        if (running_mean && running_var) {
            const double unbiased = count > 1 ? var * count / (count - 1) : var;
            running_mean[ch] = (float)((1.0 - momentum) * running_mean[ch] + momentum * mean);
            running_var[ch] = (float)((1.0 - momentum) * running_var[ch] + momentum * unbiased);
        }
    }
}

void kn_batchnorm_apply_moments(const float *z, float *y, const double *moments, double count, const float *gamma,
                                const float *beta, float *running_mean, float *running_var, float momentum, float eps,
                                const float *residual, int activation, int n, int c, int hw, float *scale_shift) {
    channel_args r = {.z = z, .y = y, .stats = moments, .count = count, .gamma = gamma, .beta = beta,
                      .running_mean = running_mean, .running_var = running_var, .momentum = momentum, .eps = eps,
                      .residual = residual, .activation = activation, .n = n, .c = c, .hw = hw, .scale_shift_out = scale_shift};
    kn_parallel_for(c, KN_GRAIN_ROWS, apply_moments_channels, &r);
}

static void apply_scale_shift_channels(void *context, int64_t begin, int64_t end) {
    const channel_args *r = context;
    const int n = r->n, c = r->c, hw = r->hw;
    for (int ch = (int)begin; ch < end; ch++)
        for (int i = 0; i < n; i++) {
            const int64_t base = ((int64_t)i * c + ch) * hw;
            apply_plane(r->z + base, NULL, r->y + base, r->saved_scale_shift[ch], r->saved_scale_shift[c + ch], r->activation, hw);
        }
}

void kn_batchnorm_apply_scale_shift(const float *z, float *y, const float *scale_shift, int activation, int n, int c, int hw) {
    channel_args r = {.z = z, .y = y, .saved_scale_shift = scale_shift, .activation = activation, .n = n, .c = c, .hw = hw};
    kn_parallel_for(c, KN_GRAIN_ROWS, apply_scale_shift_channels, &r);
}

void kn_batchnorm_sum_image_stats(const double *stats, int n, int c, double *moments) {
    for (int ch = 0; ch < c; ch++) {
        double s = 0.0, sq = 0.0;  // in image order: the same sums on every run
        for (int i = 0; i < n; i++) { s += stats[((int64_t)i * c + ch) * 2]; sq += stats[((int64_t)i * c + ch) * 2 + 1]; }
        moments[2 * ch] = s;
        moments[2 * ch + 1] = sq;
    }
}

void kn_batchnorm_apply_training(const float *z, float *y, const double *stats, const float *gamma, const float *beta,
                                 float *running_mean, float *running_var, float momentum, float eps,
                                 const float *residual, int activation, int n, int c, int hw, float *scale_shift) {
    double *moments = malloc(sizeof(double) * 2 * (size_t)(c > 0 ? c : 1));
    if (!moments) { kn_allocation_failed((int64_t)sizeof(double) * 2 * c); return; }
    kn_batchnorm_sum_image_stats(stats, n, c, moments);
    kn_batchnorm_apply_moments(z, y, moments, (double)n * hw, gamma, beta, running_mean, running_var, momentum, eps,
                               residual, activation, n, c, hw, scale_shift);
    free(moments);
}

// Moments over a plane in MOMENT_LANES independent double accumulators, so the loops vectorise (four
// doubles per AVX2 register) instead of waiting on one dependent chain, with the precision of
// double accumulation and a fixed order (bitwise reproducible).
enum { MOMENT_LANES = 8 };

// kn_moments runs on planes still in cache (the conv epilogue), where one vector of lanes per sum
// would wait on its add's latency each step: four vectors of them instead (8 → 32 lanes with
// AVX-512, 8 → 16 with AVX2: plane moments 2–3× faster).
enum { PLANE_MOMENT_LANES = KN_VECTOR_BYTES == 16 ? 8 : KN_VECTOR_BYTES / 2 };

void kn_moments(const float *restrict x, int64_t n, double *sum, double *sum_squares) {
    double ls[PLANE_MOMENT_LANES] = {0}, lsq[PLANE_MOMENT_LANES] = {0};
    int64_t p = 0;
    for (; p + PLANE_MOMENT_LANES <= n; p += PLANE_MOMENT_LANES)
        for (int l = 0; l < PLANE_MOMENT_LANES; l++) { const double v = x[p + l]; ls[l] += v; lsq[l] += v * v; }
    for (; p < n; p++) { const double v = x[p]; ls[0] += v; lsq[0] += v * v; }
    double s = 0.0, sq = 0.0;
    for (int l = 0; l < PLANE_MOMENT_LANES; l++) { s += ls[l]; sq += lsq[l]; }
    *sum = s;
    *sum_squares = sq;
}

// The activation's mask at element p: from y, or (from_z) from z·scale + shift, which the forward
// activated — the same mask, since each activation passes exactly where its input does.
INLINE float mask_at(const float *restrict z, const float *restrict y, int64_t p, float scale, float shift, const int from_z,
                     const int activation) {
    return kn_activation_mask(from_z ? bn_affine(z[p], scale, shift) : y[p], activation);
}

// Σz, Σz², Σg and Σg·z over one plane (g = dy masked by the activation), added to totals.
INLINE void plane_sums_as(const float *restrict z, const float *restrict y, float scale, float shift, const int from_z,
                          const float *restrict dy, const int activation, int64_t hw, double totals[4]) {
    double lz[MOMENT_LANES] = {0}, lzz[MOMENT_LANES] = {0}, lg[MOMENT_LANES] = {0}, lgz[MOMENT_LANES] = {0};
    int64_t p = 0;
    for (; p + MOMENT_LANES <= hw; p += MOMENT_LANES)
        for (int l = 0; l < MOMENT_LANES; l++) {
            const double zv = z[p + l];
            const double g = activation == KN_ACT_NONE ? dy[p + l] : dy[p + l] * mask_at(z, y, p + l, scale, shift, from_z, activation);
            lz[l] += zv; lzz[l] += zv * zv; lg[l] += g; lgz[l] += g * zv;
        }
    for (; p < hw; p++) {
        const double zv = z[p];
        const double g = activation == KN_ACT_NONE ? dy[p] : dy[p] * mask_at(z, y, p, scale, shift, from_z, activation);
        lz[0] += zv; lzz[0] += zv * zv; lg[0] += g; lgz[0] += g * zv;
    }
    for (int l = 0; l < MOMENT_LANES; l++) { totals[0] += lz[l]; totals[1] += lzz[l]; totals[2] += lg[l]; totals[3] += lgz[l]; }
}

// The mask's source for channel ch: y, or the step's scale and shift.
typedef struct { const float *y; float scale, shift; int from_z, activation; } mask_source;

static mask_source mask_of(const channel_args *r, int64_t base, int ch) {
    if (r->saved_scale_shift) return (mask_source){NULL, r->saved_scale_shift[ch], r->saved_scale_shift[r->c + ch], 1, r->activation};
    return (mask_source){r->y_mask ? r->y_mask + base : NULL, 0.0f, 0.0f, 0, r->y_mask ? r->activation : KN_ACT_NONE};
}

static void plane_sums(const float *z, mask_source m, const float *dy, int64_t hw, double totals[4]) {
    if (m.from_z) {
        KN_WITH_ACTIVATION(m.activation, act, plane_sums_as(z, NULL, m.scale, m.shift, 1, dy, act, hw, totals))
    } else {
        KN_WITH_ACTIVATION(m.activation, act, plane_sums_as(z, m.y, 0.0f, 0.0f, 0, dy, act, hw, totals))
    }
}

// Σz, Σz², Σg, Σg·z of channel ch, over the images in order.
static void channel_totals(const channel_args *r, int ch, double totals[4]) {
    const int n = r->n, c = r->c, hw = r->hw;
    totals[0] = totals[1] = totals[2] = totals[3] = 0.0;
    for (int i = 0; i < n; i++) {
        const int64_t base = ((int64_t)i * c + ch) * hw;
        plane_sums(r->z + base, mask_of(r, base, ch), r->dy + base, hw, totals);
    }
}

// (Σg, Σg·ẑ, μ, 1/σ) of channel ch from its totals over `count` elements.
static void finish_channel(const double totals[4], double count, float eps, int c, int ch, float *out) {
    const double mean = totals[0] / count;
    double var = totals[1] / count - mean * mean;
    if (var < 0.0) var = 0.0;
    const double invstd = 1.0 / sqrt(var + eps);
    out[ch] = (float)totals[2];
    out[c + ch] = (float)(invstd * (totals[3] - mean * totals[2]));
    out[2 * c + ch] = (float)mean;
    out[3 * c + ch] = (float)invstd;
}

static void backward_reduce_channels(void *context, int64_t begin, int64_t end) {
    const channel_args *r = context;
    for (int ch = (int)begin; ch < end; ch++) {
        double totals[4];
        channel_totals(r, ch, totals);
        finish_channel(totals, (double)r->n * r->hw, r->eps, r->c, ch, r->out);
    }
}

void kn_fused_bn_backward_reduce(const float *z, const float *y, const float *scale_shift, const float *dy, int activation,
                                 float eps, int n, int c, int hw, float *out) {
    channel_args r = {.z = z, .y_mask = y, .saved_scale_shift = scale_shift, .dy = dy, .activation = activation, .eps = eps,
                      .n = n, .c = c, .hw = hw, .out = out};
    kn_parallel_for(c, KN_GRAIN_ROWS, backward_reduce_channels, &r);
}

static void backward_totals_channels(void *context, int64_t begin, int64_t end) {
    const channel_args *r = context;
    for (int ch = (int)begin; ch < end; ch++) channel_totals(r, ch, r->totals + 4 * (int64_t)ch);
}

void kn_fused_bn_backward_totals(const float *z, const float *y, const float *scale_shift, const float *dy, int activation,
                                 int n, int c, int hw, double *totals) {
    channel_args r = {.z = z, .y_mask = y, .saved_scale_shift = scale_shift, .dy = dy, .activation = activation, .n = n, .c = c,
                      .hw = hw, .totals = totals};
    kn_parallel_for(c, KN_GRAIN_ROWS, backward_totals_channels, &r);
}

void kn_fused_bn_backward_finish(const double *moments, const double *totals, double count, float eps, int c, float *out) {
    for (int ch = 0; ch < c; ch++) {
        const double mixed[4] = {moments[2 * ch], moments[2 * ch + 1], totals[4 * ch + 2], totals[4 * ch + 3]};
        finish_channel(mixed, count, eps, c, ch, out);
    }
}

INLINE void input_plane_as(const float *restrict z, const float *restrict y, float mask_scale, float mask_shift, const int from_z,
                           const float *restrict dy, const int activation, float scale, double count, float sum_g, float sum_gx,
                           float mean, float invstd, int hw, float *restrict dz) {
    for (int p = 0; p < hw; p++) {
        const float g = activation == KN_ACT_NONE ? dy[p] : dy[p] * mask_at(z, y, p, mask_scale, mask_shift, from_z, activation);
        const float xhat = (z[p] - mean) * invstd;
        dz[p] = scale * ((float)count * g - sum_g - xhat * sum_gx);
    }
}

static void backward_input_planes(void *context, int64_t begin, int64_t end) {
    const channel_args *r = context;
    const int c = r->c, hw = r->hw;
    const double count = r->count;
    const float *z = r->z, *dy = r->dy, *gamma = r->gamma, *reduced = r->reduced;
    float *dz = r->out;
    for (int64_t plane = begin; plane < end; plane++) {
        const int i = (int)(plane / c), ch = (int)(plane % c);
        const float sum_g = reduced[ch], sum_gx = reduced[c + ch];
        const float mean = reduced[2 * c + ch], invstd = reduced[3 * c + ch];
        const float scale = (float)(gamma[ch] * invstd / count);
        const int64_t base = ((int64_t)i * c + ch) * hw;
        const mask_source m = mask_of(r, base, ch);
        if (m.from_z) {
            KN_WITH_ACTIVATION(m.activation, act,
                               input_plane_as(z + base, NULL, m.scale, m.shift, 1, dy + base, act, scale, count, sum_g, sum_gx,
                                              mean, invstd, hw, dz + base))
        } else {
            KN_WITH_ACTIVATION(m.activation, act,
                               input_plane_as(z + base, m.y, 0.0f, 0.0f, 0, dy + base, act, scale, count, sum_g, sum_gx, mean,
                                              invstd, hw, dz + base))
        }
    }
}

void kn_fused_bn_backward_input(const float *z, const float *y, const float *scale_shift, const float *dy, int activation,
                                const float *gamma, const float *reduced, double count, int n, int c, int hw, float *dz) {
    channel_args r = {.z = z, .y_mask = y, .saved_scale_shift = scale_shift, .dy = dy, .activation = activation, .gamma = gamma,
                      .reduced = reduced, .count = count, .n = n, .c = c, .hw = hw, .out = dz};
    kn_parallel_for((int64_t)n * c, KN_GRAIN_ROWS, backward_input_planes, &r);
}
