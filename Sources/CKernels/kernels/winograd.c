// Winograd F(m×m, 3×3) for 3×3, stride-1, pad-1, ungrouped convolutions (Lavin & Gray, 2015):
//   U = G g Gᵀ,  V = Bᵀ d B,  Y = Aᵀ (U ⊙ V) A,
// with α = m + 2: each α×α input tile gives an m×m output tile with α² multiplies per (input,
// output) channel pair instead of 9m². The α² element-wise products become α² GEMMs over all
// tiles of a chunk, so the arithmetic runs in Kiln's packed GEMM. The filter gradient is
// the same algorithm transposed: Y is linear in g, so
//   dg = Gᵀ [Σ_tiles (A dY Aᵀ) ⊙ V] G,
// and the sum over tiles is again α² GEMMs, with the tiles as the reduction axis.
// One tile size, F(4×4, 3×3): 36 products per 16 outputs (a quarter of direct convolution's
// multiplies; F(2×2) needs 16 per 4, 78% more), for a rounding error per conv of ~1e-5 relative on
// random data that a network does not amplify (conv.c gives the logits' figures).
#include "kernels.h"
#include "../parallel.h"
#include <stdlib.h>
#include <string.h>

// Measured on ResNet-18 (batch 32, 2 cores), forward: 64-channel 56×56 convs 45 → 25 ms,
// 128-channel 42 → 27 ms, 256-channel 37 → 21 ms, 512-channel 7×7 36 → 28 ms (even with the
// padded edge tiles); at 128² input (4×4 maps in layer4) training gains 6%. Below 64 channels
// the K = C GEMMs get too thin.
// Winograd pays a weight transform per call (α² × o × c floats: 38 MB for a 512-channel conv)
// that only enough tiles amortise, counted as 2×2 output tiles: at batch 1 a 28×28 map (196,
// ResNet-18's layer2) measured 2.3 → 1.3 ms per conv with Winograd, a 14×14 map (49, layer3)
// 2.5 → 3.3 ms, so below 196 the direct path stays. With the filters transformed once
// (kn_conv2d_prepare_weights) the 14×14 map pays too: 1.10 → 0.89 ms against channel tiles
// (Zen 4, best of 50), ResNet-18 batch-1 inference 15.8 → 14.9 ms.
enum { WINOGRAD_TILES = 196, WINOGRAD_PREPARED_TILES = 49 };

static int winograd_geometry(const kn_conv2d_desc *d, int64_t least_tiles) {
    const int64_t tiles = (int64_t)d->n * ((d->oh + 1) / 2) * ((d->ow + 1) / 2);
    return d->kh == 3 && d->kw == 3 && d->sh == 1 && d->sw == 1 && d->groups == 1 && d->pt == 1 && d->pl == 1 &&
           d->pb == 1 && d->pr == 1 && d->c >= 64 && d->o >= 64 && d->h >= 4 && d->w >= 4 && tiles >= least_tiles;
}

int kn_conv2d_winograd_eligible(const kn_conv2d_desc *d) { return winograd_geometry(d, WINOGRAD_TILES); }

// Where Winograd pays once its filters are prepared (a superset of kn_conv2d_winograd_eligible).
static int winograd_prepared_eligible(const kn_conv2d_desc *d) { return winograd_geometry(d, WINOGRAD_PREPARED_TILES); }

// The transforms below are written once for an algorithm's sizes and transforms and instantiated
// for F(4×4) (`specialise`), so the 1-D kernels inline into straight-line, vectorised loops.
#define INLINE static inline __attribute__((always_inline))

// ---- 1-D transforms ----------------------------------------------------------------------------
// Vector forms act on `n` tiles at once: in[i] and out[p] each point at n floats (no aliasing).

typedef void (*tile_transform)(const float *const *in, float *const *out, int n);

#define IN(k) const float *restrict i##k = in[k]
#define OUT(k) float *restrict o##k = out[k]

// F(4×4, 3×3), points 0, ±1, ±2, ∞.
static void b4(const float *const *in, float *const *out, int n) {  // Bᵀ: 6 → 6
    IN(0); IN(1); IN(2); IN(3); IN(4); IN(5); OUT(0); OUT(1); OUT(2); OUT(3); OUT(4); OUT(5);
    for (int t = 0; t < n; t++) {
        const float d0 = i0[t], d1 = i1[t], d2 = i2[t], d3 = i3[t], d4 = i4[t], d5 = i5[t];
        o0[t] = 4.0f * d0 - 5.0f * d2 + d4;
        o1[t] = -4.0f * (d1 + d2) + d3 + d4;
        o2[t] = 4.0f * (d1 - d2) - d3 + d4;
        o3[t] = 2.0f * (d3 - d1) - d2 + d4;
        o4[t] = 2.0f * (d1 - d3) - d2 + d4;
        o5[t] = 4.0f * d1 - 5.0f * d3 + d5;
    }
}
static void a4(const float *const *in, float *const *out, int n) {  // Aᵀ: 6 → 4
    IN(0); IN(1); IN(2); IN(3); IN(4); IN(5); OUT(0); OUT(1); OUT(2); OUT(3);
    for (int t = 0; t < n; t++) {
        const float s12 = i1[t] + i2[t], d12 = i1[t] - i2[t], s34 = i3[t] + i4[t], d34 = i3[t] - i4[t];
        o0[t] = i0[t] + s12 + s34;
        o1[t] = d12 + 2.0f * d34;
        o2[t] = s12 + 4.0f * s34;
        o3[t] = d12 + 8.0f * d34 + i5[t];
    }
}
static void at4(const float *const *in, float *const *out, int n) {  // A: 4 → 6
    IN(0); IN(1); IN(2); IN(3); OUT(0); OUT(1); OUT(2); OUT(3); OUT(4); OUT(5);
    for (int t = 0; t < n; t++) {
        const float e0 = i0[t], e1 = i1[t], e2 = i2[t], e3 = i3[t];
        o0[t] = e0;
        o1[t] = e0 + e1 + e2 + e3;
        o2[t] = e0 - e1 + e2 - e3;
        o3[t] = e0 + 2.0f * e1 + 4.0f * e2 + 8.0f * e3;
        o4[t] = e0 - 2.0f * e1 + 4.0f * e2 - 8.0f * e3;
        o5[t] = e3;
    }
}
static void g4(const float *const *in, float *const *out, int n) {  // G: 3 → 6
    IN(0); IN(1); IN(2); OUT(0); OUT(1); OUT(2); OUT(3); OUT(4); OUT(5);
    for (int t = 0; t < n; t++) {
        const float g0 = i0[t], g1 = i1[t], g2v = i2[t];
        o0[t] = 0.25f * g0;
        o1[t] = -(g0 + g1 + g2v) / 6.0f;
        o2[t] = -(g0 - g1 + g2v) / 6.0f;
        o3[t] = g0 / 24.0f + g1 / 12.0f + g2v / 6.0f;
        o4[t] = g0 / 24.0f - g1 / 12.0f + g2v / 6.0f;
        o5[t] = g2v;
    }
}
static void gt4(const float *const *in, float *const *out, int n) {  // Gᵀ: 6 → 3
    IN(0); IN(1); IN(2); IN(3); IN(4); IN(5); OUT(0); OUT(1); OUT(2);
    for (int t = 0; t < n; t++) {
        const float q1 = i1[t], q2 = i2[t], q3 = i3[t], q4 = i4[t];
        o0[t] = 0.25f * i0[t] - (q1 + q2) / 6.0f + (q3 + q4) / 24.0f;
        o1[t] = (q2 - q1) / 6.0f + (q3 - q4) / 12.0f;
        o2[t] = (q3 + q4 - q1 - q2) / 6.0f + i5[t];
    }
}

