/* Optimizers beyond the golden trajectories: hand-computed first steps, the
 * factored state shapes, save/load round trips that continue bitwise, every
 * refused state file, clipping edge cases, and configuration errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/test.h"
#include "trainer/trainer.h"

typedef struct {
  dpo_optim_param p[3];
  float data[3][24];
  float grad[3][24];
} three_params;

/* A 1-D [5], a 2-D [3, 4] and a 4-D [2, 1, 3, 4] parameter. */
static void three_params_init(three_params *t, float seed) {
  memset(t, 0, sizeof *t);
  const char *names[3] = {"bias", "linear.weight", "conv.weight"};
  int ndims[3] = {1, 2, 4};
  int64_t shapes[3][4] = {{5}, {3, 4}, {2, 1, 3, 4}};
  for (int i = 0; i < 3; i++) {
    t->p[i].name = names[i];
    t->p[i].ndim = ndims[i];
    memcpy(t->p[i].shape, shapes[i], sizeof shapes[i]);
    t->p[i].data = t->data[i];
    t->p[i].grad = t->grad[i];
    for (int j = 0; j < 24; j++) {
      t->data[i][j] = sinf(seed + 0.7f * (float)j + (float)i);
      t->grad[i][j] = cosf(seed * 1.3f + 0.45f * (float)j - (float)i);
    }
  }
}

static void new_grads(three_params *t, int step) {
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 24; j++) t->grad[i][j] = cosf(0.31f * (float)(j * (step + 2)) + (float)i) * (float)(step + 1);
}

static void test_adamw_first_step_by_hand(void) {
  /* At step 1 bias correction makes the update -lr * g / (|g| + eps') = -lr sign(g), after the decay. */
  float data[3] = {1.0f, -2.0f, 0.5f}, grad[3] = {0.3f, -4.0f, 1e-3f};
  dpo_optim_param p = {.name = "w", .ndim = 1, .shape = {3}, .data = data, .grad = grad};
  dpo_optim_config cfg;
  dpo_optim_config_default(&cfg, DPO_OPTIM_ADAMW);
  dpo_optimizer opt;
  dpo_error err;
  CHECK_INT(dpo_optim_init(&opt, &cfg, &p, 1, &err), DPO_OK);
  dpo_optim_step(&opt, 0.1);
  CHECK_NEAR(data[0], 1.0 * (1 - 0.1 * 0.01) - 0.1, 1e-6);
  CHECK_NEAR(data[1], -2.0 * (1 - 0.1 * 0.01) + 0.1, 1e-6);
  CHECK_NEAR(data[2], 0.5 * (1 - 0.1 * 0.01) - 0.1 * 1e-3 / (1e-3 + 1e-8), 1e-6);
  CHECK_NEAR(opt.slots[0].exp_avg[1], 0.1 * -4.0, 1e-6);
  CHECK_NEAR(opt.slots[0].exp_avg_sq[1], 0.001 * 16.0, 1e-7);
  dpo_optim_free(&opt);
}

static void test_adafactor_shapes_and_first_step(void) {
  three_params t;
  three_params_init(&t, 0.2f);
  dpo_optim_config cfg;
  dpo_optim_config_default(&cfg, DPO_OPTIM_ADAFACTOR);
  dpo_optimizer opt;
  dpo_error err;
  CHECK_INT(dpo_optim_init(&opt, &cfg, t.p, 3, &err), DPO_OK);
  /* 1-D: a full second moment; 2-D and 4-D: factored rows and columns, no first moment. */
  CHECK(opt.slots[0].exp_avg_sq && !opt.slots[0].exp_avg_sq_row && !opt.slots[0].exp_avg);
  CHECK(!opt.slots[1].exp_avg_sq && opt.slots[1].exp_avg_sq_row && opt.slots[1].exp_avg_sq_col);
  CHECK(!opt.slots[2].exp_avg_sq && opt.slots[2].exp_avg_sq_row && opt.slots[2].exp_avg_sq_col);
  float before[24], g[24];
  memcpy(before, t.data[0], sizeof before);
  memcpy(g, t.grad[0], sizeof g);
  dpo_optim_step(&opt, 0.01);
  /* Step 1 on the 1-D parameter: beta2_t = 0, v = g^2 + eps1, u = sign(g),
   * RMS(u) = 1 = clip threshold, so p -= lr sign(g). */
  for (int j = 0; j < 5; j++) CHECK_NEAR(t.data[0][j], before[j] - 0.01 * (g[j] > 0 ? 1 : -1), 1e-6);
  /* Row state of the 4-D parameter [2, 1, 3, 4]: mean over the last dim of g^2. */
  float gc[24];
  three_params fresh;
  three_params_init(&fresh, 0.2f);
  memcpy(gc, fresh.grad[2], sizeof gc);
  for (int r = 0; r < 6; r++) {
    double want = 0;
    for (int k = 0; k < 4; k++) want += gc[r * 4 + k] * gc[r * 4 + k] / 4.0;
    CHECK_NEAR(opt.slots[2].exp_avg_sq_row[r], want, 1e-6);
  }
  /* Column state: for each of the 2 leading slices, the mean over the 3 rows. */
  for (int o = 0; o < 2; o++)
    for (int k = 0; k < 4; k++) {
      double want = 0;
      for (int r = 0; r < 3; r++) want += gc[o * 12 + r * 4 + k] * gc[o * 12 + r * 4 + k] / 3.0;
      CHECK_NEAR(opt.slots[2].exp_avg_sq_col[o * 4 + k], want, 1e-6);
    }
  dpo_optim_free(&opt);
}

