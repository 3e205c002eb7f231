/* The entry points of kernels.h: each kn_<op> runs kn_cpu_<op> (kernels/cpu)
 * or, for a CUDA context in a build with DPO_HAVE_CUDA, kn_cuda_<op>
 * (kernels/cuda, on device memory, asynchronous on the context's stream).
 * Nothing else happens here, so the CPU path computes exactly what it did
 * before the backends were joined; the one object made here is the
 * multi-tensor ops' parameter table (at the end). */
#include <stdlib.h>

#include "kernels/cpu/cpu.h"
#ifdef DPO_HAVE_CUDA
#include "kernels/cuda/kernels_cuda.h"
#endif

void kn_linear_forward(kn_ctx *ctx, float *out, const float *inp, const float *weight,
                       const float *bias, int N, int IC, int OC) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_linear_forward(ctx->device, out, inp, weight, bias, N, IC, OC);
    return;
  }
#endif
  kn_cpu_linear_forward(ctx, out, inp, weight, bias, N, IC, OC);
}

void kn_linear_backward(kn_ctx *ctx, float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, int N, int IC, int OC) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_linear_backward(ctx->device, dinp, dweight, dbias, dout, inp, weight, N, IC, OC);
    return;
  }
#endif
  kn_cpu_linear_backward(ctx, dinp, dweight, dbias, dout, inp, weight, N, IC, OC);
}

void kn_conv2d_forward(kn_ctx *ctx, float *out, const float *inp, const float *weight,
                       const float *bias, int B, int C, int H, int W, int OC, int K, int stride,
                       int pad) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_conv2d_forward(ctx->device, out, inp, weight, bias, B, C, H, W, OC, K, stride, pad);
    return;
  }
#endif
  kn_cpu_conv2d_forward(ctx, out, inp, weight, bias, B, C, H, W, OC, K, stride, pad);
}

void kn_conv2d_backward(kn_ctx *ctx, float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, int B, int C, int H, int W, int OC,
                        int K, int stride, int pad) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_conv2d_backward(ctx->device, dinp, dweight, dbias, dout, inp, weight, B, C, H, W, OC, K,
                            stride, pad);
    return;
  }
#endif
  kn_cpu_conv2d_backward(ctx, dinp, dweight, dbias, dout, inp, weight, B, C, H, W, OC, K, stride,
                         pad);
}

void kn_group_norm_forward(kn_ctx *ctx, float *out, float *mean, float *rstd, const float *inp,
                           const float *gamma, const float *beta, int B, int C, int HW, int G,
                           float eps) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_group_norm_forward(ctx->device, out, mean, rstd, inp, gamma, beta, B, C, HW, G, eps);
    return;
  }
#endif
  kn_cpu_group_norm_forward(ctx, out, mean, rstd, inp, gamma, beta, B, C, HW, G, eps);
}

void kn_group_norm_backward(kn_ctx *ctx, float *dinp, float *dgamma, float *dbeta,
                            const float *dout, const float *inp, const float *mean,
                            const float *rstd, const float *gamma, int B, int C, int HW, int G) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_group_norm_backward(ctx->device, dinp, dgamma, dbeta, dout, inp, mean, rstd, gamma, B,
                                C, HW, G);
    return;
  }
#endif
  kn_cpu_group_norm_backward(ctx, dinp, dgamma, dbeta, dout, inp, mean, rstd, gamma, B, C, HW, G);
}

void kn_layer_norm_forward(kn_ctx *ctx, float *out, float *mean, float *rstd, const float *inp,
                           const float *gamma, const float *beta, int N, int C, float eps) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_layer_norm_forward(ctx->device, out, mean, rstd, inp, gamma, beta, N, C, eps);
    return;
  }
#endif
  kn_cpu_layer_norm_forward(ctx, out, mean, rstd, inp, gamma, beta, N, C, eps);
}

void kn_layer_norm_backward(kn_ctx *ctx, float *dinp, float *dgamma, float *dbeta,
                            const float *dout, const float *inp, const float *mean,
                            const float *rstd, const float *gamma, int N, int C) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_layer_norm_backward(ctx->device, dinp, dgamma, dbeta, dout, inp, mean, rstd, gamma, N,
                                C);
    return;
  }
#endif
  kn_cpu_layer_norm_backward(ctx, dinp, dgamma, dbeta, dout, inp, mean, rstd, gamma, N, C);
}

void kn_activation_forward(kn_ctx *ctx, kn_activation act, float *out, const float *inp, size_t n) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_activation_forward(ctx->device, act, out, inp, n);
    return;
  }
