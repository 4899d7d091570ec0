// Backward kernels of the non-convolution ops.
#include "kernels.h"
#include "channel_stats.h"
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <string.h>
#include "../parallel.h"
#include "pool_common.h"

// ---- batch normalisation -------------------------------------------------------------------

typedef struct {
    const float *x, *dy, *gamma, *var;
    float *out;
    float eps;
    int n, c, hw;
} bn_backward_args;

static void bn_backward_reduce_channels(void *context, int64_t begin, int64_t end) {
    const bn_backward_args *r = context;
    const int n = r->n, c = r->c, hw = r->hw;
    const int64_t count = (int64_t)n * hw;
    for (int ch = (int)begin; ch < end; ch++) {
        const double mean = channel_mean(r->x, n, c, hw, ch);
        double sq = 0.0, sum_dy = 0.0, sum_dy_xc = 0.0;
        for (int i = 0; i < n; i++) {
            const float *xp = r->x + ((int64_t)i * c + ch) * hw;
            const float *g = r->dy + ((int64_t)i * c + ch) * hw;
            for (int p = 0; p < hw; p++) {
                double xc = xp[p] - mean;
                sq += xc * xc;
                sum_dy += g[p];
                sum_dy_xc += g[p] * xc;
            }
        }
        const double invstd = 1.0 / sqrt(sq / (double)count + r->eps);
        r->out[ch] = (float)sum_dy;                      // = d beta
        r->out[c + ch] = (float)(sum_dy_xc * invstd);    // = d gamma = sum dy * xhat
        r->out[2 * c + ch] = (float)mean;
        r->out[3 * c + ch] = (float)invstd;
    }
}

void kn_batchnorm_backward_reduce(const float *x, const float *dy, float eps, int n, int c, int hw, float *out) {
    bn_backward_args r = {.x = x, .dy = dy, .out = out, .eps = eps, .n = n, .c = c, .hw = hw};
    kn_parallel_for(c, KN_GRAIN_ROWS, bn_backward_reduce_channels, &r);
}

void kn_batchnorm_backward_input(const float *x, const float *dy, const float *gamma, const float *reduced,
                                 double count, int n, int c, int hw, float *dx) {
    kn_fused_bn_backward_input(x, NULL, NULL, dy, KN_ACT_NONE, gamma, reduced, count, n, c, hw, dx);  // no activation to mask
}

static void bn_frozen_backward_planes(void *context, int64_t begin, int64_t end) {
    const bn_backward_args *r = context;
    for (int64_t plane = begin; plane < end; plane++) {
        const int ch = (int)(plane % r->c);
        const float s = r->gamma[ch] / sqrtf(r->var[ch] + r->eps);
        const float *restrict g = r->dy + plane * r->hw;
        float *restrict o = r->out + plane * r->hw;
        const int hw = r->hw;
        for (int p = 0; p < hw; p++) o[p] = g[p] * s;
    }
}

void kn_batchnorm_frozen_backward(const float *dy, const float *gamma, const float *var, float eps,
                                  int n, int c, int hw, float *dx) {
    bn_backward_args r = {.dy = dy, .gamma = gamma, .var = var, .out = dx, .eps = eps, .n = n, .c = c, .hw = hw};
    kn_parallel_for((int64_t)n * c, KN_GRAIN_ROWS, bn_frozen_backward_planes, &r);
}

// ---- activations ---------------------------------------------------------------------------

typedef struct {
    const float *y, *dy;
    float *dx;
} mask_args;

// Arguments are copied into restrict locals (see elementwise.c), and dy is loaded whatever the
// mask: a load only where y > 0 makes the vectoriser fall back to branches, which mispredict on
// activations of random sign (3× slower in ResNet-18's backward pass).
static void relu_backward_range(void *context, int64_t begin, int64_t end) {
    const mask_args *r = context;
    const float *restrict y = r->y, *restrict dy = r->dy;
    float *restrict dx = r->dx;
    for (int64_t i = begin; i < end; i++) {
        const float g = dy[i];
        dx[i] = y[i] > 0.0f ? g : 0.0f;
    }
}

static void relu6_backward_range(void *context, int64_t begin, int64_t end) {
    const mask_args *r = context;
    const float *restrict y = r->y, *restrict dy = r->dy;
    float *restrict dx = r->dx;
    for (int64_t i = begin; i < end; i++) {
        const float g = dy[i], v = y[i];
        dx[i] = ((v > 0.0f) & (v < 6.0f)) ? g : 0.0f;
    }
}

