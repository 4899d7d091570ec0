// Run-time choice of the kernels' instruction set. Each public kernel is a one-line wrapper that
// calls the chosen variant through a table; the variants call each other directly (isa_names.h),
// so a parallel region never changes instruction set half-way.
#include "kernels.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#define KN_HAS_X86_PATHS 1
#else
#define KN_HAS_X86_PATHS 0
#endif

// The variants' prototypes: kn_relu_portable, kn_relu_avx2, …
#define KN_VOID(name, params, args) KN_RETURNS(void, name, params, args)
#if KN_HAS_X86_PATHS
#define KN_RETURNS(type, name, params, args) type name##_portable params; type name##_avx2 params; type name##_avx512 params;
#else
#define KN_RETURNS(type, name, params, args) type name##_portable params;
#endif
#include "kernels/dispatched.h"
#undef KN_RETURNS

typedef struct {
#define KN_RETURNS(type, name, params, args) type(*name) params;
#include "kernels/dispatched.h"
#undef KN_RETURNS
} kernel_table;

#define KN_RETURNS(type, name, params, args) .name = name##_portable,
static const kernel_table portable_kernels = {
#include "kernels/dispatched.h"
};
#undef KN_RETURNS
#if KN_HAS_X86_PATHS
#define KN_RETURNS(type, name, params, args) .name = name##_avx2,
static const kernel_table avx2_kernels = {
#include "kernels/dispatched.h"
};
#undef KN_RETURNS
#define KN_RETURNS(type, name, params, args) .name = name##_avx512,
static const kernel_table avx512_kernels = {
#include "kernels/dispatched.h"
};
#undef KN_RETURNS
static const kernel_table *const tables[KN_ISA_COUNT] = {&portable_kernels, &avx2_kernels, &avx512_kernels};
#else
static const kernel_table *const tables[KN_ISA_COUNT] = {&portable_kernels, NULL, NULL};
#endif

static const char *const names[KN_ISA_COUNT] = {"portable", "avx2", "avx512"};

const char *kn_isa_name(int isa) { return isa >= 0 && isa < KN_ISA_COUNT ? names[isa] : NULL; }

int kn_isa_supported(int isa) {
    if (isa == KN_ISA_PORTABLE) return 1;
#if KN_HAS_X86_PATHS
    __builtin_cpu_init();
    const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (isa == KN_ISA_AVX2) return avx2;
    if (isa == KN_ISA_AVX512)
        return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#endif
    return 0;
}

static int process_isa = -1;
static _Thread_local int thread_isa = -1;
static pthread_once_t chosen = PTHREAD_ONCE_INIT;
static char request_problem[160];

// The widest path the CPU runs. (AMD's was once excluded: with OpenBLAS's Haswell kernels doing
// the GEMMs, Zen 4's AVX-512 measured 3% slower than AVX2. Kiln's own forward GEMM made the
// AVX-512 path the faster one: on Zen 5, ResNet-18 inference +38%, training +44%, two
// interleaved rounds, Docs/Benchmarks.md.)
int kn_isa_default(void) {
#if KN_HAS_X86_PATHS
    __builtin_cpu_init();
    if (kn_isa_supported(KN_ISA_AVX512)) return KN_ISA_AVX512;
    if (kn_isa_supported(KN_ISA_AVX2)) return KN_ISA_AVX2;
#endif
    return KN_ISA_PORTABLE;
}

static void choose(void) {
    const char *request = getenv("KILN_ISA");
    process_isa = kn_isa_default();
    if (!request || !*request) return;
    for (int isa = 0; isa < KN_ISA_COUNT; isa++)
        if (strcmp(request, names[isa]) == 0) {
            if (kn_isa_supported(isa)) process_isa = isa;
            else snprintf(request_problem, sizeof request_problem, "KILN_ISA=%s: this CPU cannot run it; using %s", request, names[process_isa]);
            return;
        }
    snprintf(request_problem, sizeof request_problem, "KILN_ISA=%.40s: not one of portable, avx2, avx512; using %s", request,
             names[process_isa]);
}

int kn_isa(void) {
    if (thread_isa >= 0) return thread_isa;
    pthread_once(&chosen, choose);
    return process_isa;
}

const char *kn_isa_request_problem(void) {
    pthread_once(&chosen, choose);
    return request_problem[0] ? request_problem : NULL;
}

int kn_set_isa(int isa) {
    pthread_once(&chosen, choose);
    if (isa < 0 || isa >= KN_ISA_COUNT || !kn_isa_supported(isa)) return -1;
    process_isa = isa;
    return 0;
}

int kn_set_thread_isa(int isa) {
    if (isa == -1) { thread_isa = -1; return 0; }
    if (isa < 0 || isa >= KN_ISA_COUNT || !kn_isa_supported(isa)) return -1;
    thread_isa = isa;
    return 0;
}

// The public kernels.
#define KN_RETURNS(type, name, params, args) type name params { return tables[kn_isa()]->name args; }
#undef KN_VOID
#define KN_VOID(name, params, args) void name params { tables[kn_isa()]->name args; }
#include "kernels/dispatched.h"
#undef KN_RETURNS
#undef KN_VOID
