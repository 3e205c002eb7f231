/* Fused AdamW on float32 master weights, writing the bf16 copy the next
 * forward reads, in one pass over memory. The float operations are those of
 * trainer/optim.c (torch.optim.AdamW) in the same order; the scalars are
 * computed on the host in double, as there. */
#include <math.h>

#include "kernels/cuda/cuda_internal.cuh"

__global__ void adamw_kernel(float *param, __nv_bfloat16 *param_bf16, const float *grad, float *exp_avg,
                             float *exp_avg_sq, size_t n, int decay_on, float decay, float w, float b2,
                             float one_minus_b2, float step_size, float bc2_sqrt, float eps) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    float g = grad[i];
    float p = param[i];
    if (decay_on) p *= decay;
    /* torch.lerp: start + w (end - start) for w < 0.5, else end - (end - start)(1 - w). */
    float m = exp_avg[i];
    m = w < 0.5f ? m + w * (g - m) : g - (g - m) * (1.0f - w);
    exp_avg[i] = m;
    float v = exp_avg_sq[i] * b2 + one_minus_b2 * (g * g);
    exp_avg_sq[i] = v;
    float denom = sqrtf(v) / bc2_sqrt + eps;
    p += -step_size * (m / denom);
    param[i] = p;
    if (param_bf16) param_bf16[i] = __float2bfloat16_rn(p);
  }
}

void kn_cuda_adamw_update(kn_cuda_ctx *ctx, float *param, kn_bf16 *param_bf16, const float *grad, float *exp_avg,
                          float *exp_avg_sq, size_t n, int64_t step, double lr, double beta1, double beta2,
                          double eps, double weight_decay) {
  if (n == 0) return;
  float decay = (float)(1.0 - lr * weight_decay);
  float w = (float)(1.0 - beta1);
  double bias_correction1 = 1.0 - pow(beta1, (double)step);
  double bias_correction2 = 1.0 - pow(beta2, (double)step);
  float step_size = (float)(lr / bias_correction1);
  float bc2_sqrt = (float)sqrt(bias_correction2);
  adamw_kernel<<<kn_blocks(n, 256), 256, 0, kn_stream(ctx)>>>(
      param, (__nv_bfloat16 *)param_bf16, grad, exp_avg, exp_avg_sq, n, weight_decay != 0, decay, w, (float)beta2,
      (float)(1.0 - beta2), step_size, bc2_sqrt, (float)eps);
  kn_cuda_launched(ctx, "adamw");
}

/* ------------------------------------------------------------ Adafactor */

/* As trainer/optim.c's Adafactor (transformers.Adafactor with an external
 * lr): the unscaled update u = g / sqrt(v) (v factored into row and column
 * means of g^2 + eps1 for matrices), divided by max(1, RMS(u) / clip), times
 * lr, through the optional first moment, then weight decay and the step.
 * Sums are double over fixed partitions, as the CPU sums in double. */

#define ADAFACTOR_PARTIALS 256 /* fixed grid of the RMS reduction */

/* row[o, r] = row * keep + mean over cols of (g^2 + eps1) * add; one block per (o, r). */
__global__ void adafactor_rows_kernel(float *row, const float *grad, int64_t cols, float eps1, float keep, float add) {
  __shared__ double shared[32];
  size_t orow = blockIdx.x;
  const float *g = grad + orow * cols;
  double s = 0.0;
  for (int64_t k = threadIdx.x; k < cols; k += blockDim.x) s += (double)(g[k] * g[k] + eps1);
  s = kn_block_sum_double(s, shared);
  if (threadIdx.x == 0) row[orow] = row[orow] * keep + (float)(s / cols) * add;
}

/* col[o, k] likewise over rows; one thread per (o, k), rows in order. */
__global__ void adafactor_cols_kernel(float *col, const float *grad, int64_t outer, int64_t rows, int64_t cols,
                                      float eps1, float keep, float add) {
  int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= outer * cols) return;
  int64_t o = idx / cols, k = idx % cols;
  const float *g = grad + o * rows * cols + k;
  double s = 0.0;
  for (int64_t r = 0; r < rows; r++) s += (double)(g[r * cols] * g[r * cols] + eps1);
  col[idx] = col[idx] * keep + (float)(s / rows) * add;
}

