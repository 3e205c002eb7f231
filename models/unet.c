/* UNet2DConditionModel as diffusers builds it for SD1.x/SD2.x configs, with an
 * explicit backward (llm.c style): every layer keeps what its backward needs
 * in the planned arena, and backward walks the network in reverse.
 *
 * Shape bookkeeping follows diffusers' unet_2d_condition.py: down block i
 * goes from block_out_channels[i-1] to block_out_channels[i]; every resnet
 * (and attention) output and every downsampler output is kept as a skip
 * connection, together with conv_in's output; the up blocks consume them in
 * reverse, concatenating each to their input on the channel axis. */
#include "models/models.h"

#include <stdlib.h>
#include <string.h>

#include "models/layers.h"

#define MAX_SKIPS 64

typedef struct {
  int n_layers;
  int has_attn;
  md_resnet *res;
  md_transformer *attn;       /* n_layers of them when has_attn */
  md_tensor **skip;           /* up blocks: the skip each resnet concatenates */
  md_tensor *cat;             /* up blocks: [x, skip] per resnet */
  int *cat_x_channels;
  int has_resample;
  md_conv resample;           /* downsamplers.0.conv or upsamplers.0.conv */
  md_tensor nearest;          /* up blocks: the 2x upsampled input of the conv */
  md_tensor resample_out;
  int C_in, C_out;            /* channels entering and leaving the block */
  int H, W;                   /* resolution entering the block */
} unet_block;

struct dpo_unet {
  dpo_unet_config cfg;
  json_t *config_json;
  md_params params;
  md_plan plan;
  int planned;
  int checkpoint;       /* activation checkpointing in the next training plan */
  kn_dtype precision;   /* of the activations (dpo_unet_set_precision) */
  int B, H, W, T;

  md_conv conv_in;
  md_linear time_l1, time_l2;
  unet_block down[DPO_UNET_MAX_BLOCKS];
  md_resnet mid_res[2];
  md_transformer mid_attn;
  unet_block up[DPO_UNET_MAX_BLOCKS];
  md_norm norm_out;
  md_conv conv_out;

  md_tensor sample, enc, h0, tproj, l1, s1, emb, emb_act, out_act, out;
  float *timesteps;
  /* bf16 plans: float32 buffers at the model's edges (its inputs and
   * gradients are float32 whatever the precision): `edge` for an input on
   * its way in or a gradient on its way out, `out_f32` for the output. */
  float *edge, *out_f32;
  int time_dim;
};

/* ---------------------------------------------------------------- config */

/* Keys diffusers knows whose other values this code does not implement,
 * with the one value accepted (JSON text). */
static const struct {
  const char *key;
  const char *value;
} fixed_keys[] = {
    {"mid_block_type", "\"UNetMidBlock2DCrossAttn\""},
    {"act_fn", "\"silu\""},
    {"downsample_padding", "1"},
    {"mid_block_scale_factor", "1"},
    {"dropout", "0"},
    {"reverse_transformer_layers_per_block", "null"},
    {"encoder_hid_dim", "null"},
    {"encoder_hid_dim_type", "null"},
    {"num_attention_heads", "null"},
    {"dual_cross_attention", "false"},
    {"class_embed_type", "null"},
    {"addition_embed_type", "null"},
    {"addition_time_embed_dim", "null"},
    {"num_class_embeds", "null"},
    {"resnet_time_scale_shift", "\"default\""},
    {"resnet_skip_time_act", "false"},
    {"resnet_out_scale_factor", "1"},
    {"time_embedding_type", "\"positional\""},
    {"time_embedding_dim", "null"},
    {"time_embedding_act_fn", "null"},
    {"timestep_post_act", "null"},
    {"time_cond_proj_dim", "null"},
    {"conv_in_kernel", "3"},
    {"conv_out_kernel", "3"},
    {"projection_class_embeddings_input_dim", "null"},
    {"attention_type", "\"default\""},
    {"class_embeddings_concat", "false"},
    {"mid_block_only_cross_attention", "null"},
    {"cross_attention_norm", "null"},
};

/* Keys read by the parser below. */
static const char *const parsed_keys[] = {
    "sample_size", "in_channels", "out_channels", "center_input_sample", "flip_sin_to_cos",
    "freq_shift", "down_block_types", "up_block_types", "only_cross_attention",
    "block_out_channels", "layers_per_block", "norm_num_groups", "norm_eps",
    "cross_attention_dim", "transformer_layers_per_block", "attention_head_dim",
    "use_linear_projection", "upcast_attention",
    /* Only read when addition_embed_type is set, which is refused above. */
    "addition_embed_type_num_heads",
};

/* diffusers' own bookkeeping. */
static const char *const bookkeeping_keys[] = {"_class_name", "_diffusers_version", "_name_or_path",
                                               "_use_default_values", "_commit_hash"};

static int in_list(const char *key, const char *const *list, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(key, list[i]) == 0) return 1;
  return 0;
}

