/* AutoencoderKL as diffusers builds it (autoencoder_kl.py, autoencoders/vae.py):
 * Encoder (DownEncoderBlock2D blocks, a mid block with one single-head
 * attention, group norm, SiLU, conv to 2 x latent channels), quant_conv, the
 * diagonal Gaussian posterior, post_quant_conv and the Decoder
 * (UpDecoderBlock2D blocks). Forward only: nothing in Diffusion-DPO trains
 * the VAE. All its norms use eps 1e-6, as diffusers hard-codes.
 *
 * Backends and precision (models.h). The decoder is backend- and
 * precision-neutral like the UNet's forward: its tensors live in the
 * context's memory, its ops are kernels.h calls, and the md_* wrappers pick
 * the float32 or bf16 op from the plan's dtype. The encoder stays a float32
 * CPU path (its right/bottom padding and the posterior are host loops): a
 * plan on another backend, or in bf16, leaves it out. */
#include "models/models.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/layers.h"

#define VAE_EPS 1e-6f

/* UNetMidBlock2D without time embedding: resnet, attention, resnet. */
typedef struct {
  md_resnet res[2];
  int has_attn;
  md_norm attn_norm;
  md_attention attn;
  md_tensor tokens, back, attn_out;
  int B, C, HW;
} vae_mid;

typedef struct {
  int n_layers;
  md_resnet *res;
  int has_resample;
  md_conv resample;
  md_tensor resample_in;       /* padded (encoder) or 2x upsampled (decoder) input */
  md_tensor resample_out;
  int C, H, W;                 /* channels leaving, resolution entering */
} vae_block;

struct dpo_vae {
  dpo_vae_config cfg;
  int legacy_attn;          /* mid-block attention named query/key/value/proj_attn */
  int planned;
  int encoder_planned;      /* float32 plans on the CPU only (see the top) */
  kn_dtype precision;       /* of the decoder's activations (dpo_vae_set_precision) */
  json_t *config_json;
  md_params params;
  md_plan plan;
  int B, H, W, h, w;

  md_conv enc_conv_in, enc_conv_out, quant_conv, post_quant_conv, dec_conv_in, dec_conv_out;
  vae_block enc_blocks[DPO_VAE_MAX_BLOCKS], dec_blocks[DPO_VAE_MAX_BLOCKS];
  vae_mid enc_mid, dec_mid;
  md_norm enc_norm_out, dec_norm_out;

  md_tensor image, e0, enc_act, enc_out, moments, noise;
  md_tensor latent_in, z, d0, dec_act, dec_out;   /* dec_act: unplanned in bf16 (fused norm) */
  /* bf16 plans: float32 at the decoder's edges, in the context's memory:
   * the scaled latents on their way in, the image on its way out. */
  float *edge, *out_f32;
};

/* ---------------------------------------------------------------- config */

static const char *const parsed_keys[] = {
    "in_channels", "out_channels", "down_block_types", "up_block_types", "block_out_channels",
    "layers_per_block", "act_fn", "latent_channels", "norm_num_groups", "sample_size", "scaling_factor",
    "shift_factor", "latents_mean", "latents_std", "force_upcast", "use_quant_conv",
    "use_post_quant_conv", "mid_block_add_attention",
    "_class_name", "_diffusers_version", "_name_or_path", "_use_default_values", "_commit_hash",
};

static int check_block_list(const json_t *cfg, const char *key, const char *type, int n, const char *where,
                            dpo_error *err) {
  const json_t *list = json_object_get(cfg, key);
  if (!list) return DPO_OK;   /* diffusers' default: one block of that type */
  if (!json_is_array(list) || (int)json_array_size(list) != n)
    return dpo_fail(err, DPO_ERR_DATA, "%s: \"%s\" must list %d block types, one per block_out_channels entry",
                    where, key, n);
  for (int i = 0; i < n; i++) {
    const char *name = json_string_value(json_array_get(list, (size_t)i));
    if (!name || strcmp(name, type) != 0)
      return dpo_fail(err, DPO_ERR_DATA, "%s: \"%s\"[%d]: unknown block type \"%s\" (expected %s)", where, key, i,
                      name ? name : "(not a string)", type);
  }
  return DPO_OK;
}

