/* layers: the building blocks shared by the UNet, the text encoder and the
 * VAE (internal to models/; the public API is models.h).
 *
 * Memory. A model is built in two steps.
 * 1. Its layers register their parameters in an md_params table (name as the
 *    checkpoint spells it, shape, and the md_tensor slot to fill); the table
 *    then allocates one block for all parameters (and one for their
 *    gradients) and points every slot into it.
 * 2. For a batch size and resolution, each layer's plan function requests
 *    its activations (and, when training, their gradients) from an md_plan,
 *    which allocates one arena for each and points the slots into them, and
 *    records the largest kernel scratch any call will need. Nothing is
 *    allocated during a forward or backward pass.
 *
 * Every layer owns its output tensor. Backward of a layer reads the gradient
 * of its output (which its consumers accumulated into out.g) and accumulates
 * the gradient of its input into the caller's buffer, following the kernels'
 * convention (forward overwrites, backward accumulates). */
#ifndef DPO_MODELS_LAYERS_H
#define DPO_MODELS_LAYERS_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "kernels/kernels.h"
#include "models/models.h"

/* A value and its gradient (g is NULL when not training).
 * Activations are stored as the plan's dtype (float32, or bf16 in a bf16
 * plan: md_plan.dtype), which `dtype` records; the layers pass v and g to
 * the kernels' float32 or bf16 ops accordingly (the md_* wrappers below).
 * Parameters are float32 values and gradients; in a model that computes in
 * bf16, the weights of linear and conv layers also have `bf16`, the copy
 * the kernels read (refreshed by the optimizer after every update). */
typedef struct {
  void *v;
  void *g;
  kn_dtype dtype;       /* activations: how v and g are stored */
  kn_bf16 *bf16;        /* parameters of a bf16 model: the bf16 copy of a weight, else NULL */
} md_tensor;

/* ---------------------------------------------------------- parameters */

#define MD_NAME_MAX 192

typedef struct {
  char name[MD_NAME_MAX];
  int ndim;
  int64_t shape[4];
  size_t numel;
  size_t offset;        /* in floats, into the parameter block */
  size_t device_offset; /* in floats, into the device block (= offset unless frozen) */
  size_t half_offset;   /* in bf16 values, into the bf16 block (weights of a bf16 model) */
  md_tensor *slot;
} md_param;

typedef struct {
  md_param *items;
  int n;
  int cap;
  size_t total;         /* floats */
  float *data;          /* host block: loaded, initialised and saved from here */
  float *grad;          /* NULL until md_params_alloc_grads; beside the slots' values */
  float *device;        /* the values on a device once placed (slots point here), else NULL */
  kn_backend backend;   /* where `device` lives */
  /* bf16 (md_params_set_bf16, before placement): the weights of 2+ dims get
   * bf16 copies in the backend's memory (`half`, `half_total` values). A
   * frozen model (never trained: a reference, a sampler) keeps on a device
   * only those copies and the float32 values of its 1-D parameters (biases,
   * norms): `device` then holds the 1-D parameters alone, and the weights'
   * slots have no float32 value there (v NULL). */
  int bf16;
  int frozen;
  kn_bf16 *half;
  size_t half_total;
  kn_ctx *ctx;          /* the latest context that planned them (must outlive that use) */
  int failed;           /* out of memory while registering */
} md_params;

void md_params_init(md_params *t);
/* Registers a parameter "prefix.suffix" (prefix may be ""). */
void md_param_add(md_params *t, md_tensor *slot, const char *prefix, const char *suffix, int ndim,
                  int64_t d0, int64_t d1, int64_t d2, int64_t d3);
int md_params_alloc(md_params *t, dpo_error *err);
/* Puts the parameters in the memory of ctx's backend: nothing on the CPU;
 * under CUDA a device block gets the host values and every slot points
 * into it (the host block stays, for saving). Done once; later calls keep
 * the first placement. */
int md_params_place(md_params *t, kn_ctx *ctx, dpo_error *err);
/* Asks for bf16 copies of the weights (and, with frozen, for no float32
 * weights on a device) in the placement to come; DPO_ERR_USAGE once placed. */
