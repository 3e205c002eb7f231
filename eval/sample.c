/* txt2img and SDEdit img2img as diffusers' StableDiffusionPipeline and
 * StableDiffusionImg2ImgPipeline run them (see eval.h for the exact steps). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

struct eval_sampler {
  dpo_pipeline *pipe;
  kn_ctx ctx;            /* text encoder, UNet and the VAE's decoder, on opt.backend */
  kn_ctx host_ctx;       /* the encoder's for SDEdit when ctx is not the CPU's (else unused) */
  int host_ctx_ok;
  /* SDEdit when the pipeline's VAE cannot encode (planned on a device or in
   * bf16: models.h): a float32 host copy that encodes, made at the first
   * img2img call. */
  dpo_vae *encoder;
  eval_sample_options opt;
  char negative[DPO_TOKENIZER_MAX_TEXT + 1];
  int batch;             /* images per call, at most */
  int cfg;               /* guidance > 1: the UNet sees 2 x batch */
  int resolution;        /* pixels */
  int factor;            /* pixels per latent side (1 in pixel space) */
  int channels, height, width;   /* one latent */
  int text_length;       /* tokens per prompt */
  int text_dim;
  dpo_scheduler sched;
  /* buffers */
  int32_t *ids;          /* [unet_batch, text_length] */
  float *text;           /* [unet_batch, text_length, text_dim] */
  float *latents;        /* [batch, latent] */
  float *unet_in;        /* [unet_batch, latent] */
  float *timesteps;      /* [unet_batch] */
  float *guided;         /* [batch, latent] */
  float *pixels;         /* [batch, 3, res, res] */
  /* On a device: the UNet's inputs in device memory and a host copy of its
   * output, which guidance and the scheduler step read (NULL on the CPU). */
  float *dev_text, *dev_unet_in, *dev_timesteps;
  float *eps_host;       /* [unet_batch, latent] */
  float *dev_latents;    /* [batch, latent]: the VAE decodes on the device */
};

void eval_sample_options_default(eval_sample_options *opt) {
  memset(opt, 0, sizeof *opt);
  opt->sampler = -1;
  opt->steps = 50;
  opt->guidance = 7.5f;
  opt->strength = 0.6f;
}

static int unet_batch(const eval_sampler *s) { return s->cfg ? 2 * s->batch : s->batch; }

size_t eval_sampler_latent_numel(const eval_sampler *s) {
  return (size_t)s->channels * (size_t)s->height * (size_t)s->width;
}

int eval_sampler_resolution(const eval_sampler *s) { return s->resolution; }

void eval_sampler_latent_shape(const eval_sampler *s, int *channels, int *height, int *width) {
  *channels = s->channels;
  *height = s->height;
  *width = s->width;
}

void eval_initial_noise(uint64_t seed, const char *prompt_id, int64_t image_index, float *out, size_t n) {
  uint64_t stream = dpo_rng_stream_id(prompt_id, (uint64_t)image_index, 0);
  dpo_rng_normal_fill(seed, stream, 0, out, n);
}

void eval_sampler_close(eval_sampler *s) {
  if (!s) return;
  dpo_scheduler_free(&s->sched);
  kn_free(s->ctx.backend, s->dev_text);
  kn_free(s->ctx.backend, s->dev_unet_in);
  kn_free(s->ctx.backend, s->dev_timesteps);
  kn_free(s->ctx.backend, s->dev_latents);
  free(s->eps_host);
  dpo_vae_free(s->encoder);
  kn_ctx_free(&s->ctx);
  if (s->host_ctx_ok) kn_ctx_free(&s->host_ctx);
  free(s->ids);
  free(s->text);
  free(s->latents);
  free(s->unet_in);
  free(s->timesteps);
  free(s->guided);
  free(s->pixels);
  free(s);
}

