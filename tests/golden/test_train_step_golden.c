/* One Diffusion-DPO step and one SFT step (dpo_train_step_run) against the
 * official formula in PyTorch (tests/fixtures/make_train_step_fixtures.py):
 * the loss and EVERY UNet parameter gradient, for the same latents, noise,
 * timesteps and text states. Each gradient tensor must match to 5e-4 of its
 * own largest value (or of 1e-3 of the largest gradient of all, for tensors
 * whose gradient is tiny): the reference is float64, we are float32, and
 * beta = 5000 amplifies MSE rounding by 2500. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/test.h"
#include "trainer/trainer.h"

#define REL_TOL 5e-4

static float *tensor(const dpo_safetensors *st, const char *name, size_t expect) {
  const dpo_tensor_view *t = dpo_st_find(st, name);
  if (!t || (expect && (size_t)t->numel != expect)) {
    test_fail(__FILE__, __LINE__, "fixture lacks %s (or wrong size)", name);
    return NULL;
  }
  float *out = malloc(sizeof(float) * (size_t)t->numel);
  dpo_error err;
  if (dpo_st_to_f32(t, out, &err)) test_fail(__FILE__, __LINE__, "%s", err.msg);
  return out;
}

static double max_abs(const float *x, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)x[i]));
  return m;
}

/* Compares every parameter gradient of the UNet with "<kind>.grad.<name>". */
static void check_grads(const dpo_safetensors *st, dpo_unet *u, const char *kind) {
  double global = 0;
  int n = dpo_unet_n_params(u), checked = 0;
  char name[512];
  for (int i = 0; i < n; i++) {
    dpo_param p;
    dpo_unet_param(u, i, &p);
    snprintf(name, sizeof name, "%s.grad.%s", kind, p.name);
    const dpo_tensor_view *t = dpo_st_find(st, name);
    if (t) {
      float *g = tensor(st, name, p.numel);
      if (g) global = fmax(global, max_abs(g, p.numel));
      free(g);
    }
  }
  CHECK(global > 0);
  double worst_ratio = 0;
  for (int i = 0; i < n; i++) {
    dpo_param p;
    dpo_unet_param(u, i, &p);
    snprintf(name, sizeof name, "%s.grad.%s", kind, p.name);
    float *g = tensor(st, name, p.numel);
    if (!g) continue;
    double scale = fmax(max_abs(g, p.numel), 1e-3 * global), worst = 0;
    for (size_t j = 0; j < p.numel; j++) worst = fmax(worst, fabs((double)p.grad[j] - g[j]));
    if (!(worst <= REL_TOL * scale))
      test_fail(__FILE__, __LINE__, "%s: max error %.3g exceeds %.3g", name, worst, REL_TOL * scale);
    worst_ratio = fmax(worst_ratio, worst / (REL_TOL * scale));
    checked++;
    free(g);
  }
  CHECK_INT(checked, n);
  printf("%s: %d gradients, worst error %.3f of tolerance\n", kind, checked, worst_ratio);
}

