// Depthwise convolution (groups == channels), forward and both gradients, one plane at a time.
//
// A plane is first split into its stride phases with the zero border (per-thread scratch): phase
// (a, b) holds the padded input's rows ≡ a and columns ≡ b (mod the stride), each row `width`
// floats. Tap (i, j) of output (oy, ox) then reads phase (i mod sh, j mod sw) at row oy + i / sh,
// column ox + j / sw; with the rows laid end to end, every tap is one contiguous run of the flat
// index k = oy·width + ox at a fixed offset. So a vector of outputs costs one load and one
// multiply-add per tap with the sum in a register, for stride 2 as for stride 1 and for 7×7 planes
// as for 112×112 (the k with ox ≥ ow are computed and dropped). The filter gradient dots the
// output gradient, laid out the same way with zeros in the dropped columns, with each tap's run;
// the input gradient is a stride-1 pass of the same kind over the zero-bordered output gradient,
// one per input phase.
#include "kernels.h"
#include <string.h>
#include "conv_common.h"
#include "../parallel.h"

typedef float dw_vec __attribute__((vector_size(KN_VECTOR_BYTES)));
typedef float dw_vec_unaligned __attribute__((vector_size(KN_VECTOR_BYTES), aligned(4)));
enum { DW_LANES = KN_VECTOR_BYTES / 4 };

static int64_t round_to_lanes(int64_t n) { return (n + DW_LANES - 1) / DW_LANES * DW_LANES; }

// The phase layout of one input plane.
typedef struct {
    int phases;           // sh · sw
    int rows, width;      // of each phase: the output's rows and columns plus the taps' reach
    int64_t outputs;      // oh · width: the flat outputs computed (columns ≥ ow dropped)
    int64_t phase_floats; // a phase with a spare row and a vector of slack (the dropped columns read past its end)
} dw_layout;

static dw_layout layout_of(const kn_conv2d_desc *d) {
    dw_layout l = {.phases = d->sh * d->sw, .rows = d->oh + (d->kh - 1) / d->sh, .width = d->ow + (d->kw - 1) / d->sw};
    l.outputs = (int64_t)d->oh * l.width;
    l.phase_floats = (int64_t)(l.rows + 1) * l.width + DW_LANES;
    return l;
}

// Writes the plane's stride phases with their zero border (every float of each phase: writing
// only the border's zeros instead of clearing the phases first saves a pass).
static void split_plane_phases(const kn_conv2d_desc *d, const dw_layout *l, const float *plane, float *phases) {
    for (int a = 0; a < d->sh; a++)
        for (int b = 0; b < d->sw; b++) {
            float *phase = phases + (a * d->sw + b) * l->phase_floats;
            // Columns q whose input column q·sw + b − pl lies in [0, w).
            const int first_q = d->pl - b > 0 ? (d->pl - b + d->sw - 1) / d->sw : 0;
            const int first = first_q < l->width ? first_q : l->width;
            const int reach = d->w - 1 - b + d->pl;
            const int end = reach < 0 || reach / d->sw + 1 < first ? first : (reach / d->sw + 1 < l->width ? reach / d->sw + 1 : l->width);
            for (int r = 0; r < l->rows; r++) {
                const int iy = r * d->sh + a - d->pt;
                float *dst = phase + (int64_t)r * l->width;
                if (iy < 0 || iy >= d->h) {
                    memset(dst, 0, sizeof(float) * l->width);
                    continue;
                }
                const float *row = plane + (int64_t)iy * d->w;
                memset(dst, 0, sizeof(float) * first);
                if (d->sw == 1) memcpy(dst + first, row + first - d->pl, sizeof(float) * (end - first));
                else if (d->sw == 2) for (int q = first; q < end; q++) dst[q] = row[2 * q + b - d->pl];  // vectorised
                else for (int q = first; q < end; q++) dst[q] = row[q * d->sw + b - d->pl];
                memset(dst + end, 0, sizeof(float) * (l->width - end));
            }
            const int64_t filled = (int64_t)l->rows * l->width;
            memset(phase + filled, 0, sizeof(float) * (l->phase_floats - filled));
        }
}

// Where tap (i, j) starts in the phases, in tap order.
static void tap_runs(const kn_conv2d_desc *d, const dw_layout *l, const float *phases, const float **runs) {
    for (int i = 0; i < d->kh; i++)
        for (int j = 0; j < d->kw; j++)
            runs[i * d->kw + j] = phases + ((i % d->sh) * d->sw + j % d->sw) * l->phase_floats +
                                  (int64_t)(i / d->sh) * l->width + j / d->sw;
}

