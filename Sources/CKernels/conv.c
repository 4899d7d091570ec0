// Convolution forward: im2col + OpenBLAS sgemm per image, a direct kernel for depthwise convs,
// and the naive reference used by tests.
#include "kernels.h"
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

int kn_conv2d_geometry(kn_conv2d_desc *d) {
    if (d->groups < 1 || d->c % d->groups || d->o % d->groups) return -1;
    if (d->sh < 1 || d->sw < 1 || d->kh < 1 || d->kw < 1) return -1;
    int eh = d->h + d->pt + d->pb - d->kh, ew = d->w + d->pl + d->pr - d->kw;
    if (eh < 0 || ew < 0) return -1;
    d->oh = eh / d->sh + 1;
    d->ow = ew / d->sw + 1;
    return 0;
}

static int is_pointwise(const kn_conv2d_desc *d) {
    return d->kh == 1 && d->kw == 1 && d->sh == 1 && d->sw == 1 &&
           d->pt == 0 && d->pl == 0 && d->pb == 0 && d->pr == 0;
}

// col[(c*kh + i)*kw + j][oy*ow + ox] = x[c][oy*sh - pt + i][ox*sw - pl + j] (0 outside).
static void im2col(const kn_conv2d_desc *d, const float *x, int channels, float *col) {
    const int ohw = d->oh * d->ow;
    for (int c = 0; c < channels; c++) {
        const float *xc = x + (int64_t)c * d->h * d->w;
        for (int i = 0; i < d->kh; i++) {
            for (int j = 0; j < d->kw; j++) {
                float *row = col + ((int64_t)(c * d->kh + i) * d->kw + j) * ohw;
                for (int oy = 0; oy < d->oh; oy++) {
                    int iy = oy * d->sh - d->pt + i;
                    float *dst = row + oy * d->ow;
                    if (iy < 0 || iy >= d->h) { memset(dst, 0, sizeof(float) * d->ow); continue; }
                    const float *src = xc + (int64_t)iy * d->w;
                    if (d->sw == 1) {
                        int ix0 = -d->pl + j;
                        for (int ox = 0; ox < d->ow; ox++) {
                            int ix = ix0 + ox;
                            dst[ox] = (ix >= 0 && ix < d->w) ? src[ix] : 0.0f;
                        }
                    } else {
                        for (int ox = 0; ox < d->ow; ox++) {
                            int ix = ox * d->sw - d->pl + j;
                            dst[ox] = (ix >= 0 && ix < d->w) ? src[ix] : 0.0f;
                        }
                    }
                }
            }
        }
    }
}

static void add_bias(float *y, const float *bias, int o, int ohw) {
    if (!bias) return;
    for (int k = 0; k < o; k++) {
        float b = bias[k];
        float *row = y + (int64_t)k * ohw;
        for (int p = 0; p < ohw; p++) row[p] += b;
    }
}

// One image, all groups. col is scratch of cg*kh*kw*oh*ow floats (unused for pointwise).
static void conv_image(const kn_conv2d_desc *d, const float *x, const float *w, const float *bias,
                       float *y, float *col) {
    const int cg = d->c / d->groups, og = d->o / d->groups;
    const int ohw = d->oh * d->ow, kdim = cg * d->kh * d->kw;
    for (int g = 0; g < d->groups; g++) {
        const float *xg = x + (int64_t)g * cg * d->h * d->w;
        const float *b = xg;
        if (!is_pointwise(d)) { im2col(d, xg, cg, col); b = col; }
        kn_sgemm(0, 0, og, ohw, kdim, 1.0f, w + (int64_t)g * og * kdim, kdim, b, ohw, 0.0f, y + (int64_t)g * og * ohw, ohw);
    }
    add_bias(y, bias, d->o, ohw);
}

// Depthwise (groups == c == o): direct 2-D correlation per channel plane.
static void conv_depthwise(const kn_conv2d_desc *d, const float *x, const float *w, const float *bias, float *y) {
    const int planes = d->n * d->c;
    #pragma omp parallel for schedule(static)
    for (int p = 0; p < planes; p++) {
        const int ch = p % d->c;
        const float *xp = x + (int64_t)p * d->h * d->w;
        const float *wk = w + (int64_t)ch * d->kh * d->kw;
        float *yp = y + (int64_t)p * d->oh * d->ow;
        const float b = bias ? bias[ch] : 0.0f;
        for (int oy = 0; oy < d->oh; oy++) {
            for (int ox = 0; ox < d->ow; ox++) {
                float acc = 0.0f;
                for (int i = 0; i < d->kh; i++) {
                    int iy = oy * d->sh - d->pt + i;
                    if (iy < 0 || iy >= d->h) continue;
                    for (int j = 0; j < d->kw; j++) {
                        int ix = ox * d->sw - d->pl + j;
                        if (ix < 0 || ix >= d->w) continue;
                        acc += wk[i * d->kw + j] * xp[iy * d->w + ix];
                    }
                }
                yp[oy * d->ow + ox] = acc + b;
            }
        }
    }
}