#endif
  kn_cpu_activation_forward(ctx, act, out, inp, n);
}

void kn_activation_backward(kn_ctx *ctx, kn_activation act, float *dinp, const float *dout,
                            const float *inp, size_t n) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_activation_backward(ctx->device, act, dinp, dout, inp, n);
    return;
  }
#endif
  kn_cpu_activation_backward(ctx, act, dinp, dout, inp, n);
}

void kn_geglu_forward(kn_ctx *ctx, float *out, const float *inp, int N, int D) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_geglu_forward(ctx->device, out, inp, N, D);
    return;
  }
#endif
  kn_cpu_geglu_forward(ctx, out, inp, N, D);
}

void kn_geglu_backward(kn_ctx *ctx, float *dinp, const float *dout, const float *inp, int N,
                       int D) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_geglu_backward(ctx->device, dinp, dout, inp, N, D);
    return;
  }
#endif
  kn_cpu_geglu_backward(ctx, dinp, dout, inp, N, D);
}

void kn_softmax_forward(kn_ctx *ctx, float *out, const float *inp, int N, int C) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_softmax_forward(ctx->device, out, inp, N, C);
    return;
  }
#endif
  kn_cpu_softmax_forward(ctx, out, inp, N, C);
}

void kn_softmax_backward(kn_ctx *ctx, float *dinp, const float *dout, const float *out, int N,
                         int C) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_softmax_backward(ctx->device, dinp, dout, out, N, C);
    return;
  }
#endif
  kn_cpu_softmax_backward(ctx, dinp, dout, out, N, C);
}

void kn_attention_forward(kn_ctx *ctx, float *out, float *lse, const float *q, const float *k,
                          const float *v, int B, int H, int Nq, int Nk, int D, float scale,
                          int causal) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_attention_forward(ctx->device, out, lse, q, k, v, B, H, Nq, Nk, D, scale, causal);
    return;
  }
#endif
  kn_cpu_attention_forward(ctx, out, lse, q, k, v, B, H, Nq, Nk, D, scale, causal);
}

void kn_attention_backward(kn_ctx *ctx, float *dq, float *dk, float *dv, const float *dout,
                           const float *q, const float *k, const float *v, const float *out,
                           const float *lse, int B, int H, int Nq, int Nk, int D, float scale,
                           int causal) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_attention_backward(ctx->device, dq, dk, dv, dout, q, k, v, out, lse, B, H, Nq, Nk, D,
                               scale, causal);
    return;
  }
#endif
  kn_cpu_attention_backward(ctx, dq, dk, dv, dout, q, k, v, out, lse, B, H, Nq, Nk, D, scale,
                            causal);
}

void kn_upsample2x_forward(kn_ctx *ctx, float *out, const float *inp, int B, int C, int H, int W) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_upsample2x_forward(ctx->device, out, inp, B, C, H, W);
    return;
  }
#endif
  kn_cpu_upsample2x_forward(ctx, out, inp, B, C, H, W);
}

void kn_upsample2x_backward(kn_ctx *ctx, float *dinp, const float *dout, int B, int C, int H,
                            int W) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_upsample2x_backward(ctx->device, dinp, dout, B, C, H, W);
    return;
  }
#endif
  kn_cpu_upsample2x_backward(ctx, dinp, dout, B, C, H, W);
}

void kn_add_forward(kn_ctx *ctx, float *out, const float *a, const float *b, size_t n) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_add_forward(ctx->device, out, a, b, n);
    return;
  }
#endif
  kn_cpu_add_forward(ctx, out, a, b, n);
}

void kn_add_backward(kn_ctx *ctx, float *da, float *db, const float *dout, size_t n) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_add_backward(ctx->device, da, db, dout, n);
    return;
  }
#endif
  kn_cpu_add_backward(ctx, da, db, dout, n);
}

void kn_concat_forward(kn_ctx *ctx, float *out, const float *a, const float *b, int outer, int Ca,
                       int Cb, int inner) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_concat_forward(ctx->device, out, a, b, outer, Ca, Cb, inner);
    return;
  }
#endif
  kn_cpu_concat_forward(ctx, out, a, b, outer, Ca, Cb, inner);
}

void kn_concat_backward(kn_ctx *ctx, float *da, float *db, const float *dout, int outer, int Ca,
                        int Cb, int inner) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_concat_backward(ctx->device, da, db, dout, outer, Ca, Cb, inner);
    return;
  }
#endif
  kn_cpu_concat_backward(ctx, da, db, dout, outer, Ca, Cb, inner);
}

