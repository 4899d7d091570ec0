// Row-major SGEMM that parallelises with OpenMP over blocks of C, each block a single-threaded
// OpenBLAS call. OpenBLAS itself always runs with one thread: Kiln never changes its thread count
// at run time (that is not safe while another thread is inside a BLAS call), and every element
// of C is computed by exactly one thread over the full K, so results do not depend on how many
// threads ran.
#include "kernels.h"
#include <cblas.h>
#include <omp.h>

void kn_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
              const float *b, int ldb, float beta, float *c, int ldc) {
    const enum CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans, tb = trans_b ? CblasTrans : CblasNoTrans;
    const int threads = omp_in_parallel() ? 1 : kn_threads();
    const double work = (double)m * n * k;
    if (threads == 1 || work < 2.0e6) {
        cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    // Split the wider of the two output dimensions into one block per thread (multiples of 16).
    const int split_n = n >= m;
    const int extent = split_n ? n : m;
    int chunk = (extent + threads - 1) / threads;
    chunk = (chunk + 15) / 16 * 16;
    #pragma omp parallel for num_threads(threads) schedule(static, 1)
    for (int t = 0; t < threads; t++) {
        const int start = t * chunk;
        if (start >= extent) continue;
        const int len = start + chunk > extent ? extent - start : chunk;
        if (split_n) {
            const float *bb = trans_b ? b + (int64_t)start * ldb : b + start;
            cblas_sgemm(CblasRowMajor, ta, tb, m, len, k, alpha, a, lda, bb, ldb, beta, c + start, ldc);
        } else {
            const float *aa = trans_a ? a + start : a + (int64_t)start * lda;
            cblas_sgemm(CblasRowMajor, ta, tb, len, n, k, alpha, aa, lda, b, ldb, beta, c + (int64_t)start * ldc, ldc);
        }
    }
}