typedef struct {
    int m, a;                  // output tile side; input tile side α = m + 2
    tile_transform input;      // Bᵀ
    tile_transform output;     // Aᵀ
    tile_transform gradient;   // A
    tile_transform weight;     // G
    tile_transform filter;     // Gᵀ
} algorithm;

static const algorithm f4 = {4, 6, b4, a4, at4, g4, gt4};

// Tiles [first, first + count) of a batch whose images have th × tw tiles each, numbered image by
// image, row by row (a range may start and end inside an image).
typedef struct { int64_t first, count; int th, tw; } tile_range;

// ---- 2-D transforms ----------------------------------------------------------------------------

// Distance between the α² transformed matrices of `rows` × `cols`. The transforms write (and
// read) all of them at once; at a multiple of 4 KiB apart they would share L1 sets and evict each
// other, so each is padded by 16 floats (one cache line) to a distinct set.
static int64_t matrix_stride(int rows, int64_t cols) {
    int64_t size = (int64_t)rows * cols;
    return (size + 15) / 16 * 16 + 16;
}

// Applies a 1-D transform along both axes of a grid of tiles: in[i*w_in + j] (w_in × w_in arrays
// of n floats) → out[p*w_out + q], through `mid` (w_out × w_in arrays).
INLINE void transform_2d(tile_transform f, int w_in, int w_out, const float *const *in, float **mid,
                         float *const *out, int n) {
    const float *col_in[6];
    float *col_out[6];
    for (int j = 0; j < w_in; j++) {  // along the first axis, column by column
        for (int i = 0; i < w_in; i++) col_in[i] = in[i * w_in + j];
        for (int p = 0; p < w_out; p++) col_out[p] = mid[p * w_in + j];
        f(col_in, col_out, n);
    }
    for (int p = 0; p < w_out; p++) f((const float *const *)(mid + p * w_in), out + p * w_out, n);
}

// A channel's α² grid arrays and α² intermediate arrays, `pitch` floats each, laid out from `base`
// (a thread's KN_SCRATCH_TILES): a transform's working set.
typedef struct { float *grid[36], *mid[36]; } tile_arrays;

INLINE tile_arrays lay_tile_arrays(const algorithm *alg, float *base, int64_t pitch) {
    const int a2n = alg->a * alg->a;
    tile_arrays t;
    for (int k = 0; k < a2n; k++) { t.grid[k] = base + k * pitch; t.mid[k] = base + (a2n + k) * pitch; }
    return t;
}

// Distance between the α² transformed weight matrices, each packed as the GEMM's A panels.
static int64_t packed_weights_stride(int o, int c) { return (gemm_panels_a_floats(o, c) + 15) / 16 * 16 + 16; }

// Distance between the α² transformed input matrices of a chunk, each packed as B panels.
static int64_t packed_tiles_stride(int channels, int64_t tiles) {
    return matrix_stride(channels, (tiles + GEMM_NR - 1) / GEMM_NR * GEMM_NR);
}

// U[α²][o][c] from w[o][c][3][3], in blocks of (o, c) pairs: each tap gathered into an array,
// G g Gᵀ applied across the block, the α² results scattered into A panels (packed once per call,
// not once per chunk of tiles).
enum { PAIR_BLOCK = 64, WEIGHT_RUN = 32 };  // pairs per filter-gradient block; input channels per weight block

// The weight and filter-gradient transforms run over blocks of (o, c) pairs in parallel.
typedef struct {
    const float *in;
    float *out;
    int o, c;
} pair_blocks;

