// Internal helpers shared by the convolution kernels (not part of the public header).
#ifndef KILN_CONV_COMMON_H
#define KILN_CONV_COMMON_H

#include "kernels.h"
#include <string.h>

static inline int conv_is_pointwise(const kn_conv2d_desc *d) {
    return d->kh == 1 && d->kw == 1 && d->sh == 1 && d->sw == 1 &&
           d->pt == 0 && d->pl == 0 && d->pb == 0 && d->pr == 0;
}

static inline int conv_is_depthwise(const kn_conv2d_desc *d) {
    return d->groups == d->c && d->o == d->c && d->groups > 1;
}

/// Images per GEMM: small feature maps are batched so the GEMM's N dimension (chunk·oh·ow) is
/// large enough to run near peak; the chunk count is a multiple of the thread count when possible.
static inline int conv_chunk(const kn_conv2d_desc *d, int threads) {
    const int ohw = d->oh * d->ow;
    int per_thread = (d->n + threads - 1) / threads;
    int chunk = 4096 / ohw;
    if (chunk > per_thread) chunk = per_thread;
    if (chunk < 1) chunk = 1;
    int chunks = (d->n + chunk - 1) / chunk;
    chunks = (chunks + threads - 1) / threads * threads;
    chunk = (d->n + chunks - 1) / chunks;
    return chunk < 1 ? 1 : chunk;
}

/// The output columns [*lo, *hi) whose input column ox·sw + first lies inside the image.
static inline void conv_columns_inside(const kn_conv2d_desc *d, int first, int *lo, int *hi) {
    *lo = first >= 0 ? 0 : (-first + d->sw - 1) / d->sw;
    *hi = d->w - first <= 0 ? 0 : (d->w - first + d->sw - 1) / d->sw;
    if (*lo > d->ow) *lo = d->ow;
    if (*hi > d->ow) *hi = d->ow;
    if (*hi < *lo) *hi = *lo;
}

/// col[(c*kh + i)*kw + j][(oy - oy0)*ow + ox] = x[c][oy*sh - pt + i][ox*sw - pl + j] (0 outside)
/// for output rows oy0 ≤ oy < oy1; rows of col have stride ld (several images side by side).
static inline void conv_im2col_rows(const kn_conv2d_desc *d, const float *x, int channels, int oy0, int oy1,
                                    float *col, int64_t ld) {
    for (int c = 0; c < channels; c++) {
        const float *xc = x + (int64_t)c * d->h * d->w;
        for (int i = 0; i < d->kh; i++)
            for (int j = 0; j < d->kw; j++) {
                float *row = col + ((int64_t)(c * d->kh + i) * d->kw + j) * ld;
                for (int oy = oy0; oy < oy1; oy++) {
                    const int iy = oy * d->sh - d->pt + i;
                    float *dst = row + (oy - oy0) * d->ow;
                    if (iy < 0 || iy >= d->h) { memset(dst, 0, sizeof(float) * d->ow); continue; }
                    // Columns whose input lies inside the row, [lo, hi): a branch-free strided copy
                    // the compiler vectorises; zeros left and right (the ResNet stem's im2col was
                    // half of its conv's time with a bounds test per element).
                    const int first = j - d->pl;  // ix of ox = 0
                    int lo, hi;
                    conv_columns_inside(d, first, &lo, &hi);
                    const float *src = xc + (int64_t)iy * d->w;
                    for (int ox = 0; ox < lo; ox++) dst[ox] = 0.0f;
                    if (d->sw == 1) {
                        for (int ox = lo; ox < hi; ox++) dst[ox] = src[ox + first];
                    } else if (d->sw == 2) {
                        for (int ox = lo; ox < hi; ox++) dst[ox] = src[2 * ox + first];
                    } else {
                        for (int ox = lo; ox < hi; ox++) dst[ox] = src[ox * d->sw + first];
                    }
                    for (int ox = hi; ox < d->ow; ox++) dst[ox] = 0.0f;
                }
            }
    }
}

/// The whole image: col[(c*kh + i)*kw + j][oy*ow + ox].
static inline void conv_im2col(const kn_conv2d_desc *d, const float *x, int channels, float *col, int64_t ld) {
    conv_im2col_rows(d, x, channels, 0, d->oh, col, ld);
}