void kn_relu_backward(const float *y, const float *dy, float *dx, int64_t count) {
    mask_args r = {y, dy, dx};
    kn_parallel_for(count, KN_GRAIN_ELEMENTS, relu_backward_range, &r);
}

void kn_relu6_backward(const float *y, const float *dy, float *dx, int64_t count) {
    mask_args r = {y, dy, dx};
    kn_parallel_for(count, KN_GRAIN_ELEMENTS, relu6_backward_range, &r);
}

// ---- pooling -------------------------------------------------------------------------------

typedef struct {
    const kn_pool2d_desc *d;
    const float *x, *dy;
    float *dx;
    int count_include_pad;
    pool_inner_windows inner;  // max pool
    int n, c, h, w, pt, pl, pb, pr;
} pool_backward_args;

// The first maximum of the kh×kw window at `corner` (PyTorch's rule; NaN wins), branch-free.
// Always inlined, so the 3×3 call below unrolls into straight-line selects.
static inline __attribute__((always_inline)) int32_t window_argmax(const float *xp, int32_t corner, int w, const int kh,
                                                                   const int kw) {
    float best = xp[corner];
    int32_t where = corner;
    for (int i = 0; i < kh; i++)
        for (int j = 0; j < kw; j++) {
            const int32_t at = corner + i * w + j;
            const float v = xp[at];
            const int take = (v > best) | (v != v);  // as kn_window_max
            where = take ? at : where;
            best = take ? v : best;
        }
    return where;
}

// One output row's windows wholly inside the input, [ox0, ox1): gradient to each window's argmax.
static inline __attribute__((always_inline)) void maxpool_backward_inner_row(const kn_pool2d_desc *d, const float *xp,
                                                                             const float *g, float *o, int oy, int ox0,
                                                                             int ox1, const int kh, const int kw) {
    const int32_t row = (oy * d->sh - d->ph) * d->w - d->pw;
    for (int ox = ox0; ox < ox1; ox++) o[window_argmax(xp, row + ox * d->sw, d->w, kh, kw)] += g[ox];
}

// The same for ResNet's stem pool (3×3, stride 2), a run of windows at a time: the argmax of each
// as an offset from its corner, found with the same selects across the run (so vectorised), then
// the gradients added at the offsets. The one-window-at-a-time scan ran at a third of memory speed.
static void maxpool_backward_inner_row_3x3s2(const kn_pool2d_desc *d, const float *xp, const float *g, float *o,
                                             int oy, int ox0, int ox1) {
    enum { RUN = 64 };
    const int w = d->w;
    const int32_t row = (oy * 2 - d->ph) * w - d->pw;
    for (int start = ox0; start < ox1; start += RUN) {
        const int n = ox1 - start < RUN ? ox1 - start : RUN;
        const float *corner = xp + row + 2 * start;
        float best[RUN];
        int32_t where[RUN];
        for (int t = 0; t < n; t++) { best[t] = corner[2 * t]; where[t] = 0; }
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) {
                const float *restrict tap = corner + i * w + j;
                const int32_t at = i * w + j;
                for (int t = 0; t < n; t++) {
                    const float v = tap[2 * t];
                    const int take = (v > best[t]) | (v != v);  // as window_argmax
                    where[t] = take ? at : where[t];
                    best[t] = take ? v : best[t];
                }
            }
        float *oc = o + row + 2 * start;
        for (int t = 0; t < n; t++) oc[2 * t + where[t]] += g[start + t];
    }
}

// Windows [from, to) of one output row that reach past the input's edge: the clipped scan.
static void maxpool_backward_edge_windows(const kn_pool2d_desc *d, const float *xp, const float *g, float *o, int oy,
                                          int from, int to) {
    for (int ox = from; ox < to; ox++) {
        int32_t where;
        kn_window_max(d, xp, oy, ox, &where);
        if (where >= 0) o[where] += g[ox];
    }
}