static int check_keys(const json_t *cfg, const char *where, dpo_error *err) {
  const char *key;
  json_t *value;
  json_object_foreach((json_t *)cfg, key, value) {
    if (in_list(key, parsed_keys, sizeof parsed_keys / sizeof *parsed_keys)) continue;
    if (in_list(key, bookkeeping_keys, sizeof bookkeeping_keys / sizeof *bookkeeping_keys)) continue;
    int known = 0;
    for (size_t i = 0; i < sizeof fixed_keys / sizeof *fixed_keys; i++) {
      if (strcmp(key, fixed_keys[i].key) != 0) continue;
      known = 1;
      /* mid_block_only_cross_attention false means the same as null here. */
      if (strcmp(key, "mid_block_only_cross_attention") == 0 && json_is_false(value)) break;
      if (!md_json_equals_text(value, fixed_keys[i].value)) {
        char *text = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT);
        int rc = dpo_fail(err, DPO_ERR_DATA,
                          "%s: key \"%s\" = %s is not supported (only %s is implemented)", where, key,
                          text ? text : "?", fixed_keys[i].value);
        free(text);
        return rc;
      }
      break;
    }
    if (!known)
      return dpo_fail(err, DPO_ERR_DATA, "%s: unknown key \"%s\" (not a UNet2DConditionModel setting this code knows)",
                      where, key);
  }
  const json_t *cls = json_object_get(cfg, "_class_name");
  if (cls && !(json_is_string(cls) && strcmp(json_string_value(cls), "UNet2DConditionModel") == 0))
    return dpo_fail(err, DPO_ERR_DATA, "%s: \"_class_name\" must be \"UNet2DConditionModel\"", where);
  return DPO_OK;
}

static int get_int_default(const json_t *cfg, const char *key, int def, int lo, int hi, int *out,
                           const char *where, dpo_error *err) {
  int64_t v = def;
  if (dpo_json_get_int_opt(cfg, key, &v, where, err) != DPO_OK) return DPO_ERR_DATA;
  if (v < lo || v > hi)
    return dpo_fail(err, DPO_ERR_DATA, "%s: \"%s\" = %lld is out of range [%d, %d]", where, key,
                    (long long)v, lo, hi);
  *out = (int)v;
  return DPO_OK;
}

static int get_bool_default(const json_t *cfg, const char *key, int def, int *out, const char *where,
                            dpo_error *err) {
  *out = def;
  return dpo_json_get_bool_opt(cfg, key, out, where, err);
}

/* Reads a list of block type names into flags: 1 for the cross-attention type. */
static int parse_block_types(const json_t *cfg, const char *key, const char *attn_name,
                             const char *plain_name, int *flags, int *n, const char *where,
                             dpo_error *err) {
  const json_t *list = json_object_get(cfg, key);
  if (!list) return dpo_fail(err, DPO_ERR_DATA, "%s: missing key \"%s\"", where, key);
  if (!json_is_array(list) || json_array_size(list) == 0 || json_array_size(list) > DPO_UNET_MAX_BLOCKS)
    return dpo_fail(err, DPO_ERR_DATA, "%s: \"%s\" must be a list of 1 to %d block types", where, key,
                    DPO_UNET_MAX_BLOCKS);
  *n = (int)json_array_size(list);
  for (int i = 0; i < *n; i++) {
    const char *name = json_string_value(json_array_get(list, (size_t)i));
    if (name && strcmp(name, attn_name) == 0) flags[i] = 1;
    else if (name && strcmp(name, plain_name) == 0) flags[i] = 0;
    else
      return dpo_fail(err, DPO_ERR_DATA, "%s: \"%s\"[%d]: unknown block type \"%s\" (expected %s or %s)",
                      where, key, i, name ? name : "(not a string)", attn_name, plain_name);
  }
  return DPO_OK;
}

static int parse_only_cross_attention(const json_t *cfg, const char *where, dpo_error *err) {
  const json_t *v = json_object_get(cfg, "only_cross_attention");
  if (!v || json_is_false(v)) return DPO_OK;
  if (json_is_array(v)) {
    size_t i;
    json_t *e;
    int all_false = 1;
    json_array_foreach(v, i, e) if (!json_is_false(e)) all_false = 0;
    if (all_false) return DPO_OK;
  }
  return dpo_fail(err, DPO_ERR_DATA, "%s: key \"only_cross_attention\" is not supported (only false is implemented)",
                  where);
}

