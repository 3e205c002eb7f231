/* trainer/ against PyTorch and transformers: the expected values come from
 * tests/fixtures/make_trainer_fixtures.py (torch 2.15.0, transformers
 * 5.23.0) in the JSON files of tests/fixtures/trainer.
 *
 * Tolerances. The loss is computed in double from float32 MSEs, as the
 * fixture's float64 autograd does: 1e-12 relative. Gradients are returned as
 * float: 1e-6 relative. Optimizer trajectories are float32 in both, with the
 * same operation order but different summation orders in the means and norms:
 * 1e-5 relative plus 1e-7 absolute after six steps (moments: plus 1e-6 of
 * the array's largest element). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/test.h"
#include "trainer/trainer.h"

static int compared = 0;
static double worst_optim = 0;

static void check_close(double got, double want, double rel, double abs_tol, const char *what, int c, int i) {
  compared++;
  double scale = fmax(fabs(got), fabs(want));
  if (!(fabs(got - want) <= rel * scale + abs_tol))
    test_fail(__FILE__, __LINE__, "%s (case %d, index %d): got %.9g, expected %.9g", what, c, i, got, want);
}

static json_t *load_fixture(const char *name) {
  char rel[256];
  snprintf(rel, sizeof rel, "tests/fixtures/trainer/%s", name);
  dpo_error err = {0};
  json_t *root = dpo_json_load_file(test_source_path(rel), 64u << 20, &err);
  if (!root) test_fail(__FILE__, __LINE__, "cannot load %s: %s", rel, err.msg);
  return root;
}

static float *floats_of(const json_t *arr, int *n) {
  *n = (int)json_array_size(arr);
  float *out = malloc(sizeof(float) * (size_t)(*n > 0 ? *n : 1));
  for (int i = 0; i < *n; i++) out[i] = (float)json_number_value(json_array_get(arr, (size_t)i));
  return out;
}

static void check_floats(const float *got, const json_t *want, double rel, double abs_tol, const char *what, int c) {
  for (size_t i = 0; i < json_array_size(want); i++) {
    double w = json_number_value(json_array_get(want, i));
    double scale = fmax(fabs(w), 1e-30);
    double d = fabs(got[i] - w) / scale;
    if (fabs(got[i] - w) > abs_tol && d > worst_optim) worst_optim = d;
    check_close(got[i], w, rel, abs_tol, what, c, (int)i);
  }
}

/* ------------------------------------------------------------------- loss */

static void test_loss(void) {
  json_t *root = load_fixture("loss.json");
  if (!root) return;
  json_t *cases = json_object_get(root, "cases");
  CHECK(json_array_size(cases) >= 9);
  size_t ci;
  json_t *c;
  json_array_foreach(cases, ci, c) {
    int n, n2;
    float *mw = floats_of(json_object_get(c, "model_w"), &n);
    float *ml = floats_of(json_object_get(c, "model_l"), &n2);
    float *rw = floats_of(json_object_get(c, "ref_w"), &n2);
    float *rl = floats_of(json_object_get(c, "ref_l"), &n2);
    float *label = floats_of(json_object_get(c, "label"), &n2);
    float *gw = calloc((size_t)n, sizeof(float)), *gl = calloc((size_t)n, sizeof(float));
    double beta = json_number_value(json_object_get(c, "beta"));
    dpo_loss_stats s;
    dpo_error err = {0};
    int rc = dpo_loss_dpo(mw, ml, rw, rl, label, n, beta, gw, gl, &s, &err);
    CHECK_INT(rc, DPO_OK);
    check_close(s.loss, json_number_value(json_object_get(c, "loss")), 1e-12, 0, "dpo loss", (int)ci, 0);
    check_close(s.implicit_acc, json_number_value(json_object_get(c, "implicit_acc")), 1e-6, 0, "implicit acc", (int)ci, 0);
    check_close(s.reward_margin, json_number_value(json_object_get(c, "reward_margin")), 1e-9, 1e-12, "reward margin",
                (int)ci, 0);
    check_close(s.reward_w - s.reward_l, s.reward_margin, 1e-9, 1e-12, "r_w - r_l = margin", (int)ci, 0);
    check_floats(gw, json_object_get(c, "grad_model_w"), 1e-6, 0, "d loss / d model_w", (int)ci);
    check_floats(gl, json_object_get(c, "grad_model_l"), 1e-6, 0, "d loss / d model_l", (int)ci);

    rc = dpo_loss_sft(mw, ml, label, n, gw, gl, &s, &err);
    CHECK_INT(rc, DPO_OK);
    check_close(s.loss, json_number_value(json_object_get(c, "sft_loss")), 1e-12, 0, "sft loss", (int)ci, 0);
    check_floats(gw, json_object_get(c, "sft_grad_w"), 1e-7, 0, "sft d loss / d model_w", (int)ci);
    check_floats(gl, json_object_get(c, "sft_grad_l"), 1e-7, 0, "sft d loss / d model_l", (int)ci);
    free(mw); free(ml); free(rw); free(rl); free(label); free(gw); free(gl);
  }
  json_decref(root);
}

