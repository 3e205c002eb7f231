/* dpo pretrain: the shapes-world base model, trained from scratch.
 *
 * Each step renders a fresh batch of train-split scenes (a new random prompt
 * and layout per image, so the model never sees the same scene twice and
 * never a held-out prompt), scales them to [-1, 1], noises them to random
 * timesteps and trains UNet and text encoder together on the MSE to the
 * noise. A tenth of the captions are empty so that the same network also
 * learns the unconditional prediction that classifier-free guidance needs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "demo/demo.h"
#include "world/world.h"

void demo_pretrain_defaults(demo_pretrain_options *opt) {
  memset(opt, 0, sizeof *opt);
  opt->steps = 3000;
  opt->seed = 0;
  opt->size = WORLD_DEFAULT_SIZE;
  opt->batch_size = 16;
  opt->lr = 1e-3;
  opt->warmup_steps = 100;
  opt->threads = 1;
  opt->caption_dropout = 0.1;
}

/* ------------------------------------------------------------ configs */

#define TEXT_HIDDEN 64

static json_t *unet_config(int size) {
  return json_pack(
      "{s:s, s:i, s:i, s:i, s:[iii], s:[sss], s:[sss], s:i, s:i, s:i, s:i, s:f}", "_class_name",
      "UNet2DConditionModel", "sample_size", size, "in_channels", 3, "out_channels", 3, "block_out_channels", 16,
      32, 64, "down_block_types", "DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "up_block_types",
      "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D", "layers_per_block", 1, "attention_head_dim", 4,
      "cross_attention_dim", TEXT_HIDDEN, "norm_num_groups", 8, "norm_eps", 1e-5);
}

static json_t *text_config(int vocab_size, int eos_id) {
  return json_pack("{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:f, s:i, s:i, s:i}", "architectures",
                   "CLIPTextModel", "model_type", "clip_text_model", "vocab_size", vocab_size, "hidden_size",
                   TEXT_HIDDEN, "intermediate_size", 4 * TEXT_HIDDEN, "num_attention_heads", 4, "num_hidden_layers", 2,
                   "max_position_embeddings", DEMO_MAX_TOKENS, "hidden_act", "quick_gelu", "layer_norm_eps", 1e-5,
                   "eos_token_id", eos_id, "bos_token_id", eos_id - 1, "pad_token_id", eos_id);
}

/* DDPM-trained, sampled with DDIM. Cosine betas suit small pixel-space
 * images; "trailing" spacing keeps few-step sampling sharp; x0 is clipped to
 * the image range. */
static json_t *scheduler_config(void) {
  return json_pack("{s:s, s:i, s:f, s:f, s:s, s:s, s:s, s:i, s:b, s:b, s:f}", "_class_name", "DDIMScheduler",
                   "num_train_timesteps", 1000, "beta_start", 0.0001, "beta_end", 0.02, "beta_schedule",
                   "squaredcos_cap_v2", "prediction_type", "epsilon", "timestep_spacing", "trailing", "steps_offset",
                   0, "set_alpha_to_one", 1, "clip_sample", 1, "clip_sample_range", 1.0);
}

static json_t *model_index(void) {
  return json_pack("{s:s, s:s, s:[ss], s:[ss], s:[ss], s:[ss], s:b}", "_class_name", "StableDiffusionPipeline",
                   "_diffusers_version", "0.30.0", "scheduler", "diffusers", "DDIMScheduler", "text_encoder",
                   "transformers", "CLIPTextModel", "tokenizer", "transformers", "CLIPTokenizer", "unet", "diffusers",
                   "UNet2DConditionModel", "requires_safety_checker", 0);
}

static int write_json(const char *path, json_t *root, dpo_error *err) {
  int rc = root ? dpo_json_write_file(path, root, err) : dpo_fail(err, DPO_ERR_USAGE, "%s: bad config", path);
  json_decref(root);
  return rc;
}

/* A fresh pipeline folder in `dir`: tokenizer, scheduler and model_index on
 * disk, randomly initialised networks in memory (p is then as if loaded). */
