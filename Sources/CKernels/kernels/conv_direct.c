// Convolution forward (ungrouped, not Winograd's: ResNet's stem, stride-2 and 1×1 convs) as a
// GEMM whose B operand is read straight from the input, with no column matrix.
//
// Each input channel is split into stride phases, P[c][py][px][y'][x'] = x[c][s·y' + py − pt]
// [s·x' + px − pl] (zero outside the image), planes of L = ow + (kw − 1)/s columns. Tap (i, j) of
// output pixel (oy, ox) is then P[c][i mod s][j mod s][oy + i/s][ox + j/s]: in the plane's row-major
// index, the pixel's "virtual" index q = oy·L + ox plus an offset that depends on (c, i, j)
// alone. So NR consecutive virtual pixels and one tap are one contiguous vector at q + off[k], and
// the GEMM tile loads its B rows from there through a table of K offsets. The L − ow columns past
// each output row are computed and dropped when the product is copied into y.
//
// The column-matrix path (conv.c) materialised K·oh·ow floats per image (ResNet's stem: 147 per
// output pixel, 7.4 MB an image) and packed them again inside the GEMM. The k order per output
// element is the same as gemm_ordered's, KC blocks included, so results are bit-equal to it.
#include "kernels.h"
#include "conv_common.h"
#include "../parallel.h"
#include <string.h>

// Output channels per tile: 8 with AVX-512's 32 registers (16 accumulators; 8 broadcasts and 2
// loads of B per 16 FMAs, against 6 and 2 per 12), 6 with 16 registers.
enum { DIRECT_MR = KN_VECTOR_BYTES == 64 ? 8 : 6 };

typedef struct {
    int sy, sx;            // phases along each axis: min(stride, kernel)
    int rows, cols;        // per phase plane: Hp = oh + (kh − 1)/sh, L = ow + (kw − 1)/sw
    int64_t plane;         // floats per phase plane (apart by a cache line more than a multiple of 64 B)
    int64_t floats;        // the whole image's planes, with slack for the last tile's overrun
    int band;              // output rows per band of the product
    int64_t band_stride;   // floats per product row: band·L rounded up to tiles
} direct_layout;

static direct_layout direct_layout_of(const kn_conv2d_desc *d) {
    direct_layout l;
    l.sy = d->sh < d->kh ? d->sh : d->kh;
    l.sx = d->sw < d->kw ? d->sw : d->kw;
    l.rows = d->oh + (d->kh - 1) / d->sh;
    l.cols = d->ow + (d->kw - 1) / d->sw;
    // A 1×1 stride-1 unpadded conv's one phase plane per channel is the input plane itself: the
    // tiles read x as it lies (MobileNetV2's expand and project convs: no copy of their input).
    l.plane = conv_is_pointwise(d) ? (int64_t)l.rows * l.cols : ((int64_t)l.rows * l.cols + 15) / 16 * 16 + 16;
    const int64_t reach = (int64_t)((d->kh - 1) / d->sh) * l.cols + (d->kw - 1) / d->sw;
    l.floats = (int64_t)d->c * l.sy * l.sx * l.plane + reach + 2 * GEMM_NR;
    // Bands of the product [o][band·L] of about 512 KiB, so they are still in L2 when copied into y.
    int band = (int)((128 * 1024) / ((int64_t)d->o * l.cols));
    l.band = band < 1 ? 1 : band > d->oh ? d->oh : band;
    l.band_stride = ((int64_t)l.band * l.cols + GEMM_NR - 1) / GEMM_NR * GEMM_NR;
    return l;
}

// Ungrouped convolutions whose offsets fit in 32 bits (an image's planes up to 64 MiB).
static int conv_direct_eligible(const kn_conv2d_desc *d) {
    return d->groups == 1 && direct_layout_of(d).floats <= (1 << 24);
}

// Zeros the floats between the planes and past the last: only dropped columns read them, but
// they must not be left over from other data (NaN or subnormal operands can be slow).
static void zero_slack(const kn_conv2d_desc *d, const direct_layout *l, float *planes) {
    const int64_t used = (int64_t)l->rows * l->cols, count = (int64_t)d->c * l->sy * l->sx;
    for (int64_t p = 0; p < count; p++) memset(planes + p * l->plane + used, 0, sizeof(float) * (l->plane - used));
    memset(planes + count * l->plane, 0, sizeof(float) * (l->floats - count * l->plane));
}

