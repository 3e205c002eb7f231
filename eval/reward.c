/* Implicit-reward accuracy of a tuned model against its reference on
 * held-out preference pairs (see eval.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

/* One network side: a pipeline with its own training schedule and buffers. */
typedef struct {
  dpo_pipeline *pipe;
  dpo_scheduler sched;      /* DDPM: add_noise, get_velocity */
  int text_length, text_dim;
  int32_t *ids;
  float *text;              /* [2, L, dim]: the caption twice (w and l) */
  float *x0;                /* [2, latent] */
  float *dev_text;          /* text on the device (NULL on the CPU) */
} reward_side;

struct eval_reward {
  kn_ctx ctx;               /* text encoders and UNets */
  kn_ctx host_ctx;          /* the VAEs' when ctx is a device's */
  int host_ctx_ok;
  reward_side side[2];      /* 0 = model, 1 = ref */
  int resolution, factor, channels, height, width;
  float *pixels;            /* [2, 3, R, R] */
  float *xt, *target;       /* [2, latent] */
  float timesteps[2];
  /* On a device: the UNet inputs there and its output back on the host. */
  float *dev_xt, *dev_timesteps, *out_host;
};

/* The VAEs run on the CPU: the reward's own context there, else a CPU one. */
static kn_ctx *vae_ctx(eval_reward *r) { return r->host_ctx_ok ? &r->host_ctx : &r->ctx; }

size_t eval_reward_latent_numel(const eval_reward *r) {
  return (size_t)r->channels * (size_t)r->height * (size_t)r->width;
}

void eval_wilson(int k, int n, double z, double *lo, double *hi) {
  if (n <= 0) {
    *lo = 0;
    *hi = 1;
    return;
  }
  double p = (double)k / n, z2 = z * z;
  double centre = (p + z2 / (2.0 * n)) / (1 + z2 / n);
  double half = z * sqrt(p * (1 - p) / n + z2 / (4.0 * n * n)) / (1 + z2 / n);
  *lo = fmax(0.0, centre - half);
  *hi = fmin(1.0, centre + half);
}

void eval_reward_close(eval_reward *r) {
  if (!r) return;
  for (int s = 0; s < 2; s++) {
    dpo_scheduler_free(&r->side[s].sched);
    free(r->side[s].ids);
    free(r->side[s].text);
    free(r->side[s].x0);
    kn_free(r->ctx.backend, r->side[s].dev_text);
  }
  kn_free(r->ctx.backend, r->dev_xt);
  kn_free(r->ctx.backend, r->dev_timesteps);
  free(r->out_host);
  kn_ctx_free(&r->ctx);
  if (r->host_ctx_ok) kn_ctx_free(&r->host_ctx);
  free(r->pixels);
  free(r->xt);
  free(r->target);
  free(r);
}

static int vae_factor(const dpo_pipeline *p) {
  return p->vae ? 1 << (dpo_vae_get_config(p->vae)->n_blocks - 1) : 1;
}

static int open_side(eval_reward *r, reward_side *s, dpo_pipeline *p, dpo_error *err) {
  s->pipe = p;
  const dpo_unet_config *u = dpo_unet_get_config(p->unet);
  const dpo_clip_config *c = dpo_clip_get_config(p->text_encoder);
  if (u->in_channels != r->channels || vae_factor(p) != r->factor)
    return dpo_fail(err, DPO_ERR_USAGE, "%s: latents of %d channels at 1/%d scale; the other model has %d at 1/%d",
                    p->dir, u->in_channels, vae_factor(p), r->channels, r->factor);
  if (!p->vae && u->in_channels != 3)
    return dpo_fail(err, DPO_ERR_DATA, "%s: a pixel-space UNet needs 3 channels", p->dir);
  s->text_length = dpo_tokenizer_max_length(p->tokenizer);
  s->text_dim = c->hidden_size;
  if (s->text_length > c->max_position_embeddings || c->hidden_size != u->cross_attention_dim)
    return dpo_fail(err, DPO_ERR_DATA, "%s: tokenizer length %d, text encoder %d positions x %d, UNet cross "
                    "attention %d do not fit together", p->dir, s->text_length, c->max_position_embeddings,
                    c->hidden_size, u->cross_attention_dim);
  dpo_scheduler_config cfg = p->scheduler;
  dpo_scheduler_config_set_kind(&cfg, DPO_SCHED_DDPM);
  int rc = dpo_scheduler_init(&s->sched, &cfg, err);
  if (rc) return rc;
  size_t lat = eval_reward_latent_numel(r);
  s->ids = malloc((size_t)s->text_length * sizeof *s->ids);
  s->text = malloc(2 * (size_t)s->text_length * (size_t)s->text_dim * sizeof *s->text);
  s->x0 = malloc(2 * lat * sizeof *s->x0);
  if (!s->ids || !s->text || !s->x0) return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  if (r->ctx.backend != KN_BACKEND_CPU) {
    s->dev_text = kn_malloc(&r->ctx, 2 * (size_t)s->text_length * (size_t)s->text_dim * sizeof(float));
    if (!s->dev_text) return dpo_fail(err, DPO_ERR_DATA, "out of %s memory", kn_backend_name(r->ctx.backend));
  }
  rc = dpo_clip_plan(p->text_encoder, &r->ctx, 1, s->text_length, 0, 0, err);
  if (!rc) rc = dpo_unet_plan(p->unet, &r->ctx, 2, r->height, r->width, s->text_length, 0, err);
  if (!rc && p->vae) rc = dpo_vae_plan(p->vae, vae_ctx(r), 2, r->resolution, r->resolution, err);
  return rc;
}

