// Convolution backward: data gradient (W^T x dY then col2im), filter gradient (dY x col^T summed
// over images in per-thread accumulators, reduced in a fixed order), bias gradient, and the direct
// depthwise versions.
#include "kernels.h"
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "conv_common.h"

// Gradients take F(4×4, 3×3): 44% fewer multiplies than F(2×2) for ~10× its rounding error,
// which stays well inside the 1e-4 gradient tolerance (Float64EvaluatorTests).
enum { KN_GRADIENT_WINOGRAD_TILE = 4 };

// dx of a 3×3 stride-1 pad-1 conv is the same kind of conv of dy with the kernel rotated by 180°
// and its channel axes swapped, so it takes the Winograd path too.
static void winograd_backward_data(const kn_conv2d_desc *d, const float *dy, const float *w, float *dx) {
    float *rotated = kn_scratch(KN_SCRATCH_ROTATED, (int64_t)d->o * d->c * 9);
    if (!rotated) return;
    for (int o = 0; o < d->o; o++)
        for (int c = 0; c < d->c; c++)
            for (int k = 0; k < 9; k++) rotated[((int64_t)c * d->o + o) * 9 + k] = w[((int64_t)o * d->c + c) * 9 + (8 - k)];
    kn_conv2d_desc t = *d;
    t.c = d->o; t.h = d->oh; t.w = d->ow;
    t.o = d->c; t.oh = d->h; t.ow = d->w;
    kn_conv2d_winograd(&t, dy, rotated, NULL, dx, KN_GRADIENT_WINOGRAD_TILE, NULL, NULL);
}

void kn_conv2d_backward_data(const kn_conv2d_desc *d, const float *dy, const float *w, float *dx) {
    if (conv_is_depthwise(d)) { kn_conv2d_depthwise_backward_data(d, dy, w, dx); return; }
    // Winograd for the same shapes as the forward pass (it also avoids im2col's adjoint, a
    // scatter-add); measured on ResNet-18 training, batch 32: input gradients 565 → 455 ms.
    if (kn_conv2d_winograd_eligible(d) && !getenv("KILN_NO_WINOGRAD")) { winograd_backward_data(d, dy, w, dx); return; }
    const int threads = kn_threads();
    const int cg = d->c / d->groups, og = d->o / d->groups;
    const int ohw = d->oh * d->ow, kdim = cg * d->kh * d->kw;
    const int64_t xs = (int64_t)d->c * d->h * d->w;
    const int chunk = conv_chunk(d, threads), chunks = (d->n + chunk - 1) / chunk;
    const int pointwise = conv_is_pointwise(d);
    #pragma omp parallel num_threads(chunks >= threads ? threads : 1)
    {
        float *col = kn_scratch(KN_SCRATCH_COLUMNS, (int64_t)kdim * chunk * ohw);
        float *gathered = chunk > 1 ? kn_scratch(KN_SCRATCH_GATHER, (int64_t)d->o * chunk * ohw) : NULL;
        const int ok = col && (chunk == 1 || gathered);
        #pragma omp for schedule(static)
        for (int ci = 0; ci < chunks; ci++) {
            if (!ok) continue;
            int first, count;
            const float *g = conv_chunk_gradient(d, dy, ci, chunk, gathered, &first, &count);
            const int64_t cols = (int64_t)count * ohw;
            for (int gi = 0; gi < d->groups; gi++) {
                const float *wg = w + (int64_t)gi * og * kdim;
                const float *gg = g + (int64_t)gi * og * cols;
                if (pointwise && count == 1) {
                    kn_sgemm(1, 0, kdim, ohw, og, 1.0f, wg, kdim, gg, ohw, 0.0f, dx + first * xs + (int64_t)gi * cg * ohw, ohw);
                    continue;
                }
                kn_sgemm(1, 0, kdim, (int)cols, og, 1.0f, wg, kdim, gg, (int)cols, 0.0f, col, (int)cols);
                for (int j = 0; j < count; j++) {
                    float *dxg = dx + (first + j) * xs + (int64_t)gi * cg * d->h * d->w;
                    memset(dxg, 0, sizeof(float) * cg * d->h * d->w);
                    conv_col2im_add(d, col + (int64_t)j * ohw, cols, cg, dxg);
                }
            }
        }
    }
}