int md_params_set_bf16(md_params *t, int frozen, dpo_error *err);
/* Copies placed values back into the host block (nothing on the CPU). */
int md_params_fetch(const md_params *t, dpo_error *err);
/* Gradients beside the values (placing them first). */
int md_params_alloc_grads(md_params *t, kn_ctx *ctx, dpo_error *err);
void md_params_zero_grads(md_params *t);
/* The public view (name, shape, data, gradient) of parameter i. */
void md_params_view(const md_params *t, int i, dpo_param *out);
void md_params_free(md_params *t);
/* Loads every parameter from a safetensors file by name: a missing tensor, a
 * wrong shape, a non-float dtype or a tensor no parameter claims fails with
 * the tensor's name. `what` names the model in messages. */
int md_params_load(md_params *t, const char *path, const char *what, dpo_error *err);
/* The same, skipping the tensors named in `ignored` (NULL-terminated): buffers
 * that older writers saved beside the parameters. */
int md_params_load_ignoring(md_params *t, const char *path, const char *what,
                            const char *const *ignored, dpo_error *err);
/* PyTorch's default initialisation from a Philox stream per parameter:
 * weights of linear and conv layers U(-1/sqrt(fan_in), 1/sqrt(fan_in)) and
 * their biases likewise; norm scales 1 and shifts 0; embedding tables
 * ("*embedding.weight") N(0, 0.02^2) as transformers initialises CLIP's. */
void md_params_init_default(md_params *t, uint64_t seed);
/* Writes every parameter as F32 (atomic), with {"format": "pt"} metadata,
 * from the host block (fetched first when the values are on a device). */
int md_params_save(const md_params *t, const char *path, dpo_error *err);

/* ---------------------------------------------------------- activations */

/* The gradients internal to one layer (a resnet, a transformer block) are
 * needed only while that layer's backward runs: they live in a region shared
 * by all such layers, which the layer zeroes when its backward starts. Only
 * the gradients that cross layers (outputs, inputs) get memory of their own. */
typedef struct {
  float *base;
  size_t bytes;
  int recompute;        /* checkpointing: the values live in a shared region as
                           well, so the layer reruns its forward before its backward */
} md_grad_group;

typedef struct {
  md_tensor *slot;      /* a tensor (value and, when training, gradient) */
  float **plain;        /* or plain floats without a gradient (saved statistics) */
  size_t n;             /* its storage in floats (a bf16 tensor of k values: (k + 1) / 2) */
  md_grad_group *group; /* its gradient lives in the shared region (see above) */
  size_t group_offset;  /* bytes into the shared region */
  int shared_value;     /* checkpointing: its value lives in the shared value region */
  size_t value_offset;  /* bytes into that region */
} md_request;

typedef struct {
  md_request *req;
  int n;
  int cap;
  int train;            /* request gradients as well */
  kn_dtype dtype;       /* how the tensors (not the plain floats) are stored */
  size_t act_bytes;
  size_t grad_bytes;
  size_t scratch_bytes; /* the largest kernel scratch of any call */
  int threads;          /* for the attention scratch estimate */
  md_grad_group *group; /* open group, if any */
  size_t group_used;    /* bytes of the open group */
  size_t shared_bytes;  /* the largest group */
  /* Activation checkpointing (set after md_plan_init, training plans only):
   * the values of a group's tensors share one region too, sized for the
   * largest group, and each layer recomputes them before its backward. The
   * arithmetic is the same, so results are bitwise those without it. */
  int checkpoint;
  size_t group_value_used;
  size_t shared_value_bytes;
  md_grad_group **groups;
  size_t *group_sizes;
  int n_groups, cap_groups;
  kn_arena acts;
  kn_arena grads;
  int failed;
} md_plan;

void md_plan_init(md_plan *p, int train, int threads);
/* Requests a tensor of n values of the plan's dtype (its gradient too when training). */
void md_plan_tensor(md_plan *p, md_tensor *slot, size_t n);
/* Requests n floats that need no gradient (e.g. saved norm statistics). */
void md_plan_floats(md_plan *p, float **slot, size_t n);
void md_plan_scratch(md_plan *p, size_t bytes);
/* Tensors requested between begin and end keep their gradient in the shared
 * region; the layer calls md_grad_group_zero at the start of its backward
 * and must not read those gradients once its backward has returned. With
 * p->checkpoint their values share a region as well (g->recompute is set):
 * the layer's backward then first reruns its forward. */
void md_plan_group_begin(md_plan *p, md_grad_group *g);
void md_plan_group_end(md_plan *p);
void md_grad_group_zero(kn_ctx *ctx, const md_grad_group *g);
/* Allocates both arenas in the memory of ctx's backend and fills every
 * requested slot. */
