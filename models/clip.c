/* CLIPTextModel as transformers builds it: token + position embeddings,
 * pre-norm encoder layers with causal self-attention and an MLP (quick_gelu
 * or gelu), and the final layer norm; forward and explicit backward.
 *
 * Tensor names. transformers 4.x (and every published Stable Diffusion
 * checkpoint) writes "text_model.embeddings.token_embedding.weight" etc.;
 * transformers 5.x drops the "text_model." prefix. The loader accepts either
 * and save writes the names the model was loaded with. */
#include "models/models.h"

#include <stdlib.h>
#include <string.h>

#include "models/layers.h"

typedef struct {
  md_norm ln1, ln2;
  md_attention attn;
  md_linear fc1, fc2;
  md_tensor x1, h, a, m, out;
} clip_layer;

struct dpo_clip {
  dpo_clip_config cfg;
  json_t *config_json;
  char prefix[16];          /* "text_model." or "" */
  md_params params;
  md_plan plan;
  md_tensor wte, wpe;
  clip_layer *layers;
  md_norm final_ln;
  int B, T, n_run;
  int planned;
  int32_t *ids;             /* the batch's token ids, in the plan's backend memory */
  kn_backend ids_backend;
  md_tensor emb;
};

/* ---------------------------------------------------------------- config */

static const char *const parsed_keys[] = {
    "vocab_size", "hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers",
    "max_position_embeddings", "hidden_act", "layer_norm_eps", "eos_token_id", "attention_dropout",
    "dropout", "model_type", "architectures",
};

/* Keys that do not change the text encoder's computation: bookkeeping,
 * token ids of the tokenizer, the projection of CLIPTextModelWithProjection,
 * initialisation, and PretrainedConfig's generic (generation) settings that
 * older transformers versions wrote into every config. */
static const char *const ignored_keys[] = {
    "_name_or_path", "_commit_hash", "_attn_implementation_autoset", "transformers_version",
    "torch_dtype", "dtype", "bos_token_id", "pad_token_id", "projection_dim", "initializer_factor",
    "initializer_range", "return_dict", "output_hidden_states", "output_attentions", "torchscript",
    "use_bfloat16", "tf_legacy_loss", "pruned_heads", "tie_word_embeddings", "chunk_size_feed_forward",
    "is_encoder_decoder", "is_decoder", "cross_attention_hidden_size", "add_cross_attention",
    "tie_encoder_decoder", "max_length", "min_length", "do_sample", "early_stopping", "num_beams",
    "num_beam_groups", "diversity_penalty", "temperature", "top_k", "top_p", "typical_p",
    "repetition_penalty", "length_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size",
    "bad_words_ids", "num_return_sequences", "output_scores", "return_dict_in_generate",
    "forced_bos_token_id", "forced_eos_token_id", "remove_invalid_values",
    "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens", "finetuning_task",
    "id2label", "label2id", "tokenizer_class", "prefix", "sep_token_id", "decoder_start_token_id",
    "task_specific_params", "problem_type", "gradient_checkpointing", "use_cache",
};

static int in_list(const char *key, const char *const *list, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(key, list[i]) == 0) return 1;
  return 0;
}

static int get_pos_int(const json_t *cfg, const char *key, int def, int hi, int *out, const char *where,
                       dpo_error *err) {
  int64_t v = def;
  if (dpo_json_get_int_opt(cfg, key, &v, where, err) != DPO_OK) return DPO_ERR_DATA;
  if (v <= 0 || v > hi)
    return dpo_fail(err, DPO_ERR_DATA, "%s: \"%s\" = %lld is out of range [1, %d]", where, key, (long long)v, hi);
  *out = (int)v;
  return DPO_OK;
}

