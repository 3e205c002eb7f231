/* kernels: tensor ops with explicit forward and backward, in the manner of
 * llm.c's CPU reference. One header, implemented by each backend (cpu/ now,
 * cuda/ later): a call takes a context, raw float pointers and the shapes.
 *
 * Conventions shared by every op.
 * - Tensors are dense, row-major float32; images are NCHW. Shapes are ints.
 * - Forward OVERWRITES its outputs.
 * - Backward ACCUMULATES (+=) into every gradient it returns, inputs and
 *   parameters alike, so that residual branches, shared weights and
 *   micro-batches add up without extra copies. Zero gradients before the
 *   first backward of a step. Any gradient pointer may be NULL: that
 *   gradient is then neither computed nor written.
 * - Outputs never alias inputs unless an op says so.
 * - Ops that need workspace take it from ctx's scratch, which the caller
 *   sizes up front (kn_ctx_reserve with the *_scratch_bytes of the largest
 *   call), so that no step allocates. An op that finds the scratch too small
 *   grows it and counts the growth in ctx->scratch_grows, which planners and
 *   tests check stays 0.
 * - Results are bitwise reproducible for a fixed thread count: every
 *   reduction runs over a fixed partition in a fixed order (no atomics).
 * - Shapes are the caller's contract and are not checked here: files and
 *   user input are validated before they reach a kernel.
 * - Backends: ctx->backend names the one that owns the pointers. Every
 *   kn_<op> below dispatches (kernels/dispatch.c): to the CPU code
 *   (kn_cpu_<op>, kernels/cpu/) or, in a build with DPO_HAVE_CUDA and a
 *   context made by kn_ctx_init_backend(KN_BACKEND_CUDA), to kn_cuda_<op>
 *   (kernels/cuda/kernels_cuda.h) on DEVICE memory, asynchronously on the
 *   context's stream. Memory that ops read or write must then come from
 *   kn_malloc / an arena of that context; kn_upload and kn_download cross
 *   to and from the host, and kn_ctx_check reports the first device
 *   failure (CUDA ops record errors; they never print). */
#ifndef DPO_KERNELS_H
#define DPO_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* ------------------------------------------------------------- context */

typedef enum { KN_BACKEND_CPU = 0, KN_BACKEND_CUDA = 1 } kn_backend;

typedef struct {
  kn_backend backend;
  int n_threads;          /* OpenMP threads */
  float *scratch;         /* workspace shared by ops, 64-byte aligned */
  size_t scratch_bytes;
  int scratch_grows;      /* times an op had to grow the scratch (0 when planned) */
  /* 3x3 stride-1 forward convolutions by Winograd F(2x2,3x3): about 1.7x
   * faster, but with several times the rounding error of im2col + sgemm,
   * enough to push a deep UNet's parameter gradients past the 1e-4 golden
   * tolerance against diffusers. Off by default, since this backend is the
   * numerical reference; `dpo bench kernels --winograd` measures it. (The
   * data gradient always uses Winograd: its error stays within tolerance.) */
  int winograd_forward;
  void *device;           /* KN_BACKEND_CUDA: its kn_cuda_ctx (owned); else NULL */
} kn_ctx;

/* n_threads <= 0 takes the OpenMP default (OMP_NUM_THREADS or the cores).
 * All threading is OpenMP's: the CPU backend sets OpenBLAS to one thread
 * (process-wide) and splits its matrix products itself, because OpenBLAS's
 * pool and OpenMP's spinning on the same cores slow each other down. */
int kn_ctx_init(kn_ctx *ctx, int n_threads, dpo_error *err);
/* Makes the scratch at least `bytes` large (the one allowed allocation). */
int kn_ctx_reserve(kn_ctx *ctx, size_t bytes, dpo_error *err);
void kn_ctx_free(kn_ctx *ctx);
/* A context on `backend`: KN_BACKEND_CPU is kn_ctx_init; KN_BACKEND_CUDA
 * opens CUDA device 0 (its stream, cuBLAS and cuDNN handles) and fails with
 * DPO_ERR_USAGE in a build without the CUDA backend, DPO_ERR_DATA when no
 * device is visible or it cannot be opened. n_threads still sets the host
 * threads (the CPU work around the ops). */
int kn_ctx_init_backend(kn_ctx *ctx, kn_backend backend, int n_threads, dpo_error *err);
/* Waits for the context's device work and reports its first failure
 * (DPO_ERR_DATA); always DPO_OK on the CPU. */