/* row_mean[o] = mean of row[o, :]; one block per o. */
__global__ void adafactor_row_mean_kernel(float *row_mean, const float *row, int64_t rows) {
  __shared__ double shared[32];
  const float *x = row + blockIdx.x * rows;
  double s = 0.0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) s += x[r];
  s = kn_block_sum_double(s, shared);
  if (threadIdx.x == 0) row_mean[blockIdx.x] = (float)(s / rows);
}

__global__ void adafactor_factored_direction_kernel(float *u, const float *grad, const float *row, const float *col,
                                                    const float *row_mean, int64_t rows, int64_t cols, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    int64_t o = i / (rows * cols), r = (i / cols) % rows, k = i % cols;
    float r_factor = 1.0f / sqrtf(row[o * rows + r] / row_mean[o]);
    float c_factor = 1.0f / sqrtf(col[o * cols + k]);
    u[i] = (r_factor * c_factor) * grad[i];
  }
}

__global__ void adafactor_full_direction_kernel(float *u, float *exp_avg_sq, const float *grad, size_t n, float eps1,
                                                float keep, float add) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    float g = grad[i];
    float v = exp_avg_sq[i] * keep + (g * g + eps1) * add;
    exp_avg_sq[i] = v;
    u[i] = g / sqrtf(v);
  }
}

/* partial[b] = sum of u^2 over block b's fixed share (grid of ADAFACTOR_PARTIALS). */
__global__ void adafactor_square_partials_kernel(double *partial, const float *u, size_t n) {
  __shared__ double shared[32];
  double s = 0.0;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    s += (double)u[i] * u[i];
  s = kn_block_sum_double(s, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

/* divisor = max(1, RMS(u) / clip), from the partials in order. */
__global__ void adafactor_divisor_kernel(float *divisor, const double *partial, size_t n, double clip_threshold) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  double s = 0.0;
  for (int b = 0; b < ADAFACTOR_PARTIALS; b++) s += partial[b];
  double clip = sqrt(s) / sqrt((double)n) / clip_threshold;
  divisor[0] = (float)(clip > 1.0 ? clip : 1.0);
}

__global__ void adafactor_apply_kernel(float *param, __nv_bfloat16 *param_bf16, float *exp_avg, const float *u,
                                       const float *divisor, size_t n, float lr, float b1, float one_minus_b1,
                                       int decay_on, float alpha) {
  float d = divisor[0];
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    float step = (u[i] / d) * lr;
    if (exp_avg) {
      exp_avg[i] = exp_avg[i] * b1 + step * one_minus_b1;
      step = exp_avg[i];
    }
    float p = param[i];
    if (decay_on) p += p * alpha;
    p += -step;
    param[i] = p;
    if (param_bf16) param_bf16[i] = __float2bfloat16_rn(p);
  }
}

void kn_cuda_adafactor_update(kn_cuda_ctx *ctx, float *param, kn_bf16 *param_bf16, const float *grad,
                              float *exp_avg, float *exp_avg_sq, float *exp_avg_sq_row, float *exp_avg_sq_col,
                              int64_t outer, int64_t rows, int64_t cols, int64_t step, double lr, double eps1,
                              double clip_threshold, double decay_rate, double beta1, double weight_decay) {
  size_t n = (size_t)(outer * rows * cols);
  if (n == 0) return;
  int factored = exp_avg_sq_row != NULL;
  /* Workspace: u[n] floats, then row means [outer], the divisor, the partials (doubles, 8-aligned). */
  size_t floats = n + (size_t)outer + 1, floats_aligned = (floats + 1) / 2 * 2;
  uint8_t *ws = (uint8_t *)kn_cuda_workspace(ctx, floats_aligned * sizeof(float) + ADAFACTOR_PARTIALS * sizeof(double));
  if (!ws) return;
  float *u = (float *)ws, *row_mean = u + n, *divisor = row_mean + outer;
  double *partial = (double *)(ws + floats_aligned * sizeof(float));
  cudaStream_t s = kn_stream(ctx);
  float beta2t = (float)(1.0 - pow((double)step, decay_rate));
  float keep = beta2t, add = 1.0f - beta2t, eps1_f = (float)eps1;
  if (factored) {
    adafactor_rows_kernel<<<(unsigned)(outer * rows), 256, 0, s>>>(exp_avg_sq_row, grad, cols, eps1_f, keep, add);
    adafactor_cols_kernel<<<(unsigned)((outer * cols + 127) / 128), 128, 0, s>>>(exp_avg_sq_col, grad, outer, rows,
                                                                                 cols, eps1_f, keep, add);
    adafactor_row_mean_kernel<<<(unsigned)outer, 256, 0, s>>>(row_mean, exp_avg_sq_row, rows);
    adafactor_factored_direction_kernel<<<kn_blocks(n, 256), 256, 0, s>>>(u, grad, exp_avg_sq_row, exp_avg_sq_col,
                                                                          row_mean, rows, cols, n);
  } else {
    adafactor_full_direction_kernel<<<kn_blocks(n, 256), 256, 0, s>>>(u, exp_avg_sq, grad, n, eps1_f, keep, add);
  }
  adafactor_square_partials_kernel<<<ADAFACTOR_PARTIALS, 256, 0, s>>>(partial, u, n);
  adafactor_divisor_kernel<<<1, 32, 0, s>>>(divisor, partial, n, clip_threshold);
  adafactor_apply_kernel<<<kn_blocks(n, 256), 256, 0, s>>>(
      param, (__nv_bfloat16 *)param_bf16, beta1 > 0 ? exp_avg : NULL, u, divisor, n, (float)lr, (float)beta1,
      (float)(1.0 - beta1), weight_decay != 0, (float)(-weight_decay * lr));
  kn_cuda_launched(ctx, "adafactor");
}