int dpo_unet_config_parse(const json_t *cfg, const char *where, dpo_unet_config *c, dpo_error *err) {
  memset(c, 0, sizeof *c);
  if (!json_is_object(cfg)) return dpo_fail(err, DPO_ERR_DATA, "%s: config must be a JSON object", where);
  if (check_keys(cfg, where, err) != DPO_OK) return DPO_ERR_DATA;
  if (parse_only_cross_attention(cfg, where, err) != DPO_OK) return DPO_ERR_DATA;

  int n_up = 0;
  if (parse_block_types(cfg, "down_block_types", "CrossAttnDownBlock2D", "DownBlock2D",
                        c->down_cross_attn, &c->n_blocks, where, err) != DPO_OK ||
      parse_block_types(cfg, "up_block_types", "CrossAttnUpBlock2D", "UpBlock2D", c->up_cross_attn,
                        &n_up, where, err) != DPO_OK)
    return DPO_ERR_DATA;
  int n = c->n_blocks;
  if (n_up != n)
    return dpo_fail(err, DPO_ERR_DATA, "%s: \"up_block_types\" has %d entries, \"down_block_types\" %d",
                    where, n_up, n);

  const json_t *boc = json_object_get(cfg, "block_out_channels");
  if (!json_is_array(boc) || (int)json_array_size(boc) != n)
    return dpo_fail(err, DPO_ERR_DATA, "%s: \"block_out_channels\" must be a list of %d integers", where, n);
  for (int i = 0; i < n; i++) {
    const json_t *e = json_array_get(boc, (size_t)i);
    if (!json_is_integer(e) || json_integer_value(e) <= 0 || json_integer_value(e) > 65536)
      return dpo_fail(err, DPO_ERR_DATA, "%s: \"block_out_channels\"[%d] must be a positive integer", where, i);
    c->block_out_channels[i] = (int)json_integer_value(e);
  }
  if (md_json_int_or_list(cfg, "layers_per_block", n, 2, c->layers_per_block, where, err) != DPO_OK ||
      md_json_int_or_list(cfg, "attention_head_dim", n, 8, c->heads, where, err) != DPO_OK ||
      md_json_int_or_list(cfg, "transformer_layers_per_block", n, 1, c->transformer_layers, where, err) != DPO_OK)
    return DPO_ERR_DATA;
  const json_t *cross = json_object_get(cfg, "cross_attention_dim");
  if (cross && !json_is_integer(cross))
    return dpo_fail(err, DPO_ERR_DATA, "%s: key \"cross_attention_dim\" must be an integer (per-block lists are not supported)",
                    where);
  if (get_int_default(cfg, "cross_attention_dim", 1280, 1, 65536, &c->cross_attention_dim, where, err) ||
      get_int_default(cfg, "in_channels", 4, 1, 4096, &c->in_channels, where, err) ||
      get_int_default(cfg, "out_channels", 4, 1, 4096, &c->out_channels, where, err) ||
      get_bool_default(cfg, "use_linear_projection", 0, &c->use_linear_projection, where, err) ||
      get_bool_default(cfg, "flip_sin_to_cos", 1, &c->flip_sin_to_cos, where, err) ||
      get_bool_default(cfg, "center_input_sample", 0, &c->center_input_sample, where, err) ||
      get_bool_default(cfg, "upcast_attention", 0, &c->upcast_attention, where, err))
    return DPO_ERR_DATA;

  const json_t *groups = json_object_get(cfg, "norm_num_groups");
  if (groups && json_is_null(groups))
    return dpo_fail(err, DPO_ERR_DATA, "%s: key \"norm_num_groups\" = null is not supported (only group norm is implemented)",
                    where);
  if (get_int_default(cfg, "norm_num_groups", 32, 1, 65536, &c->norm_num_groups, where, err))
    return DPO_ERR_DATA;
  double eps = 1e-5, shift = 0;
  if (dpo_json_get_number_opt(cfg, "norm_eps", &eps, where, err) ||
      dpo_json_get_number_opt(cfg, "freq_shift", &shift, where, err))
    return DPO_ERR_DATA;
  if (!(eps > 0 && eps < 1)) return dpo_fail(err, DPO_ERR_DATA, "%s: \"norm_eps\" must lie in (0, 1)", where);
  c->norm_eps = (float)eps;
  c->freq_shift = (float)shift;
  const json_t *ss = json_object_get(cfg, "sample_size");
  if (ss && json_is_integer(ss)) c->sample_size = (int)json_integer_value(ss);
  else if (ss && !json_is_null(ss))
    return dpo_fail(err, DPO_ERR_DATA, "%s: \"sample_size\" must be an integer", where);

  for (int i = 0; i < n; i++) {
    if (c->block_out_channels[i] % c->norm_num_groups != 0)
      return dpo_fail(err, DPO_ERR_DATA, "%s: block_out_channels[%d] = %d is not divisible by norm_num_groups = %d",
                      where, i, c->block_out_channels[i], c->norm_num_groups);
    if ((c->down_cross_attn[i] || c->up_cross_attn[n - 1 - i]) && c->block_out_channels[i] % c->heads[i] != 0)
      return dpo_fail(err, DPO_ERR_DATA, "%s: block_out_channels[%d] = %d is not divisible by attention_head_dim[%d] = %d",
                      where, i, c->block_out_channels[i], i, c->heads[i]);
  }
  return DPO_OK;
}

/* ----------------------------------------------------------- building */