int main(void) {
  dpo_error err;
  dpo_safetensors st;
  if (dpo_st_open(&st, test_source_path("tests/fixtures/train_step/step.safetensors"), &err)) {
    test_fail(__FILE__, __LINE__, "%s", err.msg);
    return test_finish();
  }
  dpo_unet *policy = NULL, *reference = NULL;
  CHECK_INT(dpo_unet_load(test_source_path("tests/fixtures/models/unet_sd15"), &policy, &err), DPO_OK);
  CHECK_INT(dpo_unet_load(test_source_path("tests/fixtures/train_step/ref_unet"), &reference, &err), DPO_OK);
  if (!policy || !reference) return test_finish();
  const dpo_unet_config *uc = dpo_unet_get_config(policy);
  int B = 2, T = 5, C = uc->in_channels, H = uc->sample_size, D = uc->cross_attention_dim;
  size_t n = (size_t)B * C * H * H;
  float *x0_w = tensor(&st, "x0_w", n), *x0_l = tensor(&st, "x0_l", n), *noise = tensor(&st, "noise", n);
  float *text = tensor(&st, "text", (size_t)B * T * D);
  float *dpo_loss = tensor(&st, "dpo.loss", 1), *sft_loss = tensor(&st, "sft.loss", 1);
  float *inside = tensor(&st, "dpo.inside", 2), *beta = tensor(&st, "beta", 1);
  const dpo_tensor_view *tv = dpo_st_find(&st, "timesteps");
  CHECK(tv && tv->dtype == DPO_DTYPE_I64 && tv->numel == B);
  int t[2] = {0, 0};
  for (int i = 0; tv && i < B; i++) {
    int64_t v;
    memcpy(&v, tv->data + 8 * i, 8);
    t[i] = (int)v;
  }

  dpo_scheduler_config sc;
  dpo_scheduler_config_default(&sc, DPO_SCHED_DDPM);
  sc.beta_start = 0.00085;
  sc.beta_end = 0.012;
  snprintf(sc.beta_schedule, sizeof sc.beta_schedule, "scaled_linear");
  kn_ctx ctx;
  CHECK_INT(kn_ctx_init(&ctx, 2, &err), DPO_OK);
  dpo_train_step step;
  CHECK_INT(dpo_train_step_init(&step, policy, reference, &sc, &ctx, B, H, H, T, &err), DPO_OK);
  if (err.code) fprintf(stderr, "%s\n", err.msg);

  /* DPO */
  dpo_loss_stats stats;
  dpo_unet_zero_grads(policy);
  CHECK_INT(dpo_train_step_run(&step, x0_w, x0_l, text, noise, t, NULL, 0, beta[0], 1.0, NULL, &stats, &err), DPO_OK);
  CHECK_NEAR(stats.loss, dpo_loss[0], 1e-4 * fabs(dpo_loss[0]));
  for (int i = 0; i < B; i++) {
    double in = -0.5 * beta[0] * ((step.mse_model[i] - step.mse_model[B + i]) - (step.mse_ref[i] - step.mse_ref[B + i]));
    CHECK_NEAR(in, inside[i], 2e-3 * fabs(inside[i]) + 1e-3);
  }
  printf("dpo loss %.6f (torch %.6f)\n", stats.loss, dpo_loss[0]);
  check_grads(&st, policy, "dpo");

  /* SFT: the reference is not needed. */
  dpo_unet_zero_grads(policy);
  CHECK_INT(dpo_train_step_run(&step, x0_w, x0_l, text, noise, t, NULL, 1, 0, 1.0, NULL, &stats, &err), DPO_OK);
  CHECK_NEAR(stats.loss, sft_loss[0], 1e-4 * fabs(sft_loss[0]));
  printf("sft loss %.6f (torch %.6f)\n", stats.loss, sft_loss[0]);
  check_grads(&st, policy, "sft");

  /* grad_scale scales every gradient (gradient accumulation). */
  dpo_param p0;
  dpo_unet_param(policy, 0, &p0);
  float first = p0.grad[0];
  CHECK_INT(dpo_train_step_run(&step, x0_w, x0_l, text, noise, t, NULL, 1, 0, 0.5, NULL, &stats, &err), DPO_OK);
  CHECK_NEAR(p0.grad[0], 1.5 * first, 1e-5 * fabs(first) + 1e-12);

  /* DPO with an SFT term: loss and every gradient are the DPO ones plus w
   * times the SFT ones (labels all 1: the SFT loss is the winners' MSE). */
  double w = 300.0;
  size_t total = 0;
  int n_params = dpo_unet_n_params(policy);
  for (int i = 0; i < n_params; i++) {
    dpo_param p;
    dpo_unet_param(policy, i, &p);
    total += p.numel;
  }
  float *g_dpo = malloc(total * sizeof(float)), *g_sft = malloc(total * sizeof(float));
  double loss_dpo = 0, loss_sft = 0;
  for (int pass = 0; pass < 3; pass++) {
    dpo_unet_zero_grads(policy);
    step.sft_weight = pass == 2 ? w : 0.0;
    CHECK_INT(dpo_train_step_run(&step, x0_w, x0_l, text, noise, t, NULL, pass == 1, beta[0], 1.0, NULL, &stats, &err),
              DPO_OK);
    if (pass == 0) loss_dpo = stats.loss;
    if (pass == 1) loss_sft = stats.loss;
    size_t at = 0;
    double worst = 0, largest = 0;
    for (int i = 0; i < n_params; i++) {
      dpo_param p;
      dpo_unet_param(policy, i, &p);
      for (size_t j = 0; j < p.numel; j++, at++) {
        if (pass == 0) g_dpo[at] = p.grad[j];
        if (pass == 1) g_sft[at] = p.grad[j];
        if (pass == 2) {
          double want = (double)g_dpo[at] + w * (double)g_sft[at];
          worst = fmax(worst, fabs(p.grad[j] - want));
          largest = fmax(largest, fabs(want));
        }
      }
    }
    if (pass == 2) {
      CHECK_NEAR(stats.loss, loss_dpo + w * loss_sft, 1e-5 * fabs(loss_dpo + w * loss_sft));
      CHECK(worst <= 1e-4 * largest);
      printf("dpo + %g sft: loss %.6f, largest gradient error %.3g of %.3g\n", w, stats.loss, worst, largest);
    }
  }
  step.sft_weight = 0.0;
  free(g_dpo);
  free(g_sft);

  dpo_train_step_free(&step);
  kn_ctx_free(&ctx);
  dpo_unet_free(policy);
  dpo_unet_free(reference);
  free(x0_w);
  free(x0_l);
  free(noise);
  free(text);
  free(dpo_loss);
  free(sft_loss);
  free(inside);
  free(beta);
  dpo_st_close(&st);
  return test_finish();
}
