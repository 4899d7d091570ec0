// Row-major SGEMM that parallelises over blocks of C, each block a single-threaded call of Kiln's
// order-fixed kernel (gemm_ordered.c), transposed operands included (the backward passes), built
// per instruction set and chosen at run time. OpenBLAS is left only a fallback for alpha ≠ 1 (no
// caller): its own run-time choice can miss a CPU — 0.3.21 runs its SSE3 "Prescott" kernels on
// Intel's Emerald Rapids, 31 GFLOP/s where Kiln's AVX-512 kernel makes 110–150 on one core — and
// then every backward GEMM ran at that speed. OpenBLAS runs with one thread: Kiln never changes
// its thread count at run time (that is not safe while another thread is inside a BLAS call).
// Every element of C is computed by exactly one thread over the full K, so results do not depend
// on how many threads ran.
#include "kernels.h"
#include <cblas.h>
#include "../parallel.h"

typedef struct {
    enum CBLAS_TRANSPOSE ta, tb;
    int trans_a, trans_b, m, n, k, lda, ldb, ldc, split_n, extent, chunk;
    float alpha, beta;
    const float *a, *b;
    float *c;
} gemm_blocks;

// One block of C; a refused packing buffer leaves it unwritten (the executor reports the failure).
static void gemm_single(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m, int n, int k, float alpha,
                        const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    if (alpha == 1.0f) {
        (void)gemm_ordered(ta == CblasTrans, tb == CblasTrans, m, n, k, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static void gemm_block(void *context, int t, int workers) {
    (void)workers;
    const gemm_blocks *g = context;
    const int start = t * g->chunk;
    if (start >= g->extent) return;
    const int len = start + g->chunk > g->extent ? g->extent - start : g->chunk;
    if (g->split_n) {
        const float *bb = g->trans_b ? g->b + (int64_t)start * g->ldb : g->b + start;
        gemm_single(g->ta, g->tb, g->m, len, g->k, g->alpha, g->a, g->lda, bb, g->ldb, g->beta, g->c + start, g->ldc);
    } else {
        const float *aa = g->trans_a ? g->a + start : g->a + (int64_t)start * g->lda;
        gemm_single(g->ta, g->tb, len, g->n, g->k, g->alpha, aa, g->lda, g->b, g->ldb, g->beta,
                    g->c + (int64_t)start * g->ldc, g->ldc);
    }
}

// Threads for one product: 1 inside a parallel region or below 2·10⁶ multiply-adds (too little to
// pay for waking the pool).
static int gemm_threads(int m, int n, int k) {
    return kn_in_parallel() || (double)m * n * k < 2.0e6 ? 1 : kn_threads();
}

void kn_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
              const float *b, int ldb, float beta, float *c, int ldc) {
    const enum CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans, tb = trans_b ? CblasTrans : CblasNoTrans;
    const int threads = gemm_threads(m, n, k);
    if (threads == 1) {
        gemm_single(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    // Split the wider of the two output dimensions into one block per thread (multiples of 16).
    const int split_n = n >= m;
    const int extent = split_n ? n : m;
    int chunk = (extent + threads - 1) / threads;
    chunk = (chunk + 15) / 16 * 16;
    gemm_blocks g = {ta, tb, trans_a, trans_b, m, n, k, lda, ldb, ldc, split_n, extent, chunk, alpha, beta, a, b, c};
    kn_parallel(threads, gemm_block, &g);
}

