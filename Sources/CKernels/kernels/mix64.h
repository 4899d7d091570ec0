// SplitMix64's finaliser: a good 64-bit mix, so a counter-based draw depends only on (seed, i)
// and is the same at any thread count (initialisers, dropout).
#ifndef KILN_MIX64_H
#define KILN_MIX64_H
#include <stdint.h>

static inline uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#endif