static int get_int(const json_t *cfg, const char *key, int def, int hi, int *out, const char *where,
                   dpo_error *err) {
  int64_t v = def;
  if (dpo_json_get_int_opt(cfg, key, &v, where, err) != DPO_OK) return DPO_ERR_DATA;
  if (v <= 0 || v > hi)
    return dpo_fail(err, DPO_ERR_DATA, "%s: \"%s\" = %lld is out of range [1, %d]", where, key, (long long)v, hi);
  *out = (int)v;
  return DPO_OK;
}

int dpo_vae_config_parse(const json_t *cfg, const char *where, dpo_vae_config *c, dpo_error *err) {
  memset(c, 0, sizeof *c);
  if (!json_is_object(cfg)) return dpo_fail(err, DPO_ERR_DATA, "%s: config must be a JSON object", where);
  const char *key;
  json_t *value;
  json_object_foreach((json_t *)cfg, key, value) {
    int known = 0;
    for (size_t i = 0; i < sizeof parsed_keys / sizeof *parsed_keys; i++) known |= strcmp(key, parsed_keys[i]) == 0;
    if (!known)
      return dpo_fail(err, DPO_ERR_DATA, "%s: unknown key \"%s\" (not an AutoencoderKL setting this code knows)",
                      where, key);
  }
  const json_t *cls = json_object_get(cfg, "_class_name");
  if (cls && !(json_is_string(cls) && strcmp(json_string_value(cls), "AutoencoderKL") == 0))
    return dpo_fail(err, DPO_ERR_DATA, "%s: \"_class_name\" must be \"AutoencoderKL\"", where);
  const char *fixed[][2] = {{"act_fn", "\"silu\""}, {"shift_factor", "null"}, {"latents_mean", "null"},
                            {"latents_std", "null"}};
  for (int i = 0; i < 4; i++) {
    const json_t *v = json_object_get(cfg, fixed[i][0]);
    if (v && !md_json_equals_text(v, fixed[i][1]))
      return dpo_fail(err, DPO_ERR_DATA, "%s: key \"%s\" is not supported (only %s is implemented)", where,
                      fixed[i][0], fixed[i][1]);
  }
  const json_t *boc = json_object_get(cfg, "block_out_channels");
  if (!boc) {
    c->n_blocks = 1;
    c->block_out_channels[0] = 64;
  } else {
    if (!json_is_array(boc) || json_array_size(boc) == 0 || json_array_size(boc) > DPO_VAE_MAX_BLOCKS)
      return dpo_fail(err, DPO_ERR_DATA, "%s: \"block_out_channels\" must be a list of 1 to %d integers", where,
                      DPO_VAE_MAX_BLOCKS);
    c->n_blocks = (int)json_array_size(boc);
    for (int i = 0; i < c->n_blocks; i++) {
      const json_t *e = json_array_get(boc, (size_t)i);
      if (!json_is_integer(e) || json_integer_value(e) <= 0 || json_integer_value(e) > 65536)
        return dpo_fail(err, DPO_ERR_DATA, "%s: \"block_out_channels\"[%d] must be a positive integer", where, i);
      c->block_out_channels[i] = (int)json_integer_value(e);
    }
  }
  if (check_block_list(cfg, "down_block_types", "DownEncoderBlock2D", c->n_blocks, where, err) ||
      check_block_list(cfg, "up_block_types", "UpDecoderBlock2D", c->n_blocks, where, err) ||
      get_int(cfg, "in_channels", 3, 4096, &c->in_channels, where, err) ||
      get_int(cfg, "out_channels", 3, 4096, &c->out_channels, where, err) ||
      get_int(cfg, "latent_channels", 4, 4096, &c->latent_channels, where, err) ||
      get_int(cfg, "layers_per_block", 1, 64, &c->layers_per_block, where, err) ||
      get_int(cfg, "norm_num_groups", 32, 65536, &c->norm_num_groups, where, err))
    return DPO_ERR_DATA;
  c->sample_size = 32;
  const json_t *ss = json_object_get(cfg, "sample_size");
  if (ss && json_is_integer(ss)) c->sample_size = (int)json_integer_value(ss);
  double sf = 0.18215;
  if (dpo_json_get_number_opt(cfg, "scaling_factor", &sf, where, err) != DPO_OK) return DPO_ERR_DATA;
  if (!(sf > 0)) return dpo_fail(err, DPO_ERR_DATA, "%s: \"scaling_factor\" must be positive", where);
  c->scaling_factor = (float)sf;
  c->use_quant_conv = c->use_post_quant_conv = c->mid_block_add_attention = 1;
  int upcast = 1;
  if (dpo_json_get_bool_opt(cfg, "use_quant_conv", &c->use_quant_conv, where, err) ||
      dpo_json_get_bool_opt(cfg, "use_post_quant_conv", &c->use_post_quant_conv, where, err) ||
      dpo_json_get_bool_opt(cfg, "mid_block_add_attention", &c->mid_block_add_attention, where, err) ||
      dpo_json_get_bool_opt(cfg, "force_upcast", &upcast, where, err))
    return DPO_ERR_DATA;
  for (int i = 0; i < c->n_blocks; i++)
    if (c->block_out_channels[i] % c->norm_num_groups != 0)
      return dpo_fail(err, DPO_ERR_DATA, "%s: block_out_channels[%d] = %d is not divisible by norm_num_groups = %d",
                      where, i, c->block_out_channels[i], c->norm_num_groups);
  return DPO_OK;
}

