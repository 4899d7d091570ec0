// Convolution forward for small maps with prepared filters (ResNet's layer3 and layer4 at batch
// 1): tiles of pixels × output channels, the vectors running along the output channels.
//
// The direct path (conv_direct.c) puts consecutive virtual pixels of a phase plane in a vector.
// On a small map that wastes much of the work: each output row carries the (kw − 1)/s columns
// past it and the last tile pads the rest, so a 7×7 map computes 64 columns for 49 pixels and a
// 14×14 one 224 for 196. Here a vector holds NR output channels of one pixel and the pixel's tap
// is broadcast from the same phase planes; every pixel of a tile has its own base, so only real
// pixels are computed. The filters are packed once per model (kn_conv2d_prepare_weights), k-major
// in panels of NR channels, so a tile reads them as two aligned vectors per k.
//
// Each output sums its K products in the direct path's order with the same fused multiply-adds
// (the direct path stores and reloads its sums between KC blocks, which is exact): results are
// bit-equal to it (and so to gemm_ordered).
#include "kernels.h"
#include "conv_common.h"
#include "../parallel.h"
#include <string.h>

// Pixels per tile: 2·MR accumulators, two filter vectors, the broadcasts from memory (32 vector
// registers with AVX-512, 16 otherwise). 7 divides ResNet's 7×7 and 14×14 maps.
enum { CHANNEL_MR = KN_VECTOR_BYTES == 64 ? 7 : 6 };

// Maps up to this many pixels take the path (a 16×16 map wastes 1/9 of the direct path's work).
enum { CHANNEL_TILES_MAX_PIXELS = 256 };

// The prepared buffer: a header naming its layout (vector width, panel width, the conv's
// channels and kernel), then the filters as [o / NR][kdim][NR].
enum { CHANNEL_TILES_HEADER = 16 };  // floats: keeps the panels on the buffer's alignment

static int channel_tiles_eligible(const kn_conv2d_desc *d) {
    return d->groups == 1 && d->o % GEMM_NR == 0 && (int64_t)d->oh * d->ow <= CHANNEL_TILES_MAX_PIXELS &&
           conv_direct_eligible(d);
}

static void channel_tiles_tag(const kn_conv2d_desc *d, int32_t tag[CHANNEL_TILES_HEADER]) {
    memset(tag, 0, sizeof(int32_t) * CHANNEL_TILES_HEADER);
    tag[0] = 0x4b435431;  // "KCT1"
    tag[1] = KN_VECTOR_BYTES, tag[2] = GEMM_NR, tag[3] = d->o, tag[4] = d->c, tag[5] = d->kh, tag[6] = d->kw;
}

static int64_t channel_tiles_prepared_floats(const kn_conv2d_desc *d) {
    return CHANNEL_TILES_HEADER + (int64_t)d->o * d->c * d->kh * d->kw;
}

static void channel_tiles_prepare(const kn_conv2d_desc *d, const float *w, float *prepared) {
    int32_t tag[CHANNEL_TILES_HEADER];
    channel_tiles_tag(d, tag);
    memcpy(prepared, tag, sizeof tag);
    const int64_t kdim = (int64_t)d->c * d->kh * d->kw;
    float *panels = prepared + CHANNEL_TILES_HEADER;
    for (int64_t p = 0; p < d->o / GEMM_NR; p++)
        for (int64_t k = 0; k < kdim; k++)
            for (int v = 0; v < GEMM_NR; v++) panels[(p * kdim + k) * GEMM_NR + v] = w[(p * GEMM_NR + v) * kdim + k];
}

// The packed panels of a prepared buffer whose layout is this code's for d, else NULL.
static const float *channel_tiles_panels(const kn_conv2d_desc *d, const float *prepared) {
    int32_t tag[CHANNEL_TILES_HEADER];
    channel_tiles_tag(d, tag);
    return prepared && memcmp(prepared, tag, sizeof tag) == 0 ? prepared + CHANNEL_TILES_HEADER : NULL;
}

// One MR×NR tile over all K: c[m][0 .. NR) = Σ_k src[m][off[k]] · w[k][0 .. NR), in k order, the
// sums in registers throughout (blocking K as the direct path does was 15% slower: the panel's
// reads come from L2 either way); pixels past `mr` repeat the last one and are not stored.
static void channel_tile(int kdim, const float *w, const float *const *src, const int32_t *off, float *c, int mr) {
    gemm_vec acc[CHANNEL_MR][2];
    const float *pixel[CHANNEL_MR];
    for (int m = 0; m < CHANNEL_MR; m++) {
        pixel[m] = src[m < mr ? m : mr - 1];
        acc[m][0] = (gemm_vec){0};
        acc[m][1] = (gemm_vec){0};
    }
#pragma unroll 2
    for (int k = 0; k < kdim; k++) {
        const gemm_vec w0 = *(const gemm_vec_unaligned *)(w + k * GEMM_NR);
        const gemm_vec w1 = *(const gemm_vec_unaligned *)(w + k * GEMM_NR + GEMM_VL);
        const int32_t at = off[k];
#pragma unroll
        for (int m = 0; m < CHANNEL_MR; m++) {
            const float s = pixel[m][at];
            acc[m][0] += w0 * s;
            acc[m][1] += w1 * s;
        }
    }
    for (int m = 0; m < mr; m++) {
        *(gemm_vec_unaligned *)(c + m * GEMM_NR) = acc[m][0];
        *(gemm_vec_unaligned *)(c + m * GEMM_NR + GEMM_VL) = acc[m][1];
    }
}

// The direct path's state for the call (layout, tap offsets, the shared image's planes, the
// image counter: its phase split runs as is; its filters w are unused), plus the packed panels.
typedef struct {
    direct_conv base;
    const float *panels;
    kn_counter *next_panel;  // panels of the shared image claimed by the workers (batch 1)
} channel_tiles;

