/* The DPO and SFT losses: finite-difference gradients, numerical stability,
 * the tie rule, accuracy counting, the stats JSON, and every refused input.
 * (The values against PyTorch are in tests/golden/test_trainer_golden.c.) */
#include <math.h>
#include <string.h>

#include "tests/test.h"
#include "trainer/trainer.h"

static double loss_at(const float *mw, const float *ml, const float *rw, const float *rl, const float *label, int n,
                      double beta) {
  dpo_loss_stats s;
  dpo_error err;
  if (dpo_loss_dpo(mw, ml, rw, rl, label, n, beta, NULL, NULL, &s, &err) != DPO_OK) return NAN;
  return s.loss;
}

/* Central differences in double on the loss, perturbing one float MSE by h
 * (exactly representable steps around values near 0.1). */
static void test_finite_differences(void) {
  float mw[5] = {0.1001f, 0.0998f, 0.1203f, 0.0871f, 0.1500f};
  float ml[5] = {0.1000f, 0.1002f, 0.1199f, 0.0880f, 0.1490f};
  float rw[5] = {0.1000f, 0.1000f, 0.1200f, 0.0875f, 0.1495f};
  float rl[5] = {0.1000f, 0.1000f, 0.1200f, 0.0875f, 0.1495f};
  float label[5] = {1, 1, 0.5f, 1, 0.5f};
  float gw[5], gl[5];
  const double betas[3] = {1.0, 2000.0, 5000.0};
  for (int b = 0; b < 3; b++) {
    double beta = betas[b];
    dpo_loss_stats s;
    dpo_error err;
    CHECK_INT(dpo_loss_dpo(mw, ml, rw, rl, label, 5, beta, gw, gl, &s, &err), DPO_OK);
    for (int i = 0; i < 5; i++) {
      for (int side = 0; side < 2; side++) {
        float *x = side == 0 ? mw : ml;
        float saved = x[i];
        float h = 1.0f / 65536.0f / (float)(beta > 100 ? 64 : 1);
        x[i] = saved + h;
        double up = loss_at(mw, ml, rw, rl, label, 5, beta);
        x[i] = saved - h;
        double down = loss_at(mw, ml, rw, rl, label, 5, beta);
        double plus = (double)(saved + h) - saved, minus = saved - (double)(saved - h);
        x[i] = saved;
        double numeric = (up - down) / (plus + minus);
        double analytic = side == 0 ? gw[i] : gl[i];
        CHECK_NEAR(analytic, numeric, 1e-3 * fabs(numeric) + 1e-6);
      }
    }
  }
}

static void test_sft_finite_differences(void) {
  float mw[3] = {0.25f, 0.5f, 0.125f}, ml[3] = {0.5f, 0.25f, 0.75f}, label[3] = {1, 0.5f, 1};
  float gw[3], gl[3];
  dpo_loss_stats s;
  dpo_error err;
  CHECK_INT(dpo_loss_sft(mw, ml, label, 3, gw, gl, &s, &err), DPO_OK);
  /* Linear, so the analytic value is exact: (0.25 + 0.5*0.5 + 0.5*0.25 + 0.125) / 3. */
  CHECK_NEAR(s.loss, (0.25 + 0.25 + 0.125 + 0.125) / 3.0, 1e-15);
  CHECK_NEAR(gw[0], 1.0 / 3, 1e-7);
  CHECK_NEAR(gw[1], 0.5 / 3, 1e-7);
  CHECK_NEAR(gl[0], 0.0, 0);
  CHECK_NEAR(gl[1], 0.5 / 3, 1e-7);
  CHECK_INT(s.n_ties, 1);
  CHECK_NEAR(s.model_mse_w, (0.25 + 0.5 + 0.125) / 3, 1e-12);
  /* Without labels: the official --sft, the mean MSE of the winners. */
  CHECK_INT(dpo_loss_sft(mw, ml, NULL, 3, gw, NULL, &s, &err), DPO_OK);
  CHECK_NEAR(s.loss, (0.25 + 0.5 + 0.125) / 3, 1e-15);
}

