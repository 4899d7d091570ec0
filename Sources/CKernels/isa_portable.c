// The kernels for any CPU of the target architecture (x86-64: SSE2; aarch64: NEON), as the
// compiler's baseline builds them. The fallback of dispatch.c and the reference of its tests.
#define KN_VECTOR_BYTES 16
#define KN_ISA_SUFFIX _portable
#include "kernels/isa_prelude.h"
#include "kernels/all.h"
