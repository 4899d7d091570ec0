// The kernels built for AVX2 + FMA (Intel Haswell, AMD Zen and later): the target attribute on
// every function replaces the -mavx2 -mfma flags a versioned SwiftPM dependency may not carry.
#if defined(__x86_64__)
#define KN_VECTOR_BYTES 32
#define KN_ISA_SUFFIX _avx2
#include "kernels/isa_prelude.h"
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#include "kernels/all.h"
#pragma clang attribute pop
#endif
