// Kiln's compute kernels: NCHW float32, C11 + OpenBLAS, parallel through Kiln's thread pool (parallel.h).
// Every function is pure over the buffers it is given; no allocation escapes a call.
#ifndef KILN_KERNELS_H
#define KILN_KERNELS_H

#include <stdint.h>
#include "tensor_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---- threads -------------------------------------------------------------------------------
/// Sets the thread count of the kernels' parallel regions (OpenBLAS itself runs single-threaded
/// inside them). Results are bitwise deterministic for a fixed count. The default is the CPUs this
/// process may use, or KILN_THREADS.
void kn_set_threads(int n);
int kn_threads(void);

// ---- instruction sets ------------------------------------------------------------------------
/// The kernels exist once per instruction set, chosen at run time (dispatch.c).
enum { KN_ISA_PORTABLE = 0, KN_ISA_AVX2 = 1, KN_ISA_AVX512 = 2, KN_ISA_COUNT = 3 };
/// Whether this build and CPU can run `isa`.
int kn_isa_supported(int isa);
/// The path chosen when KILN_ISA does not say: the widest the CPU has, but AVX2 on AMD CPUs
/// (whose AVX-512 measured slower here; see dispatch.c).
int kn_isa_default(void);
/// The instruction set of the calling thread's kernel calls: the thread's override if set, else
/// the process's choice: KILN_ISA=portable|avx2|avx512 when set and supported, else the default.
int kn_isa(void);
/// Sets the process's choice (not while kernels run); 0, or -1 when `isa` is unsupported.
int kn_set_isa(int isa);
/// Overrides the choice for calls made on the calling thread (-1 clears); 0, or -1 when unsupported.
int kn_set_thread_isa(int isa);
/// "portable", "avx2", "avx512" (NULL for anything else).
const char *kn_isa_name(int isa);
/// Why KILN_ISA was not followed (unknown name, or a path this CPU lacks), or NULL.
const char *kn_isa_request_problem(void);

// ---- scratch ---------------------------------------------------------------------------
/// Slots of per-thread scratch memory kernels reuse across calls (contents undefined on entry).
enum { KN_SCRATCH_COLUMNS = 0, KN_SCRATCH_GATHER = 1, KN_SCRATCH_WEIGHTS = 2, KN_SCRATCH_ROTATED = 3, KN_SCRATCH_ACCUMULATOR = 4,
       KN_SCRATCH_TILES = 5, KN_SCRATCH_PACK_A = 6, KN_SCRATCH_PACK_B = 7, KN_SCRATCH_SLOTS = 8 };
/// The calling thread's buffer for `slot`, holding at least `floats` floats (64-byte aligned);
/// valid until the same thread asks for the same slot again. Never free it. NULL when the memory
/// cannot be had: the kernel then skips its work and the executor reports the failure.
float *kn_scratch(int slot, int64_t floats);
/// Records a refused allocation of `bytes` (for kernels that allocate outside kn_scratch).
void kn_allocation_failed(int64_t bytes);
/// The largest scratch request refused since the last call (0 if none), and clears it.
int64_t kn_take_allocation_failure(void);
/// Asks the OS to back the 2 MiB-aligned interior of [memory, memory + bytes) with huge pages
/// (Linux transparent huge pages in `madvise` mode); call before first touching it. No-op elsewhere.
void kn_advise_huge_pages(void *memory, int64_t bytes);

/// Multiply-add peak of the active instruction-set path on every Kiln thread, in GFLOP/s:
/// `iterations` rounds of 12 independent vector FMA chains per thread (kiln-bench's yardstick).
enum { KN_MAX_PEAK_THREADS = 64 };
double kn_fma_peak_gflops(int64_t iterations);

// ---- GEMM ----------------------------------------------------------------------------------
/// Row-major C = alpha·op(A)·op(B) + beta·C, parallel over blocks of C (deterministic; see gemm.c).
void kn_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
              const float *b, int ldb, float beta, float *c, int ldc);

// ---- convolution ---------------------------------------------------------------------------
typedef struct {
    int n, c, h, w;          // input
    int o, kh, kw;           // output channels, kernel
    int sh, sw;              // stride
    int pt, pl, pb, pr;      // padding: top, left, bottom, right (asymmetric allowed)
    int groups;
    int oh, ow;              // output spatial size (filled by kn_conv2d_geometry)
} kn_conv2d_desc;

