// Pooling and zero padding.
#include "kernels.h"
#include <float.h>
#include <string.h>
#include "../parallel.h"
#include "pool_common.h"

int kn_pool2d_geometry(kn_pool2d_desc *d) {
    if (d->kh < 1 || d->kw < 1 || d->sh < 1 || d->sw < 1) return -1;
    if (d->ph < 0 || d->pw < 0 || 2 * d->ph > d->kh || 2 * d->pw > d->kw) return -1;
    int eh = d->h + 2 * d->ph - d->kh, ew = d->w + 2 * d->pw - d->kw;
    if (eh < 0 || ew < 0) return -1;
    d->oh = eh / d->sh + 1;
    d->ow = ew / d->sw + 1;
    return 0;
}

// First maximum of one window clipped to the input (PyTorch's tie rule; NaN propagates).
float kn_window_max(const kn_pool2d_desc *d, const float *xp, int oy, int ox, int32_t *where_out) {
    float best = -FLT_MAX;
    int32_t where = -1;
    for (int i = 0; i < d->kh; i++) {
        int iy = oy * d->sh - d->ph + i;
        if (iy < 0 || iy >= d->h) continue;
        for (int j = 0; j < d->kw; j++) {
            int ix = ox * d->sw - d->pw + j;
            if (ix < 0 || ix >= d->w) continue;
            float v = xp[iy * d->w + ix];
            if (v > best || where < 0 || v != v) { best = v; where = iy * d->w + ix; }
        }
    }
    *where_out = where;
    return best;
}

// The loops of a pooling kernel over planes (n·c of them), with what the plane bodies need.
typedef struct {
    const kn_pool2d_desc *d;
    const float *x;
    float *y;
    int count_include_pad;
    pool_inner_windows inner;  // max pool
} pool_planes;

static inline float max_or_nan(float best, float v) { return (v > best || v != v) ? v : best; }

// 3×3 stride-2 windows (ResNet's stem pool) of one plane's inner rows: the rows' column maxima
// first, a contiguous pass that vectorises, then the max of three neighbouring columns. The same
// first-maximum/NaN rule as the generic scan; order within a window does not change a maximum.
static void maxpool_plane_3x3s2(const kn_pool2d_desc *d, const pool_inner_windows *in, const float *xp, float *yp,
                                float *columns) {
    for (int oy = in->oy0; oy < in->oy1; oy++) {
        const float *r0 = xp + (oy * 2 - d->ph) * d->w, *r1 = r0 + d->w, *r2 = r1 + d->w;
        for (int x = 0; x < d->w; x++) columns[x] = max_or_nan(max_or_nan(r0[x], r1[x]), r2[x]);
        for (int ox = in->ox0; ox < in->ox1; ox++) {
            const float *c = columns + ox * 2 - d->pw;
            yp[oy * d->ow + ox] = max_or_nan(max_or_nan(c[0], c[1]), c[2]);
        }
    }
}

static void maxpool_planes(void *context, int64_t begin, int64_t end) {
    const pool_planes *r = context;
    const kn_pool2d_desc *d = r->d;
    const int fast = d->kh == 3 && d->kw == 3 && d->sh == 2 && d->sw == 2 && d->w <= 4096;
    float columns[fast ? d->w : 1];
    for (int64_t p = begin; p < end; p++) {
        const float *xp = r->x + p * d->h * d->w;
        float *yp = r->y + p * d->oh * d->ow;
        if (fast) maxpool_plane_3x3s2(d, &r->inner, xp, yp, columns);
        for (int oy = 0; oy < d->oh; oy++) {
            const int inside_row = oy >= r->inner.oy0 && oy < r->inner.oy1;
            if (fast && inside_row) {  // done above but for the edge columns
                for (int ox = 0; ox < d->ow; ox++) {
                    if (ox >= r->inner.ox0 && ox < r->inner.ox1) continue;
                    int32_t where;
                    yp[oy * d->ow + ox] = kn_window_max(d, xp, oy, ox, &where);
                }
                continue;
            }
            for (int ox = 0; ox < d->ow; ox++) {
                int32_t where;
                float best;
                if (inside_row && ox >= r->inner.ox0 && ox < r->inner.ox1) {
                    const float *wp = xp + (oy * d->sh - d->ph) * d->w + (ox * d->sw - d->pw);
                    best = wp[0];
                    for (int i = 0; i < d->kh; i++)
                        for (int j = 0; j < d->kw; j++) {
                            float v = wp[i * d->w + j];
                            best = (v > best || v != v) ? v : best;
                        }
                } else {
                    best = kn_window_max(d, xp, oy, ox, &where);
                }
                yp[oy * d->ow + ox] = best;
            }
        }
    }
}

