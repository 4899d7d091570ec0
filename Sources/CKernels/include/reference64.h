// Float64 reference kernels: textbook loops (plus dgemm for the convolution and dense products),
// written for clarity, not speed. They back `Float64Evaluator`, the precision oracle that runs a
// graph without rounding to float32 (`graphc grad --precision float64`, differential tests).
#ifndef KILN_REFERENCE64_H
#define KILN_REFERENCE64_H

#include "kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---- convolution (geometry as kn_conv2d_desc, filled by kn_conv2d_geometry) ----------------
void kr_conv2d_forward(const kn_conv2d_desc *d, const double *x, const double *w, const double *bias, double *y);
void kr_conv2d_backward_data(const kn_conv2d_desc *d, const double *dy, const double *w, double *dx);
void kr_conv2d_backward_filter(const kn_conv2d_desc *d, const double *x, const double *dy, double *dw);
/// out[c] = sum of x[n, c, ...] over n and the trailing `inner` elements.
void kr_channel_sum(const double *x, double *out, int n, int c, int inner);

// ---- batch normalisation (biased batch variance, as PyTorch's training forward) ------------
void kr_batchnorm_inference(const double *x, double *y, const double *gamma, const double *beta,
                            const double *mean, const double *var, double eps, int n, int c, int hw);
void kr_batchnorm_training(const double *x, double *y, const double *gamma, const double *beta,
                           double eps, int n, int c, int hw);
/// out is [4, c] = (sum dy, sum dy*xhat, batch mean, 1/sqrt(batch var + eps)), as kn_batchnorm_backward_reduce.
void kr_batchnorm_backward_reduce(const double *x, const double *dy, double eps, int n, int c, int hw, double *out);
void kr_batchnorm_backward_input(const double *x, const double *dy, const double *gamma, const double *reduced,
                                 int n, int c, int hw, double *dx);
void kr_batchnorm_frozen_backward(const double *dy, const double *gamma, const double *var, double eps,
                                  int n, int c, int hw, double *dx);

// ---- pooling and padding (geometry as kn_pool2d_desc) --------------------------------------
void kr_maxpool2d_forward(const kn_pool2d_desc *d, const double *x, double *y);
void kr_maxpool2d_backward(const kn_pool2d_desc *d, const double *x, const double *dy, double *dx);
void kr_avgpool2d_forward(const kn_pool2d_desc *d, const double *x, double *y, int count_include_pad);
void kr_avgpool2d_backward(const kn_pool2d_desc *d, const double *dy, double *dx, int count_include_pad);
void kr_zero_pad2d(const double *x, double *y, int n, int c, int h, int w, int pt, int pl, int pb, int pr);
void kr_zero_pad2d_backward(const double *dy, double *dx, int n, int c, int h, int w, int pt, int pl, int pb, int pr);

// ---- dense and losses ------------------------------------------------------------------------
void kr_linear_forward(const double *x, const double *w, const double *bias, double *y, int n, int in, int out);
void kr_linear_backward_data(const double *dy, const double *w, double *dx, int n, int in, int out);
void kr_linear_backward_weight(const double *x, const double *dy, double *dw, int n, int in, int out);
void kr_softmax(const double *x, double *y, int n, int k, int log_softmax);
void kr_softmax_backward(const double *y, const double *dy, double *dx, int n, int k, int log_softmax);
/// Mean cross-entropy; labels must already be checked to lie in [0, k).
double kr_cross_entropy(const double *logits, const int64_t *labels, int n, int k);
void kr_cross_entropy_backward(const double *logits, const int64_t *labels, double dloss, int n, int k, double *dlogits);

#ifdef __cplusplus
}
#endif
#endif
