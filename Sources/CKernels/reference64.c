// Float64 reference kernels (see reference64.h). Every loop is the definition of its op; the
// convolution lowers to im2col + dgemm per image and group, which is exact up to double rounding.
#include "reference64.h"
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---- convolution ---------------------------------------------------------------------------

// Columns of one image and group: rows (c, i, j) over the group's channels, columns (oy, ox).
static void im2col(const kn_conv2d_desc *d, const double *image, int c0, int cg, double *col) {
    const int ohw = d->oh * d->ow;
    for (int c = 0; c < cg; c++)
        for (int i = 0; i < d->kh; i++)
            for (int j = 0; j < d->kw; j++) {
                double *row = col + ((int64_t)(c * d->kh + i) * d->kw + j) * ohw;
                const double *plane = image + (int64_t)(c0 + c) * d->h * d->w;
                for (int oy = 0; oy < d->oh; oy++)
                    for (int ox = 0; ox < d->ow; ox++) {
                        int iy = oy * d->sh - d->pt + i, ix = ox * d->sw - d->pl + j;
                        int inside = iy >= 0 && iy < d->h && ix >= 0 && ix < d->w;
                        row[oy * d->ow + ox] = inside ? plane[iy * d->w + ix] : 0.0;
                    }
            }
}

// Adjoint of im2col: scatters columns back into one image and group (accumulating).
static void col2im(const kn_conv2d_desc *d, const double *col, int c0, int cg, double *image) {
    const int ohw = d->oh * d->ow;
    for (int c = 0; c < cg; c++)
        for (int i = 0; i < d->kh; i++)
            for (int j = 0; j < d->kw; j++) {
                const double *row = col + ((int64_t)(c * d->kh + i) * d->kw + j) * ohw;
                double *plane = image + (int64_t)(c0 + c) * d->h * d->w;
                for (int oy = 0; oy < d->oh; oy++)
                    for (int ox = 0; ox < d->ow; ox++) {
                        int iy = oy * d->sh - d->pt + i, ix = ox * d->sw - d->pl + j;
                        if (iy >= 0 && iy < d->h && ix >= 0 && ix < d->w) plane[iy * d->w + ix] += row[oy * d->ow + ox];
                    }
            }
}

typedef struct { int cg, og, k, ohw; } group_dims;

static group_dims dims(const kn_conv2d_desc *d) {
    group_dims g = { d->c / d->groups, d->o / d->groups, 0, d->oh * d->ow };
    g.k = g.cg * d->kh * d->kw;
    return g;
}

void kr_conv2d_forward(const kn_conv2d_desc *d, const double *x, const double *w, const double *bias, double *y) {
    const group_dims g = dims(d);
    double *col = malloc(sizeof(double) * (size_t)g.k * g.ohw);
    for (int n = 0; n < d->n; n++)
        for (int grp = 0; grp < d->groups; grp++) {
            im2col(d, x + (int64_t)n * d->c * d->h * d->w, grp * g.cg, g.cg, col);
            double *out = y + ((int64_t)n * d->o + grp * g.og) * g.ohw;
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g.og, g.ohw, g.k, 1.0,
                        w + (int64_t)grp * g.og * g.k, g.k, col, g.ohw, 0.0, out, g.ohw);
            for (int o = 0; bias && o < g.og; o++)
                for (int p = 0; p < g.ohw; p++) out[(int64_t)o * g.ohw + p] += bias[grp * g.og + o];
        }
    free(col);
}

void kr_conv2d_backward_data(const kn_conv2d_desc *d, const double *dy, const double *w, double *dx) {
    const group_dims g = dims(d);
    double *col = malloc(sizeof(double) * (size_t)g.k * g.ohw);
    memset(dx, 0, sizeof(double) * (size_t)d->n * d->c * d->h * d->w);
    for (int n = 0; n < d->n; n++)
        for (int grp = 0; grp < d->groups; grp++) {
            const double *gy = dy + ((int64_t)n * d->o + grp * g.og) * g.ohw;
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g.k, g.ohw, g.og, 1.0,
                        w + (int64_t)grp * g.og * g.k, g.k, gy, g.ohw, 0.0, col, g.ohw);
            col2im(d, col, grp * g.cg, g.cg, dx + (int64_t)n * d->c * d->h * d->w);
        }
    free(col);
}