/* ----------------------------------------------------------- building */

static void mid_init(vae_mid *m, md_params *t, const char *prefix, int C, int G, int has_attn, int legacy) {
  char name[MD_NAME_MAX];
  memset(m, 0, sizeof *m);
  m->C = C;
  m->has_attn = has_attn;
  snprintf(name, sizeof name, "%s.resnets.0", prefix);
  md_resnet_init(&m->res[0], t, name, C, C, 0, G, VAE_EPS);
  if (has_attn) {
    snprintf(name, sizeof name, "%s.attentions.0", prefix);
    md_norm_init(&m->attn_norm, t, name, "group_norm", C, G, VAE_EPS);
    if (legacy) md_attention_init(&m->attn, t, name, "query", "key", "value", "proj_attn", C, C, 1, C, 1);
    else md_attention_init(&m->attn, t, name, "to_q", "to_k", "to_v", "to_out.0", C, C, 1, C, 1);
  }
  snprintf(name, sizeof name, "%s.resnets.1", prefix);
  md_resnet_init(&m->res[1], t, name, C, C, 0, G, VAE_EPS);
}

static int block_init(vae_block *b, md_params *t, const char *prefix, int n_layers, int Cin, int Cout,
                      int G, int resample, int up, dpo_error *err) {
  char name[MD_NAME_MAX];
  memset(b, 0, sizeof *b);
  b->n_layers = n_layers;
  b->C = Cout;
  b->has_resample = resample;
  b->res = calloc((size_t)n_layers, sizeof *b->res);
  if (!b->res) return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  for (int j = 0; j < n_layers; j++) {
    snprintf(name, sizeof name, "%s.resnets.%d", prefix, j);
    md_resnet_init(&b->res[j], t, name, j == 0 ? Cin : Cout, Cout, 0, G, VAE_EPS);
  }
  if (resample) {
    snprintf(name, sizeof name, "%s.%s.0", prefix, up ? "upsamplers" : "downsamplers");
    /* The encoder pads right and bottom by one and convolves without padding. */
    md_conv_init(&b->resample, t, name, "conv", Cout, Cout, 3, up ? 1 : 2, up ? 1 : 0, 1);
  }
  return DPO_OK;
}