static int create_pipeline(const char *dir, int size, uint64_t seed, dpo_pipeline *p, dpo_error *err) {
  memset(p, 0, sizeof *p);
  snprintf(p->dir, sizeof p->dir, "%s", dir);
  char path[4096];
  snprintf(path, sizeof path, "%s/tokenizer", dir);
  int rc = demo_tokenizer_write(path, DEMO_MAX_TOKENS, err);
  if (!rc) rc = dpo_tokenizer_load(path, &p->tokenizer, err);
  if (rc) return rc;
  snprintf(path, sizeof path, "%s/scheduler", dir);
  if ((rc = dpo_mkdir_p(path, err))) return rc;
  snprintf(path, sizeof path, "%s/scheduler/scheduler_config.json", dir);
  if ((rc = write_json(path, scheduler_config(), err))) return rc;
  if ((rc = dpo_scheduler_config_load(path, &p->scheduler, err))) return rc;
  json_t *cfg = unet_config(size);
  rc = cfg ? dpo_unet_create(cfg, &p->unet, err) : dpo_fail(err, DPO_ERR_USAGE, "pretrain: bad UNet config");
  json_decref(cfg);
  if (rc) return rc;
  dpo_unet_init_random(p->unet, dpo_rng_stream_id("pretrain-unet-init", seed, 0));
  cfg = text_config(dpo_tokenizer_vocab_size(p->tokenizer), dpo_tokenizer_eos_id(p->tokenizer));
  rc = cfg ? dpo_clip_create(cfg, &p->text_encoder, err) : dpo_fail(err, DPO_ERR_USAGE, "pretrain: bad CLIP config");
  json_decref(cfg);
  if (rc) return rc;
  dpo_clip_init_random(p->text_encoder, dpo_rng_stream_id("pretrain-text-init", seed, 0));
  p->model_index = model_index();
  return DPO_OK;
}

/* ------------------------------------------------------------- batches */

typedef struct {
  int B, S, T;
  float *x0, *noise, *xt, *timesteps, *dout, *dhidden;
  int32_t *ids;
  uint64_t next_prompt;   /* index into world_prompt_random's sequence */
} batch_buffers;

/* The next random prompt of the train split that lays out, rendered. */
static int next_scene(batch_buffers *b, uint64_t seed, char *text, size_t n, dpo_image *img, dpo_error *err) {
  for (int tries = 0; tries < 1000; tries++) {
    world_prompt p;
    uint64_t index = b->next_prompt++;
    world_prompt_random(seed, index, &p);
    if (world_prompt_split(&p) != WORLD_SPLIT_TRAIN) continue;
    if (world_prompt_format(&p, text, n, err)) return DPO_ERR_USAGE;
    dpo_error layout_err;
    if (world_render_prompt(text, dpo_rng_stream_id("pretrain-layout", seed, index), b->S, img, &layout_err) ==
        DPO_OK)
      return DPO_OK;
  }
  return dpo_fail(err, DPO_ERR_USAGE, "pretrain: no train prompt could be laid out");
}

/* Fills x0 (images in [-1, 1], NCHW), ids (captions, some dropped), noise and
 * the noised inputs for step `step`. */
static int fill_batch(batch_buffers *b, dpo_pipeline *p, dpo_scheduler *sched, const demo_pretrain_options *opt,
                      int64_t step, dpo_error *err) {
  size_t plane = (size_t)b->S * b->S, numel = 3 * plane;
  uint64_t stream = dpo_rng_stream_id("pretrain-step", (uint64_t)step, 0);
  for (int i = 0; i < b->B; i++) {
    char text[WORLD_PROMPT_MAX];
    dpo_image img;
    if (next_scene(b, opt->seed, text, sizeof text, &img, err)) return DPO_ERR_USAGE;
    float *x = b->x0 + (size_t)i * numel;
    for (size_t k = 0; k < plane; k++)
      for (int c = 0; c < 3; c++) x[c * plane + k] = img.pixels[k * 3 + c] / 127.5f - 1.0f;
    dpo_image_free(&img);
    int dropped = dpo_rng_uniform(opt->seed, stream, (uint64_t)i) < opt->caption_dropout;
    if (dpo_tokenizer_encode(p->tokenizer, dropped ? "" : text, b->ids + (size_t)i * b->T, b->T, NULL, err))
      return DPO_ERR_USAGE;
    int t = (int)(dpo_rng_u32(opt->seed, stream, 1000u + (uint64_t)i) % (uint32_t)sched->num_train_timesteps);
    b->timesteps[i] = (float)t;
    float *eps = b->noise + (size_t)i * numel;
    dpo_rng_normal_fill(opt->seed, stream, (uint64_t)(i + 1) << 32, eps, numel);
    if (dpo_scheduler_add_noise(sched, x, eps, (float)t, b->xt + (size_t)i * numel, numel, err)) return DPO_ERR_USAGE;
  }
  return DPO_OK;
}

