// Convolution forward: the dispatch (Winograd for 3×3 stride-1 convs with enough tiles, a direct
// kernel for depthwise convs, the GEMM over stride-phase planes for other ungrouped convs), the
// im2col + GEMM path that grouped convs take, and the naive reference used by tests.
#include "kernels.h"
#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include "conv_common.h"
#include "../parallel.h"
#include "activation.h"

int kn_conv2d_geometry(kn_conv2d_desc *d) {
    if (d->groups < 1 || d->c % d->groups || d->o % d->groups) return -1;
    if (d->sh < 1 || d->sw < 1 || d->kh < 1 || d->kw < 1) return -1;
    int eh = d->h + d->pt + d->pb - d->kh, ew = d->w + d->pl + d->pr - d->kw;
    if (eh < 0 || ew < 0) return -1;
    d->oh = eh / d->sh + 1;
    d->ow = ew / d->sw + 1;
    return 0;
}

// One image's output rows [b·rows, (b+1)·rows) of one group: im2col into `col`, then one GEMM.
typedef struct {
    const kn_conv2d_desc *d;
    const float *x, *w;
    float *y;
    int cg, og, kdim, rows;
} row_blocks;

// im2col of channels [begin, end) of one block (the columns are built in parallel when one block
// is the whole image: layer2–4 of ResNet-18 at batch 1, whose GEMM then splits across the threads).
typedef struct {
    const row_blocks *r;
    float *col;
    int oy, end;
} block_columns;

static void block_columns_task(void *context, int64_t begin, int64_t end) {
    const block_columns *b = context;
    const kn_conv2d_desc *d = b->r->d;
    const int64_t ld = (int64_t)(b->end - b->oy) * d->ow;
    conv_im2col_rows(d, b->r->x + begin * d->h * d->w, (int)(end - begin), b->oy, b->end,
                     b->col + begin * d->kh * d->kw * ld, ld);
}

static void row_block(const row_blocks *r, int b, float *col) {
    const kn_conv2d_desc *d = r->d;
    const int oy = b * r->rows, end = oy + r->rows < d->oh ? oy + r->rows : d->oh, n = (end - oy) * d->ow;
    block_columns columns = {r, col, oy, end};
    kn_parallel_for(r->cg, KN_GRAIN_ROWS, block_columns_task, &columns);
    kn_sgemm(0, 0, r->og, n, r->kdim, 1.0f, r->w, r->kdim, col, n, 0.0f, r->y + (int64_t)oy * d->ow, d->oh * d->ow);
}

// Worker t of `workers` takes the blocks t, t + workers, … with a column buffer of its own (the
// caller's is its whole-image buffer, never smaller, so asking again does not move it).
static void row_blocks_task(void *context, int worker, int workers) {
    const row_blocks *r = context;
    float *col = kn_scratch(KN_SCRATCH_COLUMNS, (int64_t)r->kdim * r->rows * r->d->ow);
    if (!col) return;
    const int blocks = (r->d->oh + r->rows - 1) / r->rows;
    for (int b = worker; b < blocks; b += workers) row_block(r, b, col);
}

// One chunk of `count` images, all groups. Single images with a pointwise conv read x directly;
// otherwise the chunk's columns are gathered side by side (im2col), multiplied in one GEMM per
// group into `tmp` [o, count*ohw] and scattered back to NCHW.
static void conv_chunk_forward(const kn_conv2d_desc *d, const float *x, const float *w, const float *bias,
                               float *y, int count, float *col, float *tmp) {
    const int cg = d->c / d->groups, og = d->o / d->groups;
    const int ohw = d->oh * d->ow, kdim = cg * d->kh * d->kw;
    const int64_t cols = (int64_t)count * ohw, xs = (int64_t)d->c * d->h * d->w, ys = (int64_t)d->o * ohw;
    const int direct = count == 1;
    for (int g = 0; g < d->groups; g++) {
        const float *b;
        if (conv_is_pointwise(d) && count == 1) {
            b = x + (int64_t)g * cg * d->h * d->w;
        } else if (direct) {  // one image: columns a block of output rows at a time, while in L2
            row_blocks r = {d, x + (int64_t)g * cg * d->h * d->w, w + (int64_t)g * og * kdim,
                            y + (int64_t)g * og * ohw, cg, og, kdim, conv_row_block(d, kdim)};
            const int blocks = (d->oh + r.rows - 1) / r.rows, threads = kn_in_parallel() ? 1 : kn_threads();
            // Enough blocks: each thread builds and multiplies its own (no serial im2col while the
            // others wait); too few: one at a time, each GEMM split across the threads.
            if (blocks >= 2 * threads && threads > 1)
                kn_parallel(threads, row_blocks_task, &r);
            else
                for (int b = 0; b < blocks; b++) row_block(&r, b, col);
            continue;
        } else {
            for (int j = 0; j < count; j++) conv_im2col(d, x + j * xs + (int64_t)g * cg * d->h * d->w, cg, col + (int64_t)j * ohw, cols);
            b = col;
        }
        float *out = direct ? y + (int64_t)g * og * ohw : tmp + (int64_t)g * og * cols;
        kn_sgemm(0, 0, og, (int)cols, kdim, 1.0f, w + (int64_t)g * og * kdim, kdim, b, (int)cols, 0.0f, out, (int)cols);
    }
    if (!direct) conv_scatter(tmp, count, d->o, ohw, y, ys);
    if (bias)
        for (int j = 0; j < count; j++)
            for (int k = 0; k < d->o; k++) {
                float *row = y + j * ys + (int64_t)k * ohw;
                for (int p = 0; p < ohw; p++) row[p] += bias[k];
            }
}