int kn_ctx_check(kn_ctx *ctx, dpo_error *err);
/* 1 when this build has the CUDA backend (DPO_HAVE_CUDA). */
int kn_have_cuda(void);
/* CUDA devices visible to this process (0 without the backend; never fails). */
int kn_cuda_visible_devices(void);
/* "cpu" or "cuda". */
const char *kn_backend_name(kn_backend backend);
/* The backend a `--backend NAME` asks for: "cpu"; "cuda", which fails with
 * DPO_ERR_USAGE in a build without it and DPO_ERR_DATA on a machine without
 * a device; "auto" (or NULL), which is cuda when the build has it and a
 * device is visible, else cpu. Anything else is a usage error naming the
 * choices. */
int kn_backend_resolve(const char *name, kn_backend *out, dpo_error *err);
/* What computes, for logs: "cpu (8 threads)" or "cuda (the GPU's name, sm_XY, memory)". */
void kn_ctx_describe(const kn_ctx *ctx, char *buf, size_t n);
/* TF32 tensor-core math for the float32 GEMMs and convolutions of a CUDA
 * context (products with a 10-bit mantissa, float32 sums): faster, but no
 * longer the CPU's results to float rounding, so off by default. Nothing on
 * the CPU. */
void kn_ctx_set_tf32(kn_ctx *ctx, int on);
/* Bytes of device memory in use now (cudaMemGetInfo: this process and any
 * other on the device) for a CUDA context; 0 on the CPU. */
size_t kn_ctx_device_memory(const kn_ctx *ctx);
/* Scratch of at least `bytes`, grown (and counted) if it is not. Never NULL
 * unless memory is exhausted. */
float *kn_ctx_scratch(kn_ctx *ctx, size_t bytes);

/* --------------------------------------------------- bf16 storage */

/* bfloat16 as its bit pattern (the top half of a float32), so that C code
 * can hold and move it; CUDA code reinterprets it as __nv_bfloat16. */
typedef uint16_t kn_bf16;

/* What a model's activations are stored as (models.h: dpo_unet_set_precision). */
typedef enum { KN_F32 = 0, KN_BF16 = 1 } kn_dtype;

/* Bytes of one element. */
size_t kn_dtype_size(kn_dtype dtype);
/* "float32" or "bf16". */
const char *kn_dtype_name(kn_dtype dtype);
/* The precision a `--precision NAME` asks for: "float32" (or "fp32", and
 * NULL: the default) or "bf16"; anything else is a usage error naming the
 * choices. */
int kn_dtype_resolve(const char *name, kn_dtype *out, dpo_error *err);
/* Host conversions: round to nearest even (NaN stays a quiet NaN), as the
 * device's __float2bfloat16_rn; widening is exact. */
kn_bf16 kn_bf16_from_float(float x);
float kn_bf16_to_float(kn_bf16 x);

/* Conversions of ctx's memory over n values. */
void kn_to_bf16(kn_ctx *ctx, kn_bf16 *out, const float *inp, size_t n);
void kn_from_bf16(kn_ctx *ctx, float *out, const kn_bf16 *inp, size_t n);

/* --------------------------------------------------- backend memory */

/* Memory of ctx's backend: host memory on the CPU (64-byte aligned), device
 * memory under CUDA. kn_malloc zeroes it and returns NULL when it cannot
 * allocate (under CUDA the failure is also recorded for kn_ctx_check).
 * kn_free takes the backend, not the context, so that a model can free its
 * memory after the context is gone (CUDA's free needs no handle). */
void *kn_malloc(kn_ctx *ctx, size_t bytes);
void kn_free(kn_backend backend, void *p);
/* Sets bytes to zero (asynchronous on the device). */
void kn_zero(kn_ctx *ctx, void *p, size_t bytes);
/* Copies within the backend's memory (asynchronous on the device). */
void kn_copy(kn_ctx *ctx, void *dst, const void *src, size_t bytes);
/* Host -> backend and backend -> host (synchronous: the host buffer may be
 * reused on return). On the CPU both are memcpy. */
void kn_upload(kn_ctx *ctx, void *dst, const void *host_src, size_t bytes);
void kn_download(kn_ctx *ctx, void *host_dst, const void *src, size_t bytes);

/* --------------------------------------------------------------- arena */

/* A bump arena: parameters, gradients and activations are planned up front
 * (sum of kn_arena_bytes of every tensor), allocated once, and handed out
 * in order. Nothing is freed singly; reset reuses the whole block. */