static int build(dpo_vae *v, dpo_error *err) {
  const dpo_vae_config *c = &v->cfg;
  md_params *t = &v->params;
  int n = c->n_blocks, G = c->norm_num_groups, L = c->latent_channels;
  const int *boc = c->block_out_channels;
  char prefix[MD_NAME_MAX];
  md_params_init(t);

  md_conv_init(&v->enc_conv_in, t, "encoder", "conv_in", c->in_channels, boc[0], 3, 1, 1, 1);
  int out_ch = boc[0];
  for (int i = 0; i < n; i++) {
    int in_ch = out_ch;
    out_ch = boc[i];
    snprintf(prefix, sizeof prefix, "encoder.down_blocks.%d", i);
    if (block_init(&v->enc_blocks[i], t, prefix, c->layers_per_block, in_ch, out_ch, G, i < n - 1, 0, err))
      return DPO_ERR_DATA;
  }
  mid_init(&v->enc_mid, t, "encoder.mid_block", boc[n - 1], G, c->mid_block_add_attention, v->legacy_attn);
  md_norm_init(&v->enc_norm_out, t, "encoder", "conv_norm_out", boc[n - 1], G, VAE_EPS);
  md_conv_init(&v->enc_conv_out, t, "encoder", "conv_out", boc[n - 1], 2 * L, 3, 1, 1, 1);
  if (c->use_quant_conv) md_conv_init(&v->quant_conv, t, "", "quant_conv", 2 * L, 2 * L, 1, 1, 0, 1);
  if (c->use_post_quant_conv) md_conv_init(&v->post_quant_conv, t, "", "post_quant_conv", L, L, 1, 1, 0, 1);

  md_conv_init(&v->dec_conv_in, t, "decoder", "conv_in", L, boc[n - 1], 3, 1, 1, 1);
  mid_init(&v->dec_mid, t, "decoder.mid_block", boc[n - 1], G, c->mid_block_add_attention, v->legacy_attn);
  out_ch = boc[n - 1];
  for (int i = 0; i < n; i++) {
    int prev = out_ch;
    out_ch = boc[n - 1 - i];
    snprintf(prefix, sizeof prefix, "decoder.up_blocks.%d", i);
    if (block_init(&v->dec_blocks[i], t, prefix, c->layers_per_block + 1, prev, out_ch, G, i < n - 1, 1, err))
      return DPO_ERR_DATA;
  }
  md_norm_init(&v->dec_norm_out, t, "decoder", "conv_norm_out", boc[0], G, VAE_EPS);
  md_conv_init(&v->dec_conv_out, t, "decoder", "conv_out", boc[0], c->out_channels, 3, 1, 1, 1);
  return md_params_alloc(t, err);
}

void dpo_vae_free(dpo_vae *v) {
  if (!v) return;
  for (int i = 0; i < v->cfg.n_blocks; i++) {
    free(v->enc_blocks[i].res);
    free(v->dec_blocks[i].res);
  }
  md_params_free(&v->params);
  md_plan_free(&v->plan);
  json_decref(v->config_json);
  free(v);
}

int dpo_vae_load(const char *dir, dpo_vae **out, dpo_error *err) {
  char path[4096];
  *out = NULL;
  snprintf(path, sizeof path, "%s/config.json", dir);
  json_t *cfg = dpo_json_load_file(path, DPO_MODEL_CONFIG_MAX_BYTES, err);
  if (!cfg) return DPO_ERR_DATA;
  dpo_vae *v = calloc(1, sizeof *v);
  if (!v) {
    json_decref(cfg);
    return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  }
  v->config_json = cfg;
  if (dpo_vae_config_parse(cfg, path, &v->cfg, err) != DPO_OK) {
    dpo_vae_free(v);
    return DPO_ERR_DATA;
  }
  snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
  /* Checkpoints written before diffusers 0.14 (SD1.x and SD2.x among them)
   * name the attention query/key/value/proj_attn; diffusers renames them on
   * load, and so do we (save keeps the names the file had). */
  dpo_safetensors st;
  if (dpo_st_open(&st, path, err) != DPO_OK) {
    dpo_vae_free(v);
    return DPO_ERR_DATA;
  }
  v->legacy_attn = dpo_st_find(&st, "encoder.mid_block.attentions.0.query.weight") != NULL;
  dpo_st_close(&st);
  if (build(v, err) != DPO_OK) {
    dpo_vae_free(v);
    return DPO_ERR_DATA;
  }
  if (md_params_load(&v->params, path, "AutoencoderKL", err) != DPO_OK) {
    dpo_vae_free(v);
    return DPO_ERR_DATA;
  }
  *out = v;
  return DPO_OK;
}

