/* Held-out implicit accuracy: does the tuned policy prefer the winners of
 * pairs it never saw, relative to the reference? For each pair, the winner
 * and the loser are noised with the same n_draws (timestep, noise) draws
 * (Philox at seed); the pair counts as right when the mean over draws of
 * (model_w - model_l) - (ref_w - ref_l) is negative, i.e. inside > 0. */
#include <stdlib.h>
#include <string.h>

#include "trainer/train_internal.h"

static double mse(const float *a, const float *b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) {
    double d = (double)a[i] - b[i];
    s += d * d;
  }
  return s / (double)n;
}

int dpo_train_eval_accuracy(const char *policy_dir, const char *reference_dir, const char *pairs_path,
                            int resolution, int n_draws, uint64_t seed, int threads, double *accuracy,
                            dpo_error *err) {
  dpo_pairs pairs;
  dpo_pipeline ref, pol;
  memset(&ref, 0, sizeof ref);
  memset(&pol, 0, sizeof pol);
  dpo_pairs_options po = {DPO_TIES_SKIP, NULL, 1};
  int rc = dpo_pairs_load(pairs_path, &po, &pairs, err);
  if (rc != DPO_OK) return rc;
  kn_ctx ctx;
  int ctx_ok = 0;
  train_data data;
  memset(&data, 0, sizeof data);
  dpo_scheduler sched;
  memset(&sched, 0, sizeof sched);
  float *x0 = NULL, *noise = NULL, *noisy = NULL, *text = NULL, *times = NULL, *target = NULL;
  double *diff = NULL;
  if ((rc = dpo_pipeline_load(reference_dir, &ref, err)) != DPO_OK) goto done;
  if ((rc = dpo_pipeline_load(policy_dir, &pol, err)) != DPO_OK) goto done;
  if ((rc = kn_ctx_init(&ctx, threads, err)) != DPO_OK) goto done;
  ctx_ok = 1;
  if ((rc = train_data_init(&data, &pairs, &ref, &ctx, resolution, 0, 0, 0, seed, err)) != DPO_OK) goto done;
  dpo_scheduler_config cfg = ref.scheduler;
  if (cfg.kind != DPO_SCHED_DDPM) dpo_scheduler_config_set_kind(&cfg, DPO_SCHED_DDPM);
  if ((rc = dpo_scheduler_init(&sched, &cfg, err)) != DPO_OK) goto done;
  int hw = data.x0_hw;
  size_t per = (size_t)data.C * hw * hw, per_text = (size_t)data.T * data.D;
  x0 = malloc(sizeof(float) * 2 * per);
  noise = malloc(sizeof(float) * per);
  noisy = malloc(sizeof(float) * 2 * per);
  target = malloc(sizeof(float) * 2 * per);
  text = malloc(sizeof(float) * 2 * per_text);
  times = malloc(sizeof(float) * 2);
  diff = calloc((size_t)pairs.n, sizeof(double));
  if (!x0 || !noise || !noisy || !text || !times || !target || !diff) {
    rc = dpo_fail(err, DPO_ERR_DATA, "out of memory");
    goto done;
  }
  for (int p = 0; p < pairs.n && rc == DPO_OK; p++) {
    for (int side = 0; side < 2 && rc == DPO_OK; side++)
      rc = train_data_x0(&data, p, side, 0, -1, -1, train_data_cache_stream(p, side, 0), x0 + side * per, err);
    const float *hidden;
    int32_t ids[1024];
    const char *caption = pairs.pairs[p].caption;
    if (rc == DPO_OK && data.T <= 1024) rc = train_data_encode_text(&data, &caption, 1, 0, &hidden, ids, err);
    if (rc != DPO_OK) break;
    memcpy(text, hidden, per_text * sizeof(float));
    memcpy(text + per_text, hidden, per_text * sizeof(float));
    if ((rc = dpo_unet_plan(ref.unet, &ctx, 2, hw, hw, data.T, 0, err)) != DPO_OK) break;
    if ((rc = dpo_unet_plan(pol.unet, &ctx, 2, hw, hw, data.T, 0, err)) != DPO_OK) break;
    for (int k = 0; k < n_draws && rc == DPO_OK; k++) {
      dpo_rng rng;
      dpo_rng_init(&rng, seed, dpo_rng_stream_id("eval-draw", (uint64_t)p, (uint64_t)k));
      int t = (int)dpo_rng_next_below(&rng, (uint32_t)sched.num_train_timesteps);
      dpo_rng_normal_fill(seed, dpo_rng_stream_id("eval-noise", (uint64_t)p, (uint64_t)k), 0, noise, per);
      for (int side = 0; side < 2 && rc == DPO_OK; side++) {
        times[side] = (float)t;
        rc = dpo_scheduler_add_noise(&sched, x0 + side * per, noise, (float)t, noisy + side * per, per, err);
        if (rc == DPO_OK && sched.prediction == DPO_PRED_V)
          rc = dpo_scheduler_get_velocity(&sched, x0 + side * per, noise, t, target + side * per, per, err);
        else
          memcpy(target + side * per, noise, per * sizeof(float));
      }
      if (rc != DPO_OK) break;
      const float *r = dpo_unet_forward(ref.unet, &ctx, noisy, times, text);
      double ref_diff = mse(r, target, per) - mse(r + per, target + per, per);
      const float *m = dpo_unet_forward(pol.unet, &ctx, noisy, times, text);
      double model_diff = mse(m, target, per) - mse(m + per, target + per, per);
      diff[p] += model_diff - ref_diff;
    }
  }
  if (rc == DPO_OK) {
    int right = 0;
    for (int p = 0; p < pairs.n; p++) right += diff[p] < 0;
    *accuracy = pairs.n > 0 ? (double)right / pairs.n : 0;
  }
done:
  free(x0);
  free(noise);
  free(noisy);
  free(target);
  free(text);
  free(times);
  free(diff);
  dpo_scheduler_free(&sched);
  train_data_free(&data);
  if (ctx_ok) kn_ctx_free(&ctx);
  dpo_pipeline_free(&pol);
  dpo_pipeline_free(&ref);
  dpo_pairs_free(&pairs);
  return rc;
}