/* ------------------------------------------------- gradient-norm clipping */

/* Sums of squares for the clipping norm over the same fixed grid as
 * Adafactor's RMS: partial[b] over block b's grid-stride share, then one
 * thread adds the partials in order. No atomics: the result does not depend
 * on scheduling. */
#define SUM_SQUARES_PARTIALS 256

__global__ void sum_squares_finish_kernel(float *out, const double *partial) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  double s = 0.0;
  for (int b = 0; b < SUM_SQUARES_PARTIALS; b++) s += partial[b];
  out[0] = (float)s;
}

void kn_cuda_sum_squares(kn_cuda_ctx *ctx, float *out, const float *inp, size_t n) {
  double *partial = (double *)kn_cuda_workspace(ctx, SUM_SQUARES_PARTIALS * sizeof(double));
  if (!partial) return;
  cudaStream_t s = kn_stream(ctx);
  /* The Adafactor partials kernel is the same reduction (a grid of
   * ADAFACTOR_PARTIALS blocks, which this grid equals). */
  adafactor_square_partials_kernel<<<SUM_SQUARES_PARTIALS, 256, 0, s>>>(partial, inp, n);
  sum_squares_finish_kernel<<<1, 32, 0, s>>>(out, partial);
  kn_cuda_launched(ctx, "sum of squares");
}

/* out[0] = the norm from the per-tensor sums (in order, double), out[1] the
 * clip factor, as trainer/optim.c's dpo_clip_grad_norm. */
__global__ void clip_coefficient_kernel(float *out, const float *sum_squares, int n, double max_norm) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  double total = 0.0;
  for (int i = 0; i < n; i++) total += sum_squares[i];
  double norm = sqrt(total);
  out[0] = (float)norm;
  out[1] = 1.0f;
  if (max_norm > 0) {
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) out[1] = (float)coef;
  }
}

void kn_cuda_clip_coefficient(kn_cuda_ctx *ctx, float *out, const float *sum_squares, int n, double max_norm) {
  clip_coefficient_kernel<<<1, 32, 0, kn_stream(ctx)>>>(out, sum_squares, n, max_norm);
  kn_cuda_launched(ctx, "clip coefficient");
}

/* x *= factor[0]; every thread reads the factor and leaves when it is 1 (the
 * common case of an unclipped step costs a launch, not a pass over memory). */
__global__ void scale_by_kernel(float *x, const float *factor, size_t n) {
  float c = factor[0];
  if (c == 1.0f) return;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    x[i] *= c;
}

void kn_cuda_scale_by(kn_cuda_ctx *ctx, float *x, const float *factor, size_t n) {
  if (n == 0) return;
  scale_by_kernel<<<kn_blocks(n, 256), 256, 0, kn_stream(ctx)>>>(x, factor, n);
  kn_cuda_launched(ctx, "scale by");
}