void kn_split_forward(kn_ctx *ctx, float *a, float *b, const float *inp, int outer, int Ca, int Cb,
                      int inner) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_split_forward(ctx->device, a, b, inp, outer, Ca, Cb, inner);
    return;
  }
#endif
  kn_cpu_split_forward(ctx, a, b, inp, outer, Ca, Cb, inner);
}

void kn_split_backward(kn_ctx *ctx, float *dinp, const float *da, const float *db, int outer,
                       int Ca, int Cb, int inner) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_split_backward(ctx->device, dinp, da, db, outer, Ca, Cb, inner);
    return;
  }
#endif
  kn_cpu_split_backward(ctx, dinp, da, db, outer, Ca, Cb, inner);
}

void kn_transpose_forward(kn_ctx *ctx, float *out, const float *inp, int B, int C, int A) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_transpose_forward(ctx->device, out, inp, B, C, A);
    return;
  }
#endif
  kn_cpu_transpose_forward(ctx, out, inp, B, C, A);
}

void kn_transpose_backward(kn_ctx *ctx, float *dinp, const float *dout, int B, int C, int A) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_transpose_backward(ctx->device, dinp, dout, B, C, A);
    return;
  }
#endif
  kn_cpu_transpose_backward(ctx, dinp, dout, B, C, A);
}

void kn_add_channel_forward(kn_ctx *ctx, float *x, const float *v, int B, int C, int HW) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_add_channel_forward(ctx->device, x, v, B, C, HW);
    return;
  }
#endif
  kn_cpu_add_channel_forward(ctx, x, v, B, C, HW);
}

void kn_add_channel_backward(kn_ctx *ctx, float *dv, const float *dx, int B, int C, int HW) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_add_channel_backward(ctx->device, dv, dx, B, C, HW);
    return;
  }
#endif
  kn_cpu_add_channel_backward(ctx, dv, dx, B, C, HW);
}

void kn_axpy(kn_ctx *ctx, float *dst, float alpha, const float *src, size_t n) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_axpy(ctx->device, dst, alpha, src, n);
    return;
  }
#endif
  kn_cpu_axpy(ctx, dst, alpha, src, n);
}

void kn_affine_forward(kn_ctx *ctx, float *out, const float *inp, float a, float b, size_t n) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_affine_forward(ctx->device, out, inp, a, b, n);
    return;
  }
#endif
  kn_cpu_affine_forward(ctx, out, inp, a, b, n);
}

void kn_timestep_embedding_forward(kn_ctx *ctx, float *out, const float *timesteps, int B, int dim,
                                   int flip_sin_to_cos, float downscale_freq_shift, float scale,
                                   float max_period) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_timestep_embedding_forward(ctx->device, out, timesteps, B, dim, flip_sin_to_cos,
                                       downscale_freq_shift, scale, max_period);
    return;
  }
#endif
  kn_cpu_timestep_embedding_forward(ctx, out, timesteps, B, dim, flip_sin_to_cos,
                                    downscale_freq_shift, scale, max_period);
}

void kn_timestep_embedding_backward(kn_ctx *ctx, float *dtimesteps, const float *dout,
                                    const float *timesteps, int B, int dim, int flip_sin_to_cos,
                                    float downscale_freq_shift, float scale, float max_period) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_timestep_embedding_backward(ctx->device, dtimesteps, dout, timesteps, B, dim,
                                        flip_sin_to_cos, downscale_freq_shift, scale, max_period);
    return;
  }
#endif
  kn_cpu_timestep_embedding_backward(ctx, dtimesteps, dout, timesteps, B, dim, flip_sin_to_cos,
                                     downscale_freq_shift, scale, max_period);
}

void kn_embedding_forward(kn_ctx *ctx, float *out, const int32_t *ids, const float *wte,
                          const float *wpe, int B, int T, int C) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_embedding_forward(ctx->device, out, ids, wte, wpe, B, T, C);
    return;
  }
#endif
  kn_cpu_embedding_forward(ctx, out, ids, wte, wpe, B, T, C);
}

void kn_embedding_backward(kn_ctx *ctx, float *dwte, float *dwpe, const float *dout,
                           const int32_t *ids, int B, int T, int C) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_embedding_backward(ctx->device, dwte, dwpe, dout, ids, B, T, C);
    return;
  }
#endif
  kn_cpu_embedding_backward(ctx, dwte, dwpe, dout, ids, B, T, C);
}

void kn_mse_per_sample_forward(kn_ctx *ctx, float *loss, const float *pred, const float *target,
                               int B, size_t n) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_mse_per_sample_forward(ctx->device, loss, pred, target, B, n);
    return;
  }