int dpo_clip_config_parse(const json_t *cfg, const char *where, dpo_clip_config *c, dpo_error *err) {
  memset(c, 0, sizeof *c);
  if (!json_is_object(cfg)) return dpo_fail(err, DPO_ERR_DATA, "%s: config must be a JSON object", where);
  const char *key;
  json_t *value;
  json_object_foreach((json_t *)cfg, key, value) {
    if (in_list(key, parsed_keys, sizeof parsed_keys / sizeof *parsed_keys)) continue;
    if (in_list(key, ignored_keys, sizeof ignored_keys / sizeof *ignored_keys)) continue;
    return dpo_fail(err, DPO_ERR_DATA, "%s: unknown key \"%s\" (not a CLIPTextModel setting this code knows)",
                    where, key);
  }
  const char *model_type = NULL;
  if (dpo_json_get_string_opt(cfg, "model_type", &model_type, where, err) != DPO_OK) return DPO_ERR_DATA;
  if (model_type && strcmp(model_type, "clip_text_model") != 0)
    return dpo_fail(err, DPO_ERR_DATA, "%s: key \"model_type\" = \"%s\" is not supported (expected \"clip_text_model\")",
                    where, model_type);
  const json_t *arch = json_object_get(cfg, "architectures");
  if (arch && !json_is_null(arch)) {
    const char *a = json_string_value(json_array_get(arch, 0));
    if (!json_is_array(arch) || json_array_size(arch) != 1 || !a || strcmp(a, "CLIPTextModel") != 0)
      return dpo_fail(err, DPO_ERR_DATA, "%s: key \"architectures\" must be [\"CLIPTextModel\"]", where);
  }
  if (get_pos_int(cfg, "vocab_size", 49408, 1 << 24, &c->vocab_size, where, err) ||
      get_pos_int(cfg, "hidden_size", 512, 65536, &c->hidden_size, where, err) ||
      get_pos_int(cfg, "intermediate_size", 2048, 1 << 18, &c->intermediate_size, where, err) ||
      get_pos_int(cfg, "num_attention_heads", 8, 4096, &c->num_attention_heads, where, err) ||
      get_pos_int(cfg, "num_hidden_layers", 12, 1024, &c->num_hidden_layers, where, err) ||
      get_pos_int(cfg, "max_position_embeddings", 77, 1 << 16, &c->max_position_embeddings, where, err))
    return DPO_ERR_DATA;
  int64_t eos = 49407;
  if (dpo_json_get_int_opt(cfg, "eos_token_id", &eos, where, err) != DPO_OK) return DPO_ERR_DATA;
  c->eos_token_id = (int)eos;
  if (c->hidden_size % c->num_attention_heads != 0)
    return dpo_fail(err, DPO_ERR_DATA, "%s: hidden_size %d is not divisible by num_attention_heads %d", where,
                    c->hidden_size, c->num_attention_heads);
  const char *act = "quick_gelu";
  if (dpo_json_get_string_opt(cfg, "hidden_act", &act, where, err) != DPO_OK) return DPO_ERR_DATA;
  if (strcmp(act, "quick_gelu") == 0) c->quick_gelu = 1;
  else if (strcmp(act, "gelu") == 0) c->quick_gelu = 0;
  else
    return dpo_fail(err, DPO_ERR_DATA, "%s: key \"hidden_act\" = \"%s\" is not supported (quick_gelu or gelu)",
                    where, act);
  double eps = 1e-5;
  if (dpo_json_get_number_opt(cfg, "layer_norm_eps", &eps, where, err) != DPO_OK) return DPO_ERR_DATA;
  if (!(eps > 0 && eps < 1)) return dpo_fail(err, DPO_ERR_DATA, "%s: \"layer_norm_eps\" must lie in (0, 1)", where);
  c->layer_norm_eps = (float)eps;
  const char *zero_keys[] = {"attention_dropout", "dropout"};
  for (int i = 0; i < 2; i++) {
    double v = 0;
    if (dpo_json_get_number_opt(cfg, zero_keys[i], &v, where, err) != DPO_OK) return DPO_ERR_DATA;
    if (v != 0)
      return dpo_fail(err, DPO_ERR_DATA, "%s: key \"%s\" = %g is not supported (only 0 is implemented)", where,
                      zero_keys[i], v);
  }
  return DPO_OK;
}

/* ----------------------------------------------------------- building */