int eval_reward_open(eval_reward **out, dpo_pipeline *model, dpo_pipeline *ref, int resolution, int n_threads,
                     dpo_error *err) {
  return eval_reward_open_on(out, model, ref, resolution, n_threads, KN_BACKEND_CPU, err);
}

int eval_reward_open_on(eval_reward **out, dpo_pipeline *model, dpo_pipeline *ref, int resolution, int n_threads,
                        kn_backend backend, dpo_error *err) {
  *out = NULL;
  eval_reward *r = calloc(1, sizeof *r);
  if (!r) return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  int rc = kn_ctx_init_backend(&r->ctx, backend, n_threads, err);
  if (rc) {
    free(r);
    return rc;
  }
  if (backend != KN_BACKEND_CPU) {
    rc = kn_ctx_init(&r->host_ctx, n_threads, err);
    if (rc) {
      eval_reward_close(r);
      return rc;
    }
    r->host_ctx_ok = 1;
  }
  const dpo_unet_config *u = dpo_unet_get_config(model->unet);
  r->factor = vae_factor(model);
  r->channels = u->in_channels;
  r->resolution = resolution > 0 ? resolution : u->sample_size * r->factor;
  int multiple = r->factor * (1 << (u->n_blocks - 1));
  if (r->resolution <= 0 || r->resolution % multiple != 0 || r->resolution > 4096)
    rc = dpo_fail(err, DPO_ERR_USAGE, "resolution %d: expected a multiple of %d (at most 4096)", r->resolution,
                  multiple);
  r->height = r->width = r->resolution / r->factor;
  size_t lat = eval_reward_latent_numel(r);
  if (!rc) {
    r->pixels = malloc(2 * 3 * (size_t)r->resolution * r->resolution * sizeof(float));
    r->xt = malloc(2 * lat * sizeof(float));
    r->target = malloc(2 * lat * sizeof(float));
    if (!r->pixels || !r->xt || !r->target) rc = dpo_fail(err, DPO_ERR_DATA, "out of memory");
  }
  if (!rc && backend != KN_BACKEND_CPU) {
    r->dev_xt = kn_malloc(&r->ctx, 2 * lat * sizeof(float));
    r->dev_timesteps = kn_malloc(&r->ctx, 2 * sizeof(float));
    r->out_host = malloc(2 * lat * sizeof(float));
    if (!r->dev_xt || !r->dev_timesteps || !r->out_host)
      rc = dpo_fail(err, DPO_ERR_DATA, "out of %s memory", kn_backend_name(backend));
  }
  if (!rc) rc = open_side(r, &r->side[0], model, err);
  if (!rc) rc = open_side(r, &r->side[1], ref, err);
  if (rc) {
    eval_reward_close(r);
    return rc;
  }
  *out = r;
  return DPO_OK;
}

void eval_reward_draw(const eval_reward *r, uint64_t seed, int line, int n_t, int *timesteps, float *noise) {
  size_t lat = eval_reward_latent_numel(r);
  dpo_rng rng;
  dpo_rng_init(&rng, seed, dpo_rng_stream_id("reward-acc-t", (uint64_t)line, 0));
  int n_train = r->side[1].sched.num_train_timesteps;
  for (int k = 0; k < n_t; k++) {
    timesteps[k] = (int)dpo_rng_next_below(&rng, (uint32_t)n_train);
    dpo_rng_normal_fill(seed, dpo_rng_stream_id("reward-acc", (uint64_t)line, (uint64_t)k), 0, noise + (size_t)k * lat,
                        lat);
  }
}

