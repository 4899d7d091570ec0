// Linear layer, softmax family and cross-entropy.
#include "kernels.h"
#include "../parallel.h"
#include <cblas.h>
#include <math.h>

typedef struct {
    const float *x, *w, *bias;
    float *y;
    int n, in, out;
} linear_args;

// Outputs [begin, end) for every sample: each weight row is read once and dotted with all n
// inputs while it sits in L1. Every output is summed in the same order (eight strided partial
// sums, combined pairwise, then the tail), so outputs with equal weights come out bit-equal
// wherever they fall — as a reference implementation gives, and unlike a GEMM whose edge tiles
// accumulate differently (a classifier at logit scale 1e19 would otherwise turn softmax one-hot).
static void linear_outputs(void *context, int64_t begin, int64_t end) {
    const linear_args *r = context;
    const int in = r->in, body = in - in % 8;
    for (int64_t o = begin; o < end; o++) {
        const float *restrict wo = r->w + o * in;
        for (int i = 0; i < r->n; i++) {
            const float *restrict xi = r->x + (int64_t)i * in;
            float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int k = 0; k < body; k += 8)
                for (int l = 0; l < 8; l++) acc[l] += xi[k + l] * wo[k + l];
            float tail = 0;
            for (int k = body; k < in; k++) tail += xi[k] * wo[k];
            const float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
            r->y[(int64_t)i * r->out + o] = sum + (r->bias ? r->bias[o] : 0.0f);
        }
    }
}

void kn_linear_forward(const float *x, const float *w, const float *bias, float *y, int n, int in, int out) {
    linear_args r = {x, w, bias, y, n, in, out};
    const int64_t per_output = (int64_t)n * in;
    kn_parallel_for(out, per_output >= KN_GRAIN_ELEMENTS ? 1 : KN_GRAIN_ELEMENTS / (per_output > 0 ? per_output : 1), linear_outputs, &r);
}

// A row's maximum and Σ exp(x − max), in double. Softmax is exp(x − max) / Σ and log-softmax
// (x − max) − log Σ: subtracting max + log Σ as one number would lose log Σ against a max of
// 1e19 (all-equal logits must give 1/k).
static double row_shifted_sum(const float *row, int k, float *max_out) {
    float mx = row[0];
    for (int j = 1; j < k; j++) if (row[j] > mx) mx = row[j];
    double s = 0.0;
    for (int j = 0; j < k; j++) s += exp((double)row[j] - mx);
    *max_out = mx;
    return s;
}

void kn_softmax(const float *x, float *y, int n, int k) {
    for (int i = 0; i < n; i++) {
        float mx;
        const double s = row_shifted_sum(x + (int64_t)i * k, k, &mx);
        for (int j = 0; j < k; j++) y[(int64_t)i * k + j] = (float)(exp((double)x[(int64_t)i * k + j] - mx) / s);
    }
}

void kn_log_softmax(const float *x, float *y, int n, int k) {
    for (int i = 0; i < n; i++) {
        float mx;
        const double log_s = log(row_shifted_sum(x + (int64_t)i * k, k, &mx));
        for (int j = 0; j < k; j++) y[(int64_t)i * k + j] = (float)(((double)x[(int64_t)i * k + j] - mx) - log_s);
    }
}

float kn_cross_entropy(const float *logits, const int64_t *labels, int n, int k, int *bad_label_index) {
    *bad_label_index = -1;
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        if (labels[i] < 0 || labels[i] >= k) { *bad_label_index = i; return NAN; }
        const float *row = logits + (int64_t)i * k;
        float mx;
        const double log_s = log(row_shifted_sum(row, k, &mx));
        total += ((double)mx - row[labels[i]]) + log_s;
    }
    return (float)(total / n);
}
