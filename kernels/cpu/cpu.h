/* Helpers shared by the CPU kernels (private to kernels/cpu). */
#ifndef DPO_KERNELS_CPU_H
#define DPO_KERNELS_CPU_H

#include <cblas.h>
#include <math.h>
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/kernels.h"

/* The CPU implementations of the ops of kernels.h: kn_<op> in dispatch.c
 * calls kn_cpu_<op> when the context's backend is the CPU. */
void kn_cpu_linear_forward(kn_ctx *ctx, float *out, const float *inp, const float *weight,
                           const float *bias, int N, int IC, int OC);
void kn_cpu_linear_backward(kn_ctx *ctx, float *dinp, float *dweight, float *dbias,
                            const float *dout, const float *inp, const float *weight, int N, int IC,
                            int OC);
void kn_cpu_conv2d_forward(kn_ctx *ctx, float *out, const float *inp, const float *weight,
                           const float *bias, int B, int C, int H, int W, int OC, int K, int stride,
                           int pad);
void kn_cpu_conv2d_backward(kn_ctx *ctx, float *dinp, float *dweight, float *dbias,
                            const float *dout, const float *inp, const float *weight, int B, int C,
                            int H, int W, int OC, int K, int stride, int pad);
void kn_cpu_group_norm_forward(kn_ctx *ctx, float *out, float *mean, float *rstd, const float *inp,
                               const float *gamma, const float *beta, int B, int C, int HW, int G,
                               float eps);
void kn_cpu_group_norm_backward(kn_ctx *ctx, float *dinp, float *dgamma, float *dbeta,
                                const float *dout, const float *inp, const float *mean,
                                const float *rstd, const float *gamma, int B, int C, int HW, int G);
void kn_cpu_layer_norm_forward(kn_ctx *ctx, float *out, float *mean, float *rstd, const float *inp,
                               const float *gamma, const float *beta, int N, int C, float eps);
void kn_cpu_layer_norm_backward(kn_ctx *ctx, float *dinp, float *dgamma, float *dbeta,
                                const float *dout, const float *inp, const float *mean,
                                const float *rstd, const float *gamma, int N, int C);
void kn_cpu_activation_forward(kn_ctx *ctx, kn_activation act, float *out, const float *inp,
                               size_t n);
void kn_cpu_activation_backward(kn_ctx *ctx, kn_activation act, float *dinp, const float *dout,
                                const float *inp, size_t n);
void kn_cpu_geglu_forward(kn_ctx *ctx, float *out, const float *inp, int N, int D);
void kn_cpu_geglu_backward(kn_ctx *ctx, float *dinp, const float *dout, const float *inp, int N,
                           int D);
void kn_cpu_softmax_forward(kn_ctx *ctx, float *out, const float *inp, int N, int C);
void kn_cpu_softmax_backward(kn_ctx *ctx, float *dinp, const float *dout, const float *out, int N,
                             int C);
void kn_cpu_attention_forward(kn_ctx *ctx, float *out, float *lse, const float *q, const float *k,
                              const float *v, int B, int H, int Nq, int Nk, int D, float scale,
                              int causal);
void kn_cpu_attention_backward(kn_ctx *ctx, float *dq, float *dk, float *dv, const float *dout,
                               const float *q, const float *k, const float *v, const float *out,
                               const float *lse, int B, int H, int Nq, int Nk, int D, float scale,
                               int causal);
void kn_cpu_upsample2x_forward(kn_ctx *ctx, float *out, const float *inp, int B, int C, int H,
                               int W);
void kn_cpu_upsample2x_backward(kn_ctx *ctx, float *dinp, const float *dout, int B, int C, int H,
                                int W);
void kn_cpu_add_forward(kn_ctx *ctx, float *out, const float *a, const float *b, size_t n);
void kn_cpu_add_backward(kn_ctx *ctx, float *da, float *db, const float *dout, size_t n);
void kn_cpu_concat_forward(kn_ctx *ctx, float *out, const float *a, const float *b, int outer,
                           int Ca, int Cb, int inner);
void kn_cpu_concat_backward(kn_ctx *ctx, float *da, float *db, const float *dout, int outer, int Ca,
                            int Cb, int inner);
void kn_cpu_split_forward(kn_ctx *ctx, float *a, float *b, const float *inp, int outer, int Ca,
                          int Cb, int inner);
void kn_cpu_split_backward(kn_ctx *ctx, float *dinp, const float *da, const float *db, int outer,
                           int Ca, int Cb, int inner);