static void free_batch(batch_buffers *b) {
  free(b->x0);
  free(b->noise);
  free(b->xt);
  free(b->timesteps);
  free(b->dout);
  free(b->dhidden);
  free(b->ids);
}

static int alloc_batch(batch_buffers *b, int B, int S, int T, dpo_error *err) {
  memset(b, 0, sizeof *b);
  b->B = B, b->S = S, b->T = T;
  size_t n = (size_t)B * 3 * S * S;
  b->x0 = malloc(n * sizeof(float));
  b->noise = malloc(n * sizeof(float));
  b->xt = malloc(n * sizeof(float));
  b->dout = malloc(n * sizeof(float));
  b->timesteps = malloc((size_t)B * sizeof(float));
  b->dhidden = malloc((size_t)B * T * TEXT_HIDDEN * sizeof(float));
  b->ids = malloc((size_t)B * T * sizeof(int32_t));
  if (!b->x0 || !b->noise || !b->xt || !b->dout || !b->timesteps || !b->dhidden || !b->ids) {
    free_batch(b);
    return dpo_fail(err, DPO_ERR_USAGE, "pretrain: out of memory");
  }
  return DPO_OK;
}

/* ----------------------------------------------------------- optimizer */

static int collect_params(dpo_pipeline *p, dpo_optim_param **out, int *n_out, size_t *n_floats, dpo_error *err) {
  int nu = dpo_unet_n_params(p->unet), nc = dpo_clip_n_params(p->text_encoder);
  dpo_optim_param *params = calloc((size_t)(nu + nc), sizeof *params);
  if (!params) return dpo_fail(err, DPO_ERR_USAGE, "pretrain: out of memory");
  *n_floats = 0;
  for (int i = 0; i < nu + nc; i++) {
    dpo_param mp;
    if (i < nu) dpo_unet_param(p->unet, i, &mp);
    else dpo_clip_param(p->text_encoder, i - nu, &mp);
    params[i] = dpo_optim_param_of(&mp, mp.name);
    *n_floats += mp.numel;
  }
  *out = params;
  *n_out = nu + nc;
  return DPO_OK;
}

/* --init: the networks of the pipeline folder `dir` replace the random
 * ones; every tensor must have the name and shape of the fresh one (the
 * shapes-world configs), so a continued run is the same model trained on. */
static int copy_init_weights(const char *dir, dpo_optim_param *params, int n, dpo_error *err) {
  dpo_pipeline src;
  int rc = dpo_pipeline_load(dir, &src, err);
  if (rc) return rc;
  dpo_optim_param *from = NULL;
  int n_from = 0;
  size_t floats = 0;
  if (!src.unet || !src.text_encoder) rc = dpo_fail(err, DPO_ERR_DATA, "%s: no unet or text_encoder to start from", dir);
  if (!rc) rc = collect_params(&src, &from, &n_from, &floats, err);
  if (!rc && n_from != n)
    rc = dpo_fail(err, DPO_ERR_DATA, "%s: %d tensors, expected the %d of the shapes-world networks", dir, n_from, n);
  for (int i = 0; !rc && i < n; i++) {
    int same = strcmp(from[i].name, params[i].name) == 0 && from[i].ndim == params[i].ndim;
    for (int d = 0; same && d < params[i].ndim; d++) same = from[i].shape[d] == params[i].shape[d];
    if (!same) {
      rc = dpo_fail(err, DPO_ERR_DATA, "%s: tensor %s does not match the shapes-world network's %s", dir, from[i].name,
                    params[i].name);
      break;
    }
    size_t numel = 1;
    for (int d = 0; d < params[i].ndim; d++) numel *= (size_t)params[i].shape[d];
    memcpy(params[i].data, from[i].data, numel * sizeof(float));
  }
  free(from);
  dpo_pipeline_free(&src);
  return rc;
}

/* --------------------------------------------------------------- save */

static int save_networks(const dpo_pipeline *p, const char *dir, dpo_error *err) {
  char path[4096];
  snprintf(path, sizeof path, "%s/unet", dir);
  int rc = dpo_unet_save(p->unet, path, err);
  if (rc) return rc;
  snprintf(path, sizeof path, "%s/text_encoder", dir);
  if ((rc = dpo_clip_save(p->text_encoder, path, err))) return rc;
  /* model_index.json last: a folder is a pipeline only once it is there. */
  snprintf(path, sizeof path, "%s/model_index.json", dir);
  return dpo_json_write_file(path, p->model_index, err);
}