int md_plan_alloc(md_plan *p, kn_ctx *ctx, dpo_error *err);
/* Zeroes every activation gradient (before a backward pass). */
void md_plan_zero_grads(kn_ctx *ctx, md_plan *p);
void md_plan_free(md_plan *p);

/* ----------------------------------------------------- plain layers */

typedef struct {
  md_tensor w, b;
  int C, OC, K, stride, pad;
  int has_bias;
} md_conv;

typedef struct {
  md_tensor w, b;
  int IC, OC;
  int has_bias;
} md_linear;

/* Group norm (G groups) or layer norm (G = 0), with its saved statistics. */
typedef struct {
  md_tensor gamma, beta;
  int C, G;
  float eps;
  int fuse_silu;        /* out = silu(norm): one bf16 kernel (md_norm_silu_*) */
  md_tensor out;
  float *mean, *rstd;
  int rows;             /* B (group) or N (layer) */
  int HW;
} md_norm;

void md_conv_init(md_conv *c, md_params *t, const char *prefix, const char *name, int C, int OC,
                  int K, int stride, int pad, int has_bias);
void md_linear_init(md_linear *l, md_params *t, const char *prefix, const char *name, int IC, int OC,
                    int has_bias);
void md_norm_init(md_norm *n, md_params *t, const char *prefix, const char *name, int C, int G,
                  float eps);

void md_conv_plan(md_plan *p, const md_conv *c, int H, int W);
void md_conv_forward(kn_ctx *ctx, const md_conv *c, void *out, const void *in, int B, int H, int W);
void md_conv_backward(kn_ctx *ctx, const md_conv *c, void *din, const void *dout, const void *in,
                      int B, int H, int W);
void md_linear_forward(kn_ctx *ctx, const md_linear *l, void *out, const void *in, int N);
void md_linear_backward(kn_ctx *ctx, const md_linear *l, void *din, const void *dout,
                        const void *in, int N);
/* Group norm over [B, C, HW] or layer norm over [N, C] (B = N, HW = 1). */
void md_norm_plan(md_plan *p, md_norm *n, int B, int HW);
void md_norm_forward(kn_ctx *ctx, md_norm *n, const void *in);
void md_norm_backward(kn_ctx *ctx, md_norm *n, void *din, const void *in);
/* A group norm followed by SiLU whose result is `act`. In a bf16 plan the
 * two are one fused kernel that writes silu(norm) into the norm's out (act
 * is not planned); in float32 the norm, then SiLU into act. Forward returns
 * the tensor that holds the activation (and md_norm_silu_output names it
 * for backward, which reads its gradient). */
void md_norm_silu_plan(md_plan *p, md_norm *n, md_tensor *act, int B, int HW);
md_tensor *md_norm_silu_output(md_norm *n, md_tensor *act);
md_tensor *md_norm_silu_forward(kn_ctx *ctx, md_norm *n, md_tensor *act, const void *in);
void md_norm_silu_backward(kn_ctx *ctx, md_norm *n, md_tensor *act, void *din, const void *in);

/* The elementwise and layout ops of kernels.h on tensors of either dtype:
 * the float32 op or its bf16 version, as `dtype` says. */
void md_silu_forward(kn_ctx *ctx, kn_dtype dtype, void *out, const void *in, size_t n);
void md_silu_backward(kn_ctx *ctx, kn_dtype dtype, void *din, const void *dout, const void *in,
                      size_t n);
void md_add_forward(kn_ctx *ctx, kn_dtype dtype, void *out, const void *a, const void *b, size_t n);
void md_add_backward(kn_ctx *ctx, kn_dtype dtype, void *da, void *db, const void *dout, size_t n);
void md_transpose_forward(kn_ctx *ctx, kn_dtype dtype, void *out, const void *in, int B, int C,
                          int A);
void md_transpose_backward(kn_ctx *ctx, kn_dtype dtype, void *din, const void *dout, int B, int C,
                           int A);
void md_concat_forward(kn_ctx *ctx, kn_dtype dtype, void *out, const void *a, const void *b,
                       int outer, int Ca, int Cb, int inner);
void md_concat_backward(kn_ctx *ctx, kn_dtype dtype, void *da, void *db, const void *dout,
                        int outer, int Ca, int Cb, int inner);
void md_upsample2x_forward(kn_ctx *ctx, kn_dtype dtype, void *out, const void *in, int B, int C,
                           int H, int W);