static void test_logsigmoid_stability(void) {
  CHECK_NEAR(dpo_logsigmoid(0), -log(2.0), 1e-15);
  CHECK_NEAR(dpo_logsigmoid(-1000), -1000, 1e-12);   /* naive log(1/(1+e^1000)) is -inf */
  CHECK_NEAR(dpo_logsigmoid(1000), 0, 1e-300);
  CHECK_NEAR(dpo_logsigmoid(40), -exp(-40.0), 1e-30); /* naive log(sigmoid) rounds this to 0 */
  CHECK_NEAR(dpo_sigmoid(-1000), 0, 1e-300);
  CHECK_NEAR(dpo_sigmoid(1000), 1, 0);
  CHECK_NEAR(dpo_sigmoid(2) + dpo_sigmoid(-2), 1, 1e-15);

  /* A huge inside: finite loss and gradient at the clamp, -0.5 beta / n. */
  float mw[1] = {1.0f}, ml[1] = {0.0f}, rw[1] = {0.0f}, rl[1] = {0.0f}, gw[1], gl[1];
  dpo_loss_stats s;
  dpo_error err;
  CHECK_INT(dpo_loss_dpo(mw, ml, rw, rl, NULL, 1, 5000, gw, gl, &s, &err), DPO_OK);
  CHECK_NEAR(s.loss, 2500, 1e-9);
  CHECK_NEAR(gw[0], 2500, 1e-3);
  CHECK_NEAR(gl[0], -2500, 1e-3);
  CHECK_NEAR(s.implicit_acc, 0, 0);
}

static void test_accuracy_and_ties(void) {
  /* inside > 0, < 0, == 0 (a tie of rewards counts as wrong), and a tie label. */
  float mw[4] = {0.1f, 0.3f, 0.2f, 0.1f}, ml[4] = {0.3f, 0.1f, 0.2f, 0.3f};
  float rw[4] = {0.2f, 0.2f, 0.2f, 0.2f}, rl[4] = {0.2f, 0.2f, 0.2f, 0.2f};
  float label[4] = {1, 1, 1, 0.5f};
  dpo_loss_stats s;
  dpo_error err;
  CHECK_INT(dpo_loss_dpo(mw, ml, rw, rl, label, 4, 10, NULL, NULL, &s, &err), DPO_OK);
  CHECK_NEAR(s.implicit_acc, 1.0 / 3, 1e-15);   /* the tie pair is not counted */
  CHECK_INT(s.n_ties, 1);
  CHECK_INT(s.n_pairs, 4);
  /* A tie pair's loss is the mean over both orderings: swapping its images changes nothing. */
  float gw[1], gl[1], gw2[1], gl2[1];
  float a = 0.1f, b = 0.3f, r = 0.2f, half = 0.5f;
  dpo_loss_stats s1, s2;
  CHECK_INT(dpo_loss_dpo(&a, &b, &r, &r, &half, 1, 10, gw, gl, &s1, &err), DPO_OK);
  CHECK_INT(dpo_loss_dpo(&b, &a, &r, &r, &half, 1, 10, gw2, gl2, &s2, &err), DPO_OK);
  CHECK_NEAR(s1.loss, s2.loss, 1e-15);
  CHECK_NEAR(gw[0], gl2[0], 1e-9);
  /* ... equals the average of the strict losses of both orderings ... */
  dpo_loss_stats sa, sb;
  CHECK_INT(dpo_loss_dpo(&a, &b, &r, &r, NULL, 1, 10, NULL, NULL, &sa, &err), DPO_OK);
  CHECK_INT(dpo_loss_dpo(&b, &a, &r, &r, NULL, 1, 10, NULL, NULL, &sb, &err), DPO_OK);
  CHECK_NEAR(s1.loss, 0.5 * (sa.loss + sb.loss), 1e-12);
  /* ... and its gradient vanishes where the policy has no preference. */
  CHECK_INT(dpo_loss_dpo(&a, &a, &r, &r, &half, 1, 10, gw, gl, &s1, &err), DPO_OK);
  CHECK_NEAR(gw[0], 0, 1e-12);
  CHECK_NEAR(s1.loss, log(2.0), 1e-15);
  /* Rewards: r_w - r_l is the margin, and each is -0.5 beta (model - ref). */
  CHECK_INT(dpo_loss_dpo(mw, ml, rw, rl, NULL, 1, 10, NULL, NULL, &s, &err), DPO_OK);
  CHECK_NEAR(s.reward_w, -5 * (0.1 - 0.2), 1e-6);
  CHECK_NEAR(s.reward_l, -5 * (0.3 - 0.2), 1e-6);
  CHECK_NEAR(s.reward_margin, s.reward_w - s.reward_l, 1e-12);
  CHECK_NEAR(s.implicit_acc, 1, 0);
}