void kn_cpu_transpose_forward(kn_ctx *ctx, float *out, const float *inp, int B, int C, int A);
void kn_cpu_transpose_backward(kn_ctx *ctx, float *dinp, const float *dout, int B, int C, int A);
void kn_cpu_add_channel_forward(kn_ctx *ctx, float *x, const float *v, int B, int C, int HW);
void kn_cpu_add_channel_backward(kn_ctx *ctx, float *dv, const float *dx, int B, int C, int HW);
void kn_cpu_axpy(kn_ctx *ctx, float *dst, float alpha, const float *src, size_t n);
void kn_cpu_affine_forward(kn_ctx *ctx, float *out, const float *inp, float a, float b, size_t n);
void kn_cpu_timestep_embedding_forward(kn_ctx *ctx, float *out, const float *timesteps, int B,
                                       int dim, int flip_sin_to_cos, float downscale_freq_shift,
                                       float scale, float max_period);
void kn_cpu_timestep_embedding_backward(kn_ctx *ctx, float *dtimesteps, const float *dout,
                                        const float *timesteps, int B, int dim, int flip_sin_to_cos,
                                        float downscale_freq_shift, float scale, float max_period);
void kn_cpu_embedding_forward(kn_ctx *ctx, float *out, const int32_t *ids, const float *wte,
                              const float *wpe, int B, int T, int C);
void kn_cpu_embedding_backward(kn_ctx *ctx, float *dwte, float *dwpe, const float *dout,
                               const int32_t *ids, int B, int T, int C);
void kn_cpu_mse_per_sample_forward(kn_ctx *ctx, float *loss, const float *pred, const float *target,
                                   int B, size_t n);
void kn_cpu_mse_per_sample_backward(kn_ctx *ctx, float *dpred, float *dtarget, const float *dloss,
                                    const float *pred, const float *target, int B, size_t n);
void kn_cpu_sum_forward(kn_ctx *ctx, float *out, const float *inp, size_t n);
void kn_cpu_sum_backward(kn_ctx *ctx, float *dinp, const float *dout, size_t n);
void kn_cpu_mean_forward(kn_ctx *ctx, float *out, const float *inp, size_t n);
void kn_cpu_mean_backward(kn_ctx *ctx, float *dinp, const float *dout, size_t n);
void kn_cpu_scale_forward(kn_ctx *ctx, float *out, const float *inp, float scale, size_t n);
void kn_cpu_scale_backward(kn_ctx *ctx, float *dinp, const float *dout, float scale, size_t n);
void kn_cpu_logsigmoid_forward(kn_ctx *ctx, float *out, const float *inp, size_t n);
void kn_cpu_logsigmoid_backward(kn_ctx *ctx, float *dinp, const float *dout, const float *inp,
                                size_t n);

void kn_cpu_dpo_loss(kn_ctx *ctx, float *loss, float *grad_model_w, float *grad_model_l,
                     float *stats, const float *model_w, const float *model_l, const float *ref_w,
                     const float *ref_l, const float *label, int n, double beta);
void kn_cpu_sum_squares(kn_ctx *ctx, float *out, const float *inp, size_t n);
/* The fixed-order double reduction behind the losses and sum_squares: the
 * sum over n of (a - b)^2, or with b NULL of a (square: of a^2), over
 * chunks of KN_REDUCE_CHUNK added in order. */
double kn_cpu_chunked_sum(kn_ctx *ctx, const float *a, const float *b, size_t n, int square);
void kn_cpu_clip_coefficient(kn_ctx *ctx, float *out, const float *sum_squares, int n,
                             double max_norm);
void kn_cpu_scale_by(kn_ctx *ctx, float *x, const float *factor, size_t n);
void kn_cpu_adamw_update(kn_ctx *ctx, float *param, const float *grad, float *exp_avg,
                         float *exp_avg_sq, size_t n, int64_t step, double lr, double beta1,
                         double beta2, double eps, double weight_decay);
void kn_cpu_adafactor_update(kn_ctx *ctx, float *param, const float *grad, float *exp_avg,
                             float *exp_avg_sq, float *exp_avg_sq_row, float *exp_avg_sq_col,
                             int64_t outer, int64_t rows, int64_t cols, int64_t step, double lr,
                             double eps1, double clip_threshold, double decay_rate, double beta1,
                             double weight_decay);
/* The multi-tensor ops (kernels.h, kn_multi_*) over the arrays of a
 * kn_param_table: loops over the per-tensor ops above, so the same bits by
 * construction. param_bf16 may be NULL (and any entry of it). */
