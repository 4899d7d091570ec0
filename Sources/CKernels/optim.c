// Optimiser updates, written to follow torch.optim's single-tensor algorithms step for step.
#include "kernels.h"
#include <math.h>

void kn_sgd_update(float *param, const float *grad, float *momentum_buf, int64_t count, float lr,
                   float momentum, float dampening, float weight_decay, int nesterov, int first) {
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; i++) {
        float d = grad[i];
        if (weight_decay != 0.0f) d += weight_decay * param[i];
        if (momentum != 0.0f) {
            float buf = first ? d : momentum * momentum_buf[i] + (1.0f - dampening) * d;
            momentum_buf[i] = buf;
            d = nesterov ? d + momentum * buf : buf;
        }
        param[i] -= lr * d;
    }
}

void kn_adam_update(float *param, const float *grad, float *exp_avg, float *exp_avg_sq, int64_t count,
                    float lr, float beta1, float beta2, float eps, float weight_decay, int decoupled, int64_t t) {
    const double bias1 = 1.0 - pow(beta1, (double)t), bias2 = 1.0 - pow(beta2, (double)t);
    const float step_size = (float)(lr / bias1), bias2_sqrt = (float)sqrt(bias2);
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; i++) {
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