/* Checks the pipeline's shapes and decides resolution and latent size. */
static int choose_shapes(eval_sampler *s, dpo_error *err) {
  const dpo_unet_config *u = dpo_unet_get_config(s->pipe->unet);
  const dpo_clip_config *c = dpo_clip_get_config(s->pipe->text_encoder);
  s->factor = 1;
  if (s->pipe->vae) {
    const dpo_vae_config *v = dpo_vae_get_config(s->pipe->vae);
    s->factor = 1 << (v->n_blocks - 1);
    if (v->latent_channels != u->in_channels || v->out_channels != 3)
      return dpo_fail(err, DPO_ERR_DATA, "%s: the VAE makes %d-channel latents and %d-channel images; the UNet "
                      "takes %d channels (expected equal, and RGB images)", s->pipe->dir, v->latent_channels,
                      v->out_channels, u->in_channels);
  } else if (u->in_channels != 3 || u->out_channels != 3) {
    return dpo_fail(err, DPO_ERR_DATA, "%s: a pixel-space pipeline (no VAE) needs a UNet with 3 input and output "
                    "channels, got %d and %d", s->pipe->dir, u->in_channels, u->out_channels);
  }
  if (u->out_channels != u->in_channels)
    return dpo_fail(err, DPO_ERR_DATA, "%s: UNet in_channels %d != out_channels %d", s->pipe->dir, u->in_channels,
                    u->out_channels);
  s->resolution = s->opt.resolution > 0 ? s->opt.resolution : u->sample_size * s->factor;
  if (s->resolution <= 0)
    return dpo_fail(err, DPO_ERR_USAGE, "%s: the UNet config has no sample_size; give a resolution", s->pipe->dir);
  int multiple = s->factor * (1 << (u->n_blocks - 1));
  if (s->resolution % multiple != 0 || s->resolution > 4096)
    return dpo_fail(err, DPO_ERR_USAGE, "resolution %d: expected a multiple of %d (at most 4096) for %s",
                    s->resolution, multiple, s->pipe->dir);
  s->channels = u->in_channels;
  s->height = s->width = s->resolution / s->factor;
  s->text_length = dpo_tokenizer_max_length(s->pipe->tokenizer);
  if (s->text_length > c->max_position_embeddings)
    return dpo_fail(err, DPO_ERR_DATA, "%s: the tokenizer pads to %d tokens but the text encoder has %d positions",
                    s->pipe->dir, s->text_length, c->max_position_embeddings);
  s->text_dim = c->hidden_size;
  if (c->hidden_size != u->cross_attention_dim)
    return dpo_fail(err, DPO_ERR_DATA, "%s: text encoder width %d != UNet cross_attention_dim %d", s->pipe->dir,
                    c->hidden_size, u->cross_attention_dim);
  return DPO_OK;
}

static int alloc_buffers(eval_sampler *s, dpo_error *err) {
  size_t ub = (size_t)unet_batch(s), lat = eval_sampler_latent_numel(s);
  size_t px = 3u * (size_t)s->resolution * (size_t)s->resolution;
  s->ids = malloc(ub * (size_t)s->text_length * sizeof *s->ids);
  s->text = malloc(ub * (size_t)s->text_length * (size_t)s->text_dim * sizeof *s->text);
  s->latents = malloc((size_t)s->batch * lat * sizeof(float));
  s->unet_in = malloc(ub * lat * sizeof(float));
  s->timesteps = malloc(ub * sizeof(float));
  s->guided = malloc((size_t)s->batch * lat * sizeof(float));
  s->pixels = malloc((size_t)s->batch * px * sizeof(float));
  if (!s->ids || !s->text || !s->latents || !s->unet_in || !s->timesteps || !s->guided || !s->pixels)
    return dpo_fail(err, DPO_ERR_DATA, "out of memory for a batch of %d images at %d px", s->batch, s->resolution);
  if (s->ctx.backend != KN_BACKEND_CPU) {
    s->dev_text = kn_malloc(&s->ctx, ub * (size_t)s->text_length * (size_t)s->text_dim * sizeof(float));
    s->dev_unet_in = kn_malloc(&s->ctx, ub * lat * sizeof(float));
    s->dev_timesteps = kn_malloc(&s->ctx, ub * sizeof(float));
    s->eps_host = malloc(ub * lat * sizeof(float));
    s->dev_latents = kn_malloc(&s->ctx, (size_t)s->batch * lat * sizeof(float));
    if (!s->dev_text || !s->dev_unet_in || !s->dev_timesteps || !s->eps_host || !s->dev_latents)
      return dpo_fail(err, DPO_ERR_DATA, "out of %s memory for a batch of %d images at %d px",
                      kn_backend_name(s->ctx.backend), s->batch, s->resolution);
  }
  return DPO_OK;
}