// The phase planes of channels [first, end) of one image.
static void split_phases(const kn_conv2d_desc *d, const direct_layout *l, const float *x, float *planes, int64_t first,
                         int64_t end) {
    const int sw = d->sw;
    for (int64_t c = first; c < end; c++)
        for (int py = 0; py < l->sy; py++)
            for (int px = 0; px < l->sx; px++) {
                float *plane = planes + ((c * l->sy + py) * l->sx + px) * l->plane;
                const int first_ix = px - d->pl;  // input column of x' = 0
                int lo = first_ix >= 0 ? 0 : (-first_ix + sw - 1) / sw;
                int hi = d->w - first_ix <= 0 ? 0 : (d->w - first_ix + sw - 1) / sw;
                if (hi > l->cols) hi = l->cols;
                if (lo > hi) lo = hi;
                for (int y = 0; y < l->rows; y++) {
                    float *dst = plane + (int64_t)y * l->cols;
                    const int iy = d->sh * y + py - d->pt;
                    if (iy < 0 || iy >= d->h) { memset(dst, 0, sizeof(float) * l->cols); continue; }
                    const float *src = x + (c * d->h + iy) * d->w + first_ix;
                    for (int u = 0; u < lo; u++) dst[u] = 0.0f;
                    if (sw == 1)
                        memcpy(dst + lo, src + lo, sizeof(float) * (hi - lo));
                    else if (sw == 2)
                        for (int u = lo; u < hi; u++) dst[u] = src[2 * u];
                    else
                        for (int u = lo; u < hi; u++) dst[u] = src[u * sw];
                    for (int u = hi; u < l->cols; u++) dst[u] = 0.0f;
                }
            }
}

// off[k] for k = (c·kh + i)·kw + j: where tap (i, j) of channel c lies relative to the pixel's q.
static void tap_offsets(const kn_conv2d_desc *d, const direct_layout *l, int32_t *off) {
    for (int c = 0, k = 0; c < d->c; c++)
        for (int i = 0; i < d->kh; i++)
            for (int j = 0; j < d->kw; j++, k++)
                off[k] = (int32_t)(((int64_t)(c * l->sy + i % d->sh) * l->sx + j % d->sw) * l->plane +
                                   (int64_t)(i / d->sh) * l->cols + j / d->sw);
}

// One MR×NR tile: acc (from C when `accumulate`, else 0) += Σ_k w[row][k] · src[off[k] .. + NR],
// in k order, the filters read where they lie (rows `ldw` apart: no packing copy, which at batch
// 1 cost as much as the product for 512-channel convs); rows past `mr` repeat the last one and are
// not stored.
static void direct_tile(int kc, const float *w, int64_t ldw, const float *src, const int32_t *off, float *c,
                        int64_t ldc, int mr, int accumulate) {
    gemm_vec acc[DIRECT_MR][2];
    const float *row[DIRECT_MR];
    for (int r = 0; r < DIRECT_MR; r++) {
        row[r] = w + (r < mr ? r : mr - 1) * ldw;
        if (accumulate && r < mr) {
            acc[r][0] = *(const gemm_vec_unaligned *)(c + r * ldc);
            acc[r][1] = *(const gemm_vec_unaligned *)(c + r * ldc + GEMM_VL);
        } else {
            acc[r][0] = (gemm_vec){0};
            acc[r][1] = (gemm_vec){0};
        }
    }
#pragma unroll 4
    for (int k = 0; k < kc; k++) {
        const float *b = src + off[k];
        const gemm_vec b0 = *(const gemm_vec_unaligned *)b, b1 = *(const gemm_vec_unaligned *)(b + GEMM_VL);
#pragma unroll
        for (int r = 0; r < DIRECT_MR; r++) {
            const float s = row[r][k];
            acc[r][0] += b0 * s;
            acc[r][1] += b1 * s;
        }
    }
    for (int r = 0; r < mr; r++) {
        *(gemm_vec_unaligned *)(c + r * ldc) = acc[r][0];
        *(gemm_vec_unaligned *)(c + r * ldc + GEMM_VL) = acc[r][1];
    }
}

typedef struct {
    const kn_conv2d_desc *d;
    const direct_layout *l;
    const float *x, *w, *bias;
    const int32_t *off;
    float *y;
    const kn_conv_epilogue *ep;
    float *planes;              // the shared image's planes (one image at a time across the threads)
    int image;
    int pointwise;              // planes are the input image (see pointwise_tail)
    kn_counter *next_image;     // images claimed by the workers (a batch at least as large as the threads)
} direct_conv;