void kn_cpu_multi_sum_squares(kn_ctx *ctx, float *sum_squares, int count, const size_t *numel,
                              float *const *grad);
void kn_cpu_multi_scale_by(kn_ctx *ctx, int count, const size_t *numel, float *const *grad,
                           const float *factor);
void kn_cpu_multi_adamw_update(kn_ctx *ctx, int count, const size_t *numel, float *const *param,
                               kn_bf16 *const *param_bf16, float *const *grad,
                               float *const *exp_avg, float *const *exp_avg_sq, int64_t step,
                               double lr, double beta1, double beta2, double eps,
                               double weight_decay);
void kn_cpu_to_bf16(kn_ctx *ctx, kn_bf16 *out, const float *inp, size_t n);
void kn_cpu_from_bf16(kn_ctx *ctx, float *out, const kn_bf16 *inp, size_t n);
/* The bf16 ops (kernels/cpu/bf16.c): the float32 ops on widened copies. */
void kn_cpu_linear_forward_bf16(kn_ctx *ctx, kn_bf16 *out, const kn_bf16 *inp,
                                const kn_bf16 *weight, const float *bias, int N, int IC, int OC);
void kn_cpu_linear_backward_bf16(kn_ctx *ctx, kn_bf16 *dinp, float *dweight, float *dbias,
                                 const kn_bf16 *dout, const kn_bf16 *inp, const kn_bf16 *weight,
                                 int N, int IC, int OC);
void kn_cpu_conv2d_forward_bf16(kn_ctx *ctx, kn_bf16 *out, const kn_bf16 *inp,
                                const kn_bf16 *weight, const float *bias, int B, int C, int H,
                                int W, int OC, int K, int stride, int pad);
void kn_cpu_conv2d_backward_bf16(kn_ctx *ctx, kn_bf16 *dinp, float *dweight, float *dbias,
                                 const kn_bf16 *dout, const kn_bf16 *inp, const kn_bf16 *weight,
                                 int B, int C, int H, int W, int OC, int K, int stride, int pad);
void kn_cpu_group_norm_forward_bf16(kn_ctx *ctx, kn_bf16 *out, float *mean, float *rstd,
                                    const kn_bf16 *inp, const float *gamma, const float *beta,
                                    int B, int C, int HW, int G, float eps, int fuse_silu);
void kn_cpu_group_norm_backward_bf16(kn_ctx *ctx, kn_bf16 *dinp, float *dgamma, float *dbeta,
                                     const kn_bf16 *dout, const kn_bf16 *inp, const float *mean,
                                     const float *rstd, const float *gamma, const float *beta,
                                     int B, int C, int HW, int G, int fuse_silu);
void kn_cpu_layer_norm_forward_bf16(kn_ctx *ctx, kn_bf16 *out, float *mean, float *rstd,
                                    const kn_bf16 *inp, const float *gamma, const float *beta,
                                    int N, int C, float eps);
void kn_cpu_layer_norm_backward_bf16(kn_ctx *ctx, kn_bf16 *dinp, float *dgamma, float *dbeta,
                                     const kn_bf16 *dout, const kn_bf16 *inp, const float *mean,
                                     const float *rstd, const float *gamma, int N, int C);
void kn_cpu_activation_forward_bf16(kn_ctx *ctx, kn_activation act, kn_bf16 *out,
                                    const kn_bf16 *inp, size_t n);
void kn_cpu_activation_backward_bf16(kn_ctx *ctx, kn_activation act, kn_bf16 *dinp,
                                     const kn_bf16 *dout, const kn_bf16 *inp, size_t n);
void kn_cpu_geglu_forward_bf16(kn_ctx *ctx, kn_bf16 *out, const kn_bf16 *inp, int N, int D);
void kn_cpu_geglu_backward_bf16(kn_ctx *ctx, kn_bf16 *dinp, const kn_bf16 *dout, const kn_bf16 *inp,
                                int N, int D);
void kn_cpu_attention_forward_bf16(kn_ctx *ctx, kn_bf16 *out, float *lse, const kn_bf16 *q,
                                   const kn_bf16 *k, const kn_bf16 *v, int B, int H, int Nq, int Nk,
                                   int D, float scale, int causal);
void kn_cpu_attention_backward_bf16(kn_ctx *ctx, kn_bf16 *dq, kn_bf16 *dk, kn_bf16 *dv,
                                    const kn_bf16 *dout, const kn_bf16 *q, const kn_bf16 *k,
                                    const kn_bf16 *v, const kn_bf16 *out, const float *lse, int B,
                                    int H, int Nq, int Nk, int D, float scale, int causal);