// The fused epilogue for one image's output y[o, ohw]: either per-channel (sum, sum of squares)
// for batch statistics, or the residual add and activation, while the image is still in cache.
static void epilogue_image(const kn_conv2d_desc *d, const kn_conv_epilogue *ep, int image, float *y) {
    const int ohw = d->oh * d->ow;
    if (ep->stats) {
        double *st = ep->stats + (int64_t)image * d->o * 2;
        for (int k = 0; k < d->o; k++) {
            const float *row = y + (int64_t)k * ohw;
            double s = 0.0, sq = 0.0;
            for (int p = 0; p < ohw; p++) { s += row[p]; sq += (double)row[p] * row[p]; }
            st[2 * k] = s;
            st[2 * k + 1] = sq;
        }
        return;
    }
    const int64_t count = (int64_t)d->o * ohw;
    if (ep->residual) {
        const float *r = ep->residual + (int64_t)image * count;
        for (int64_t i = 0; i < count; i++) y[i] += r[i];
    }
    if (ep->activation == KN_ACT_RELU) {
        for (int64_t i = 0; i < count; i++) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
    } else if (ep->activation == KN_ACT_RELU6) {
        for (int64_t i = 0; i < count; i++) y[i] = y[i] > 0.0f ? (y[i] < 6.0f ? y[i] : 6.0f) : 0.0f;
    }
}

void kn_conv2d_forward(const kn_conv2d_desc *d, const float *x, const float *w, const float *bias, float *y) {
    kn_conv2d_forward_fused(d, x, w, bias, y, NULL);
}

void kn_conv2d_forward_fused(const kn_conv2d_desc *d, const float *x, const float *w, const float *bias, float *y,
                             const kn_conv_epilogue *ep) {
    if (d->groups == d->c && d->o == d->c && d->groups > 1) {
        conv_depthwise(d, x, w, bias, y);
        if (ep) {
            const int64_t ys = (int64_t)d->o * d->oh * d->ow;
            #pragma omp parallel for schedule(static)
            for (int i = 0; i < d->n; i++) epilogue_image(d, ep, i, y + i * ys);
        }
        return;
    }
    const int threads = kn_threads();
    const int cg = d->c / d->groups;
    const int64_t col_size = is_pointwise(d) ? 1 : (int64_t)cg * d->kh * d->kw * d->oh * d->ow;
    const int64_t xs = (int64_t)d->c * d->h * d->w, ys = (int64_t)d->o * d->oh * d->ow;
    if (d->n >= threads && threads > 1) {
        // One image per thread, each GEMM single-threaded: no synchronisation inside the GEMM.
        #pragma omp parallel num_threads(threads)
        {
            float *col = malloc(sizeof(float) * col_size);
            #pragma omp for schedule(static)
            for (int i = 0; i < d->n; i++) {
                conv_image(d, x + i * xs, w, bias, y + i * ys, col);
                if (ep) epilogue_image(d, ep, i, y + i * ys);
            }
            free(col);
        }
    } else {
        // Fewer images than threads: kn_sgemm splits each image's GEMM across the threads.
        float *col = malloc(sizeof(float) * col_size);
        for (int i = 0; i < d->n; i++) {
            conv_image(d, x + i * xs, w, bias, y + i * ys, col);
            if (ep) epilogue_image(d, ep, i, y + i * ys);
        }
        free(col);
    }
}

void kn_conv2d_reference(const kn_conv2d_desc *d, const float *x, const float *w, const float *bias, float *y) {
    const int cg = d->c / d->groups, og = d->o / d->groups;
    for (int n = 0; n < d->n; n++)
        for (int o = 0; o < d->o; o++) {
            const int g = o / og;
            for (int oy = 0; oy < d->oh; oy++)
                for (int ox = 0; ox < d->ow; ox++) {
                    double acc = bias ? bias[o] : 0.0;
                    for (int c = 0; c < cg; c++)
                        for (int i = 0; i < d->kh; i++)
                            for (int j = 0; j < d->kw; j++) {
                                int iy = oy * d->sh - d->pt + i, ix = ox * d->sw - d->pl + j;
                                if (iy < 0 || iy >= d->h || ix < 0 || ix >= d->w) continue;
                                double xv = x[(((int64_t)n * d->c + g * cg + c) * d->h + iy) * d->w + ix];
                                double wv = w[(((int64_t)o * cg + c) * d->kh + i) * d->kw + j];
                                acc += xv * wv;
                            }
                    y[(((int64_t)n * d->o + o) * d->oh + oy) * d->ow + ox] = (float)acc;
                }
        }
}
