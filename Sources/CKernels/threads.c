// Thread control shared by OpenMP regions and OpenBLAS.
#include "kernels.h"
#include <cblas.h>
#include <omp.h>

static int kn_thread_count = 0;

void kn_set_threads(int n) {
    if (n < 1) n = 1;
    kn_thread_count = n;
    omp_set_num_threads(n);
    openblas_set_num_threads(1);  // Kiln parallelises around BLAS (see gemm.c)
}

int kn_threads(void) {
    if (kn_thread_count == 0) kn_set_threads(omp_get_max_threads());
    return kn_thread_count;
}
