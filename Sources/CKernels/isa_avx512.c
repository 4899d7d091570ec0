// The kernels built for AVX-512 (F, BW, DQ, VL; Intel Skylake-SP, AMD Zen 4 and later), so the
// vectoriser may use 512-bit registers.
#if defined(__x86_64__)
#define KN_VECTOR_BYTES 64
#define KN_ISA_SUFFIX _avx512
#include "kernels/isa_prelude.h"
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma"))), apply_to = function)
#include "kernels/all.h"
#pragma clang attribute pop
#endif
