// Linear layer, softmax family and cross-entropy.
#include "kernels.h"
#include <cblas.h>
#include <math.h>

void kn_linear_forward(const float *x, const float *w, const float *bias, float *y, int n, int in, int out) {
    kn_sgemm(0, 1, n, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
    if (!bias) return;
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) y[(int64_t)i * out + o] += bias[o];
}

static double row_logsumexp(const float *row, int k) {
    float mx = row[0];
    for (int j = 1; j < k; j++) if (row[j] > mx) mx = row[j];
    double s = 0.0;
    for (int j = 0; j < k; j++) s += exp((double)row[j] - mx);
    return mx + log(s);
}

void kn_softmax(const float *x, float *y, int n, int k) {
    for (int i = 0; i < n; i++) {
        double lse = row_logsumexp(x + (int64_t)i * k, k);
        for (int j = 0; j < k; j++) y[(int64_t)i * k + j] = (float)exp(x[(int64_t)i * k + j] - lse);
    }
}

void kn_log_softmax(const float *x, float *y, int n, int k) {
    for (int i = 0; i < n; i++) {
        double lse = row_logsumexp(x + (int64_t)i * k, k);
        for (int j = 0; j < k; j++) y[(int64_t)i * k + j] = (float)(x[(int64_t)i * k + j] - lse);
    }
}

float kn_cross_entropy(const float *logits, const int64_t *labels, int n, int k, int *bad_label_index) {
    *bad_label_index = -1;
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        if (labels[i] < 0 || labels[i] >= k) { *bad_label_index = i; return NAN; }
        const float *row = logits + (int64_t)i * k;
        total += row_logsumexp(row, k) - row[labels[i]];
    }
    return (float)(total / n);
}