/* ------------------------------------------------------------- optimizers */

typedef struct {
  int n;
  dpo_optim_param params[8];
  char names[8][16];
  float *data[8];
  float *grad[8];
} param_set;

static void param_set_init(param_set *ps, const json_t *shapes, const json_t *init) {
  memset(ps, 0, sizeof *ps);
  ps->n = (int)json_array_size(shapes);
  for (int i = 0; i < ps->n; i++) {
    const json_t *shape = json_array_get(shapes, (size_t)i);
    dpo_optim_param *p = &ps->params[i];
    snprintf(ps->names[i], sizeof ps->names[i], "p%d.weight", i);
    p->name = ps->names[i];
    p->ndim = (int)json_array_size(shape);
    for (int d = 0; d < p->ndim; d++) p->shape[d] = json_integer_value(json_array_get(shape, (size_t)d));
    int n;
    ps->data[i] = floats_of(json_array_get(init, (size_t)i), &n);
    CHECK_INT(n, dpo_optim_param_numel(p));
    ps->grad[i] = calloc((size_t)n, sizeof(float));
    p->data = ps->data[i];
    p->grad = ps->grad[i];
  }
}

static void param_set_free(param_set *ps) {
  for (int i = 0; i < ps->n; i++) {
    free(ps->data[i]);
    free(ps->grad[i]);
  }
}

static void set_grads(param_set *ps, const json_t *grads) {
  for (int i = 0; i < ps->n; i++) {
    const json_t *g = json_array_get(grads, (size_t)i);
    for (size_t j = 0; j < json_array_size(g); j++) ps->grad[i][j] = (float)json_number_value(json_array_get(g, j));
  }
}

static void config_for(const char *name, dpo_optim_config *cfg) {
  if (strncmp(name, "adamw", 5) == 0) {
    dpo_optim_config_default(cfg, DPO_OPTIM_ADAMW);
    if (strstr(name, "betas 0.8 0.95")) {
      cfg->beta1 = 0.8;
      cfg->beta2 = 0.95;
      cfg->eps = 1e-6;
      cfg->weight_decay = 0.1;
    }
  } else {
    dpo_optim_config_default(cfg, DPO_OPTIM_ADAFACTOR);
    if (strstr(name, "beta1 0.9")) {
      cfg->weight_decay = 0.01;
      cfg->adafactor_beta1 = 0.9;
      cfg->clip_threshold = 0.5;
    }
  }
}

