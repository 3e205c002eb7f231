/* dpo bench train: seconds of one Diffusion-DPO step (dpo_train_step_run:
 * reference forward on winner and loser, policy forward + backward on both,
 * then an AdamW update of every policy parameter, as a training step and
 * PyTorch's baseline step do) for a UNet config with random weights; the
 * median of `repeat` steps after one warm-up. Policy and reference start
 * from the same weights. */
#include <stdlib.h>
#include <string.h>

#include "trainer/trainer.h"

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int dpo_bench_train_step(const json_t *unet_config, const dpo_bench_train_options *o, dpo_bench_train_result *res,
                         dpo_error *err) {
  int batch = o->batch, latent_hw = o->latent_hw, text_len = o->text_len, repeat = o->repeat;
  memset(res, 0, sizeof *res);
  if (batch < 1 || latent_hw < 1 || text_len < 1 || repeat < 1 || repeat > 1000)
    return dpo_fail(err, DPO_ERR_USAGE, "bench train: batch, size, text length and repeat (<= 1000) must be positive");
  dpo_unet *policy = NULL, *reference = NULL;
  kn_ctx ctx;
  int ctx_ok = 0, step_ok = 0, rc;
  dpo_train_step step;
  dpo_optimizer opt;
  int opt_ok = 0;
  dpo_optim_param *params = NULL;
  float *x0_w = NULL, *x0_l = NULL, *noise = NULL, *text = NULL;
  double *times = calloc((size_t)repeat, sizeof(double));
  int *t = calloc((size_t)batch, sizeof(int));
  if ((rc = dpo_unet_create(unet_config, &policy, err)) != DPO_OK) goto done;
  if ((rc = dpo_unet_create(unet_config, &reference, err)) != DPO_OK) goto done;
  dpo_unet_init_random(policy, 1);
  dpo_unet_init_random(reference, 1);
  dpo_unet_set_checkpointing(policy, o->checkpointing);
  if (o->precision == KN_BF16) {
    if ((rc = dpo_unet_set_precision(policy, KN_BF16, 0, err)) != DPO_OK) goto done;
    if ((rc = dpo_unet_set_precision(reference, KN_BF16, 1, err)) != DPO_OK) goto done;
  }
  if ((rc = kn_ctx_init_backend(&ctx, o->backend, o->threads, err)) != DPO_OK) goto done;
  ctx_ok = 1;
  kn_ctx_set_tf32(&ctx, o->tf32);
  dpo_scheduler_config sc;
  dpo_scheduler_config_default(&sc, DPO_SCHED_DDPM);
  sc.beta_start = 0.00085;
  sc.beta_end = 0.012;
  snprintf(sc.beta_schedule, sizeof sc.beta_schedule, "scaled_linear");
  if ((rc = dpo_train_step_init(&step, policy, reference, &sc, &ctx, batch, latent_hw, latent_hw, text_len, err)) !=
      DPO_OK)
    goto done;
  step_ok = 1;
  /* AdamW over the policy, where its parameters live (device memory on a
   * device, as dpo train does); lr 1e-8 keeps the weights nearly as they are. */
  int n_params = dpo_unet_n_params(policy);
  params = calloc((size_t)n_params, sizeof *params);
  if (!params) {
    rc = dpo_fail(err, DPO_ERR_DATA, "out of memory");
    goto done;
  }
  for (int i = 0; i < n_params; i++) {
    dpo_param p;
    dpo_unet_param(policy, i, &p);
    params[i] = dpo_optim_param_of(&p, p.name);
  }
  dpo_optim_config oc;
  dpo_optim_config_default(&oc, DPO_OPTIM_ADAMW);
  rc = step.resident ? dpo_optim_init_on(&opt, &oc, params, n_params, &ctx, err)
                     : dpo_optim_init(&opt, &oc, params, n_params, err);
  if (rc != DPO_OK) goto done;
  opt_ok = 1;
  size_t per = (size_t)step.C * latent_hw * latent_hw, per_text = (size_t)text_len * step.D;
  x0_w = malloc(sizeof(float) * batch * per);
  x0_l = malloc(sizeof(float) * batch * per);
  noise = malloc(sizeof(float) * batch * per);
  text = malloc(sizeof(float) * batch * per_text);
  if (!x0_w || !x0_l || !noise || !text || !times || !t) {
    rc = dpo_fail(err, DPO_ERR_DATA, "out of memory");
    goto done;
  }
  dpo_rng_normal_fill(7, 1, 0, x0_w, batch * per);
  dpo_rng_normal_fill(7, 2, 0, x0_l, batch * per);
  dpo_rng_normal_fill(7, 3, 0, noise, batch * per);
  dpo_rng_normal_fill(7, 4, 0, text, batch * per_text);
  for (int b = 0; b < batch; b++) t[b] = (999 - 37 * b) % 1000;
  for (int r = -1; r < repeat; r++) {
    double start = dpo_now_seconds();
    dpo_loss_stats stats;
    dpo_unet_zero_grads(policy);
    rc = dpo_train_step_run(&step, x0_w, x0_l, text, noise, t, NULL, 0, 5000, 1.0, NULL, &stats, err);
    if (rc == DPO_OK) dpo_optim_step(&opt, 1e-8);
    if (rc == DPO_OK) rc = kn_ctx_check(&ctx, err); /* the device's work may still run */
    if (rc != DPO_OK) goto done;
    if (r >= 0) times[r] = dpo_now_seconds() - start;
  }
  qsort(times, (size_t)repeat, sizeof *times, compare_doubles);
  res->step_s = times[repeat / 2];
  res->pairs_per_s = batch / res->step_s;
  res->device_bytes = kn_ctx_device_memory(&ctx);
done:
  if (opt_ok) dpo_optim_free(&opt);
  free(params);
  if (step_ok) dpo_train_step_free(&step);
  if (ctx_ok) kn_ctx_free(&ctx);
  dpo_unet_free(policy);
  dpo_unet_free(reference);
  free(x0_w);
  free(x0_l);
  free(noise);
  free(text);
  free(times);
  free(t);
  return rc;
}
