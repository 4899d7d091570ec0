// Batch normalisation forward, inference (running stats) and training (batch stats).
#include "kernels.h"
#include "channel_stats.h"
#include <math.h>

void kn_batchnorm_inference(const float *x, float *y, const float *gamma, const float *beta,
                            const float *mean, const float *var, float eps, int n, int c, int hw) {
    #pragma omp parallel for collapse(2) schedule(static)
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++) {
            const float invstd = 1.0f / sqrtf(var[ch] + eps);
            const float scale = gamma[ch] * invstd, shift = beta[ch] - mean[ch] * scale;
            const float *xp = x + ((int64_t)i * c + ch) * hw;
            float *yp = y + ((int64_t)i * c + ch) * hw;
            for (int p = 0; p < hw; p++) yp[p] = xp[p] * scale + shift;
        }
}

void kn_batchnorm_training(const float *x, float *y, const float *gamma, const float *beta,
                           float *running_mean, float *running_var, float momentum, float eps,
                           int n, int c, int hw) {
    const int64_t count = (int64_t)n * hw;
    #pragma omp parallel for schedule(static)
    for (int ch = 0; ch < c; ch++) {
        // Two passes in double: the mean first, then the centred sum of squares (no cancellation).
        const double mean = channel_mean(x, n, c, hw, ch);
        double sq = 0.0;
        for (int i = 0; i < n; i++) {
            const float *xp = x + ((int64_t)i * c + ch) * hw;
            for (int p = 0; p < hw; p++) { double dv = xp[p] - mean; sq += dv * dv; }
        }
        const double var = sq / (double)count;
        const float invstd = (float)(1.0 / sqrt(var + eps));
        const float scale = gamma[ch] * invstd, shift = beta[ch] - (float)mean * scale;
        for (int i = 0; i < n; i++) {
            const float *xp = x + ((int64_t)i * c + ch) * hw;
            float *yp = y + ((int64_t)i * c + ch) * hw;
            for (int p = 0; p < hw; p++) yp[p] = xp[p] * scale + shift;
        }
        if (running_mean && running_var) {
            const double unbiased = count > 1 ? sq / (double)(count - 1) : var;
            running_mean[ch] = (float)((1.0 - momentum) * running_mean[ch] + momentum * mean);
            running_var[ch] = (float)((1.0 - momentum) * running_var[ch] + momentum * unbiased);
        }
    }
}