typedef struct {
  uint8_t *base;
  size_t size;
  size_t used;
  kn_backend backend;   /* whose memory base is (kn_arena_init: the CPU) */
} kn_arena;

#define KN_ALIGN 64
/* Bytes that a tensor of n floats takes in an arena (rounded to KN_ALIGN). */
size_t kn_arena_bytes(size_t n_floats);
int kn_arena_init(kn_arena *a, size_t bytes, dpo_error *err);
/* The same in the memory of ctx's backend (kn_malloc). */
int kn_arena_init_on(kn_arena *a, kn_ctx *ctx, size_t bytes, dpo_error *err);
/* n floats, 64-byte aligned; NULL when the plan was too small. The block is
 * zeroed once by init; a reset hands the same memory out again as it was
 * left (a step zeroes its gradients itself), so handing out costs nothing. */
float *kn_arena_floats(kn_arena *a, size_t n_floats);
void kn_arena_reset(kn_arena *a);
void kn_arena_free(kn_arena *a);

/* -------------------------------------------------------------- linear */

/* out[N, OC] = inp[N, IC] . weight[OC, IC]^T + bias[OC] (bias may be NULL),
 * PyTorch's nn.Linear layout. */
void kn_linear_forward(kn_ctx *ctx, float *out, const float *inp, const float *weight,
                       const float *bias, int N, int IC, int OC);
void kn_linear_backward(kn_ctx *ctx, float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, int N, int IC, int OC);

/* -------------------------------------------------------------- conv2d */

/* out[B, OC, Ho, Wo] from inp[B, C, H, W], weight[OC, C, K, K], bias[OC]
 * (may be NULL); Ho = (H + 2 pad - K) / stride + 1, likewise Wo. 3x3
 * stride-1 convolutions use Winograd F(2x2, 3x3) for the output and the
 * data gradient (float results differ from the direct sum by a few ulps). */
int kn_conv2d_out_size(int in_size, int K, int stride, int pad);
size_t kn_conv2d_scratch_bytes(int C, int H, int W, int OC, int K, int stride, int pad);
void kn_conv2d_forward(kn_ctx *ctx, float *out, const float *inp, const float *weight,
                       const float *bias, int B, int C, int H, int W, int OC, int K, int stride,
                       int pad);
void kn_conv2d_backward(kn_ctx *ctx, float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, int B, int C, int H, int W, int OC,
                        int K, int stride, int pad);

/* ------------------------------------------------------ normalisations */

/* Group norm over inp[B, C, HW] with G groups (C % G == 0), biased variance,
 * eps inside the square root, per-channel gamma/beta. mean and rstd [B, G]
 * are saved by forward for backward. */
void kn_group_norm_forward(kn_ctx *ctx, float *out, float *mean, float *rstd, const float *inp,
                           const float *gamma, const float *beta, int B, int C, int HW, int G,
                           float eps);
void kn_group_norm_backward(kn_ctx *ctx, float *dinp, float *dgamma, float *dbeta,
                            const float *dout, const float *inp, const float *mean,
                            const float *rstd, const float *gamma, int B, int C, int HW, int G);

/* Layer norm over the last dimension of inp[N, C]; mean and rstd [N].
 * Backward takes kn_layer_norm_scratch_bytes of scratch when it returns
 * dgamma or dbeta (per-chunk partial sums). */
size_t kn_layer_norm_scratch_bytes(int N, int C);
void kn_layer_norm_forward(kn_ctx *ctx, float *out, float *mean, float *rstd, const float *inp,
                           const float *gamma, const float *beta, int N, int C, float eps);
void kn_layer_norm_backward(kn_ctx *ctx, float *dinp, float *dgamma, float *dbeta,
                            const float *dout, const float *inp, const float *mean,
                            const float *rstd, const float *gamma, int N, int C);

/* --------------------------------------------------------- activations */

/* Elementwise over n values; backward reads the forward input. */
typedef enum {
  KN_ACT_SILU = 0,        /* x * sigmoid(x) */
  KN_ACT_GELU,            /* x * Phi(x), with erf (PyTorch's default) */
  KN_ACT_GELU_TANH,       /* PyTorch's approximate="tanh" */
  KN_ACT_QUICK_GELU,      /* x * sigmoid(1.702 x), CLIP's */
} kn_activation;

void kn_activation_forward(kn_ctx *ctx, kn_activation act, float *out, const float *inp, size_t n);
void kn_activation_backward(kn_ctx *ctx, kn_activation act, float *dinp, const float *dout,
                            const float *inp, size_t n);

