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

// Sums of z, z², g and g·z over one plane: float lanes over blocks of BLOCK elements (so the loop
// vectorises), each block's lanes added into the double totals (so long planes keep their
// precision). Order is fixed: results are bitwise reproducible.
enum { LANES = 8, BLOCK = 512 };

static void plane_sums(const float *restrict z, const float *restrict y, const float *restrict dy, int activation,
                       int64_t hw, double totals[4]) {
    for (int64_t start = 0; start < hw; start += BLOCK) {
        const int64_t end = start + BLOCK < hw ? start + BLOCK : hw;
        float sz[LANES] = {0}, szz[LANES] = {0}, sg[LANES] = {0}, sgz[LANES] = {0};
        int64_t p = start;
        for (; p + LANES <= end; p += LANES)
            for (int l = 0; l < LANES; l++) {
                const float zv = z[p + l];
                const float g = y ? dy[p + l] * mask(y, p + l, activation) : dy[p + l];
                sz[l] += zv; szz[l] += zv * zv; sg[l] += g; sgz[l] += g * zv;
            }
        for (; p < end; p++) {
            const float zv = z[p];
            const float g = y ? dy[p] * mask(y, p, activation) : dy[p];
            sz[0] += zv; szz[0] += zv * zv; sg[0] += g; sgz[0] += g * zv;
        }
        for (int l = 0; l < LANES; l++) { totals[0] += sz[l]; totals[1] += szz[l]; totals[2] += sg[l]; totals[3] += sgz[l]; }
    }
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