static int build(dpo_unet *u, dpo_error *err) {
  const dpo_unet_config *c = &u->cfg;
  md_params *t = &u->params;
  int n = c->n_blocks, G = c->norm_num_groups;
  float eps = c->norm_eps;
  int C0 = c->block_out_channels[0];
  u->time_dim = 4 * C0;
  char prefix[MD_NAME_MAX];

  md_params_init(t);
  md_conv_init(&u->conv_in, t, "", "conv_in", c->in_channels, C0, 3, 1, 1, 1);
  md_linear_init(&u->time_l1, t, "time_embedding", "linear_1", C0, u->time_dim, 1);
  md_linear_init(&u->time_l2, t, "time_embedding", "linear_2", u->time_dim, u->time_dim, 1);

  /* Skip channels, pushed as the down path produces them. */
  int skip_channels[MAX_SKIPS];
  md_tensor *skips[MAX_SKIPS];
  int n_skips = 0;
  skip_channels[n_skips] = C0;
  skips[n_skips++] = &u->h0;

  int out_ch = C0;
  for (int i = 0; i < n; i++) {
    unet_block *b = &u->down[i];
    int in_ch = out_ch;
    out_ch = c->block_out_channels[i];
    b->n_layers = c->layers_per_block[i];
    b->has_attn = c->down_cross_attn[i];
    b->has_resample = i < n - 1;
    b->C_in = in_ch;
    b->C_out = out_ch;
    b->res = calloc((size_t)b->n_layers, sizeof *b->res);
    b->attn = b->has_attn ? calloc((size_t)b->n_layers, sizeof *b->attn) : NULL;
    if (!b->res || (b->has_attn && !b->attn)) return dpo_fail(err, DPO_ERR_DATA, "out of memory");
    for (int j = 0; j < b->n_layers; j++) {
      snprintf(prefix, sizeof prefix, "down_blocks.%d.resnets.%d", i, j);
      md_resnet_init(&b->res[j], t, prefix, j == 0 ? in_ch : out_ch, out_ch, u->time_dim, G, eps);
      if (b->has_attn) {
        snprintf(prefix, sizeof prefix, "down_blocks.%d.attentions.%d", i, j);
        if (md_transformer_init(&b->attn[j], t, prefix, out_ch, c->heads[i], c->transformer_layers[i],
                                c->cross_attention_dim, G, c->use_linear_projection, err) != DPO_OK)
          return DPO_ERR_DATA;
      }
      if (n_skips == MAX_SKIPS) return dpo_fail(err, DPO_ERR_DATA, "too many skip connections");
      skip_channels[n_skips] = out_ch;
      skips[n_skips++] = b->has_attn ? &b->attn[j].out : &b->res[j].out;
    }
    if (b->has_resample) {
      snprintf(prefix, sizeof prefix, "down_blocks.%d.downsamplers.0", i);
      md_conv_init(&b->resample, t, prefix, "conv", out_ch, out_ch, 3, 2, 1, 1);
      if (n_skips == MAX_SKIPS) return dpo_fail(err, DPO_ERR_DATA, "too many skip connections");
      skip_channels[n_skips] = out_ch;
      skips[n_skips++] = &b->resample_out;
    }
  }

  int Cm = c->block_out_channels[n - 1];
  md_resnet_init(&u->mid_res[0], t, "mid_block.resnets.0", Cm, Cm, u->time_dim, G, eps);
  if (md_transformer_init(&u->mid_attn, t, "mid_block.attentions.0", Cm, c->heads[n - 1],
                          c->transformer_layers[n - 1], c->cross_attention_dim, G,
                          c->use_linear_projection, err) != DPO_OK)
    return DPO_ERR_DATA;
  md_resnet_init(&u->mid_res[1], t, "mid_block.resnets.1", Cm, Cm, u->time_dim, G, eps);

  int x_ch = Cm;
  for (int i = 0; i < n; i++) {
    unet_block *b = &u->up[i];
    int rev = n - 1 - i;   /* the down block this up block mirrors */
    out_ch = c->block_out_channels[rev];
    b->n_layers = c->layers_per_block[rev] + 1;
    b->has_attn = c->up_cross_attn[i];
    b->has_resample = i < n - 1;
    b->C_in = x_ch;
    b->C_out = out_ch;
    b->res = calloc((size_t)b->n_layers, sizeof *b->res);
    b->attn = b->has_attn ? calloc((size_t)b->n_layers, sizeof *b->attn) : NULL;
    b->skip = calloc((size_t)b->n_layers, sizeof *b->skip);
    b->cat = calloc((size_t)b->n_layers, sizeof *b->cat);
    b->cat_x_channels = calloc((size_t)b->n_layers, sizeof *b->cat_x_channels);
    if (!b->res || (b->has_attn && !b->attn) || !b->skip || !b->cat || !b->cat_x_channels)
      return dpo_fail(err, DPO_ERR_DATA, "out of memory");
    for (int j = 0; j < b->n_layers; j++) {
      if (n_skips == 0)
        return dpo_fail(err, DPO_ERR_DATA, "up_blocks.%d needs more skip connections than the down path makes", i);
      n_skips--;
      b->skip[j] = skips[n_skips];
      b->cat_x_channels[j] = x_ch;
      int cat_ch = x_ch + skip_channels[n_skips];
      snprintf(prefix, sizeof prefix, "up_blocks.%d.resnets.%d", i, j);
      md_resnet_init(&b->res[j], t, prefix, cat_ch, out_ch, u->time_dim, G, eps);
      if (b->has_attn) {
        snprintf(prefix, sizeof prefix, "up_blocks.%d.attentions.%d", i, j);
        if (md_transformer_init(&b->attn[j], t, prefix, out_ch, c->heads[rev], c->transformer_layers[rev],
                                c->cross_attention_dim, G, c->use_linear_projection, err) != DPO_OK)
          return DPO_ERR_DATA;
      }
      x_ch = out_ch;
    }
    if (b->has_resample) {
      snprintf(prefix, sizeof prefix, "up_blocks.%d.upsamplers.0", i);
      md_conv_init(&b->resample, t, prefix, "conv", out_ch, out_ch, 3, 1, 1, 1);
    }
  }
  if (n_skips != 0)
    return dpo_fail(err, DPO_ERR_DATA, "the up path leaves %d skip connections unused (layers_per_block mismatch)",
                    n_skips);
  md_norm_init(&u->norm_out, t, "", "conv_norm_out", C0, G, eps);
  md_conv_init(&u->conv_out, t, "", "conv_out", C0, c->out_channels, 3, 1, 1, 1);
  return md_params_alloc(t, err);
}