// Panels [first, end) of one image: each panel's tiles into `product` [pixels][NR] (the panel's
// filters stay in L2 across the tiles), then transposed into y.
static void channel_panels(const channel_tiles *r, const float *planes, int image, int64_t first, int64_t end,
                           float *product) {
    const direct_conv *b = &r->base;
    const kn_conv2d_desc *d = b->d;
    const int kdim = d->c * d->kh * d->kw, ohw = d->oh * d->ow;
    float *y = b->y + (int64_t)image * d->o * ohw;
    for (int64_t p = first; p < end; p++) {
        const float *panel = r->panels + p * kdim * GEMM_NR;
        for (int t = 0; t < ohw; t += CHANNEL_MR) {
            const int mr = ohw - t < CHANNEL_MR ? ohw - t : CHANNEL_MR;
            const float *src[CHANNEL_MR];
            for (int m = 0; m < mr; m++) {
                const int q = t + m, oy = q / d->ow, ox = q - oy * d->ow;
                src[m] = planes + (int64_t)oy * b->l->cols + ox;
            }
            channel_tile(kdim, panel, src, b->off, product + (int64_t)t * GEMM_NR, mr);
        }
        for (int v = 0; v < GEMM_NR; v++) {
            const int oc = (int)p * GEMM_NR + v;
            float *dst = y + (int64_t)oc * ohw;
            if (b->bias) {
                const float bias = b->bias[oc];
                for (int q = 0; q < ohw; q++) dst[q] = product[q * GEMM_NR + v] + bias;
            } else {
                for (int q = 0; q < ohw; q++) dst[q] = product[q * GEMM_NR + v];
            }
        }
    }
}

static int64_t channel_product_floats(const kn_conv2d_desc *d) {
    return ((int64_t)d->oh * d->ow + CHANNEL_MR) * GEMM_NR;
}

static void channel_images_task(void *context, int worker, int workers) {
    (void)worker, (void)workers;
    const channel_tiles *r = context;
    const direct_conv *b = &r->base;
    const kn_conv2d_desc *d = b->d;
    float *planes = b->pointwise ? NULL : kn_scratch(KN_SCRATCH_COLUMNS, b->l->floats);
    float *product = kn_scratch(KN_SCRATCH_GATHER, channel_product_floats(d));
    if ((!planes && !b->pointwise) || !product) return;
    if (planes) zero_slack(d, b->l, planes);
    const int64_t xs = (int64_t)d->c * d->h * d->w, ys = (int64_t)d->o * d->oh * d->ow;
    for (int64_t image; (image = kn_claim(b->next_image)) < d->n;) {
        if (planes) split_phases(d, b->l, b->x + image * xs, planes, 0, d->c);
        channel_panels(r, planes ? planes : b->x + image * xs, (int)image, 0, d->o / GEMM_NR, product);
        if (b->ep) epilogue_image(d, b->ep, (int)image, b->y + image * ys);
    }
}

// One image's panels, claimed one at a time from a counter (a core the host slows takes fewer),
// each with its epilogue while it is in this core's cache.
static void channel_panels_task(void *context, int worker, int workers) {
    (void)worker, (void)workers;
    const channel_tiles *r = context;
    const direct_conv *b = &r->base;
    const kn_conv2d_desc *d = b->d;
    float *product = kn_scratch(KN_SCRATCH_GATHER, channel_product_floats(d));
    if (!product) return;
    const float *planes = b->planes ? b->planes : b->x + (int64_t)b->image * d->c * d->h * d->w;
    float *y = b->y + (int64_t)b->image * d->o * d->oh * d->ow;
    for (int64_t p; (p = kn_claim(r->next_panel)) < d->o / GEMM_NR;) {
        channel_panels(r, planes, b->image, p, p + 1, product);
        if (b->ep) epilogue_channels(d, b->ep, b->image, y, (int)p * GEMM_NR, (int)(p + 1) * GEMM_NR);
    }
}

// Runs the convolution when `prepared` holds this path's panels for d; returns 0 (and does
// nothing) otherwise.
static int channel_tiles_forward(const kn_conv2d_desc *d, const float *x, const float *prepared, const float *bias,
                                 float *y, const kn_conv_epilogue *ep) {
    const float *panels = channel_tiles_eligible(d) ? channel_tiles_panels(d, prepared) : NULL;
    if (!panels) return 0;
    const int threads = kn_in_parallel() ? 1 : kn_threads(), kdim = d->c * d->kh * d->kw;
    const direct_layout l = direct_layout_of(d);
    int32_t *off = (int32_t *)kn_scratch(KN_SCRATCH_WEIGHTS, kdim);
    if (!off) return 1;
    tap_offsets(d, &l, off);
    kn_counter next_image = {0}, next_panel = {0};
    channel_tiles r = {{d, &l, x, NULL, bias, off, y, ep, NULL, 0, conv_is_pointwise(d), &next_image}, panels, &next_panel};
    if (d->n >= threads) {
        kn_parallel(threads, channel_images_task, &r);
        return 1;
    }
    if (!r.base.pointwise) {
        r.base.planes = kn_scratch(KN_SCRATCH_COLUMNS, l.floats);
        if (!r.base.planes) return 1;
        zero_slack(d, &l, r.base.planes);
    }
    const int64_t panel_count = d->o / GEMM_NR;
    for (r.base.image = 0; r.base.image < d->n; r.base.image++) {
        if (r.base.planes) kn_parallel_for(d->c, KN_GRAIN_ROWS, split_phases_task, &r.base);
        atomic_store(&next_panel.next, 0);
        kn_parallel(panel_count < threads ? (int)panel_count : threads, channel_panels_task, &r);
    }
    return 1;
}