void kn_maxpool2d_forward(const kn_pool2d_desc *d, const float *x, float *y) {
    pool_planes r = {.d = d, .x = x, .y = y, .inner = pool_inner(d)};
    kn_parallel_for((int64_t)d->n * d->c, KN_GRAIN_ROWS, maxpool_planes, &r);
}

static void avgpool_planes(void *context, int64_t begin, int64_t end) {
    const pool_planes *r = context;
    const kn_pool2d_desc *d = r->d;
    const float *x = r->x;
    float *y = r->y;
    const int count_include_pad = r->count_include_pad;
    for (int64_t p = begin; p < end; p++) {
        const float *xp = x + (int64_t)p * d->h * d->w;
        float *yp = y + (int64_t)p * d->oh * d->ow;
        for (int oy = 0; oy < d->oh; oy++)
            for (int ox = 0; ox < d->ow; ox++) {
                float acc = 0.0f;
                int inside = 0;
                for (int i = 0; i < d->kh; i++) {
                    int iy = oy * d->sh - d->ph + i;
                    if (iy < 0 || iy >= d->h) continue;
                    for (int j = 0; j < d->kw; j++) {
                        int ix = ox * d->sw - d->pw + j;
                        if (ix < 0 || ix >= d->w) continue;
                        acc += xp[iy * d->w + ix];
                        inside++;
                    }
                }
                // PyTorch's divisor with padding counts the window clipped to the padded input.
                int y0 = oy * d->sh - d->ph, x0 = ox * d->sw - d->pw;
                int y1 = y0 + d->kh, x1 = x0 + d->kw;
                if (y1 > d->h + d->ph) y1 = d->h + d->ph;
                if (x1 > d->w + d->pw) x1 = d->w + d->pw;
                int padded = (y1 - y0) * (x1 - x0);
                int divisor = count_include_pad ? padded : inside;
                yp[oy * d->ow + ox] = divisor > 0 ? acc / (float)divisor : 0.0f;
            }
    }
}

void kn_avgpool2d_forward(const kn_pool2d_desc *d, const float *x, float *y, int count_include_pad) {
    pool_planes r = {d, x, y, count_include_pad};
    kn_parallel_for((int64_t)d->n * d->c, KN_GRAIN_ROWS, avgpool_planes, &r);
}

typedef struct {
    const float *x;
    float *y;
    int h, w, pt, pl, pb, pr;
} plane_args;

static void global_avgpool_planes(void *context, int64_t begin, int64_t end) {
    const plane_args *r = context;
    const int hw = r->h;
    for (int64_t p = begin; p < end; p++) {
        const float *restrict xp = r->x + p * hw;
        double acc = 0.0;
        for (int i = 0; i < hw; i++) acc += xp[i];
        r->y[p] = (float)(acc / hw);
    }
}

void kn_global_avgpool_forward(const float *x, float *y, int n, int c, int hw) {
    plane_args r = {x, y, hw};
    kn_parallel_for((int64_t)n * c, KN_GRAIN_ROWS, global_avgpool_planes, &r);
}

static void zero_pad_planes(void *context, int64_t begin, int64_t end) {
    const plane_args *r = context;
    const int h = r->h, w = r->w, pt = r->pt, pl = r->pl, oh = h + pt + r->pb, ow = w + pl + r->pr;
    for (int64_t p = begin; p < end; p++) {
        const float *xp = r->x + p * h * w;
        float *yp = r->y + p * oh * ow;
        memset(yp, 0, sizeof(float) * oh * ow);
        for (int iy = 0; iy < h; iy++) {
            int oy = iy + pt;
            if (oy < 0 || oy >= oh) continue;
            for (int ix = 0; ix < w; ix++) {
                int ox = ix + pl;
                if (ox >= 0 && ox < ow) yp[oy * ow + ox] = xp[iy * w + ix];
            }
        }
    }
}

void kn_zero_pad2d(const float *x, float *y, int n, int c, int h, int w, int pt, int pl, int pb, int pr) {
    plane_args r = {x, y, h, w, pt, pl, pb, pr};
    kn_parallel_for((int64_t)n * c, KN_GRAIN_ROWS, zero_pad_planes, &r);
}