/* GEGLU as diffusers: inp[N, 2D] is the projection; its first half is the
 * hidden value, the second the gate: out[N, D] = hidden * gelu(gate). */
void kn_geglu_forward(kn_ctx *ctx, float *out, const float *inp, int N, int D);
void kn_geglu_backward(kn_ctx *ctx, float *dinp, const float *dout, const float *inp, int N, int D);

/* Softmax over the last dimension of inp[N, C]; backward reads the output. */
void kn_softmax_forward(kn_ctx *ctx, float *out, const float *inp, int N, int C);
void kn_softmax_backward(kn_ctx *ctx, float *dinp, const float *dout, const float *out, int N, int C);

/* ----------------------------------------------------------- attention */

/* Scaled dot-product attention, multi-head, heads interleaved as the linear
 * projections produce them: q[B, Nq, H*D], k and v[B, Nk, H*D],
 * out[B, Nq, H*D]. out = softmax(scale q k^T [+ causal mask]) v per head.
 * causal masks key j > query i (PyTorch's is_causal, top-left aligned).
 * Forward works on tiles of queries x keys with an online softmax
 * (flash-attention style), so its workspace is a few tiles per thread,
 * whatever Nq and Nk; it saves lse[B, H, Nq] (log-sum-exp of each row) and
 * backward recomputes the probabilities from it tile by tile. */
size_t kn_attention_scratch_bytes(int ctx_threads, int Nq, int Nk);
void kn_attention_forward(kn_ctx *ctx, float *out, float *lse, const float *q, const float *k,
                          const float *v, int B, int H, int Nq, int Nk, int D, float scale,
                          int causal);
void kn_attention_backward(kn_ctx *ctx, float *dq, float *dk, float *dv, const float *dout,
                           const float *q, const float *k, const float *v, const float *out,
                           const float *lse, int B, int H, int Nq, int Nk, int D, float scale,
                           int causal);

/* ---------------------------------------------------- shape and routing */

/* Nearest-neighbour 2x upsample: inp[B, C, H, W] -> out[B, C, 2H, 2W]. */
void kn_upsample2x_forward(kn_ctx *ctx, float *out, const float *inp, int B, int C, int H, int W);
void kn_upsample2x_backward(kn_ctx *ctx, float *dinp, const float *dout, int B, int C, int H, int W);

/* out = a + b over n values (the residual connection). */
void kn_add_forward(kn_ctx *ctx, float *out, const float *a, const float *b, size_t n);
void kn_add_backward(kn_ctx *ctx, float *da, float *db, const float *dout, size_t n);

/* Concatenation along a middle axis: a[outer, Ca, inner] and
 * b[outer, Cb, inner] -> out[outer, Ca + Cb, inner]. Channel concat of NCHW
 * is outer = B, inner = H*W; last-dimension concat is inner = 1. */
void kn_concat_forward(kn_ctx *ctx, float *out, const float *a, const float *b, int outer, int Ca,
                       int Cb, int inner);
void kn_concat_backward(kn_ctx *ctx, float *da, float *db, const float *dout, int outer, int Ca,
                        int Cb, int inner);
/* The inverse: inp[outer, Ca + Cb, inner] -> a[outer, Ca, inner], b[outer, Cb, inner]. */
void kn_split_forward(kn_ctx *ctx, float *a, float *b, const float *inp, int outer, int Ca, int Cb,
                      int inner);
void kn_split_backward(kn_ctx *ctx, float *dinp, const float *da, const float *db, int outer,
                       int Ca, int Cb, int inner);

/* Layout and broadcast helpers of the models (as plain loops they would
 * touch device memory from the host).
 * transpose: out[B, A, C] = inp[B, C, A] (NCHW <-> tokens); backward
 * accumulates the transposed gradient into dinp[B, C, A]. */
void kn_transpose_forward(kn_ctx *ctx, float *out, const float *inp, int B, int C, int A);
void kn_transpose_backward(kn_ctx *ctx, float *dinp, const float *dout, int B, int C, int A);
/* x[B, C, HW] += v[B, C] broadcast over HW (in place); backward:
 * dv[b, c] += sum over HW of dx[b, c, :] (summed in double, in order). */
