// Winograd F(2×2, 3×3) for 3×3, stride-1, pad-1, ungrouped convolutions: each 4×4 input tile
// gives a 2×2 output tile with 16 multiplies per (input, output) channel pair instead of 36.
// The 16 element-wise products become 16 GEMMs over all tiles of a chunk of images, so the
// arithmetic still runs in OpenBLAS. Transforms (Lavin & Gray, 2015):
//   U = G g Gᵀ,  V = Bᵀ d B,  Y = Aᵀ (U ⊙ V) A.
// The filter gradient is the same algorithm transposed: Y is linear in g, so
//   dg = Gᵀ [Σ_tiles (A dY Aᵀ) ⊙ V] G,
// and the sum over tiles is again 16 GEMMs, now with the tiles as the reduction axis.
#include "kernels.h"
#include <omp.h>
#include <stdlib.h>
#include <string.h>

// Measured on ResNet-18 (batch 32, 2 cores), forward: 64-channel 56×56 convs 45 → 25 ms,
// 128-channel 42 → 27 ms, 256-channel 37 → 21 ms, 512-channel 7×7 36 → 28 ms (even with the
// padded edge tiles); at 128² input (4×4 maps in layer4) training gains 6%. Below 64 channels
// the K = C GEMMs get too thin.
int kn_conv2d_winograd_eligible(const kn_conv2d_desc *d) {
    return d->kh == 3 && d->kw == 3 && d->sh == 1 && d->sw == 1 && d->groups == 1 &&
           d->pt == 1 && d->pl == 1 && d->pb == 1 && d->pr == 1 && d->c >= 64 && d->o >= 64 && d->h >= 4 && d->w >= 4;
}

// Distance between the 16 transformed matrices of `rows` × `tiles`. The transforms write (and
// read) all 16 at once; at a multiple of 4 KiB apart they would share L1 sets and evict each
// other, so each is padded by 16 floats (one cache line) to a distinct set.
static int64_t matrix_stride(int rows, int64_t tiles) {
    int64_t size = (int64_t)rows * tiles;
    return (size + 15) / 16 * 16 + 16;
}