static int write_summary(const char *dir, const demo_pretrain_options *opt, const demo_pretrain_result *res,
                         dpo_error *err) {
  json_t *j = json_pack("{s:s?, s:s?, s:s, s:I, s:I, s:i, s:i, s:f, s:i, s:f, s:f, s:f, s:I}", "command", opt->command,
                        "init", opt->init, "lr_decay", opt->linear_decay ? "linear" : "constant",
                        "steps", (json_int_t)opt->steps, "seed", (json_int_t)opt->seed, "size", opt->size,
                        "batch_size", opt->batch_size, "lr", opt->lr, "warmup_steps", opt->warmup_steps,
                        "caption_dropout", opt->caption_dropout, "final_loss", res->final_loss, "wall_seconds",
                        res->wall_seconds, "parameters", (json_int_t)res->n_params);
  char path[4096];
  snprintf(path, sizeof path, "%s/pretrain.json", dir);
  return write_json(path, j, err);
}

/* Moves the finished temporary folder to opt->out, replacing an older one. */
static int publish(const char *tmp, const char *out, dpo_error *err) {
  struct stat st;
  char old[4096];
  snprintf(old, sizeof old, "%s.old", out);
  if (stat(out, &st) == 0) {
    if (stat(old, &st) == 0 && dpo_remove_tree(old, err)) return DPO_ERR_DATA;
    if (rename(out, old) != 0) return dpo_fail(err, DPO_ERR_DATA, "%s: cannot move the old pipeline aside", out);
  }
  if (rename(tmp, out) != 0) return dpo_fail(err, DPO_ERR_DATA, "%s: cannot rename %s into place", out, tmp);
  if (stat(old, &st) == 0 && dpo_remove_tree(old, err)) return DPO_ERR_DATA;
  return DPO_OK;
}

/* --------------------------------------------------------------- train */

static double train_step(dpo_pipeline *p, kn_ctx *ctx, batch_buffers *b, dpo_optimizer *opt, double lr) {
  dpo_unet_zero_grads(p->unet);
  dpo_clip_zero_grads(p->text_encoder);
  const float *hidden = NULL;
  dpo_error err;
  if (dpo_clip_forward(p->text_encoder, ctx, b->ids, &hidden, &err)) return NAN;
  const float *out = dpo_unet_forward(p->unet, ctx, b->xt, b->timesteps, hidden);
  size_t n = (size_t)b->B * 3 * b->S * b->S;
  double loss = 0;
  for (size_t i = 0; i < n; i++) {
    double d = (double)out[i] - b->noise[i];
    loss += d * d;
    b->dout[i] = (float)(2.0 * d / (double)n);
  }
  memset(b->dhidden, 0, (size_t)b->B * b->T * TEXT_HIDDEN * sizeof(float));
  dpo_unet_backward(p->unet, ctx, b->dout, NULL, b->dhidden);
  dpo_clip_backward(p->text_encoder, ctx, b->dhidden);
  dpo_clip_grad_norm(opt->params, opt->n_params, 1.0);
  dpo_optim_step(opt, lr);
  return loss / (double)n;
}

static int check_options(const demo_pretrain_options *opt, dpo_error *err) {
  if (!opt->out || !*opt->out) return dpo_fail(err, DPO_ERR_USAGE, "pretrain: an output folder is required");
  if (opt->steps < 0) return dpo_fail(err, DPO_ERR_USAGE, "pretrain: steps must be >= 0");
  if (opt->size < WORLD_MIN_IMAGE_SIZE || opt->size > 256 || opt->size % 4)
    return dpo_fail(err, DPO_ERR_USAGE, "pretrain: size %d must be a multiple of 4 in %d..256", opt->size,
                    WORLD_MIN_IMAGE_SIZE);
  if (opt->batch_size < 1 || opt->batch_size > 1024)
    return dpo_fail(err, DPO_ERR_USAGE, "pretrain: batch size %d must be in 1..1024", opt->batch_size);
  if (!(opt->lr > 0) || opt->lr > 1) return dpo_fail(err, DPO_ERR_USAGE, "pretrain: lr must be in (0, 1]");
  return DPO_OK;
}