void kn_add_channel_forward(kn_ctx *ctx, float *x, const float *v, int B, int C, int HW);
void kn_add_channel_backward(kn_ctx *ctx, float *dv, const float *dx, int B, int C, int HW);
/* dst += alpha * src over n values (alpha 1 is a plain accumulation). */
void kn_axpy(kn_ctx *ctx, float *dst, float alpha, const float *src, size_t n);
/* out = a * inp + b over n values (diffusers' center_input_sample: 2x - 1). */
void kn_affine_forward(kn_ctx *ctx, float *out, const float *inp, float a, float b, size_t n);

/* ---------------------------------------------------------- embeddings */

/* Sinusoidal timestep embedding exactly as diffusers' get_timestep_embedding:
 * half = dim / 2, freq_i = exp(-ln(max_period) i / (half - shift)),
 * arg = scale * t * freq_i, out = [sin(arg), cos(arg)] ([cos, sin] when
 * flip_sin_to_cos), zero-padded by one column when dim is odd.
 * timesteps[B] -> out[B, dim]. Backward gives d/dt (for completeness; the
 * timestep is usually not trained). */
void kn_timestep_embedding_forward(kn_ctx *ctx, float *out, const float *timesteps, int B, int dim,
                                   int flip_sin_to_cos, float downscale_freq_shift, float scale,
                                   float max_period);
void kn_timestep_embedding_backward(kn_ctx *ctx, float *dtimesteps, const float *dout,
                                    const float *timesteps, int B, int dim, int flip_sin_to_cos,
                                    float downscale_freq_shift, float scale, float max_period);

/* Token and position embedding (llm.c's encoder): out[B, T, C] =
 * wte[ids[b, t]] + wpe[t]; wpe may be NULL (a plain lookup). ids are
 * trusted to lie in [0, V) (the tokenizer checks). */
void kn_embedding_forward(kn_ctx *ctx, float *out, const int32_t *ids, const float *wte,
                          const float *wpe, int B, int T, int C);
void kn_embedding_backward(kn_ctx *ctx, float *dwte, float *dwpe, const float *dout,
                           const int32_t *ids, int B, int T, int C);

/* ------------------------------------------------ losses and reductions */

/* Mean squared error per sample: loss[b] = mean over n of (pred - target)^2
 * for pred, target[B, n]. */
void kn_mse_per_sample_forward(kn_ctx *ctx, float *loss, const float *pred, const float *target,
                               int B, size_t n);
void kn_mse_per_sample_backward(kn_ctx *ctx, float *dpred, float *dtarget, const float *dloss,
                                const float *pred, const float *target, int B, size_t n);

/* Sum and mean of n values into *out; summed in double over fixed chunks,
 * so the result does not depend on the thread count. */
void kn_sum_forward(kn_ctx *ctx, float *out, const float *inp, size_t n);
void kn_sum_backward(kn_ctx *ctx, float *dinp, const float *dout, size_t n);
void kn_mean_forward(kn_ctx *ctx, float *out, const float *inp, size_t n);
void kn_mean_backward(kn_ctx *ctx, float *dinp, const float *dout, size_t n);

/* out = scale * inp elementwise (the loss's beta and sign). */
void kn_scale_forward(kn_ctx *ctx, float *out, const float *inp, float scale, size_t n);
void kn_scale_backward(kn_ctx *ctx, float *dinp, const float *dout, float scale, size_t n);

/* log(sigmoid(x)), computed without overflow (Diffusion-DPO's loss). */
void kn_logsigmoid_forward(kn_ctx *ctx, float *out, const float *inp, size_t n);
void kn_logsigmoid_backward(kn_ctx *ctx, float *dinp, const float *dout, const float *inp, size_t n);

/* ------------------------------------- training step: loss, clip, update */

/* What a training step needs so that its loss, gradient clipping and
 * optimizer stay in the backend's memory (trainer/train_step.c and
 * trainer/optim.c on a device): the host then reads a few scalars per step,
 * for the log, instead of every gradient. Each mirrors trainer code
 * operation by operation; the CPU versions of the loss and the optimizers
 * are that code's arithmetic in the same order, so that a CPU context
 * running them gives the trainer's host results bit for bit; the clipping
 * norm sums per tensor (as torch does), so it matches the host's to float
 * rounding (tests/unit/test_kernels_train_ops.c). */

/* The Diffusion-DPO loss of trainer/loss.c (dpo_loss_dpo) over n pairs, in
 * double: loss[0] = the mean loss; grad_model_w/l[n] (may be NULL) =
 * d loss / d model MSEs (OVERWRITTEN: they seed the backward pass); stats[4]
 * (may be NULL) = implicit accuracy over strict pairs, mean reward_w,
 * reward_l, margin. label may be NULL (all 1). Inputs are not checked (the
 * trainer checks the MSEs it downloads for its log). */