INLINE void transform_weight_blocks_impl(const algorithm *alg, const pair_blocks *r, int64_t begin, int64_t end) {
    const float *w = r->in;
    float *u = r->out;
    const int64_t stride = packed_weights_stride(r->o, r->c), runs = (r->c + WEIGHT_RUN - 1) / WEIGHT_RUN;
    const int a = alg->a, o = r->o, c = r->c;
    for (int64_t block = begin; block < end; block++) {
        // The pairs of one A panel's MR rows and a run of input channels, t = row·len + channel.
        const int panel = (int)(block / runs), c0 = (int)(block % runs) * WEIGHT_RUN;
        const int len = c - c0 < WEIGHT_RUN ? c - c0 : WEIGHT_RUN, n = GEMM_MR * len;
        float taps[9][GEMM_MR * WEIGHT_RUN], mid[18][GEMM_MR * WEIGHT_RUN], result[36][GEMM_MR * WEIGHT_RUN];
        float *tap[9], *mids[18], *out[36];
        for (int row = 0; row < GEMM_MR; row++) {
            const int oc = panel * GEMM_MR + row;
            for (int j = 0; j < len; j++)
                for (int k = 0; k < 9; k++) taps[k][row * len + j] = oc < o ? w[((int64_t)oc * c + c0 + j) * 9 + k] : 0.0f;
        }
        for (int k = 0; k < 9; k++) tap[k] = taps[k];
        for (int k = 0; k < 3 * a; k++) mids[k] = mid[k];
        for (int k = 0; k < a * a; k++) out[k] = result[k];
        transform_2d(alg->weight, 3, a, (const float *const *)tap, mids, out, n);
        for (int k = 0; k < a * a; k++) {  // k-major within the panel: column c0 + j is MR adjacent floats
            float *dst = u + k * stride + ((int64_t)panel * c + c0) * GEMM_MR;
            for (int j = 0; j < len; j++)
                for (int row = 0; row < GEMM_MR; row++) dst[j * GEMM_MR + row] = result[k][row * len + j];
        }
    }
}

// The zero-bordered planes of `count` images split by column phase: P_r[y][u] = padded[y][m·u + r]
// for r < m. Element j of a tile row's tiles, padded[y][m·tx + j], is then P_{j mod m}[y][tx + j/m]:
// one contiguous run per (row, column) of the tile, copied a vector at a time, where gathering it
// from the padded plane took a strided scalar load per tile.
typedef struct {
    float *base;
    int64_t row, plane, image;  // floats per phase row, per phase plane, per image (m phase planes)
} phase_planes;

INLINE phase_planes phase_layout(float *base, int m, int rows, int columns) {
    const int64_t row = (columns + m - 1) / m;
    return (phase_planes){base, row, rows * row, m * rows * row};
}

INLINE float *phase_row(const phase_planes *p, int img, int phase, int y) {
    return p->base + img * p->image + phase * p->plane + y * p->row;
}

// Copies row y of a plane (w floats) into the phase planes at padded row y + border, column x + border.
INLINE void split_row(const phase_planes *p, int m, int border, int img, int y, const float *restrict src, int w) {
    float *dst[4];
    for (int r = 0; r < m; r++) dst[r] = phase_row(p, img, r, y + border);
    int x = 0;
    if (m == 4) {  // an interleaved group of four loads, which the vectoriser turns into shuffles
        float *restrict q0 = dst[border % 4] + border / 4, *restrict q1 = dst[(1 + border) % 4] + (1 + border) / 4,
                        *restrict q2 = dst[(2 + border) % 4] + (2 + border) / 4,
                        *restrict q3 = dst[(3 + border) % 4] + (3 + border) / 4;
        for (int u = 0; 4 * u + 3 < w; u++, x += 4) {
            q0[u] = src[4 * u]; q1[u] = src[4 * u + 1]; q2[u] = src[4 * u + 2]; q3[u] = src[4 * u + 3];
        }
    }
    for (; x < w; x++) dst[(x + border) % m][(x + border) / m] = src[x];
}

// Vector-sized copies for the tile gather: a run may be over-copied by up to a vector, which the
// next run (or the tail's zeros) overwrites.
enum { RUN_STEP = KN_VECTOR_BYTES / 4 };

// The side² arrays grid[i·side + j][lane] for the NR tiles from `first` (fewer at the end, the
// other lanes zero), gathered from the phase planes.
INLINE void gather_block(const phase_planes *p, int m, int side, int th, int tw, int64_t first, int n, float **grid) {
    const int64_t per_image = (int64_t)th * tw;
    int img = (int)(first / per_image), ty = (int)(first % per_image / tw), tx = (int)(first % tw);
    for (int lane = 0; lane < n;) {
        const int run = tw - tx < n - lane ? tw - tx : n - lane;
        for (int i = 0; i < side; i++)
            for (int j = 0; j < side; j++) {
                const float *src = phase_row(p, img, j % m, m * ty + i) + tx + j / m;
                float *dst = grid[i * side + j] + lane;
                for (int s = 0; s < run; s += RUN_STEP) memcpy(dst + s, src + s, sizeof(float) * RUN_STEP);
            }
        lane += run;
        tx += run;
        if (tx == tw) { tx = 0; if (++ty == th) { ty = 0; img++; } }
    }
    if (n < GEMM_NR)
        for (int k = 0; k < side * side; k++) memset(grid[k] + n, 0, sizeof(float) * (GEMM_NR - n));
}

// Per-thread buffers of the block transforms: side² grid arrays and α·side intermediate arrays
// of NR lanes (plus a vector of slack for the over-copies), and the images' phase planes.
typedef struct { tile_arrays t; phase_planes planes; } block_buffers;

INLINE block_buffers block_scratch(const algorithm *alg, int count, int rows, int columns) {
    const int a2n = alg->a * alg->a, pitch = GEMM_NR + RUN_STEP;
    phase_planes layout = phase_layout(NULL, alg->m, rows, columns);
    float *base = kn_scratch(KN_SCRATCH_TILES, 2 * a2n * pitch + count * layout.image + RUN_STEP);
    block_buffers b = {0};
    if (!base) return b;  // b.planes.base == NULL: the caller skips its work
    b.t = lay_tile_arrays(alg, base, pitch);
    b.planes = phase_layout(base + 2 * a2n * pitch, alg->m, rows, columns);
    memset(b.planes.base, 0, sizeof(float) * (count * layout.image + RUN_STEP));
    return b;
}

