/* models: the Stable Diffusion networks in diffusers' layouts, on the kernels.
 *
 * - UNet2DConditionModel (SD1.x/SD2.x configs): forward and backward, with a
 *   gradient for every parameter.
 * - CLIPTextModel (transformers): forward and backward.
 * - AutoencoderKL: encode and decode (forward only).
 *
 * Each model is read from a diffusers/transformers folder (config.json and
 * the weights as .safetensors, F32, F16 or BF16 stored; tensor names exactly
 * as those libraries write them) and written back in the same layout.
 * Configs are checked key by key: a key the code does not know, or a known
 * key with a value it does not implement, is refused by name, so that a
 * checkpoint is never run as a different network.
 *
 * Use. Load, then plan for a batch size and resolution (this allocates every
 * activation, and with train=1 their gradients, once), then call forward and
 * backward as often as needed: they allocate nothing. Outputs live inside the
 * model until the next forward. Backward ACCUMULATES into the parameter
 * gradients (zero them with *_zero_grads first), following kernels.h.
 *
 * Backends. The context given to plan decides where the model computes.
 * Parameters are loaded, initialised and saved through a host block; the
 * first plan on a CUDA context places them (and their gradients) on the
 * device, and the model then keeps using that context (it must outlive the
 * model's use). From then on every tensor pointer that forward and backward
 * take or return, and dpo_param's data and grad, are in the memory of the
 * context's backend (device memory under CUDA: kn_upload / kn_download
 * cross to the host); the one exception is CLIP's token ids, which are host
 * int32 (checked, then uploaded). Save writes the device values (fetched
 * into the host block first). The VAE decodes on any backend (its latents
 * and image in the context's memory) but encodes on a CPU context in
 * float32 only (see dpo_vae_plan). On the CPU nothing is copied and results
 * are those of the CPU kernels. */
#ifndef DPO_MODELS_H
#define DPO_MODELS_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "kernels/kernels.h"

/* Largest config.json accepted. */
#define DPO_MODEL_CONFIG_MAX_BYTES (1u << 20)

/* One parameter as the checkpoint names it; data and grad point into the
 * model (grad is NULL until a plan with train=1). */
typedef struct {
  const char *name;
  int ndim;
  const int64_t *shape;
  size_t numel;
  float *data;          /* NULL for the weights of a frozen bf16 model on a device */
  float *grad;
  kn_bf16 *data_bf16;   /* a bf16 model's weights (2+ dims): the copy its kernels read */
} dpo_param;

/* ----------------------------------------------------------------- UNet */

#define DPO_UNET_MAX_BLOCKS 8

typedef struct {
  int in_channels, out_channels;
  int sample_size;                  /* 0 when null */
  int n_blocks;
  int block_out_channels[DPO_UNET_MAX_BLOCKS];
  int layers_per_block[DPO_UNET_MAX_BLOCKS];
  int down_cross_attn[DPO_UNET_MAX_BLOCKS];   /* CrossAttnDownBlock2D (1) or DownBlock2D (0) */
  int up_cross_attn[DPO_UNET_MAX_BLOCKS];     /* CrossAttnUpBlock2D (1) or UpBlock2D (0) */
  int heads[DPO_UNET_MAX_BLOCKS];             /* attention_head_dim: diffusers means heads */
  int transformer_layers[DPO_UNET_MAX_BLOCKS];
  int cross_attention_dim;
  int norm_num_groups;
  float norm_eps;
  int use_linear_projection;
  int flip_sin_to_cos;
  float freq_shift;
  int center_input_sample;
  int upcast_attention;                       /* no effect in float32 */
} dpo_unet_config;

typedef struct dpo_unet dpo_unet;

/* Checks a parsed config.json (`where` names it in messages). */
int dpo_unet_config_parse(const json_t *cfg, const char *where, dpo_unet_config *out, dpo_error *err);
/* Reads dir/config.json and dir/diffusion_pytorch_model.safetensors. */
int dpo_unet_load(const char *dir, dpo_unet **out, dpo_error *err);
/* A model from a config with all parameters zero (fill them through
 * dpo_unet_param), for benchmarks and tests. */
int dpo_unet_create(const json_t *cfg, dpo_unet **out, dpo_error *err);
/* Fills every parameter as PyTorch initialises a fresh model (linear and
 * conv weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)), norms 1 and
 * 0), from Philox streams of `seed`: for training from scratch. */
void dpo_unet_init_random(dpo_unet *u, uint64_t seed);
/* Writes dir/config.json and dir/diffusion_pytorch_model.safetensors (F32),
 * each atomically, creating dir; diffusers' from_pretrained loads them. */