static void free_block(unet_block *b) {
  if (b->attn)
    for (int j = 0; j < b->n_layers; j++) md_transformer_free(&b->attn[j]);
  free(b->res);
  free(b->attn);
  free(b->skip);
  free(b->cat);
  free(b->cat_x_channels);
}

void dpo_unet_free(dpo_unet *u) {
  if (!u) return;
  for (int i = 0; i < u->cfg.n_blocks; i++) {
    free_block(&u->down[i]);
    free_block(&u->up[i]);
  }
  md_transformer_free(&u->mid_attn);
  md_params_free(&u->params);
  md_plan_free(&u->plan);
  json_decref(u->config_json);
  free(u);
}

int dpo_unet_create(const json_t *cfg, dpo_unet **out, dpo_error *err) {
  *out = NULL;
  dpo_unet *u = calloc(1, sizeof *u);
  if (!u) return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  if (dpo_unet_config_parse(cfg, "config.json", &u->cfg, err) != DPO_OK) {
    free(u);
    return DPO_ERR_DATA;
  }
  u->config_json = json_deep_copy(cfg);
  if (build(u, err) != DPO_OK) {
    dpo_unet_free(u);
    return DPO_ERR_DATA;
  }
  *out = u;
  return DPO_OK;
}

int dpo_unet_load(const char *dir, dpo_unet **out, dpo_error *err) {
  char path[4096];
  *out = NULL;
  snprintf(path, sizeof path, "%s/config.json", dir);
  json_t *cfg = dpo_json_load_file(path, DPO_MODEL_CONFIG_MAX_BYTES, err);
  if (!cfg) return DPO_ERR_DATA;
  dpo_unet *u = calloc(1, sizeof *u);
  if (!u) {
    json_decref(cfg);
    return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  }
  u->config_json = cfg;
  if (dpo_unet_config_parse(cfg, path, &u->cfg, err) != DPO_OK || build(u, err) != DPO_OK) {
    dpo_unet_free(u);
    return DPO_ERR_DATA;
  }
  snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
  if (md_params_load(&u->params, path, "UNet2DConditionModel", err) != DPO_OK) {
    dpo_unet_free(u);
    return DPO_ERR_DATA;
  }
  *out = u;
  return DPO_OK;
}

void dpo_unet_init_random(dpo_unet *u, uint64_t seed) { md_params_init_default(&u->params, seed); }

int dpo_unet_save(const dpo_unet *u, const char *dir, dpo_error *err) {
  char path[4096];
  if (dpo_mkdir_p(dir, err) != DPO_OK) return DPO_ERR_DATA;
  snprintf(path, sizeof path, "%s/config.json", dir);
  json_t *cfg = json_deep_copy(u->config_json);
  if (!cfg) return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  json_object_set_new(cfg, "_class_name", json_string("UNet2DConditionModel"));
  int rc = dpo_json_write_file(path, cfg, err);
  json_decref(cfg);
  if (rc != DPO_OK) return rc;
  snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
  return md_params_save(&u->params, path, err);
}

const dpo_unet_config *dpo_unet_get_config(const dpo_unet *u) { return &u->cfg; }
int dpo_unet_n_params(const dpo_unet *u) { return u->params.n; }

void dpo_unet_param(const dpo_unet *u, int i, dpo_param *out) { md_params_view(&u->params, i, out); }

size_t dpo_unet_param_count(const dpo_unet *u) {
  size_t n = 0;
  for (int i = 0; i < u->params.n; i++) n += u->params.items[i].numel;
  return n;
}

void dpo_unet_zero_grads(dpo_unet *u) { md_params_zero_grads(&u->params); }

/* ------------------------------------------------------------- planning */

static void plan_block(md_plan *p, unet_block *b, int B, int H, int W, int T, int up) {
  b->H = H;
  b->W = W;
  for (int j = 0; j < b->n_layers; j++) {
    if (up) md_plan_tensor(p, &b->cat[j], (size_t)B * b->res[j].Cin * H * W);
    md_resnet_plan(p, &b->res[j], B, H, W);
    if (b->has_attn) md_transformer_plan(p, &b->attn[j], B, H, W, T);
  }
  if (!b->has_resample) return;
  if (up) {
    md_plan_tensor(p, &b->nearest, (size_t)B * b->C_out * 4 * H * W);
    md_plan_tensor(p, &b->resample_out, (size_t)B * b->C_out * 4 * H * W);
    md_conv_plan(p, &b->resample, 2 * H, 2 * W);
  } else {
    md_plan_tensor(p, &b->resample_out, (size_t)B * b->C_out * (H / 2) * (W / 2));
    md_conv_plan(p, &b->resample, H, W);
  }
}