// The α² matrices [α²][channels][T] of a range of T tiles of the images' planes, `side`×`side`
// tiles a step of m apart, each lifted to α×α by `f` along both axes. Channel by channel: the
// images' planes are split into phase planes (zero border: `border` columns and rows in front,
// zeros past the end, so no tile needs bounds checks), then NR tiles at a time gathered and
// transformed in L1. With `panels`, each matrix is written as the GEMM's B panels (zero past the
// last tile) instead of row-major.
INLINE void transform_planes(const algorithm *alg, tile_transform f, int side, int border, const float *src,
                             int channels, int h, int w, const tile_range *range, int panels, float *out_matrices,
                             int64_t first_channel, int64_t end_channel) {
    const int m = alg->m, a = alg->a, th = range->th, tw = range->tw, ph = m * th + side - m, pw = m * tw + side - m;
    const int64_t tiles = range->count, per_image = (int64_t)th * tw;
    const int first_image = (int)(range->first / per_image), images = (int)((range->first + tiles - 1) / per_image) - first_image + 1;
    const int64_t stride = panels ? packed_tiles_stride(channels, tiles) : matrix_stride(channels, tiles);
    block_buffers b = block_scratch(alg, images, ph, pw);
    if (!b.planes.base) return;
    float *out[36];
    for (int ch = (int)first_channel; ch < end_channel; ch++) {
        for (int img = 0; img < images; img++) {  // the input rows of the range's tile rows in this image
            const int64_t base = (int64_t)(first_image + img) * per_image;
            const int64_t lo = range->first > base ? range->first - base : 0;
            const int64_t hi = range->first + tiles < base + per_image ? range->first + tiles - base : per_image;
            const int y0 = m * (int)(lo / tw) - border, y1 = m * (int)((hi - 1) / tw) + side - border;
            const float *sp = src + ((int64_t)(first_image + img) * channels + ch) * h * w;
            for (int y = y0 < 0 ? 0 : y0; y < y1 && y < h; y++) split_row(&b.planes, m, border, img, y, sp + (int64_t)y * w, w);
        }
        for (int64_t first = 0; first < tiles; first += GEMM_NR) {
            const int n = tiles - first < GEMM_NR ? (int)(tiles - first) : GEMM_NR;
            gather_block(&b.planes, m, side, th, tw, range->first - first_image * per_image + first, n, b.t.grid);
            if (panels) {  // panel first / NR, row ch: NR floats
                for (int k = 0; k < a * a; k++) out[k] = out_matrices + k * stride + (first / GEMM_NR) * channels * GEMM_NR + (int64_t)ch * GEMM_NR;
                transform_2d(f, side, a, (const float *const *)b.t.grid, b.t.mid, out, GEMM_NR);
            } else if (n == GEMM_NR) {
                for (int k = 0; k < a * a; k++) out[k] = out_matrices + k * stride + (int64_t)ch * tiles + first;
                transform_2d(f, side, a, (const float *const *)b.t.grid, b.t.mid, out, GEMM_NR);
            } else {  // the last, partial block: through the grid, so nothing past the row is written
                transform_2d(f, side, a, (const float *const *)b.t.grid, b.t.mid, b.t.grid, GEMM_NR);
                for (int k = 0; k < a * a; k++)
                    memcpy(out_matrices + k * stride + (int64_t)ch * tiles + first, b.t.grid[k], sizeof(float) * n);
            }
        }
    }
}

// V[α²][c][T] = Bᵀ d B for the α×α input tiles (the input padded by 1 on each side), as B panels
// for the forward GEMMs or row-major for the filter gradient's.
INLINE void transform_input_impl(const algorithm *alg, const kn_conv2d_desc *d, const float *x, const tile_range *range,
                                 int panels, float *v, int64_t first_channel, int64_t end_channel) {
    transform_planes(alg, alg->input, alg->a, 1, x, d->c, d->h, d->w, range, panels, v, first_channel, end_channel);
}

// F(4×4)'s output tiles into an output row: row[4·tx + j] = src[j][offset + tx] + bias for the
// `full` tiles inside the row, all four j in one loop (one interleaved group of stores).
INLINE void scatter_row(float *const *src, int64_t offset, int full, float bias, float *restrict row) {
    const float *restrict s0 = src[0] + offset, *restrict s1 = src[1] + offset, *restrict s2 = src[2] + offset,
                          *restrict s3 = src[3] + offset;
    for (int tx = 0; tx < full; tx++) {
        float *t = row + 4 * tx;
        t[0] = s0[tx] + bias; t[1] = s1[tx] + bias; t[2] = s2[tx] + bias; t[3] = s3[tx] + bias;
    }
}

// y[n][o] from M[α²][o][T]: Aᵀ M A per tile, plus bias, written into the plane (edge tiles clipped).
INLINE void transform_output_impl(const algorithm *alg, const kn_conv2d_desc *d, const float *mm, const float *bias,
                                  const tile_range *range, float *y, int64_t first_channel, int64_t end_channel) {
    const int m = alg->m, a = alg->a, tw = range->tw;
    const int64_t tiles = range->count, stride = matrix_stride(d->o, tiles), per_image = (int64_t)range->th * tw;
    const int64_t pitch = matrix_stride(1, tiles);  // apart by a cache line more than a multiple of 64 B
    float *base = kn_scratch(KN_SCRATCH_TILES, 2 * a * a * pitch);
    if (!base) return;
    tile_arrays b = lay_tile_arrays(alg, base, pitch);
    const float *in[36];
    const int full = d->ow / m;  // tiles whose m columns all lie inside the output
    for (int oc = (int)first_channel; oc < end_channel; oc++) {  // a channel of the whole range at once (as transform_planes)
        for (int k = 0; k < a * a; k++) in[k] = mm + k * stride + (int64_t)oc * tiles;
        transform_2d(alg->output, a, m, in, b.mid, b.grid, (int)tiles);  // grid[i*m + j]: output (i, j) of every tile
        const float bv = bias ? bias[oc] : 0.0f;
        for (int64_t at = 0; at < tiles;) {  // runs of tiles along a tile row
            const int64_t t = range->first + at, img = t / per_image;
            const int ty = (int)(t % per_image / tw), tx = (int)(t % tw);
            const int run = tw - tx < tiles - at ? tw - tx : (int)(tiles - at), end = tx + run;
            const int inside = (end < full ? end : full) - tx;  // whole tiles of the run
            float *yp = y + (img * d->o + oc) * d->oh * d->ow;
            for (int i = 0; i < m && m * ty + i < d->oh; i++) {
                float *dst = yp + (int64_t)(m * ty + i) * d->ow;
                if (inside > 0) scatter_row(b.grid + i * m, at, inside, bv, dst + m * tx);
                for (int c = tx + (inside > 0 ? inside : 0); c < end; c++)  // the clipped tile
                    for (int j = 0; j < m && m * c + j < d->ow; j++) dst[m * c + j] = b.grid[i * m + j][at + c - tx] + bv;
            }
            at += run;
        }
    }
}