/* Caption embedding (twice) and clean latents of w and l for one side. */
static int prepare_side(eval_reward *r, reward_side *s, const char *caption, dpo_error *err) {
  int rc = dpo_tokenizer_encode(s->pipe->tokenizer, caption, s->ids, s->text_length, NULL, err);
  const float *hidden;
  if (!rc) rc = dpo_clip_forward(s->pipe->text_encoder, &r->ctx, s->ids, &hidden, err);
  if (rc) return rc;
  size_t one = (size_t)s->text_length * (size_t)s->text_dim;
  if (s->dev_text) {
    kn_copy(&r->ctx, s->dev_text, hidden, one * sizeof(float));
    kn_copy(&r->ctx, s->dev_text + one, hidden, one * sizeof(float));
  } else {
    memcpy(s->text, hidden, one * sizeof(float));
    memcpy(s->text + one, hidden, one * sizeof(float));
  }
  size_t lat = eval_reward_latent_numel(r);
  if (s->pipe->vae) dpo_vae_encode(s->pipe->vae, vae_ctx(r), r->pixels, 0, 0, 1, s->x0, NULL);
  else memcpy(s->x0, r->pixels, 2 * lat * sizeof(float));
  return DPO_OK;
}

static int image_planes(const dpo_image *im, int R, float *out, dpo_error *err) {
  dpo_image fitted;
  int rc = eval_resize_center_crop(im, R, &fitted, err);
  if (rc) return rc;
  size_t plane = (size_t)R * R;
  for (size_t p = 0; p < plane; p++)
    for (int c = 0; c < 3; c++) out[c * plane + p] = fitted.pixels[p * 3 + c] / 255.0f * 2.0f - 1.0f;
  dpo_image_free(&fitted);
  return DPO_OK;
}

/* Per-sample MSEs of one side at timestep t with noise e. */
static int side_mse(eval_reward *r, reward_side *s, int t, const float *noise, double mse[2], dpo_error *err) {
  size_t lat = eval_reward_latent_numel(r);
  for (int i = 0; i < 2; i++) {
    const float *x0 = s->x0 + (size_t)i * lat;
    int rc = dpo_scheduler_add_noise(&s->sched, x0, noise, (float)t, r->xt + (size_t)i * lat, lat, err);
    if (!rc && s->sched.prediction == DPO_PRED_V)
      rc = dpo_scheduler_get_velocity(&s->sched, x0, noise, t, r->target + (size_t)i * lat, lat, err);
    else if (!rc)
      memcpy(r->target + (size_t)i * lat, noise, lat * sizeof(float));
    if (rc) return rc;
  }
  r->timesteps[0] = r->timesteps[1] = (float)t;
  const float *out;
  if (r->dev_xt) {
    kn_upload(&r->ctx, r->dev_xt, r->xt, 2 * lat * sizeof(float));
    kn_upload(&r->ctx, r->dev_timesteps, r->timesteps, 2 * sizeof(float));
    out = dpo_unet_forward(s->pipe->unet, &r->ctx, r->dev_xt, r->dev_timesteps, s->dev_text);
    if (!out) return dpo_fail(err, DPO_ERR_USAGE, "UNet forward without a plan");
    kn_download(&r->ctx, r->out_host, out, 2 * lat * sizeof(float));
    if (kn_ctx_check(&r->ctx, err)) return DPO_ERR_DATA;
    out = r->out_host;
  } else {
    out = dpo_unet_forward(s->pipe->unet, &r->ctx, r->xt, r->timesteps, s->text);
  }
  if (!out) return dpo_fail(err, DPO_ERR_USAGE, "UNet forward without a plan");
  for (int i = 0; i < 2; i++) {
    double sum = 0;
    for (size_t k = 0; k < lat; k++) {
      double d = (double)out[(size_t)i * lat + k] - (double)r->target[(size_t)i * lat + k];
      sum += d * d;
    }
    mse[i] = sum / (double)lat;
  }
  return DPO_OK;
}