void md_upsample2x_backward(kn_ctx *ctx, kn_dtype dtype, void *din, const void *dout, int B, int C,
                            int H, int W);


/* --------------------------------------------------- composite layers */

/* diffusers' ResnetBlock2D (time_embedding_norm "default", pre-norm, SiLU,
 * output_scale_factor 1): out = shortcut(x) + conv2(silu(norm2(conv1(silu(
 * norm1(x))) + time_emb_proj(silu(temb))))). temb_dim 0 means no time
 * embedding (the VAE's). The caller passes silu(temb), shared by all blocks. */
typedef struct {
  md_norm norm1, norm2;
  md_conv conv1, conv2, shortcut;
  md_linear temb_proj;
  int has_shortcut, temb_dim;
  int Cin, Cout;
  int B, H, W;
  md_tensor a1, h1, tproj, a2, h2, sc, out;   /* a1, a2: unplanned in bf16 (fused norms) */
  md_grad_group grads;  /* every gradient but out's */
} md_resnet;

void md_resnet_init(md_resnet *r, md_params *t, const char *prefix, int Cin, int Cout, int temb_dim,
                    int groups, float eps);
void md_resnet_plan(md_plan *p, md_resnet *r, int B, int H, int W);
void md_resnet_forward(kn_ctx *ctx, md_resnet *r, const void *in, const void *temb_act);
void md_resnet_backward(kn_ctx *ctx, md_resnet *r, void *din, const void *in, void *dtemb_act,
                        const void *temb_act);

/* diffusers' Attention: to_q, to_k, to_v (bias optional), to_out.0 (bias),
 * over tokens x[B, N, query_dim] and context c[B, M, kv_dim] (c == x for
 * self-attention). */
typedef struct {
  md_linear q, k, v, o;
  int heads, dim_head, inner, query_dim, kv_dim;
  int causal;
  int B, N, M;
  md_tensor qo, ko, vo, ao, out;
  float *lse;
} md_attention;

void md_attention_init(md_attention *a, md_params *t, const char *prefix, const char *q_name,
                       const char *k_name, const char *v_name, const char *o_name, int query_dim,
                       int kv_dim, int heads, int dim_head, int qkv_bias);
void md_attention_plan(md_plan *p, md_attention *a, int B, int N, int M);
void md_attention_forward(kn_ctx *ctx, md_attention *a, const void *x, const void *c);
/* dc may equal dx (self-attention): both accumulate. */
void md_attention_backward(kn_ctx *ctx, md_attention *a, void *dx, void *dc, const void *x,
                           const void *c);

/* diffusers' Transformer2DModel (continuous input) with BasicTransformerBlocks
 * (self-attention, cross-attention, GEGLU feed-forward, layer norms). */
typedef struct {
  md_norm norm1, norm2, norm3;
  md_attention attn1, attn2;
  md_linear ff_in, ff_out;
  int dim, ff_inner;
  int N;
  md_tensor x1, x2, ffp, ffg, ffo, out;
  md_grad_group grads;  /* every gradient but out's */
} md_tblock;

typedef struct {
  md_norm norm;
  md_conv proj_in_conv, proj_out_conv;
  md_linear proj_in_lin, proj_out_lin;
  int linear_proj;
  int C, inner, n_blocks;
  md_tblock *blocks;
  int B, H, W, M;
  md_tensor pin, tok, tok_out, pre_out, pout, out;
} md_transformer;

int md_transformer_init(md_transformer *tr, md_params *t, const char *prefix, int C, int heads,
                        int n_blocks, int cross_dim, int groups, int linear_proj, dpo_error *err);
void md_transformer_plan(md_plan *p, md_transformer *tr, int B, int H, int W, int M);
void md_transformer_forward(kn_ctx *ctx, md_transformer *tr, const void *in, const void *enc);
void md_transformer_backward(kn_ctx *ctx, md_transformer *tr, void *din, const void *in,
                             void *denc, const void *enc);
void md_transformer_free(md_transformer *tr);

/* ------------------------------------------------------- config checks */

/* Compares a JSON value with a default written as JSON text, numbers by value. */
int md_json_equals_text(const json_t *value, const char *text);
/* A JSON int, or a list of n ints; fills out[n]. */
int md_json_int_or_list(const json_t *cfg, const char *key, int n, int def, int *out,
                        const char *where, dpo_error *err);

#endif