// out[k] = bias + Σ_t weights[t] · runs[t][offset + k] for k < n rounded up to whole vectors, the
// terms added in tap order. Inlined with `taps` a constant, the tap loop unrolls and the sum stays in
// a register.
static inline __attribute__((always_inline)) void sum_taps(float *restrict out, const float *const *runs,
                                                           const float *weights, float bias, int64_t offset, int64_t n,
                                                           const int taps) {
    for (int64_t k = 0; k < n; k += DW_LANES) {
        dw_vec sum = (dw_vec){0} + bias;
        for (int t = 0; t < taps; t++) sum += weights[t] * *(const dw_vec_unaligned *)(runs[t] + offset + k);
        *(dw_vec_unaligned *)(out + k) = sum;
    }
}

static void sum_taps_any(float *out, const float *const *runs, const float *weights, float bias, int64_t offset, int64_t n,
                         int taps) {
    switch (taps) {  // the counts of 3×3 kernels at stride 1 and of their stride-2 phases
    case 9: sum_taps(out, runs, weights, bias, offset, n, 9); break;
    case 4: sum_taps(out, runs, weights, bias, offset, n, 4); break;
    case 2: sum_taps(out, runs, weights, bias, offset, n, 2); break;
    case 1: sum_taps(out, runs, weights, bias, offset, n, 1); break;
    default: sum_taps(out, runs, weights, bias, offset, n, taps);
    }
}

// A depthwise kernel's buffers; each worker takes a static share of the planes (or channels).
typedef struct {
    const kn_conv2d_desc *d;
    const float *x, *w, *bias, *dy;
    float *out;
    const kn_conv_epilogue *ep;
    dw_layout layout;
} depthwise_args;

// The worker's phase planes and flat buffer (per-thread scratch) and where each tap starts in the
// phases; 0 when the memory cannot be had.
static int plane_buffers(const kn_conv2d_desc *d, const dw_layout *l, float **phases, float **flat, const float **runs) {
    *phases = kn_scratch(KN_SCRATCH_COLUMNS, l->phase_floats * l->phases);
    *flat = kn_scratch(KN_SCRATCH_GATHER, round_to_lanes(l->outputs));
    if (!*phases || !*flat) return 0;
    tap_runs(d, l, *phases, runs);
    return 1;
}

// Output rows at least this wide are written in place (the flat layout's dropped columns and the
// copy out cost more than a row's partial last vector).
enum { DW_WIDE_ROW = 4 * DW_LANES };

static int workers_for(int64_t count) { return count < kn_threads() ? (int)count : kn_threads(); }

static void forward_task(void *context, int worker, int workers) {
    const depthwise_args *r = context;
    const kn_conv2d_desc *d = r->d;
    const dw_layout *l = &r->layout;
    const int taps = d->kh * d->kw;
    const int64_t ohw = (int64_t)d->oh * d->ow;
    int64_t begin, end;
    kn_share((int64_t)d->n * d->c, worker, workers, &begin, &end);
    if (begin >= end) return;
    float *phases, *flat;
    const float *runs[taps];
    if (!plane_buffers(d, l, &phases, &flat, runs)) return;
    for (int64_t p = begin; p < end; p++) {
        const int image = (int)(p / d->c), ch = (int)(p % d->c);
        split_plane_phases(d, l, r->x + p * d->h * d->w, phases);
        const float *wk = r->w + (int64_t)ch * taps, bias = r->bias ? r->bias[ch] : 0.0f;
        float *plane = r->out + p * ohw;
        if (d->ow >= DW_WIDE_ROW) {
            // Row by row into the plane, each row's last vector spilling into the next row (written
            // after it); the last row through the flat buffer, so nothing spills past the plane.
            for (int oy = 0; oy + 1 < d->oh; oy++)
                sum_taps_any(plane + (int64_t)oy * d->ow, runs, wk, bias, (int64_t)oy * l->width, d->ow, taps);
            const int last = d->oh - 1;
            sum_taps_any(flat, runs, wk, bias, (int64_t)last * l->width, d->ow, taps);
            memcpy(plane + (int64_t)last * d->ow, flat, sizeof(float) * d->ow);
        } else {
            sum_taps_any(flat, runs, wk, bias, 0, l->outputs, taps);
            for (int oy = 0; oy < d->oh; oy++) memcpy(plane + (int64_t)oy * d->ow, flat + (int64_t)oy * l->width, sizeof(float) * d->ow);
        }
        // The epilogue while the plane is in cache (the same per-channel pass as other convs').
        if (r->ep) epilogue_channels(d, r->ep, image, r->out + (int64_t)image * d->o * ohw, ch, ch + 1);
    }
}