// Read in place, the input has no slack past its last plane: when the image's last tile (of the
// last band) reaches past its pixels, a pointwise conv reads that tile's B rows from `tail`
// [kdim][NR] instead, the columns copied and zero-padded (offsets `tail_off`). Returns the pixel
// where that tile starts, or -1 when it lies inside the image.
static int64_t pointwise_tail(const kn_conv2d_desc *d, const direct_layout *l, const float *x, float *tail,
                              int32_t *tail_off) {
    const int64_t hw = (int64_t)d->h * d->w, last_band = (int64_t)(d->oh - 1) / l->band * l->band;
    const int64_t at = last_band * l->cols + ((d->oh - last_band) * l->cols - 1) / GEMM_NR * GEMM_NR;
    const int n = (int)(hw - at);
    if (n == GEMM_NR) return -1;
    for (int k = 0; k < d->c; k++) {
        memcpy(tail + k * GEMM_NR, x + k * hw + at, sizeof(float) * n);
        memset(tail + k * GEMM_NR + n, 0, sizeof(float) * (GEMM_NR - n));
        tail_off[k] = k * GEMM_NR;
    }
    return at;
}

// Floats of a pointwise conv's tail buffer and its offsets (none for other convs).
static int64_t tail_floats(const kn_conv2d_desc *d) { return conv_is_pointwise(d) ? (int64_t)d->c * (GEMM_NR + 1) : 0; }

// Output channels of A panels [first, end) of one image, band by band: the tiles' products into
// `product` [rows][band_stride], then copied into y (plus bias) without the columns past ow.
// `product` is followed by tail_floats(d) floats for a pointwise conv's tail.
static void direct_panels(const direct_conv *r, const float *planes, int image, int64_t first, int64_t end,
                          float *product) {
    const kn_conv2d_desc *d = r->d;
    const direct_layout *l = r->l;
    const int kdim = d->c * d->kh * d->kw;
    const int64_t ohw = (int64_t)d->oh * d->ow;
    float *y = r->y + (int64_t)image * d->o * ohw;
    float *tail = product + (end - first) * DIRECT_MR * l->band_stride;
    int32_t *tail_off = (int32_t *)(tail + (int64_t)kdim * GEMM_NR);
    const int64_t tail_at = r->pointwise ? pointwise_tail(d, l, planes, tail, tail_off) : -1;
    for (int oy0 = 0; oy0 < d->oh; oy0 += l->band) {
        const int rows = d->oh - oy0 < l->band ? d->oh - oy0 : l->band;
        const int64_t q0 = (int64_t)oy0 * l->cols, span = (int64_t)rows * l->cols;
        for (int pc = 0; pc < kdim; pc += GEMM_KC) {
            const int kc = kdim - pc < GEMM_KC ? kdim - pc : GEMM_KC;
            for (int64_t t = 0; t < span; t += GEMM_NR) {  // a tile's B rows stay in L1 while A's panels pass
                const int at_tail = q0 + t == tail_at;
                const float *src = at_tail ? tail : planes + q0 + t;
                const int32_t *off = at_tail ? tail_off : r->off;
                // Read from x, the next tile's rows come from memory, one stream per channel: more
                // than the hardware prefetcher follows (64-channel convs were 15% slower without).
                if (r->pointwise && t + GEMM_NR < span)
                    for (int k = pc; k < pc + kc; k++) {
                        __builtin_prefetch(planes + q0 + t + GEMM_NR + r->off[k]);
                        __builtin_prefetch(planes + q0 + t + GEMM_NR + r->off[k] + 16);
                    }
                for (int64_t p = first; p < end; p++) {
                    const int oc = (int)p * DIRECT_MR, mr = d->o - oc < DIRECT_MR ? d->o - oc : DIRECT_MR;
                    direct_tile(kc, r->w + (int64_t)oc * kdim + pc, kdim, src, off + pc,
                                product + (oc - first * DIRECT_MR) * l->band_stride + t, l->band_stride, mr, pc > 0);
                }
            }
        }
        const int last = (int)(end * DIRECT_MR < d->o ? end * DIRECT_MR : d->o);
        for (int oc = (int)first * DIRECT_MR; oc < last; oc++) {
            const float *src = product + (oc - first * DIRECT_MR) * l->band_stride;
            const float b = r->bias ? r->bias[oc] : 0.0f;
            for (int oy = 0; oy < rows; oy++) {
                float *dst = y + oc * ohw + (int64_t)(oy0 + oy) * d->ow;
                const float *row = src + (int64_t)oy * l->cols;
                if (r->bias)
                    for (int ox = 0; ox < d->ow; ox++) dst[ox] = row[ox] + b;
                else
                    memcpy(dst, row, sizeof(float) * d->ow);
            }
        }
    }
}

