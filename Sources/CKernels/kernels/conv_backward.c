// Convolution backward: data gradient (W^T x dY then col2im), filter gradient (dY x col^T summed
// over images in per-thread accumulators, reduced in a fixed order), bias gradient, and the direct
// depthwise versions.
#include "kernels.h"
#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include "conv_common.h"
#include "../parallel.h"

// The dot-product GEMM (gemm_dot.c, compiled after this file).
static void gemm_dot_nt(int m, int n, int64_t k, const float *a, int64_t lda, const float *b, int64_t ldb, float *c,
                        int64_t ldc);
static int gemm_dot_pays(int m, int n);

// acc [m][n] += g [m][k] · bᵀ (b [n][k]): a filter gradient's product over one chunk of pixels. By
// dot products when the outputs are few (no packing; single-threaded in a lone chunk, where
// kn_sgemm would split: still faster at these shapes), chosen by the shape alone.
static void filter_product(int m, int n, int k, const float *g, int ldg, const float *b, int ldb, float *acc, int ldc) {
    if (gemm_dot_pays(m, n))
        gemm_dot_nt(m, n, k, g, ldg, b, ldb, acc, ldc);
    else
        kn_sgemm(0, 1, m, n, k, 1.0f, g, ldg, b, ldb, 1.0f, acc, ldc);
}

// Gradients take Winograd F(4×4, 3×3) like the forward passes: its rounding error stays well
// inside the 1e-4 gradient tolerance (Float64EvaluatorTests).

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
    kn_conv2d_winograd(&t, dy, rotated, NULL, NULL, dx, NULL, NULL);
}

// One backward convolution's buffers, for the parallel loops over chunks of images.
typedef struct {
    const kn_conv2d_desc *d;
    const float *x, *w, *dy;
    float *dx, *dw, *partial;
    int chunk, chunks;
} conv_backward_args;

// The worker's share of the chunks and its column (and, for chunks of several images, gathered
// gradient) buffers; 0 when it has nothing to do or the memory cannot be had.
static int chunk_share(const conv_backward_args *r, int worker, int workers, int64_t *begin, int64_t *end, float **col,
                       float **gathered) {
    const kn_conv2d_desc *d = r->d;
    const int64_t columns = (int64_t)(d->c / d->groups) * d->kh * d->kw * r->chunk * d->oh * d->ow;
    kn_share(r->chunks, worker, workers, begin, end);
    if (*begin >= *end) return 0;
    *col = kn_scratch(KN_SCRATCH_COLUMNS, columns);
    *gathered = r->chunk > 1 ? kn_scratch(KN_SCRATCH_GATHER, (int64_t)d->o * r->chunk * d->oh * d->ow) : NULL;
    return *col && (r->chunk == 1 || *gathered);
}

static void backward_data_chunks(void *context, int worker, int workers) {
    const conv_backward_args *r = context;
    const kn_conv2d_desc *d = r->d;
    const int cg = d->c / d->groups, og = d->o / d->groups, chunk = r->chunk;
    const int ohw = d->oh * d->ow, kdim = cg * d->kh * d->kw;
    const int64_t xs = (int64_t)d->c * d->h * d->w;
    const int pointwise = conv_is_pointwise(d);
    int64_t begin, end;
    float *col, *gathered;
    if (!chunk_share(r, worker, workers, &begin, &end, &col, &gathered)) return;
    for (int ci = (int)begin; ci < end; ci++) {
        int first, count;
        const float *g = conv_chunk_gradient(d, r->dy, ci, chunk, gathered, &first, &count);
        const int64_t cols = (int64_t)count * ohw;
        for (int gi = 0; gi < d->groups; gi++) {
            const float *wg = r->w + (int64_t)gi * og * kdim;
            const float *gg = g + (int64_t)gi * og * cols;
            if (pointwise && count == 1) {
                kn_sgemm(1, 0, kdim, ohw, og, 1.0f, wg, kdim, gg, ohw, 0.0f, r->dx + first * xs + (int64_t)gi * cg * ohw, ohw);
                continue;
            }
            kn_sgemm(1, 0, kdim, (int)cols, og, 1.0f, wg, kdim, gg, (int)cols, 0.0f, col, (int)cols);
            for (int j = 0; j < count; j++) {
                float *dxg = r->dx + (first + j) * xs + (int64_t)gi * cg * d->h * d->w;
                memset(dxg, 0, sizeof(float) * cg * d->h * d->w);
                conv_col2im_add(d, col + (int64_t)j * ohw, cols, cg, dxg);
            }
        }
    }
}

void kn_conv2d_backward_data(const kn_conv2d_desc *d, const float *dy, const float *w, float *dx) {
    if (conv_is_depthwise(d)) { kn_conv2d_depthwise_backward_data(d, dy, w, dx); return; }
    // Winograd for the same shapes as the forward pass (it also avoids im2col's adjoint, a
    // scatter-add); measured on ResNet-18 training, batch 32: input gradients 565 → 455 ms.
    if (kn_conv2d_winograd_eligible(d) && !getenv("KILN_NO_WINOGRAD")) { winograd_backward_data(d, dy, w, dx); return; }
    const int threads = kn_threads();
    const int chunk = conv_chunk(d, threads), chunks = (d->n + chunk - 1) / chunk;
    conv_backward_args r = {.d = d, .w = w, .dy = dy, .dx = dx, .chunk = chunk, .chunks = chunks};
    kn_parallel(chunks >= threads ? threads : 1, backward_data_chunks, &r);
}