/* The context that encodes for SDEdit: the sampler's own on the CPU, a CPU
 * one beside a device. (Decoding runs on the sampler's context.) */
static kn_ctx *encode_ctx(eval_sampler *s) { return s->host_ctx_ok ? &s->host_ctx : &s->ctx; }

int eval_sampler_open(eval_sampler **out, dpo_pipeline *pipe, const eval_sample_options *opt, int batch,
                      int n_threads, dpo_error *err) {
  *out = NULL;
  if (batch < 1 || batch > 1024) return dpo_fail(err, DPO_ERR_USAGE, "batch size %d: expected 1..1024", batch);
  if (opt->steps < 1 || opt->steps > 1000)
    return dpo_fail(err, DPO_ERR_USAGE, "steps %d: expected 1..1000", opt->steps);
  if (!isfinite(opt->guidance) || opt->guidance < 0)
    return dpo_fail(err, DPO_ERR_USAGE, "guidance %g: expected a finite number >= 0", (double)opt->guidance);
  if (!(opt->strength > 0 && opt->strength <= 1))
    return dpo_fail(err, DPO_ERR_USAGE, "strength %g: expected a number in (0, 1]", (double)opt->strength);
  eval_sampler *s = calloc(1, sizeof *s);
  if (!s) return dpo_fail(err, DPO_ERR_DATA, "out of memory");
  s->pipe = pipe;
  s->opt = *opt;
  snprintf(s->negative, sizeof s->negative, "%s", opt->negative_prompt ? opt->negative_prompt : "");
  s->opt.negative_prompt = s->negative;
  s->batch = batch;
  s->cfg = opt->guidance > 1.0f;
  int rc = kn_ctx_init_backend(&s->ctx, opt->backend, n_threads, err);
  if (rc) {
    free(s);
    return rc;
  }
  if (s->ctx.backend != KN_BACKEND_CPU) {
    rc = kn_ctx_init(&s->host_ctx, n_threads, err);
    if (rc) {
      eval_sampler_close(s);
      return rc;
    }
    s->host_ctx_ok = 1;
  }
  dpo_scheduler_config cfg = pipe->scheduler;
  if (opt->sampler >= 0 && opt->sampler != (int)cfg.kind) {
    dpo_scheduler_config_set_kind(&cfg, (dpo_scheduler_kind)opt->sampler);
    /* PNDM chosen over another class's config: run PLMS as Stable
     * Diffusion's PNDM configs do (the Runge-Kutta warm-up of the class
     * default is not implemented). */
    if (cfg.kind == DPO_SCHED_PNDM) cfg.skip_prk_steps = 1;
  }
  rc = choose_shapes(s, err);
  if (!rc) rc = dpo_scheduler_init(&s->sched, &cfg, err);
  if (!rc) rc = dpo_scheduler_set_timesteps(&s->sched, opt->steps, err);
  if (!rc) rc = alloc_buffers(s, err);
  if (!rc) rc = dpo_clip_plan(pipe->text_encoder, &s->ctx, unet_batch(s), s->text_length, 0, 0, err);
  if (!rc && opt->precision == KN_BF16 && dpo_unet_precision(pipe->unet) != KN_BF16)
    rc = dpo_unet_set_precision(pipe->unet, KN_BF16, 1, err);
  if (!rc) rc = dpo_unet_plan(pipe->unet, &s->ctx, unet_batch(s), s->height, s->width, s->text_length, 0, err);
  /* The VAE decodes where the UNet runs (on a device: no host decode of
   * seconds per image), in bf16 when the UNet is. */
  if (!rc && pipe->vae && opt->precision == KN_BF16 && dpo_vae_precision(pipe->vae) != KN_BF16)
    rc = dpo_vae_set_precision(pipe->vae, KN_BF16, err);
  if (!rc && pipe->vae) rc = dpo_vae_plan(pipe->vae, &s->ctx, batch, s->resolution, s->resolution, err);
  if (rc) {
    eval_sampler_close(s);
    return rc;
  }
  *out = s;
  return DPO_OK;
}

