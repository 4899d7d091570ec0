// Optimiser updates, written to follow torch.optim's single-tensor algorithms step for step.
#include "kernels.h"
#include <math.h>
#include "../parallel.h"

typedef struct {
    float *param, *momentum_buf;
    const float *grad;
    float lr, momentum, dampening, weight_decay;
    int nesterov, first;
} sgd_args;

// The loops are instantiated per (momentum, Nesterov, first step) with the choice a constant
// inside, and read their arguments through restrict locals, so -O2 vectorises them.
#define INLINE static inline __attribute__((always_inline))

INLINE void sgd_as(const sgd_args *r, int64_t begin, int64_t end, const int with_momentum, const int nesterov, const int first) {
    float *restrict param = r->param, *restrict momentum_buf = r->momentum_buf;
    const float *restrict grad = r->grad;
    const float lr = r->lr, momentum = r->momentum, dampening = r->dampening, weight_decay = r->weight_decay;
    for (int64_t i = begin; i < end; i++) {
        float d = grad[i];
        if (weight_decay != 0.0f) d += weight_decay * param[i];
        if (with_momentum) {
            float buf = first ? d : momentum * momentum_buf[i] + (1.0f - dampening) * d;
            momentum_buf[i] = buf;
            d = nesterov ? d + momentum * buf : buf;
        }
        param[i] -= lr * d;
    }
}

static void sgd_range(void *context, int64_t begin, int64_t end) {
    const sgd_args *r = context;
    if (r->momentum == 0.0f) sgd_as(r, begin, end, 0, 0, 0);
    else if (r->first) r->nesterov ? sgd_as(r, begin, end, 1, 1, 1) : sgd_as(r, begin, end, 1, 0, 1);
    else r->nesterov ? sgd_as(r, begin, end, 1, 1, 0) : sgd_as(r, begin, end, 1, 0, 0);
}

void kn_sgd_update(float *param, const float *grad, float *momentum_buf, int64_t count, float lr,
                   float momentum, float dampening, float weight_decay, int nesterov, int first) {
    sgd_args r = {param, momentum_buf, grad, lr, momentum, dampening, weight_decay, nesterov, first};
    kn_parallel_for(count, KN_GRAIN_ELEMENTS, sgd_range, &r);
}

typedef struct {
    float *param, *exp_avg, *exp_avg_sq;
    const float *grad;
    float lr, beta1, beta2, eps, weight_decay, step_size, bias2_sqrt;
    int decoupled;
} adam_args;

static void adam_range(void *context, int64_t begin, int64_t end) {
    const adam_args *r = context;
    float *restrict param = r->param, *restrict exp_avg = r->exp_avg, *restrict exp_avg_sq = r->exp_avg_sq;
    const float *restrict grad = r->grad;
    const float lr = r->lr, beta1 = r->beta1, beta2 = r->beta2, eps = r->eps, weight_decay = r->weight_decay;
    const float step_size = r->step_size, bias2_sqrt = r->bias2_sqrt;
    const int decoupled = r->decoupled;
    for (int64_t i = begin; i < end; i++) {
        float g = grad[i];
        if (weight_decay != 0.0f) {
            if (decoupled) param[i] *= 1.0f - lr * weight_decay;
            else g += weight_decay * param[i];
        }
        exp_avg[i] += (g - exp_avg[i]) * (1.0f - beta1);
        exp_avg_sq[i] = exp_avg_sq[i] * beta2 + (1.0f - beta2) * g * g;
        const float denom = sqrtf(exp_avg_sq[i]) / bias2_sqrt + eps;
        param[i] -= step_size * exp_avg[i] / denom;
    }
}

void kn_adam_update(float *param, const float *grad, float *exp_avg, float *exp_avg_sq, int64_t count,
                    float lr, float beta1, float beta2, float eps, float weight_decay, int decoupled, int64_t t) {
    const double bias1 = 1.0 - pow(beta1, (double)t), bias2 = 1.0 - pow(beta2, (double)t);
    adam_args r = {param, exp_avg, exp_avg_sq, grad, lr, beta1, beta2, eps, weight_decay,
                   (float)(lr / bias1), (float)sqrt(bias2), decoupled};
    kn_parallel_for(count, KN_GRAIN_ELEMENTS, adam_range, &r);
}