static void depthwise_forward_fused(const kn_conv2d_desc *d, const float *x, const float *w, const float *bias, float *y,
                                    const kn_conv_epilogue *ep) {
    depthwise_args r = {.d = d, .x = x, .w = w, .bias = bias, .out = y, .ep = ep, .layout = layout_of(d)};
    kn_parallel(workers_for((int64_t)d->n * d->c), forward_task, &r);
}

void kn_conv2d_depthwise_forward(const kn_conv2d_desc *d, const float *x, const float *w, const float *bias, float *y) {
    depthwise_forward_fused(d, x, w, bias, y, NULL);
}

// The input gradient in padded coordinates (py, px) = (iy + pt, ix + pl), phase (a, b) = (py mod
// sh, px mod sw) at (qy, qx) = (py / sh, px / sw): Σ over the taps (a + sh·t, b + sw·u) of
// w · dy[qy − t][qx − u]. The output gradient is laid out with a zero border of (kh − 1) / sh rows
// and (kw − 1) / sw columns, `width` floats a row, so each term is again a run at a fixed offset.
typedef struct {
    int rows, cols;        // padded input covered by windows (beyond: gradient zero)
    int phase_rows, width; // of each input phase's flat gradient
    int border_rows, border_cols;
    int64_t padded_floats, phase_floats;
} dw_transpose;

static dw_transpose transpose_of(const kn_conv2d_desc *d) {
    dw_transpose t = {.rows = (d->oh - 1) * d->sh + d->kh, .cols = (d->ow - 1) * d->sw + d->kw};
    t.phase_rows = (t.rows + d->sh - 1) / d->sh;
    t.border_rows = (d->kh - 1) / d->sh, t.border_cols = (d->kw - 1) / d->sw;
    t.width = (t.cols + d->sw - 1) / d->sw + t.border_cols;
    t.padded_floats = (int64_t)(t.phase_rows + t.border_rows + 1) * t.width + DW_LANES;
    t.phase_floats = round_to_lanes((int64_t)t.phase_rows * t.width) + DW_LANES;  // the last vector may run past
    return t;
}

static void backward_data_task(void *context, int worker, int workers) {
    const depthwise_args *r = context;
    const kn_conv2d_desc *d = r->d;
    const dw_transpose t = transpose_of(d);
    const int phases = d->sh * d->sw, taps = d->kh * d->kw;
    int64_t begin, end;
    kn_share((int64_t)d->n * d->c, worker, workers, &begin, &end);
    if (begin >= end) return;
    float *padded = kn_scratch(KN_SCRATCH_COLUMNS, t.padded_floats);
    float *sums = kn_scratch(KN_SCRATCH_GATHER, t.phase_floats * phases);
    if (!padded || !sums) return;
    // The phase rows any input row falls in (the first and last input rows' phases bound them).
    const int last_row = d->pt + d->h < t.rows ? d->pt + d->h : t.rows;
    const int first_q = d->pt / d->sh, end_q = last_row > d->pt ? (last_row - 1) / d->sh + 1 : first_q;
    for (int64_t p = begin; p < end; p++) {
        const float *g = r->dy + p * d->oh * d->ow, *wk = r->w + (p % d->c) * taps;
        memset(padded, 0, sizeof(float) * t.padded_floats);
        for (int oy = 0; oy < d->oh; oy++)
            memcpy(padded + (int64_t)(oy + t.border_rows) * t.width + t.border_cols, g + (int64_t)oy * d->ow, sizeof(float) * d->ow);
        for (int a = 0; a < d->sh; a++)
            for (int b = 0; b < d->sw; b++) {
                const float *runs[taps];
                float weights[taps];
                int count = 0;
                for (int ty = 0; a + ty * d->sh < d->kh; ty++)
                    for (int tx = 0; b + tx * d->sw < d->kw; tx++, count++) {
                        weights[count] = wk[(a + ty * d->sh) * d->kw + b + tx * d->sw];
                        runs[count] = padded + (int64_t)first_q * t.width + (int64_t)(t.border_rows - ty) * t.width + t.border_cols - tx;
                    }
                float *sum = sums + (a * d->sw + b) * t.phase_floats + (int64_t)first_q * t.width;
                sum_taps_any(sum, runs, weights, 0.0f, 0, (int64_t)(end_q - first_q) * t.width, count);
            }
        // Interleave the phases into dx; input pixels no window reads get zero.
        float *dx = r->out + p * d->h * d->w;
        for (int iy = 0; iy < d->h; iy++) {
            float *row = dx + (int64_t)iy * d->w;
            const int py = iy + d->pt;
            memset(row, 0, sizeof(float) * d->w);
            if (py >= t.rows) continue;
            for (int b = 0; b < d->sw; b++) {
                const float *src = sums + ((py % d->sh) * d->sw + b) * t.phase_floats + (int64_t)(py / d->sh) * t.width;
                // Columns ix = q·sw + b − pl inside both the input and the covered columns.
                const int limit = (t.cols < d->pl + d->w ? t.cols : d->pl + d->w) - 1 - b;
                const int first = d->pl - b > 0 ? (d->pl - b + d->sw - 1) / d->sw : 0;
                const int stop = limit < 0 ? 0 : limit / d->sw + 1;
                if (d->sw == 1) memcpy(row + first - d->pl, src + first, sizeof(float) * (stop > first ? stop - first : 0));
                else if (d->sw == 2) for (int q = first; q < stop; q++) row[2 * q + b - d->pl] = src[q];  // vectorised
                else for (int q = first; q < stop; q++) row[q * d->sw + b - d->pl] = src[q];
            }
        }
    }
}