#endif
  kn_cpu_mse_per_sample_forward(ctx, loss, pred, target, B, n);
}

void kn_mse_per_sample_backward(kn_ctx *ctx, float *dpred, float *dtarget, const float *dloss,
                                const float *pred, const float *target, int B, size_t n) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_mse_per_sample_backward(ctx->device, dpred, dtarget, dloss, pred, target, B, n);
    return;
  }
#endif
  kn_cpu_mse_per_sample_backward(ctx, dpred, dtarget, dloss, pred, target, B, n);
}

void kn_sum_forward(kn_ctx *ctx, float *out, const float *inp, size_t n) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_sum_forward(ctx->device, out, inp, n);
    return;
  }
#endif
  kn_cpu_sum_forward(ctx, out, inp, n);
}

void kn_sum_backward(kn_ctx *ctx, float *dinp, const float *dout, size_t n) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_sum_backward(ctx->device, dinp, dout, n);
    return;
  }
#endif
  kn_cpu_sum_backward(ctx, dinp, dout, n);
}

void kn_mean_forward(kn_ctx *ctx, float *out, const float *inp, size_t n) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_mean_forward(ctx->device, out, inp, n);
    return;
  }
#endif
  kn_cpu_mean_forward(ctx, out, inp, n);
}

void kn_mean_backward(kn_ctx *ctx, float *dinp, const float *dout, size_t n) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_mean_backward(ctx->device, dinp, dout, n);
    return;
  }
#endif
  kn_cpu_mean_backward(ctx, dinp, dout, n);
}

void kn_scale_forward(kn_ctx *ctx, float *out, const float *inp, float scale, size_t n) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_scale_forward(ctx->device, out, inp, scale, n);
    return;
  }
#endif
  kn_cpu_scale_forward(ctx, out, inp, scale, n);
}

void kn_scale_backward(kn_ctx *ctx, float *dinp, const float *dout, float scale, size_t n) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_scale_backward(ctx->device, dinp, dout, scale, n);
    return;
  }
#endif
  kn_cpu_scale_backward(ctx, dinp, dout, scale, n);
}

void kn_logsigmoid_forward(kn_ctx *ctx, float *out, const float *inp, size_t n) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_logsigmoid_forward(ctx->device, out, inp, n);
    return;
  }
#endif
  kn_cpu_logsigmoid_forward(ctx, out, inp, n);
}

void kn_logsigmoid_backward(kn_ctx *ctx, float *dinp, const float *dout, const float *inp,
                            size_t n) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_logsigmoid_backward(ctx->device, dinp, dout, inp, n);
    return;
  }
#endif
  kn_cpu_logsigmoid_backward(ctx, dinp, dout, inp, n);
}

void kn_dpo_loss(kn_ctx *ctx, float *loss, float *grad_model_w, float *grad_model_l, float *stats,
                 const float *model_w, const float *model_l, const float *ref_w, const float *ref_l,
                 const float *label, int n, double beta) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_dpo_loss(ctx->device, loss, grad_model_w, grad_model_l, stats, model_w, model_l, ref_w, ref_l,
                     label, n, beta);
    return;
  }
#endif
  kn_cpu_dpo_loss(ctx, loss, grad_model_w, grad_model_l, stats, model_w, model_l, ref_w, ref_l, label, n,
                  beta);
}

void kn_sum_squares(kn_ctx *ctx, float *out, const float *inp, size_t n) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_sum_squares(ctx->device, out, inp, n);
    return;
  }
#endif
  kn_cpu_sum_squares(ctx, out, inp, n);
}

void kn_clip_coefficient(kn_ctx *ctx, float *out, const float *sum_squares, int n, double max_norm) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_clip_coefficient(ctx->device, out, sum_squares, n, max_norm);
    return;
  }
#endif
  kn_cpu_clip_coefficient(ctx, out, sum_squares, n, max_norm);
}

void kn_scale_by(kn_ctx *ctx, float *x, const float *factor, size_t n) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_scale_by(ctx->device, x, factor, n);
    return;
  }
#endif
  kn_cpu_scale_by(ctx, x, factor, n);
}

void kn_adamw_update(kn_ctx *ctx, float *param, kn_bf16 *param_bf16, const float *grad,
                     float *exp_avg, float *exp_avg_sq, size_t n, int64_t step, double lr,
                     double beta1, double beta2, double eps, double weight_decay) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_adamw_update(ctx->device, param, param_bf16, grad, exp_avg, exp_avg_sq, n, step, lr, beta1, beta2, eps,
                         weight_decay);
    return;
  }
#endif
  kn_cpu_adamw_update(ctx, param, grad, exp_avg, exp_avg_sq, n, step, lr, beta1, beta2, eps, weight_decay);
  if (param_bf16) kn_cpu_to_bf16(ctx, param_bf16, param, n);
}

void kn_adafactor_update(kn_ctx *ctx, float *param, kn_bf16 *param_bf16, const float *grad,
                         float *exp_avg, float *exp_avg_sq, float *exp_avg_sq_row,
                         float *exp_avg_sq_col, int64_t outer, int64_t rows, int64_t cols,
                         int64_t step, double lr, double eps1, double clip_threshold,
                         double decay_rate, double beta1, double weight_decay) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_adafactor_update(ctx->device, param, param_bf16, grad, exp_avg, exp_avg_sq, exp_avg_sq_row,
                             exp_avg_sq_col, outer, rows, cols, step, lr, eps1, clip_threshold, decay_rate,
                             beta1, weight_decay);
    return;
  }
#endif
  kn_cpu_adafactor_update(ctx, param, grad, exp_avg, exp_avg_sq, exp_avg_sq_row, exp_avg_sq_col, outer, rows,
                          cols, step, lr, eps1, clip_threshold, decay_rate, beta1, weight_decay);
  if (param_bf16) kn_cpu_to_bf16(ctx, param_bf16, param, (size_t)(outer * rows * cols));
}

void kn_to_bf16(kn_ctx *ctx, kn_bf16 *out, const float *inp, size_t n) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_to_bf16(ctx->device, out, inp, n);
    return;
  }
#endif
  kn_cpu_to_bf16(ctx, out, inp, n);
}

void kn_from_bf16(kn_ctx *ctx, float *out, const kn_bf16 *inp, size_t n) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_from_bf16(ctx->device, out, inp, n);
    return;
  }
#endif
  kn_cpu_from_bf16(ctx, out, inp, n);
}

/* ------------------------------------------------------------- bf16 ops */

void kn_linear_forward_bf16(kn_ctx *ctx, kn_bf16 *out, const kn_bf16 *inp, const kn_bf16 *weight,
                            const float *bias, int N, int IC, int OC) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_linear_forward_bf16(ctx->device, out, inp, weight, bias, N, IC, OC);
    return;
  }
#endif
  kn_cpu_linear_forward_bf16(ctx, out, inp, weight, bias, N, IC, OC);
}

void kn_linear_backward_bf16(kn_ctx *ctx, kn_bf16 *dinp, float *dweight, float *dbias,
                             const kn_bf16 *dout, const kn_bf16 *inp, const kn_bf16 *weight, int N,
                             int IC, int OC) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_linear_backward_bf16(ctx->device, dinp, dweight, dbias, dout, inp, weight, N, IC, OC);
    return;
  }
#endif
  kn_cpu_linear_backward_bf16(ctx, dinp, dweight, dbias, dout, inp, weight, N, IC, OC);
}

void kn_conv2d_forward_bf16(kn_ctx *ctx, kn_bf16 *out, const kn_bf16 *inp, const kn_bf16 *weight,
                            const float *bias, int B, int C, int H, int W, int OC, int K,
                            int stride, int pad) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_conv2d_forward_bf16(ctx->device, out, inp, weight, bias, B, C, H, W, OC, K, stride,
                                pad);
    return;
  }
#endif
  kn_cpu_conv2d_forward_bf16(ctx, out, inp, weight, bias, B, C, H, W, OC, K, stride, pad);
}

void kn_conv2d_backward_bf16(kn_ctx *ctx, kn_bf16 *dinp, float *dweight, float *dbias,
                             const kn_bf16 *dout, const kn_bf16 *inp, const kn_bf16 *weight, int B,
                             int C, int H, int W, int OC, int K, int stride, int pad) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_conv2d_backward_bf16(ctx->device, dinp, dweight, dbias, dout, inp, weight, B, C, H, W,
                                 OC, K, stride, pad);
    return;
  }
#endif
  kn_cpu_conv2d_backward_bf16(ctx, dinp, dweight, dbias, dout, inp, weight, B, C, H, W, OC, K,
                              stride, pad);
}

void kn_group_norm_forward_bf16(kn_ctx *ctx, kn_bf16 *out, float *mean, float *rstd,
                                const kn_bf16 *inp, const float *gamma, const float *beta, int B,
                                int C, int HW, int G, float eps, int fuse_silu) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_group_norm_silu_forward_bf16(ctx->device, out, mean, rstd, inp, gamma, beta, B, C, HW,
                                         G, eps, fuse_silu);
    return;
  }
#endif
  kn_cpu_group_norm_forward_bf16(ctx, out, mean, rstd, inp, gamma, beta, B, C, HW, G, eps,
                                 fuse_silu);
}

void kn_group_norm_backward_bf16(kn_ctx *ctx, kn_bf16 *dinp, float *dgamma, float *dbeta,
                                 const kn_bf16 *dout, const kn_bf16 *inp, const float *mean,
                                 const float *rstd, const float *gamma, const float *beta, int B,
                                 int C, int HW, int G, int fuse_silu) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_group_norm_silu_backward_bf16(ctx->device, dinp, dgamma, dbeta, dout, inp, mean, rstd,
                                          gamma, beta, B, C, HW, G, fuse_silu);
    return;
  }
#endif
  kn_cpu_group_norm_backward_bf16(ctx, dinp, dgamma, dbeta, dout, inp, mean, rstd, gamma, beta, B,
                                  C, HW, G, fuse_silu);
}

void kn_layer_norm_forward_bf16(kn_ctx *ctx, kn_bf16 *out, float *mean, float *rstd,
                                const kn_bf16 *inp, const float *gamma, const float *beta, int N,
                                int C, float eps) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_layer_norm_forward_bf16(ctx->device, out, mean, rstd, inp, gamma, beta, N, C, eps);
    return;
  }
#endif
  kn_cpu_layer_norm_forward_bf16(ctx, out, mean, rstd, inp, gamma, beta, N, C, eps);
}

void kn_layer_norm_backward_bf16(kn_ctx *ctx, kn_bf16 *dinp, float *dgamma, float *dbeta,
                                 const kn_bf16 *dout, const kn_bf16 *inp, const float *mean,
                                 const float *rstd, const float *gamma, int N, int C) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_layer_norm_backward_bf16(ctx->device, dinp, dgamma, dbeta, dout, inp, mean, rstd, gamma,
                                     N, C);
    return;
  }
#endif
  kn_cpu_layer_norm_backward_bf16(ctx, dinp, dgamma, dbeta, dout, inp, mean, rstd, gamma, N, C);
}

void kn_activation_forward_bf16(kn_ctx *ctx, kn_activation act, kn_bf16 *out, const kn_bf16 *inp,
                                size_t n) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_activation_forward_bf16(ctx->device, act, out, inp, n);
    return;
  }
#endif
  kn_cpu_activation_forward_bf16(ctx, act, out, inp, n);
}

void kn_activation_backward_bf16(kn_ctx *ctx, kn_activation act, kn_bf16 *dinp, const kn_bf16 *dout,
                                 const kn_bf16 *inp, size_t n) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_activation_backward_bf16(ctx->device, act, dinp, dout, inp, n);
    return;
  }
#endif
  kn_cpu_activation_backward_bf16(ctx, act, dinp, dout, inp, n);
}

void kn_geglu_forward_bf16(kn_ctx *ctx, kn_bf16 *out, const kn_bf16 *inp, int N, int D) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_geglu_forward_bf16(ctx->device, out, inp, N, D);
    return;
  }
#endif
  kn_cpu_geglu_forward_bf16(ctx, out, inp, N, D);
}

void kn_geglu_backward_bf16(kn_ctx *ctx, kn_bf16 *dinp, const kn_bf16 *dout, const kn_bf16 *inp,
                            int N, int D) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_geglu_backward_bf16(ctx->device, dinp, dout, inp, N, D);
    return;
  }
#endif
  kn_cpu_geglu_backward_bf16(ctx, dinp, dout, inp, N, D);
}

void kn_attention_forward_bf16(kn_ctx *ctx, kn_bf16 *out, float *lse, const kn_bf16 *q,
                               const kn_bf16 *k, const kn_bf16 *v, int B, int H, int Nq, int Nk,
                               int D, float scale, int causal) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_attention_forward_bf16(ctx->device, out, lse, q, k, v, B, H, Nq, Nk, D, scale, causal);
    return;
  }
#endif
  kn_cpu_attention_forward_bf16(ctx, out, lse, q, k, v, B, H, Nq, Nk, D, scale, causal);
}

void kn_attention_backward_bf16(kn_ctx *ctx, kn_bf16 *dq, kn_bf16 *dk, kn_bf16 *dv,
                                const kn_bf16 *dout, const kn_bf16 *q, const kn_bf16 *k,
                                const kn_bf16 *v, const kn_bf16 *out, const float *lse, int B,
                                int H, int Nq, int Nk, int D, float scale, int causal) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_attention_backward_bf16(ctx->device, dq, dk, dv, dout, q, k, v, out, lse, B, H, Nq, Nk,
                                    D, scale, causal);
    return;
  }
#endif
  kn_cpu_attention_backward_bf16(ctx, dq, dk, dv, dout, q, k, v, out, lse, B, H, Nq, Nk, D, scale,
                                 causal);
}

void kn_upsample2x_forward_bf16(kn_ctx *ctx, kn_bf16 *out, const kn_bf16 *inp, int B, int C, int H,
                                int W) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_upsample2x_forward_bf16(ctx->device, out, inp, B, C, H, W);
    return;
  }
#endif
  kn_cpu_upsample2x_forward_bf16(ctx, out, inp, B, C, H, W);
}

void kn_upsample2x_backward_bf16(kn_ctx *ctx, kn_bf16 *dinp, const kn_bf16 *dout, int B, int C,
                                 int H, int W) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_upsample2x_backward_bf16(ctx->device, dinp, dout, B, C, H, W);
    return;
  }
#endif
  kn_cpu_upsample2x_backward_bf16(ctx, dinp, dout, B, C, H, W);
}

void kn_add_forward_bf16(kn_ctx *ctx, kn_bf16 *out, const kn_bf16 *a, const kn_bf16 *b, size_t n) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_add_forward_bf16(ctx->device, out, a, b, n);
    return;
  }
#endif
  kn_cpu_add_forward_bf16(ctx, out, a, b, n);
}

void kn_add_backward_bf16(kn_ctx *ctx, kn_bf16 *da, kn_bf16 *db, const kn_bf16 *dout, size_t n) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_add_backward_bf16(ctx->device, da, db, dout, n);
    return;
  }
#endif
  kn_cpu_add_backward_bf16(ctx, da, db, dout, n);
}

void kn_concat_forward_bf16(kn_ctx *ctx, kn_bf16 *out, const kn_bf16 *a, const kn_bf16 *b,
                            int outer, int Ca, int Cb, int inner) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_concat_forward_bf16(ctx->device, out, a, b, outer, Ca, Cb, inner);
    return;
  }
#endif
  kn_cpu_concat_forward_bf16(ctx, out, a, b, outer, Ca, Cb, inner);
}

void kn_concat_backward_bf16(kn_ctx *ctx, kn_bf16 *da, kn_bf16 *db, const kn_bf16 *dout, int outer,
                             int Ca, int Cb, int inner) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_concat_backward_bf16(ctx->device, da, db, dout, outer, Ca, Cb, inner);
    return;
  }
#endif
  kn_cpu_concat_backward_bf16(ctx, da, db, dout, outer, Ca, Cb, inner);
}

void kn_transpose_forward_bf16(kn_ctx *ctx, kn_bf16 *out, const kn_bf16 *inp, int B, int C, int A) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_transpose_forward_bf16(ctx->device, out, inp, B, C, A);
    return;
  }
#endif
  kn_cpu_transpose_forward_bf16(ctx, out, inp, B, C, A);
}

void kn_transpose_backward_bf16(kn_ctx *ctx, kn_bf16 *dinp, const kn_bf16 *dout, int B, int C,
                                int A) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_transpose_backward_bf16(ctx->device, dinp, dout, B, C, A);
    return;
  }
#endif
  kn_cpu_transpose_backward_bf16(ctx, dinp, dout, B, C, A);
}

void kn_add_channel_forward_bf16(kn_ctx *ctx, kn_bf16 *x, const kn_bf16 *v, int B, int C, int HW) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_add_channel_forward_bf16(ctx->device, x, v, B, C, HW);
    return;
  }
#endif
  kn_cpu_add_channel_forward_bf16(ctx, x, v, B, C, HW);
}

void kn_add_channel_backward_bf16(kn_ctx *ctx, kn_bf16 *dv, const kn_bf16 *dx, int B, int C,
                                  int HW) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_add_channel_backward_bf16(ctx->device, dv, dx, B, C, HW);
    return;
  }
#endif
  kn_cpu_add_channel_backward_bf16(ctx, dv, dx, B, C, HW);
}

/* ----------------------------------------------- multi-tensor training ops */

/* The table keeps the caller's arrays on the host (what the CPU ops loop
 * over) and, for a CUDA context, the device table made from them once. */
struct kn_param_table {
  int count;
  size_t *numel;
  float **param, **grad, **exp_avg, **exp_avg_sq; /* the moments NULL: none */
  kn_bf16 **param_bf16;                            /* NULL entries where there is no copy */
  void *device;                                    /* kn_cuda_param_table, CUDA only */
};

int kn_param_table_create(kn_ctx *ctx, int count, const size_t *numel, float *const *param,
                          kn_bf16 *const *param_bf16, float *const *grad, float *const *exp_avg,
                          float *const *exp_avg_sq, kn_param_table **out, dpo_error *err) {
  *out = NULL;
  if (count < 1 || !numel || !param || !grad)
    return dpo_fail(err, DPO_ERR_USAGE, "parameter table: %d tensors, or sizes, parameters or gradients missing",
                    count);
  if (!exp_avg != !exp_avg_sq)
    return dpo_fail(err, DPO_ERR_USAGE, "parameter table: give both AdamW moments or neither");
  for (int i = 0; i < count; i++)
    if (!param[i] || !grad[i] || (exp_avg && (!exp_avg[i] || !exp_avg_sq[i])))
      return dpo_fail(err, DPO_ERR_USAGE, "parameter table: entry %d lacks a parameter, gradient or moment", i);
  kn_param_table *t = calloc(1, sizeof *t);
  if (!t) return dpo_fail(err, DPO_ERR_DATA, "parameter table: out of memory");
  size_t n = (size_t)count;
  t->count = count;
  t->numel = malloc(n * sizeof *t->numel);
  t->param = malloc(n * sizeof *t->param);
  t->grad = malloc(n * sizeof *t->grad);
  t->param_bf16 = calloc(n, sizeof *t->param_bf16);
  if (exp_avg) {
    t->exp_avg = malloc(n * sizeof *t->exp_avg);
    t->exp_avg_sq = malloc(n * sizeof *t->exp_avg_sq);
  }
  if (!t->numel || !t->param || !t->grad || !t->param_bf16 || (exp_avg && (!t->exp_avg || !t->exp_avg_sq))) {
    kn_param_table_free(t);
    return dpo_fail(err, DPO_ERR_DATA, "parameter table: out of memory for %d tensors", count);
  }
  memcpy(t->numel, numel, n * sizeof *t->numel);
  memcpy(t->param, param, n * sizeof *t->param);
  memcpy(t->grad, grad, n * sizeof *t->grad);
  if (param_bf16) memcpy(t->param_bf16, param_bf16, n * sizeof *t->param_bf16);
  if (exp_avg) {
    memcpy(t->exp_avg, exp_avg, n * sizeof *t->exp_avg);
    memcpy(t->exp_avg_sq, exp_avg_sq, n * sizeof *t->exp_avg_sq);
  }
  (void)ctx; /* the CPU ops need nothing more */
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    t->device = kn_cuda_param_table_create(ctx->device, count, t->numel, t->param, t->param_bf16, t->grad,
                                           t->exp_avg, t->exp_avg_sq, err);
    if (!t->device) {
      kn_param_table_free(t);
      return DPO_ERR_DATA;
    }
  }
#endif
  *out = t;
  return DPO_OK;
}

void kn_param_table_free(kn_param_table *t) {
  if (!t) return;
#ifdef DPO_HAVE_CUDA
  if (t->device) kn_cuda_param_table_free(t->device);
#endif
  free(t->numel);
  free(t->param);
  free(t->grad);
  free(t->param_bf16);
  free(t->exp_avg);
  free(t->exp_avg_sq);
  free(t);
}

int kn_param_table_count(const kn_param_table *t) { return t->count; }

void kn_multi_sum_squares(kn_ctx *ctx, float *sum_squares, const kn_param_table *t) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_multi_sum_squares(ctx->device, sum_squares, t->device);
    return;
  }
#endif
  kn_cpu_multi_sum_squares(ctx, sum_squares, t->count, t->numel, t->grad);
}

void kn_multi_scale_by(kn_ctx *ctx, const kn_param_table *t, const float *factor) {
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_multi_scale_by(ctx->device, t->device, factor);
    return;
  }
#endif
  kn_cpu_multi_scale_by(ctx, t->count, t->numel, t->grad, factor);
}

void kn_multi_adamw_update(kn_ctx *ctx, const kn_param_table *t, int64_t step, double lr, double beta1,
                           double beta2, double eps, double weight_decay) {
  if (!t->exp_avg) return;
#ifdef DPO_HAVE_CUDA
  if (ctx->backend == KN_BACKEND_CUDA) {
    kn_cuda_multi_adamw_update(ctx->device, t->device, step, lr, beta1, beta2, eps, weight_decay);
    return;
  }
#endif
  kn_cpu_multi_adamw_update(ctx, t->count, t->numel, t->param, t->param_bf16, t->grad, t->exp_avg, t->exp_avg_sq,
                            step, lr, beta1, beta2, eps, weight_decay);
}
