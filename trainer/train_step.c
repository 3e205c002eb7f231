/* One Diffusion-DPO / SFT step over a micro-batch, as the official train.py:
 *
 *   latents = cat(x0_w, x0_l); noise, timesteps repeated for both halves
 *   noisy   = scheduler.add_noise(latents, noise, t)
 *   target  = noise (epsilon) or scheduler.get_velocity(latents, noise, t)
 *   mse     = ((unet(noisy, t, text) - target)^2).mean over C, H, W
 *   loss    = dpo_loss_dpo(mse_w, mse_l, ref_w, ref_l) or dpo_loss_sft
 *
 * and back: d loss / d pred = d loss / d mse_i * 2 (pred - target) / (CHW),
 * through the policy UNet. The reference runs forward only.
 *
 * Two paths: the host step (CPU context: MSEs, loss and d pred in host
 * loops, the reference numerics) and the resident step (a device context,
 * or a CPU one made resident for tests): MSEs, the DPO loss gradient and
 * d pred through the kernels' ops in the backend's memory, so that a device
 * step reads nothing back unless the caller asks for stats. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/trainer.h"

void dpo_train_step_free(dpo_train_step *s) {
  kn_backend backend = s->ctx ? s->ctx->backend : KN_BACKEND_CPU;
  kn_free(backend, s->dev_sample);
  kn_free(backend, s->dev_text2);
  kn_free(backend, s->dev_timesteps);
  kn_free(backend, s->dev_dpred);
  kn_free(backend, s->dev_dtext2);
  kn_free(backend, s->dev_target);
  kn_free(backend, s->dev_label);
  kn_free(backend, s->dev_mse_model);
  kn_free(backend, s->dev_mse_ref);
  kn_free(backend, s->dev_grad_mse);
  kn_free(backend, s->dev_dloss);
  kn_free(backend, s->dev_loss);
  kn_free(backend, s->dev_sft_seed);
  dpo_scheduler_free(&s->sched);
  free(s->sample);
  free(s->target);
  free(s->dpred);
  free(s->text2);
  free(s->dtext2);
  free(s->timesteps);
  free(s->mse_model);
  free(s->mse_ref);
  free(s->grad_mse);
  memset(s, 0, sizeof *s);
}

/* The buffers of the resident step in the memory of the context's backend. */
static int alloc_resident(dpo_train_step *s, dpo_error *err) {
  kn_ctx *ctx = s->ctx;
  size_t B2 = (size_t)2 * s->B;
  size_t n = B2 * s->C * s->H * s->W, nt = B2 * s->T * s->D;
  s->dev_sample = kn_malloc(ctx, n * sizeof(float));
  s->dev_target = kn_malloc(ctx, n * sizeof(float));
  s->dev_dpred = kn_malloc(ctx, n * sizeof(float));
  s->dev_text2 = kn_malloc(ctx, nt * sizeof(float));
  s->dev_dtext2 = kn_malloc(ctx, nt * sizeof(float));
  s->dev_timesteps = kn_malloc(ctx, B2 * sizeof(float));
  s->dev_label = kn_malloc(ctx, (size_t)s->B * sizeof(float));
  s->dev_mse_model = kn_malloc(ctx, B2 * sizeof(float));
  s->dev_mse_ref = kn_malloc(ctx, B2 * sizeof(float));
  s->dev_grad_mse = kn_malloc(ctx, B2 * sizeof(float));
  s->dev_dloss = kn_malloc(ctx, B2 * sizeof(float));
  s->dev_loss = kn_malloc(ctx, sizeof(float));
  s->dev_sft_seed = kn_malloc(ctx, B2 * sizeof(float));
  if (!s->dev_sft_seed || !s->dev_sample || !s->dev_target || !s->dev_dpred || !s->dev_text2 || !s->dev_dtext2 || !s->dev_timesteps ||
      !s->dev_label || !s->dev_mse_model || !s->dev_mse_ref || !s->dev_grad_mse || !s->dev_dloss || !s->dev_loss)
    return dpo_fail(err, DPO_ERR_DATA, "train step: out of %s memory for batch %d at %dx%d",
                    kn_backend_name(ctx->backend), s->B, s->H, s->W);
  s->resident = 1;
  return kn_ctx_check(ctx, err);
}

int dpo_train_step_make_resident(dpo_train_step *s, dpo_error *err) {
  if (s->resident) return DPO_OK;
  return alloc_resident(s, err);
}