/* Token ids of the batch: negatives first when guiding (diffusers' order).
 * Slots past n repeat prompt 0, so the planned batch is always full. */
static int encode_prompts(eval_sampler *s, const char *const *prompts, int n, dpo_error *err) {
  int L = s->text_length, k = 0;
  if (s->cfg)
    for (int i = 0; i < s->batch; i++, k++)
      if (dpo_tokenizer_encode(s->pipe->tokenizer, s->negative, s->ids + (size_t)k * L, L, NULL, err))
        return dpo_error_prefix(err, "negative prompt");
  for (int i = 0; i < s->batch; i++, k++) {
    const char *text = prompts[i < n ? i : 0];
    if (dpo_tokenizer_encode(s->pipe->tokenizer, text, s->ids + (size_t)k * L, L, NULL, err))
      return dpo_error_prefix(err, "prompt %d", i);
  }
  const float *hidden;
  if (dpo_clip_forward(s->pipe->text_encoder, &s->ctx, s->ids, &hidden, err)) return DPO_ERR_DATA;
  size_t bytes = (size_t)unet_batch(s) * (size_t)L * (size_t)s->text_dim * sizeof(float);
  if (s->dev_text) kn_copy(&s->ctx, s->dev_text, hidden, bytes); /* stays on the device */
  else memcpy(s->text, hidden, bytes);
  return DPO_OK;
}

/* One denoising step at timesteps[index] over s->latents (full batch). */
static int denoise_step(eval_sampler *s, int index, dpo_error *err) {
  size_t lat = eval_sampler_latent_numel(s), nb = (size_t)s->batch * lat;
  float t = s->sched.timesteps[index];
  float *half = s->unet_in + (s->cfg ? nb : 0);
  if (dpo_scheduler_scale_model_input(&s->sched, t, s->latents, half, nb, err)) return DPO_ERR_USAGE;
  if (s->cfg) memcpy(s->unet_in, half, nb * sizeof(float));
  for (int i = 0; i < unet_batch(s); i++) s->timesteps[i] = t;
  const float *eps;
  if (s->dev_unet_in) {
    /* On a device: latents and timesteps up, the prediction down (guidance
     * and the scheduler step run on the host: a few MB per step). */
    size_t n_in = (size_t)unet_batch(s) * lat;
    kn_upload(&s->ctx, s->dev_unet_in, s->unet_in, n_in * sizeof(float));
    kn_upload(&s->ctx, s->dev_timesteps, s->timesteps, (size_t)unet_batch(s) * sizeof(float));
    eps = dpo_unet_forward(s->pipe->unet, &s->ctx, s->dev_unet_in, s->dev_timesteps, s->dev_text);
    if (!eps) return dpo_fail(err, DPO_ERR_USAGE, "UNet forward without a plan");
    kn_download(&s->ctx, s->eps_host, eps, n_in * sizeof(float));
    if (kn_ctx_check(&s->ctx, err)) return DPO_ERR_DATA;
    eps = s->eps_host;
  } else {
    eps = dpo_unet_forward(s->pipe->unet, &s->ctx, s->unet_in, s->timesteps, s->text);
  }
  if (!eps) return dpo_fail(err, DPO_ERR_USAGE, "UNet forward without a plan");
  if (s->cfg) {
    float g = s->opt.guidance;
    for (size_t i = 0; i < nb; i++) s->guided[i] = eps[i] + g * (eps[nb + i] - eps[i]);
  } else {
    memcpy(s->guided, eps, nb * sizeof(float));
  }
  return dpo_scheduler_step(&s->sched, s->guided, t, s->latents, NULL, s->latents, nb, err);
}