/// Fills oh/ow from the other fields; returns 0 when the geometry is valid.
int kn_conv2d_geometry(kn_conv2d_desc *d);
/// y[n,o,oh,ow] = sum w[o, c/g, kh, kw] * x[...] + bias[o]. bias may be NULL.
/// Winograd F(4×4, 3×3) where it pays, a GEMM reading the input's stride phases for other
/// ungrouped convs, im2col + GEMM for grouped ones, a direct kernel for depthwise convs.
void kn_conv2d_forward(const kn_conv2d_desc *d, const float *x, const float *w, const float *bias, float *y);
enum { KN_ACT_NONE = 0, KN_ACT_RELU = 1, KN_ACT_RELU6 = 2 };

/// Work done on each image's output right after its GEMM, while it is in cache.
typedef struct {
    /// When set: [n][o][2] per-image (sum, sum of squares) of the output, nothing else is applied.
    double *stats;
    /// Otherwise: y += residual (may be NULL), then the activation.
    const float *residual;
    int activation;
} kn_conv_epilogue;

/// Σx and Σx² of n floats in double, over independent lanes (vectorised, fixed order).
void kn_moments(const float *x, int64_t n, double *sum, double *sum_squares);

/// Convolution with a fused epilogue (ep may be NULL).
void kn_conv2d_forward_fused(const kn_conv2d_desc *d, const float *x, const float *w, const float *bias, float *y,
                             const kn_conv_epilogue *ep);
/// Weights prepared once for many forward calls (a deployed model's constant filters): the floats
/// kn_conv2d_prepare_weights writes for d's convolution, 0 when its path keeps nothing (today:
/// Winograd's transformed filters, 4× the 3×3 weights). A buffer records the layout it holds
/// (instruction set, channels); kn_conv2d_forward_prepared ignores one that does not match.
int64_t kn_conv2d_prepared_floats(const kn_conv2d_desc *d);
void kn_conv2d_prepare_weights(const kn_conv2d_desc *d, const float *w, float *prepared);
/// kn_conv2d_forward_fused with weights from kn_conv2d_prepare_weights (may be NULL).
void kn_conv2d_forward_prepared(const kn_conv2d_desc *d, const float *x, const float *w, const float *prepared,
                                const float *bias, float *y, const kn_conv_epilogue *ep);
/// Folds inference BN into conv weights: w'[o] = w[o]·γ/σ, b' = β + (b − μ)·γ/σ. bias may be NULL.
void kn_fold_batchnorm(const float *w, const float *bias, const float *gamma, const float *beta, const float *mean,
                       const float *var, float eps, int o, int64_t per_output, float *w_out, float *b_out);
/// Training BN after a fused conv: reduces the per-image stats (image order), updates the running
/// statistics (momentum, unbiased variance), then y = act(γ·(z − μ)/σ + β [+ residual]). When
/// scale_shift is not NULL, the per-channel floats applied, y = act(z·scale + shift [+ residual]),
/// are written there as [2][c] (scale, then shift).
void kn_batchnorm_apply_training(const float *z, float *y, const double *stats, const float *gamma, const float *beta,
                                 float *running_mean, float *running_var, float momentum, float eps,
                                 const float *residual, int activation, int n, int c, int hw, float *scale_shift);
/// Training BN from per-channel moments [c][2] = (Σz, Σz²) over `count` elements (this batch's, or
/// summed over ranks for synchronised BN): running statistics updated, y = act(γ·ẑ + β [+ residual]);
/// scale_shift as for kn_batchnorm_apply_training.
void kn_batchnorm_apply_moments(const float *z, float *y, const double *moments, double count, const float *gamma,
                                const float *beta, float *running_mean, float *running_var, float momentum, float eps,
                                const float *residual, int activation, int n, int c, int hw, float *scale_shift);
/// y = act(z·scale + shift) with the [2][c] floats a training step's apply wrote: its y again, bit
/// for bit, without the moments.
void kn_batchnorm_apply_scale_shift(const float *z, float *y, const float *scale_shift, int activation, int n, int c, int hw);
/// Per-image stats [n][c][2] of the fused conv's epilogue summed per channel, in image order.
void kn_batchnorm_sum_image_stats(const double *stats, int n, int c, double *moments);
/// One pass over z, y and dy: out [4, c] = (Σg, Σg·ẑ, μ, 1/σ) with g = dy masked by the activation,
/// taken from y, or when scale_shift is not NULL (a step without residual) from z·scale + shift, the
/// value the forward activated (y is then not read: one stream fewer); both may be NULL for no
/// activation.
void kn_fused_bn_backward_reduce(const float *z, const float *y, const float *scale_shift, const float *dy, int activation,
                                 float eps, int n, int c, int hw, float *out);