void kr_conv2d_backward_filter(const kn_conv2d_desc *d, const double *x, const double *dy, double *dw) {
    const group_dims g = dims(d);
    double *col = malloc(sizeof(double) * (size_t)g.k * g.ohw);
    memset(dw, 0, sizeof(double) * (size_t)d->o * g.k);
    for (int n = 0; n < d->n; n++)
        for (int grp = 0; grp < d->groups; grp++) {
            im2col(d, x + (int64_t)n * d->c * d->h * d->w, grp * g.cg, g.cg, col);
            const double *gy = dy + ((int64_t)n * d->o + grp * g.og) * g.ohw;
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g.og, g.k, g.ohw, 1.0,
                        gy, g.ohw, col, g.ohw, 1.0, dw + (int64_t)grp * g.og * g.k, g.k);
        }
    free(col);
}

void kr_channel_sum(const double *x, double *out, int n, int c, int inner) {
    for (int ch = 0; ch < c; ch++) {
        double s = 0.0;
        for (int i = 0; i < n; i++)
            for (int p = 0; p < inner; p++) s += x[((int64_t)i * c + ch) * inner + p];
        out[ch] = s;
    }
}

// ---- batch normalisation -------------------------------------------------------------------

static void channel_moments(const double *x, int n, int c, int hw, int ch, double *mean, double *var) {
    double s = 0.0, sq = 0.0;
    for (int i = 0; i < n; i++)
        for (int p = 0; p < hw; p++) s += x[((int64_t)i * c + ch) * hw + p];
    *mean = s / ((double)n * hw);
    for (int i = 0; i < n; i++)
        for (int p = 0; p < hw; p++) {
            double xc = x[((int64_t)i * c + ch) * hw + p] - *mean;
            sq += xc * xc;
        }
    *var = sq / ((double)n * hw);
}

static void normalise(const double *x, double *y, double scale, double shift, int n, int c, int hw, int ch) {
    for (int i = 0; i < n; i++)
        for (int p = 0; p < hw; p++) {
            int64_t at = ((int64_t)i * c + ch) * hw + p;
            y[at] = x[at] * scale + shift;
        }
}

void kr_batchnorm_inference(const double *x, double *y, const double *gamma, const double *beta,
                            const double *mean, const double *var, double eps, int n, int c, int hw) {
    for (int ch = 0; ch < c; ch++) {
        double scale = gamma[ch] / sqrt(var[ch] + eps);
        normalise(x, y, scale, beta[ch] - mean[ch] * scale, n, c, hw, ch);
    }
}

void kr_batchnorm_training(const double *x, double *y, const double *gamma, const double *beta,
                           double eps, int n, int c, int hw) {
    for (int ch = 0; ch < c; ch++) {
        double mean, var;
        channel_moments(x, n, c, hw, ch, &mean, &var);
        double scale = gamma[ch] / sqrt(var + eps);
        normalise(x, y, scale, beta[ch] - mean * scale, n, c, hw, ch);
    }
}

void kr_batchnorm_backward_reduce(const double *x, const double *dy, double eps, int n, int c, int hw, double *out) {
    for (int ch = 0; ch < c; ch++) {
        double mean, var, sum_dy = 0.0, sum_dy_xhat = 0.0;
        channel_moments(x, n, c, hw, ch, &mean, &var);
        double invstd = 1.0 / sqrt(var + eps);
        for (int i = 0; i < n; i++)
            for (int p = 0; p < hw; p++) {
                int64_t at = ((int64_t)i * c + ch) * hw + p;
                sum_dy += dy[at];
                sum_dy_xhat += dy[at] * (x[at] - mean) * invstd;
            }
        out[ch] = sum_dy;
        out[c + ch] = sum_dy_xhat;
        out[2 * c + ch] = mean;
        out[3 * c + ch] = invstd;
    }
}

void kr_batchnorm_backward_input(const double *x, const double *dy, const double *gamma, const double *reduced,
                                 int n, int c, int hw, double *dx) {
    const double count = (double)n * hw;
    for (int ch = 0; ch < c; ch++) {
        double sum_dy = reduced[ch], sum_dy_xhat = reduced[c + ch], mean = reduced[2 * c + ch], invstd = reduced[3 * c + ch];
        for (int i = 0; i < n; i++)
            for (int p = 0; p < hw; p++) {
                int64_t at = ((int64_t)i * c + ch) * hw + p;
                double xhat = (x[at] - mean) * invstd;
                dx[at] = gamma[ch] * invstd * (dy[at] - sum_dy / count - xhat * sum_dy_xhat / count);
            }
    }
}