int eval_reward_pair(eval_reward *r, const dpo_image *w, const dpo_image *l, const char *caption, int n_t,
                     const int *timesteps, const float *noise, double *model_diff, double *ref_diff, dpo_error *err) {
  size_t px = 3u * (size_t)r->resolution * r->resolution, lat = eval_reward_latent_numel(r);
  int rc = image_planes(w, r->resolution, r->pixels, err);
  if (!rc) rc = image_planes(l, r->resolution, r->pixels + px, err);
  for (int s = 0; s < 2 && !rc; s++) rc = prepare_side(r, &r->side[s], caption, err);
  for (int k = 0; k < n_t && !rc; k++) {
    if (timesteps[k] < 0 || timesteps[k] >= r->side[1].sched.num_train_timesteps)
      return dpo_fail(err, DPO_ERR_USAGE, "timestep %d outside [0, %d)", timesteps[k],
                      r->side[1].sched.num_train_timesteps);
    double m[2], f[2];
    rc = side_mse(r, &r->side[0], timesteps[k], noise + (size_t)k * lat, m, err);
    if (!rc) rc = side_mse(r, &r->side[1], timesteps[k], noise + (size_t)k * lat, f, err);
    if (!rc) {
      model_diff[k] = m[0] - m[1];
      ref_diff[k] = f[0] - f[1];
    }
  }
  return rc;
}

/* ------------------------------------------------------------ the command */

void eval_reward_config_default(eval_reward_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->timesteps = 10;
  cfg->beta = 5000;
}

static int write_pair_line(FILE *fp, const dpo_pair *p, double md, double rd, double inside) {
  json_t *o = json_object();
  json_object_set_new(o, "line", json_integer(p->line));
  json_object_set_new(o, "caption", json_string(p->caption));
  json_object_set_new(o, "image_w", json_string(p->image_w));
  json_object_set_new(o, "image_l", json_string(p->image_l));
  json_object_set_new(o, "model_diff", json_real(md));
  json_object_set_new(o, "ref_diff", json_real(rd));
  json_object_set_new(o, "inside", json_real(inside));
  json_object_set_new(o, "correct", json_boolean(inside > 0));
  char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(o);
  int ok = text && fprintf(fp, "%s\n", text) >= 0;
  free(text);
  return ok;
}

static int score_pairs(eval_reward *r, const eval_reward_config *cfg, const dpo_pairs *set, dpo_atomic_file *af,
                       eval_reward_result *res, dpo_error *err) {
  int n = set->n;
  if (cfg->limit > 0 && cfg->limit < n) n = cfg->limit;
  size_t lat = eval_reward_latent_numel(r);
  int *ts = malloc((size_t)cfg->timesteps * sizeof *ts);
  float *noise = malloc((size_t)cfg->timesteps * lat * sizeof *noise);
  double *md = malloc((size_t)cfg->timesteps * sizeof *md), *rd = malloc((size_t)cfg->timesteps * sizeof *rd);
  int rc = ts && noise && md && rd ? DPO_OK : dpo_fail(err, DPO_ERR_DATA, "out of memory");
  dpo_progress progress;
  if (!cfg->quiet) dpo_progress_begin(&progress, "reward-acc", (uint64_t)n, "pairs");
  double sum_inside = 0;
  for (int i = 0; i < n && !rc; i++) {
    const dpo_pair *p = &set->pairs[i];
    dpo_image w, l;
    rc = dpo_image_read(p->image_w, 3, &w, err);
    if (rc) break;
    rc = dpo_image_read(p->image_l, 3, &l, err);
    if (rc) {
      dpo_image_free(&w);
      break;
    }
    eval_reward_draw(r, cfg->seed, p->line, cfg->timesteps, ts, noise);
    rc = eval_reward_pair(r, &w, &l, p->caption, cfg->timesteps, ts, noise, md, rd, err);
    dpo_image_free(&w);
    dpo_image_free(&l);
    if (rc) {
      dpo_error_prefix(err, "%s:%d", set->path, p->line);
      break;
    }
    double mdm = 0, rdm = 0;
    for (int k = 0; k < cfg->timesteps; k++) {
      mdm += md[k] / cfg->timesteps;
      rdm += rd[k] / cfg->timesteps;
    }
    double inside = -0.5 * cfg->beta * (mdm - rdm);
    sum_inside += inside;
    res->n_pairs++;
    res->n_correct += inside > 0;
    if (af && !write_pair_line(af->fp, p, mdm, rdm, inside))
      rc = dpo_fail(err, DPO_ERR_DATA, "%s: write failed", af->path);
    if (!cfg->quiet) dpo_progress_advance(&progress, 1);
  }
  if (!cfg->quiet) dpo_progress_end(&progress);
  if (res->n_pairs > 0) res->mean_inside = sum_inside / res->n_pairs;
  free(ts);
  free(noise);
  free(md);
  free(rd);
  return rc;
}