static void maxpool_backward_planes(void *context, int64_t begin, int64_t end) {
    const pool_backward_args *r = context;
    const kn_pool2d_desc *d = r->d;
    const float *x = r->x, *dy = r->dy;
    float *dx = r->dx;
    const int oy0 = r->inner.oy0, ox0 = r->inner.ox0, oy1 = r->inner.oy1, ox1 = r->inner.ox1;
    const int three = d->kh == 3 && d->kw == 3;  // ResNet's stem pool: a specialised, unrolled scan
    for (int64_t p = begin; p < end; p++) {
        const float *xp = x + (int64_t)p * d->h * d->w;
        const float *g = dy + (int64_t)p * d->oh * d->ow;
        float *o = dx + (int64_t)p * d->h * d->w;
        memset(o, 0, sizeof(float) * d->h * d->w);
        for (int oy = 0; oy < d->oh; oy++) {
            const float *gr = g + oy * d->ow;
            if (oy < oy0 || oy >= oy1 || ox0 >= ox1) {
                maxpool_backward_edge_windows(d, xp, gr, o, oy, 0, d->ow);
                continue;
            }
            // Left edge, inner windows, right edge: the windows in order, as the forward scans them.
            maxpool_backward_edge_windows(d, xp, gr, o, oy, 0, ox0);
            if (three && d->sw == 2 && d->sh == 2)
                maxpool_backward_inner_row_3x3s2(d, xp, gr, o, oy, ox0, ox1);
            else if (three)
                maxpool_backward_inner_row(d, xp, gr, o, oy, ox0, ox1, 3, 3);
            else
                maxpool_backward_inner_row(d, xp, gr, o, oy, ox0, ox1, d->kh, d->kw);
            maxpool_backward_edge_windows(d, xp, gr, o, oy, ox1, d->ow);
        }
    }
}

void kn_maxpool2d_backward(const kn_pool2d_desc *d, const float *x, const float *dy, float *dx) {
    // Windows wholly inside the input (all but the edges) are scanned inline, without bounds checks.
    pool_backward_args r = {.d = d, .x = x, .dy = dy, .dx = dx, .inner = pool_inner(d)};
    kn_parallel_for((int64_t)d->n * d->c, KN_GRAIN_ROWS, maxpool_backward_planes, &r);
}

static void avgpool_backward_planes(void *context, int64_t begin, int64_t end) {
    const pool_backward_args *r = context;
    const kn_pool2d_desc *d = r->d;
    const float *dy = r->dy;
    float *dx = r->dx;
    const int count_include_pad = r->count_include_pad;
    for (int64_t p = begin; p < end; p++) {
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

void kn_avgpool2d_backward(const kn_pool2d_desc *d, const float *dy, float *dx, int count_include_pad) {
    pool_backward_args r = {.d = d, .dy = dy, .dx = dx, .count_include_pad = count_include_pad};
    kn_parallel_for((int64_t)d->n * d->c, KN_GRAIN_ROWS, avgpool_backward_planes, &r);
}

static void global_avgpool_backward_planes(void *context, int64_t begin, int64_t end) {
    const pool_backward_args *r = context;
    for (int64_t p = begin; p < end; p++) {
        const float v = r->dy[p] / (float)r->h;
        float *restrict o = r->dx + p * r->h;
        const int hw = r->h;
        for (int i = 0; i < hw; i++) o[i] = v;
    }
}

void kn_global_avgpool_backward(const float *dy, float *dx, int n, int c, int hw) {
    pool_backward_args r = {.dy = dy, .dx = dx, .h = hw};
    kn_parallel_for((int64_t)n * c, KN_GRAIN_ROWS, global_avgpool_backward_planes, &r);
}

static void zero_pad_backward_planes(void *context, int64_t begin, int64_t end) {
    const pool_backward_args *r = context;
    const int h = r->h, w = r->w, oh = h + r->pt + r->pb, ow = w + r->pl + r->pr;
    for (int64_t p = begin; p < end; p++)
        for (int iy = 0; iy < h; iy++)
            memcpy(r->dx + (p * h + iy) * w, r->dy + (p * oh + iy + r->pt) * ow + r->pl, sizeof(float) * w);
}

void kn_zero_pad2d_backward(const float *dy, float *dx, int n, int c, int h, int w, int pt, int pl, int pb, int pr) {
    pool_backward_args r = {.dy = dy, .dx = dx, .h = h, .w = w, .pt = pt, .pl = pl, .pb = pb, .pr = pr};
    kn_parallel_for((int64_t)n * c, KN_GRAIN_ROWS, zero_pad_backward_planes, &r);
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
