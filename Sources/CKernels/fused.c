// Kernels of the fused conv + BN (+ residual) (+ activation) steps.
#include "kernels.h"
#include <math.h>
#include <stddef.h>

void kn_fold_batchnorm(const float *w, const float *bias, const float *gamma, const float *beta, const float *mean,
                       const float *var, float eps, int o, int64_t per_output, float *w_out, float *b_out) {
    #pragma omp parallel for schedule(static)
    for (int k = 0; k < o; k++) {
        const float scale = gamma[k] / sqrtf(var[k] + eps);
        for (int64_t i = 0; i < per_output; i++) w_out[(int64_t)k * per_output + i] = w[(int64_t)k * per_output + i] * scale;
        b_out[k] = beta[k] + ((bias ? bias[k] : 0.0f) - mean[k]) * scale;
    }
}

static inline float activate(float v, int activation) {
    if (activation == KN_ACT_RELU) return v > 0.0f ? v : 0.0f;
    if (activation == KN_ACT_RELU6) return v > 0.0f ? (v < 6.0f ? v : 6.0f) : 0.0f;
    return v;
}

static inline float mask(const float *y, int64_t i, int activation) {
    if (activation == KN_ACT_RELU) return y[i] > 0.0f ? 1.0f : 0.0f;
    if (activation == KN_ACT_RELU6) return (y[i] > 0.0f && y[i] < 6.0f) ? 1.0f : 0.0f;
    return 1.0f;
}

void kn_batchnorm_apply_training(const float *z, float *y, const double *stats, const float *gamma, const float *beta,
                                 float *running_mean, float *running_var, float momentum, float eps,
                                 const float *residual, int activation, int n, int c, int hw) {
    const double count = (double)n * hw;
    #pragma omp parallel for schedule(static)
    for (int ch = 0; ch < c; ch++) {
        double s = 0.0, sq = 0.0;
        for (int i = 0; i < n; i++) { s += stats[((int64_t)i * c + ch) * 2]; sq += stats[((int64_t)i * c + ch) * 2 + 1]; }
        const double mean = s / count;
        double var = sq / count - mean * mean;
        if (var < 0.0) var = 0.0;
        const float invstd = (float)(1.0 / sqrt(var + eps));
        const float scale = gamma[ch] * invstd, shift = beta[ch] - (float)mean * scale;
        for (int i = 0; i < n; i++) {
            const int64_t base = ((int64_t)i * c + ch) * hw;
            for (int p = 0; p < hw; p++) {
                float v = z[base + p] * scale + shift;
                if (residual) v += residual[base + p];
                y[base + p] = activate(v, activation);
            }
        }
        if (running_mean && running_var) {
            const double unbiased = count > 1 ? var * count / (count - 1) : var;
            running_mean[ch] = (float)((1.0 - momentum) * running_mean[ch] + momentum * mean);
            running_var[ch] = (float)((1.0 - momentum) * running_var[ch] + momentum * unbiased);
        }
    }
}

// Moments over a plane in LANES independent double accumulators, so the loops vectorise (four
// doubles per AVX2 register) instead of waiting on one dependent chain, with the precision of
// double accumulation and a fixed order (bitwise reproducible).
enum { LANES = 8 };

void kn_moments(const float *restrict x, int64_t n, double *sum, double *sum_squares) {
    double ls[LANES] = {0}, lsq[LANES] = {0};
    int64_t p = 0;
    for (; p + LANES <= n; p += LANES)
        for (int l = 0; l < LANES; l++) { const double v = x[p + l]; ls[l] += v; lsq[l] += v * v; }
    for (; p < n; p++) { const double v = x[p]; ls[0] += v; lsq[0] += v * v; }
    double s = 0.0, sq = 0.0;
    for (int l = 0; l < LANES; l++) { s += ls[l]; sq += lsq[l]; }
    *sum = s;
    *sum_squares = sq;
}

// Σz, Σz², Σg and Σg·z over one plane (g = dy masked by the activation of y), added to totals.
static void plane_sums(const float *restrict z, const float *restrict y, const float *restrict dy, int activation,
                       int64_t hw, double totals[4]) {
    double lz[LANES] = {0}, lzz[LANES] = {0}, lg[LANES] = {0}, lgz[LANES] = {0};
    int64_t p = 0;
    for (; p + LANES <= hw; p += LANES)
        for (int l = 0; l < LANES; l++) {
            const double zv = z[p + l];
            const double g = y ? dy[p + l] * mask(y, p + l, activation) : dy[p + l];
            lz[l] += zv; lzz[l] += zv * zv; lg[l] += g; lgz[l] += g * zv;
        }
    for (; p < hw; p++) {
        const double zv = z[p];
        const double g = y ? dy[p] * mask(y, p, activation) : dy[p];
        lz[0] += zv; lzz[0] += zv * zv; lg[0] += g; lgz[0] += g * zv;
    }
    for (int l = 0; l < LANES; l++) { totals[0] += lz[l]; totals[1] += lzz[l]; totals[2] += lg[l]; totals[3] += lgz[l]; }
}

void kn_fused_bn_backward_reduce(const float *z, const float *y, const float *dy, int activation, float eps,
                                 int n, int c, int hw, float *out) {
    const double count = (double)n * hw;
    #pragma omp parallel for schedule(static)
    for (int ch = 0; ch < c; ch++) {
        double totals[4] = {0.0, 0.0, 0.0, 0.0};  // Σz, Σz², Σg, Σg·z
        for (int i = 0; i < n; i++) {
            const int64_t base = ((int64_t)i * c + ch) * hw;
            plane_sums(z + base, y ? y + base : NULL, dy + base, activation, hw, totals);
        }
        const double mean = totals[0] / count;
        double var = totals[1] / count - mean * mean;
        if (var < 0.0) var = 0.0;
        const double invstd = 1.0 / sqrt(var + eps);
        out[ch] = (float)totals[2];
        out[c + ch] = (float)(invstd * (totals[3] - mean * totals[2]));
        out[2 * c + ch] = (float)mean;
        out[3 * c + ch] = (float)invstd;
    }
}

void kn_fused_bn_backward_input(const float *z, const float *y, const float *dy, int activation, const float *gamma,
                                const float *reduced, int n, int c, int hw, float *dz) {
    const double count = (double)n * hw;
    #pragma omp parallel for collapse(2) schedule(static)
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++) {
            const float sum_g = reduced[ch], sum_gx = reduced[c + ch];
            const float mean = reduced[2 * c + ch], invstd = reduced[3 * c + ch];
            const float scale = (float)(gamma[ch] * invstd / count);
            const int64_t base = ((int64_t)i * c + ch) * hw;
            for (int p = 0; p < hw; p++) {
                const float g = y ? dy[base + p] * mask(y, base + p, activation) : dy[base + p];
                const float xhat = (z[base + p] - mean) * invstd;
                dz[base + p] = scale * ((float)count * g - sum_g - xhat * sum_gx);
            }
        }
}