static uint8_t to_byte(float x) {
  float v = x * 0.5f + 0.5f;
  v = v < 0 ? 0 : v > 1 ? 1 : v;
  return (uint8_t)lrintf(v * 255.0f);
}

/* The decoded images of the batch's first n latents, in host memory: on a
 * device the latents go up once and the n images come down once. */
static const float *decode(eval_sampler *s, int n, dpo_error *err) {
  size_t lat = eval_sampler_latent_numel(s), px = 3u * (size_t)s->resolution * (size_t)s->resolution;
  if (!s->dev_latents) {
    const float *rgb = dpo_vae_decode(s->pipe->vae, &s->ctx, s->latents, 1);
    if (!rgb) dpo_fail(err, DPO_ERR_USAGE, "VAE decode without a plan");
    return rgb;
  }
  kn_upload(&s->ctx, s->dev_latents, s->latents, (size_t)s->batch * lat * sizeof(float));
  const float *rgb = dpo_vae_decode(s->pipe->vae, &s->ctx, s->dev_latents, 1);
  if (!rgb) {
    dpo_fail(err, DPO_ERR_USAGE, "VAE decode without a plan");
    return NULL;
  }
  kn_download(&s->ctx, s->pixels, rgb, (size_t)n * px * sizeof(float));
  if (kn_ctx_check(&s->ctx, err)) return NULL;
  return s->pixels;
}

/* Latents -> 8-bit RGB images (VAE decode, or the latents themselves). */
static int latents_to_images(eval_sampler *s, int n, float *final_latents, dpo_image *images, dpo_error *err) {
  size_t lat = eval_sampler_latent_numel(s);
  if (final_latents) memcpy(final_latents, s->latents, (size_t)n * lat * sizeof(float));
  const float *rgb = s->latents;
  if (s->pipe->vae) rgb = decode(s, n, err);
  if (!rgb) return err->code;
  int R = s->resolution;
  size_t plane = (size_t)R * R;
  for (int i = 0; i < n; i++) {
    if (dpo_image_alloc(&images[i], R, R, 3, err)) {
      for (int j = 0; j < i; j++) dpo_image_free(&images[j]);
      return DPO_ERR_DATA;
    }
    const float *x = rgb + (size_t)i * 3 * plane;
    for (size_t p = 0; p < plane; p++)
      for (int c = 0; c < 3; c++) images[i].pixels[p * 3 + c] = to_byte(x[c * plane + p]);
  }
  return DPO_OK;
}

static int check_call(const eval_sampler *s, int n, dpo_error *err) {
  if (n < 1 || n > s->batch)
    return dpo_fail(err, DPO_ERR_USAGE, "%d images in one call: expected 1..%d (the planned batch)", n, s->batch);
  return DPO_OK;
}

/* Restarts the sampler's multistep state for a new batch. */
static int reset_sampler(eval_sampler *s, dpo_error *err) {
  return dpo_scheduler_set_timesteps(&s->sched, s->opt.steps, err);
}