void kr_batchnorm_frozen_backward(const double *dy, const double *gamma, const double *var, double eps,
                                  int n, int c, int hw, double *dx) {
    for (int ch = 0; ch < c; ch++) normalise(dy, dx, gamma[ch] / sqrt(var[ch] + eps), 0.0, n, c, hw, ch);
}

// ---- pooling and padding -------------------------------------------------------------------

// The first maximum of a window clipped to the plane (PyTorch's tie rule); -1 when empty.
static int64_t window_argmax(const kn_pool2d_desc *d, const double *plane, int oy, int ox) {
    int64_t where = -1;
    for (int i = 0; i < d->kh; i++)
        for (int j = 0; j < d->kw; j++) {
            int iy = oy * d->sh - d->ph + i, ix = ox * d->sw - d->pw + j;
            if (iy < 0 || iy >= d->h || ix < 0 || ix >= d->w) continue;
            int64_t at = (int64_t)iy * d->w + ix;
            if (where < 0 || plane[at] > plane[where] || plane[at] != plane[at]) where = at;
        }
    return where;
}

// PyTorch's divisor: the window clipped to the padded input, or to the input without padding.
static int window_divisor(const kn_pool2d_desc *d, int oy, int ox, int count_include_pad) {
    int y0 = oy * d->sh - d->ph, x0 = ox * d->sw - d->pw;
    int y1 = y0 + d->kh, x1 = x0 + d->kw;
    if (count_include_pad) {
        if (y1 > d->h + d->ph) y1 = d->h + d->ph;
        if (x1 > d->w + d->pw) x1 = d->w + d->pw;
        return (y1 - y0) * (x1 - x0);
    }
    if (y0 < 0) y0 = 0;
    if (x0 < 0) x0 = 0;
    if (y1 > d->h) y1 = d->h;
    if (x1 > d->w) x1 = d->w;
    return (y1 - y0) * (x1 - x0);
}

// Calls body(plane, oy, ox) for every output element; planes are n*c.
#define FOR_EACH_OUTPUT(d) \
    for (int64_t plane = 0; plane < (int64_t)(d)->n * (d)->c; plane++) \
        for (int oy = 0; oy < (d)->oh; oy++) \
            for (int ox = 0; ox < (d)->ow; ox++)

void kr_maxpool2d_forward(const kn_pool2d_desc *d, const double *x, double *y) {
    FOR_EACH_OUTPUT(d) {
        const double *xp = x + plane * d->h * d->w;
        int64_t where = window_argmax(d, xp, oy, ox);
        y[(plane * d->oh + oy) * d->ow + ox] = where < 0 ? -DBL_MAX : xp[where];
    }
}

void kr_maxpool2d_backward(const kn_pool2d_desc *d, const double *x, const double *dy, double *dx) {
    memset(dx, 0, sizeof(double) * (size_t)d->n * d->c * d->h * d->w);
    FOR_EACH_OUTPUT(d) {
        int64_t where = window_argmax(d, x + plane * d->h * d->w, oy, ox);
        if (where >= 0) dx[plane * d->h * d->w + where] += dy[(plane * d->oh + oy) * d->ow + ox];
    }
}

void kr_avgpool2d_forward(const kn_pool2d_desc *d, const double *x, double *y, int count_include_pad) {
    FOR_EACH_OUTPUT(d) {
        double acc = 0.0;
        for (int i = 0; i < d->kh; i++)
            for (int j = 0; j < d->kw; j++) {
                int iy = oy * d->sh - d->ph + i, ix = ox * d->sw - d->pw + j;
                if (iy >= 0 && iy < d->h && ix >= 0 && ix < d->w) acc += x[(plane * d->h + iy) * d->w + ix];
            }
        int divisor = window_divisor(d, oy, ox, count_include_pad);
        y[(plane * d->oh + oy) * d->ow + ox] = divisor > 0 ? acc / divisor : 0.0;
    }
}

void kr_avgpool2d_backward(const kn_pool2d_desc *d, const double *dy, double *dx, int count_include_pad) {
    memset(dx, 0, sizeof(double) * (size_t)d->n * d->c * d->h * d->w);
    FOR_EACH_OUTPUT(d) {
        int divisor = window_divisor(d, oy, ox, count_include_pad);
        if (divisor <= 0) continue;
        double share = dy[(plane * d->oh + oy) * d->ow + ox] / divisor;
        for (int i = 0; i < d->kh; i++)
            for (int j = 0; j < d->kw; j++) {
                int iy = oy * d->sh - d->ph + i, ix = ox * d->sw - d->pw + j;
                if (iy >= 0 && iy < d->h && ix >= 0 && ix < d->w) dx[(plane * d->h + iy) * d->w + ix] += share;
            }
    }
}