int dpo_train_step_init(dpo_train_step *s, dpo_unet *policy, dpo_unet *reference,
                        const dpo_scheduler_config *sched, kn_ctx *ctx, int B, int H, int W, int T,
                        dpo_error *err) {
  memset(s, 0, sizeof *s);
  const dpo_unet_config *uc = dpo_unet_get_config(policy);
  s->policy = policy;
  s->reference = reference;
  s->ctx = ctx;
  s->B = B;
  s->C = uc->in_channels;
  s->H = H;
  s->W = W;
  s->T = T;
  s->D = uc->cross_attention_dim;
  if (uc->out_channels != uc->in_channels)
    return dpo_fail(err, DPO_ERR_DATA, "unet: out_channels %d differs from in_channels %d; cannot train",
                    uc->out_channels, uc->in_channels);
  /* Training noise comes from DDPMScheduler.from_config(scheduler config). */
  dpo_scheduler_config cfg = *sched;
  if (cfg.kind != DPO_SCHED_DDPM) dpo_scheduler_config_set_kind(&cfg, DPO_SCHED_DDPM);
  int rc = dpo_scheduler_init(&s->sched, &cfg, err);
  if (rc != DPO_OK) return rc;
  size_t n = (size_t)2 * B * s->C * H * W, nt = (size_t)2 * B * T * s->D;
  s->sample = malloc(n * sizeof(float));
  s->target = malloc(n * sizeof(float));
  s->dpred = malloc(n * sizeof(float));
  s->text2 = malloc(nt * sizeof(float));
  s->dtext2 = malloc(nt * sizeof(float));
  s->timesteps = malloc((size_t)2 * B * sizeof(float));
  s->mse_model = malloc((size_t)2 * B * sizeof(float));
  s->mse_ref = malloc((size_t)2 * B * sizeof(float));
  s->grad_mse = malloc((size_t)2 * B * sizeof(float));
  if (!s->sample || !s->target || !s->dpred || !s->text2 || !s->dtext2 || !s->timesteps || !s->mse_model ||
      !s->mse_ref || !s->grad_mse) {
    dpo_train_step_free(s);
    return dpo_fail(err, DPO_ERR_DATA, "train step: out of memory for batch %d at %dx%d", B, H, W);
  }
  /* A device's step is always resident: its UNets read device memory. */
  if (ctx->backend != KN_BACKEND_CPU && (rc = alloc_resident(s, err)) != DPO_OK) {
    dpo_train_step_free(s);
    return rc;
  }
  rc = dpo_unet_plan(policy, ctx, 2 * B, H, W, T, 1, err);
  if (rc == DPO_OK && reference) rc = dpo_unet_plan(reference, ctx, 2 * B, H, W, T, 0, err);
  if (rc != DPO_OK) dpo_train_step_free(s);
  return rc;
}

/* Per-sample mean squared error over one sample's elements, summed in double. */
static void per_sample_mse(const float *pred, const float *target, int n_samples, size_t per, float *mse) {
  for (int i = 0; i < n_samples; i++) {
    const float *p = pred + (size_t)i * per, *t = target + (size_t)i * per;
    double sum = 0;
    for (size_t j = 0; j < per; j++) {
      double d = (double)p[j] - (double)t[j];
      sum += d * d;
    }
    mse[i] = (float)(sum / (double)per);
  }
}

/* The gradient of w * mean_i(p_i mse_w[i] + (1 - p_i) mse_l[i]) with
 * respect to the MSEs ([2B], winners first; p the label, NULL: all 1): the
 * seeds of SFT (w = 1, dpo_loss_sft's) and of the sft_weight term. */
static void sft_seeds(const float *label, int B, double w, float *seeds) {
  for (int i = 0; i < B; i++) {
    double p = label ? label[i] : 1.0;
    seeds[i] = (float)(w * p / B);
    seeds[B + i] = (float)(w * (1.0 - p) / B);
  }
}

/* loss += w * mean_i(p_i mse_w[i] + (1 - p_i) mse_l[i]) (p the label: the
 * preferred image's MSE), and its gradient into grad_mse ([2B], winners
 * first; NULL: the statistics alone). */
static void add_sft_term(const float *mse_model, const float *label, int B, double w, float *grad_mse,
                         dpo_loss_stats *stats) {
  double term = 0;
  for (int i = 0; i < B; i++) {
    double p = label ? label[i] : 1.0;
    term += p * mse_model[i] + (1.0 - p) * mse_model[B + i];
    if (!grad_mse) continue;
    grad_mse[i] += (float)(w * p / B);
    grad_mse[B + i] += (float)(w * (1.0 - p) / B);
  }
  if (stats) stats->loss += w * term / B;
}

int dpo_train_step_stats(const float *mse_model, const float *mse_ref, const float *label, int B, int sft,
                         double beta, double sft_weight, dpo_loss_stats *stats, dpo_error *err) {
  if (sft) return dpo_loss_sft(mse_model, mse_model + B, label, B, NULL, NULL, stats, err);
  int rc = dpo_loss_dpo(mse_model, mse_model + B, mse_ref, mse_ref + B, label, B, beta, NULL, NULL, stats, err);
  if (rc == DPO_OK && sft_weight > 0) add_sft_term(mse_model, label, B, sft_weight, NULL, stats);
  return rc;
}