int eval_txt2img(eval_sampler *s, const char *const *prompts, int n, const float *noise, float *final_latents,
                 dpo_image *images, dpo_error *err) {
  if (check_call(s, n, err) || reset_sampler(s, err) || encode_prompts(s, prompts, n, err)) return err->code;
  size_t lat = eval_sampler_latent_numel(s);
  float sigma = s->sched.init_noise_sigma;
  for (int i = 0; i < s->batch; i++) {
    const float *src = noise + (size_t)(i < n ? i : 0) * lat;
    for (size_t k = 0; k < lat; k++) s->latents[(size_t)i * lat + k] = src[k] * sigma;
  }
  for (int k = 0; k < s->sched.n_timesteps; k++)
    if (denoise_step(s, k, err)) return err->code;
  return latents_to_images(s, n, final_latents, images, err);
}

/* Pixels of an RGB image as [3, R, R] floats in [-1, 1]. */
static void image_to_planes(const dpo_image *im, float *out) {
  size_t plane = (size_t)im->width * im->height;
  for (size_t p = 0; p < plane; p++)
    for (int c = 0; c < 3; c++) out[c * plane + p] = im->pixels[p * 3 + c] / 255.0f * 2.0f - 1.0f;
}

/* The VAE that encodes SDEdit's sources: the pipeline's when its plan can
 * (float32 on the CPU), else a float32 host copy planned once for the
 * batch. The copy costs the VAE's weights again in host memory, only for
 * SDEdit on a device or in bf16; the edit's latents are then exactly the
 * CPU float32 encoder's, whatever the sampler's backend. */
static int encoder_vae(eval_sampler *s, dpo_vae **out, dpo_error *err) {
  if (dpo_vae_can_encode(s->pipe->vae)) {
    *out = s->pipe->vae;
    return DPO_OK;
  }
  if (!s->encoder) {
    dpo_vae *copy = NULL;
    if (dpo_vae_clone(s->pipe->vae, &copy, err)) return err->code;
    if (dpo_vae_plan(copy, encode_ctx(s), s->batch, s->resolution, s->resolution, err)) {
      dpo_vae_free(copy);
      return err->code;
    }
    s->encoder = copy;
  }
  *out = s->encoder;
  return DPO_OK;
}

int eval_img2img(eval_sampler *s, const char *const *prompts, int n, const dpo_image *sources, const float *noise,
                 float *final_latents, dpo_image *images, dpo_error *err) {
  if (check_call(s, n, err) || reset_sampler(s, err)) return err->code;
  int steps = s->opt.steps;
  int init_timestep = (int)((double)steps * s->opt.strength);
  if (init_timestep > steps) init_timestep = steps;
  if (init_timestep < 1)
    return dpo_fail(err, DPO_ERR_USAGE, "strength %g with %d steps runs no step (diffusers refuses it too)",
                    (double)s->opt.strength, steps);
  int t_start = steps - init_timestep;
  if (dpo_scheduler_set_begin_index(&s->sched, t_start, err)) return err->code;
  if (encode_prompts(s, prompts, n, err)) return err->code;
  int R = s->resolution;
  size_t px = 3u * (size_t)R * R, lat = eval_sampler_latent_numel(s);
  for (int i = 0; i < s->batch; i++) {
    dpo_image fitted;
    if (eval_resize_center_crop(&sources[i < n ? i : 0], R, &fitted, err)) return dpo_error_prefix(err, "image %d", i);
    image_to_planes(&fitted, s->pixels + (size_t)i * px);
    dpo_image_free(&fitted);
  }
  if (s->pipe->vae) {
    /* The posterior's mean (diffusers' retrieve_latents with
     * sample_mode="argmax"): it keeps an edit independent of batching, and
     * Stable Diffusion's posterior std is negligible next to the noise added. */
    dpo_vae *vae = NULL;
    if (encoder_vae(s, &vae, err)) return err->code;
    if (dpo_vae_encode(vae, encode_ctx(s), s->pixels, 0, 0, 1, s->latents, NULL))
      return dpo_fail(err, DPO_ERR_USAGE, "VAE encode without an encoder plan");
  } else {
    memcpy(s->latents, s->pixels, (size_t)s->batch * lat * sizeof(float));
  }
  float t0 = s->sched.timesteps[t_start];
  float *noisy = s->guided;
  for (int i = 0; i < s->batch; i++) {
    const float *src = noise + (size_t)(i < n ? i : 0) * lat;
    memcpy(noisy + (size_t)i * lat, src, lat * sizeof(float));
  }
  if (dpo_scheduler_add_noise(&s->sched, s->latents, noisy, t0, s->latents, (size_t)s->batch * lat, err))
    return err->code;
  for (int k = t_start; k < s->sched.n_timesteps; k++)
    if (denoise_step(s, k, err)) return err->code;
  return latents_to_images(s, n, final_latents, images, err);
}