static int build(dpo_clip *m, dpo_error *err) {
  const dpo_clip_config *c = &m->cfg;
  md_params *t = &m->params;
  int D = c->hidden_size, heads = c->num_attention_heads;
  char prefix[MD_NAME_MAX];
  md_params_init(t);
  snprintf(prefix, sizeof prefix, "%sembeddings", m->prefix);
  md_param_add(t, &m->wte, prefix, "token_embedding.weight", 2, c->vocab_size, D, 0, 0);
  md_param_add(t, &m->wpe, prefix, "position_embedding.weight", 2, c->max_position_embeddings, D, 0, 0);
  m->layers = calloc((size_t)c->num_hidden_layers, sizeof *m->layers);
  if (!m->layers) return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  for (int i = 0; i < c->num_hidden_layers; i++) {
    clip_layer *l = &m->layers[i];
    snprintf(prefix, sizeof prefix, "%sencoder.layers.%d", m->prefix, i);
    md_norm_init(&l->ln1, t, prefix, "layer_norm1", D, 0, c->layer_norm_eps);
    md_attention_init(&l->attn, t, prefix, "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                      "self_attn.out_proj", D, D, heads, D / heads, 1);
    l->attn.causal = 1;
    md_norm_init(&l->ln2, t, prefix, "layer_norm2", D, 0, c->layer_norm_eps);
    md_linear_init(&l->fc1, t, prefix, "mlp.fc1", D, c->intermediate_size, 1);
    md_linear_init(&l->fc2, t, prefix, "mlp.fc2", c->intermediate_size, D, 1);
  }
  snprintf(prefix, sizeof prefix, "%sfinal_layer_norm", m->prefix);
  md_norm_init(&m->final_ln, t, "", prefix, D, 0, c->layer_norm_eps);
  return md_params_alloc(t, err);
}

void dpo_clip_free(dpo_clip *m) {
  if (!m) return;
  free(m->layers);
  md_params_free(&m->params);
  md_plan_free(&m->plan);
  json_decref(m->config_json);
  kn_free(m->ids_backend, m->ids);
  free(m);
}

int dpo_clip_load(const char *dir, dpo_clip **out, dpo_error *err) {
  char path[4096], weights[4096];
  *out = NULL;
  snprintf(path, sizeof path, "%s/config.json", dir);
  json_t *cfg = dpo_json_load_file(path, DPO_MODEL_CONFIG_MAX_BYTES, err);
  if (!cfg) return DPO_ERR_DATA;
  dpo_clip *m = calloc(1, sizeof *m);
  if (!m) {
    json_decref(cfg);
    return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  }
  m->config_json = cfg;
  if (dpo_clip_config_parse(cfg, path, &m->cfg, err) != DPO_OK) {
    dpo_clip_free(m);
    return DPO_ERR_DATA;
  }
  snprintf(weights, sizeof weights, "%s/model.safetensors", dir);
  dpo_safetensors st;
  if (dpo_st_open(&st, weights, err) != DPO_OK) {
    dpo_clip_free(m);
    return DPO_ERR_DATA;
  }
  int legacy = dpo_st_find(&st, "text_model.embeddings.token_embedding.weight") != NULL;
  dpo_st_close(&st);
  snprintf(m->prefix, sizeof m->prefix, "%s", legacy ? "text_model." : "");
  /* transformers before 4.31 saved the position_ids buffer (0..P-1); it
   * ignores it on load, and so do we. */
  static const char *const buffers[] = {"text_model.embeddings.position_ids", "embeddings.position_ids", NULL};
  if (build(m, err) != DPO_OK ||
      md_params_load_ignoring(&m->params, weights, "CLIPTextModel", buffers, err) != DPO_OK) {
    dpo_clip_free(m);
    return DPO_ERR_DATA;
  }
  *out = m;
  return DPO_OK;
}

int dpo_clip_create(const json_t *cfg, dpo_clip **out, dpo_error *err) {
  *out = NULL;
  dpo_clip *m = calloc(1, sizeof *m);
  if (!m) return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  m->config_json = json_deep_copy(cfg);
  snprintf(m->prefix, sizeof m->prefix, "text_model.");
  if (!m->config_json || dpo_clip_config_parse(cfg, "config.json", &m->cfg, err) != DPO_OK ||
      build(m, err) != DPO_OK) {
    if (!m->config_json) dpo_fail(err, DPO_ERR_DATA, "out of memory");
    dpo_clip_free(m);
    return DPO_ERR_DATA;
  }
  *out = m;
  return DPO_OK;
}

void dpo_clip_init_random(dpo_clip *m, uint64_t seed) { md_params_init_default(&m->params, seed); }

int dpo_clip_save(const dpo_clip *m, const char *dir, dpo_error *err) {
  char path[4096];
  if (dpo_mkdir_p(dir, err) != DPO_OK) return DPO_ERR_DATA;
  snprintf(path, sizeof path, "%s/config.json", dir);
  if (dpo_json_write_file(path, m->config_json, err) != DPO_OK) return DPO_ERR_DATA;
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  return md_params_save(&m->params, path, err);
}

const dpo_clip_config *dpo_clip_get_config(const dpo_clip *m) { return &m->cfg; }
int dpo_clip_n_params(const dpo_clip *m) { return m->params.n; }

void dpo_clip_param(const dpo_clip *m, int i, dpo_param *out) { md_params_view(&m->params, i, out); }

void dpo_clip_zero_grads(dpo_clip *m) { md_params_zero_grads(&m->params); }

/* ------------------------------------------------------------- planning */

int dpo_clip_plan(dpo_clip *m, kn_ctx *ctx, int B, int T, int clip_skip, int train, dpo_error *err) {
  const dpo_clip_config *c = &m->cfg;
  if (B <= 0 || T <= 0 || T > c->max_position_embeddings)
    return dpo_fail(err, DPO_ERR_USAGE, "clip plan: need 1 <= tokens <= %d and a positive batch",
                    c->max_position_embeddings);
  if (clip_skip < 0 || clip_skip >= c->num_hidden_layers)
    return dpo_fail(err, DPO_ERR_USAGE, "clip plan: clip_skip %d must lie in [0, %d)", clip_skip,
                    c->num_hidden_layers);
  md_plan_free(&m->plan);
  m->planned = 0;
  kn_free(m->ids_backend, m->ids);
  m->ids = kn_malloc(ctx, (size_t)B * T * sizeof *m->ids);
  m->ids_backend = ctx->backend;
  if (!m->ids) return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  if (md_params_place(&m->params, ctx, err) != DPO_OK) return DPO_ERR_DATA;
  if (train && md_params_alloc_grads(&m->params, ctx, err) != DPO_OK) return DPO_ERR_DATA;
  m->B = B;
  m->T = T;
  m->n_run = c->num_hidden_layers - clip_skip;
  md_plan *p = &m->plan;
  md_plan_init(p, train, ctx->n_threads);
  size_t rows = (size_t)B * T, D = (size_t)c->hidden_size;
  md_plan_tensor(p, &m->emb, rows * D);
  for (int i = 0; i < m->n_run; i++) {
    clip_layer *l = &m->layers[i];
    md_norm_plan(p, &l->ln1, (int)rows, 1);
    md_attention_plan(p, &l->attn, B, T, T);
    md_plan_tensor(p, &l->x1, rows * D);
    md_norm_plan(p, &l->ln2, (int)rows, 1);
    md_plan_tensor(p, &l->h, rows * c->intermediate_size);
    md_plan_tensor(p, &l->a, rows * c->intermediate_size);
    md_plan_tensor(p, &l->m, rows * D);
    md_plan_tensor(p, &l->out, rows * D);
  }
  md_norm_plan(p, &m->final_ln, (int)rows, 1);
  if (md_plan_alloc(p, ctx, err) != DPO_OK || kn_ctx_reserve(ctx, p->scratch_bytes, err) != DPO_OK)
    return DPO_ERR_DATA;
  m->planned = 1;
  return DPO_OK;
}

/* -------------------------------------------------------------- passes */

static kn_activation clip_act(const dpo_clip *m) { return m->cfg.quick_gelu ? KN_ACT_QUICK_GELU : KN_ACT_GELU; }

int dpo_clip_forward(dpo_clip *m, kn_ctx *ctx, const int32_t *ids, const float **hidden, dpo_error *err) {
  const dpo_clip_config *c = &m->cfg;
  int B = m->B, T = m->T, rows = B * T, D = c->hidden_size, I = c->intermediate_size;
  if (!m->planned) return dpo_fail(err, DPO_ERR_USAGE, "clip: forward before dpo_clip_plan");
  for (int i = 0; i < rows; i++)
    if (ids[i] < 0 || ids[i] >= c->vocab_size)
      return dpo_fail(err, DPO_ERR_USAGE, "clip: token id %d at position %d is outside the vocabulary [0, %d)",
                      (int)ids[i], i, c->vocab_size);
  kn_upload(ctx, m->ids, ids, (size_t)rows * sizeof *ids);
  kn_embedding_forward(ctx, m->emb.v, m->ids, m->wte.v, m->wpe.v, B, T, D);
  const float *x = m->emb.v;
  for (int i = 0; i < m->n_run; i++) {
    clip_layer *l = &m->layers[i];
    md_norm_forward(ctx, &l->ln1, x);
    md_attention_forward(ctx, &l->attn, l->ln1.out.v, l->ln1.out.v);
    kn_add_forward(ctx, l->x1.v, l->attn.out.v, x, (size_t)rows * D);
    md_norm_forward(ctx, &l->ln2, l->x1.v);
    md_linear_forward(ctx, &l->fc1, l->h.v, l->ln2.out.v, rows);
    kn_activation_forward(ctx, clip_act(m), l->a.v, l->h.v, (size_t)rows * I);
    md_linear_forward(ctx, &l->fc2, l->m.v, l->a.v, rows);
    kn_add_forward(ctx, l->out.v, l->m.v, l->x1.v, (size_t)rows * D);
    x = l->out.v;
  }
  md_norm_forward(ctx, &m->final_ln, x);
  *hidden = m->final_ln.out.v;
  return DPO_OK;
}

void dpo_clip_backward(dpo_clip *m, kn_ctx *ctx, const float *dhidden) {
  const dpo_clip_config *c = &m->cfg;
  int B = m->B, T = m->T, rows = B * T, D = c->hidden_size, I = c->intermediate_size;
  if (!m->planned || !m->plan.train) return;   /* the contract: a train plan and a forward */
  md_plan_zero_grads(ctx, &m->plan);
  kn_copy(ctx, m->final_ln.out.g, dhidden, (size_t)rows * D * sizeof(float));
  md_tensor *x = m->n_run > 0 ? &m->layers[m->n_run - 1].out : &m->emb;
  md_norm_backward(ctx, &m->final_ln, x->g, x->v);
  for (int i = m->n_run - 1; i >= 0; i--) {
    clip_layer *l = &m->layers[i];
    md_tensor *in = i > 0 ? &m->layers[i - 1].out : &m->emb;
    kn_add_backward(ctx, l->m.g, l->x1.g, l->out.g, (size_t)rows * D);
    md_linear_backward(ctx, &l->fc2, l->a.g, l->m.g, l->a.v, rows);
    kn_activation_backward(ctx, clip_act(m), l->h.g, l->a.g, l->h.v, (size_t)rows * I);
    md_linear_backward(ctx, &l->fc1, l->ln2.out.g, l->h.g, l->ln2.out.v, rows);
    md_norm_backward(ctx, &l->ln2, l->x1.g, l->x1.v);
    kn_add_backward(ctx, l->attn.out.g, in->g, l->x1.g, (size_t)rows * D);
    md_attention_backward(ctx, &l->attn, l->ln1.out.g, l->ln1.out.g, l->ln1.out.v, l->ln1.out.v);
    md_norm_backward(ctx, &l->ln1, in->g, in->v);
  }
  kn_embedding_backward(ctx, m->wte.g, m->wpe.g, m->emb.g, m->ids, B, T, D);
}
