/* A minimal DDIM sampler with classifier-free guidance for the pixel-space
 * shapes pipelines, and the judge-alignment measurement built on it.
 *
 * Kept small on purpose: the general generation pipeline (`dpo generate`,
 * any scheduler, latent models) is elsewhere; this one only needs to turn a
 * pixel-space pipeline and prompts into images, reproducibly. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "demo/demo.h"
#include "world/world.h"

void demo_sample_defaults(demo_sample_options *opt) {
  opt->steps = 50;
  opt->guidance = 3.0;
  opt->batch = 16;
}

typedef struct {
  int n, S, T, D;
  size_t numel;           /* floats of one image */
  float *x, *x_prev, *unet_in, *hidden, *times;
  int32_t *ids;
} sample_buffers;

static void free_buffers(sample_buffers *s) {
  free(s->x);
  free(s->x_prev);
  free(s->unet_in);
  free(s->hidden);
  free(s->times);
  free(s->ids);
}

/* Text states for [uncond x n; cond x n] (the guided batch's order). */
static int encode_prompts(dpo_pipeline *pipe, kn_ctx *ctx, sample_buffers *s, const char *const *prompts,
                          dpo_error *err) {
  int n2 = 2 * s->n;
  for (int i = 0; i < n2; i++) {
    const char *text = i < s->n ? "" : prompts[i - s->n];
    if (dpo_tokenizer_encode(pipe->tokenizer, text, s->ids + (size_t)i * s->T, s->T, NULL, err))
      return DPO_ERR_DATA;
  }
  int rc = dpo_clip_plan(pipe->text_encoder, ctx, n2, s->T, 0, 0, err);
  const float *hidden = NULL;
  if (!rc) rc = dpo_clip_forward(pipe->text_encoder, ctx, s->ids, &hidden, err);
  if (!rc) memcpy(s->hidden, hidden, (size_t)n2 * s->T * s->D * sizeof(float));
  return rc;
}

static void to_image(const float *x, int S, uint8_t *pixels) {
  size_t plane = (size_t)S * S;
  for (size_t k = 0; k < plane; k++)
    for (int c = 0; c < 3; c++) {
      float v = (x[c * plane + k] + 1.0f) * 127.5f;
      v = v < 0 ? 0 : v > 255 ? 255 : v;
      pixels[k * 3 + c] = (uint8_t)lrintf(v);
    }
}

/* One group of at most opt->batch prompts. */
static int sample_group(dpo_pipeline *pipe, kn_ctx *ctx, const demo_sample_options *opt, const char *const *prompts,
                        const uint64_t *indices, int n, uint64_t seed, dpo_image *images, dpo_error *err) {
  const dpo_unet_config *uc = dpo_unet_get_config(pipe->unet);
  const dpo_clip_config *cc = dpo_clip_get_config(pipe->text_encoder);
  sample_buffers s = {.n = n, .S = uc->sample_size, .T = dpo_tokenizer_max_length(pipe->tokenizer),
                      .D = cc->hidden_size};
  if (s.T > cc->max_position_embeddings) s.T = cc->max_position_embeddings;
  s.numel = (size_t)uc->in_channels * s.S * s.S;
  if (uc->in_channels != 3 || uc->out_channels != 3 || s.S <= 0)
    return dpo_fail(err, DPO_ERR_DATA, "%s: not a pixel-space RGB pipeline (the shapes sampler needs one)",
                    pipe->dir);
  size_t total = (size_t)n * s.numel;
  s.x = malloc(total * sizeof(float));
  s.x_prev = malloc(total * sizeof(float));
  s.unet_in = malloc(2 * total * sizeof(float));
  s.hidden = malloc((size_t)2 * n * s.T * s.D * sizeof(float));
  s.times = malloc((size_t)2 * n * sizeof(float));
  s.ids = malloc((size_t)2 * n * s.T * sizeof(int32_t));
  dpo_scheduler sched;
  memset(&sched, 0, sizeof sched);
  int rc = DPO_OK;
  if (!s.x || !s.x_prev || !s.unet_in || !s.hidden || !s.times || !s.ids) {
    rc = dpo_fail(err, DPO_ERR_DATA, "sample: out of memory");
    goto done;
  }
  if ((rc = encode_prompts(pipe, ctx, &s, prompts, err))) goto done;
  if ((rc = dpo_unet_plan(pipe->unet, ctx, 2 * n, s.S, s.S, s.T, 0, err))) goto done;
  dpo_scheduler_config cfg = pipe->scheduler;
  dpo_scheduler_config_set_kind(&cfg, DPO_SCHED_DDIM);
  if ((rc = dpo_scheduler_init(&sched, &cfg, err))) goto done;
  if ((rc = dpo_scheduler_set_timesteps(&sched, opt->steps, err))) goto done;
  for (int i = 0; i < n; i++)
    dpo_rng_normal_fill(seed, dpo_rng_stream_id(prompts[i], indices[i], 0), 0, s.x + (size_t)i * s.numel, s.numel);
  for (size_t k = 0; k < total; k++) s.x[k] *= sched.init_noise_sigma;
  for (int step = 0; step < sched.n_timesteps; step++) {
    float t = sched.timesteps[step];
    memcpy(s.unet_in, s.x, total * sizeof(float));
    memcpy(s.unet_in + total, s.x, total * sizeof(float));
    for (int i = 0; i < 2 * n; i++) s.times[i] = t;
    const float *eps = dpo_unet_forward(pipe->unet, ctx, s.unet_in, s.times, s.hidden);
    /* Guided noise: uncond + g (cond - uncond), written over unet_in. */
    for (size_t k = 0; k < total; k++)
      s.unet_in[k] = eps[k] + (float)opt->guidance * (eps[total + k] - eps[k]);
    if ((rc = dpo_scheduler_step(&sched, s.unet_in, t, s.x, NULL, s.x_prev, total, err))) goto done;
    float *swap = s.x;
    s.x = s.x_prev;
    s.x_prev = swap;
  }
  for (int i = 0; i < n; i++) {
    if ((rc = dpo_image_alloc(&images[i], s.S, s.S, 3, err))) goto done;
    to_image(s.x + (size_t)i * s.numel, s.S, images[i].pixels);
  }
done:
  dpo_scheduler_free(&sched);
  free_buffers(&s);
  return rc;
}