void kn_dpo_loss(kn_ctx *ctx, float *loss, float *grad_model_w, float *grad_model_l, float *stats,
                 const float *model_w, const float *model_l, const float *ref_w, const float *ref_l,
                 const float *label, int n, double beta);

/* out[0] = sum of inp[i]^2 over n values, in double over a fixed partition,
 * rounded once (a gradient's share of the clipping norm). */
void kn_sum_squares(kn_ctx *ctx, float *out, const float *inp, size_t n);
/* Gradient-norm clipping as torch.nn.utils.clip_grad_norm_ (and
 * trainer/optim.c): from the n per-tensor sums of squares, in order in
 * double, out[0] = the total norm and out[1] = the factor to scale every
 * gradient by: (float)(max_norm / (norm + 1e-6)) when that is below 1 and
 * max_norm > 0, else exactly 1. */
void kn_clip_coefficient(kn_ctx *ctx, float *out, const float *sum_squares, int n, double max_norm);
/* x[i] *= factor[0] over n values, factor a one-float tensor of ctx's memory
 * (so the host never reads it); nothing is touched when it is exactly 1. */
void kn_scale_by(kn_ctx *ctx, float *x, const float *factor, size_t n);

/* One AdamW update of a parameter as trainer/optim.c (torch.optim.AdamW):
 * step is the 1-based update count; scalars are computed in double.
 * param_bf16 (may be NULL) receives the updated value rounded to bf16: the
 * copy a bf16 model's forward reads (kn_dtype). */
void kn_adamw_update(kn_ctx *ctx, float *param, kn_bf16 *param_bf16, const float *grad,
                     float *exp_avg, float *exp_avg_sq, size_t n, int64_t step, double lr, double beta1, double beta2, double eps,
                     double weight_decay);
/* One Adafactor update as trainer/optim.c (transformers.Adafactor with an
 * external lr). A parameter of 2+ dims is `outer` matrices of rows x cols
 * with factored moments exp_avg_sq_row[outer, rows], exp_avg_sq_col[outer,
 * cols] (exp_avg_sq NULL); any other is outer = rows = 1, cols = n with
 * exp_avg_sq[n] (row and col NULL). exp_avg is read when beta1 > 0;
 * param_bf16 as for AdamW. Takes n + outer + 1 floats (and on a device 256 doubles) of scratch. */
void kn_adafactor_update(kn_ctx *ctx, float *param, kn_bf16 *param_bf16, const float *grad,
                         float *exp_avg, float *exp_avg_sq, float *exp_avg_sq_row,
                         float *exp_avg_sq_col, int64_t outer, int64_t rows, int64_t cols,
                         int64_t step, double lr, double eps1, double clip_threshold,
                         double decay_rate, double beta1, double weight_decay);

/* Multi-tensor (foreach) versions of the clipping and AdamW ops over a
 * model's parameter tensors, in a constant number of launches per step on a
 * device instead of about four per tensor. Each gives, for every tensor,
 * BITWISE what the per-tensor op above gives for it: on the CPU they loop
 * over the same code; on CUDA they run the per-tensor kernels' arithmetic
 * (the same device functions) over the same reduction partition per tensor,
 * all tensors in one grid (tests/unit/test_kernels_train_ops.c and
 * tests/device/test_cuda_models.c compare them).
 *
 * A kn_param_table lists the tensors once (made at optimizer set-up, not
 * per step): count entries; entry i is numel[i] values of param[i], its
 * gradient grad[i], its AdamW moments exp_avg[i], exp_avg_sq[i] and its
 * bf16 copy param_bf16[i], all in ctx's memory. exp_avg and exp_avg_sq are
 * both arrays or both NULL (a table for clipping only); param_bf16 may be
 * NULL, and so may any of its entries. The arrays are copied (on a device
 * into a table in device memory, uploaded once here: synchronous), the
 * tensors borrowed. Fails with DPO_ERR_USAGE for count < 1 or a missing
 * array or entry, DPO_ERR_DATA when memory runs out. On a device the table
 * also holds the sums' partials (256 doubles per tensor), so the ops take
 * no workspace. */
typedef struct kn_param_table kn_param_table;
int kn_param_table_create(kn_ctx *ctx, int count, const size_t *numel, float *const *param,
                          kn_bf16 *const *param_bf16, float *const *grad, float *const *exp_avg,
                          float *const *exp_avg_sq, kn_param_table **out, dpo_error *err);
