// Row-major C = op(A)·op(B) + beta·C (op: as stored or transposed; alpha 1) in which every element of C is accumulated
// over k = 0, 1, …, K−1 by the same instruction sequence, wherever it falls in the tile grid:
// equal rows of A give bit-equal rows of C. OpenBLAS does not promise this (its edge kernels and
// split accumulators round rows of one tile differently), and a convolution whose filters are
// equal must give equal channels (ONNX's SqueezeNet test sums 512 products to 9.5e9 and takes a
// softmax of the result). A/B panels are packed with zero padding, so tails run the same kernel.
// Measured on Zen 4 (one thread): the AVX-512 build 1.2–1.6× OpenBLAS 0.3.21 on ResNet-18's
// conv shapes, the AVX2 build 0.8–1.0×.
#include "kernels.h"
#include <string.h>

// Vector width of the path being built (set by isa_*.c): 16, 32 or 64 bytes.
#ifndef KN_VECTOR_BYTES
#error "KN_VECTOR_BYTES is set by the isa_*.c file that includes the kernels"
#endif

typedef float gemm_vec __attribute__((vector_size(KN_VECTOR_BYTES)));
typedef float gemm_vec_unaligned __attribute__((vector_size(KN_VECTOR_BYTES), aligned(4)));

enum {
    GEMM_VL = KN_VECTOR_BYTES / 4,
    GEMM_MR = 6,
    GEMM_NR = 2 * GEMM_VL,
    GEMM_KC = KN_VECTOR_BYTES == 64 ? 256 : 128,
    GEMM_MC = 96,
    GEMM_NC = 2048,
};

// Transposes an 8×8 block in registers: r[i][k] → r[k][i] (three rounds of two-source shuffles).
typedef float pack_vec __attribute__((vector_size(32)));
typedef float pack_vec_unaligned __attribute__((vector_size(32), aligned(4)));