static void test_stats_json(void) {
  float mw[2] = {0.1f, 0.1f}, ml[2] = {0.2f, 0.2f}, rw[2] = {0.15f, 0.15f}, rl[2] = {0.15f, 0.15f};
  float ties[2] = {0.5f, 0.5f};
  dpo_loss_stats s;
  dpo_error err;
  CHECK_INT(dpo_loss_dpo(mw, ml, rw, rl, NULL, 2, 100, NULL, NULL, &s, &err), DPO_OK);
  json_t *o = dpo_loss_stats_json(&s);
  const char *keys[] = {"loss", "model_mse_w", "model_mse_l", "ref_mse_w", "ref_mse_l", "implicit_acc",
                        "reward_w", "reward_l", "reward_margin", "pairs", "ties"};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) CHECK(json_object_get(o, keys[i]) != NULL);
  CHECK_NEAR(json_real_value(json_object_get(o, "model_mse_l")), 0.2, 1e-7);
  CHECK_NEAR(json_real_value(json_object_get(o, "implicit_acc")), 1.0, 0);
  json_decref(o);
  /* Only ties: no accuracy to report, written as null. */
  CHECK_INT(dpo_loss_dpo(mw, ml, rw, rl, ties, 2, 100, NULL, NULL, &s, &err), DPO_OK);
  o = dpo_loss_stats_json(&s);
  CHECK(json_is_null(json_object_get(o, "implicit_acc")));
  json_decref(o);
}

static void test_refused_inputs(void) {
  float ok[2] = {0.1f, 0.2f}, bad[2] = {0.1f, NAN}, label[2] = {1, 1.5f};
  dpo_loss_stats s;
  dpo_error err;
  CHECK_INT(dpo_loss_dpo(ok, ok, ok, ok, NULL, 0, 10, NULL, NULL, &s, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "at least one pair");
  CHECK_INT(dpo_loss_dpo(ok, ok, ok, ok, NULL, 2, 0, NULL, NULL, &s, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "beta");
  CHECK_INT(dpo_loss_dpo(ok, ok, ok, ok, NULL, 2, NAN, NULL, NULL, &s, &err), DPO_ERR_USAGE);
  CHECK_INT(dpo_loss_dpo(ok, ok, bad, ok, NULL, 2, 10, NULL, NULL, &s, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "pair 1 is not finite");
  CHECK_INT(dpo_loss_dpo(ok, ok, ok, ok, label, 2, 10, NULL, NULL, &s, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "label of pair 1");
  CHECK_INT(dpo_loss_sft(bad, ok, NULL, 2, NULL, NULL, &s, &err), DPO_ERR_USAGE);
  CHECK_INT(dpo_loss_sft(ok, ok, label, 2, NULL, NULL, &s, &err), DPO_ERR_USAGE);
  CHECK_INT(dpo_loss_sft(ok, ok, NULL, -1, NULL, NULL, &s, &err), DPO_ERR_USAGE);
  CHECK(strstr(DPO_BETA_CONVENTION, "-0.5 * beta") != NULL);
}

int main(void) {
  test_finite_differences();
  test_sft_finite_differences();
  test_logsigmoid_stability();
  test_accuracy_and_ties();
  test_stats_json();
  test_refused_inputs();
  return test_finish();
}
