/* Per-sample MSE, sum/mean, scale, log-sigmoid and the Diffusion-DPO loss
 * reduction. Sums run in double inside one block per result (fixed
 * partition, fixed combination order), as the CPU sums in double. */
#include "kernels/cuda/cuda_internal.cuh"

#define REDUCE_THREADS 1024

/* out[blockIdx.x] = sum over n of (a - b)^2 (or of a when b is NULL) for the
 * row of a (and b) at blockIdx.x, times `factor`. */
__global__ void row_sum_kernel(float *out, const float *a, const float *b, size_t n, double factor) {
  __shared__ double shared[32];
  const float *x = a + (size_t)blockIdx.x * n, *y = b ? b + (size_t)blockIdx.x * n : NULL;
  double s = 0.0;
  for (size_t i = threadIdx.x; i < n; i += blockDim.x) {
    double d = y ? (double)x[i] - (double)y[i] : (double)x[i];
    s += y ? d * d : d;
  }
  s = kn_block_sum_double(s, shared);
  if (threadIdx.x == 0) out[blockIdx.x] = (float)(s * factor);
}

void kn_cuda_mse_per_sample_forward(kn_cuda_ctx *ctx, float *loss, const float *pred, const float *target, int B,
                                    size_t n) {
  if (B <= 0 || n == 0) return;
  row_sum_kernel<<<B, REDUCE_THREADS, 0, kn_stream(ctx)>>>(loss, pred, target, n, 1.0 / (double)n);
  kn_cuda_launched(ctx, "mse forward");
}

__global__ void mse_backward_kernel(float *dpred, float *dtarget, const float *dloss, const float *pred,
                                    const float *target, size_t n, size_t total) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    float g = 2.0f * dloss[i / n] / (float)n;
    float d = g * (pred[i] - target[i]);
    if (dpred) dpred[i] += d;
    if (dtarget) dtarget[i] -= d;
  }
}

void kn_cuda_mse_per_sample_backward(kn_cuda_ctx *ctx, float *dpred, float *dtarget, const float *dloss,
                                     const float *pred, const float *target, int B, size_t n) {
  size_t total = (size_t)B * n;
  if (total == 0 || (!dpred && !dtarget)) return;
  mse_backward_kernel<<<kn_blocks(total, 256), 256, 0, kn_stream(ctx)>>>(dpred, dtarget, dloss, pred, target, n,
                                                                        total);
  kn_cuda_launched(ctx, "mse backward");
}

void kn_cuda_sum_forward(kn_cuda_ctx *ctx, float *out, const float *inp, size_t n) {
  row_sum_kernel<<<1, REDUCE_THREADS, 0, kn_stream(ctx)>>>(out, inp, NULL, n, 1.0);
  kn_cuda_launched(ctx, "sum forward");
}

void kn_cuda_mean_forward(kn_cuda_ctx *ctx, float *out, const float *inp, size_t n) {
  row_sum_kernel<<<1, REDUCE_THREADS, 0, kn_stream(ctx)>>>(out, inp, NULL, n, n ? 1.0 / (double)n : 0.0);
  kn_cuda_launched(ctx, "mean forward");
}

/* dinp += dout[0] * factor (dout stays on the device: no host read). */
__global__ void broadcast_add_kernel(float *dinp, const float *dout, float divisor, size_t n) {
  float g = dout[0] / divisor;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    dinp[i] += g;
}

void kn_cuda_sum_backward(kn_cuda_ctx *ctx, float *dinp, const float *dout, size_t n) {
  if (n == 0 || !dinp) return;
  broadcast_add_kernel<<<kn_blocks(n, 256), 256, 0, kn_stream(ctx)>>>(dinp, dout, 1.0f, n);
  kn_cuda_launched(ctx, "sum backward");
}

void kn_cuda_mean_backward(kn_cuda_ctx *ctx, float *dinp, const float *dout, size_t n) {
  if (n == 0 || !dinp) return;
  broadcast_add_kernel<<<kn_blocks(n, 256), 256, 0, kn_stream(ctx)>>>(dinp, dout, (float)n, n);
  kn_cuda_launched(ctx, "mean backward");
}

__global__ void scale_kernel(float *out, const float *inp, float scale, size_t n, int accumulate) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    out[i] = accumulate ? out[i] + scale * inp[i] : scale * inp[i];
}

void kn_cuda_scale_forward(kn_cuda_ctx *ctx, float *out, const float *inp, float scale, size_t n) {
  if (n == 0) return;
  scale_kernel<<<kn_blocks(n, 256), 256, 0, kn_stream(ctx)>>>(out, inp, scale, n, 0);
  kn_cuda_launched(ctx, "scale forward");
}