int dpo_unet_plan(dpo_unet *u, kn_ctx *ctx, int B, int H, int W, int T, int train, dpo_error *err) {
  const dpo_unet_config *c = &u->cfg;
  int f = 1 << (c->n_blocks - 1);
  if (B <= 0 || H <= 0 || W <= 0 || T <= 0 || B > 4096 || H > 4096 || W > 4096 || T > 4096)
    return dpo_fail(err, DPO_ERR_USAGE, "unet plan: batch, size and tokens must lie in [1, 4096]");
  if (H % f != 0 || W % f != 0)
    return dpo_fail(err, DPO_ERR_USAGE, "unet plan: %dx%d latent is not divisible by %d (2^(blocks-1))", H,
                    W, f);
  md_plan_free(&u->plan);
  u->planned = 0;
  int rc = md_params_place(&u->params, ctx, err);
  if (rc == DPO_OK && train) rc = md_params_alloc_grads(&u->params, ctx, err);
  if (rc != DPO_OK) return rc;
  md_plan *p = &u->plan;
  md_plan_init(p, train, ctx->n_threads);
  p->checkpoint = train && u->checkpoint;
  p->dtype = u->precision;
  u->B = B;
  u->H = H;
  u->W = W;
  u->T = T;
  int C0 = c->block_out_channels[0];
  md_plan_tensor(p, &u->sample, (size_t)B * c->in_channels * H * W);
  md_plan_tensor(p, &u->enc, (size_t)B * T * c->cross_attention_dim);
  md_plan_floats(p, &u->timesteps, (size_t)B);
  md_plan_tensor(p, &u->tproj, (size_t)B * C0);
  md_plan_tensor(p, &u->l1, (size_t)B * u->time_dim);
  md_plan_tensor(p, &u->s1, (size_t)B * u->time_dim);
  md_plan_tensor(p, &u->emb, (size_t)B * u->time_dim);
  md_plan_tensor(p, &u->emb_act, (size_t)B * u->time_dim);
  md_plan_tensor(p, &u->h0, (size_t)B * C0 * H * W);
  md_conv_plan(p, &u->conv_in, H, W);
  int h = H, w = W;
  for (int i = 0; i < c->n_blocks; i++) {
    plan_block(p, &u->down[i], B, h, w, T, 0);
    if (u->down[i].has_resample) {
      h /= 2;
      w /= 2;
    }
  }
  md_resnet_plan(p, &u->mid_res[0], B, h, w);
  md_transformer_plan(p, &u->mid_attn, B, h, w, T);
  md_resnet_plan(p, &u->mid_res[1], B, h, w);
  for (int i = 0; i < c->n_blocks; i++) {
    plan_block(p, &u->up[i], B, h, w, T, 1);
    if (u->up[i].has_resample) {
      h *= 2;
      w *= 2;
    }
  }
  md_norm_silu_plan(p, &u->norm_out, &u->out_act, B, H * W);
  md_plan_tensor(p, &u->out, (size_t)B * c->out_channels * H * W);
  u->edge = u->out_f32 = NULL;
  if (u->precision == KN_BF16) {
    size_t n_sample = (size_t)B * c->in_channels * H * W, n_enc = (size_t)B * T * c->cross_attention_dim;
    size_t n_edge = n_sample > n_enc ? n_sample : n_enc;
    if ((size_t)B * C0 > n_edge) n_edge = (size_t)B * C0;
    md_plan_floats(p, &u->edge, n_edge);
    md_plan_floats(p, &u->out_f32, (size_t)B * c->out_channels * H * W);
  }
  md_conv_plan(p, &u->conv_out, H, W);
  if (md_plan_alloc(p, ctx, err) != DPO_OK) return DPO_ERR_DATA;
  if (kn_ctx_reserve(ctx, p->scratch_bytes, err) != DPO_OK) return DPO_ERR_DATA;
  u->planned = 1;
  return DPO_OK;
}

size_t dpo_unet_plan_bytes(const dpo_unet *u) {
  return u->plan.act_bytes + u->plan.shared_value_bytes + u->plan.grad_bytes + u->plan.shared_bytes;
}

void dpo_unet_set_checkpointing(dpo_unet *u, int on) { u->checkpoint = on != 0; }

int dpo_unet_set_precision(dpo_unet *u, kn_dtype dtype, int frozen, dpo_error *err) {
  if (u->planned || u->params.device || u->params.grad)
    return dpo_fail(err, DPO_ERR_USAGE, "unet: the precision is set before the first plan");
  if (dtype != KN_F32 && dtype != KN_BF16) return dpo_fail(err, DPO_ERR_USAGE, "unet: unknown precision");
  if (frozen && dtype != KN_BF16)
    return dpo_fail(err, DPO_ERR_USAGE, "unet: only a bf16 model can be frozen (held as bf16 weights)");
  if (dtype == KN_BF16 && md_params_set_bf16(&u->params, frozen, err) != DPO_OK) return DPO_ERR_USAGE;
  u->precision = dtype;
  return DPO_OK;
}

kn_dtype dpo_unet_precision(const dpo_unet *u) { return u->precision; }

/* -------------------------------------------------------------- forward */

