// Backward kernels of the non-convolution ops.
#include "kernels.h"
#include "channel_stats.h"
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <string.h>

// ---- batch normalisation -------------------------------------------------------------------

void kn_batchnorm_backward_reduce(const float *x, const float *dy, float eps, int n, int c, int hw, float *out) {
    const int64_t count = (int64_t)n * hw;
    #pragma omp parallel for schedule(static)
    for (int ch = 0; ch < c; ch++) {
        const double mean = channel_mean(x, n, c, hw, ch);
        double sq = 0.0, sum_dy = 0.0, sum_dy_xc = 0.0;
        for (int i = 0; i < n; i++) {
            const float *xp = x + ((int64_t)i * c + ch) * hw;
            const float *g = dy + ((int64_t)i * c + ch) * hw;
            for (int p = 0; p < hw; p++) {
                double xc = xp[p] - mean;
                sq += xc * xc;
                sum_dy += g[p];
                sum_dy_xc += g[p] * xc;
            }
        }
        const double invstd = 1.0 / sqrt(sq / (double)count + eps);
        out[ch] = (float)sum_dy;                      // = d beta
        out[c + ch] = (float)(sum_dy_xc * invstd);    // = d gamma = sum dy * xhat
        out[2 * c + ch] = (float)mean;
        out[3 * c + ch] = (float)invstd;
    }
}

void kn_batchnorm_backward_input(const float *x, const float *dy, const float *gamma, const float *reduced,
                                 int n, int c, int hw, float *dx) {
    kn_fused_bn_backward_input(x, NULL, dy, KN_ACT_NONE, gamma, reduced, n, c, hw, dx);  // no activation to mask
}

void kn_batchnorm_frozen_backward(const float *dy, const float *gamma, const float *var, float eps,
                                  int n, int c, int hw, float *dx) {
    #pragma omp parallel for collapse(2) schedule(static)
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++) {
            const float s = gamma[ch] / sqrtf(var[ch] + eps);
            const float *g = dy + ((int64_t)i * c + ch) * hw;
            float *o = dx + ((int64_t)i * c + ch) * hw;
            for (int p = 0; p < hw; p++) o[p] = g[p] * s;
        }
}

// ---- activations ---------------------------------------------------------------------------

void kn_relu_backward(const float *y, const float *dy, float *dx, int64_t count) {
    #pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < count; i++) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

void kn_relu6_backward(const float *y, const float *dy, float *dx, int64_t count) {
    #pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < count; i++) dx[i] = (y[i] > 0.0f && y[i] < 6.0f) ? dy[i] : 0.0f;
}

// ---- pooling -------------------------------------------------------------------------------

void kn_maxpool2d_backward(const kn_pool2d_desc *d, const float *x, const float *dy, float *dx) {
    const int planes = d->n * d->c;
    // Windows wholly inside the input (all but the edges) are scanned inline, without bounds checks.
    const int oy0 = (d->ph + d->sh - 1) / d->sh, ox0 = (d->pw + d->sw - 1) / d->sw;
    int oy1 = (d->h - d->kh + d->ph) / d->sh + 1, ox1 = (d->w - d->kw + d->pw) / d->sw + 1;
    if (oy1 > d->oh) oy1 = d->oh;
    if (ox1 > d->ow) ox1 = d->ow;
    #pragma omp parallel for schedule(static)
    for (int p = 0; p < planes; p++) {
        const float *xp = x + (int64_t)p * d->h * d->w;
        const float *g = dy + (int64_t)p * d->oh * d->ow;
        float *o = dx + (int64_t)p * d->h * d->w;
        memset(o, 0, sizeof(float) * d->h * d->w);
        for (int oy = 0; oy < d->oh; oy++)
            for (int ox = 0; ox < d->ow; ox++) {
                // The same window scan as the forward pass: first maximum wins (PyTorch's rule).
                int32_t where;
                if (oy >= oy0 && oy < oy1 && ox >= ox0 && ox < ox1) {
                    const int32_t corner = (oy * d->sh - d->ph) * d->w + (ox * d->sw - d->pw);
                    float best = xp[corner];
                    where = corner;
                    for (int i = 0; i < d->kh; i++)
                        for (int j = 0; j < d->kw; j++) {
                            const int32_t at = corner + i * d->w + j;
                            const float v = xp[at];
                            const int take = (v > best) | (v != v);  // as kn_window_max; branch-free
                            where = take ? at : where;
                            best = take ? v : best;
                        }
                } else {
                    kn_window_max(d, xp, oy, ox, &where);
                }
                if (where >= 0) o[where] += g[oy * d->ow + ox];
            }
    }
}

void kn_avgpool2d_backward(const kn_pool2d_desc *d, const float *dy, float *dx, int count_include_pad) {
    const int planes = d->n * d->c;
    #pragma omp parallel for schedule(static)
    for (int p = 0; p < planes; p++) {
        const float *g = dy + (int64_t)p * d->oh * d->ow;
        float *o = dx + (int64_t)p * d->h * d->w;
        memset(o, 0, sizeof(float) * d->h * d->w);
        for (int oy = 0; oy < d->oh; oy++)
            for (int ox = 0; ox < d->ow; ox++) {
                int y0 = oy * d->sh - d->ph, x0 = ox * d->sw - d->pw;
                int y1 = y0 + d->kh, x1 = x0 + d->kw;
                int py1 = y1 > d->h + d->ph ? d->h + d->ph : y1, px1 = x1 > d->w + d->pw ? d->w + d->pw : x1;
                int inside = 0;
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++)
                        if (iy >= 0 && iy < d->h && ix >= 0 && ix < d->w) inside++;
                int divisor = count_include_pad ? (py1 - y0) * (px1 - x0) : inside;
                if (divisor <= 0) continue;
                float share = g[oy * d->ow + ox] / (float)divisor;
                for (int iy = y0; iy < y1; iy++)
                    for (int ix = x0; ix < x1; ix++)
                        if (iy >= 0 && iy < d->h && ix >= 0 && ix < d->w) o[iy * d->w + ix] += share;
            }
    }
}