int demo_sample(dpo_pipeline *pipe, kn_ctx *ctx, const demo_sample_options *opt, const char *const *prompts,
                const uint64_t *indices, int n, uint64_t seed, dpo_image *images, dpo_error *err) {
  if (opt->steps < 1 || opt->batch < 1) return dpo_fail(err, DPO_ERR_USAGE, "sample: steps and batch must be >= 1");
  memset(images, 0, (size_t)n * sizeof *images);
  for (int start = 0; start < n; start += opt->batch) {
    int m = n - start < opt->batch ? n - start : opt->batch;
    int rc = sample_group(pipe, ctx, opt, prompts + start, indices + start, m, seed, images + start, err);
    if (rc) {
      for (int i = 0; i < n; i++) dpo_image_free(&images[i]);
      return rc;
    }
  }
  return DPO_OK;
}

int demo_measure_alignment(dpo_pipeline *pipe, kn_ctx *ctx, const demo_sample_options *opt, int n,
                           uint64_t prompt_seed, uint64_t seed, demo_alignment_result *res, dpo_error *err) {
  memset(res, 0, sizeof *res);
  double start = dpo_now_seconds();
  world_prompt *wp = calloc((size_t)n, sizeof *wp);
  char(*texts)[WORLD_PROMPT_MAX] = calloc((size_t)n, sizeof *texts);
  const char **ptrs = calloc((size_t)n, sizeof *ptrs);
  uint64_t *idx = calloc((size_t)n, sizeof *idx);
  dpo_image *imgs = calloc((size_t)n, sizeof *imgs);
  int rc = DPO_OK;
  if (!wp || !texts || !ptrs || !idx || !imgs) {
    rc = dpo_fail(err, DPO_ERR_DATA, "measure: out of memory");
    goto done;
  }
  if ((rc = world_prompts_generate(WORLD_SPLIT_HELDOUT, prompt_seed, n, wp, err))) goto done;
  for (int i = 0; i < n; i++) {
    if ((rc = world_prompt_format(&wp[i], texts[i], sizeof texts[i], err))) goto done;
    ptrs[i] = texts[i];
    idx[i] = 0;
  }
  if ((rc = demo_sample(pipe, ctx, opt, ptrs, idx, n, seed, imgs, err))) goto done;
  int n_truth = 0;
  for (int i = 0; i < n; i++) {
    world_scores sc;
    if ((rc = world_judge_score(&imgs[i], texts[i], &sc, err))) goto done;
    res->model_alignment += sc.alignment / n;
    res->model_appeal += sc.appeal / n;
    dpo_image truth;
    dpo_error layout_err;
    if (world_render_prompt(texts[i], seed + (uint64_t)i, imgs[i].width, &truth, &layout_err) == DPO_OK) {
      if ((rc = world_judge_score(&truth, texts[i], &sc, err))) {
        dpo_image_free(&truth);
        goto done;
      }
      res->truth_alignment += sc.alignment;
      n_truth++;
      dpo_image_free(&truth);
    }
  }
  if (n_truth) res->truth_alignment /= n_truth;
  res->n_prompts = n;
  res->seconds = dpo_now_seconds() - start;
done:
  if (imgs)
    for (int i = 0; i < n; i++) dpo_image_free(&imgs[i]);
  free(imgs);
  free(idx);
  free(ptrs);
  free(texts);
  free(wp);
  return rc;
}
