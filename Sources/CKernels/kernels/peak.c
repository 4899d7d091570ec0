// The multiply-add peak of this instruction-set path: independent chains of vector FMAs on the
// path's widest registers, on every Kiln thread. kiln-bench reports throughput as a share of it.
#include "kernels.h"
#include <time.h>
#include "../parallel.h"

typedef struct {
    int64_t iterations;
    double seconds[KN_MAX_PEAK_THREADS];
    float sink[KN_MAX_PEAK_THREADS];
} peak_args;

static double peak_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void peak_worker(void *context, int t, int workers) {
    (void)workers;
    peak_args *r = context;
    if (t >= KN_MAX_PEAK_THREADS) return;
    // 12 chains: enough to cover the FMA latency on two pipes (4 cycles × 2 pipes, plus slack).
    gemm_vec acc[12];
    const gemm_vec scale = (gemm_vec){0} + 0.999999f, step = (gemm_vec){0} + 1e-7f;
    for (int i = 0; i < 12; i++) acc[i] = (gemm_vec){0} + (float)i;
    const double start = peak_now();
    for (int64_t k = 0; k < r->iterations; k++) {
#pragma unroll
        for (int i = 0; i < 12; i++) acc[i] = acc[i] * scale + step;
    }
    r->seconds[t] = peak_now() - start;
    float sum = 0;
    for (int i = 0; i < 12; i++) sum += acc[i][0];
    r->sink[t] = sum;
}

double kn_fma_peak_gflops(int64_t iterations) {
    peak_args r = {.iterations = iterations};
    int workers = kn_threads();
    if (workers > KN_MAX_PEAK_THREADS) workers = KN_MAX_PEAK_THREADS;
    kn_parallel(workers, peak_worker, &r);
    double slowest = 0;
    for (int t = 0; t < workers; t++)
        if (r.seconds[t] > slowest) slowest = r.seconds[t];
    const double flops = 2.0 * 12 * GEMM_VL * (double)iterations * workers;
    return slowest > 0 ? flops / slowest / 1e9 : 0;
}