/* dtext[b] += the text gradient of winner b and of loser b (host buffers). */
static void add_text_gradient(const dpo_train_step *s, float *dtext) {
  int B = s->B;
  size_t per_text = (size_t)s->T * s->D;
  for (int i = 0; i < 2 * B; i++) {
    float *d = dtext + (size_t)(i % B) * per_text;
    const float *src = s->dtext2 + (size_t)i * per_text;
    for (size_t j = 0; j < per_text; j++) d[j] += src[j];
  }
}

/* The step with the MSEs, the loss gradient and d pred computed by the
 * kernels' ops in the memory of the context's backend: the inputs go up
 * (host-made: noise, timesteps and text come from the data side), nothing
 * comes down unless stats or dtext ask for it. */
static int run_resident(dpo_train_step *s, const float *label, int sft, double beta, double grad_scale,
                        float *dtext, dpo_loss_stats *stats, dpo_error *err) {
  kn_ctx *ctx = s->ctx;
  int B = s->B, B2 = 2 * B;
  size_t per = (size_t)s->C * s->H * s->W, per_text = (size_t)s->T * s->D, n_all = (size_t)B2 * per;
  if (!sft && !(beta > 0 && isfinite(beta))) return dpo_fail(err, DPO_ERR_USAGE, "loss: beta must be > 0, got %g", beta);
  kn_upload(ctx, s->dev_sample, s->sample, n_all * sizeof(float));
  kn_upload(ctx, s->dev_target, s->target, n_all * sizeof(float));
  kn_upload(ctx, s->dev_timesteps, s->timesteps, (size_t)B2 * sizeof(float));
  kn_upload(ctx, s->dev_text2, s->text2, (size_t)B2 * per_text * sizeof(float));
  if (label) kn_upload(ctx, s->dev_label, label, (size_t)B * sizeof(float));
  /* SFT's seeds, and those of the sft_weight term, depend on the labels
   * alone: made on the host and uploaded before any work of this
   * micro-batch is queued, so that the upload's wait costs nothing (the
   * sft_weight seeds are added to the DPO ones on the backend below). */
  if (sft) {
    sft_seeds(label, B, 1.0, s->grad_mse);
    kn_upload(ctx, s->dev_grad_mse, s->grad_mse, (size_t)B2 * sizeof(float));
  } else {
    if (s->sft_weight > 0) {
      sft_seeds(label, B, s->sft_weight, s->grad_mse);
      kn_upload(ctx, s->dev_sft_seed, s->grad_mse, (size_t)B2 * sizeof(float));
    }
    const float *ref = dpo_unet_forward(s->reference, ctx, s->dev_sample, s->dev_timesteps, s->dev_text2);
    if (!ref) return dpo_fail(err, DPO_ERR_USAGE, "train step: reference UNet has no plan");
    kn_mse_per_sample_forward(ctx, s->dev_mse_ref, ref, s->dev_target, B2, per);
  }
  const float *pred = dpo_unet_forward(s->policy, ctx, s->dev_sample, s->dev_timesteps, s->dev_text2);
  if (!pred) return dpo_fail(err, DPO_ERR_USAGE, "train step: policy UNet has no plan");
  kn_mse_per_sample_forward(ctx, s->dev_mse_model, pred, s->dev_target, B2, per);
  if (!sft) {
    kn_dpo_loss(ctx, s->dev_loss, s->dev_grad_mse, s->dev_grad_mse + B, NULL, s->dev_mse_model,
                s->dev_mse_model + B, s->dev_mse_ref, s->dev_mse_ref + B, label ? s->dev_label : NULL, B, beta);
    if (s->sft_weight > 0) kn_axpy(ctx, s->dev_grad_mse, 1.0f, s->dev_sft_seed, (size_t)B2);
  }
  /* d pred = d loss / d mse * grad_scale * 2 (pred - target) / CHW. */
  kn_scale_forward(ctx, s->dev_dloss, s->dev_grad_mse, (float)grad_scale, (size_t)B2);
  kn_zero(ctx, s->dev_dpred, n_all * sizeof(float));
  kn_mse_per_sample_backward(ctx, s->dev_dpred, NULL, s->dev_dloss, pred, s->dev_target, B2, per);
  if (dtext) kn_zero(ctx, s->dev_dtext2, (size_t)B2 * per_text * sizeof(float));
  dpo_unet_backward(s->policy, ctx, s->dev_dpred, NULL, dtext ? s->dev_dtext2 : NULL);
  /* Without dtext or stats the step stays queued: the caller's next download
   * or kn_ctx_check waits for it and reports a device failure. */
  if (dtext) {
    kn_download(ctx, s->dtext2, s->dev_dtext2, (size_t)B2 * per_text * sizeof(float));
    if (kn_ctx_check(ctx, err) != DPO_OK) return DPO_ERR_DATA;
    add_text_gradient(s, dtext);
  }
  if (!stats) return DPO_OK;
  kn_download(ctx, s->mse_model, s->dev_mse_model, (size_t)B2 * sizeof(float));
  if (!sft) kn_download(ctx, s->mse_ref, s->dev_mse_ref, (size_t)B2 * sizeof(float));
  if (kn_ctx_check(ctx, err) != DPO_OK) return DPO_ERR_DATA;
  return dpo_train_step_stats(s->mse_model, s->mse_ref, label, B, sft, beta, s->sft_weight, stats, err);
}

