// Convolution backward: data gradient (W^T x dY then col2im), filter gradient (dY x col^T summed
// over images in per-thread accumulators, reduced in a fixed order), bias gradient, and the direct
// depthwise versions.
#include "kernels.h"
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

static int is_pointwise(const kn_conv2d_desc *d) {
    return d->kh == 1 && d->kw == 1 && d->sh == 1 && d->sw == 1 &&
           d->pt == 0 && d->pl == 0 && d->pb == 0 && d->pr == 0;
}

static int is_depthwise(const kn_conv2d_desc *d) { return d->groups == d->c && d->o == d->c && d->groups > 1; }

// Same layout as conv.c's im2col.
static void im2col(const kn_conv2d_desc *d, const float *x, int channels, float *col) {
    const int ohw = d->oh * d->ow;
    for (int c = 0; c < channels; c++)
        for (int i = 0; i < d->kh; i++)
            for (int j = 0; j < d->kw; j++) {
                float *row = col + ((int64_t)(c * d->kh + i) * d->kw + j) * ohw;
                const float *xc = x + (int64_t)c * d->h * d->w;
                for (int oy = 0; oy < d->oh; oy++) {
                    int iy = oy * d->sh - d->pt + i;
                    for (int ox = 0; ox < d->ow; ox++) {
                        int ix = ox * d->sw - d->pl + j;
                        row[oy * d->ow + ox] = (iy >= 0 && iy < d->h && ix >= 0 && ix < d->w) ? xc[iy * d->w + ix] : 0.0f;
                    }
                }
            }
}

// Adds col back onto the image it was gathered from (the adjoint of im2col).
static void col2im_add(const kn_conv2d_desc *d, const float *col, int channels, float *x) {
    const int ohw = d->oh * d->ow;
    for (int c = 0; c < channels; c++)
        for (int i = 0; i < d->kh; i++)
            for (int j = 0; j < d->kw; j++) {
                const float *row = col + ((int64_t)(c * d->kh + i) * d->kw + j) * ohw;
                float *xc = x + (int64_t)c * d->h * d->w;
                for (int oy = 0; oy < d->oh; oy++) {
                    int iy = oy * d->sh - d->pt + i;
                    if (iy < 0 || iy >= d->h) continue;
                    for (int ox = 0; ox < d->ow; ox++) {
                        int ix = ox * d->sw - d->pl + j;
                        if (ix >= 0 && ix < d->w) xc[iy * d->w + ix] += row[oy * d->ow + ox];
                    }
                }
            }
}

static void depthwise_backward_data(const kn_conv2d_desc *d, const float *dy, const float *w, float *dx) {
    const int planes = d->n * d->c;
    #pragma omp parallel for schedule(static)
    for (int p = 0; p < planes; p++) {
        const int ch = p % d->c;
        const float *g = dy + (int64_t)p * d->oh * d->ow;
        const float *wk = w + (int64_t)ch * d->kh * d->kw;
        float *dxp = dx + (int64_t)p * d->h * d->w;
        memset(dxp, 0, sizeof(float) * d->h * d->w);
        for (int oy = 0; oy < d->oh; oy++)
            for (int ox = 0; ox < d->ow; ox++) {
                const float gv = g[oy * d->ow + ox];
                for (int i = 0; i < d->kh; i++) {
                    int iy = oy * d->sh - d->pt + i;
                    if (iy < 0 || iy >= d->h) continue;
                    for (int j = 0; j < d->kw; j++) {
                        int ix = ox * d->sw - d->pl + j;
                        if (ix >= 0 && ix < d->w) dxp[iy * d->w + ix] += wk[i * d->kw + j] * gv;
                    }
                }
            }
    }
}

static void depthwise_backward_filter(const kn_conv2d_desc *d, const float *x, const float *dy, float *dw) {
    #pragma omp parallel for schedule(static)
    for (int ch = 0; ch < d->c; ch++) {
        float *wk = dw + (int64_t)ch * d->kh * d->kw;
        for (int t = 0; t < d->kh * d->kw; t++) wk[t] = 0.0f;
        for (int n = 0; n < d->n; n++) {
            const float *xp = x + ((int64_t)n * d->c + ch) * d->h * d->w;
            const float *g = dy + ((int64_t)n * d->c + ch) * d->oh * d->ow;
            for (int i = 0; i < d->kh; i++)
                for (int j = 0; j < d->kw; j++) {
                    float acc = 0.0f;
                    for (int oy = 0; oy < d->oh; oy++) {
                        int iy = oy * d->sh - d->pt + i;
                        if (iy < 0 || iy >= d->h) continue;
                        for (int ox = 0; ox < d->ow; ox++) {
                            int ix = ox * d->sw - d->pl + j;
                            if (ix >= 0 && ix < d->w) acc += g[oy * d->ow + ox] * xp[iy * d->w + ix];
                        }
                    }
                    wk[i * d->kw + j] += acc;
                }
        }
    }
}

