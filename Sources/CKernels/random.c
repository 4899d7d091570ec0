// Seeded fills for parameter initialisation: counter-based, so the value at index i depends only
// on (seed, i) and the result is identical at any thread count.
#include "kernels.h"
#include <math.h>

#include "kernels/mix64.h"

// Uniform in (0, 1), never 0 (safe for log in Box-Muller).
static inline double unit(uint64_t seed, uint64_t i) {
    return ((mix64(seed ^ mix64(i)) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

void kn_fill_constant(float *x, int64_t count, float value) {
    for (int64_t i = 0; i < count; i++) x[i] = value;
}

void kn_fill_uniform(float *x, int64_t count, float low, float high, uint64_t seed) {
    for (int64_t i = 0; i < count; i++) x[i] = (float)(low + (high - low) * unit(seed, (uint64_t)i));
}

void kn_fill_normal(float *x, int64_t count, float mean, float std, uint64_t seed) {
    for (int64_t i = 0; i < count; i++) {
        double u1 = unit(seed, 2 * (uint64_t)i), u2 = unit(seed, 2 * (uint64_t)i + 1);
        x[i] = (float)(mean + std * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
    }
}
