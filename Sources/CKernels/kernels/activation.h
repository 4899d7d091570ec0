// The activations of the fused conv epilogues (Swift's `EpilogueActivation`, codes KN_ACT_* in
// kernels.h): the one C definition of each, its gradient mask (taken from the output y, as
// PyTorch's threshold_backward), and the dispatch that specialises a loop per activation. A new
// activation is a case in each of the three.
#ifndef KILN_ACTIVATION_H
#define KILN_ACTIVATION_H

static inline __attribute__((always_inline)) float kn_activate(float v, const int activation) {
    switch (activation) {
    case KN_ACT_RELU: return v > 0.0f ? v : 0.0f;
    case KN_ACT_RELU6: return v > 0.0f ? (v < 6.0f ? v : 6.0f) : 0.0f;
    default: return v;
    }
}

/// d act / dz at the point whose output is y.
static inline __attribute__((always_inline)) float kn_activation_mask(float y, const int activation) {
    switch (activation) {
    case KN_ACT_RELU: return y > 0.0f ? 1.0f : 0.0f;
    case KN_ACT_RELU6: return (y > 0.0f && y < 6.0f) ? 1.0f : 0.0f;
    default: return 1.0f;
    }
}

// Runs the statements after `A` with `A` a compile-time constant equal to `activation`, so the
// always-inline loop they call is specialised (and vectorised) per activation instead of testing
// it per element: -O2, the release default, does not unswitch loops the way -O3 does.
#define KN_WITH_ACTIVATION(activation, A, ...)                  \
    switch (activation) {                                       \
    case KN_ACT_RELU: { const int A = KN_ACT_RELU; __VA_ARGS__; } break;   \
    case KN_ACT_RELU6: { const int A = KN_ACT_RELU6; __VA_ARGS__; } break; \
    default: { const int A = KN_ACT_NONE; __VA_ARGS__; } break;            \
    }

#endif