void kn_cpu_upsample2x_forward_bf16(kn_ctx *ctx, kn_bf16 *out, const kn_bf16 *inp, int B, int C,
                                    int H, int W);
void kn_cpu_upsample2x_backward_bf16(kn_ctx *ctx, kn_bf16 *dinp, const kn_bf16 *dout, int B, int C,
                                     int H, int W);
void kn_cpu_add_forward_bf16(kn_ctx *ctx, kn_bf16 *out, const kn_bf16 *a, const kn_bf16 *b,
                             size_t n);
void kn_cpu_add_backward_bf16(kn_ctx *ctx, kn_bf16 *da, kn_bf16 *db, const kn_bf16 *dout, size_t n);
void kn_cpu_concat_forward_bf16(kn_ctx *ctx, kn_bf16 *out, const kn_bf16 *a, const kn_bf16 *b,
                                int outer, int Ca, int Cb, int inner);
void kn_cpu_concat_backward_bf16(kn_ctx *ctx, kn_bf16 *da, kn_bf16 *db, const kn_bf16 *dout,
                                 int outer, int Ca, int Cb, int inner);
void kn_cpu_transpose_forward_bf16(kn_ctx *ctx, kn_bf16 *out, const kn_bf16 *inp, int B, int C,
                                   int A);
void kn_cpu_transpose_backward_bf16(kn_ctx *ctx, kn_bf16 *dinp, const kn_bf16 *dout, int B, int C,
                                    int A);
void kn_cpu_add_channel_forward_bf16(kn_ctx *ctx, kn_bf16 *x, const kn_bf16 *v, int B, int C,
                                     int HW);
void kn_cpu_add_channel_backward_bf16(kn_ctx *ctx, kn_bf16 *dv, const kn_bf16 *dx, int B, int C,
                                      int HW);

/* Threads for an OpenMP region: the context's count, never 0. */
static inline int kn_threads(const kn_ctx *ctx) { return ctx->n_threads > 0 ? ctx->n_threads : 1; }

/* Threads for a loop over `work` values: one below about 32k, where waking
 * a team costs more than it saves (the partition never changes a result:
 * each output is computed by one thread in a fixed order either way). */
static inline int kn_team(const kn_ctx *ctx, size_t work) { return work < 32768 ? 1 : kn_threads(ctx); }

/* Row-major sgemm on the calling thread: C[M, N] = alpha op(A) op(B) + beta C.
 * OpenBLAS runs single-threaded (kn_ctx_init sets it): all threading is
 * OpenMP's, because two thread pools spinning on the same cores slow each
 * other down several-fold. */
static inline void kn_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha,
                            const float *A, int lda, const float *B, int ldb, float beta, float *C,
                            int ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* The same product with the rows (or columns, whichever are more) of C
 * split over the context's threads, each running kn_sgemm on its slab. No
 * thread sums over K for another, so the result is fixed for a thread
 * count. Defined in context.c. */