/* Training k steps, saving, loading into a fresh optimizer and going on must
 * give the same bits as never stopping. */
static void check_resume_bitwise(dpo_optim_kind kind, double beta1) {
  three_params a, b;
  three_params_init(&a, 0.5f);
  three_params_init(&b, 0.5f);
  dpo_optim_config cfg;
  dpo_optim_config_default(&cfg, kind);
  if (kind == DPO_OPTIM_ADAFACTOR) cfg.adafactor_beta1 = beta1;
  dpo_optimizer oa, ob;
  dpo_error err;
  CHECK_INT(dpo_optim_init(&oa, &cfg, a.p, 3, &err), DPO_OK);
  CHECK_INT(dpo_optim_init(&ob, &cfg, b.p, 3, &err), DPO_OK);
  for (int s = 0; s < 3; s++) {
    new_grads(&a, s);
    new_grads(&b, s);
    dpo_optim_step(&oa, 1e-2);
    dpo_optim_step(&ob, 1e-2);
  }
  const char *path = test_path("optimizer.safetensors");
  CHECK_INT(dpo_optim_save(&ob, path, &err), DPO_OK);
  dpo_optim_free(&ob);
  /* A fresh optimizer over the same (already updated) parameters. */
  CHECK_INT(dpo_optim_init(&ob, &cfg, b.p, 3, &err), DPO_OK);
  int rc = dpo_optim_load(&ob, path, &err);
  CHECK_INT(rc, DPO_OK);
  if (rc != DPO_OK) fprintf(stderr, "%s\n", err.msg);
  CHECK_INT(ob.step, 3);
  for (int s = 3; s < 6; s++) {
    new_grads(&a, s);
    new_grads(&b, s);
    dpo_optim_step(&oa, 1e-2);
    dpo_optim_step(&ob, 1e-2);
  }
  CHECK(memcmp(a.data, b.data, sizeof a.data) == 0);
  dpo_optim_free(&oa);
  dpo_optim_free(&ob);
}

static void test_resume_bitwise(void) {
  check_resume_bitwise(DPO_OPTIM_ADAMW, 0);
  check_resume_bitwise(DPO_OPTIM_ADAFACTOR, 0);
  check_resume_bitwise(DPO_OPTIM_ADAFACTOR, 0.9);
}