/// dz = γ/σ/M · (M·g − Σg − ẑ·Σg·ẑ), g masked on the fly (as for the reduce); M = `count`, the
/// elements per channel of the whole batch (n·hw, or the sum over ranks with synchronised BN).
void kn_fused_bn_backward_input(const float *z, const float *y, const float *scale_shift, const float *dy, int activation,
                                const float *gamma, const float *reduced, double count, int n, int c, int hw, float *dz);
/// Synchronised BN, backward in two halves: per channel `totals` [c][4] = (Σz, Σz², Σg, Σg·z) of this
/// rank; then, from moments [c][2] (Σz, Σz²) summed over all ranks and this rank's totals, `out` as
/// kn_fused_bn_backward_reduce's (local Σg and Σg·ẑ, global μ and 1/σ).
void kn_fused_bn_backward_totals(const float *z, const float *y, const float *scale_shift, const float *dy, int activation,
                                 int n, int c, int hw, double *totals);
void kn_fused_bn_backward_finish(const double *moments, const double *totals, double count, float eps, int c, float *out);

/// Whether the Winograd path applies (3×3, stride 1, pad 1, ungrouped, ≥ 64 channels, maps ≥ 4×4).
int kn_conv2d_winograd_eligible(const kn_conv2d_desc *d);
/// Winograd F(4×4, 3×3) convolution; `epilogue(d, context, image, y_image)` runs per image after
/// its output is written. `prepared`: the transformed filters (kn_conv2d_prepare_weights), or NULL
/// to transform w in this call.
void kn_conv2d_winograd(const kn_conv2d_desc *d, const float *x, const float *w, const float *prepared, const float *bias,
                        float *y, void (*epilogue)(const kn_conv2d_desc *, const void *, int, float *), const void *context);
/// dw of a Winograd-eligible convolution by the transposed algorithm (per-thread accumulators
/// summed in a fixed order).
void kn_conv2d_winograd_backward_filter(const kn_conv2d_desc *d, const float *x, const float *dy, float *dw);

/// Depthwise convolution (groups == c == o) and its gradients: direct kernels over zero-padded planes.
void kn_conv2d_depthwise_forward(const kn_conv2d_desc *d, const float *x, const float *w, const float *bias, float *y);
void kn_conv2d_depthwise_backward_data(const kn_conv2d_desc *d, const float *dy, const float *w, float *dx);
void kn_conv2d_depthwise_backward_filter(const kn_conv2d_desc *d, const float *x, const float *dy, float *dw);

/// Naive seven-loop convolution, accumulated in double. Kept as the reference for tests.
void kn_conv2d_reference(const kn_conv2d_desc *d, const float *x, const float *w, const float *bias, float *y);

// ---- batch normalisation -------------------------------------------------------------------
/// Inference: y = (x - mean) / sqrt(var + eps) * gamma + beta, per channel.
void kn_batchnorm_inference(const float *x, float *y, const float *gamma, const float *beta,
                            const float *mean, const float *var, float eps, int n, int c, int hw);
/// Training: normalises with batch statistics (biased variance) and updates the running
/// estimates with `momentum` (PyTorch: new = (1-m)*old + m*batch, unbiased batch variance).
void kn_batchnorm_training(const float *x, float *y, const float *gamma, const float *beta,
                           float *running_mean, float *running_var, float momentum, float eps,
                           int n, int c, int hw);

// ---- elementwise ---------------------------------------------------------------------------
void kn_relu(const float *x, float *y, int64_t count);
void kn_relu6(const float *x, float *y, int64_t count);
void kn_add(const float *a, const float *b, float *y, int64_t count);
/// How many of `count` values are NaN or ±infinity; `*first` gets the index of the first (-1 if none).
int64_t kn_count_nonfinite(const float *x, int64_t count, int64_t *first);
void kn_copy(const float *x, float *y, int64_t count);
/// Inverted dropout with a counter-based generator: element i is dropped iff
/// mix64(seed ^ mix64(i)) < p·2⁶⁴ (SplitMix64's finaliser), survivors scaled by 1/(1-p).
void kn_dropout(const float *x, float *y, int64_t count, float p, uint64_t seed);

// ---- pooling and padding -------------------------------------------------------------------
typedef struct {
    int n, c, h, w;
    int kh, kw, sh, sw, ph, pw;
    int oh, ow;
} kn_pool2d_desc;

int kn_pool2d_geometry(kn_pool2d_desc *d);
/// Max pool with implicit -inf padding.
void kn_maxpool2d_forward(const kn_pool2d_desc *d, const float *x, float *y);
/// The first maximum of output (oy, ox)'s window in one plane; *where receives its flat index (-1 if empty).
float kn_window_max(const kn_pool2d_desc *d, const float *plane, int oy, int ox, int32_t *where);
/// Average pool; count_include_pad as PyTorch's default (true) or false.
void kn_avgpool2d_forward(const kn_pool2d_desc *d, const float *x, float *y, int count_include_pad);
void kn_global_avgpool_forward(const float *x, float *y, int n, int c, int hw);
void kn_zero_pad2d(const float *x, float *y, int n, int c, int h, int w, int pt, int pl, int pb, int pr);