// Winograd's prepared filters (winograd.c, compiled after this file).
static int winograd_prepared_eligible(const kn_conv2d_desc *d);
static int64_t winograd_prepared_floats(const kn_conv2d_desc *d);
static void winograd_prepare(const kn_conv2d_desc *d, const float *w, float *prepared);
static const float *prepared_weights(const kn_conv2d_desc *d, const float *prepared);

// The direct path (conv_direct.c, after the GEMM it builds on).
static int conv_direct_eligible(const kn_conv2d_desc *d);
static void conv_direct_forward(const kn_conv2d_desc *d, const float *x, const float *w, const float *bias, float *y,
                                const kn_conv_epilogue *ep);

// Small maps with prepared filters (conv_channel_tiles.c, after conv_direct.c whose planes it reads).
static int channel_tiles_eligible(const kn_conv2d_desc *d);
static int64_t channel_tiles_prepared_floats(const kn_conv2d_desc *d);
static void channel_tiles_prepare(const kn_conv2d_desc *d, const float *w, float *prepared);
static int channel_tiles_forward(const kn_conv2d_desc *d, const float *x, const float *prepared, const float *bias,
                                 float *y, const kn_conv_epilogue *ep);

// The depthwise kernel (depthwise.c), with the epilogue run plane by plane.
static void depthwise_forward_fused(const kn_conv2d_desc *d, const float *x, const float *w, const float *bias, float *y,
                                    const kn_conv_epilogue *ep);

// The fused epilogue for one image's output y[o, ohw]: either per-channel (sum, sum of squares)
// for batch statistics, or the residual add and activation, while the image is still in cache.
static void epilogue_image(const kn_conv2d_desc *d, const kn_conv_epilogue *ep, int image, float *y);

static void winograd_epilogue(const kn_conv2d_desc *d, const void *ep, int image, float *y) {
    epilogue_image(d, (const kn_conv_epilogue *)ep, image, y);
}

static inline __attribute__((always_inline)) void activate_span(float *y, int64_t count, const int activation) {
    for (int64_t i = 0; i < count; i++) y[i] = kn_activate(y[i], activation);
}

// The epilogue of output channels [first, end) of one image (y: the image's output).
static void epilogue_channels(const kn_conv2d_desc *d, const kn_conv_epilogue *ep, int image, float *y, int first,
                              int end) {
    const int64_t ohw = (int64_t)d->oh * d->ow;
    if (ep->stats) {
        double *st = ep->stats + (int64_t)image * d->o * 2;
        for (int k = first; k < end; k++) kn_moments(y + k * ohw, ohw, &st[2 * k], &st[2 * k + 1]);
        return;
    }
    const int64_t count = (end - first) * ohw;
    float *span = y + first * ohw;
    if (ep->residual) {
        const float *r = ep->residual + (int64_t)image * d->o * ohw + first * ohw;
        for (int64_t i = 0; i < count; i++) span[i] += r[i];
    }
    if (ep->activation != KN_ACT_NONE) { KN_WITH_ACTIVATION(ep->activation, act, activate_span(span, count, act)) }
}

static void epilogue_image(const kn_conv2d_desc *d, const kn_conv_epilogue *ep, int image, float *y) {
    epilogue_channels(d, ep, image, y, 0, d->o);
}

// One forward convolution's buffers, for the parallel loops over images and chunks of images.
typedef struct {
    const kn_conv2d_desc *d;
    const float *x, *w, *bias;
    float *y;
    const kn_conv_epilogue *ep;
    int chunk, chunks;
    int64_t col_size, tmp_size;
} conv_forward_args;