void kn_conv2d_backward_data(const kn_conv2d_desc *d, const float *dy, const float *w, float *dx) {
    if (is_depthwise(d)) { depthwise_backward_data(d, dy, w, dx); return; }
    const int threads = kn_threads();
    const int cg = d->c / d->groups, og = d->o / d->groups;
    const int ohw = d->oh * d->ow, kdim = cg * d->kh * d->kw;
    const int64_t xs = (int64_t)d->c * d->h * d->w, ys = (int64_t)d->o * ohw;
    const int pointwise = is_pointwise(d);
    const int parallel = d->n >= threads && threads > 1;
    #pragma omp parallel num_threads(parallel ? threads : 1)
    {
        float *col = pointwise ? NULL : malloc(sizeof(float) * (int64_t)kdim * ohw);
        #pragma omp for schedule(static)
        for (int n = 0; n < d->n; n++) {
            float *dxn = dx + n * xs;
            const float *dyn = dy + n * ys;
            for (int g = 0; g < d->groups; g++) {
                const float *wg = w + (int64_t)g * og * kdim;
                float *dxg = dxn + (int64_t)g * cg * d->h * d->w;
                if (pointwise) {
                    kn_sgemm(1, 0, kdim, ohw, og, 1.0f, wg, kdim, dyn + (int64_t)g * og * ohw, ohw, 0.0f, dxg, ohw);
                } else {
                    kn_sgemm(1, 0, kdim, ohw, og, 1.0f, wg, kdim, dyn + (int64_t)g * og * ohw, ohw, 0.0f, col, ohw);
                    memset(dxg, 0, sizeof(float) * cg * d->h * d->w);
                    col2im_add(d, col, cg, dxg);
                }
            }
        }
        free(col);
    }
}

void kn_conv2d_backward_filter(const kn_conv2d_desc *d, const float *x, const float *dy, float *dw) {
    if (is_depthwise(d)) { depthwise_backward_filter(d, x, dy, dw); return; }
    const int threads = kn_threads();
    const int cg = d->c / d->groups, og = d->o / d->groups;
    const int ohw = d->oh * d->ow, kdim = cg * d->kh * d->kw;
    const int64_t xs = (int64_t)d->c * d->h * d->w, ys = (int64_t)d->o * ohw, wsize = (int64_t)d->o * kdim;
    const int pointwise = is_pointwise(d);
    const int parallel = d->n >= threads && threads > 1;
    const int workers = parallel ? threads : 1;
    // One accumulator per worker (worker 0 writes dw directly), summed in worker order.
    float *partial = workers > 1 ? calloc((size_t)(workers - 1) * wsize, sizeof(float)) : NULL;
    memset(dw, 0, sizeof(float) * wsize);
    #pragma omp parallel num_threads(workers)
    {
        const int t = omp_get_thread_num();
        float *acc = t == 0 ? dw : partial + (int64_t)(t - 1) * wsize;
        float *col = pointwise ? NULL : malloc(sizeof(float) * (int64_t)kdim * ohw);
        #pragma omp for schedule(static)
        for (int n = 0; n < d->n; n++) {
            const float *xn = x + n * xs, *dyn = dy + n * ys;
            for (int g = 0; g < d->groups; g++) {
                const float *xg = xn + (int64_t)g * cg * d->h * d->w;
                const float *b = xg;
                if (!pointwise) { im2col(d, xg, cg, col); b = col; }
                kn_sgemm(0, 1, og, kdim, ohw, 1.0f, dyn + (int64_t)g * og * ohw, ohw, b, ohw, 1.0f,
                         acc + (int64_t)g * og * kdim, kdim);
            }
        }
        free(col);
    }
    for (int t = 1; t < workers; t++) {
        const float *p = partial + (int64_t)(t - 1) * wsize;
        for (int64_t i = 0; i < wsize; i++) dw[i] += p[i];
    }
    free(partial);
}

void kn_conv2d_backward_bias(const float *dy, float *db, int n, int o, int ohw) {
    #pragma omp parallel for schedule(static)
    for (int k = 0; k < o; k++) {
        double acc = 0.0;
        for (int i = 0; i < n; i++) {
            const float *row = dy + ((int64_t)i * o + k) * ohw;
            for (int p = 0; p < ohw; p++) acc += row[p];
        }
        db[k] = (float)acc;
    }
}