// U[16][o][c] from w[o][c][3][3].
static void transform_weights(const float *w, int o, int c, float *u) {
    const int64_t plane = (int64_t)o * c, stride = matrix_stride(o, c);
    #pragma omp parallel for schedule(static)
    for (int64_t oc = 0; oc < plane; oc++) {
        const float *g = w + oc * 9;
        float t[4][3];  // G g
        for (int j = 0; j < 3; j++) {
            t[0][j] = g[j];
            t[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
            t[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
            t[3][j] = g[6 + j];
        }
        for (int i = 0; i < 4; i++) {  // (G g) Gᵀ
            float r[4] = {t[i][0], 0.5f * (t[i][0] + t[i][1] + t[i][2]), 0.5f * (t[i][0] - t[i][1] + t[i][2]), t[i][2]};
            for (int j = 0; j < 4; j++) u[(i * 4 + j) * stride + oc] = r[j];
        }
    }
}

// V[16][c][T] for the tiles of `count` images (T = count * th * tw), input padded by 1 on each side.
// One tile row at a time: its 4 input rows, zero-padded and split into even and odd columns, so
// tile tx reads columns (even[tx], odd[tx], even[tx+1], odd[tx+1]) and each of the 16 outputs is
// a contiguous run of tw tiles: the tx loop vectorises.
static void transform_input(const kn_conv2d_desc *d, const float *x, int count, int th, int tw, float *v) {
    const int64_t tiles = (int64_t)count * th * tw, stride = matrix_stride(d->c, tiles);
    const int width = 2 * tw + 2;  // padded row: a zero column in front, zeros past the end
    float row[width], even[4][tw + 1], odd[4][tw + 1];
    for (int n = 0; n < count; n++)
        for (int ch = 0; ch < d->c; ch++) {
            const float *xp = x + ((int64_t)n * d->c + ch) * d->h * d->w;
            for (int ty = 0; ty < th; ty++) {
                for (int i = 0; i < 4; i++) {
                    const int yy = 2 * ty - 1 + i;
                    memset(row, 0, sizeof row);
                    if (yy >= 0 && yy < d->h) memcpy(row + 1, xp + (int64_t)yy * d->w, sizeof(float) * d->w);
                    for (int m = 0; m <= tw; m++) { even[i][m] = row[2 * m]; odd[i][m] = row[2 * m + 1]; }
                }
                float *out = v + (int64_t)ch * tiles + ((int64_t)n * th + ty) * tw;
                for (int tx = 0; tx < tw; tx++) {
                    float t[4][4], s[4][4];
                    for (int i = 0; i < 4; i++) {
                        t[i][0] = even[i][tx]; t[i][1] = odd[i][tx]; t[i][2] = even[i][tx + 1]; t[i][3] = odd[i][tx + 1];
                    }
                    for (int j = 0; j < 4; j++) {  // Bᵀ t
                        s[0][j] = t[0][j] - t[2][j];
                        s[1][j] = t[1][j] + t[2][j];
                        s[2][j] = t[2][j] - t[1][j];
                        s[3][j] = t[1][j] - t[3][j];
                    }
                    for (int i = 0; i < 4; i++) {  // (Bᵀ t) B
                        out[(i * 4 + 0) * stride + tx] = s[i][0] - s[i][2];
                        out[(i * 4 + 1) * stride + tx] = s[i][1] + s[i][2];
                        out[(i * 4 + 2) * stride + tx] = s[i][2] - s[i][1];
                        out[(i * 4 + 3) * stride + tx] = s[i][1] - s[i][3];
                    }
                }
            }
        }
}

// y[n][o] 2×2 tiles from M[16][o][T], plus bias; vectorised across the tiles of a tile row,
// whose two output rows are interleaved (even and odd columns) afterwards.
static void transform_output(const kn_conv2d_desc *d, const float *m, const float *bias, int count, int th, int tw, float *y) {
    const int64_t tiles = (int64_t)count * th * tw, stride = matrix_stride(d->o, tiles);
    float pair[2][2][tw];  // [output row][even/odd column][tile]
    for (int n = 0; n < count; n++)
        for (int oc = 0; oc < d->o; oc++) {
            float *yp = y + ((int64_t)n * d->o + oc) * d->oh * d->ow;
            const float b = bias ? bias[oc] : 0.0f;
            for (int ty = 0; ty < th; ty++) {
                const float *in = m + (int64_t)oc * tiles + ((int64_t)n * th + ty) * tw;
                for (int tx = 0; tx < tw; tx++) {
                    float q[4][4], r[2][4];
                    for (int k = 0; k < 16; k++) q[k / 4][k % 4] = in[k * stride + tx];
                    for (int j = 0; j < 4; j++) {  // Aᵀ q
                        r[0][j] = q[0][j] + q[1][j] + q[2][j];
                        r[1][j] = q[1][j] - q[2][j] - q[3][j];
                    }
                    for (int i = 0; i < 2; i++) {  // (Aᵀ q) A
                        pair[i][0][tx] = r[i][0] + r[i][1] + r[i][2] + b;
                        pair[i][1][tx] = r[i][1] - r[i][2] - r[i][3] + b;
                    }
                }
                for (int i = 0; i < 2 && 2 * ty + i < d->oh; i++) {
                    float *dst = yp + (int64_t)(2 * ty + i) * d->ow;
                    for (int ox = 0; ox < d->ow; ox++) dst[ox] = pair[i][ox & 1][ox >> 1];
                }
            }
        }
}

void kn_conv2d_winograd(const kn_conv2d_desc *d, const float *x, const float *w, const float *bias, float *y,
                        void (*epilogue)(const kn_conv2d_desc *, const void *, int, float *), const void *context) {
    const int threads = kn_threads();
    const int th = (d->oh + 1) / 2, tw = (d->ow + 1) / 2;
    // Images per chunk: about 2048 tiles per GEMM, chunks spread over the threads.
    int chunk = 2048 / (th * tw);
    const int per_thread = (d->n + threads - 1) / threads;
    if (chunk > per_thread) chunk = per_thread;
    if (chunk < 1) chunk = 1;
    const int chunks = (d->n + chunk - 1) / chunk;
    float *u = kn_scratch(KN_SCRATCH_WEIGHTS, 16 * matrix_stride(d->o, d->c));
    transform_weights(w, d->o, d->c, u);
    const int64_t xs = (int64_t)d->c * d->h * d->w, ys = (int64_t)d->o * d->oh * d->ow;
    #pragma omp parallel num_threads(chunks >= threads ? threads : 1)
    {
        const int64_t max_tiles = (int64_t)chunk * th * tw;
        float *v = kn_scratch(KN_SCRATCH_COLUMNS, 16 * matrix_stride(d->c, max_tiles));
        float *m = kn_scratch(KN_SCRATCH_GATHER, 16 * matrix_stride(d->o, max_tiles));
        #pragma omp for schedule(static)
        for (int ci = 0; ci < chunks; ci++) {
            const int first = ci * chunk, count = first + chunk > d->n ? d->n - first : chunk;
            const int64_t tiles = (int64_t)count * th * tw;
            transform_input(d, x + first * xs, count, th, tw, v);
            for (int k = 0; k < 16; k++)
                kn_sgemm(0, 0, d->o, (int)tiles, d->c, 1.0f, u + k * matrix_stride(d->o, d->c), d->c,
                         v + k * matrix_stride(d->c, tiles), (int)tiles, 0.0f, m + k * matrix_stride(d->o, tiles), (int)tiles);
            transform_output(d, m, bias, count, th, tw, y + first * ys);
            if (epilogue) for (int j = first; j < first + count; j++) epilogue(d, context, j, y + j * ys);
        }
    }
}

// Ĝ[16][o][T] = A dy Aᵀ for the 2×2 output-gradient tiles of `count` images (zero past the edge),
// A = [[1,0],[1,1],[1,-1],[0,-1]]; vectorised across the tiles of a tile row.
static void transform_gradient(const kn_conv2d_desc *d, const float *dy, int count, int th, int tw, float *g) {
    const int64_t tiles = (int64_t)count * th * tw, stride = matrix_stride(d->o, tiles);
    float row[2 * tw], even[2][tw], odd[2][tw];
    for (int n = 0; n < count; n++)
        for (int oc = 0; oc < d->o; oc++) {
            const float *gp = dy + ((int64_t)n * d->o + oc) * d->oh * d->ow;
            for (int ty = 0; ty < th; ty++) {
                for (int i = 0; i < 2; i++) {
                    const int yy = 2 * ty + i;
                    memset(row, 0, sizeof row);
                    if (yy < d->oh) memcpy(row, gp + (int64_t)yy * d->ow, sizeof(float) * d->ow);
                    for (int m = 0; m < tw; m++) { even[i][m] = row[2 * m]; odd[i][m] = row[2 * m + 1]; }
                }
                float *out = g + (int64_t)oc * tiles + ((int64_t)n * th + ty) * tw;
                for (int tx = 0; tx < tw; tx++) {
                    const float a0 = even[0][tx], b0 = odd[0][tx], a1 = even[1][tx], b1 = odd[1][tx];
                    // A g: rows (g0, g0 + g1, g0 − g1, −g1) of the 2×2 tile [[a0, b0], [a1, b1]].
                    const float r[4][2] = {{a0, b0}, {a0 + a1, b0 + b1}, {a0 - a1, b0 - b1}, {-a1, -b1}};
                    for (int i = 0; i < 4; i++) {  // (A g) Aᵀ
                        out[(i * 4 + 0) * stride + tx] = r[i][0];
                        out[(i * 4 + 1) * stride + tx] = r[i][0] + r[i][1];
                        out[(i * 4 + 2) * stride + tx] = r[i][0] - r[i][1];
                        out[(i * 4 + 3) * stride + tx] = -r[i][1];
                    }
                }
            }
        }
}

// dw[o][c] = Gᵀ M[·][o][c] G from the summed products M[16][o][c], Gᵀ = [[1,½,½,0],[0,½,−½,0],[0,½,½,1]].
static void transform_filter_gradient(const float *m, int o, int c, float *dw) {
    const int64_t plane = (int64_t)o * c, stride = matrix_stride(o, c);
    #pragma omp parallel for schedule(static)
    for (int64_t oc = 0; oc < plane; oc++) {
        float q[4][4], t[3][4];
        for (int k = 0; k < 16; k++) q[k / 4][k % 4] = m[k * stride + oc];
        for (int j = 0; j < 4; j++) {  // Gᵀ q
            t[0][j] = q[0][j] + 0.5f * (q[1][j] + q[2][j]);
            t[1][j] = 0.5f * (q[1][j] - q[2][j]);
            t[2][j] = 0.5f * (q[1][j] + q[2][j]) + q[3][j];
        }
        float *out = dw + oc * 9;
        for (int i = 0; i < 3; i++) {  // (Gᵀ q) G
            out[i * 3 + 0] = t[i][0] + 0.5f * (t[i][1] + t[i][2]);
            out[i * 3 + 1] = 0.5f * (t[i][1] - t[i][2]);
            out[i * 3 + 2] = 0.5f * (t[i][1] + t[i][2]) + t[i][3];
        }
    }
}

void kn_conv2d_winograd_backward_filter(const kn_conv2d_desc *d, const float *x, const float *dy, float *dw) {
    const int threads = kn_threads();
    const int th = (d->oh + 1) / 2, tw = (d->ow + 1) / 2;
    int chunk = 2048 / (th * tw);
    const int per_thread = (d->n + threads - 1) / threads;
    if (chunk > per_thread) chunk = per_thread;
    if (chunk < 1) chunk = 1;
    const int chunks = (d->n + chunk - 1) / chunk, workers = chunks >= threads ? threads : 1;
    const int64_t xs = (int64_t)d->c * d->h * d->w, ys = (int64_t)d->o * d->oh * d->ow, products = matrix_stride(d->o, d->c);
    float *accumulators[workers];
    #pragma omp parallel num_threads(workers)
    {
        const int64_t max_tiles = (int64_t)chunk * th * tw;
        float *v = kn_scratch(KN_SCRATCH_COLUMNS, 16 * matrix_stride(d->c, max_tiles));
        float *g = kn_scratch(KN_SCRATCH_GATHER, 16 * matrix_stride(d->o, max_tiles));
        float *acc = kn_scratch(KN_SCRATCH_ACCUMULATOR, 16 * products);
        accumulators[omp_get_thread_num()] = acc;
        memset(acc, 0, sizeof(float) * 16 * products);
        #pragma omp for schedule(static)
        for (int ci = 0; ci < chunks; ci++) {
            const int first = ci * chunk, count = first + chunk > d->n ? d->n - first : chunk;
            const int64_t tiles = (int64_t)count * th * tw;
            transform_input(d, x + first * xs, count, th, tw, v);
            transform_gradient(d, dy + first * ys, count, th, tw, g);
            for (int k = 0; k < 16; k++)
                kn_sgemm(0, 1, d->o, d->c, (int)tiles, 1.0f, g + k * matrix_stride(d->o, tiles), (int)tiles,
                         v + k * matrix_stride(d->c, tiles), (int)tiles, 1.0f, acc + k * products, d->c);
        }
    }
    for (int t = 1; t < workers; t++)
        for (int64_t i = 0; i < 16 * products; i++) accumulators[0][i] += accumulators[t][i];
    transform_filter_gradient(accumulators[0], d->o, d->c, dw);
}