// Worker t accumulates its chunks' dw into its own buffer (worker 0 into dw itself).
static void backward_filter_chunks(void *context, int t, int workers) {
    const conv_backward_args *r = context;
    const kn_conv2d_desc *d = r->d;
    const int cg = d->c / d->groups, og = d->o / d->groups, chunk = r->chunk;
    const int ohw = d->oh * d->ow, kdim = cg * d->kh * d->kw;
    const int64_t xs = (int64_t)d->c * d->h * d->w, wsize = (int64_t)d->o * kdim;
    const int pointwise = conv_is_pointwise(d);
    const float *x = r->x;
    float *acc = t == 0 ? r->dw : r->partial + (int64_t)(t - 1) * wsize;
    int64_t begin, end;
    float *col, *gathered;
    if (!chunk_share(r, t, workers, &begin, &end, &col, &gathered)) return;
    for (int ci = (int)begin; ci < end; ci++) {
        int first, count;
        const float *g = conv_chunk_gradient(d, r->dy, ci, chunk, gathered, &first, &count);
        const int64_t cols = (int64_t)count * ohw;
        for (int gi = 0; gi < d->groups; gi++) {
            const float *b;
            if (pointwise && count == 1) {
                b = x + first * xs + (int64_t)gi * cg * d->h * d->w;
            } else if (count == 1) {  // one image: columns a block of output rows at a time, while in L2
                const float *xg = x + first * xs + (int64_t)gi * cg * d->h * d->w, *gg = g + (int64_t)gi * og * cols;
                const int rows = conv_row_block(d, kdim);
                for (int oy = 0; oy < d->oh; oy += rows) {
                    const int stop = oy + rows < d->oh ? oy + rows : d->oh, n = (stop - oy) * d->ow;
                    conv_im2col_rows(d, xg, cg, oy, stop, col, n);
                    filter_product(og, kdim, n, gg + (int64_t)oy * d->ow, ohw, col, n, acc + (int64_t)gi * og * kdim, kdim);
                }
                continue;
            } else {
                for (int j = 0; j < count; j++)
                    conv_im2col(d, x + (first + j) * xs + (int64_t)gi * cg * d->h * d->w, cg, col + (int64_t)j * ohw, cols);
                b = col;
            }
            filter_product(og, kdim, (int)cols, g + (int64_t)gi * og * cols, (int)cols, b, (int)cols,
                           acc + (int64_t)gi * og * kdim, kdim);
        }
    }
}

void kn_conv2d_backward_filter(const kn_conv2d_desc *d, const float *x, const float *dy, float *dw) {
    if (conv_is_depthwise(d)) { kn_conv2d_depthwise_backward_filter(d, x, dy, dw); return; }
    if (kn_conv2d_winograd_eligible(d) && !getenv("KILN_NO_WINOGRAD")) { kn_conv2d_winograd_backward_filter(d, x, dy, dw); return; }
    const int threads = kn_threads();
    const int kdim = d->c / d->groups * d->kh * d->kw;
    const int64_t wsize = (int64_t)d->o * kdim;
    const int chunk = conv_chunk(d, threads), chunks = (d->n + chunk - 1) / chunk;
    const int workers = chunks >= threads ? threads : 1;
    // One accumulator per worker (worker 0 writes dw directly), summed in worker order.
    float *partial = workers > 1 ? calloc((size_t)(workers - 1) * wsize, sizeof(float)) : NULL;
    if (workers > 1 && !partial) { kn_allocation_failed((workers - 1) * wsize * (int64_t)sizeof(float)); return; }
    memset(dw, 0, sizeof(float) * wsize);
    conv_backward_args r = {.d = d, .x = x, .dy = dy, .dw = dw, .partial = partial, .chunk = chunk, .chunks = chunks};
    kn_parallel(workers, backward_filter_chunks, &r);
    for (int t = 1; t < workers; t++) {
        const float *p = partial + (int64_t)(t - 1) * wsize;
        for (int64_t i = 0; i < wsize; i++) dw[i] += p[i];
    }
    free(partial);
}

typedef struct {
    const float *dy;
    float *db;
    int n, o, ohw;
} bias_args;

static void bias_channels(void *context, int64_t begin, int64_t end) {
    const bias_args *r = context;
    const int n = r->n, o = r->o, ohw = r->ohw;
    for (int64_t k = begin; k < end; k++) {
        double acc = 0.0;
        for (int i = 0; i < n; i++) {
            const float *row = r->dy + ((int64_t)i * o + k) * ohw;
            for (int p = 0; p < ohw; p++) acc += row[p];
        }
        r->db[k] = (float)acc;
    }
}

void kn_conv2d_backward_bias(const float *dy, float *db, int n, int o, int ohw) {
    bias_args r = {dy, db, n, o, ohw};
    kn_parallel_for(o, KN_GRAIN_ROWS, bias_channels, &r);
}