void kn_conv2d_depthwise_backward_data(const kn_conv2d_desc *d, const float *dy, const float *w, float *dx) {
    depthwise_args r = {.d = d, .dy = dy, .w = w, .out = dx};
    kn_parallel(workers_for((int64_t)d->n * d->c), backward_data_task, &r);
}

// sums[t] += Σ_k g[k] · runs[t][k] for k < n rounded up to whole vectors (g is zero past n): float
// lanes over stretches of 64 vectors, each stretch's total added in double. Inlined with `taps` a
// constant, the lanes stay in registers.
enum { DW_MAX_UNROLLED_TAPS = 9, DW_STRETCH = 64 * DW_LANES };

static inline __attribute__((always_inline)) void dot_taps(double *sums, const float *restrict g, const float *const *runs,
                                                           int64_t n, const int taps) {
    for (int64_t start = 0; start < n; start += DW_STRETCH) {
        const int64_t stop = start + DW_STRETCH < n ? start + DW_STRETCH : n;
        dw_vec lanes[DW_MAX_UNROLLED_TAPS];
        for (int t = 0; t < taps; t++) lanes[t] = (dw_vec){0};
        for (int64_t k = start; k < stop; k += DW_LANES) {
            const dw_vec gv = *(const dw_vec_unaligned *)(g + k);
            for (int t = 0; t < taps; t++) lanes[t] += gv * *(const dw_vec_unaligned *)(runs[t] + k);
        }
        for (int t = 0; t < taps; t++) {
            float total = 0.0f;
            for (int l = 0; l < DW_LANES; l++) total += lanes[t][l];
            sums[t] += total;
        }
    }
}

// Per channel, summed over images in order (deterministic).
static void backward_filter_task(void *context, int worker, int workers) {
    const depthwise_args *r = context;
    const kn_conv2d_desc *d = r->d;
    const dw_layout *l = &r->layout;
    const int taps = d->kh * d->kw;
    int64_t begin, end;
    kn_share(d->c, worker, workers, &begin, &end);
    if (begin >= end) return;
    float *phases, *flat;
    const float *runs[taps];
    if (!plane_buffers(d, l, &phases, &flat, runs)) return;
    // The dropped columns and the slack stay zero.
    memset(flat, 0, sizeof(float) * round_to_lanes(l->outputs));
    for (int ch = (int)begin; ch < end; ch++) {
        double sums[taps];
        for (int t = 0; t < taps; t++) sums[t] = 0.0;
        for (int n = 0; n < d->n; n++) {
            const int64_t p = (int64_t)n * d->c + ch;
            const float *g = r->dy + p * d->oh * d->ow;
            for (int oy = 0; oy < d->oh; oy++) memcpy(flat + (int64_t)oy * l->width, g + (int64_t)oy * d->ow, sizeof(float) * d->ow);
            split_plane_phases(d, l, r->x + p * d->h * d->w, phases);
            for (int t0 = 0; t0 < taps; t0 += DW_MAX_UNROLLED_TAPS) {
                const int count = taps - t0 < DW_MAX_UNROLLED_TAPS ? taps - t0 : DW_MAX_UNROLLED_TAPS;
                if (count == 9) dot_taps(sums + t0, flat, runs + t0, l->outputs, 9);
                else dot_taps(sums + t0, flat, runs + t0, l->outputs, count);
            }
        }
        for (int t = 0; t < taps; t++) r->out[(int64_t)ch * taps + t] = (float)sums[t];
    }
}

void kn_conv2d_depthwise_backward_filter(const kn_conv2d_desc *d, const float *x, const float *dy, float *dw) {
    depthwise_args r = {.d = d, .x = x, .dy = dy, .out = dw, .layout = layout_of(d)};
    kn_parallel(workers_for(d->c), backward_filter_task, &r);
}
