// Depthwise convolution (groups == channels), forward and both gradients. Each image plane is
// first copied into a zero border (per-thread scratch), so every tap is a branch-free pass along
// an output row: contiguous for stride 1, every second element for stride 2 (MobileNetV2's two
// cases), and the compiler vectorises both.
#include "kernels.h"
#include <string.h>
#include "conv_common.h"
#include "../parallel.h"

// The padded plane covers exactly the rows and columns the windows read.
typedef struct { int rows, cols; } padded_size;

static padded_size padded(const kn_conv2d_desc *d) {
    return (padded_size){(d->oh - 1) * d->sh + d->kh, (d->ow - 1) * d->sw + d->kw};
}

static void pad_plane(const kn_conv2d_desc *d, const float *plane, padded_size ps, float *out) {
    memset(out, 0, sizeof(float) * ps.rows * ps.cols);
    const int width = d->w + d->pl > ps.cols ? ps.cols - d->pl : d->w;  // input columns any window reads
    for (int iy = 0; iy < d->h && iy + d->pt < ps.rows; iy++)
        memcpy(out + (int64_t)(iy + d->pt) * ps.cols + d->pl, plane + (int64_t)iy * d->w, sizeof(float) * width);
}

// row[ox] += wv * src[ox * stride] for ox < n, with the stride a constant in each loop.
static inline void axpy_strided(float *restrict row, const float *restrict src, float wv, int stride, int n) {
    if (stride == 1) for (int ox = 0; ox < n; ox++) row[ox] += wv * src[ox];
    else if (stride == 2) for (int ox = 0; ox < n; ox++) row[ox] += wv * src[2 * ox];
    else for (int ox = 0; ox < n; ox++) row[ox] += wv * src[ox * stride];
}

// dst[ox * stride] += wv * g[ox] for ox < n (the adjoint of axpy_strided).
static inline void scatter_strided(float *restrict dst, const float *restrict g, float wv, int stride, int n) {
    if (stride == 1) for (int ox = 0; ox < n; ox++) dst[ox] += wv * g[ox];
    else if (stride == 2) for (int ox = 0; ox < n; ox++) dst[2 * ox] += wv * g[ox];
    else for (int ox = 0; ox < n; ox++) dst[ox * stride] += wv * g[ox];
}

// Σ g[ox] · src[ox * stride] for ox < n, in LANES independent partial sums so the loop vectorises
// (a single float accumulator would be a chain the compiler may not reorder).
enum { LANES = 8 };

// A depthwise kernel's buffers; each worker takes a static share of the planes (or channels).
typedef struct {
    const kn_conv2d_desc *d;
    const float *x, *w, *bias, *dy;
    float *out;
    padded_size ps;
} depthwise_args;

// The worker's share of [0, count), and its zero-bordered plane buffer (NULL: nothing to do).
static float *worker_share(const depthwise_args *r, int64_t count, int worker, int workers, int64_t *begin, int64_t *end) {
    kn_share(count, worker, workers, begin, end);
    return *begin < *end ? kn_scratch(KN_SCRATCH_COLUMNS, (int64_t)r->ps.rows * r->ps.cols) : NULL;
}

static int workers_for(int64_t count) { return count < kn_threads() ? (int)count : kn_threads(); }

static inline float dot_strided(const float *restrict g, const float *restrict src, int stride, int n) {
    float lanes[LANES] = {0};
    int ox = 0;
    if (stride == 1)
        for (; ox + LANES <= n; ox += LANES)
            for (int l = 0; l < LANES; l++) lanes[l] += g[ox + l] * src[ox + l];
    else if (stride == 2)
        for (; ox + LANES <= n; ox += LANES)
            for (int l = 0; l < LANES; l++) lanes[l] += g[ox + l] * src[2 * (ox + l)];
    for (; ox < n; ox++) lanes[0] += g[ox] * src[ox * stride];
    float s = 0.0f;
    for (int l = 0; l < LANES; l++) s += lanes[l];
    return s;
}

static void forward_task(void *context, int worker, int workers) {
    const depthwise_args *r = context;
    const kn_conv2d_desc *d = r->d;
    const float *x = r->x, *w = r->w, *bias = r->bias;
    float *y = r->out;
    const padded_size ps = r->ps;
    int64_t begin, end;
    float *pad = worker_share(r, (int64_t)d->n * d->c, worker, workers, &begin, &end);
    if (!pad) return;
    for (int64_t p = begin; p < end; p++) {
        const int ch = p % d->c;
        const float *wk = w + (int64_t)ch * d->kh * d->kw;
        float *yp = y + (int64_t)p * d->oh * d->ow;
        const float b = bias ? bias[ch] : 0.0f;
        pad_plane(d, x + (int64_t)p * d->h * d->w, ps, pad);
        for (int oy = 0; oy < d->oh; oy++) {
            float *row = yp + (int64_t)oy * d->ow;
            for (int ox = 0; ox < d->ow; ox++) row[ox] = b;
            for (int i = 0; i < d->kh; i++) {
                const float *src = pad + (int64_t)(oy * d->sh + i) * ps.cols;
                for (int j = 0; j < d->kw; j++) axpy_strided(row, src + j, wk[i * d->kw + j], d->sw, d->ow);
            }
        }
    }
}