int dpo_unet_save(const dpo_unet *u, const char *dir, dpo_error *err);
void dpo_unet_free(dpo_unet *u);
const dpo_unet_config *dpo_unet_get_config(const dpo_unet *u);

int dpo_unet_n_params(const dpo_unet *u);
void dpo_unet_param(const dpo_unet *u, int i, dpo_param *out);
size_t dpo_unet_param_count(const dpo_unet *u);   /* floats */
void dpo_unet_zero_grads(dpo_unet *u);

/* Plans activations for sample[B, in_channels, H, W] and
 * encoder_hidden_states[B, T, cross_attention_dim]; H and W must be
 * divisible by 2^(n_blocks - 1). train=1 also plans gradients. Replaces any
 * earlier plan. Reserves ctx's scratch. */
int dpo_unet_plan(dpo_unet *u, kn_ctx *ctx, int B, int H, int W, int T, int train, dpo_error *err);
/* Bytes of the current plan (activations + their gradients). */
size_t dpo_unet_plan_bytes(const dpo_unet *u);
/* The precision of the plans that follow, set before the first one:
 * KN_F32 (the default: every tensor float32, the CPU reference's numerics)
 * or KN_BF16, mixed precision: activations and their gradients stored as
 * bf16, the weights of linear and conv layers read from bf16 copies, all
 * arithmetic and accumulation float32, float32 master weights, biases,
 * norms and parameter gradients (kernels.h's bf16 ops; dpo_param.data_bf16
 * is the copy the optimizer rewrites). frozen (bf16 only) marks a model that
 * is never trained (the DPO reference, a sampler): on a device its weights
 * are then held as bf16 alone, half their memory, and a training plan is
 * refused. Forward's inputs and output and backward's gradients stay float32
 * whatever the precision. DPO_ERR_USAGE once planned. */
int dpo_unet_set_precision(dpo_unet *u, kn_dtype dtype, int frozen, dpo_error *err);
kn_dtype dpo_unet_precision(const dpo_unet *u);
/* Activation checkpointing for the training plans that follow (off by
 * default): the activations inside each resnet and each transformer block
 * share one region instead of being kept, and each such layer reruns its
 * forward just before its backward. Block inputs and outputs (the skips)
 * are kept. About a third more compute for much less activation memory;
 * the results are bitwise those without it (the same arithmetic). */
void dpo_unet_set_checkpointing(dpo_unet *u, int on);
/* out[B, out_channels, H, W] = UNet(sample, timesteps[B], encoder_hidden_states).
 * The inputs are copied; the returned buffer belongs to the model. NULL
 * without a plan. */
const float *dpo_unet_forward(dpo_unet *u, kn_ctx *ctx, const float *sample, const float *timesteps,
                              const float *encoder_hidden_states);
/* Given dout = dLoss/dout of the last forward, accumulates dLoss/dparam into
 * every parameter gradient and, when not NULL, into dsample and
 * dencoder_hidden_states. Needs a plan with train=1 (does nothing without). */
void dpo_unet_backward(dpo_unet *u, kn_ctx *ctx, const float *dout, float *dsample,
                       float *dencoder_hidden_states);

/* ----------------------------------------------------------------- CLIP */

typedef struct {
  int vocab_size, hidden_size, intermediate_size, num_attention_heads, num_hidden_layers;
  int max_position_embeddings;
  int quick_gelu;                  /* hidden_act "quick_gelu" (1) or "gelu" (0) */
  float layer_norm_eps;
  int eos_token_id;
} dpo_clip_config;

typedef struct dpo_clip dpo_clip;

int dpo_clip_config_parse(const json_t *cfg, const char *where, dpo_clip_config *out, dpo_error *err);
/* Reads dir/config.json and dir/model.safetensors. */
int dpo_clip_load(const char *dir, dpo_clip **out, dpo_error *err);
/* A model from a config with all parameters zero, named "text_model.*"
 * (what transformers 4.x and 5.x both load). */
int dpo_clip_create(const json_t *cfg, dpo_clip **out, dpo_error *err);
/* As dpo_unet_init_random; the embedding tables N(0, 0.02^2). */
void dpo_clip_init_random(dpo_clip *m, uint64_t seed);
/* Writes dir/config.json and dir/model.safetensors (F32), atomically. */
int dpo_clip_save(const dpo_clip *m, const char *dir, dpo_error *err);
void dpo_clip_free(dpo_clip *m);
const dpo_clip_config *dpo_clip_get_config(const dpo_clip *m);
int dpo_clip_n_params(const dpo_clip *m);
void dpo_clip_param(const dpo_clip *m, int i, dpo_param *out);
void dpo_clip_zero_grads(dpo_clip *m);