/* Runs a block on x; returns the tensor it leaves. */
static md_tensor *block_forward(kn_ctx *ctx, unet_block *b, md_tensor *x, int B, const void *temb_act,
                                const void *enc, int up) {
  int H = b->H, W = b->W;
  kn_dtype dt = x->dtype;
  for (int j = 0; j < b->n_layers; j++) {
    const void *in = x->v;
    if (up) {
      md_concat_forward(ctx, dt, b->cat[j].v, x->v, b->skip[j]->v, B, b->cat_x_channels[j],
                        b->res[j].Cin - b->cat_x_channels[j], H * W);
      in = b->cat[j].v;
    }
    md_resnet_forward(ctx, &b->res[j], in, temb_act);
    x = &b->res[j].out;
    if (b->has_attn) {
      md_transformer_forward(ctx, &b->attn[j], x->v, enc);
      x = &b->attn[j].out;
    }
  }
  if (!b->has_resample) return x;
  if (up) {
    md_upsample2x_forward(ctx, dt, b->nearest.v, x->v, B, b->C_out, H, W);
    md_conv_forward(ctx, &b->resample, b->resample_out.v, b->nearest.v, B, 2 * H, 2 * W);
  } else {
    md_conv_forward(ctx, &b->resample, b->resample_out.v, x->v, B, H, W);
  }
  return &b->resample_out;
}

/* Copies the float32 inputs into the model's tensors: as they are, or
 * rounded to bf16 through the edge buffer. */
static void take_inputs(dpo_unet *u, kn_ctx *ctx, const float *sample, const float *timesteps,
                        const float *encoder_hidden_states) {
  const dpo_unet_config *c = &u->cfg;
  int B = u->B;
  size_t n_sample = (size_t)B * c->in_channels * u->H * u->W;
  size_t n_enc = (size_t)B * u->T * c->cross_attention_dim;
  kn_copy(ctx, u->timesteps, timesteps, (size_t)B * sizeof(float));
  if (u->precision == KN_BF16) {
    const float *x = sample;
    if (c->center_input_sample) {
      kn_affine_forward(ctx, u->edge, sample, 2.0f, -1.0f, n_sample);
      x = u->edge;
    }
    kn_to_bf16(ctx, u->sample.v, x, n_sample);
    kn_to_bf16(ctx, u->enc.v, encoder_hidden_states, n_enc);
    return;
  }
  if (c->center_input_sample) kn_affine_forward(ctx, u->sample.v, sample, 2.0f, -1.0f, n_sample);
  else kn_copy(ctx, u->sample.v, sample, n_sample * sizeof(float));
  kn_copy(ctx, u->enc.v, encoder_hidden_states, n_enc * sizeof(float));
}

/* The sinusoidal embedding is computed in float32 (then rounded in bf16). */
static void time_projection(dpo_unet *u, kn_ctx *ctx) {
  const dpo_unet_config *c = &u->cfg;
  int B = u->B, C0 = c->block_out_channels[0];
  float *proj = u->precision == KN_BF16 ? u->edge : u->tproj.v;
  kn_timestep_embedding_forward(ctx, proj, u->timesteps, B, C0, c->flip_sin_to_cos, c->freq_shift, 1.0f,
                                10000.0f);
  if (u->precision == KN_BF16) kn_to_bf16(ctx, u->tproj.v, proj, (size_t)B * C0);
}

const float *dpo_unet_forward(dpo_unet *u, kn_ctx *ctx, const float *sample, const float *timesteps,
                              const float *encoder_hidden_states) {
  if (!u->planned) return NULL;
  const dpo_unet_config *c = &u->cfg;
  int B = u->B, H = u->H, W = u->W;
  kn_dtype dt = u->precision;
  take_inputs(u, ctx, sample, timesteps, encoder_hidden_states);

  time_projection(u, ctx);
  md_linear_forward(ctx, &u->time_l1, u->l1.v, u->tproj.v, B);
  md_silu_forward(ctx, dt, u->s1.v, u->l1.v, (size_t)B * u->time_dim);
  md_linear_forward(ctx, &u->time_l2, u->emb.v, u->s1.v, B);
  /* Every resnet applies SiLU to the embedding before its projection. */
  md_silu_forward(ctx, dt, u->emb_act.v, u->emb.v, (size_t)B * u->time_dim);

  md_conv_forward(ctx, &u->conv_in, u->h0.v, u->sample.v, B, H, W);
  md_tensor *x = &u->h0;
  for (int i = 0; i < c->n_blocks; i++)
    x = block_forward(ctx, &u->down[i], x, B, u->emb_act.v, u->enc.v, 0);
  md_resnet_forward(ctx, &u->mid_res[0], x->v, u->emb_act.v);
  md_transformer_forward(ctx, &u->mid_attn, u->mid_res[0].out.v, u->enc.v);
  md_resnet_forward(ctx, &u->mid_res[1], u->mid_attn.out.v, u->emb_act.v);
  x = &u->mid_res[1].out;
  for (int i = 0; i < c->n_blocks; i++)
    x = block_forward(ctx, &u->up[i], x, B, u->emb_act.v, u->enc.v, 1);
  md_tensor *act = md_norm_silu_forward(ctx, &u->norm_out, &u->out_act, x->v);
  md_conv_forward(ctx, &u->conv_out, u->out.v, act->v, B, H, W);
  if (dt != KN_BF16) return u->out.v;
  kn_from_bf16(ctx, u->out_f32, u->out.v, (size_t)B * c->out_channels * H * W);
  return u->out_f32;
}

/* ------------------------------------------------------------- backward */

/* Backward of a block whose input was x; out is the tensor it left, whose
 * gradient is complete. */