static void direct_images_task(void *context, int worker, int workers) {
    (void)worker, (void)workers;
    const direct_conv *r = context;
    const kn_conv2d_desc *d = r->d;
    const int64_t panels = (d->o + DIRECT_MR - 1) / DIRECT_MR;
    float *planes = r->pointwise ? NULL : kn_scratch(KN_SCRATCH_COLUMNS, r->l->floats);
    float *product = kn_scratch(KN_SCRATCH_GATHER, panels * DIRECT_MR * r->l->band_stride + tail_floats(d));
    if ((!planes && !r->pointwise) || !product) return;
    if (planes) zero_slack(d, r->l, planes);
    const int64_t xs = (int64_t)d->c * d->h * d->w, ys = (int64_t)d->o * d->oh * d->ow;
    for (int64_t image; (image = kn_claim(r->next_image)) < d->n;) {
        if (!r->pointwise) split_phases(d, r->l, r->x + image * xs, planes, 0, d->c);
        direct_panels(r, r->pointwise ? r->x + image * xs : planes, (int)image, 0, panels, product);
        if (r->ep) epilogue_image(d, r->ep, (int)image, r->y + image * ys);
    }
}

// Fewer images than threads (batch 1): each image's planes split by channel, then its output
// channels split across the threads.
static void split_phases_task(void *context, int64_t begin, int64_t end) {
    const direct_conv *r = context;
    const int64_t xs = (int64_t)r->d->c * r->d->h * r->d->w;
    split_phases(r->d, r->l, r->x + r->image * xs, r->planes, begin, end);
}

// A share of the image's output channels, and their epilogue (while they are in this core's cache).
static void direct_channels_task(void *context, int64_t begin, int64_t end) {
    const direct_conv *r = context;
    const kn_conv2d_desc *d = r->d;
    float *product = kn_scratch(KN_SCRATCH_GATHER, (end - begin) * DIRECT_MR * r->l->band_stride + tail_floats(d));
    if (!product) return;
    const float *planes = r->pointwise ? r->x + (int64_t)r->image * d->c * d->h * d->w : r->planes;
    direct_panels(r, planes, r->image, begin, end, product);
    const int last = (int)(end * DIRECT_MR < d->o ? end * DIRECT_MR : d->o);
    if (r->ep) epilogue_channels(d, r->ep, r->image, r->y + (int64_t)r->image * d->o * d->oh * d->ow, (int)begin * DIRECT_MR, last);
}

static void conv_direct_forward(const kn_conv2d_desc *d, const float *x, const float *w, const float *bias, float *y,
                                const kn_conv_epilogue *ep) {
    const int threads = kn_in_parallel() ? 1 : kn_threads(), kdim = d->c * d->kh * d->kw;
    const int64_t panels = (d->o + DIRECT_MR - 1) / DIRECT_MR;
    const direct_layout l = direct_layout_of(d);
    int32_t *off = (int32_t *)kn_scratch(KN_SCRATCH_WEIGHTS, kdim);
    if (!off) return;
    tap_offsets(d, &l, off);
    kn_counter next_image = {0};
    direct_conv r = {d, &l, x, w, bias, off, y, ep, NULL, 0, conv_is_pointwise(d), &next_image};
    if (d->n >= threads) {
        kn_parallel(threads, direct_images_task, &r);
        return;
    }
    if (!r.pointwise) {
        r.planes = kn_scratch(KN_SCRATCH_COLUMNS, l.floats);
        if (!r.planes) return;
        zero_slack(d, &l, r.planes);
    }
    for (r.image = 0; r.image < d->n; r.image++) {
        if (!r.pointwise) kn_parallel_for(d->c, KN_GRAIN_ROWS, split_phases_task, &r);
        kn_parallel_for(panels, KN_GRAIN_ROWS, direct_channels_task, &r);
    }
}