/* Frees the table (not its tensors); NULL is fine. Like kn_free it needs no
 * context, so it may follow kn_ctx_free. */
void kn_param_table_free(kn_param_table *t);
/* Its entry count. */
int kn_param_table_count(const kn_param_table *t);
/* sum_squares[count] (ctx's memory): entry i's value is kn_sum_squares of
 * grad[i], bit for bit. */
void kn_multi_sum_squares(kn_ctx *ctx, float *sum_squares, const kn_param_table *t);
/* Every gradient *= factor[0] as kn_scale_by (factor in ctx's memory;
 * nothing is touched when it is exactly 1). */
void kn_multi_scale_by(kn_ctx *ctx, const kn_param_table *t, const float *factor);
/* kn_adamw_update of every entry with these scalars (param_bf16[i], when
 * there, rewritten). The table must hold moments: one without them is the
 * caller's error and nothing is done. */
void kn_multi_adamw_update(kn_ctx *ctx, const kn_param_table *t, int64_t step, double lr,
                           double beta1, double beta2, double eps, double weight_decay);

/* ------------------------------------------------- bf16 mixed precision */

/* The ops of a model stored in bf16 (models.h: dpo_unet_set_precision).
 * Activations (inputs, outputs and their gradients) are bf16 storage; all
 * arithmetic and accumulation is float32, and each output is rounded once
 * (to nearest even). A bf16 gradient that backward accumulates into is
 * read, added to in float32 and rounded once per call. The weights of
 * linear and conv layers are bf16 (the copies the optimizer writes beside
 * its float32 masters); biases, norm scales and shifts, saved statistics
 * (mean, rstd, lse) and every parameter gradient are float32. Shapes and
 * the other conventions are those of the float32 op of the same name.
 *
 * The CPU versions define the numerics: they widen the bf16 inputs to
 * float32, run the float32 CPU op and round its outputs. They are the
 * reference of the CUDA kernels (tests/device) and let the bf16 model path
 * run in the suite, not a fast path: each call allocates its float32
 * working copies (and aborts when memory is exhausted). */
void kn_linear_forward_bf16(kn_ctx *ctx, kn_bf16 *out, const kn_bf16 *inp, const kn_bf16 *weight,
                            const float *bias, int N, int IC, int OC);
void kn_linear_backward_bf16(kn_ctx *ctx, kn_bf16 *dinp, float *dweight, float *dbias,
                             const kn_bf16 *dout, const kn_bf16 *inp, const kn_bf16 *weight, int N,
                             int IC, int OC);
void kn_conv2d_forward_bf16(kn_ctx *ctx, kn_bf16 *out, const kn_bf16 *inp, const kn_bf16 *weight,
                            const float *bias, int B, int C, int H, int W, int OC, int K, int stride,
                            int pad);
void kn_conv2d_backward_bf16(kn_ctx *ctx, kn_bf16 *dinp, float *dweight, float *dbias,
                             const kn_bf16 *dout, const kn_bf16 *inp, const kn_bf16 *weight, int B,
                             int C, int H, int W, int OC, int K, int stride, int pad);
/* Group norm, followed by SiLU when fuse_silu is set (out = silu(gn(inp)),
 * nothing else saved: backward recomputes the normalised value). */
void kn_group_norm_forward_bf16(kn_ctx *ctx, kn_bf16 *out, float *mean, float *rstd,
                                const kn_bf16 *inp, const float *gamma, const float *beta, int B,
                                int C, int HW, int G, float eps, int fuse_silu);
void kn_group_norm_backward_bf16(kn_ctx *ctx, kn_bf16 *dinp, float *dgamma, float *dbeta,
                                 const kn_bf16 *dout, const kn_bf16 *inp, const float *mean,
                                 const float *rstd, const float *gamma, const float *beta, int B,
                                 int C, int HW, int G, int fuse_silu);
void kn_layer_norm_forward_bf16(kn_ctx *ctx, kn_bf16 *out, float *mean, float *rstd,
                                const kn_bf16 *inp, const float *gamma, const float *beta, int N,
                                int C, float eps);
void kn_layer_norm_backward_bf16(kn_ctx *ctx, kn_bf16 *dinp, float *dgamma, float *dbeta,
                                 const kn_bf16 *dout, const kn_bf16 *inp, const float *mean,
                                 const float *rstd, const float *gamma, int N, int C);