int dpo_vae_save(const dpo_vae *v, const char *dir, dpo_error *err) {
  char path[4096];
  if (dpo_mkdir_p(dir, err) != DPO_OK) return DPO_ERR_DATA;
  snprintf(path, sizeof path, "%s/config.json", dir);
  if (dpo_json_write_file(path, v->config_json, err) != DPO_OK) return DPO_ERR_DATA;
  snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
  return md_params_save(&v->params, path, err);
}

const dpo_vae_config *dpo_vae_get_config(const dpo_vae *v) { return &v->cfg; }

/* ------------------------------------------------------------- planning */

static void mid_plan(md_plan *p, vae_mid *m, int B, int H, int W) {
  size_t n = (size_t)B * m->C * H * W;
  m->B = B;
  m->HW = H * W;
  md_resnet_plan(p, &m->res[0], B, H, W);
  if (m->has_attn) {
    md_norm_plan(p, &m->attn_norm, B, H * W);
    md_plan_tensor(p, &m->tokens, n);
    md_attention_plan(p, &m->attn, B, H * W, H * W);
    md_plan_tensor(p, &m->back, n);
    md_plan_tensor(p, &m->attn_out, n);
  }
  md_resnet_plan(p, &m->res[1], B, H, W);
}

static void block_plan(md_plan *p, vae_block *b, int B, int H, int W, int up) {
  b->H = H;
  b->W = W;
  for (int j = 0; j < b->n_layers; j++) md_resnet_plan(p, &b->res[j], B, H, W);
  if (!b->has_resample) return;
  if (up) {
    md_plan_tensor(p, &b->resample_in, (size_t)B * b->C * 4 * H * W);
    md_plan_tensor(p, &b->resample_out, (size_t)B * b->C * 4 * H * W);
    md_conv_plan(p, &b->resample, 2 * H, 2 * W);
  } else {
    md_plan_tensor(p, &b->resample_in, (size_t)B * b->C * (H + 1) * (W + 1));
    md_plan_tensor(p, &b->resample_out, (size_t)B * b->C * (H / 2) * (W / 2));
    md_conv_plan(p, &b->resample, H + 1, W + 1);
  }
}

/* The encoder: a float32 CPU plan only (its padding and posterior are host loops). */
static void plan_encoder(dpo_vae *v, md_plan *p) {
  const dpo_vae_config *c = &v->cfg;
  int B = v->B, H = v->H, W = v->W, n = c->n_blocks, L = c->latent_channels;
  const int *boc = c->block_out_channels;
  md_plan_tensor(p, &v->image, (size_t)B * c->in_channels * H * W);
  md_plan_tensor(p, &v->e0, (size_t)B * boc[0] * H * W);
  md_conv_plan(p, &v->enc_conv_in, H, W);
  int h = H, w = W;
  for (int i = 0; i < n; i++) {
    block_plan(p, &v->enc_blocks[i], B, h, w, 0);
    if (v->enc_blocks[i].has_resample) {
      h /= 2;
      w /= 2;
    }
  }
  mid_plan(p, &v->enc_mid, B, h, w);
  md_norm_silu_plan(p, &v->enc_norm_out, &v->enc_act, B, h * w);
  md_plan_tensor(p, &v->enc_out, (size_t)B * 2 * L * h * w);
  md_plan_tensor(p, &v->moments, (size_t)B * 2 * L * h * w);
  md_plan_tensor(p, &v->noise, (size_t)B * L * h * w);
  md_conv_plan(p, &v->enc_conv_out, h, w);
}