int eval_reward_accuracy(const eval_reward_config *cfg, eval_reward_result *res, dpo_error *err) {
  memset(res, 0, sizeof *res);
  if (cfg->timesteps < 1 || cfg->timesteps > 1000)
    return dpo_fail(err, DPO_ERR_USAGE, "timesteps %d: expected 1..1000", cfg->timesteps);
  if (!(cfg->beta > 0)) return dpo_fail(err, DPO_ERR_USAGE, "beta must be > 0");
  dpo_pairs_options opt = {DPO_TIES_SKIP, NULL, 1};
  dpo_pairs set;
  int rc = dpo_pairs_load(cfg->pairs, &opt, &set, err);
  if (rc) return rc;
  res->n_ties_skipped = set.n_ties_skipped;
  dpo_pipeline model, ref;
  memset(&model, 0, sizeof model);
  memset(&ref, 0, sizeof ref);
  eval_reward *r = NULL;
  rc = dpo_pipeline_load(cfg->model, &model, err);
  if (!rc) rc = dpo_pipeline_load(cfg->ref, &ref, err);
  if (!rc && cfg->precision == KN_BF16) {
    rc = dpo_unet_set_precision(model.unet, KN_BF16, 1, err);
    if (!rc) rc = dpo_unet_set_precision(ref.unet, KN_BF16, 1, err);
  }
  if (!rc) rc = eval_reward_open_on(&r, &model, &ref, cfg->resolution, cfg->threads, cfg->backend, err);
  dpo_atomic_file af;
  int have_out = 0;
  if (!rc && cfg->out_jsonl) {
    rc = dpo_atomic_open(&af, cfg->out_jsonl, err);
    have_out = rc == DPO_OK;
  }
  if (!rc) rc = score_pairs(r, cfg, &set, have_out ? &af : NULL, res, err);
  if (have_out) {
    if (rc) dpo_atomic_abort(&af);
    else rc = dpo_atomic_commit(&af, err);
  }
  if (!rc) {
    res->accuracy = res->n_pairs ? (double)res->n_correct / res->n_pairs : 0;
    eval_wilson(res->n_correct, res->n_pairs, 1.959963984540054, &res->lo, &res->hi);
  }
  eval_reward_close(r);
  dpo_pipeline_free(&model);
  dpo_pipeline_free(&ref);
  dpo_pairs_free(&set);
  return rc;
}

int eval_scorer_accuracy(const char *pairs_path, const eval_scorer *scorer, int score_index, int limit,
                         eval_reward_result *res, dpo_error *err) {
  memset(res, 0, sizeof *res);
  if (score_index < 0 || score_index >= scorer->n_scores)
    return dpo_fail(err, DPO_ERR_USAGE, "scorer \"%s\": no score %d", scorer->name, score_index);
  dpo_pairs_options opt = {DPO_TIES_SKIP, NULL, 1};
  dpo_pairs set;
  int rc = dpo_pairs_load(pairs_path, &opt, &set, err);
  if (rc) return rc;
  res->n_ties_skipped = set.n_ties_skipped;
  int n = limit > 0 && limit < set.n ? limit : set.n;
  double *scores = malloc(2 * (size_t)scorer->n_scores * sizeof *scores);
  if (!scores) rc = dpo_fail(err, DPO_ERR_DATA, "out of memory");
  for (int i = 0; i < n && !rc; i++) {
    dpo_image im[2];
    rc = dpo_image_read(set.pairs[i].image_w, 3, &im[0], err);
    if (rc) break;
    rc = dpo_image_read(set.pairs[i].image_l, 3, &im[1], err);
    if (!rc) {
      eval_pair pairs[2] = {{&im[0], set.pairs[i].caption}, {&im[1], set.pairs[i].caption}};
      rc = eval_score(scorer, pairs, 2, scores, err);
      dpo_image_free(&im[1]);
    }
    dpo_image_free(&im[0]);
    if (rc) break;
    double margin = scores[score_index] - scores[scorer->n_scores + score_index];
    res->n_pairs++;
    res->n_correct += margin > 0;
    res->mean_inside += margin;
  }
  free(scores);
  if (!rc && res->n_pairs) {
    res->mean_inside /= res->n_pairs;
    res->accuracy = (double)res->n_correct / res->n_pairs;
  }
  if (!rc) eval_wilson(res->n_correct, res->n_pairs, 1.959963984540054, &res->lo, &res->hi);
  dpo_pairs_free(&set);
  return rc;
}