// Ĝ[α²][o][T] = A dy Aᵀ for a range of the m×m output-gradient tiles (zero past the edge), output
// channels [first, end).
INLINE void transform_gradient_impl(const algorithm *alg, const kn_conv2d_desc *d, const float *dy, const tile_range *range, float *g,
                                    int64_t first, int64_t end) {
    transform_planes(alg, alg->gradient, alg->m, 0, dy, d->o, d->oh, d->ow, range, 0, g, first, end);
}

// dw[o][c] = Gᵀ M[·][o][c] G from the summed products M[α²][o][c], in blocks of pairs.
INLINE void transform_filter_gradient_blocks_impl(const algorithm *alg, const pair_blocks *r, int64_t begin, int64_t end) {
    const float *mm = r->in;
    float *dw = r->out;
    const int64_t plane = (int64_t)r->o * r->c, stride = matrix_stride(r->o, r->c);
    const int a = alg->a;
    for (int64_t block = begin; block < end; block++) {
        const int64_t first = block * PAIR_BLOCK;
        const int n = plane - first < PAIR_BLOCK ? (int)(plane - first) : PAIR_BLOCK;
        float mid[18][PAIR_BLOCK], taps[9][PAIR_BLOCK];
        const float *in[36];
        float *mids[18], *tap[9];
        for (int k = 0; k < a * a; k++) in[k] = mm + k * stride + first;
        for (int k = 0; k < 3 * a; k++) mids[k] = mid[k];
        for (int k = 0; k < 9; k++) tap[k] = taps[k];
        transform_2d(alg->filter, a, 3, in, mids, tap, n);
        for (int t = 0; t < n; t++)
            for (int k = 0; k < 9; k++) dw[(first + t) * 9 + k] = taps[k][t];
    }
}