static void plan_decoder(dpo_vae *v, md_plan *p) {
  const dpo_vae_config *c = &v->cfg;
  int B = v->B, H = v->H, W = v->W, n = c->n_blocks, L = c->latent_channels, h = v->h, w = v->w;
  const int *boc = c->block_out_channels;
  md_plan_tensor(p, &v->latent_in, (size_t)B * L * h * w);
  md_plan_tensor(p, &v->z, (size_t)B * L * h * w);
  md_plan_tensor(p, &v->d0, (size_t)B * boc[n - 1] * h * w);
  md_conv_plan(p, &v->dec_conv_in, h, w);
  mid_plan(p, &v->dec_mid, B, h, w);
  for (int i = 0; i < n; i++) {
    block_plan(p, &v->dec_blocks[i], B, h, w, 1);
    if (v->dec_blocks[i].has_resample) {
      h *= 2;
      w *= 2;
    }
  }
  md_norm_silu_plan(p, &v->dec_norm_out, &v->dec_act, B, H * W);
  md_plan_tensor(p, &v->dec_out, (size_t)B * c->out_channels * H * W);
  v->edge = v->out_f32 = NULL;
  if (v->precision == KN_BF16) {
    md_plan_floats(p, &v->edge, (size_t)B * L * h * w);
    md_plan_floats(p, &v->out_f32, (size_t)B * c->out_channels * H * W);
  }
  md_conv_plan(p, &v->dec_conv_out, H, W);
}

int dpo_vae_plan(dpo_vae *v, kn_ctx *ctx, int B, int H, int W, dpo_error *err) {
  const dpo_vae_config *c = &v->cfg;
  int f = 1 << (c->n_blocks - 1);
  if (B <= 0 || H <= 0 || W <= 0 || B > 4096 || H > 16384 || W > 16384 || H % f != 0 || W % f != 0)
    return dpo_fail(err, DPO_ERR_USAGE, "vae plan: %dx%d images must be divisible by %d (batch %d)", H, W, f, B);
  md_plan_free(&v->plan);
  v->planned = v->encoder_planned = 0;
  /* Parameters go to the context's memory (a no-op for float32 on the CPU). */
  int rc = md_params_place(&v->params, ctx, err);
  if (rc != DPO_OK) return rc;
  md_plan *p = &v->plan;
  md_plan_init(p, 0, ctx->n_threads);
  p->dtype = v->precision;
  v->B = B;
  v->H = H;
  v->W = W;
  v->h = H / f;
  v->w = W / f;
  /* Encoding stays on the CPU in float32; elsewhere only the decoder is
   * planned, which also spares a device the encoder's activations (as
   * large as the decoder's). */
  int encoder = ctx->backend == KN_BACKEND_CPU && v->precision == KN_F32;
  if (encoder) plan_encoder(v, p);
  plan_decoder(v, p);
  if (md_plan_alloc(p, ctx, err) != DPO_OK) return DPO_ERR_DATA;
  if (kn_ctx_reserve(ctx, p->scratch_bytes, err) != DPO_OK) return DPO_ERR_DATA;
  v->planned = 1;
  v->encoder_planned = encoder;
  return DPO_OK;
}

int dpo_vae_set_precision(dpo_vae *v, kn_dtype dtype, dpo_error *err) {
  if (v->planned || v->params.device || v->params.half)
    return dpo_fail(err, DPO_ERR_USAGE, "vae: the precision is set before the first plan");
  if (dtype != KN_F32 && dtype != KN_BF16) return dpo_fail(err, DPO_ERR_USAGE, "vae: unknown precision");
  /* Always frozen: the VAE never trains, so a device holds bf16 weights alone. */
  if (dtype == KN_BF16 && md_params_set_bf16(&v->params, 1, err) != DPO_OK) return DPO_ERR_USAGE;
  v->precision = dtype;
  return DPO_OK;
}

kn_dtype dpo_vae_precision(const dpo_vae *v) { return v->precision; }

int dpo_vae_can_encode(const dpo_vae *v) { return v->planned && v->encoder_planned; }