/// Output rows per block when one image's columns are built a block at a time, so the block
/// (kdim × rows·ow floats) stays in L2 between im2col and the GEMM that reads it — but at least
/// 256 columns: each block is one GEMM that packs all the filters again, and a narrow one (layer4
/// of ResNet-18 at batch 1: 2 rows of 7 pixels against 9 MB of weights) ran at a fifth of speed.
static inline int conv_row_block(const kn_conv2d_desc *d, int kdim) {
    int rows = (int)((256 * 1024 / sizeof(float)) / ((int64_t)kdim * d->ow));
    const int wide = (256 + d->ow - 1) / d->ow;
    if (rows < wide) rows = wide;
    return rows < 1 ? 1 : rows > d->oh ? d->oh : rows;
}

/// The adjoint of conv_im2col: adds col back onto the image. Each row adds only the columns whose
/// input lies inside the image, [lo, hi) as in conv_im2col_rows, without a bounds test per element
/// (with one, a stride-2 conv's input gradient spent half its time here); the additions onto each
/// input element come in the same order.
static inline void conv_col2im_add(const kn_conv2d_desc *d, const float *col, int64_t ld, int channels, float *x) {
    for (int c = 0; c < channels; c++) {
        float *xc = x + (int64_t)c * d->h * d->w;
        for (int i = 0; i < d->kh; i++)
            for (int j = 0; j < d->kw; j++) {
                const float *row = col + ((int64_t)(c * d->kh + i) * d->kw + j) * ld;
                const int first = j - d->pl;  // ix of ox = 0
                int lo, hi;
                conv_columns_inside(d, first, &lo, &hi);
                for (int oy = 0; oy < d->oh; oy++) {
                    const int iy = oy * d->sh - d->pt + i;
                    if (iy < 0 || iy >= d->h) continue;
                    float *dst = xc + (int64_t)iy * d->w + first;
                    const float *src = row + (int64_t)oy * d->ow;
                    if (d->sw == 1) {
                        for (int ox = lo; ox < hi; ox++) dst[ox] += src[ox];
                    } else if (d->sw == 2) {
                        for (int ox = lo; ox < hi; ox++) dst[2 * ox] += src[ox];
                    } else {
                        for (int ox = lo; ox < hi; ox++) dst[ox * d->sw] += src[ox];
                    }
                }
            }
    }
}

/// Copies `rows` rows of `len` floats from each of `count` images (image stride `image_stride`)
/// side by side into dst [rows, count*len].
static inline void conv_gather(const float *src, int64_t image_stride, int count, int rows, int len, float *dst) {
    const int64_t ld = (int64_t)count * len;
    for (int j = 0; j < count; j++)
        for (int r = 0; r < rows; r++)
            memcpy(dst + r * ld + (int64_t)j * len, src + j * image_stride + (int64_t)r * len, sizeof(float) * len);
}

/// The inverse of conv_gather.
static inline void conv_scatter(const float *src, int count, int rows, int len, float *dst, int64_t image_stride) {
    const int64_t ld = (int64_t)count * len;
    for (int j = 0; j < count; j++)
        for (int r = 0; r < rows; r++)
            memcpy(dst + j * image_stride + (int64_t)r * len, src + r * ld + (int64_t)j * len, sizeof(float) * len);
}

/// The output gradient of one chunk of images (chunk index ci): sets *first and *count and returns
/// dy's rows for those images side by side ([o, count·oh·ow]), gathered into `gathered` when count > 1.
static inline const float *conv_chunk_gradient(const kn_conv2d_desc *d, const float *dy, int ci, int chunk,
                                               float *gathered, int *first, int *count) {
    const int ohw = d->oh * d->ow;
    const int64_t ys = (int64_t)d->o * ohw;
    *first = ci * chunk;
    *count = *first + chunk > d->n ? d->n - *first : chunk;
    const float *g = dy + *first * ys;
    if (*count > 1) { conv_gather(g, ys, *count, d->o, ohw, gathered); g = gathered; }
    return g;
}

#endif