static void forward_chunks(void *context, int worker, int workers) {
    const conv_forward_args *r = context;
    const kn_conv2d_desc *d = r->d;
    const int64_t xs = (int64_t)d->c * d->h * d->w, ys = (int64_t)d->o * d->oh * d->ow;
    int64_t begin, end;
    kn_share(r->chunks, worker, workers, &begin, &end);
    if (begin >= end) return;
    float *col = kn_scratch(KN_SCRATCH_COLUMNS, r->col_size), *tmp = kn_scratch(KN_SCRATCH_GATHER, r->tmp_size);
    if (!col || !tmp) return;
    for (int64_t ci = begin; ci < end; ci++) {
        const int first = (int)ci * r->chunk, count = first + r->chunk > d->n ? d->n - first : r->chunk;
        conv_chunk_forward(d, r->x + first * xs, r->w, r->bias, r->y + first * ys, count, col, tmp);
        if (r->ep) for (int j = first; j < first + count; j++) epilogue_image(d, r->ep, j, r->y + j * ys);
    }
}

void kn_conv2d_forward(const kn_conv2d_desc *d, const float *x, const float *w, const float *bias, float *y) {
    kn_conv2d_forward_fused(d, x, w, bias, y, NULL);
}

void kn_conv2d_forward_fused(const kn_conv2d_desc *d, const float *x, const float *w, const float *bias, float *y,
                             const kn_conv_epilogue *ep) {
    kn_conv2d_forward_prepared(d, x, w, NULL, bias, y, ep);
}

static int winograd_taken(const kn_conv2d_desc *d) {
    return kn_conv2d_winograd_eligible(d) && !getenv("KILN_NO_WINOGRAD");
}

// With its filters prepared, Winograd takes smaller maps too (ResNet's layer3 at batch 1).
static int winograd_prepared_taken(const kn_conv2d_desc *d) {
    return winograd_prepared_eligible(d) && !getenv("KILN_NO_WINOGRAD");
}

static int direct_taken(const kn_conv2d_desc *d) {
    return !winograd_taken(d) && conv_direct_eligible(d) && !getenv("KILN_NO_DIRECT_CONV");
}

static int channel_tiles_taken(const kn_conv2d_desc *d) {
    return direct_taken(d) && channel_tiles_eligible(d) && !getenv("KILN_NO_CHANNEL_TILES");
}

int64_t kn_conv2d_prepared_floats(const kn_conv2d_desc *d) {
    return winograd_prepared_taken(d) ? winograd_prepared_floats(d)
           : channel_tiles_taken(d)   ? channel_tiles_prepared_floats(d)
                                      : 0;
}

void kn_conv2d_prepare_weights(const kn_conv2d_desc *d, const float *w, float *prepared) {
    if (winograd_prepared_taken(d))
        winograd_prepare(d, w, prepared);
    else if (channel_tiles_taken(d))
        channel_tiles_prepare(d, w, prepared);
}

void kn_conv2d_forward_prepared(const kn_conv2d_desc *d, const float *x, const float *w, const float *prepared,
                                const float *bias, float *y, const kn_conv_epilogue *ep) {
    if (conv_is_depthwise(d)) {
        depthwise_forward_fused(d, x, w, bias, y, ep);
        return;
    }
    if (winograd_taken(d) || (winograd_prepared_taken(d) && prepared_weights(d, prepared))) {
        // F(4×4) in inference too (until 2026-12-03 F(2×2) there, for accuracy): a few times F(2×2)'s
        // rounding error per conv, which the network does not amplify — ResNet-18 (random weights,
        // BN statistics randomised), 16 images at 224², eval logits against PyTorch in float64:
        // F(4×4) 5.3e-7, F(2×2) 4.3e-7, im2col 3.1e-7 (max |Δ| / max |logit|; tolerance 1e-5),
        // for 44% fewer multiplies (inference 8–10% faster).
        kn_conv2d_winograd(d, x, w, prepared, bias, y, ep ? winograd_epilogue : NULL, ep);
        return;
    }
    const int threads = kn_threads();
    if (direct_taken(d)) {
        if (channel_tiles_taken(d) && channel_tiles_forward(d, x, prepared, bias, y, ep)) return;
        conv_direct_forward(d, x, w, bias, y, ep);
        return;
    }
    const int cg = d->c / d->groups;
    const int ohw = d->oh * d->ow;
    const int chunk = conv_chunk(d, threads);
    const int chunks = (d->n + chunk - 1) / chunk;
    conv_forward_args r = {d, x, w, bias, y, ep, chunk, chunks, (int64_t)cg * d->kh * d->kw * chunk * ohw,
                           chunk > 1 ? (int64_t)d->o * chunk * ohw : 1};
    // Chunks in parallel, each GEMM single-threaded; with fewer chunks than threads, kn_sgemm
    // splits each GEMM across the threads instead.
    kn_parallel(chunks >= threads ? threads : 1, forward_chunks, &r);
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