int dpo_vae_clone(const dpo_vae *v, dpo_vae **out, dpo_error *err) {
  *out = NULL;
  dpo_vae *c = calloc(1, sizeof *c);
  if (!c) return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  c->cfg = v->cfg;
  c->legacy_attn = v->legacy_attn;
  c->config_json = json_deep_copy(v->config_json);
  if (!c->config_json || build(c, err) != DPO_OK) {
    if (!c->config_json) dpo_fail(err, DPO_ERR_DATA, "out of memory");
    dpo_vae_free(c);
    return DPO_ERR_DATA;
  }
  /* The host block holds the loaded values whatever the placement: nothing
   * trains a VAE, so a device copy never differs from it. */
  memcpy(c->params.data, v->params.data, v->params.total * sizeof(float));
  *out = c;
  return DPO_OK;
}

/* -------------------------------------------------------------- passes */

static const void *mid_forward(kn_ctx *ctx, vae_mid *m, const void *x) {
  md_resnet_forward(ctx, &m->res[0], x, NULL);
  x = m->res[0].out.v;
  if (m->has_attn) {
    /* Attention over the H*W positions as tokens of C channels, one head
     * (head size C: 512 in Stable Diffusion's VAE). */
    kn_dtype dt = m->tokens.dtype;
    md_norm_forward(ctx, &m->attn_norm, x);
    md_transpose_forward(ctx, dt, m->tokens.v, m->attn_norm.out.v, m->B, m->C, m->HW);
    md_attention_forward(ctx, &m->attn, m->tokens.v, m->tokens.v);
    md_transpose_forward(ctx, dt, m->back.v, m->attn.out.v, m->B, m->HW, m->C);
    md_add_forward(ctx, dt, m->attn_out.v, m->back.v, x, (size_t)m->B * m->C * m->HW);
    x = m->attn_out.v;
  }
  md_resnet_forward(ctx, &m->res[1], x, NULL);
  return m->res[1].out.v;
}

/* Copies x[B, C, H, W] into out[B, C, H+1, W+1] with a zero last row and column. */
static void pad_right_bottom(float *out, const float *x, int BC, int H, int W) {
  for (int bc = 0; bc < BC; bc++) {
    float *o = out + (size_t)bc * (H + 1) * (W + 1);
    const float *s = x + (size_t)bc * H * W;
    for (int y = 0; y < H; y++) {
      memcpy(o + (size_t)y * (W + 1), s + (size_t)y * W, (size_t)W * sizeof(float));
      o[(size_t)y * (W + 1) + W] = 0.0f;
    }
    memset(o + (size_t)H * (W + 1), 0, (size_t)(W + 1) * sizeof(float));
  }
}

static const void *block_forward(kn_ctx *ctx, vae_block *b, const void *x, int B, int up) {
  for (int j = 0; j < b->n_layers; j++) {
    md_resnet_forward(ctx, &b->res[j], x, NULL);
    x = b->res[j].out.v;
  }
  if (!b->has_resample) return x;
  if (up) {
    md_upsample2x_forward(ctx, b->resample_in.dtype, b->resample_in.v, x, B, b->C, b->H, b->W);
    md_conv_forward(ctx, &b->resample, b->resample_out.v, b->resample_in.v, B, 2 * b->H, 2 * b->W);
  } else {
    pad_right_bottom(b->resample_in.v, x, B * b->C, b->H, b->W);
    md_conv_forward(ctx, &b->resample, b->resample_out.v, b->resample_in.v, B, b->H + 1, b->W + 1);
  }
  return b->resample_out.v;
}