void kn_conv2d_backward_filter(const kn_conv2d_desc *d, const float *x, const float *dy, float *dw) {
    if (conv_is_depthwise(d)) { kn_conv2d_depthwise_backward_filter(d, x, dy, dw); return; }
    if (kn_conv2d_winograd_eligible(d) && !getenv("KILN_NO_WINOGRAD")) { kn_conv2d_winograd_backward_filter(d, x, dy, dw, KN_GRADIENT_WINOGRAD_TILE); return; }
    const int threads = kn_threads();
    const int cg = d->c / d->groups, og = d->o / d->groups;
    const int ohw = d->oh * d->ow, kdim = cg * d->kh * d->kw;
    const int64_t xs = (int64_t)d->c * d->h * d->w, wsize = (int64_t)d->o * kdim;
    const int chunk = conv_chunk(d, threads), chunks = (d->n + chunk - 1) / chunk;
    const int workers = chunks >= threads ? threads : 1;
    const int pointwise = conv_is_pointwise(d);
    // One accumulator per worker (worker 0 writes dw directly), summed in worker order.
    float *partial = workers > 1 ? calloc((size_t)(workers - 1) * wsize, sizeof(float)) : NULL;
    if (workers > 1 && !partial) { kn_allocation_failed((workers - 1) * wsize * (int64_t)sizeof(float)); return; }
    memset(dw, 0, sizeof(float) * wsize);
    #pragma omp parallel num_threads(workers)
    {
        const int t = omp_get_thread_num();
        float *acc = t == 0 ? dw : partial + (int64_t)(t - 1) * wsize;
        float *col = kn_scratch(KN_SCRATCH_COLUMNS, (int64_t)kdim * chunk * ohw);
        float *gathered = chunk > 1 ? kn_scratch(KN_SCRATCH_GATHER, (int64_t)d->o * chunk * ohw) : NULL;
        const int ok = col && (chunk == 1 || gathered);
        #pragma omp for schedule(static)
        for (int ci = 0; ci < chunks; ci++) {
            if (!ok) continue;
            int first, count;
            const float *g = conv_chunk_gradient(d, dy, ci, chunk, gathered, &first, &count);
            const int64_t cols = (int64_t)count * ohw;
            for (int gi = 0; gi < d->groups; gi++) {
                const float *b;
                if (pointwise && count == 1) {
                    b = x + first * xs + (int64_t)gi * cg * d->h * d->w;
                } else if (count == 1) {  // one image: columns a block of output rows at a time, while in L2
                    const float *xg = x + first * xs + (int64_t)gi * cg * d->h * d->w, *gg = g + (int64_t)gi * og * cols;
                    const int rows = conv_row_block(d, kdim);
                    for (int oy = 0; oy < d->oh; oy += rows) {
                        const int end = oy + rows < d->oh ? oy + rows : d->oh, n = (end - oy) * d->ow;
                        conv_im2col_rows(d, xg, cg, oy, end, col, n);
                        kn_sgemm(0, 1, og, kdim, n, 1.0f, gg + (int64_t)oy * d->ow, ohw, col, n, 1.0f,
                                 acc + (int64_t)gi * og * kdim, kdim);
                    }
                    continue;
                } else {
                    for (int j = 0; j < count; j++)
                        conv_im2col(d, x + (first + j) * xs + (int64_t)gi * cg * d->h * d->w, cg, col + (int64_t)j * ohw, cols);
                    b = col;
                }
                kn_sgemm(0, 1, og, kdim, (int)cols, 1.0f, g + (int64_t)gi * og * cols, (int)cols, b, (int)cols, 1.0f,
                         acc + (int64_t)gi * og * kdim, kdim);
            }
        }
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