int demo_pretrain(const demo_pretrain_options *opt, demo_pretrain_result *res, dpo_error *err) {
  memset(res, 0, sizeof *res);
  int rc = check_options(opt, err);
  if (rc) return rc;
  double start = dpo_now_seconds();
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", opt->out);
  struct stat st;
  if (stat(tmp, &st) == 0 && dpo_remove_tree(tmp, err)) return DPO_ERR_DATA;
  if ((rc = dpo_mkdir_p(tmp, err))) return rc;

  dpo_pipeline p;
  kn_ctx ctx;
  memset(&ctx, 0, sizeof ctx);
  dpo_scheduler sched;
  memset(&sched, 0, sizeof sched);
  batch_buffers b;
  memset(&b, 0, sizeof b);
  dpo_optimizer optim;
  memset(&optim, 0, sizeof optim);
  dpo_optim_param *params = NULL;
  int n_params = 0;
  const int T = DEMO_MAX_TOKENS;
  if ((rc = create_pipeline(tmp, opt->size, opt->seed, &p, err))) goto done;
  if ((rc = kn_ctx_init(&ctx, opt->threads, err))) goto done;
  if ((rc = dpo_clip_plan(p.text_encoder, &ctx, opt->batch_size, T, 0, 1, err))) goto done;
  if ((rc = dpo_unet_plan(p.unet, &ctx, opt->batch_size, opt->size, opt->size, T, 1, err))) goto done;
  if ((rc = dpo_scheduler_init(&sched, &p.scheduler, err))) goto done;
  if ((rc = alloc_batch(&b, opt->batch_size, opt->size, T, err))) goto done;
  if ((rc = collect_params(&p, &params, &n_params, &res->n_params, err))) goto done;
  if (opt->init && (rc = copy_init_weights(opt->init, params, n_params, err))) goto done;
  dpo_optim_config ocfg;
  dpo_optim_config_default(&ocfg, DPO_OPTIM_ADAMW);
  if ((rc = dpo_optim_init(&optim, &ocfg, params, n_params, err))) goto done;
  dpo_lr_schedule lrs;
  if ((rc = dpo_lr_schedule_init(&lrs, opt->lr, opt->warmup_steps, -1, opt->steps, err))) goto done;

  dpo_log_info("pretrain: %zu parameters, %lld steps of %d scenes at %dx%d, lr %g, seed %llu", res->n_params,
               (long long)opt->steps, opt->batch_size, opt->size, opt->size, opt->lr,
               (unsigned long long)opt->seed);
  dpo_progress prog;
  dpo_progress_begin(&prog, "pretrain", (uint64_t)opt->steps, "steps");
  double window = 0, tail = 0;
  int64_t tail_n = 0, report_every = opt->steps >= 10 ? opt->steps / 10 : 1;
  for (int64_t step = 0; step < opt->steps; step++) {
    if ((rc = fill_batch(&b, &p, &sched, opt, step, err))) break;
    /* The lr schedule's warmup starts at 0; use the step after for update s. */
    double lr = dpo_lr_at(&lrs, step + 1);
    if (opt->linear_decay && step + 1 > opt->warmup_steps)
      lr *= (double)(opt->steps - step) / (double)(opt->steps - opt->warmup_steps);
    double loss = train_step(&p, &ctx, &b, &optim, lr);
    if (!isfinite(loss)) {
      rc = dpo_fail(err, DPO_ERR_DATA, "pretrain: loss is not finite at step %lld", (long long)step + 1);
      break;
    }
    window += loss;
    if (step >= opt->steps - (opt->steps + 9) / 10) tail += loss, tail_n++;
    if ((step + 1) % report_every == 0) {
      dpo_log_info("pretrain: step %lld/%lld loss %.4f", (long long)step + 1, (long long)opt->steps,
                   window / (double)report_every);
      window = 0;
    }
    dpo_progress_advance(&prog, 1);
  }
  dpo_progress_end(&prog);
  if (rc) goto done;
  res->final_loss = tail_n ? tail / (double)tail_n : NAN;
  if ((rc = save_networks(&p, tmp, err))) goto done;
  res->wall_seconds = dpo_now_seconds() - start;
  if ((rc = write_summary(tmp, opt, res, err))) goto done;
  rc = publish(tmp, opt->out, err);
done:
  dpo_optim_free(&optim);
  free(params);
  free_batch(&b);
  dpo_scheduler_free(&sched);
  kn_ctx_free(&ctx);
  dpo_pipeline_free(&p);
  if (rc) {
    dpo_error ignored;
    dpo_remove_tree(tmp, &ignored);
  }
  return rc;
}
