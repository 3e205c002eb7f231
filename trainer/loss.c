/* The Diffusion-DPO and SFT losses over per-sample MSEs, their gradients
 * with respect to the policy's MSEs, and the per-step statistics. The
 * convention and the tie rule are stated in trainer.h. Arithmetic is double:
 * the inputs are a handful of floats per step, and beta (thousands) times a
 * small difference of MSEs is exactly where float would lose digits. */
#include <math.h>

#include "trainer/trainer.h"

double dpo_logsigmoid(double x) {
  /* log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)): never overflows, and
   * keeps full precision for large negative x where sigmoid underflows. */
  return fmin(x, 0.0) - log1p(exp(-fabs(x)));
}

double dpo_sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + exp(-x));
  double e = exp(x);
  return e / (1.0 + e);
}

static int check_inputs(const float *const *arrays, int n_arrays, const float *label, int n,
                        dpo_error *err) {
  if (n < 1) return dpo_fail(err, DPO_ERR_USAGE, "loss: need at least one pair, got %d", n);
  for (int a = 0; a < n_arrays; a++)
    for (int i = 0; i < n; i++)
      if (!isfinite(arrays[a][i]))
        return dpo_fail(err, DPO_ERR_USAGE, "loss: per-sample MSE %d of pair %d is not finite (%g)", a, i,
                        (double)arrays[a][i]);
  if (label)
    for (int i = 0; i < n; i++)
      if (!(label[i] >= 0.0f && label[i] <= 1.0f))
        return dpo_fail(err, DPO_ERR_USAGE, "loss: label of pair %d is %g, expected a value in [0, 1]", i,
                        (double)label[i]);
  return DPO_OK;
}

static int is_tie(float p) { return p > 0.0f && p < 1.0f; }

int dpo_loss_dpo(const float *model_w, const float *model_l, const float *ref_w, const float *ref_l,
                 const float *label, int n, double beta, float *grad_model_w, float *grad_model_l,
                 dpo_loss_stats *stats, dpo_error *err) {
  const float *arrays[4] = {model_w, model_l, ref_w, ref_l};
  int rc = check_inputs(arrays, 4, label, n, err);
  if (rc != DPO_OK) return rc;
  if (!(beta > 0) || !isfinite(beta)) return dpo_fail(err, DPO_ERR_USAGE, "loss: beta must be > 0, got %g", beta);

  dpo_loss_stats s = {0};
  s.n_pairs = n;
  int n_strict = 0, n_correct = 0;
  for (int i = 0; i < n; i++) {
    double p = label ? label[i] : 1.0;
    double reward_w = -0.5 * beta * ((double)model_w[i] - (double)ref_w[i]);
    double reward_l = -0.5 * beta * ((double)model_l[i] - (double)ref_l[i]);
    /* The official grouping: -0.5 beta (model_diff - ref_diff). */
    double model_diff = (double)model_w[i] - (double)model_l[i];
    double ref_diff = (double)ref_w[i] - (double)ref_l[i];
    double inside = -0.5 * beta * (model_diff - ref_diff);

    /* Soft-label cross-entropy; the (1-p) term vanishes for strict pairs. */
    double loss_i = -p * dpo_logsigmoid(inside);
    if (p < 1.0) loss_i -= (1.0 - p) * dpo_logsigmoid(-inside);
    s.loss += loss_i;

    /* d loss_i / d inside = sigmoid(inside) - p; d inside / d model_w = -beta/2. */
    double dinside = (dpo_sigmoid(inside) - p) / n;
    if (grad_model_w) grad_model_w[i] = (float)(dinside * -0.5 * beta);
    if (grad_model_l) grad_model_l[i] = (float)(dinside * 0.5 * beta);

    if (label && is_tie(label[i])) {
      s.n_ties++;
    } else {
      n_strict++;
      if (inside > 0) n_correct++;
    }
    s.model_mse_w += model_w[i];
    s.model_mse_l += model_l[i];
    s.ref_mse_w += ref_w[i];
    s.ref_mse_l += ref_l[i];
    s.reward_w += reward_w;
    s.reward_l += reward_l;
    s.reward_margin += inside;
  }
  s.loss /= n;
  s.model_mse_w /= n;
  s.model_mse_l /= n;
  s.ref_mse_w /= n;
  s.ref_mse_l /= n;
  s.reward_w /= n;
  s.reward_l /= n;
  s.reward_margin /= n;
  s.implicit_acc = n_strict > 0 ? (double)n_correct / n_strict : 0.0;
  if (stats) *stats = s;
  return DPO_OK;
}

int dpo_loss_sft(const float *model_w, const float *model_l, const float *label, int n,
                 float *grad_model_w, float *grad_model_l, dpo_loss_stats *stats, dpo_error *err) {
  const float *arrays[2] = {model_w, model_l};
  int rc = check_inputs(arrays, 2, label, n, err);
  if (rc != DPO_OK) return rc;
  dpo_loss_stats s = {0};
  s.n_pairs = n;
  for (int i = 0; i < n; i++) {
    double p = label ? label[i] : 1.0;
    s.loss += p * model_w[i] + (1.0 - p) * model_l[i];
    if (grad_model_w) grad_model_w[i] = (float)(p / n);
    if (grad_model_l) grad_model_l[i] = (float)((1.0 - p) / n);
    if (label && is_tie(label[i])) s.n_ties++;
    s.model_mse_w += model_w[i];
    s.model_mse_l += model_l[i];
  }
  s.loss /= n;
  s.model_mse_w /= n;
  s.model_mse_l /= n;
  if (stats) *stats = s;
  return DPO_OK;
}

json_t *dpo_loss_stats_json(const dpo_loss_stats *s) {
  json_t *o = json_object();
  json_object_set_new(o, "pairs", json_integer(s->n_pairs));
  json_object_set_new(o, "ties", json_integer(s->n_ties));
  json_object_set_new(o, "loss", json_real(s->loss));
  json_object_set_new(o, "model_mse_w", json_real(s->model_mse_w));
  json_object_set_new(o, "model_mse_l", json_real(s->model_mse_l));
  json_object_set_new(o, "ref_mse_w", json_real(s->ref_mse_w));
  json_object_set_new(o, "ref_mse_l", json_real(s->ref_mse_l));
  /* No strict pair, no accuracy: null rather than a made-up number. */
  if (s->n_pairs > s->n_ties)
    json_object_set_new(o, "implicit_acc", json_real(s->implicit_acc));
  else
    json_object_set_new(o, "implicit_acc", json_null());
  json_object_set_new(o, "reward_w", json_real(s->reward_w));
  json_object_set_new(o, "reward_l", json_real(s->reward_l));
  json_object_set_new(o, "reward_margin", json_real(s->reward_margin));
  return o;
}