void kr_zero_pad2d(const double *x, double *y, int n, int c, int h, int w, int pt, int pl, int pb, int pr) {
    const int ph = h + pt + pb, pw = w + pl + pr;
    memset(y, 0, sizeof(double) * (size_t)n * c * ph * pw);
    for (int64_t plane = 0; plane < (int64_t)n * c; plane++)
        for (int iy = 0; iy < h; iy++)
            for (int ix = 0; ix < w; ix++) y[(plane * ph + iy + pt) * pw + ix + pl] = x[(plane * h + iy) * w + ix];
}

void kr_zero_pad2d_backward(const double *dy, double *dx, int n, int c, int h, int w, int pt, int pl, int pb, int pr) {
    const int ph = h + pt + pb, pw = w + pl + pr;
    for (int64_t plane = 0; plane < (int64_t)n * c; plane++)
        for (int iy = 0; iy < h; iy++)
            for (int ix = 0; ix < w; ix++) dx[(plane * h + iy) * w + ix] = dy[(plane * ph + iy + pt) * pw + ix + pl];
}

// ---- dense and losses ----------------------------------------------------------------------

void kr_linear_forward(const double *x, const double *w, const double *bias, double *y, int n, int in, int out) {
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) {
            double s = bias ? bias[o] : 0.0;
            for (int k = 0; k < in; k++) s += x[(int64_t)i * in + k] * w[(int64_t)o * in + k];
            y[(int64_t)i * out + o] = s;
        }
}

void kr_linear_backward_data(const double *dy, const double *w, double *dx, int n, int in, int out) {
    for (int i = 0; i < n; i++)
        for (int k = 0; k < in; k++) {
            double s = 0.0;
            for (int o = 0; o < out; o++) s += dy[(int64_t)i * out + o] * w[(int64_t)o * in + k];
            dx[(int64_t)i * in + k] = s;
        }
}

void kr_linear_backward_weight(const double *x, const double *dy, double *dw, int n, int in, int out) {
    for (int o = 0; o < out; o++)
        for (int k = 0; k < in; k++) {
            double s = 0.0;
            for (int i = 0; i < n; i++) s += dy[(int64_t)i * out + o] * x[(int64_t)i * in + k];
            dw[(int64_t)o * in + k] = s;
        }
}

static double row_logsumexp(const double *row, int k) {
    double m = -INFINITY, s = 0.0;
    for (int j = 0; j < k; j++) m = row[j] > m ? row[j] : m;
    for (int j = 0; j < k; j++) s += exp(row[j] - m);
    return m + log(s);
}

void kr_softmax(const double *x, double *y, int n, int k, int log_softmax) {
    for (int i = 0; i < n; i++) {
        const double *row = x + (int64_t)i * k;
        double lse = row_logsumexp(row, k);
        for (int j = 0; j < k; j++) y[(int64_t)i * k + j] = log_softmax ? row[j] - lse : exp(row[j] - lse);
    }
}

void kr_softmax_backward(const double *y, const double *dy, double *dx, int n, int k, int log_softmax) {
    for (int i = 0; i < n; i++) {
        const double *yr = y + (int64_t)i * k, *g = dy + (int64_t)i * k;
        double dot = 0.0;
        for (int j = 0; j < k; j++) dot += log_softmax ? g[j] : g[j] * yr[j];
        for (int j = 0; j < k; j++)
            dx[(int64_t)i * k + j] = log_softmax ? g[j] - exp(yr[j]) * dot : yr[j] * (g[j] - dot);
    }
}

double kr_cross_entropy(const double *logits, const int64_t *labels, int n, int k) {
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        const double *row = logits + (int64_t)i * k;
        total += row_logsumexp(row, k) - row[labels[i]];
    }
    return total / n;
}

void kr_cross_entropy_backward(const double *logits, const int64_t *labels, double dloss, int n, int k, double *dlogits) {
    kr_softmax(logits, dlogits, n, k, 0);
    for (int i = 0; i < n; i++) {
        double *row = dlogits + (int64_t)i * k;
        row[labels[i]] -= 1.0;
        for (int j = 0; j < k; j++) row[j] *= dloss / n;
    }
}
