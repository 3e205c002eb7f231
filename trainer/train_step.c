/* One Diffusion-DPO / SFT step over a micro-batch, as the official train.py:
 *
 *   latents = cat(x0_w, x0_l); noise, timesteps repeated for both halves
 *   noisy   = scheduler.add_noise(latents, noise, t)
 *   target  = noise (epsilon) or scheduler.get_velocity(latents, noise, t)
 *   mse     = ((unet(noisy, t, text) - target)^2).mean over C, H, W
 *   loss    = dpo_loss_dpo(mse_w, mse_l, ref_w, ref_l) or dpo_loss_sft
 *
 * and back: d loss / d pred = d loss / d mse_i * 2 (pred - target) / (CHW),
 * through the policy UNet. The reference runs forward only. */
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
  free(s->host_pred);
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
  int staged_ok = 1;
  if (ctx->backend != KN_BACKEND_CPU) {
    s->dev_sample = kn_malloc(ctx, n * sizeof(float));
    s->dev_dpred = kn_malloc(ctx, n * sizeof(float));
    s->dev_text2 = kn_malloc(ctx, nt * sizeof(float));
    s->dev_dtext2 = kn_malloc(ctx, nt * sizeof(float));
    s->dev_timesteps = kn_malloc(ctx, (size_t)2 * B * sizeof(float));
    s->host_pred = malloc(n * sizeof(float));
    staged_ok = s->dev_sample && s->dev_dpred && s->dev_text2 && s->dev_dtext2 && s->dev_timesteps && s->host_pred;
  }
  if (!s->sample || !s->target || !s->dpred || !s->text2 || !s->dtext2 || !s->timesteps || !s->mse_model ||
      !s->mse_ref || !s->grad_mse || !staged_ok) {
    dpo_train_step_free(s);
    return dpo_fail(err, DPO_ERR_DATA, "train step: out of memory for batch %d at %dx%d", B, H, W);
  }
  rc = dpo_unet_plan(policy, ctx, 2 * B, H, W, T, 1, err);
  if (rc == DPO_OK && reference) rc = dpo_unet_plan(reference, ctx, 2 * B, H, W, T, 0, err);
  if (rc != DPO_OK) dpo_train_step_free(s);
  return rc;
}

/* The UNet's view of a host buffer: the buffer itself on the CPU, its
 * device copy (uploaded now) on a device context. */
static const float *staged(dpo_train_step *s, float *device, const float *host, size_t n) {
  if (!device) return host;
  kn_upload(s->ctx, device, host, n * sizeof(float));
  return device;
}

/* The host's view of a UNet output: the output itself on the CPU, a
 * download into host_pred on a device context. */
static const float *on_host(dpo_train_step *s, const float *out, size_t n) {
  if (!s->host_pred) return out;
  kn_download(s->ctx, s->host_pred, out, n * sizeof(float));
  return s->host_pred;
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

/* loss += w * mean_i(p_i mse_w[i] + (1 - p_i) mse_l[i]) (p the label: the
 * preferred image's MSE), and its gradient into grad_mse ([2B], winners
 * first). */
static void add_sft_term(const float *mse_model, const float *label, int B, double w, float *grad_mse,
                         dpo_loss_stats *stats) {
  double term = 0;
  for (int i = 0; i < B; i++) {
    double p = label ? label[i] : 1.0;
    term += p * mse_model[i] + (1.0 - p) * mse_model[B + i];
    grad_mse[i] += (float)(w * p / B);
    grad_mse[B + i] += (float)(w * (1.0 - p) / B);
  }
  if (stats) stats->loss += w * term / B;
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

  size_t n_all = (size_t)B2 * per;
  const float *sample = staged(s, s->dev_sample, s->sample, n_all);
  const float *timesteps = staged(s, s->dev_timesteps, s->timesteps, (size_t)B2);
  const float *text2 = staged(s, s->dev_text2, s->text2, (size_t)B2 * per_text);
  if (!sft) {
    const float *ref = dpo_unet_forward(s->reference, s->ctx, sample, timesteps, text2);
    if (!ref) return dpo_fail(err, DPO_ERR_USAGE, "train step: reference UNet has no plan");
    per_sample_mse(on_host(s, ref, n_all), s->target, B2, per, s->mse_ref);
  }
  const float *pred = dpo_unet_forward(s->policy, s->ctx, sample, timesteps, text2);
  if (!pred) return dpo_fail(err, DPO_ERR_USAGE, "train step: policy UNet has no plan");
  pred = on_host(s, pred, n_all);
  if (kn_ctx_check(s->ctx, err) != DPO_OK) return DPO_ERR_DATA;
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
  if (s->dev_dtext2) {
    /* On a device: gradients into the device buffer, then to the host. */
    if (dtext) kn_zero(s->ctx, s->dev_dtext2, (size_t)B2 * per_text * sizeof(float));
    dpo_unet_backward(s->policy, s->ctx, staged(s, s->dev_dpred, s->dpred, n_all), NULL,
                      dtext ? s->dev_dtext2 : NULL);
    /* Without dtext the backward stays queued: the caller's kn_ctx_check (or
     * its next download) waits for it and reports a device failure. */
    if (dtext) {
      kn_download(s->ctx, s->dtext2, s->dev_dtext2, (size_t)B2 * per_text * sizeof(float));
      if (kn_ctx_check(s->ctx, err) != DPO_OK) return DPO_ERR_DATA;
    }
  } else {
    if (dtext) memset(s->dtext2, 0, (size_t)B2 * per_text * sizeof(float));
    dpo_unet_backward(s->policy, s->ctx, s->dpred, NULL, dtext ? s->dtext2 : NULL);
  }
  if (dtext) {
    for (int i = 0; i < B2; i++) {
      float *d = dtext + (size_t)(i % B) * per_text;
      const float *src = s->dtext2 + (size_t)i * per_text;
      for (size_t j = 0; j < per_text; j++) d[j] += src[j];
    }
  }
  return DPO_OK;
}
