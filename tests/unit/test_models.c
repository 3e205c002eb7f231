/* models: refusal of bad configs and weight files (each message names the
 * key or tensor), the backward conventions, and the input gradients of the
 * UNet (which the golden test does not record) by finite differences. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/models.h"
#include "tests/test.h"

static kn_ctx ctx;

static const char *fixture_dir(const char *name) {
  static char path[4096];
  char rel[256];
  snprintf(rel, sizeof rel, "tests/fixtures/models/%s", name);
  snprintf(path, sizeof path, "%s", test_source_path(rel));
  return path;
}

static json_t *fixture_config(const char *name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", fixture_dir(name));
  dpo_error err = {0};
  json_t *cfg = dpo_json_load_file(path, 1 << 20, &err);
  if (!cfg) test_fail(__FILE__, __LINE__, "%s", err.msg);
  return cfg;
}

/* A model folder in the temp dir: `cfg` as config.json and the fixture's
 * weights rewritten with one tensor dropped, one reshaped, or one added. */
typedef enum { WEIGHTS_SAME, WEIGHTS_DROP, WEIGHTS_RESHAPE, WEIGHTS_EXTRA, WEIGHTS_LEGACY_ATTN,
               WEIGHTS_POSITION_IDS } weights_edit;

/* The attention names diffusers used before 0.14: to_q -> query, ... */
static const char *legacy_name(const char *name, char *buf, size_t n) {
  static const char *const now[] = {".to_q.", ".to_k.", ".to_v.", ".to_out.0."};
  static const char *const old[] = {".query.", ".key.", ".value.", ".proj_attn."};
  for (int i = 0; i < 4; i++) {
    const char *at = strstr(name, now[i]);
    if (at) {
      snprintf(buf, n, "%.*s%s%s", (int)(at - name), name, old[i], at + strlen(now[i]));
      return buf;
    }
  }
  return name;
}