static void check_state(const dpo_optimizer *opt, const json_t *final_state, int c) {
  for (int i = 0; i < opt->n_params; i++) {
    const json_t *st = json_array_get(final_state, (size_t)i);
    const dpo_optim_slot *s = &opt->slots[i];
    const char *keys[4] = {"exp_avg", "exp_avg_sq", "exp_avg_sq_row", "exp_avg_sq_col"};
    const float *mine[4] = {s->exp_avg, s->exp_avg_sq, s->exp_avg_sq_row, s->exp_avg_sq_col};
    for (int k = 0; k < 4; k++) {
      const json_t *want = json_object_get(st, keys[k]);
      if ((want != NULL) != (mine[k] != NULL)) {
        test_fail(__FILE__, __LINE__, "case %d param %d: state %s present %d, expected %d", c, i, keys[k],
                  mine[k] != NULL, want != NULL);
        continue;
      }
      /* Moments near zero (a first moment whose sign flips) carry the
       * rounding of the whole array's scale, so the absolute part of the
       * tolerance follows the largest element. */
      double largest = 0;
      for (size_t j = 0; want && j < json_array_size(want); j++)
        largest = fmax(largest, fabs(json_number_value(json_array_get(want, j))));
      if (want) check_floats(mine[k], want, 1e-5, 1e-6 * largest, keys[k], c);
    }
  }
}

static void run_optimizer_fixture(const char *file, const json_t *shapes_override) {
  json_t *root = load_fixture(file);
  if (!root) return;
  const json_t *shapes = shapes_override ? shapes_override : json_object_get(json_object_get(root, "meta"), "shapes");
  json_t *cases = json_object_get(root, "cases");
  CHECK(json_array_size(cases) >= 2);
  size_t ci;
  json_t *c;
  json_array_foreach(cases, ci, c) {
    const char *name = json_string_value(json_object_get(c, "name"));
    param_set ps;
    param_set_init(&ps, shapes, json_object_get(c, "init"));
    dpo_optim_config cfg;
    config_for(name, &cfg);
    dpo_optimizer opt;
    dpo_error err = {0};
    CHECK_INT(dpo_optim_init(&opt, &cfg, ps.params, ps.n, &err), DPO_OK);
    const json_t *lrs = json_object_get(c, "lrs");
    const json_t *grads = json_object_get(c, "grads");
    const json_t *traj = json_object_get(c, "params_after_step");
    for (size_t step = 0; step < json_array_size(lrs); step++) {
      set_grads(&ps, json_array_get(grads, step));
      dpo_optim_step(&opt, json_number_value(json_array_get(lrs, step)));
      for (int i = 0; i < ps.n; i++)
        check_floats(ps.data[i], json_array_get(json_array_get(traj, step), (size_t)i), 1e-5, 1e-7, name, (int)ci);
    }
    CHECK_INT(opt.step, json_array_size(lrs));
    check_state(&opt, json_object_get(c, "final_state"), (int)ci);
    dpo_optim_free(&opt);
    param_set_free(&ps);
  }
  json_decref(root);
}

static void test_clip(void) {
  json_t *root = load_fixture("clip.json");
  if (!root) return;
  const json_t *shapes = json_object_get(json_object_get(root, "meta"), "shapes");
  size_t ci;
  json_t *c;
  int clipped_some = 0;
  json_array_foreach(json_object_get(root, "cases"), ci, c) {
    param_set ps;
    param_set_init(&ps, shapes, json_object_get(c, "grads"));   /* data unused here */
    set_grads(&ps, json_object_get(c, "grads"));
    double max_norm = json_number_value(json_object_get(c, "max_norm"));
    double norm = dpo_clip_grad_norm(ps.params, ps.n, max_norm);
    double want = json_number_value(json_object_get(c, "total_norm"));
    check_close(norm, want, 1e-6, 0, "total grad norm", (int)ci, 0);
    if (want > max_norm) clipped_some = 1;
    for (int i = 0; i < ps.n; i++)
      check_floats(ps.grad[i], json_array_get(json_object_get(c, "clipped"), (size_t)i), 1e-6, 1e-9, "clipped grad",
                   (int)ci);
    param_set_free(&ps);
  }
  CHECK(clipped_some);
  json_decref(root);
}

int main(void) {
  test_loss();
  run_optimizer_fixture("adamw.json", NULL);
  run_optimizer_fixture("adafactor.json", NULL);
  test_clip();
  printf("compared %d values; worst optimizer relative error %.3g\n", compared, worst_optim);
  CHECK(compared > 3000);
  return test_finish();
}