void kn_conv2d_depthwise_forward(const kn_conv2d_desc *d, const float *x, const float *w, const float *bias, float *y) {
    depthwise_args r = {.d = d, .x = x, .w = w, .bias = bias, .out = y, .ps = padded(d)};
    kn_parallel(workers_for((int64_t)d->n * d->c), forward_task, &r);
}

static void backward_data_task(void *context, int worker, int workers) {
    const depthwise_args *r = context;
    const kn_conv2d_desc *d = r->d;
    const float *dy = r->dy, *w = r->w;
    float *dx = r->out;
    const padded_size ps = r->ps;
    int64_t begin, end;
    float *pad = worker_share(r, (int64_t)d->n * d->c, worker, workers, &begin, &end);
    if (!pad) return;
    for (int64_t p = begin; p < end; p++) {
        const int ch = p % d->c;
        const float *wk = w + (int64_t)ch * d->kh * d->kw;
        const float *g = dy + (int64_t)p * d->oh * d->ow;
        memset(pad, 0, sizeof(float) * ps.rows * ps.cols);
        for (int oy = 0; oy < d->oh; oy++)
            for (int i = 0; i < d->kh; i++) {
                float *dst = pad + (int64_t)(oy * d->sh + i) * ps.cols;
                for (int j = 0; j < d->kw; j++) scatter_strided(dst + j, g + (int64_t)oy * d->ow, wk[i * d->kw + j], d->sw, d->ow);
            }
        // Crop the border; input pixels no window reads get zero.
        float *dxp = dx + (int64_t)p * d->h * d->w;
        for (int iy = 0; iy < d->h; iy++)
            for (int ix = 0; ix < d->w; ix++) {
                const int py = iy + d->pt, px = ix + d->pl;
                dxp[(int64_t)iy * d->w + ix] = py < ps.rows && px < ps.cols ? pad[(int64_t)py * ps.cols + px] : 0.0f;
            }
    }
}

void kn_conv2d_depthwise_backward_data(const kn_conv2d_desc *d, const float *dy, const float *w, float *dx) {
    depthwise_args r = {.d = d, .dy = dy, .w = w, .out = dx, .ps = padded(d)};
    kn_parallel(workers_for((int64_t)d->n * d->c), backward_data_task, &r);
}

// Per channel, summed over images in order (deterministic); each tap's row dot products are
// float, their total double.
static void backward_filter_task(void *context, int worker, int workers) {
    const depthwise_args *r = context;
    const kn_conv2d_desc *d = r->d;
    const float *x = r->x, *dy = r->dy;
    float *dw = r->out;
    const padded_size ps = r->ps;
    const int taps = d->kh * d->kw;
    int64_t begin, end;
    float *pad = worker_share(r, d->c, worker, workers, &begin, &end);
    if (!pad) return;
    for (int ch = (int)begin; ch < end; ch++) {
        double acc[taps];
        for (int t = 0; t < taps; t++) acc[t] = 0.0;
        for (int n = 0; n < d->n; n++) {
            const int64_t p = (int64_t)n * d->c + ch;
            const float *g = dy + p * d->oh * d->ow;
            pad_plane(d, x + p * d->h * d->w, ps, pad);
            for (int oy = 0; oy < d->oh; oy++)
                for (int i = 0; i < d->kh; i++) {
                    const float *src = pad + (int64_t)(oy * d->sh + i) * ps.cols;
                    for (int j = 0; j < d->kw; j++) acc[i * d->kw + j] += dot_strided(g + (int64_t)oy * d->ow, src + j, d->sw, d->ow);
                }
        }
        for (int t = 0; t < taps; t++) dw[(int64_t)ch * taps + t] = (float)acc[t];
    }
}

void kn_conv2d_depthwise_backward_filter(const kn_conv2d_desc *d, const float *x, const float *dy, float *dw) {
    depthwise_args r = {.d = d, .x = x, .dy = dy, .out = dw, .ps = padded(d)};
    kn_parallel(workers_for(d->c), backward_filter_task, &r);
}