int dpo_vae_encode(dpo_vae *v, kn_ctx *ctx, const float *image, uint64_t seed, uint64_t stream, int scaled,
                   float *mean, float *sample) {
  const dpo_vae_config *c = &v->cfg;
  int B = v->B, n = c->n_blocks, L = c->latent_channels, hw = v->h * v->w;
  if (!v->planned || !v->encoder_planned) return DPO_ERR_USAGE;
  /* A float32 CPU plan (see the top): tensors are host floats here. */
  memcpy(v->image.v, image, (size_t)B * c->in_channels * v->H * v->W * sizeof(float));
  md_conv_forward(ctx, &v->enc_conv_in, v->e0.v, v->image.v, B, v->H, v->W);
  const void *x = v->e0.v;
  for (int i = 0; i < n; i++) x = block_forward(ctx, &v->enc_blocks[i], x, B, 0);
  x = mid_forward(ctx, &v->enc_mid, x);
  md_tensor *act = md_norm_silu_forward(ctx, &v->enc_norm_out, &v->enc_act, x);
  md_conv_forward(ctx, &v->enc_conv_out, v->enc_out.v, act->v, B, v->h, v->w);
  if (c->use_quant_conv) md_conv_forward(ctx, &v->quant_conv, v->moments.v, v->enc_out.v, B, v->h, v->w);
  else memcpy(v->moments.v, v->enc_out.v, (size_t)B * 2 * L * hw * sizeof(float));

  /* The posterior: mean and log-variance are the two halves of the channels. */
  size_t per_sample = (size_t)L * hw;
  if (sample) dpo_rng_normal_fill(seed, stream, 0, v->noise.v, (size_t)B * per_sample);
  float scale = scaled ? c->scaling_factor : 1.0f;
  const float *moments = v->moments.v, *noise = v->noise.v; /* the VAE is float32 */
  for (int b = 0; b < B; b++) {
    const float *mu = moments + (size_t)b * 2 * per_sample;
    const float *logvar = mu + per_sample;
    for (size_t i = 0; i < per_sample; i++) {
      float lv = logvar[i] < -30.0f ? -30.0f : (logvar[i] > 20.0f ? 20.0f : logvar[i]);
      size_t k = (size_t)b * per_sample + i;
      if (mean) mean[k] = scale * mu[i];
      if (sample) sample[k] = scale * (mu[i] + expf(0.5f * lv) * noise[k]);
    }
  }
  return DPO_OK;
}

/* latent_in = latents / scaling_factor (or as they are), float32 or rounded
 * to bf16 through the edge buffer. x * (1 / s) as the host loop did, so the
 * CPU's float32 results are unchanged. */
static void take_latents(dpo_vae *v, kn_ctx *ctx, const float *latents, int scaled) {
  size_t n_lat = (size_t)v->B * v->cfg.latent_channels * v->h * v->w;
  float inv = scaled ? 1.0f / v->cfg.scaling_factor : 1.0f;
  if (v->precision == KN_BF16) {
    kn_scale_forward(ctx, v->edge, latents, inv, n_lat);
    kn_to_bf16(ctx, v->latent_in.v, v->edge, n_lat);
  } else {
    kn_scale_forward(ctx, v->latent_in.v, latents, inv, n_lat);
  }
}

const float *dpo_vae_decode(dpo_vae *v, kn_ctx *ctx, const float *latents, int scaled) {
  const dpo_vae_config *c = &v->cfg;
  int B = v->B, n = c->n_blocks;
  if (!v->planned) return NULL;
  take_latents(v, ctx, latents, scaled);
  const void *z = v->latent_in.v;
  if (c->use_post_quant_conv) {
    md_conv_forward(ctx, &v->post_quant_conv, v->z.v, z, B, v->h, v->w);
    z = v->z.v;
  }
  md_conv_forward(ctx, &v->dec_conv_in, v->d0.v, z, B, v->h, v->w);
  const void *x = mid_forward(ctx, &v->dec_mid, v->d0.v);
  for (int i = 0; i < n; i++) x = block_forward(ctx, &v->dec_blocks[i], x, B, 1);
  md_tensor *act = md_norm_silu_forward(ctx, &v->dec_norm_out, &v->dec_act, x);
  md_conv_forward(ctx, &v->dec_conv_out, v->dec_out.v, act->v, B, v->H, v->W);
  if (v->precision != KN_BF16) return v->dec_out.v;
  kn_from_bf16(ctx, v->out_f32, v->dec_out.v, (size_t)B * c->out_channels * v->H * v->W);
  return v->out_f32;
}