static void block_backward(kn_ctx *ctx, unet_block *b, md_tensor *x, int B, const void *temb_act,
                           void *dtemb_act, const void *enc, void *denc, int up) {
  int H = b->H, W = b->W;
  kn_dtype dt = x->dtype;
  if (b->has_resample) {
    md_tensor *last = b->has_attn ? &b->attn[b->n_layers - 1].out : &b->res[b->n_layers - 1].out;
    if (up) {
      md_conv_backward(ctx, &b->resample, b->nearest.g, b->resample_out.g, b->nearest.v, B, 2 * H, 2 * W);
      md_upsample2x_backward(ctx, dt, last->g, b->nearest.g, B, b->C_out, H, W);
    } else {
      md_conv_backward(ctx, &b->resample, last->g, b->resample_out.g, last->v, B, H, W);
    }
  }
  for (int j = b->n_layers - 1; j >= 0; j--) {
    md_tensor *in = j > 0 ? (b->has_attn ? &b->attn[j - 1].out : &b->res[j - 1].out) : x;
    if (b->has_attn) md_transformer_backward(ctx, &b->attn[j], b->res[j].out.g, b->res[j].out.v, denc, enc);
    if (up) {
      md_resnet_backward(ctx, &b->res[j], b->cat[j].g, b->cat[j].v, dtemb_act, temb_act);
      md_concat_backward(ctx, dt, in->g, b->skip[j]->g, b->cat[j].g, B, b->cat_x_channels[j],
                         b->res[j].Cin - b->cat_x_channels[j], H * W);
    } else {
      md_resnet_backward(ctx, &b->res[j], in->g, in->v, dtemb_act, temb_act);
    }
  }
}

static md_tensor *block_output(unet_block *b) {
  if (b->has_resample) return &b->resample_out;
  return b->has_attn ? &b->attn[b->n_layers - 1].out : &b->res[b->n_layers - 1].out;
}

/* dst += alpha * a gradient of the model (float32, or bf16 widened through
 * the edge buffer). */
static void give_gradient(dpo_unet *u, kn_ctx *ctx, float *dst, float alpha, const void *grad, size_t n) {
  if (u->precision == KN_BF16) {
    kn_from_bf16(ctx, u->edge, grad, n);
    grad = u->edge;
  }
  kn_axpy(ctx, dst, alpha, grad, n);
}

void dpo_unet_backward(dpo_unet *u, kn_ctx *ctx, const float *dout, float *dsample,
                       float *dencoder_hidden_states) {
  if (!u->planned || !u->plan.train) return;   /* the contract: a train plan and a forward */
  const dpo_unet_config *c = &u->cfg;
  int B = u->B, H = u->H, W = u->W, n = c->n_blocks;
  kn_dtype dt = u->precision;
  size_t n_out = (size_t)B * c->out_channels * H * W;
  md_plan_zero_grads(ctx, &u->plan);
  if (dt == KN_BF16) kn_to_bf16(ctx, u->out.g, dout, n_out);
  else kn_copy(ctx, u->out.g, dout, n_out * sizeof(float));

  md_tensor *act = md_norm_silu_output(&u->norm_out, &u->out_act);
  md_conv_backward(ctx, &u->conv_out, act->g, u->out.g, act->v, B, H, W);
  md_tensor *x = block_output(&u->up[n - 1]);
  md_norm_silu_backward(ctx, &u->norm_out, &u->out_act, x->g, x->v);
  for (int i = n - 1; i >= 0; i--) {
    md_tensor *in = i > 0 ? block_output(&u->up[i - 1]) : &u->mid_res[1].out;
    block_backward(ctx, &u->up[i], in, B, u->emb_act.v, u->emb_act.g, u->enc.v, u->enc.g, 1);
  }
  md_resnet_backward(ctx, &u->mid_res[1], u->mid_attn.out.g, u->mid_attn.out.v, u->emb_act.g, u->emb_act.v);
  md_transformer_backward(ctx, &u->mid_attn, u->mid_res[0].out.g, u->mid_res[0].out.v, u->enc.g, u->enc.v);
  x = block_output(&u->down[n - 1]);
  md_resnet_backward(ctx, &u->mid_res[0], x->g, x->v, u->emb_act.g, u->emb_act.v);
  for (int i = n - 1; i >= 0; i--) {
    md_tensor *in = i > 0 ? block_output(&u->down[i - 1]) : &u->h0;
    block_backward(ctx, &u->down[i], in, B, u->emb_act.v, u->emb_act.g, u->enc.v, u->enc.g, 0);
  }
  md_conv_backward(ctx, &u->conv_in, u->sample.g, u->h0.g, u->sample.v, B, H, W);

  md_silu_backward(ctx, dt, u->emb.g, u->emb_act.g, u->emb.v, (size_t)B * u->time_dim);
  md_linear_backward(ctx, &u->time_l2, u->s1.g, u->emb.g, u->s1.v, B);
  md_silu_backward(ctx, dt, u->l1.g, u->s1.g, u->l1.v, (size_t)B * u->time_dim);
  md_linear_backward(ctx, &u->time_l1, NULL, u->l1.g, u->tproj.v, B);

  size_t n_sample = (size_t)B * c->in_channels * H * W;
  if (dsample) give_gradient(u, ctx, dsample, c->center_input_sample ? 2.0f : 1.0f, u->sample.g, n_sample);
  if (dencoder_hidden_states)
    give_gradient(u, ctx, dencoder_hidden_states, 1.0f, u->enc.g, (size_t)B * u->T * c->cross_attention_dim);
}