void kn_activation_forward_bf16(kn_ctx *ctx, kn_activation act, kn_bf16 *out, const kn_bf16 *inp,
                                size_t n);
void kn_activation_backward_bf16(kn_ctx *ctx, kn_activation act, kn_bf16 *dinp,
                                 const kn_bf16 *dout, const kn_bf16 *inp, size_t n);
void kn_geglu_forward_bf16(kn_ctx *ctx, kn_bf16 *out, const kn_bf16 *inp, int N, int D);
void kn_geglu_backward_bf16(kn_ctx *ctx, kn_bf16 *dinp, const kn_bf16 *dout, const kn_bf16 *inp,
                            int N, int D);
void kn_attention_forward_bf16(kn_ctx *ctx, kn_bf16 *out, float *lse, const kn_bf16 *q,
                               const kn_bf16 *k, const kn_bf16 *v, int B, int H, int Nq, int Nk,
                               int D, float scale, int causal);
void kn_attention_backward_bf16(kn_ctx *ctx, kn_bf16 *dq, kn_bf16 *dk, kn_bf16 *dv,
                                const kn_bf16 *dout, const kn_bf16 *q, const kn_bf16 *k,
                                const kn_bf16 *v, const kn_bf16 *out, const float *lse, int B,
                                int H, int Nq, int Nk, int D, float scale, int causal);
void kn_upsample2x_forward_bf16(kn_ctx *ctx, kn_bf16 *out, const kn_bf16 *inp, int B, int C, int H,
                                int W);
void kn_upsample2x_backward_bf16(kn_ctx *ctx, kn_bf16 *dinp, const kn_bf16 *dout, int B, int C,
                                 int H, int W);
void kn_add_forward_bf16(kn_ctx *ctx, kn_bf16 *out, const kn_bf16 *a, const kn_bf16 *b, size_t n);
void kn_add_backward_bf16(kn_ctx *ctx, kn_bf16 *da, kn_bf16 *db, const kn_bf16 *dout, size_t n);
void kn_concat_forward_bf16(kn_ctx *ctx, kn_bf16 *out, const kn_bf16 *a, const kn_bf16 *b,
                            int outer, int Ca, int Cb, int inner);
void kn_concat_backward_bf16(kn_ctx *ctx, kn_bf16 *da, kn_bf16 *db, const kn_bf16 *dout, int outer,
                             int Ca, int Cb, int inner);
void kn_transpose_forward_bf16(kn_ctx *ctx, kn_bf16 *out, const kn_bf16 *inp, int B, int C, int A);
void kn_transpose_backward_bf16(kn_ctx *ctx, kn_bf16 *dinp, const kn_bf16 *dout, int B, int C,
                                int A);
void kn_add_channel_forward_bf16(kn_ctx *ctx, kn_bf16 *x, const kn_bf16 *v, int B, int C, int HW);
void kn_add_channel_backward_bf16(kn_ctx *ctx, kn_bf16 *dv, const kn_bf16 *dx, int B, int C, int HW);

/* ----------------------------------------------------------- benchmark */

/* One timed op at one shape: the median and the minimum of `repeat` runs
 * after a warm-up. */
typedef struct {
  char name[64];       /* e.g. "conv3x3_fwd" */
  char shape[96];      /* human-readable shape */
  double flops;        /* per call */
  double seconds;      /* median */
  double min_seconds;  /* fastest call: the steadier figure on a shared machine */
  double gflops;       /* from the median */
  int threads;         /* the thread count it ran with */
} kn_bench_result;

typedef struct {
  int n_threads;       /* <= 0: the OpenMP default */
  int repeat;          /* timed calls per case, 1..1000 */
  int quick;           /* tiny shapes (for tests) */
  int cpu_time;        /* time with the process CPU clock instead of the wall
                          clock: with one thread, immune to other jobs on the
                          machine; with more it also counts waiting threads */
  const char *only;    /* NULL, or the one case to run */
  int winograd;        /* sets kn_ctx.winograd_forward for the run */
} kn_bench_options;

/* Runs the kernel benchmark at SD1.5 shapes: sgemm first (the reference
 * GFLOP/s of this machine in this run), then each op; an unknown `only` is
 * a usage error. Fills up to max_results; returns how many, or -1 on
 * failure with err set. */
int kn_bench_run(const kn_bench_options *options, kn_bench_result *results, int max_results,
                 dpo_error *err);
/* The names of the cases, in order, for --list; returns how many. */
int kn_bench_case_names(int quick, const char **names, int max_names);

#endif
