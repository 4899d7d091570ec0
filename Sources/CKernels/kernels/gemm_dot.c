// C += A·Bᵀ for row-major A [m][k] and B [n][k] by dot products along k: both operands are read
// as they lie, a vector of k at a time, with no packing. A convolution's filter gradient over one
// image (dY · colᵀ, or dY · xᵀ for a pointwise conv) can have few outputs against k (MobileNetV2's
// pointwise convs: 48 × 8 outputs over 12,544 pixels; its 3×3 stem: 16 × 27), where the packed
// GEMM moved about as many floats into its panels as it multiplied: 2–3× faster there.
#include "kernels.h"
#include <string.h>

// Output rows of A × rows of B per register block: 4 × 6 accumulators with AVX-512's 32
// registers, 3 × 4 with 16 (the A vectors held, B loaded one row at a time).
enum { DOT_M = KN_VECTOR_BYTES == 64 ? 4 : 3, DOT_N = KN_VECTOR_BYTES == 64 ? 6 : 4, DOT_KB = 1024 };

// One block of up to DOT_M × DOT_N outputs over k [k0, k1): the vector part in lanes, summed
// across lanes once, then the scalar remainder — a fixed order, whatever the thread.
static void dot_block(const float *a, int64_t lda, const float *b, int64_t ldb, float *c, int64_t ldc, int rows,
                      int cols, int64_t k0, int64_t k1) {
    const float *ar[DOT_M], *br[DOT_N];
    for (int i = 0; i < DOT_M; i++) ar[i] = a + (i < rows ? i : rows - 1) * lda;
    for (int j = 0; j < DOT_N; j++) br[j] = b + (j < cols ? j : cols - 1) * ldb;
    gemm_vec acc[DOT_M][DOT_N];
    for (int i = 0; i < DOT_M; i++)
        for (int j = 0; j < DOT_N; j++) acc[i][j] = (gemm_vec){0};
    int64_t k = k0;
    for (; k + GEMM_VL <= k1; k += GEMM_VL) {
        gemm_vec av[DOT_M];
        for (int i = 0; i < DOT_M; i++) av[i] = *(const gemm_vec_unaligned *)(ar[i] + k);
        for (int j = 0; j < DOT_N; j++) {
            const gemm_vec bv = *(const gemm_vec_unaligned *)(br[j] + k);
            for (int i = 0; i < DOT_M; i++) acc[i][j] += av[i] * bv;
        }
    }
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            float sum = 0.0f;
            for (int l = 0; l < GEMM_VL; l++) sum += acc[i][j][l];
            for (int64_t r = k; r < k1; r++) sum += ar[i][r] * br[j][r];
            c[i * ldc + j] += sum;
        }
}

// C [m][n] += A·Bᵀ, k in blocks of DOT_KB (the block's rows of A stay in L1 while B's pass).
static void gemm_dot_nt(int m, int n, int64_t k, const float *a, int64_t lda, const float *b, int64_t ldb, float *c,
                        int64_t ldc) {
    for (int64_t k0 = 0; k0 < k; k0 += DOT_KB) {
        const int64_t k1 = k - k0 < DOT_KB ? k : k0 + DOT_KB;
        for (int i = 0; i < m; i += DOT_M)
            for (int j = 0; j < n; j += DOT_N)
                dot_block(a + i * lda, lda, b + j * ldb, ldb, c + i * ldc + j, ldc, m - i < DOT_M ? m - i : DOT_M,
                          n - j < DOT_N ? n - j : DOT_N, k0, k1);
    }
}

// Whether dot products beat the packed GEMM for C += A·Bᵀ: up to 64² outputs. Past that each
// register block's re-reading of A and B from L2 costs more than packing did (ResNet's stem,
// 64 × 147: 50 → 62 ms; 32 × 192: 7.4 → 9.6–13.9 ms).
static int gemm_dot_pays(int m, int n) { return (int64_t)m * n <= 64 * 64; }
