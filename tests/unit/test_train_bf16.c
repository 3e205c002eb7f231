/* dpo train --precision bf16 on the CPU (the bf16 reference emulation): a
 * tiny DPO run in bf16 follows the float32 run closely but not bit for bit
 * (the policy and the frozen reference really computed in bf16); the saved
 * pipeline holds float32 masters that load back; and the resident (device)
 * step path gives the host path's result in bf16 too.
 *
 * Tolerances, after 4 steps from the same weights: the last step's MSEs
 * within 5e-2 relative (bf16 moves each by ~1e-2); its DPO loss within 0.15
 * relative (a log-sigmoid of beta x a difference of MSEs, which beta
 * amplifies); the two runs' weight updates (trained - base, all parameters)
 * with a cosine >= 0.9 (Adam normalises each update to about lr, so bf16
 * noise in a small gradient can flip its sign; the bulk agrees). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/models.h"
#include "tests/test.h"
#include "tests/train_fixture.h"

static void options(dpo_train_options *o, const char *base, const char *pairs, const char *out) {
  dpo_train_options_default(o);
  o->base_dir = base;
  o->pairs_path = pairs;
  o->out_dir = out;
  o->resolution = 16;
  o->lr = 1e-3;
  o->warmup_steps = 0;
  o->max_steps = 4;
  o->batch_size = 2;
  o->grad_accum = 1;
  o->checkpoint_every = 0;
  o->threads = 1;
  o->seed = 5;
  o->beta = 50;   /* the default 5000 saturates this tiny run's loss at 0 */
}

static dpo_unet *load_unet(const char *dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/unet", dir);
  dpo_unet *u = NULL;
  dpo_error err = {0};
  if (dpo_unet_load(path, &u, &err) != DPO_OK) test_fail(__FILE__, __LINE__, "%s", err.msg);
  return u;
}

/* The cosine of the two runs' updates (trained - base) over all parameters. */
static double update_cosine(const char *base, const char *a, const char *b) {
  dpo_unet *u0 = load_unet(base), *ua = load_unet(a), *ub = load_unet(b);
  double ab = 0, aa = 0, bb = 0;
  if (u0 && ua && ub) {
    for (int i = 0; i < dpo_unet_n_params(u0); i++) {
      dpo_param p0, pa, pb;
      dpo_unet_param(u0, i, &p0);
      dpo_unet_param(ua, i, &pa);
      dpo_unet_param(ub, i, &pb);
      for (size_t j = 0; j < p0.numel; j++) {
        double da = (double)pa.data[j] - p0.data[j], db = (double)pb.data[j] - p0.data[j];
        ab += da * db;
        aa += da * da;
        bb += db * db;
      }
    }
  }
  dpo_unet_free(u0);
  dpo_unet_free(ua);
  dpo_unet_free(ub);
  return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0.0;
}

static int same_unet(const char *a, const char *b) {
  dpo_unet *ua = load_unet(a), *ub = load_unet(b);
  int same = ua && ub;
  for (int i = 0; same && i < dpo_unet_n_params(ua); i++) {
    dpo_param pa, pb;
    dpo_unet_param(ua, i, &pa);
    dpo_unet_param(ub, i, &pb);
    same = memcmp(pa.data, pb.data, pa.numel * sizeof(float)) == 0;
  }
  dpo_unet_free(ua);
  dpo_unet_free(ub);
  return same;
}

int main(void) {
  char base[1024], data[1024], pairs[1100];
  snprintf(base, sizeof base, "%s", test_path("base"));
  snprintf(data, sizeof data, "%s", test_path("data"));
  snprintf(pairs, sizeof pairs, "%s/pairs.jsonl", data);
  CHECK_INT(tf_make_pipeline(base, 0, 1), 0);
  CHECK_INT(tf_make_pairs(data, 6, 3, 60, 16), 0);
  const char *f32 = test_path("f32"), *bf = test_path("bf16"), *res_bf = test_path("bf16_resident");
  dpo_train_options o;
  dpo_train_result rf, rb, rr;
  dpo_error err = {0};

  options(&o, base, pairs, f32);
  CHECK_INT(dpo_train(&o, &rf, &err), DPO_OK);
  options(&o, base, pairs, bf);
  o.precision = KN_BF16;
  if (dpo_train(&o, &rb, &err) != DPO_OK) test_fail(__FILE__, __LINE__, "%s", err.msg);
  options(&o, base, pairs, res_bf);
  o.precision = KN_BF16;
  o.resident_step = 1;
  if (dpo_train(&o, &rr, &err) != DPO_OK) test_fail(__FILE__, __LINE__, "%s", err.msg);

  printf("last step: float32 loss %.6g (mse_w %.6f), bf16 %.6g (mse_w %.6f), bf16 resident %.6g\n", rf.last.loss,
         rf.last.model_mse_w, rb.last.loss, rb.last.model_mse_w, rr.last.loss);
  CHECK_INT(rb.steps_done, 4);
  CHECK(fabs(rb.last.model_mse_w - rf.last.model_mse_w) <= 5e-2 * rf.last.model_mse_w);
  CHECK(fabs(rb.last.ref_mse_w - rf.last.ref_mse_w) <= 5e-2 * rf.last.ref_mse_w);
  CHECK(fabs(rb.last.loss - rf.last.loss) <= 0.15 * fabs(rf.last.loss));
  CHECK(rb.last.model_mse_w != rf.last.model_mse_w);   /* it did run in bf16 */
  /* The device path in bf16 (loss gradient, clipping and optimizer through
   * the kernel ops) is the host path's arithmetic. */
  CHECK(fabs(rr.last.loss - rb.last.loss) <= 1e-4 * fabs(rb.last.loss));
  double cs = update_cosine(base, f32, bf);
  printf("cosine of the bf16 and float32 runs' weight updates: %.4f\n", cs);
  CHECK(cs >= 0.9);
  /* The saved masters are float32 and differ from float32 training's. */
  CHECK(!same_unet(f32, bf));
  return test_finish();
}