static inline __attribute__((always_inline)) void transpose8(pack_vec r[8]) {
    pack_vec t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int i = 0; i < 8; i += 4)
        for (int h = 0; h < 2; h++) {
            u[i + 2 * h] = __builtin_shufflevector(t[i + h], t[i + h + 2], 0, 1, 8, 9, 4, 5, 12, 13);
            u[i + 2 * h + 1] = __builtin_shufflevector(t[i + h], t[i + h + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        }
    for (int k = 0; k < 4; k++) {
        r[k] = __builtin_shufflevector(u[k], u[k + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        r[k + 4] = __builtin_shufflevector(u[k], u[k + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    }
}

// Packs op(A)[i0:i0+mc, k0:k0+kc] as panels of MR rows, k-major, zero rows past mc. Stored
// transposed (K×M), a panel's k-th column is MR adjacent floats. A stored as is (M×K) is read
// eight k at a time from each row and transposed in registers; each column's eight-float store
// runs two past the MR written, into the next column's place (or the buffer's slack).
static void gemm_pack_a(const float *a, int lda, int trans, int i0, int k0, int mc, int kc, float *out) {
    for (int i = 0; i < mc; i += GEMM_MR) {
        const int rows = mc - i < GEMM_MR ? mc - i : GEMM_MR;
        int k = 0;
        if (!trans && rows == GEMM_MR && GEMM_MR <= 8)
            for (; k + 8 <= kc; k += 8) {
                pack_vec r[8] = {0};
                for (int q = 0; q < GEMM_MR; q++) r[q] = *(const pack_vec_unaligned *)(a + (int64_t)(i0 + i + q) * lda + k0 + k);
                transpose8(r);
                for (int c = 0; c < 8; c++) *(pack_vec_unaligned *)(out + c * GEMM_MR) = r[c];
                out += 8 * GEMM_MR;
            }
        for (; k < kc; k++) {
            int r = 0;
            if (trans) {
                const float *column = a + (int64_t)(k0 + k) * lda + i0 + i;
                for (; r < rows; r++) out[r] = column[r];
            } else {
                for (; r < rows; r++) out[r] = a[(int64_t)(i0 + i + r) * lda + k0 + k];
            }
            for (; r < GEMM_MR; r++) out[r] = 0.0f;
            out += GEMM_MR;
        }
    }
}

// Packs B stored transposed (N×K): a panel's columns are rows of the stored matrix. Whole panels
// go in 8×8 blocks transposed in registers (eight contiguous loads, eight contiguous stores),
// the rest a float at a time.
static void gemm_pack_b_transposed(const float *b, int ldb, int kc, int nc, float *out) {
    for (int j = 0; j < nc; j += GEMM_NR) {
        const int cols = nc - j < GEMM_NR ? nc - j : GEMM_NR;
        int k0 = 0;
        if (cols == GEMM_NR)
            for (; k0 + 8 <= kc; k0 += 8)
                for (int c0 = 0; c0 < GEMM_NR; c0 += 8) {
                    pack_vec r[8];
                    for (int q = 0; q < 8; q++) r[q] = *(const pack_vec_unaligned *)(b + (int64_t)(j + c0 + q) * ldb + k0);
                    transpose8(r);
                    for (int q = 0; q < 8; q++) *(pack_vec_unaligned *)(out + (k0 + q) * GEMM_NR + c0) = r[q];
                }
        for (int c = 0; c < GEMM_NR; c++) {
            const float *row = b + (int64_t)(j + c) * ldb;
            if (c < cols)
                for (int k = k0; k < kc; k++) out[k * GEMM_NR + c] = row[k];
            else
                for (int k = k0; k < kc; k++) out[k * GEMM_NR + c] = 0.0f;
        }
        out += (int64_t)kc * GEMM_NR;
    }
}

// Packs B[k0:k0+kc, n0:n0+nc] as panels of NR columns, k-major, zero columns past nc.
static void gemm_pack_b(const float *b, int ldb, int kc, int nc, float *out) {
    for (int j = 0; j < nc; j += GEMM_NR) {
        const int cols = nc - j < GEMM_NR ? nc - j : GEMM_NR;
        for (int k = 0; k < kc; k++) {
            const float *row = b + (int64_t)k * ldb + j;
            if (cols == GEMM_NR) {
                *(gemm_vec *)out = *(const gemm_vec_unaligned *)row;
                *(gemm_vec *)(out + GEMM_VL) = *(const gemm_vec_unaligned *)(row + GEMM_VL);
            } else {
                int c = 0;
                for (; c < cols; c++) out[c] = row[c];
                for (; c < GEMM_NR; c++) out[c] = 0.0f;
            }
            out += GEMM_NR;
        }
    }
}

// A tile of at most VL columns (the tail of a narrow product: Winograd's 16 tiles of a 14×14 map
// at batch 1): one vector per row, half the work of a full tile, each element summed by the same
// multiply-adds in the same order (bit-equal to the full tile's columns).
static void gemm_tile_half(int kc, const float *ap, const float *bp, float *c, int ldc, int mr, int nr, int accumulate) {
    gemm_vec acc[GEMM_MR];
    float edge[GEMM_MR * GEMM_VL];
    const int full = mr == GEMM_MR && nr == GEMM_VL;
    if (!full) {
        memset(edge, 0, sizeof edge);
        if (accumulate)
            for (int r = 0; r < mr; r++) memcpy(edge + r * GEMM_VL, c + (int64_t)r * ldc, sizeof(float) * nr);
    }
    for (int r = 0; r < GEMM_MR; r++) {
        const float *row = full ? c + (int64_t)r * ldc : edge + r * GEMM_VL;
        acc[r] = accumulate || !full ? *(const gemm_vec_unaligned *)row : (gemm_vec){0};
    }
#pragma unroll 4
    for (int k = 0; k < kc; k++) {
        const gemm_vec b0 = *(const gemm_vec *)bp;
#pragma unroll
        for (int r = 0; r < GEMM_MR; r++) acc[r] += b0 * ap[r];
        ap += GEMM_MR;
        bp += GEMM_NR;
    }
    for (int r = 0; r < GEMM_MR; r++) *(gemm_vec_unaligned *)(full ? c + (int64_t)r * ldc : edge + r * GEMM_VL) = acc[r];
    if (!full)
        for (int r = 0; r < mr; r++) memcpy(c + (int64_t)r * ldc, edge + r * GEMM_VL, sizeof(float) * nr);
}

// One MR×NR tile: acc (from C when `accumulate`, else 0) += Σ_k a[:,k]·b[k,:] in k order.
static void gemm_tile(int kc, const float *ap, const float *bp, float *c, int ldc, int mr, int nr, int accumulate) {
    if (nr <= GEMM_VL) {
        gemm_tile_half(kc, ap, bp, c, ldc, mr, nr, accumulate);
        return;
    }
    gemm_vec acc[GEMM_MR][2];
    float edge[GEMM_MR * GEMM_NR];
    const int full = mr == GEMM_MR && nr == GEMM_NR;
    if (!full) {
        memset(edge, 0, sizeof edge);
        if (accumulate)
            for (int r = 0; r < mr; r++) memcpy(edge + r * GEMM_NR, c + (int64_t)r * ldc, sizeof(float) * nr);
    }
    for (int r = 0; r < GEMM_MR; r++) {
        const float *row = full ? c + (int64_t)r * ldc : edge + r * GEMM_NR;
        if (accumulate || !full) {
            acc[r][0] = *(const gemm_vec_unaligned *)row;
            acc[r][1] = *(const gemm_vec_unaligned *)(row + GEMM_VL);
        } else {
            acc[r][0] = (gemm_vec){0};
            acc[r][1] = (gemm_vec){0};
        }
    }
#pragma unroll 4
    for (int k = 0; k < kc; k++) {
        const gemm_vec b0 = *(const gemm_vec *)bp, b1 = *(const gemm_vec *)(bp + GEMM_VL);
#pragma unroll
        for (int r = 0; r < GEMM_MR; r++) {
            const float s = ap[r];
            acc[r][0] += b0 * s;
            acc[r][1] += b1 * s;
        }
        ap += GEMM_MR;
        bp += GEMM_NR;
    }
    for (int r = 0; r < GEMM_MR; r++) {
        float *row = full ? c + (int64_t)r * ldc : edge + r * GEMM_NR;
        *(gemm_vec_unaligned *)row = acc[r][0];
        *(gemm_vec_unaligned *)(row + GEMM_VL) = acc[r][1];
    }
    if (!full)
        for (int r = 0; r < mr; r++) memcpy(c + (int64_t)r * ldc, edge + r * GEMM_NR, sizeof(float) * nr);
}

// The tiles of an mc×nc block of C over one block of kc: B's panels in the outer loop (one stays
// in L1 while A's panels stream past it), A's panels `a_step` floats apart, B's `b_step`.
static void gemm_block_tiles(int mc, int nc, int kc, const float *ap, int64_t a_step, const float *bp, int64_t b_step,
                             float *c, int ldc, int accumulate) {
    for (int jr = 0; jr < nc; jr += GEMM_NR)
        for (int ir = 0; ir < mc; ir += GEMM_MR)
            gemm_tile(kc, ap + ir / GEMM_MR * a_step, bp + jr / GEMM_NR * b_step, c + (int64_t)ir * ldc + jr, ldc,
                      mc - ir < GEMM_MR ? mc - ir : GEMM_MR, nc - jr < GEMM_NR ? nc - jr : GEMM_NR, accumulate);
}

// Single-threaded (the caller splits C between threads). Returns -1, having done nothing, when the
// packing buffers are refused.
static int gemm_ordered(int trans_a, int trans_b, int m, int n, int k, const float *a, int lda, const float *b, int ldb,
                        float beta, float *c, int ldc) {
    float *pack_a = kn_scratch(KN_SCRATCH_PACK_A, (int64_t)GEMM_MC * GEMM_KC + 8);  // + 8: gemm_pack_a's overrun
    float *pack_b = kn_scratch(KN_SCRATCH_PACK_B, (int64_t)GEMM_KC * (GEMM_NC + GEMM_NR));
    if (!pack_a || !pack_b) return -1;
    if (beta != 0.0f && beta != 1.0f)
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) c[(int64_t)i * ldc + j] *= beta;
    for (int jc = 0; jc < n; jc += GEMM_NC) {
        const int nc = n - jc < GEMM_NC ? n - jc : GEMM_NC;
        for (int pc = 0; pc < k; pc += GEMM_KC) {
            const int kc = k - pc < GEMM_KC ? k - pc : GEMM_KC;
            const int accumulate = pc > 0 || beta != 0.0f;
            if (trans_b)
                gemm_pack_b_transposed(b + (int64_t)jc * ldb + pc, ldb, kc, nc, pack_b);
            else
                gemm_pack_b(b + (int64_t)pc * ldb + jc, ldb, kc, nc, pack_b);
            for (int ic = 0; ic < m; ic += GEMM_MC) {
                const int mc = m - ic < GEMM_MC ? m - ic : GEMM_MC;
                gemm_pack_a(a, lda, trans_a, ic, pc, mc, kc, pack_a);
                gemm_block_tiles(mc, nc, kc, pack_a, (int64_t)kc * GEMM_MR, pack_b, (int64_t)kc * GEMM_NR,
                                 c + (int64_t)ic * ldc + jc, ldc, accumulate);
            }
        }
    }
    return 0;
}

// ---- Operands packed once, in panels ------------------------------------------------------------
// A caller that multiplies the same operand many times (Winograd's transformed weights, used by
// every chunk of tiles) or that can write an operand straight into the kernel's layout (the
// transformed input tiles) packs it once as whole panels, independent of the cache blocking: A as
// ⌈m/MR⌉ panels of k×MR, B as ⌈n/NR⌉ panels of k×NR, k-major, zero past m and n. The product walks
// the same k blocks in the same order as gemm_ordered, so it is bit-equal to it.

static int64_t gemm_panels_a_floats(int m, int k) { return (int64_t)((m + GEMM_MR - 1) / GEMM_MR) * GEMM_MR * k; }

// Single-threaded C = A·B + beta·C (beta 0 or 1) from panel-packed A and B.
static void gemm_panels(int m, int n, int k, const float *ap, const float *bp, float beta, float *c, int ldc) {
    for (int pc = 0; pc < k; pc += GEMM_KC) {
        const int kc = k - pc < GEMM_KC ? k - pc : GEMM_KC;
        const int accumulate = pc > 0 || beta != 0.0f;
        for (int ic = 0; ic < m; ic += GEMM_MC) {  // MC is a multiple of MR: ic starts a panel
            const int mc = m - ic < GEMM_MC ? m - ic : GEMM_MC;
            gemm_block_tiles(mc, n, kc, ap + (int64_t)ic * k + (int64_t)pc * GEMM_MR, (int64_t)k * GEMM_MR,
                             bp + (int64_t)pc * GEMM_NR, (int64_t)k * GEMM_NR, c + (int64_t)ic * ldc, ldc, accumulate);
        }
    }
}
