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
