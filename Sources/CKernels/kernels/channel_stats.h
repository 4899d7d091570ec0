// Per-channel reductions shared by the BatchNorm kernels (internal).
#ifndef KILN_CHANNEL_STATS_H
#define KILN_CHANNEL_STATS_H

#include <stdint.h>

/// Mean of channel `ch` of an [n, c, hw] tensor, accumulated in double.
static inline double channel_mean(const float *x, int n, int c, int hw, int ch) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        const float *xp = x + ((int64_t)i * c + ch) * hw;
        for (int p = 0; p < hw; p++) sum += xp[p];
    }
    return sum / ((double)n * hw);
}

#endif