void kn_gemm(kn_ctx *ctx, int trans_a, int trans_b, int M, int N, int K, float alpha,
             const float *A,
             int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* 3x3, stride-1 convolution by Winograd F(2x2, 3x3) (winograd.c). The
 * scratch holds kn_winograd_scratch_floats(C, OC, Ho, Wo) floats: first
 * kn_winograd_weights transforms weight[OC][C][3][3] into it (with flip
 * set, the kernel used is weight[C][OC] transposed and rotated by 180
 * degrees, which makes the call a convolution's data gradient), then each
 * image is out[OC, Ho, Wo] (+)= conv(img[C, H, W]) + bias. Images wider
 * than kn_winograd_fits allows take the im2col route. */
size_t kn_winograd_scratch_floats(int C, int OC, int Ho, int Wo);
int kn_winograd_fits(int W, int pad);
void kn_winograd_weights(kn_ctx *ctx, float *scratch, const float *weight, int C, int OC, int flip);
void kn_winograd_conv3x3(kn_ctx *ctx, float *out, const float *img, const float *bias, int C, int H,
                         int W, int OC, int pad, int accumulate, float *scratch);

/* exp(x) for x <= 0-ish arguments of softmax, written so that the compiler
 * vectorises a loop over it (glibc's expf does not vectorise without
 * -ffast-math): Cody-Waite reduction x = n ln2 + r and a degree-6
 * polynomial for e^r; relative error below 2e-7 over [-87, 88]. */
static inline float kn_expf(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  /* n = round(x / ln 2) by the 1.5 * 2^23 trick: floorf would keep the
   * loop scalar under strict C11. */
  float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t bits = ((int32_t)n + 127) << 23;
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

/* Reductions over a row in 16 independent lanes, combined in a fixed order
 * at the end: the compiler vectorises them (a single running float would be
 * a serial chain it may not reorder), and the result depends only on n. */
#define KN_LANES 16

/* The row max is the one reduction that gcc does not vectorise from plain
 * C (it keeps 16 scalar max chains), so it is written with intrinsics where
 * the compiler targets AVX-512 or AVX2. A max is exact, so every version
 * returns the same value. */
#if defined(__AVX512F__)
static inline float kn_row_max(const float *x, int n) {
  __m512 acc = _mm512_set1_ps(-INFINITY);
  int j = 0;
  for (; j + 16 <= n; j += 16) acc = _mm512_max_ps(acc, _mm512_loadu_ps(x + j));
  float m = _mm512_reduce_max_ps(acc);
  for (; j < n; j++) m = x[j] > m ? x[j] : m;
  return m;
}
#elif defined(__AVX2__)
static inline float kn_row_max(const float *x, int n) {
  __m256 acc = _mm256_set1_ps(-INFINITY);
  int j = 0;
  for (; j + 8 <= n; j += 8) acc = _mm256_max_ps(acc, _mm256_loadu_ps(x + j));
  float lanes[8];
  _mm256_storeu_ps(lanes, acc);
  float m = -INFINITY;
  for (int l = 0; l < 8; l++) m = lanes[l] > m ? lanes[l] : m;
  for (; j < n; j++) m = x[j] > m ? x[j] : m;
  return m;
}
#else
static inline float kn_row_max(const float *x, int n) {
  float m = -INFINITY;
  for (int j = 0; j < n; j++) m = x[j] > m ? x[j] : m;
  return m;
}
#endif

/* Lanes are combined pairwise (8 + 8, 4 + 4, ...): a fixed order, and a
 * dependency chain of 4 adds instead of 16. */
static inline float kn_lanes_total(float lanes[KN_LANES]) {
  for (int width = KN_LANES / 2; width >= 1; width /= 2)
    for (int l = 0; l < width; l++) lanes[l] += lanes[l + width];
  return lanes[0];
}

/* The lanes live in a GCC/Clang vector value, which the compiler keeps in a
 * register (a float[16] accumulator ends up in memory, and every iteration
 * then waits on a store-to-load round trip). Lane l sums elements l, l+16,
 * l+32, ... whatever the instruction set, so the result is the same on
 * every x86 build. */
typedef float kn_f16 __attribute__((vector_size(KN_LANES * sizeof(float))));

static inline kn_f16 kn_load16(const float *p) {
  kn_f16 v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline float kn_f16_total(kn_f16 v) {
  float lanes[KN_LANES];
  memcpy(lanes, &v, sizeof lanes);
  return kn_lanes_total(lanes);
}

static inline float kn_row_sum(const float *x, int n) {
  kn_f16 acc = {0};
  int j = 0;
  for (; j + KN_LANES <= n; j += KN_LANES) acc += kn_load16(x + j);
  float s = kn_f16_total(acc);
  for (; j < n; j++) s += x[j];
  return s;
}

/* sum (x - m)^2 and sum a (x - m), in lanes like kn_row_sum. */
static inline float kn_row_sq_centered(const float *x, float m, int n) {
  kn_f16 acc = {0};
  int j = 0;
  for (; j + KN_LANES <= n; j += KN_LANES) {
    kn_f16 d = kn_load16(x + j) - m;
    acc += d * d;
  }
  float s = kn_f16_total(acc);
  for (; j < n; j++) s += (x[j] - m) * (x[j] - m);
  return s;
}

static inline float kn_row_dot_centered(const float *a, const float *x, float m, int n) {
  kn_f16 acc = {0};
  int j = 0;
  for (; j + KN_LANES <= n; j += KN_LANES) acc += kn_load16(a + j) * (kn_load16(x + j) - m);
  float s = kn_f16_total(acc);
  for (; j < n; j++) s += a[j] * (x[j] - m);
  return s;
}

/* x[j] = exp(x[j] - shift) in place; returns the sum of the results. */
static inline float kn_row_exp_sum(float *x, int n, float shift) {
  for (int j = 0; j < n; j++) x[j] = kn_expf(x[j] - shift);
  return kn_row_sum(x, n);
}

/* Fixed-size chunks for reductions that must not depend on the thread count. */
#define KN_REDUCE_CHUNK 4096

#endif
