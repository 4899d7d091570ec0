// Shared by the max-pool forward and backward kernels (internal).
#ifndef KILN_POOL_COMMON_H
#define KILN_POOL_COMMON_H

#include "kernels.h"

/// The output windows that lie wholly inside the input, [oy0, oy1) × [ox0, ox1): they take the
/// branch-free scan, the edges the clipped one (kn_window_max).
typedef struct { int oy0, ox0, oy1, ox1; } pool_inner_windows;

static inline pool_inner_windows pool_inner(const kn_pool2d_desc *d) {
    pool_inner_windows in = {(d->ph + d->sh - 1) / d->sh, (d->pw + d->sw - 1) / d->sw, (d->h - d->kh + d->ph) / d->sh + 1,
                             (d->w - d->kw + d->pw) / d->sw + 1};
    if (in.oy1 > d->oh) in.oy1 = d->oh;
    if (in.ox1 > d->ow) in.ox1 = d->ow;
    return in;
}

#endif