/* ------------------------------------------------------------- resizing */

/* Area weights: output pixel o of n_out covers [o * scale, (o + 1) * scale)
 * of the source axis; each source pixel contributes its overlap. */
static void axis_weights(int n_in, int n_out, double offset, double scale, int *first, int *count, double *w,
                         int max_taps) {
  for (int o = 0; o < n_out; o++) {
    double a = offset + o * scale, b = a + scale;
    int lo = (int)floor(a), hi = (int)ceil(b);
    if (lo < 0) lo = 0;
    if (hi > n_in) hi = n_in;
    if (hi - lo > max_taps) hi = lo + max_taps;
    double sum = 0;
    for (int i = lo; i < hi; i++) {
      double ov = fmin(b, i + 1.0) - fmax(a, (double)i);
      w[o * max_taps + (i - lo)] = ov > 0 ? ov : 0;
      sum += ov > 0 ? ov : 0;
    }
    for (int i = lo; i < hi; i++) w[o * max_taps + (i - lo)] /= sum > 0 ? sum : 1;
    first[o] = lo;
    count[o] = hi - lo;
  }
}

int eval_resize_center_crop(const dpo_image *src, int side, dpo_image *out, dpo_error *err) {
  memset(out, 0, sizeof *out);
  if (!src->pixels || src->width < 1 || src->height < 1 || side < 1)
    return dpo_fail(err, DPO_ERR_USAGE, "resize: empty image or side");
  int short_side = src->width < src->height ? src->width : src->height;
  double scale = (double)short_side / side;   /* source pixels per output pixel */
  double ox = (src->width - side * scale) / 2, oy = (src->height - side * scale) / 2;
  int taps = (int)ceil(scale) + 2;
  int *fx = malloc(sizeof(int) * side), *cx = malloc(sizeof(int) * side);
  int *fy = malloc(sizeof(int) * side), *cy = malloc(sizeof(int) * side);
  double *wx = malloc(sizeof(double) * side * taps), *wy = malloc(sizeof(double) * side * taps);
  int rc = DPO_OK;
  if (!fx || !cx || !fy || !cy || !wx || !wy) rc = dpo_fail(err, DPO_ERR_DATA, "resize: out of memory");
  if (!rc) rc = dpo_image_alloc(out, side, side, 3, err);
  if (!rc) {
    axis_weights(src->width, side, ox, scale, fx, cx, wx, taps);
    axis_weights(src->height, side, oy, scale, fy, cy, wy, taps);
    int ch = src->channels;
    for (int y = 0; y < side; y++)
      for (int x = 0; x < side; x++) {
        double acc[3] = {0, 0, 0};
        for (int j = 0; j < cy[y]; j++)
          for (int i = 0; i < cx[x]; i++) {
            double w = wy[y * taps + j] * wx[x * taps + i];
            const uint8_t *p = src->pixels + ((size_t)(fy[y] + j) * src->width + (size_t)(fx[x] + i)) * ch;
            for (int c = 0; c < 3; c++) acc[c] += w * p[ch < 3 ? 0 : c];
          }
        for (int c = 0; c < 3; c++) {
          long v = lrint(acc[c]);
          out->pixels[((size_t)y * side + x) * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
      }
  }
  free(fx);
  free(cx);
  free(fy);
  free(cy);
  free(wx);
  free(wy);
  return rc;
}
