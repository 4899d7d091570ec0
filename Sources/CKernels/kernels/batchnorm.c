// Batch normalisation forward, inference (running stats) and training (batch stats).
#include "kernels.h"
#include "channel_stats.h"
#include <math.h>
#include "../parallel.h"

typedef struct {
    const float *x, *gamma, *beta, *mean, *var;
    float *y, *running_mean, *running_var;
    double *moments;
    float eps, momentum;
    int n, c, hw;
} bn_args;

static void inference_planes(void *context, int64_t begin, int64_t end) {
    const bn_args *r = context;
    for (int64_t plane = begin; plane < end; plane++) {
        const int ch = (int)(plane % r->c);
        const float invstd = 1.0f / sqrtf(r->var[ch] + r->eps);
        const float scale = r->gamma[ch] * invstd, shift = r->beta[ch] - r->mean[ch] * scale;
        const float *restrict xp = r->x + plane * r->hw;
        float *restrict yp = r->y + plane * r->hw;
        const int hw = r->hw;
        for (int p = 0; p < hw; p++) yp[p] = xp[p] * scale + shift;
    }
}

void kn_batchnorm_inference(const float *x, float *y, const float *gamma, const float *beta,
                            const float *mean, const float *var, float eps, int n, int c, int hw) {
    bn_args r = {.x = x, .gamma = gamma, .beta = beta, .mean = mean, .var = var, .y = y, .eps = eps, .n = n, .c = c, .hw = hw};
    kn_parallel_for((int64_t)n * c, KN_GRAIN_ROWS, inference_planes, &r);
}

static void training_channels(void *context, int64_t begin, int64_t end) {
    const bn_args *r = context;
    const int n = r->n, c = r->c, hw = r->hw;
    const int64_t count = (int64_t)n * hw;
    const float *restrict x = r->x;
    float *restrict y = r->y;
    for (int ch = (int)begin; ch < end; ch++) {
        // Two passes in double: the mean first, then the centred sum of squares (no cancellation).
        const double mean = channel_mean(x, n, c, hw, ch);
        double sq = 0.0;
        for (int i = 0; i < n; i++) {
            const float *xp = x + ((int64_t)i * c + ch) * hw;
            for (int p = 0; p < hw; p++) { double dv = xp[p] - mean; sq += dv * dv; }
        }
        const double var = sq / (double)count;
        const float invstd = (float)(1.0 / sqrt(var + r->eps));
        const float scale = r->gamma[ch] * invstd, shift = r->beta[ch] - (float)mean * scale;
        for (int i = 0; i < n; i++) {
            const float *xp = x + ((int64_t)i * c + ch) * hw;
            float *yp = y + ((int64_t)i * c + ch) * hw;
            for (int p = 0; p < hw; p++) yp[p] = xp[p] * scale + shift;
        }
        if (r->running_mean && r->running_var) {
            const double unbiased = count > 1 ? sq / (double)(count - 1) : var;
            r->running_mean[ch] = (float)((1.0 - r->momentum) * r->running_mean[ch] + r->momentum * mean);
            r->running_var[ch] = (float)((1.0 - r->momentum) * r->running_var[ch] + r->momentum * unbiased);
        }
    }
}

void kn_batchnorm_training(const float *x, float *y, const float *gamma, const float *beta,
                           float *running_mean, float *running_var, float momentum, float eps,
                           int n, int c, int hw) {
    bn_args r = {.x = x, .gamma = gamma, .beta = beta, .y = y, .running_mean = running_mean, .running_var = running_var,
                 .eps = eps, .momentum = momentum, .n = n, .c = c, .hw = hw};
    kn_parallel_for(c, KN_GRAIN_ROWS, training_channels, &r);
}

static void moments_channels(void *context, int64_t begin, int64_t end) {
    const bn_args *r = context;
    double *moments = r->moments;
    for (int64_t ch = begin; ch < end; ch++) {
        double s = 0.0, sq = 0.0;
        for (int i = 0; i < r->n; i++) {
            double ps, psq;
            kn_moments(r->x + ((int64_t)i * r->c + ch) * r->hw, r->hw, &ps, &psq);
            s += ps;
            sq += psq;
        }
        moments[2 * ch] = s;
        moments[2 * ch + 1] = sq;
    }
}

void kn_channel_moments(const float *x, int n, int c, int hw, double *moments) {
    bn_args r = {.x = x, .moments = moments, .n = n, .c = c, .hw = hw};
    kn_parallel_for(c, KN_GRAIN_ROWS, moments_channels, &r);
}