int dpo_train_step_run(dpo_train_step *s, const float *x0_w, const float *x0_l, const float *text,
                       const float *noise, const int *t, const float *label, int sft, double beta,
                       double grad_scale, float *dtext, dpo_loss_stats *stats, dpo_error *err) {
  int B = s->B, B2 = 2 * B;
  size_t per = (size_t)s->C * s->H * s->W, per_text = (size_t)s->T * s->D;
  if (!sft && !s->reference) return dpo_fail(err, DPO_ERR_USAGE, "train step: DPO needs a reference UNet");
  for (int i = 0; i < B2; i++) {
    int pair = i % B;
    const float *x0 = (i < B ? x0_w : x0_l) + (size_t)pair * per;
    const float *eps = noise + (size_t)pair * per;
    int ti = t[pair];
    if (ti < 0 || ti >= s->sched.num_train_timesteps)
      return dpo_fail(err, DPO_ERR_USAGE, "train step: timestep %d outside [0, %d)", ti, s->sched.num_train_timesteps);
    s->timesteps[i] = (float)ti;
    int rc = dpo_scheduler_add_noise(&s->sched, x0, eps, (float)ti, s->sample + (size_t)i * per, per, err);
    if (rc != DPO_OK) return rc;
    if (s->sched.prediction == DPO_PRED_V) {
      rc = dpo_scheduler_get_velocity(&s->sched, x0, eps, ti, s->target + (size_t)i * per, per, err);
      if (rc != DPO_OK) return rc;
    } else {
      memcpy(s->target + (size_t)i * per, eps, per * sizeof(float));
    }
    memcpy(s->text2 + (size_t)i * per_text, text + (size_t)pair * per_text, per_text * sizeof(float));
  }

  if (s->resident) return run_resident(s, label, sft, beta, grad_scale, dtext, stats, err);

  /* The host step (the CPU reference): everything in host memory. */
  if (!sft) {
    const float *ref = dpo_unet_forward(s->reference, s->ctx, s->sample, s->timesteps, s->text2);
    if (!ref) return dpo_fail(err, DPO_ERR_USAGE, "train step: reference UNet has no plan");
    per_sample_mse(ref, s->target, B2, per, s->mse_ref);
  }
  const float *pred = dpo_unet_forward(s->policy, s->ctx, s->sample, s->timesteps, s->text2);
  if (!pred) return dpo_fail(err, DPO_ERR_USAGE, "train step: policy UNet has no plan");
  per_sample_mse(pred, s->target, B2, per, s->mse_model);

  int rc = sft ? dpo_loss_sft(s->mse_model, s->mse_model + B, label, B, s->grad_mse, s->grad_mse + B, stats, err)
               : dpo_loss_dpo(s->mse_model, s->mse_model + B, s->mse_ref, s->mse_ref + B, label, B, beta, s->grad_mse,
                              s->grad_mse + B, stats, err);
  if (rc != DPO_OK) return rc;
  if (!sft && s->sft_weight > 0) add_sft_term(s->mse_model, label, B, s->sft_weight, s->grad_mse, stats);

  for (int i = 0; i < B2; i++) {
    float g = (float)((double)s->grad_mse[i] * grad_scale * 2.0 / (double)per);
    const float *p = pred + (size_t)i * per, *tg = s->target + (size_t)i * per;
    float *d = s->dpred + (size_t)i * per;
    for (size_t j = 0; j < per; j++) d[j] = g * (p[j] - tg[j]);
  }
  if (dtext) memset(s->dtext2, 0, (size_t)B2 * per_text * sizeof(float));
  dpo_unet_backward(s->policy, s->ctx, s->dpred, NULL, dtext ? s->dtext2 : NULL);
  if (dtext) add_text_gradient(s, dtext);
  return DPO_OK;
}