void kn_cuda_scale_backward(kn_cuda_ctx *ctx, float *dinp, const float *dout, float scale, size_t n) {
  if (n == 0 || !dinp) return;
  scale_kernel<<<kn_blocks(n, 256), 256, 0, kn_stream(ctx)>>>(dinp, dout, scale, n, 1);
  kn_cuda_launched(ctx, "scale backward");
}

__global__ void logsigmoid_forward_kernel(float *out, const float *inp, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    float x = inp[i];
    out[i] = fminf(x, 0.0f) - log1pf(expf(-fabsf(x)));
  }
}

__global__ void logsigmoid_backward_kernel(float *dinp, const float *dout, const float *inp, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    float x = inp[i];
    float s = x >= 0.0f ? expf(-x) / (1.0f + expf(-x)) : 1.0f / (1.0f + expf(x));
    dinp[i] += dout[i] * s;
  }
}

void kn_cuda_logsigmoid_forward(kn_cuda_ctx *ctx, float *out, const float *inp, size_t n) {
  if (n == 0) return;
  logsigmoid_forward_kernel<<<kn_blocks(n, 256), 256, 0, kn_stream(ctx)>>>(out, inp, n);
  kn_cuda_launched(ctx, "logsigmoid forward");
}

void kn_cuda_logsigmoid_backward(kn_cuda_ctx *ctx, float *dinp, const float *dout, const float *inp, size_t n) {
  if (n == 0 || !dinp) return;
  logsigmoid_backward_kernel<<<kn_blocks(n, 256), 256, 0, kn_stream(ctx)>>>(dinp, dout, inp, n);
  kn_cuda_launched(ctx, "logsigmoid backward");
}

/* ------------------------------------------------------------ DPO loss */

__device__ double dpo_logsigmoid(double x) { return fmin(x, 0.0) - log1p(exp(-fabs(x))); }

__device__ double dpo_sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + exp(-x));
  double e = exp(x);
  return e / (1.0 + e);
}

/* One thread: n is the number of pairs of a step (a handful), and the sums
 * must come out in the CPU's order (trainer/loss.c, operation by operation). */
__global__ void dpo_loss_kernel(float *loss, float *grad_w, float *grad_l, float *stats, const float *model_w,
                                const float *model_l, const float *ref_w, const float *ref_l, const float *label,
                                int n, double beta) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  double total = 0.0, reward_w = 0.0, reward_l = 0.0, margin = 0.0;
  int n_strict = 0, n_correct = 0;
  for (int i = 0; i < n; i++) {
    double p = label ? label[i] : 1.0;
    double model_diff = (double)model_w[i] - (double)model_l[i];
    double ref_diff = (double)ref_w[i] - (double)ref_l[i];
    double inside = -0.5 * beta * (model_diff - ref_diff);
    double loss_i = -p * dpo_logsigmoid(inside);
    if (p < 1.0) loss_i -= (1.0 - p) * dpo_logsigmoid(-inside);
    total += loss_i;
    double dinside = (dpo_sigmoid(inside) - p) / n;
    if (grad_w) grad_w[i] = (float)(dinside * -0.5 * beta);
    if (grad_l) grad_l[i] = (float)(dinside * 0.5 * beta);
    int tie = label && label[i] > 0.0f && label[i] < 1.0f;
    if (!tie) {
      n_strict++;
      if (inside > 0) n_correct++;
    }
    reward_w += -0.5 * beta * ((double)model_w[i] - (double)ref_w[i]);
    reward_l += -0.5 * beta * ((double)model_l[i] - (double)ref_l[i]);
    margin += inside;
  }
  loss[0] = (float)(total / n);
  if (stats) {
    stats[0] = n_strict > 0 ? (float)((double)n_correct / n_strict) : 0.0f;
    stats[1] = (float)(reward_w / n);
    stats[2] = (float)(reward_l / n);
    stats[3] = (float)(margin / n);
  }
}

void kn_cuda_dpo_loss(kn_cuda_ctx *ctx, float *loss, float *grad_model_w, float *grad_model_l, float *stats,
                      const float *model_w, const float *model_l, const float *ref_w, const float *ref_l,
                      const float *label, int n, double beta) {
  if (n <= 0) return;
  dpo_loss_kernel<<<1, 32, 0, kn_stream(ctx)>>>(loss, grad_model_w, grad_model_l, stats, model_w, model_l, ref_w,
                                                ref_l, label, n, beta);
  kn_cuda_launched(ctx, "dpo loss");
}