// ---- dense and losses ----------------------------------------------------------------------
/// y[n, out] = x[n, in] * w[out, in]^T + bias[out]; bias may be NULL.
void kn_linear_forward(const float *x, const float *w, const float *bias, float *y, int n, int in, int out);
void kn_softmax(const float *x, float *y, int n, int k);
void kn_log_softmax(const float *x, float *y, int n, int k);
/// Mean cross-entropy of logits against integer labels. Returns -1 in *bad_label_index when all
/// labels are in [0, k), else the first offending index (and the loss is NaN).
float kn_cross_entropy(const float *logits, const int64_t *labels, int n, int k, int *bad_label_index);

// ---- backward ------------------------------------------------------------------------------
void kn_conv2d_backward_data(const kn_conv2d_desc *d, const float *dy, const float *w, float *dx);
/// dw = sum over images of dy x im2col(x)^T; per-thread accumulators summed in a fixed order.
void kn_conv2d_backward_filter(const kn_conv2d_desc *d, const float *x, const float *dy, float *dw);
void kn_conv2d_backward_bias(const float *dy, float *db, int n, int o, int ohw);
/// Recomputes the batch statistics of x and reduces dy: out is [4, c] =
/// (sum dy = d beta, sum dy*xhat = d gamma, batch mean, 1/sqrt(batch var + eps)).
void kn_batchnorm_backward_reduce(const float *x, const float *dy, float eps, int n, int c, int hw, float *out);
/// dx = gamma*invstd/M * (M*dy - sum dy - xhat * sum dy*xhat), with `reduced` from the reduce kernel.
void kn_batchnorm_backward_input(const float *x, const float *dy, const float *gamma, const float *reduced,
                                 double count, int n, int c, int hw, float *dx);
/// Σx and Σx² per channel of an [n, c, hw] tensor: moments [c][2], images in order.
void kn_channel_moments(const float *x, int n, int c, int hw, double *moments);
/// Backward of BN on running statistics: a per-channel scale.
void kn_batchnorm_frozen_backward(const float *dy, const float *gamma, const float *var, float eps,
                                  int n, int c, int hw, float *dx);
void kn_relu_backward(const float *y, const float *dy, float *dx, int64_t count);
void kn_relu6_backward(const float *y, const float *dy, float *dx, int64_t count);
void kn_maxpool2d_backward(const kn_pool2d_desc *d, const float *x, const float *dy, float *dx);
void kn_avgpool2d_backward(const kn_pool2d_desc *d, const float *dy, float *dx, int count_include_pad);
void kn_global_avgpool_backward(const float *dy, float *dx, int n, int c, int hw);
void kn_zero_pad2d_backward(const float *dy, float *dx, int n, int c, int h, int w, int pt, int pl, int pb, int pr);
void kn_linear_backward_data(const float *dy, const float *w, float *dx, int n, int in, int out);
void kn_linear_backward_weight(const float *x, const float *dy, float *dw, int n, int in, int out);
/// From the output y: softmax dx = y·(dy − Σdy·y); log-softmax dx = dy − exp(y)·Σdy.
void kn_softmax_backward(const float *y, const float *dy, float *dx, int n, int k, int log_softmax);
void kn_cross_entropy_backward(const float *logits, const int64_t *labels, float dloss, int n, int k, float *dlogits);

// ---- optimisers (in place) -----------------------------------------------------------------
/// torch.optim.SGD for one tensor; `first` is nonzero on the buffer's first step (buf = d_p).
void kn_sgd_update(float *param, const float *grad, float *momentum_buf, int64_t count, float lr,
                   float momentum, float dampening, float weight_decay, int nesterov, int first);
/// torch.optim.Adam / AdamW (decoupled = 1) for one tensor at step t (1-based).
void kn_adam_update(float *param, const float *grad, float *exp_avg, float *exp_avg_sq, int64_t count,
                    float lr, float beta1, float beta2, float eps, float weight_decay, int decoupled, int64_t t);

// ---- initialisation ------------------------------------------------------------------------
void kn_fill_constant(float *x, int64_t count, float value);
void kn_fill_uniform(float *x, int64_t count, float low, float high, uint64_t seed);
void kn_fill_normal(float *x, int64_t count, float mean, float std, uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif
