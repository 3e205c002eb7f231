/* kernels/cuda: the CUDA backend of kernels/kernels.h (issue 10).
 *
 * Every kn_cuda_<op> has the signature of kn_<op> in kernels.h with the
 * context replaced by a kn_cuda_ctx, and the same conventions: forward
 * OVERWRITES its outputs, backward ACCUMULATES (+=) into every gradient and
 * skips NULL ones, outputs never alias inputs. The difference: every tensor
 * pointer is DEVICE memory (cudaMalloc / kn_cuda_malloc), and calls are
 * asynchronous on the context's stream; nothing here synchronises the host.
 *
 * Precision. The kn_cuda_<op> calls are float32 (float32 cuBLAS/cuDNN math,
 * TF32 off unless ctx->allow_tf32), so that they can be compared with the CPU
 * reference op by op. The bf16 calls (kn_cuda_*_bf16) take bf16 activations
 * and weights with float32 arithmetic and accumulation, float32 norm
 * statistics and float32 gradients of weights; AdamW and Adafactor keep
 * float32 master weights and write their bf16 copies. bf16 so far: linear,
 * convolution, attention, group norm (+SiLU), layer norm, activations,
 * GEGLU, add, upsample, concat, transpose, add_channel; split, softmax,
 * embeddings, axpy/affine and the losses are float32 only (kn_cuda_to_bf16
 * / kn_cuda_from_bf16 convert).
 *
 * Determinism: no atomics; every reduction has a fixed partition, and cuDNN
 * algorithms are picked among its deterministic ones.
 *
 * Errors: ops return nothing (as on the CPU). The first CUDA, cuBLAS or cuDNN
 * failure is recorded in the context (sticky) and reported by
 * kn_cuda_ctx_check, which synchronises; a step calls it once, at its end.
 *
 * Dispatch: kernels.h's kn_ctx carries a kn_cuda_ctx in `device` when its
 * backend is KN_BACKEND_CUDA (kn_ctx_init_backend), and each kn_<op> of
 * kernels/dispatch.c calls kn_cuda_<op> with it (compiled only with
 * DPO_HAVE_CUDA); the CPU definitions are kn_cpu_<op>. Models and trainer
 * stay backend-neutral: they allocate through kn_malloc / kn_arena_init_on
 * and cross to the host with kn_upload / kn_download. The bf16 calls are
 * reached through kernels.h's kn_<op>_bf16 (whose CPU versions, kernels/cpu/
 * bf16.c, are their reference) by a model set to bf16
 * (dpo_unet_set_precision, dpo_vae_set_precision); the optimizers get the
 * bf16 copies of such a model's weights as param_bf16.
 *
 * What stays on the device in `dpo train --backend cuda` (issue 10: the
 * whole step with no host synchronisation but the log's): the UNets'
 * parameters, gradients and activations; per micro-batch the per-sample
 * MSEs (kn_cuda_mse_per_sample_forward), the DPO loss gradient
 * (kn_cuda_dpo_loss), d pred (kn_cuda_mse_per_sample_backward) and the
 * backward; per step the gradient-norm clipping (kn_cuda_multi_sum_squares,
 * kn_cuda_clip_coefficient, kn_cuda_multi_scale_by over the optimizer's
 * table of tensors: the factor never visits the host) and the optimizer
 * with its moments (kn_cuda_multi_adamw_update; kn_cuda_adafactor_update
 * per tensor). The host uploads each micro-batch's inputs
 * (noisy latents, targets, timesteps, text states, labels: made on the host
 * from the latent cache; kn_cuda_upload waits for the stream, so that is
 * where a micro-batch meets the previous one), and downloads once per step
 * the norm and the micro-batches' MSEs, from which it computes the logged
 * loss statistics with trainer/loss.c. Checkpoints download the parameters
 * and the optimizer state (trainer/optim.c). */
#ifndef DPO_KERNELS_CUDA_H
#define DPO_KERNELS_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" { /* core.h and kernels.h are C headers without guards of their own */
#endif

#include "kernels/kernels.h"

/* ------------------------------------------------------------- context */

typedef struct {
  int device;                 /* CUDA device ordinal */
  void *stream;               /* cudaStream_t; every op runs on it */
  void *cublas;               /* cublasHandle_t */
  void *cudnn;                /* cudnnHandle_t */
  void *workspace;            /* device scratch shared by ops (cuDNN, reductions) */
  size_t workspace_bytes;
  int workspace_grows;        /* times an op had to grow it (0 when planned) */
  int allow_tf32;             /* float32 GEMMs/convolutions may use TF32 (off: exact float32) */
  int status;                 /* 0, or the first failure (sticky) */
  char message[256];          /* what failed first */
} kn_cuda_ctx;

/* 1 when the CUDA runtime sees at least one device, else 0 (never fails). */
int kn_cuda_device_count(void);
/* Creates the stream and the cuBLAS and cuDNN handles on `device`. */
int kn_cuda_ctx_init(kn_cuda_ctx *ctx, int device, dpo_error *err);
/* Makes the workspace at least `bytes` large (synchronises). */
int kn_cuda_ctx_reserve(kn_cuda_ctx *ctx, size_t bytes, dpo_error *err);
/* Waits for the stream; DPO_ERR_DATA with the first recorded failure. */
int kn_cuda_ctx_check(kn_cuda_ctx *ctx, dpo_error *err);
void kn_cuda_ctx_free(kn_cuda_ctx *ctx);
/* A short description of the device ("NVIDIA H100 80GB HBM3, sm_90, 79 GiB"). */
void kn_cuda_device_name(int device, char *buf, size_t n);

/* Device memory and copies (synchronous, for set-up and tests). */
void *kn_cuda_malloc(kn_cuda_ctx *ctx, size_t bytes);     /* zeroed; NULL + status on failure */
void kn_cuda_free(void *p);
void kn_cuda_upload(kn_cuda_ctx *ctx, void *dst, const void *src, size_t bytes);
void kn_cuda_download(kn_cuda_ctx *ctx, void *dst, const void *src, size_t bytes);
/* Device-side zeroing (asynchronous), for gradients before a step. */
void kn_cuda_zero(kn_cuda_ctx *ctx, void *p, size_t bytes);
/* Device-to-device copy (asynchronous, on the stream). */
void kn_cuda_copy(kn_cuda_ctx *ctx, void *dst, const void *src, size_t bytes);
/* Bytes of device memory in use (cudaMemGetInfo total - free) and the
 * allocator's high-water mark of this process (kn_cuda_malloc only). */
size_t kn_cuda_memory_used(void);
size_t kn_cuda_peak_allocated(void);

/* -------------------------------------------------------------- linear */

void kn_cuda_linear_forward(kn_cuda_ctx *ctx, float *out, const float *inp, const float *weight,
                            const float *bias, int N, int IC, int OC);
void kn_cuda_linear_backward(kn_cuda_ctx *ctx, float *dinp, float *dweight, float *dbias,
                             const float *dout, const float *inp, const float *weight, int N,
                             int IC, int OC);

/* bf16: out, inp, weight and dout bf16; bias float32; dinp bf16 (accumulated
 * in float32 then rounded); dweight and dbias float32 (the master
 * gradients). */
void kn_cuda_linear_forward_bf16(kn_cuda_ctx *ctx, kn_bf16 *out, const kn_bf16 *inp,
                                 const kn_bf16 *weight, const float *bias, int N, int IC, int OC);
void kn_cuda_linear_backward_bf16(kn_cuda_ctx *ctx, kn_bf16 *dinp, float *dweight, float *dbias,
                                  const kn_bf16 *dout, const kn_bf16 *inp, const kn_bf16 *weight,
                                  int N, int IC, int OC);

/* -------------------------------------------------------------- conv2d */

void kn_cuda_conv2d_forward(kn_cuda_ctx *ctx, float *out, const float *inp, const float *weight,
                            const float *bias, int B, int C, int H, int W, int OC, int K,
                            int stride, int pad);
void kn_cuda_conv2d_backward(kn_cuda_ctx *ctx, float *dinp, float *dweight, float *dbias,
                             const float *dout, const float *inp, const float *weight, int B,
                             int C, int H, int W, int OC, int K, int stride, int pad);

/* bf16: out, inp, weight, dout and dinp bf16 (cuDNN bf16 tensors, float32
 * compute); bias, dweight and dbias float32. The forward adds the bias to
 * the rounded convolution (rounded again, as linear's). dinp accumulates
 * through cuDNN's beta = 1 (blended in float32, rounded once). cuDNN cannot
 * write a float32 filter gradient from bf16 tensors: dW is made in bf16 in
 * the workspace (float32 accumulation) and added into dweight, as PyTorch
 * autocast does; the workspace holds it beside cuDNN's scratch. */
void kn_cuda_conv2d_forward_bf16(kn_cuda_ctx *ctx, kn_bf16 *out, const kn_bf16 *inp, const kn_bf16 *weight,
                                 const float *bias, int B, int C, int H, int W, int OC, int K, int stride, int pad);
void kn_cuda_conv2d_backward_bf16(kn_cuda_ctx *ctx, kn_bf16 *dinp, float *dweight, float *dbias,
                                  const kn_bf16 *dout, const kn_bf16 *inp, const kn_bf16 *weight, int B, int C,
                                  int H, int W, int OC, int K, int stride, int pad);

/* ------------------------------------------------------ normalisations */

void kn_cuda_group_norm_forward(kn_cuda_ctx *ctx, float *out, float *mean, float *rstd,
                                const float *inp, const float *gamma, const float *beta, int B,
                                int C, int HW, int G, float eps);
void kn_cuda_group_norm_backward(kn_cuda_ctx *ctx, float *dinp, float *dgamma, float *dbeta,
                                 const float *dout, const float *inp, const float *mean,
                                 const float *rstd, const float *gamma, int B, int C, int HW,
                                 int G);
/* Fused GroupNorm + SiLU: out = silu(group_norm(inp)); backward recomputes
 * the normalised value from inp, mean and rstd (nothing else is saved). */
void kn_cuda_group_norm_silu_forward(kn_cuda_ctx *ctx, float *out, float *mean, float *rstd,
                                     const float *inp, const float *gamma, const float *beta,
                                     int B, int C, int HW, int G, float eps);
void kn_cuda_group_norm_silu_backward(kn_cuda_ctx *ctx, float *dinp, float *dgamma,
                                      float *dbeta, const float *dout, const float *inp,
                                      const float *mean, const float *rstd, const float *gamma,
                                      const float *beta, int B, int C, int HW, int G);

void kn_cuda_layer_norm_forward(kn_cuda_ctx *ctx, float *out, float *mean, float *rstd,
                                const float *inp, const float *gamma, const float *beta, int N,
                                int C, float eps);
void kn_cuda_layer_norm_backward(kn_cuda_ctx *ctx, float *dinp, float *dgamma, float *dbeta,
                                 const float *dout, const float *inp, const float *mean,
                                 const float *rstd, const float *gamma, int N, int C);

/* bf16 inp, out, dout and dinp (float32 statistics, parameters and their
 * gradients); fuse_silu 0 is the plain group norm, 1 the fused SiLU. */
void kn_cuda_group_norm_silu_forward_bf16(kn_cuda_ctx *ctx, kn_bf16 *out, float *mean, float *rstd,
                                          const kn_bf16 *inp, const float *gamma, const float *beta,
                                          int B, int C, int HW, int G, float eps, int fuse_silu);
void kn_cuda_group_norm_silu_backward_bf16(kn_cuda_ctx *ctx, kn_bf16 *dinp, float *dgamma,
                                           float *dbeta, const kn_bf16 *dout, const kn_bf16 *inp,
                                           const float *mean, const float *rstd, const float *gamma,
                                           const float *beta, int B, int C, int HW, int G,
                                           int fuse_silu);
void kn_cuda_layer_norm_forward_bf16(kn_cuda_ctx *ctx, kn_bf16 *out, float *mean, float *rstd,
                                     const kn_bf16 *inp, const float *gamma, const float *beta, int N,
                                     int C, float eps);
void kn_cuda_layer_norm_backward_bf16(kn_cuda_ctx *ctx, kn_bf16 *dinp, float *dgamma, float *dbeta,
                                      const kn_bf16 *dout, const kn_bf16 *inp, const float *mean,
                                      const float *rstd, const float *gamma, int N, int C);

/* --------------------------------------------------------- activations */

void kn_cuda_activation_forward(kn_cuda_ctx *ctx, kn_activation act, float *out, const float *inp,
                                size_t n);
void kn_cuda_activation_backward(kn_cuda_ctx *ctx, kn_activation act, float *dinp,
                                 const float *dout, const float *inp, size_t n);
void kn_cuda_geglu_forward(kn_cuda_ctx *ctx, float *out, const float *inp, int N, int D);
void kn_cuda_geglu_backward(kn_cuda_ctx *ctx, float *dinp, const float *dout, const float *inp,
                            int N, int D);
void kn_cuda_softmax_forward(kn_cuda_ctx *ctx, float *out, const float *inp, int N, int C);
void kn_cuda_softmax_backward(kn_cuda_ctx *ctx, float *dinp, const float *dout, const float *out,
                              int N, int C);

/* bf16 storage, float32 arithmetic; gradients accumulated and rounded once. */
void kn_cuda_activation_forward_bf16(kn_cuda_ctx *ctx, kn_activation act, kn_bf16 *out,
                                     const kn_bf16 *inp, size_t n);
void kn_cuda_activation_backward_bf16(kn_cuda_ctx *ctx, kn_activation act, kn_bf16 *dinp,
                                      const kn_bf16 *dout, const kn_bf16 *inp, size_t n);
void kn_cuda_geglu_forward_bf16(kn_cuda_ctx *ctx, kn_bf16 *out, const kn_bf16 *inp, int N, int D);
void kn_cuda_geglu_backward_bf16(kn_cuda_ctx *ctx, kn_bf16 *dinp, const kn_bf16 *dout,
                                 const kn_bf16 *inp, int N, int D);

/* ----------------------------------------------------------- attention */

/* Flash-attention style: one pass over key tiles with an online softmax,
 * no Nq x Nk buffer; lse[B, H, Nq] saved for backward, which recomputes the
 * probabilities (dq by query rows, dk and dv by key rows: no atomics).
 * Head size D <= KN_CUDA_ATTENTION_MAX_D, forward and backward: 512 covers
 * the VAE's single 512-channel mid-block head (attention.cu states the
 * shared memory per block, within an A100's and an H100's opt-in limits). */
#define KN_CUDA_ATTENTION_MAX_D 512
void kn_cuda_attention_forward(kn_cuda_ctx *ctx, float *out, float *lse, const float *q,
                               const float *k, const float *v, int B, int H, int Nq, int Nk,
                               int D, float scale, int causal);
void kn_cuda_attention_backward(kn_cuda_ctx *ctx, float *dq, float *dk, float *dv,
                                const float *dout, const float *q, const float *k, const float *v,
                                const float *out, const float *lse, int B, int H, int Nq, int Nk,
                                int D, float scale, int causal);

/* bf16 q, k, v, out, dout and gradients (gradients accumulated in float32
 * and rounded once per call); lse float32. Head sizes D <= 160 (SD1.5's 40,
 * 80 and 160, SDXL's 64) run on tensor cores (bf16 products with float32
 * accumulation; the probabilities and dS are rounded to bf16 for their
 * products, as in FlashAttention; softmax statistics float32); larger heads
 * (the VAE's 512) on the scalar float32-arithmetic kernels. */
void kn_cuda_attention_forward_bf16(kn_cuda_ctx *ctx, kn_bf16 *out, float *lse, const kn_bf16 *q,
                                    const kn_bf16 *k, const kn_bf16 *v, int B, int H, int Nq, int Nk,
                                    int D, float scale, int causal);
void kn_cuda_attention_backward_bf16(kn_cuda_ctx *ctx, kn_bf16 *dq, kn_bf16 *dk, kn_bf16 *dv,
                                     const kn_bf16 *dout, const kn_bf16 *q, const kn_bf16 *k,
                                     const kn_bf16 *v, const kn_bf16 *out, const float *lse, int B,
                                     int H, int Nq, int Nk, int D, float scale, int causal);

/* ---------------------------------------------------- shape and routing */

void kn_cuda_upsample2x_forward(kn_cuda_ctx *ctx, float *out, const float *inp, int B, int C,
                                int H, int W);
void kn_cuda_upsample2x_backward(kn_cuda_ctx *ctx, float *dinp, const float *dout, int B, int C,
                                 int H, int W);
void kn_cuda_add_forward(kn_cuda_ctx *ctx, float *out, const float *a, const float *b, size_t n);
void kn_cuda_add_backward(kn_cuda_ctx *ctx, float *da, float *db, const float *dout, size_t n);
void kn_cuda_add_forward_bf16(kn_cuda_ctx *ctx, kn_bf16 *out, const kn_bf16 *a, const kn_bf16 *b,
                              size_t n);
void kn_cuda_add_backward_bf16(kn_cuda_ctx *ctx, kn_bf16 *da, kn_bf16 *db, const kn_bf16 *dout,
                               size_t n);
void kn_cuda_concat_forward(kn_cuda_ctx *ctx, float *out, const float *a, const float *b,
                            int outer, int Ca, int Cb, int inner);
void kn_cuda_concat_backward(kn_cuda_ctx *ctx, float *da, float *db, const float *dout, int outer,
                             int Ca, int Cb, int inner);
/* bf16 storage: copies are exact, accumulating gradients add in float32 and
 * round once. */
void kn_cuda_upsample2x_forward_bf16(kn_cuda_ctx *ctx, kn_bf16 *out, const kn_bf16 *inp, int B, int C, int H, int W);
void kn_cuda_upsample2x_backward_bf16(kn_cuda_ctx *ctx, kn_bf16 *dinp, const kn_bf16 *dout, int B, int C, int H, int W);
void kn_cuda_concat_forward_bf16(kn_cuda_ctx *ctx, kn_bf16 *out, const kn_bf16 *a, const kn_bf16 *b, int outer, int Ca,
                                 int Cb, int inner);
void kn_cuda_concat_backward_bf16(kn_cuda_ctx *ctx, kn_bf16 *da, kn_bf16 *db, const kn_bf16 *dout, int outer, int Ca,
                                  int Cb, int inner);
void kn_cuda_split_forward(kn_cuda_ctx *ctx, float *a, float *b, const float *inp, int outer,
                           int Ca, int Cb, int inner);
void kn_cuda_split_backward(kn_cuda_ctx *ctx, float *dinp, const float *da, const float *db,
                            int outer, int Ca, int Cb, int inner);

/* Layout helpers of the models (kernels.h: kn_transpose_*, kn_add_channel_*,
 * kn_axpy, kn_affine_forward). add_channel backward sums each row in double
 * in a fixed order, as the CPU does. */
void kn_cuda_transpose_forward(kn_cuda_ctx *ctx, float *out, const float *inp, int B, int C, int A);
void kn_cuda_transpose_backward(kn_cuda_ctx *ctx, float *dinp, const float *dout, int B, int C,
                                int A);
void kn_cuda_add_channel_forward(kn_cuda_ctx *ctx, float *x, const float *v, int B, int C, int HW);
void kn_cuda_add_channel_backward(kn_cuda_ctx *ctx, float *dv, const float *dx, int B, int C,
                                  int HW);
/* bf16 storage; add_channel backward sums each row in double in order, then
 * adds into dv in float32 and rounds once. */
void kn_cuda_transpose_forward_bf16(kn_cuda_ctx *ctx, kn_bf16 *out, const kn_bf16 *inp, int B, int C, int A);
void kn_cuda_transpose_backward_bf16(kn_cuda_ctx *ctx, kn_bf16 *dinp, const kn_bf16 *dout, int B, int C, int A);
void kn_cuda_add_channel_forward_bf16(kn_cuda_ctx *ctx, kn_bf16 *x, const kn_bf16 *v, int B, int C, int HW);
void kn_cuda_add_channel_backward_bf16(kn_cuda_ctx *ctx, kn_bf16 *dv, const kn_bf16 *dx, int B, int C, int HW);
void kn_cuda_axpy(kn_cuda_ctx *ctx, float *dst, float alpha, const float *src, size_t n);
void kn_cuda_affine_forward(kn_cuda_ctx *ctx, float *out, const float *inp, float a, float b,
                            size_t n);

/* ---------------------------------------------------------- embeddings */

void kn_cuda_timestep_embedding_forward(kn_cuda_ctx *ctx, float *out, const float *timesteps,
                                        int B, int dim, int flip_sin_to_cos,
                                        float downscale_freq_shift, float scale,
                                        float max_period);
void kn_cuda_timestep_embedding_backward(kn_cuda_ctx *ctx, float *dtimesteps, const float *dout,
                                         const float *timesteps, int B, int dim,
                                         int flip_sin_to_cos, float downscale_freq_shift,
                                         float scale, float max_period);
/* ids are device int32. Backward: one thread per channel walks the tokens
 * in order (as the CPU does), so repeated ids add up without atomics. */
void kn_cuda_embedding_forward(kn_cuda_ctx *ctx, float *out, const int32_t *ids, const float *wte,
                               const float *wpe, int B, int T, int C);
void kn_cuda_embedding_backward(kn_cuda_ctx *ctx, float *dwte, float *dwpe, const float *dout,
                                const int32_t *ids, int B, int T, int C);

/* ------------------------------------------------ losses and reductions */

void kn_cuda_mse_per_sample_forward(kn_cuda_ctx *ctx, float *loss, const float *pred,
                                    const float *target, int B, size_t n);
void kn_cuda_mse_per_sample_backward(kn_cuda_ctx *ctx, float *dpred, float *dtarget,
                                     const float *dloss, const float *pred, const float *target,
                                     int B, size_t n);
void kn_cuda_sum_forward(kn_cuda_ctx *ctx, float *out, const float *inp, size_t n);
void kn_cuda_sum_backward(kn_cuda_ctx *ctx, float *dinp, const float *dout, size_t n);
void kn_cuda_mean_forward(kn_cuda_ctx *ctx, float *out, const float *inp, size_t n);
void kn_cuda_mean_backward(kn_cuda_ctx *ctx, float *dinp, const float *dout, size_t n);
void kn_cuda_scale_forward(kn_cuda_ctx *ctx, float *out, const float *inp, float scale, size_t n);
void kn_cuda_scale_backward(kn_cuda_ctx *ctx, float *dinp, const float *dout, float scale,
                            size_t n);
void kn_cuda_logsigmoid_forward(kn_cuda_ctx *ctx, float *out, const float *inp, size_t n);
void kn_cuda_logsigmoid_backward(kn_cuda_ctx *ctx, float *dinp, const float *dout,
                                 const float *inp, size_t n);

/* The Diffusion-DPO loss of trainer/loss.c (dpo_loss_dpo) on the device, in
 * double, over n pairs: loss[0] = the mean loss, grad_model_w/l[n] (may be
 * NULL) = d loss / d model MSEs (overwritten: they seed the backward pass),
 * stats[4] (may be NULL) = implicit accuracy over strict pairs, mean
 * reward_w, reward_l, margin. label may be NULL (all 1). No host sync: the
 * training step uses the gradients only (its log's statistics come from the
 * MSEs, downloaded once per step); loss and stats are for callers that want
 * them on the device. */
void kn_cuda_dpo_loss(kn_cuda_ctx *ctx, float *loss, float *grad_model_w, float *grad_model_l,
                      float *stats, const float *model_w, const float *model_l,
                      const float *ref_w, const float *ref_l, const float *label, int n,
                      double beta);

/* ---------------------------------------------------------- optimizers */

/* AdamW as trainer/optim.c (torch.optim.AdamW), one fused pass: param is the
 * float32 master, param_bf16 (may be NULL) receives its rounded copy for the
 * next forward. step is the 1-based update count. */
void kn_cuda_adamw_update(kn_cuda_ctx *ctx, float *param, kn_bf16 *param_bf16, const float *grad,
                          float *exp_avg, float *exp_avg_sq, size_t n, int64_t step, double lr,
                          double beta1, double beta2, double eps, double weight_decay);

/* Adafactor as trainer/optim.c (transformers.Adafactor, external lr) in
 * fused passes. A parameter of 2+ dims is `outer` matrices of rows x cols
 * (its last two dims) with factored second moments exp_avg_sq_row[outer,
 * rows] and exp_avg_sq_col[outer, cols] (exp_avg_sq NULL); any other is
 * outer = rows = 1, cols = n with exp_avg_sq[n] (row and col NULL).
 * exp_avg is used when beta1 > 0. Takes n + outer + 1 floats and 256
 * doubles of workspace. */
void kn_cuda_adafactor_update(kn_cuda_ctx *ctx, float *param, kn_bf16 *param_bf16, const float *grad,
                              float *exp_avg, float *exp_avg_sq, float *exp_avg_sq_row,
                              float *exp_avg_sq_col, int64_t outer, int64_t rows, int64_t cols,
                              int64_t step, double lr, double eps1, double clip_threshold,
                              double decay_rate, double beta1, double weight_decay);

/* Gradient-norm clipping with the factor kept on the device (kernels.h:
 * kn_sum_squares, kn_clip_coefficient, kn_scale_by): per-tensor sums of
 * squares over a fixed grid of 256 partials (256 doubles of workspace)
 * added in order; the norm and the factor from them in one thread, in
 * order; the scaling reads the factor on the device. */
void kn_cuda_sum_squares(kn_cuda_ctx *ctx, float *out, const float *inp, size_t n);
void kn_cuda_clip_coefficient(kn_cuda_ctx *ctx, float *out, const float *sum_squares, int n,
                              double max_norm);
void kn_cuda_scale_by(kn_cuda_ctx *ctx, float *x, const float *factor, size_t n);

/* Multi-tensor clipping and AdamW (kernels.h: kn_param_table, kn_multi_*):
 * every tensor of a table in one launch per op (the sums of squares in two),
 * bit for bit the per-tensor ops above. The table is an array of {param,
 * param_bf16, grad, exp_avg, exp_avg_sq, numel, first work item} in device
 * memory, uploaded once, with the sums' partials (256 doubles per tensor)
 * beside it; the arguments are kn_param_table_create's, checked there
 * (exp_avg and exp_avg_sq both NULL: no moments, and the AdamW op does
 * nothing). Create returns NULL with err set when memory runs out. */
typedef struct kn_cuda_param_table kn_cuda_param_table;
kn_cuda_param_table *kn_cuda_param_table_create(kn_cuda_ctx *ctx, int count, const size_t *numel,
                                                float *const *param, kn_bf16 *const *param_bf16,
                                                float *const *grad, float *const *exp_avg,
                                                float *const *exp_avg_sq, dpo_error *err);
void kn_cuda_param_table_free(kn_cuda_param_table *t);
void kn_cuda_multi_sum_squares(kn_cuda_ctx *ctx, float *sum_squares, const kn_cuda_param_table *t);
void kn_cuda_multi_scale_by(kn_cuda_ctx *ctx, const kn_cuda_param_table *t, const float *factor);
void kn_cuda_multi_adamw_update(kn_cuda_ctx *ctx, const kn_cuda_param_table *t, int64_t step,
                                double lr, double beta1, double beta2, double eps,
                                double weight_decay);

/* ------------------------------------------------------ bf16 conversions */

void kn_cuda_to_bf16(kn_cuda_ctx *ctx, kn_bf16 *out, const float *inp, size_t n);
void kn_cuda_from_bf16(kn_cuda_ctx *ctx, float *out, const kn_bf16 *inp, size_t n);
/* (kn_bf16 and its host conversions are kernels.h's.) */

/* ----------------------------------------------------------------- rng */

/* dpo_rng_uniform_fill / dpo_rng_normal_fill of core/rng.c on the device:
 * the same Philox4x32-10 counter layout (counter = block index, stream;
 * key = seed), so that out[i] equals the CPU's value at index offset + i
 * (uniforms bit for bit; normals to the last float bit or two, as the
 * device's double log/cos may differ from libm's by an ulp). */
void kn_cuda_rng_uniform_fill(kn_cuda_ctx *ctx, float *out, uint64_t seed, uint64_t stream,
                              uint64_t offset, size_t n);
void kn_cuda_rng_normal_fill(kn_cuda_ctx *ctx, float *out, uint64_t seed, uint64_t stream,
                             uint64_t offset, size_t n);

#ifdef __cplusplus
}
#endif

#endif
