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

static void sgd_range(void *context, int64_t begin, int64_t end) {
    const sgd_args *r = context;
    for (int64_t i = begin; i < end; i++) {
        float d = r->grad[i];
        if (r->weight_decay != 0.0f) d += r->weight_decay * r->param[i];
        if (r->momentum != 0.0f) {
            float buf = r->first ? d : r->momentum * r->momentum_buf[i] + (1.0f - r->dampening) * d;
            r->momentum_buf[i] = buf;
            d = r->nesterov ? d + r->momentum * buf : buf;
        }
        r->param[i] -= r->lr * d;
    }
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
    for (int64_t i = begin; i < end; i++) {
        float g = r->grad[i];
        if (r->weight_decay != 0.0f) {
            if (r->decoupled) r->param[i] *= 1.0f - r->lr * r->weight_decay;
            else g += r->weight_decay * r->param[i];
        }
        r->exp_avg[i] += (g - r->exp_avg[i]) * (1.0f - r->beta1);
        r->exp_avg_sq[i] = r->exp_avg_sq[i] * r->beta2 + (1.0f - r->beta2) * g * g;
        const float denom = sqrtf(r->exp_avg_sq[i]) / r->bias2_sqrt + r->eps;
        r->param[i] -= r->step_size * r->exp_avg[i] / denom;
    }
}

void kn_adam_update(float *param, const float *grad, float *exp_avg, float *exp_avg_sq, int64_t count,
                    float lr, float beta1, float beta2, float eps, float weight_decay, int decoupled, int64_t t) {
    const double bias1 = 1.0 - pow(beta1, (double)t), bias2 = 1.0 - pow(beta2, (double)t);
    adam_args r = {param, exp_avg, exp_avg_sq, grad, lr, beta1, beta2, eps, weight_decay,
                   (float)(lr / bias1), (float)sqrt(bias2), decoupled};
    kn_parallel_for(count, KN_GRAIN_ELEMENTS, adam_range, &r);
}