void kn_global_avgpool_backward(const float *dy, float *dx, int n, int c, int hw) {
    const int planes = n * c;
    #pragma omp parallel for schedule(static)
    for (int p = 0; p < planes; p++) {
        const float v = dy[p] / (float)hw;
        float *o = dx + (int64_t)p * hw;
        for (int i = 0; i < hw; i++) o[i] = v;
    }
}

void kn_zero_pad2d_backward(const float *dy, float *dx, int n, int c, int h, int w, int pt, int pl, int pb, int pr) {
    const int oh = h + pt + pb, ow = w + pl + pr, planes = n * c;
    #pragma omp parallel for schedule(static)
    for (int p = 0; p < planes; p++)
        for (int iy = 0; iy < h; iy++)
            memcpy(dx + ((int64_t)p * h + iy) * w, dy + ((int64_t)p * oh + iy + pt) * ow + pl, sizeof(float) * w);
}

// ---- dense and loss ------------------------------------------------------------------------

void kn_linear_backward_data(const float *dy, const float *w, float *dx, int n, int in, int out) {
    kn_sgemm(0, 0, n, in, out, 1.0f, dy, out, w, in, 0.0f, dx, in);
}

void kn_linear_backward_weight(const float *x, const float *dy, float *dw, int n, int in, int out) {
    kn_sgemm(1, 0, out, in, n, 1.0f, dy, out, x, in, 0.0f, dw, in);
}

void kn_cross_entropy_backward(const float *logits, const int64_t *labels, float dloss, int n, int k, float *dlogits) {
    kn_softmax(logits, dlogits, n, k);
    const float scale = dloss / (float)n;
    for (int i = 0; i < n; i++) {
        float *row = dlogits + (int64_t)i * k;
        if (labels[i] >= 0 && labels[i] < k) row[labels[i]] -= 1.0f;
        for (int j = 0; j < k; j++) row[j] *= scale;
    }
}

void kn_softmax_backward(const float *y, const float *dy, float *dx, int n, int k, int log_softmax) {
    for (int i = 0; i < n; i++) {
        const float *yr = y + (int64_t)i * k, *g = dy + (int64_t)i * k;
        float *o = dx + (int64_t)i * k;
        double dot = 0.0;
        for (int j = 0; j < k; j++) dot += log_softmax ? g[j] : (double)g[j] * yr[j];
        for (int j = 0; j < k; j++)
            o[j] = log_softmax ? (float)(g[j] - exp(yr[j]) * dot) : (float)(yr[j] * (g[j] - dot));
    }
}