static const char *make_folder(const char *tag, const char *fixture, const char *weights_file,
                               const json_t *cfg, weights_edit edit, const char *tensor) {
  dpo_error err = {0};
  const char *dir = test_path(tag);
  CHECK(dpo_mkdir_p(dir, &err) == DPO_OK);
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", dir);
  CHECK(dpo_json_write_file(path, cfg, &err) == DPO_OK);

  snprintf(path, sizeof path, "%s/%s", fixture_dir(fixture), weights_file);
  dpo_safetensors st;
  if (dpo_st_open(&st, path, &err) != DPO_OK) {
    test_fail(__FILE__, __LINE__, "%s", err.msg);
    return dir;
  }
  dpo_st_writer w;
  dpo_st_writer_init(&w);
  static float extra[4] = {1, 2, 3, 4};
  for (int i = 0; i < st.n_tensors; i++) {
    const dpo_tensor_view *t = &st.tensors[i];
    int64_t shape[DPO_ST_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    int ndim = t->ndim;
    const void *data = t->data;
    dpo_dtype dtype = t->dtype;
    int match = strcmp(t->name, tensor ? tensor : "") == 0;
    if (match && edit == WEIGHTS_DROP) continue;
    if (match && edit == WEIGHTS_RESHAPE) {
      /* Same bytes, viewed as a flat vector. */
      shape[0] = t->numel;
      ndim = 1;
    }
    char renamed[256];
    const char *name = edit == WEIGHTS_LEGACY_ATTN ? legacy_name(t->name, renamed, sizeof renamed) : t->name;
    CHECK(dpo_st_writer_add(&w, name, dtype, ndim, shape, data, &err) == DPO_OK);
  }
  if (edit == WEIGHTS_EXTRA) {
    int64_t shape[1] = {4};
    CHECK(dpo_st_writer_add(&w, tensor, DPO_DTYPE_F32, 1, shape, extra, &err) == DPO_OK);
  }
  static int64_t position_ids[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
  if (edit == WEIGHTS_POSITION_IDS) {
    int64_t shape[2] = {1, 12};
    CHECK(dpo_st_writer_add(&w, tensor, DPO_DTYPE_I64, 2, shape, position_ids, &err) == DPO_OK);
  }
  snprintf(path, sizeof path, "%s/%s", dir, weights_file);
  CHECK(dpo_st_writer_write(&w, path, &err) == DPO_OK);
  dpo_st_writer_free(&w);
  dpo_st_close(&st);
  return dir;
}

static void expect_unet_error(const char *tag, const json_t *cfg, weights_edit edit, const char *tensor,
                              const char *fragment) {
  const char *dir = make_folder(tag, "unet_sd15", "diffusion_pytorch_model.safetensors", cfg, edit, tensor);
  dpo_unet *u = NULL;
  dpo_error err = {0};
  CHECK_INT(dpo_unet_load(dir, &u, &err), DPO_ERR_DATA);
  CHECK(u == NULL);
  CHECK_CONTAINS(err.msg, fragment);
  dpo_unet_free(u);
}

static void test_unet_bad_files(void) {
  json_t *cfg = fixture_config("unet_sd15");
  if (!cfg) return;
  /* The unchanged copy loads: the edits below are what fails. */
  const char *dir = make_folder("unet_ok", "unet_sd15", "diffusion_pytorch_model.safetensors", cfg,
                                WEIGHTS_SAME, NULL);
  dpo_unet *u = NULL;
  dpo_error err = {0};
  CHECK_INT(dpo_unet_load(dir, &u, &err), DPO_OK);
  dpo_unet_free(u);

  expect_unet_error("unet_missing", cfg, WEIGHTS_DROP, "mid_block.attentions.0.proj_in.weight",
                    "missing tensor \"mid_block.attentions.0.proj_in.weight\"");
  expect_unet_error("unet_shape", cfg, WEIGHTS_RESHAPE, "down_blocks.0.resnets.0.conv1.weight",
                    "tensor \"down_blocks.0.resnets.0.conv1.weight\" has shape [2304], expected [16, 16, 3, 3]");
  expect_unet_error("unet_extra", cfg, WEIGHTS_EXTRA, "down_blocks.0.resnets.7.conv1.bias",
                    "unexpected tensor \"down_blocks.0.resnets.7.conv1.bias\"");

  json_t *bad = json_deep_copy(cfg);
  json_array_set_new(json_object_get(bad, "down_block_types"), 1, json_string("SimpleCrossAttnDownBlock2D"));
  expect_unet_error("unet_block", bad, WEIGHTS_SAME, NULL, "unknown block type \"SimpleCrossAttnDownBlock2D\"");
  json_decref(bad);

  bad = json_deep_copy(cfg);
  json_array_set_new(json_object_get(bad, "up_block_types"), 0, json_string("AttnUpBlock2D"));
  expect_unet_error("unet_upblock", bad, WEIGHTS_SAME, NULL, "\"up_block_types\"[0]: unknown block type \"AttnUpBlock2D\"");
  json_decref(bad);

  bad = json_deep_copy(cfg);
  json_object_set_new(bad, "mid_block_type", json_string("UNetMidBlock2DSimpleCrossAttn"));
  expect_unet_error("unet_mid", bad, WEIGHTS_SAME, NULL, "key \"mid_block_type\"");
  json_decref(bad);

  bad = json_deep_copy(cfg);
  json_object_set_new(bad, "frobnicate_blocks", json_true());
  expect_unet_error("unet_unknown", bad, WEIGHTS_SAME, NULL, "unknown key \"frobnicate_blocks\"");
  json_decref(bad);

  bad = json_deep_copy(cfg);
  json_object_set_new(bad, "class_embed_type", json_string("timestep"));
  expect_unet_error("unet_class", bad, WEIGHTS_SAME, NULL, "key \"class_embed_type\" = \"timestep\" is not supported");
  json_decref(bad);

  bad = json_deep_copy(cfg);
  json_object_set_new(bad, "resnet_time_scale_shift", json_string("scale_shift"));
  expect_unet_error("unet_shift", bad, WEIGHTS_SAME, NULL, "key \"resnet_time_scale_shift\"");
  json_decref(bad);

  bad = json_deep_copy(cfg);
  json_object_set_new(bad, "only_cross_attention", json_true());
  expect_unet_error("unet_only_cross", bad, WEIGHTS_SAME, NULL, "key \"only_cross_attention\"");
  json_decref(bad);

  bad = json_deep_copy(cfg);
  json_object_set_new(bad, "num_attention_heads", json_integer(4));
  expect_unet_error("unet_heads", bad, WEIGHTS_SAME, NULL, "key \"num_attention_heads\"");
  json_decref(bad);

  /* Default-valued keys are accepted whatever their JSON number spelling. */
  bad = json_deep_copy(cfg);
  json_object_set_new(bad, "mid_block_scale_factor", json_real(1.0));
  json_object_set_new(bad, "dropout", json_integer(0));
  dpo_unet_config parsed;
  CHECK_INT(dpo_unet_config_parse(bad, "cfg", &parsed, &err), DPO_OK);
  json_decref(bad);

  /* A config whose channels do not split into heads names both keys. */
  bad = json_deep_copy(cfg);
  json_object_set_new(bad, "attention_head_dim", json_integer(3));
  CHECK_INT(dpo_unet_config_parse(bad, "cfg", &parsed, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "attention_head_dim");
  json_decref(bad);
  json_decref(cfg);
}

static void test_clip_and_vae_bad_files(void) {
  dpo_error err = {0};
  json_t *cfg = fixture_config("clip_quick");
  if (cfg) {
    const char *dir = make_folder("clip_missing", "clip_quick", "model.safetensors", cfg, WEIGHTS_DROP,
                                  "text_model.encoder.layers.1.mlp.fc2.bias");
    dpo_clip *m = NULL;
    CHECK_INT(dpo_clip_load(dir, &m, &err), DPO_ERR_DATA);
    CHECK_CONTAINS(err.msg, "missing tensor \"text_model.encoder.layers.1.mlp.fc2.bias\"");
    json_t *bad = json_deep_copy(cfg);
    json_object_set_new(bad, "hidden_act", json_string("relu"));
    dir = make_folder("clip_act", "clip_quick", "model.safetensors", bad, WEIGHTS_SAME, NULL);
    CHECK_INT(dpo_clip_load(dir, &m, &err), DPO_ERR_DATA);
    CHECK_CONTAINS(err.msg, "key \"hidden_act\" = \"relu\"");
    json_decref(bad);
    bad = json_deep_copy(cfg);
    json_object_set_new(bad, "rope_theta", json_real(10000));
    CHECK_INT(dpo_clip_config_parse(bad, "cfg", &(dpo_clip_config){0}, &err), DPO_ERR_DATA);
    CHECK_CONTAINS(err.msg, "unknown key \"rope_theta\"");
    json_decref(bad);

    /* Older transformers saved the position_ids buffer: it is skipped. */
    dir = make_folder("clip_position_ids", "clip_quick", "model.safetensors", cfg, WEIGHTS_POSITION_IDS,
                      "text_model.embeddings.position_ids");
    CHECK_INT(dpo_clip_load(dir, &m, &err), DPO_OK);
    dpo_clip_free(m);
    m = NULL;

    /* Token ids outside the vocabulary are refused, not read out of bounds. */
    dir = make_folder("clip_ok", "clip_quick", "model.safetensors", cfg, WEIGHTS_SAME, NULL);
    CHECK_INT(dpo_clip_load(dir, &m, &err), DPO_OK);
    if (m) {
      int32_t ids[3] = {1, 99, 2};
      const float *hidden = NULL;
      CHECK_INT(dpo_clip_plan(m, &ctx, 1, 3, 0, 0, &err), DPO_OK);
      CHECK_INT(dpo_clip_forward(m, &ctx, ids, &hidden, &err), DPO_ERR_USAGE);
      CHECK_CONTAINS(err.msg, "token id 99 at position 1");
      CHECK_INT(dpo_clip_plan(m, &ctx, 1, 13, 0, 0, &err), DPO_ERR_USAGE);
      CHECK_INT(dpo_clip_plan(m, &ctx, 1, 3, 3, 0, &err), DPO_ERR_USAGE);
      /* Saved and loaded again, the weights are the same under the same names. */
      const char *saved = test_path("clip_saved");
      CHECK_INT(dpo_clip_save(m, saved, &err), DPO_OK);
      dpo_clip *again = NULL;
      CHECK_INT(dpo_clip_load(saved, &again, &err), DPO_OK);
      if (again) {
        CHECK_INT(dpo_clip_n_params(again), dpo_clip_n_params(m));
        for (int i = 0; i < dpo_clip_n_params(m); i++) {
          dpo_param a, b;
          dpo_clip_param(m, i, &a);
          dpo_clip_param(again, i, &b);
          CHECK_STR(a.name, b.name);
          CHECK(memcmp(a.data, b.data, a.numel * sizeof(float)) == 0);
        }
      }
      dpo_clip_free(again);
      dpo_clip_free(m);
    }
    json_decref(cfg);
  }

  cfg = fixture_config("vae");
  if (cfg) {
    const char *dir = make_folder("vae_shape", "vae", "diffusion_pytorch_model.safetensors", cfg,
                                  WEIGHTS_RESHAPE, "decoder.mid_block.attentions.0.to_q.weight");
    dpo_vae *v = NULL;
    CHECK_INT(dpo_vae_load(dir, &v, &err), DPO_ERR_DATA);
    CHECK_CONTAINS(err.msg, "tensor \"decoder.mid_block.attentions.0.to_q.weight\" has shape [1024], expected [32, 32]");
    /* Old attention names load, and decode as the current names do. */
    dpo_vae *now = NULL, *old = NULL;
    dir = make_folder("vae_legacy", "vae", "diffusion_pytorch_model.safetensors", cfg, WEIGHTS_LEGACY_ATTN, NULL);
    CHECK_INT(dpo_vae_load(fixture_dir("vae"), &now, &err), DPO_OK);
    CHECK_INT(dpo_vae_load(dir, &old, &err), DPO_OK);
    if (now && old) {
      float z[2 * 4 * 2 * 2];
      dpo_rng_normal_fill(9, 9, 0, z, 32);
      CHECK_INT(dpo_vae_plan(now, &ctx, 2, 4, 4, &err), DPO_OK);
      CHECK_INT(dpo_vae_plan(old, &ctx, 2, 4, 4, &err), DPO_OK);
      const float *a = dpo_vae_decode(now, &ctx, z, 0), *b = dpo_vae_decode(old, &ctx, z, 0);
      CHECK(memcmp(a, b, 2 * 3 * 4 * 4 * sizeof(float)) == 0);
    }
    dpo_vae_free(now);
    dpo_vae_free(old);

    json_t *bad = json_deep_copy(cfg);
    json_array_set_new(json_object_get(bad, "up_block_types"), 1, json_string("AttnUpDecoderBlock2D"));
    dir = make_folder("vae_block", "vae", "diffusion_pytorch_model.safetensors", bad, WEIGHTS_SAME, NULL);
    CHECK_INT(dpo_vae_load(dir, &v, &err), DPO_ERR_DATA);
    CHECK_CONTAINS(err.msg, "unknown block type \"AttnUpDecoderBlock2D\"");
    json_decref(bad);
    bad = json_deep_copy(cfg);
    json_object_set_new(bad, "shift_factor", json_real(0.1159));
    CHECK_INT(dpo_vae_config_parse(bad, "cfg", &(dpo_vae_config){0}, &err), DPO_ERR_DATA);
    CHECK_CONTAINS(err.msg, "key \"shift_factor\"");
    json_decref(bad);
    json_decref(cfg);
  }
}

/* loss = sum(out * g) for the UNet at the given inputs. */
static double unet_loss(dpo_unet *u, const float *x, const float *t, const float *enc, const float *g, size_t n) {
  const float *out = dpo_unet_forward(u, &ctx, x, t, enc);
  double loss = 0.0;
  for (size_t i = 0; i < n; i++) loss += (double)out[i] * g[i];
  return loss;
}

static void test_unet_gradients(void) {
  dpo_error err = {0};
  dpo_unet *u = NULL;
  if (dpo_unet_load(fixture_dir("unet_sd15"), &u, &err) != DPO_OK) {
    test_fail(__FILE__, __LINE__, "%s", err.msg);
    return;
  }
  const int B = 1, H = 4, W = 4, T = 3;
  const dpo_unet_config *c = dpo_unet_get_config(u);
  CHECK_INT(dpo_unet_plan(u, &ctx, B, 5, 4, T, 1, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "not divisible by 2");
  /* Gradients internal to resnets and transformer blocks share one region:
   * a training plan needs far less than twice the forward's memory. */
  CHECK_INT(dpo_unet_plan(u, &ctx, B, H, W, T, 0, &err), DPO_OK);
  size_t forward_bytes = dpo_unet_plan_bytes(u);
  CHECK_INT(dpo_unet_plan(u, &ctx, B, H, W, T, 1, &err), DPO_OK);
  size_t train_bytes = dpo_unet_plan_bytes(u);
  CHECK(train_bytes > forward_bytes && train_bytes < forward_bytes + forward_bytes / 2);
  size_t n_x = (size_t)B * c->in_channels * H * W, n_enc = (size_t)B * T * c->cross_attention_dim;
  size_t n_out = (size_t)B * c->out_channels * H * W;
  float *x = malloc(n_x * sizeof(float)), *enc = malloc(n_enc * sizeof(float)), *g = malloc(n_out * sizeof(float));
  float *dx = calloc(n_x, sizeof(float)), *denc = calloc(n_enc, sizeof(float));
  float *dir_x = malloc(n_x * sizeof(float)), *dir_e = malloc(n_enc * sizeof(float));
  float t[1] = {321.0f};
  dpo_rng_normal_fill(1, 1, 0, x, n_x);
  dpo_rng_normal_fill(1, 2, 0, enc, n_enc);
  dpo_rng_normal_fill(1, 3, 0, g, n_out);
  dpo_rng_normal_fill(1, 4, 0, dir_x, n_x);
  dpo_rng_normal_fill(1, 5, 0, dir_e, n_enc);

  unet_loss(u, x, t, enc, g, n_out);
  dpo_unet_zero_grads(u);
  dpo_unet_backward(u, &ctx, g, dx, denc);

  /* Backward accumulates: a second pass doubles every gradient. */
  dpo_param p;
  dpo_unet_param(u, 0, &p);
  float first = p.grad[0];
  float *dx2 = malloc(n_x * sizeof(float));
  memcpy(dx2, dx, n_x * sizeof(float));
  dpo_unet_backward(u, &ctx, g, dx2, NULL);
  CHECK_NEAR(p.grad[0], 2.0 * first, 1e-5 * fabs(first) + 1e-12);
  CHECK_NEAR(dx2[3], 2.0 * dx[3], 1e-5 * fabs(dx[3]) + 1e-12);

  /* Directional derivatives by central differences. */
  const float eps = 1e-2f;
  double analytic_x = 0.0, analytic_e = 0.0;
  for (size_t i = 0; i < n_x; i++) analytic_x += (double)dx[i] * dir_x[i];
  for (size_t i = 0; i < n_enc; i++) analytic_e += (double)denc[i] * dir_e[i];
  float *xp = malloc(n_x * sizeof(float)), *ep = malloc(n_enc * sizeof(float));
  for (size_t i = 0; i < n_x; i++) xp[i] = x[i] + eps * dir_x[i];
  double lp = unet_loss(u, xp, t, enc, g, n_out);
  for (size_t i = 0; i < n_x; i++) xp[i] = x[i] - eps * dir_x[i];
  double lm = unet_loss(u, xp, t, enc, g, n_out);
  double numeric_x = (lp - lm) / (2 * eps);
  for (size_t i = 0; i < n_enc; i++) ep[i] = enc[i] + eps * dir_e[i];
  lp = unet_loss(u, x, t, ep, g, n_out);
  for (size_t i = 0; i < n_enc; i++) ep[i] = enc[i] - eps * dir_e[i];
  lm = unet_loss(u, x, t, ep, g, n_out);
  double numeric_e = (lp - lm) / (2 * eps);
  CHECK_NEAR(analytic_x, numeric_x, 1e-2 * fabs(numeric_x) + 1e-3);
  CHECK_NEAR(analytic_e, numeric_e, 1e-2 * fabs(numeric_e) + 1e-3);
  CHECK(fabs(numeric_x) > 1e-3 && fabs(numeric_e) > 1e-3);

  free(x);
  free(enc);
  free(g);
  free(dx);
  free(dx2);
  free(denc);
  free(dir_x);
  free(dir_e);
  free(xp);
  free(ep);
  dpo_unet_free(u);
}

static const dpo_param *find_param(dpo_param *all, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (strcmp(all[i].name, name) == 0) return &all[i];
  test_fail(__FILE__, __LINE__, "no parameter %s", name);
  return NULL;
}

/* Fresh models for training from scratch: PyTorch's default init, seeded. */
static void test_random_init(void) {
  dpo_error err = {0};
  json_t *cfg = fixture_config("unet_sd15");
  dpo_unet *a = NULL, *b = NULL;
  if (!cfg || dpo_unet_create(cfg, &a, &err) != DPO_OK || dpo_unet_create(cfg, &b, &err) != DPO_OK) {
    test_fail(__FILE__, __LINE__, "%s", err.msg);
    json_decref(cfg);
    dpo_unet_free(a);
    return;
  }
  dpo_unet_init_random(a, 7);
  dpo_unet_init_random(b, 7);
  int n = dpo_unet_n_params(a);
  dpo_param *pa = calloc((size_t)n, sizeof *pa);
  for (int i = 0; i < n; i++) {
    dpo_param q;
    dpo_unet_param(a, i, &pa[i]);
    dpo_unet_param(b, i, &q);
    CHECK(memcmp(pa[i].data, q.data, pa[i].numel * sizeof(float)) == 0);
  }
  const dpo_param *w = find_param(pa, n, "conv_in.weight"), *bias = find_param(pa, n, "conv_in.bias");
  const dpo_param *gn = find_param(pa, n, "down_blocks.0.resnets.0.norm1.weight");
  const dpo_param *gb = find_param(pa, n, "down_blocks.0.resnets.0.norm1.bias");
  if (w && bias && gn && gb) {
    float bound = 1.0f / 6.0f;   /* fan_in = 4 channels x 3 x 3 */
    double sum_sq = 0.0;
    for (size_t i = 0; i < w->numel; i++) {
      CHECK(fabsf(w->data[i]) <= bound);
      sum_sq += (double)w->data[i] * w->data[i];
    }
    /* U(-b, b) has variance b^2 / 3. */
    CHECK_NEAR(sum_sq / w->numel, bound * bound / 3.0, 0.2 * bound * bound / 3.0);
    for (size_t i = 0; i < bias->numel; i++) CHECK(fabsf(bias->data[i]) <= bound && bias->data[i] != 0.0f);
    for (size_t i = 0; i < gn->numel; i++) CHECK(gn->data[i] == 1.0f && gb->data[i] == 0.0f);
  }
  dpo_unet_init_random(b, 8);
  dpo_param q;
  dpo_unet_param(b, 0, &q);
  CHECK(memcmp(pa[0].data, q.data, q.numel * sizeof(float)) != 0);
  free(pa);
  dpo_unet_free(a);
  dpo_unet_free(b);
  json_decref(cfg);

  /* A fresh text encoder runs, saves under "text_model.*" and loads back. */
  cfg = fixture_config("clip_gelu");
  dpo_clip *m = NULL;
  if (!cfg || dpo_clip_create(cfg, &m, &err) != DPO_OK) {
    test_fail(__FILE__, __LINE__, "%s", err.msg);
    json_decref(cfg);
    return;
  }
  dpo_clip_init_random(m, 3);
  int32_t ids[4] = {5, 6, 7, 8};
  const float *hidden = NULL;
  CHECK_INT(dpo_clip_plan(m, &ctx, 1, 4, 0, 0, &err), DPO_OK);
  CHECK_INT(dpo_clip_forward(m, &ctx, ids, &hidden, &err), DPO_OK);
  float first = hidden ? hidden[0] : 0.0f;
  CHECK(isfinite(first));
  const char *dir = test_path("fresh_clip");
  CHECK_INT(dpo_clip_save(m, dir, &err), DPO_OK);
  dpo_clip *again = NULL;
  CHECK_INT(dpo_clip_load(dir, &again, &err), DPO_OK);
  if (again) {
    dpo_param p;
    dpo_clip_param(again, 0, &p);
    CHECK_STR(p.name, "text_model.embeddings.token_embedding.weight");
    CHECK_INT(dpo_clip_plan(again, &ctx, 1, 4, 0, 0, &err), DPO_OK);
    CHECK_INT(dpo_clip_forward(again, &ctx, ids, &hidden, &err), DPO_OK);
    CHECK(hidden && hidden[0] == first);
  }
  dpo_clip_free(again);
  dpo_clip_free(m);
  json_decref(cfg);
}

int main(void) {
  dpo_error err = {0};
  if (kn_ctx_init(&ctx, 2, &err) != DPO_OK) return 1;
  test_unet_bad_files();
  test_clip_and_vae_bad_files();
  test_unet_gradients();
  test_random_init();
  kn_ctx_free(&ctx);
  return test_finish();
}