// One instance of each transform, with the algorithm's sizes constant (so its loops unroll).
#define specialise(name, params, args) \
    static void name params { name##_impl(&f4, args); }
#define A(...) __VA_ARGS__
specialise(transform_weight_blocks, (const pair_blocks *r, int64_t begin, int64_t end), A(r, begin, end))
specialise(transform_input, (const kn_conv2d_desc *d, const float *x, const tile_range *range, int panels, float *v,
                             int64_t first, int64_t end), A(d, x, range, panels, v, first, end))
specialise(transform_output, (const kn_conv2d_desc *d, const float *mm, const float *bias, const tile_range *range,
                              float *y, int64_t first, int64_t end),
           A(d, mm, bias, range, y, first, end))
specialise(transform_gradient, (const kn_conv2d_desc *d, const float *dy, const tile_range *range, float *g, int64_t first,
                                int64_t end),
           A(d, dy, range, g, first, end))
specialise(transform_filter_gradient_blocks, (const pair_blocks *r, int64_t begin, int64_t end),
           A(r, begin, end))
#undef A
#undef specialise

static void weight_blocks_task(void *context, int64_t begin, int64_t end) {
    const pair_blocks *r = context;
    transform_weight_blocks(r, begin, end);
}

static void filter_gradient_blocks_task(void *context, int64_t begin, int64_t end) {
    const pair_blocks *r = context;
    transform_filter_gradient_blocks(r, begin, end);
}

static int64_t pair_block_count(int o, int c) { return ((int64_t)o * c + PAIR_BLOCK - 1) / PAIR_BLOCK; }

static void transform_weights(const float *w, int o, int c, float *u) {
    pair_blocks r = {w, u, o, c};
    const int64_t blocks = (int64_t)((o + GEMM_MR - 1) / GEMM_MR) * ((c + WEIGHT_RUN - 1) / WEIGHT_RUN);
    kn_parallel_for(blocks, KN_GRAIN_ROWS, weight_blocks_task, &r);
}

static void transform_filter_gradient(const float *mm, int o, int c, float *dw) {
    pair_blocks r = {mm, dw, o, c};
    kn_parallel_for(pair_block_count(o, c), KN_GRAIN_ROWS, filter_gradient_blocks_task, &r);
}

// ---- drivers -----------------------------------------------------------------------------------

enum { CHUNK_TILES = 512 };  // the most tiles in a chunk

// Tiles per forward chunk: its transformed input and products, α²·(c + o) floats a tile, in
// about 1.25 MiB so they stay in L2 between the transforms and the GEMMs (64-channel layers: 64
// tiles, a third of a 56×56 image), at least two B panels and at most 512 tiles. Whole-image
// chunks of ~512 tiles wrote 5–17 MB of them per chunk, through L3: interleaved in one process
// at batch 32, 64-channel 56×56 convs 21–24 → 16–22 ms, 128-channel 28×28 24–26 → 15–16 ms,
// 256-channel 14×14 ≈ 8% faster, 512-channel 7×7 unchanged (its chunks were 64 tiles already).
enum { CHUNK_FLOATS = 320 * 1024, SHARED_U_BYTES = 8 << 20 };
// The filter gradient shares one accumulator between the threads past this size of it, taking
// chunks of at most this many tiles.
enum { SHARED_FILTER_BYTES = 8 << 20, SHARED_FILTER_TILES = 512 };

// The filter gradient's chunks are as large or larger: each adds its products into the α²·o·c
// accumulators, whose traffic its tiles must outweigh (at least 2·o·c / (o + c) tiles).
static int64_t chunk_tiles(const kn_conv2d_desc *d, int64_t tiles, int64_t least) {
    int64_t chunk = CHUNK_FLOATS / (36 * ((int64_t)d->c + d->o));
    if (chunk < least) chunk = least;
    chunk = chunk / GEMM_NR * GEMM_NR;
    if (chunk < 2 * GEMM_NR) chunk = 2 * GEMM_NR;
    if (chunk > CHUNK_TILES) chunk = CHUNK_TILES;
    // As many chunks as that takes, evened out (so the last is not a sliver).
    const int64_t chunks = (tiles + chunk - 1) / chunk;
    chunk = (tiles + chunks - 1) / chunks;
    return (chunk + GEMM_NR - 1) / GEMM_NR * GEMM_NR;
}

// One Winograd convolution (or filter gradient) over chunks of tiles.
typedef struct {
    const kn_conv2d_desc *d;
    const float *x, *u, *bias, *dy;
    float *y, *accumulators;  // accumulators: one [α²][o][c] block per worker (filter gradient)
    void (*epilogue)(const kn_conv2d_desc *, const void *, int, float *);
    const void *context;
    int chunk, th, tw;  // tiles per chunk; tiles per image th × tw
    kn_counter *next_chunk;           // forward: chunks claimed by the workers
    _Atomic int32_t *tiles_written;   // forward: per image, how many of its tiles are in y
} winograd_chunks;

// A chunk's input and output transforms, over ranges of channels: split across the threads when
// the chunk is shared (batch 1, large weights), so they do not run on one core while the others
// wait (inside a worker's chunk, kn_parallel_for runs them on that worker).
typedef struct {
    const kn_conv2d_desc *d;
    const float *x, *bias, *products;
    float *tiles, *y;
    tile_range range;
} chunk_transforms;

static void transform_input_task(void *context, int64_t begin, int64_t end) {
    const chunk_transforms *t = context;
    transform_input(t->d, t->x, &t->range, 1, t->tiles, begin, end);
}

static void transform_output_task(void *context, int64_t begin, int64_t end) {
    const chunk_transforms *t = context;
    transform_output(t->d, t->products, t->bias, &t->range, t->y, begin, end);
}

// A chunk's α² products over a range of the weights' A panels (output channels), so that with
// one chunk across the threads each reads its share of U, not all of it.
typedef struct {
    const kn_conv2d_desc *d;
    const float *u, *v;
    float *m;
    int64_t tiles;
} chunk_products;

static void chunk_products_task(void *context, int64_t begin, int64_t end) {
    const chunk_products *t = context;
    const int64_t weights = packed_weights_stride(t->d->o, t->d->c), first = begin * GEMM_MR;
    const int rows = (int)((end * GEMM_MR < t->d->o ? end * GEMM_MR : t->d->o) - first);
    for (int k = 0; k < f4.a * f4.a; k++)
        gemm_panels(rows, (int)t->tiles, t->d->c, t->u + k * weights + first * t->d->c,
                    t->v + k * packed_tiles_stride(t->d->c, t->tiles), 0.0f,
                    t->m + k * matrix_stride(t->d->o, t->tiles) + first * t->tiles, (int)t->tiles);
}

// The epilogues of the images [first, first + count) a chunk finished.
typedef struct {
    const winograd_chunks *r;
    int64_t first;
} chunk_epilogues;

static void chunk_epilogues_task(void *context, int64_t begin, int64_t end) {
    const chunk_epilogues *e = context;
    const kn_conv2d_desc *d = e->r->d;
    const int64_t ys = (int64_t)d->o * d->oh * d->ow;
    for (int64_t i = e->first + begin; i < e->first + end; i++) e->r->epilogue(d, e->r->context, (int)i, e->r->y + i * ys);
}

// Counts the tiles [first, first + count) as written; returns the images they completed (a
// contiguous range: the images inside the range are complete, those at its ends when the other
// chunks that share them are done) through *begin and *end.
static void images_completed(const winograd_chunks *r, int64_t first, int64_t count, int64_t *begin, int64_t *end) {
    const int64_t per_image = (int64_t)r->th * r->tw;
    *begin = *end = -1;
    for (int64_t img = first / per_image; img * per_image < first + count; img++) {
        const int64_t lo = img * per_image > first ? img * per_image : first;
        const int64_t hi = (img + 1) * per_image < first + count ? (img + 1) * per_image : first + count;
        const int32_t covered = (int32_t)(hi - lo);
        if (atomic_fetch_add_explicit(&r->tiles_written[img], covered, memory_order_acq_rel) + covered != per_image) continue;
        if (*begin < 0) *begin = img;
        *end = img + 1;
    }
}

// The workers claim chunks of tiles (which may cross images) one after another; a lone worker's
// chunks are shared (each step below splits across the threads). An image's epilogue runs on the
// worker that writes its last tiles, once all are in y.
static void winograd_forward_chunks(void *context, int worker, int workers) {
    (void)worker, (void)workers;
    const winograd_chunks *r = context;
    const algorithm *alg = &f4;
    const kn_conv2d_desc *d = r->d;
    const int a2n = alg->a * alg->a;
    const int64_t total = (int64_t)d->n * r->th * r->tw;
    float *v = kn_scratch(KN_SCRATCH_COLUMNS, a2n * packed_tiles_stride(d->c, r->chunk));
    float *m = kn_scratch(KN_SCRATCH_GATHER, a2n * matrix_stride(d->o, r->chunk));
    if (!v || !m) return;
    for (int64_t first; (first = kn_claim(r->next_chunk) * r->chunk) < total;) {
        const int64_t tiles = total - first < r->chunk ? total - first : r->chunk;
        chunk_transforms t = {d, r->x, r->bias, m, v, r->y, {first, tiles, r->th, r->tw}};
        kn_parallel_for(d->c, KN_GRAIN_ROWS, transform_input_task, &t);
        chunk_products p = {d, r->u, v, m, tiles};
        kn_parallel_for((d->o + GEMM_MR - 1) / GEMM_MR, KN_GRAIN_ROWS, chunk_products_task, &p);
        kn_parallel_for(d->o, KN_GRAIN_ROWS, transform_output_task, &t);
        int64_t begin, end;
        images_completed(r, first, tiles, &begin, &end);
        chunk_epilogues e = {r, begin};
        if (r->epilogue && end > begin) kn_parallel_for(end - begin, KN_GRAIN_ROWS, chunk_epilogues_task, &e);
    }
}

// A prepared buffer: a header naming its layout (the GEMM's panel shape, which differs between
// instruction sets, and the channels), then U.
enum { PREPARED_HEADER = 16 };  // floats: keeps U on the buffer's alignment

static void prepared_tag(const kn_conv2d_desc *d, int32_t tag[PREPARED_HEADER]) {
    memset(tag, 0, sizeof(int32_t) * PREPARED_HEADER);
    tag[0] = 0x4b574e31;  // "KWN1"
    tag[1] = KN_VECTOR_BYTES, tag[2] = GEMM_MR, tag[3] = GEMM_NR, tag[4] = d->o, tag[5] = d->c;
}

static int64_t winograd_prepared_floats(const kn_conv2d_desc *d) {
    return PREPARED_HEADER + (int64_t)f4.a * f4.a * packed_weights_stride(d->o, d->c);
}

static void winograd_prepare(const kn_conv2d_desc *d, const float *w, float *prepared) {
    int32_t tag[PREPARED_HEADER];
    prepared_tag(d, tag);
    memcpy(prepared, tag, sizeof tag);
    transform_weights(w, d->o, d->c, prepared + PREPARED_HEADER);
}

// U from a prepared buffer whose layout is this code's for d, else NULL.
static const float *prepared_weights(const kn_conv2d_desc *d, const float *prepared) {
    int32_t tag[PREPARED_HEADER];
    prepared_tag(d, tag);
    return prepared && memcmp(prepared, tag, sizeof tag) == 0 ? prepared + PREPARED_HEADER : NULL;
}

void kn_conv2d_winograd(const kn_conv2d_desc *d, const float *x, const float *w, const float *prepared, const float *bias,
                        float *y, void (*epilogue)(const kn_conv2d_desc *, const void *, int, float *), const void *context) {
    const algorithm *alg = &f4;
    const int a2n = alg->a * alg->a, threads = kn_threads();
    const int th = (d->oh + alg->m - 1) / alg->m, tw = (d->ow + alg->m - 1) / alg->m;
    // Every thread claims chunks sized from its share of the images — unless there are fewer
    // images than threads (batch 1: one chunk per image) or the transformed weights are large
    // (ResNet's 256- and 512-channel layers: 9.4 and 38 MB, which every worker's every chunk read
    // through L3): then chunks of at least 128 tiles, each shared by the threads — the transforms
    // split by channel, the products by output channel, so U is read once per chunk in all.
    const int shared = d->n < threads || (int64_t)a2n * d->o * d->c * (int64_t)sizeof(float) > SHARED_U_BYTES;
    const int workers = shared ? 1 : threads;
    const int64_t share = (d->n + workers - 1) / workers * (int64_t)th * tw, weights = a2n * packed_weights_stride(d->o, d->c);
    // U (unless prepared), then the images' written-tile counts (int32 in float-sized slots).
    const float *kept = prepared_weights(d, prepared);
    const int64_t u_floats = kept ? 0 : weights;
    float *scratch = kn_scratch(KN_SCRATCH_WEIGHTS, u_floats + d->n);
    if (!scratch) return;
    _Atomic int32_t *tiles_written = (_Atomic int32_t *)(scratch + u_floats);
    for (int i = 0; i < d->n; i++) atomic_init(&tiles_written[i], 0);
    if (!kept) transform_weights(w, d->o, d->c, scratch);
    const float *u = kept ? kept : scratch;
    kn_counter next_chunk = {0};
    winograd_chunks r = {.d = d, .x = x, .u = u, .bias = bias, .y = y, .epilogue = epilogue, .context = context,
                         .chunk = (int)(d->n < threads ? share : chunk_tiles(d, share, shared ? 4 * GEMM_NR : 0)),
                         .th = th, .tw = tw, .next_chunk = &next_chunk, .tiles_written = tiles_written};
    kn_parallel(workers, winograd_forward_chunks, &r);
}

static void winograd_filter_chunks(void *context, int worker, int workers) {
    const winograd_chunks *r = context;
    const algorithm *alg = &f4;
    const kn_conv2d_desc *d = r->d;
    const int a2n = alg->a * alg->a, th = r->th, tw = r->tw;
    const int64_t products = matrix_stride(d->o, d->c);
    float *acc = r->accumulators + worker * a2n * products;
    memset(acc, 0, sizeof(float) * a2n * products);
    const int64_t per_image = (int64_t)th * tw;
    int64_t begin, end;
    kn_share(d->n, worker, workers, &begin, &end);
    if (begin >= end) return;
    float *v = kn_scratch(KN_SCRATCH_COLUMNS, a2n * matrix_stride(d->c, r->chunk));
    float *g = kn_scratch(KN_SCRATCH_GATHER, a2n * matrix_stride(d->o, r->chunk));
    if (!v || !g) return;
    for (int64_t first = begin * per_image; first < end * per_image; first += r->chunk) {
        const int64_t tiles = end * per_image - first < r->chunk ? end * per_image - first : r->chunk;
        const tile_range range = {first, tiles, th, tw};
        transform_input(d, r->x, &range, 0, v, 0, d->c);
        transform_gradient(d, r->dy, &range, g, 0, d->o);
        for (int k = 0; k < a2n; k++)
            kn_sgemm(0, 1, d->o, d->c, (int)tiles, 1.0f, g + k * matrix_stride(d->o, tiles), (int)tiles,
                     v + k * matrix_stride(d->c, tiles), (int)tiles, 1.0f, acc + k * products, d->c);
    }
}

// One chunk of the shared-accumulator filter gradient: its tiles' transforms (split by channel)
// and products (split by output channel).
typedef struct {
    const kn_conv2d_desc *d;
    const float *x, *dy;
    float *v, *g, *acc;
    tile_range range;
    float beta;  // 0 for the first chunk (acc is not cleared first), then 1
} shared_filter_chunk;

static void shared_input_task(void *context, int64_t begin, int64_t end) {
    const shared_filter_chunk *t = context;
    transform_input(t->d, t->x, &t->range, 0, t->v, begin, end);
}

static void shared_gradient_task(void *context, int64_t begin, int64_t end) {
    const shared_filter_chunk *t = context;
    transform_gradient(t->d, t->dy, &t->range, t->g, begin, end);
}

enum { SHARED_FILTER_ROWS = 16 };  // output channels per block of the products

// acc[k][o][c] (+)= Ĝ[k][o][T] · V[k][c][T]ᵀ for the worker's output channels, k outermost (each
// V[k] read once per worker).
static void shared_products_task(void *context, int64_t begin, int64_t end) {
    const shared_filter_chunk *t = context;
    const kn_conv2d_desc *d = t->d;
    const int64_t tiles = t->range.count, first = begin * SHARED_FILTER_ROWS;
    const int rows = (int)((end * SHARED_FILTER_ROWS < d->o ? end * SHARED_FILTER_ROWS : d->o) - first);
    for (int k = 0; k < f4.a * f4.a; k++)
        kn_sgemm(0, 1, rows, d->c, (int)tiles, 1.0f, t->g + k * matrix_stride(d->o, tiles) + first * tiles, (int)tiles,
                 t->v + k * matrix_stride(d->c, tiles), (int)tiles, t->beta,
                 t->acc + k * matrix_stride(d->o, d->c) + first * d->c, d->c);
}

// The filter gradient with one accumulator for all threads, chunk after chunk of tiles. Per-worker
// accumulators (one α²·o·c set each, summed at the end) cost more than the products when o·c is
// large against the tiles: ResNet-18's layer4 at batch 32, 128 tiles against 2 × 38 MB to clear,
// accumulate into and sum (24 → 14–15 ms; layer3 16 → 15–16 ms; layer1's 64 channels were slower
// shared, 20 → 24 ms).
static void winograd_filter_shared(const kn_conv2d_desc *d, const float *x, const float *dy, float *acc, int th, int tw) {
    const int a2n = f4.a * f4.a;
    const int64_t total = (int64_t)d->n * th * tw;
    const int64_t chunk = total < SHARED_FILTER_TILES ? total : SHARED_FILTER_TILES;
    float *v = kn_scratch(KN_SCRATCH_COLUMNS, a2n * matrix_stride(d->c, chunk));
    float *g = kn_scratch(KN_SCRATCH_GATHER, a2n * matrix_stride(d->o, chunk));
    if (!v || !g) return;
    for (int64_t first = 0; first < total; first += chunk) {
        const int64_t tiles = total - first < chunk ? total - first : chunk;
        shared_filter_chunk t = {d, x, dy, v, g, acc, {first, tiles, th, tw}, first == 0 ? 0.0f : 1.0f};
        kn_parallel_for(d->c, KN_GRAIN_ROWS, shared_input_task, &t);
        kn_parallel_for(d->o, KN_GRAIN_ROWS, shared_gradient_task, &t);
        kn_parallel_for((d->o + SHARED_FILTER_ROWS - 1) / SHARED_FILTER_ROWS, KN_GRAIN_ROWS, shared_products_task, &t);
    }
}

void kn_conv2d_winograd_backward_filter(const kn_conv2d_desc *d, const float *x, const float *dy, float *dw) {
    const algorithm *alg = &f4;
    const int a2n = alg->a * alg->a, threads = kn_threads();
    const int th = (d->oh + alg->m - 1) / alg->m, tw = (d->ow + alg->m - 1) / alg->m;
    if (threads > 1 && (int64_t)a2n * matrix_stride(d->o, d->c) * (int64_t)sizeof(float) > SHARED_FILTER_BYTES &&
        !getenv("KILN_NO_SHARED_FILTER")) {
        float *acc = kn_scratch(KN_SCRATCH_ACCUMULATOR, a2n * matrix_stride(d->o, d->c));
        if (!acc) return;
        winograd_filter_shared(d, x, dy, acc, th, tw);
        transform_filter_gradient(acc, d->o, d->c, dw);
        return;
    }
    const int workers = d->n >= threads ? threads : 1;
    const int64_t share = (d->n + workers - 1) / workers * (int64_t)th * tw;
    const int64_t products = matrix_stride(d->o, d->c);
    // The workers' accumulators live in the calling thread's scratch, so they stay distinct
    // however the workers are scheduled; summed in worker order.
    float *accumulators = kn_scratch(KN_SCRATCH_ACCUMULATOR, workers * a2n * products);
    if (!accumulators) return;
    winograd_chunks r = {.d = d, .x = x, .dy = dy, .accumulators = accumulators,
                         .chunk = (int)chunk_tiles(d, share, 2 * (int64_t)d->o * d->c / (d->o + d->c)), .th = th, .tw = tw};
    kn_parallel(workers, winograd_filter_chunks, &r);
    for (int t = 1; t < workers; t++) {
        const float *p = accumulators + t * a2n * products;
        for (int64_t i = 0; i < a2n * products; i++) accumulators[i] += p[i];
    }
    transform_filter_gradient(accumulators, d->o, d->c, dw);
}