static void test_refused_state(void) {
  three_params t;
  three_params_init(&t, 1.0f);
  dpo_optim_config adamw, adafactor;
  dpo_optim_config_default(&adamw, DPO_OPTIM_ADAMW);
  dpo_optim_config_default(&adafactor, DPO_OPTIM_ADAFACTOR);
  dpo_optimizer opt;
  dpo_error err;
  const char *path = test_path("state.safetensors");
  CHECK_INT(dpo_optim_init(&opt, &adamw, t.p, 3, &err), DPO_OK);
  dpo_optim_step(&opt, 1e-3);
  CHECK_INT(dpo_optim_save(&opt, path, &err), DPO_OK);
  dpo_optim_free(&opt);

  /* Another optimizer kind. */
  CHECK_INT(dpo_optim_init(&opt, &adafactor, t.p, 3, &err), DPO_OK);
  CHECK_INT(dpo_optim_load(&opt, path, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "'adamw'");
  dpo_optim_free(&opt);
  /* Fewer parameters than the file holds. */
  CHECK_INT(dpo_optim_init(&opt, &adamw, t.p, 2, &err), DPO_OK);
  CHECK_INT(dpo_optim_load(&opt, path, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "expected 4");
  dpo_optim_free(&opt);
  /* A parameter of another shape. */
  t.p[0].shape[0] = 4;
  CHECK_INT(dpo_optim_init(&opt, &adamw, t.p, 3, &err), DPO_OK);
  CHECK_INT(dpo_optim_load(&opt, path, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "bias.exp_avg");
  dpo_optim_free(&opt);
  t.p[0].shape[0] = 5;
  /* A renamed parameter. */
  t.p[1].name = "other.weight";
  CHECK_INT(dpo_optim_init(&opt, &adamw, t.p, 3, &err), DPO_OK);
  CHECK_INT(dpo_optim_load(&opt, path, &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "other.weight.exp_avg is missing");
  dpo_optim_free(&opt);
  t.p[1].name = "linear.weight";
  /* A file without step metadata, and a missing file. */
  dpo_st_writer w;
  dpo_st_writer_init(&w);
  CHECK_INT(dpo_st_writer_meta(&w, "optimizer", "adamw", &err), DPO_OK);
  CHECK_INT(dpo_st_writer_write(&w, test_path("nostep.safetensors"), &err), DPO_OK);
  dpo_st_writer_free(&w);
  CHECK_INT(dpo_optim_init(&opt, &adamw, t.p, 3, &err), DPO_OK);
  CHECK_INT(dpo_optim_load(&opt, test_path("nostep.safetensors"), &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "'step'");
  dpo_st_writer_init(&w);
  CHECK_INT(dpo_st_writer_meta(&w, "optimizer", "adamw", &err), DPO_OK);
  CHECK_INT(dpo_st_writer_meta(&w, "step", "-3", &err), DPO_OK);
  CHECK_INT(dpo_st_writer_write(&w, test_path("badstep.safetensors"), &err), DPO_OK);
  dpo_st_writer_free(&w);
  CHECK_INT(dpo_optim_load(&opt, test_path("badstep.safetensors"), &err), DPO_ERR_DATA);
  CHECK_CONTAINS(err.msg, "expected a count");
  CHECK_INT(dpo_optim_load(&opt, test_path("absent.safetensors"), &err), DPO_ERR_DATA);
  CHECK_INT(opt.step, 0);
  dpo_optim_free(&opt);
}

static void test_clip_edges(void) {
  float g1[2] = {3, 4}, g2[1] = {12}, d[3] = {0};
  dpo_optim_param p[2] = {{.name = "a", .ndim = 1, .shape = {2}, .data = d, .grad = g1},
                    {.name = "b", .ndim = 1, .shape = {1}, .data = d, .grad = g2}};
  /* max_norm <= 0 measures only. */
  CHECK_NEAR(dpo_clip_grad_norm(p, 2, 0), 13, 1e-12);
  CHECK_NEAR(g2[0], 12, 0);
  /* Below the limit nothing changes. */
  CHECK_NEAR(dpo_clip_grad_norm(p, 2, 100), 13, 1e-12);
  CHECK_NEAR(g1[0], 3, 0);
  /* Above: scaled to max_norm (up to torch's 1e-6). */
  CHECK_NEAR(dpo_clip_grad_norm(p, 2, 1.3), 13, 1e-12);
  CHECK_NEAR(g1[1], 0.4, 1e-6);
  CHECK_NEAR(dpo_clip_grad_norm(p, 2, 0), 1.3, 1e-6);
  /* A non-finite gradient shows in the norm, for the caller to act on. */
  g2[0] = INFINITY;
  CHECK(isinf(dpo_clip_grad_norm(p, 2, 1)));
}

static void test_config_errors(void) {
  float d[2] = {0}, g[2] = {0};
  dpo_optim_param p = {.name = "w", .ndim = 1, .shape = {2}, .data = d, .grad = g};
  dpo_optim_config cfg;
  dpo_optimizer opt;
  dpo_error err;
  dpo_optim_config_default(&cfg, DPO_OPTIM_ADAMW);
  cfg.beta2 = 1.0;
  CHECK_INT(dpo_optim_init(&opt, &cfg, &p, 1, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "betas");
  dpo_optim_config_default(&cfg, DPO_OPTIM_ADAFACTOR);
  cfg.clip_threshold = 0;
  CHECK_INT(dpo_optim_init(&opt, &cfg, &p, 1, &err), DPO_ERR_USAGE);
  dpo_optim_config_default(&cfg, DPO_OPTIM_ADAFACTOR);
  cfg.weight_decay = -1;
  CHECK_INT(dpo_optim_init(&opt, &cfg, &p, 1, &err), DPO_ERR_USAGE);
  dpo_optim_config_default(&cfg, DPO_OPTIM_ADAMW);
  CHECK_INT(dpo_optim_init(&opt, &cfg, &p, 0, &err), DPO_ERR_USAGE);
  dpo_optim_param twice[2] = {p, p};
  CHECK_INT(dpo_optim_init(&opt, &cfg, twice, 2, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "twice");
  p.shape[0] = 0;
  CHECK_INT(dpo_optim_init(&opt, &cfg, &p, 1, &err), DPO_ERR_USAGE);
  dpo_optim_kind kind;
  CHECK_INT(dpo_optim_kind_parse("adafactor", &kind, &err), DPO_OK);
  CHECK_INT(kind, DPO_OPTIM_ADAFACTOR);
  CHECK_INT(dpo_optim_kind_parse("sgd", &kind, &err), DPO_ERR_USAGE);
  CHECK_CONTAINS(err.msg, "sgd");
  CHECK_STR(dpo_optim_kind_name(DPO_OPTIM_ADAMW), "adamw");
}

int main(void) {
  test_adamw_first_step_by_hand();
  test_adafactor_shapes_and_first_step();
  test_resume_bitwise();
  test_refused_state();
  test_clip_edges();
  test_config_errors();
  return test_finish();
}