/* Plans for ids[B, T] (T <= max_position_embeddings). clip_skip as in
 * diffusers' encode_prompt: 0 gives last_hidden_state (all layers, then the
 * final layer norm); k > 0 runs the first num_hidden_layers - k layers and
 * applies the final layer norm to that (diffusers takes
 * hidden_states[-(k + 1)] and then final_layer_norm). */
int dpo_clip_plan(dpo_clip *m, kn_ctx *ctx, int B, int T, int clip_skip, int train, dpo_error *err);
/* hidden[B, T, hidden_size]; ids must lie in [0, vocab_size) (checked). */
int dpo_clip_forward(dpo_clip *m, kn_ctx *ctx, const int32_t *ids, const float **hidden,
                     dpo_error *err);
/* Accumulates into the parameter gradients; needs a plan with train=1. */
void dpo_clip_backward(dpo_clip *m, kn_ctx *ctx, const float *dhidden);

/* ------------------------------------------------------------------ VAE */

#define DPO_VAE_MAX_BLOCKS 8

typedef struct {
  int in_channels, out_channels, latent_channels;
  int n_blocks;
  int block_out_channels[DPO_VAE_MAX_BLOCKS];
  int layers_per_block;
  int norm_num_groups;
  int sample_size;
  float scaling_factor;
  int use_quant_conv, use_post_quant_conv;
  int mid_block_add_attention;
} dpo_vae_config;

typedef struct dpo_vae dpo_vae;

int dpo_vae_config_parse(const json_t *cfg, const char *where, dpo_vae_config *out, dpo_error *err);
/* Reads dir/config.json and dir/diffusion_pytorch_model.safetensors. */
int dpo_vae_load(const char *dir, dpo_vae **out, dpo_error *err);
int dpo_vae_save(const dpo_vae *v, const char *dir, dpo_error *err);
void dpo_vae_free(dpo_vae *v);
const dpo_vae_config *dpo_vae_get_config(const dpo_vae *v);

/* Plans decode of latents[B, latent_channels, H/f, W/f] into images
 * [B, out_channels, H, W] (H, W divisible by f = 2^(n_blocks - 1)) and, on a
 * CPU context in float32, encode of such images. Elsewhere (a device, or a
 * bf16 VAE) the plan holds the decoder alone: the encoder's right/bottom
 * padding and its posterior are host loops, and a sampler on a device only
 * decodes (the encoder's activations would double the VAE's memory there).
 * The first plan on a device places the parameters there (models.h's
 * "Backends"); the VAE then stays on that backend. Replaces any earlier plan. */
int dpo_vae_plan(dpo_vae *v, kn_ctx *ctx, int B, int H, int W, dpo_error *err);
/* The precision of the plans that follow, set before the first one: KN_F32
 * (the default, the CPU reference's numerics) or KN_BF16 for decoding: the
 * decoder's activations stored as bf16 and its conv and linear weights read
 * from bf16 copies, float32 arithmetic, biases and norms (as
 * dpo_unet_set_precision). Always frozen (nothing trains a VAE): on a device
 * its weights are held as bf16 alone. decode's latents and image stay
 * float32. A bf16 VAE does not encode (dpo_vae_clone gives a float32 copy
 * that does). DPO_ERR_USAGE once planned. */
int dpo_vae_set_precision(dpo_vae *v, kn_dtype dtype, dpo_error *err);
kn_dtype dpo_vae_precision(const dpo_vae *v);
/* 1 when the current plan includes the encoder (float32 on the CPU). */
int dpo_vae_can_encode(const dpo_vae *v);
/* A new float32, unplanned VAE with v's config and weights (from v's host
 * block, wherever v is placed): for encoding on the host beside a VAE that
 * decodes on a device or in bf16. */
int dpo_vae_clone(const dpo_vae *v, dpo_vae **out, dpo_error *err);
/* Encodes to the posterior's mean and a sample mean + std * noise, the noise
 * standard normals from the Philox stream (seed, stream) (element i of the
 * latent batch is normal i). Either output may be NULL. Both are multiplied
 * by scaling_factor when `scaled` is set (what the pipelines feed the UNet).
 * Host memory in and out (a CPU plan). DPO_ERR_USAGE, touching nothing,
 * without a plan that includes the encoder (dpo_vae_can_encode). */
int dpo_vae_encode(dpo_vae *v, kn_ctx *ctx, const float *image, uint64_t seed, uint64_t stream,
                   int scaled, float *mean, float *sample);
/* image[B, out_channels, H, W] from latents (divided by scaling_factor first
 * when `scaled`), both float32 in the memory of ctx's backend (the
 * context that planned it); the returned buffer belongs to the model (NULL
 * without a plan). */
const float *dpo_vae_decode(dpo_vae *v, kn_ctx *ctx, const float *latents, int scaled);

#endif
