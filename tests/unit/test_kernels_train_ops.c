/* The training step's kernel ops on the CPU (kernels.h, "training step"):
 * kn_dpo_loss, kn_sum_squares, kn_clip_coefficient, kn_scale_by,
 * kn_adamw_update and kn_adafactor_update, against the trainer's host code
 * that they mirror (trainer/loss.c, trainer/optim.c): the loss and the
 * optimizers bit for bit, the clipping norm to float rounding; and the
 * multi-tensor ops (kn_param_table, kn_multi_*) against the per-tensor
 * ones, bit for bit. These are
 * the references the CUDA versions are compared with on a GPU
 * (tests/device), and what the CPU-as-device harness runs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "tests/test.h"
#include "trainer/trainer.h"

static kn_ctx ctx;

static int same_bits(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

/* ----------------------------------------------------------------- loss */

static void check_dpo_loss(const float *label) {
  enum { N = 5 };
  float mw[N] = {0.11f, 0.52f, 0.30f, 0.2501f, 0.9f}, ml[N] = {0.12f, 0.50f, 0.31f, 0.25f, 0.1f};
  float rw[N] = {0.115f, 0.51f, 0.30f, 0.25f, 0.8f}, rl[N] = {0.118f, 0.505f, 0.309f, 0.2502f, 0.12f};
  float gw_want[N], gl_want[N], gw[N], gl[N], loss, stats[4];
  dpo_loss_stats s;
  dpo_error err;
  CHECK_INT(dpo_loss_dpo(mw, ml, rw, rl, label, N, 5000, gw_want, gl_want, &s, &err), DPO_OK);
  kn_dpo_loss(&ctx, &loss, gw, gl, stats, mw, ml, rw, rl, label, N, 5000);
  CHECK(same_bits(gw, gw_want, N));
  CHECK(same_bits(gl, gl_want, N));
  CHECK(loss == (float)s.loss);
  CHECK(stats[0] == (float)s.implicit_acc);
  CHECK(stats[1] == (float)s.reward_w);
  CHECK(stats[2] == (float)s.reward_l);
  CHECK(stats[3] == (float)s.reward_margin);
  /* NULL gradients and stats: only the loss. */
  float loss2 = -1;
  kn_dpo_loss(&ctx, &loss2, NULL, NULL, NULL, mw, ml, rw, rl, label, N, 5000);
  CHECK(loss2 == loss);
}

static void test_dpo_loss(void) {
  check_dpo_loss(NULL);
  float label[5] = {1.0f, 0.5f, 0.0f, 1.0f, 0.5f};
  check_dpo_loss(label);
}

/* ------------------------------------------------------------- clipping */

static void test_sum_squares(void) {
  float small[3] = {1.0f, -2.0f, 3.0f}, out = 0;
  kn_sum_squares(&ctx, &out, small, 3);
  CHECK(out == 14.0f);
  kn_sum_squares(&ctx, &out, small, 0);
  CHECK(out == 0.0f);
  /* Past several reduction chunks: the double sum to float rounding, and the
   * same bits with one thread as with the context's. */
  size_t n = 100003;
  float *x = malloc(n * sizeof(float));
  double want = 0;
  for (size_t i = 0; i < n; i++) {
    x[i] = sinf(0.001f * (float)i) * 3.0f;
    want += (double)x[i] * x[i];
  }
  kn_sum_squares(&ctx, &out, x, n);
  CHECK_NEAR(out, want, want * 1e-6);
  kn_ctx one;
  dpo_error err;
  CHECK_INT(kn_ctx_init(&one, 1, &err), DPO_OK);
  float out1 = 0;
  kn_sum_squares(&one, &out1, x, n);
  CHECK(out1 == out);
  kn_ctx_free(&one);
  free(x);
}

static void test_clip_coefficient_and_scale(void) {
  float sq[2] = {9.0f, 16.0f}, out[2];
  kn_clip_coefficient(&ctx, out, sq, 2, 0);
  CHECK(out[0] == 5.0f && out[1] == 1.0f);
  kn_clip_coefficient(&ctx, out, sq, 2, 100);
  CHECK(out[0] == 5.0f && out[1] == 1.0f);
  kn_clip_coefficient(&ctx, out, sq, 2, 1.3);
  CHECK(out[0] == 5.0f && out[1] == (float)(1.3 / (5.0 + 1e-6)));
  float bad[2] = {INFINITY, 1.0f};
  kn_clip_coefficient(&ctx, out, bad, 2, 1.0);
  CHECK(isinf(out[0]) && out[1] == 0.0f); /* torch: max_norm / inf -> every gradient scaled to 0 */
  float nan_sq[1] = {NAN};
  kn_clip_coefficient(&ctx, out, nan_sq, 1, 1.0);
  CHECK(isnan(out[0]) && out[1] == 1.0f); /* as dpo_clip_grad_norm: a NaN factor is never applied */

  float x[4] = {1.0f, -2.0f, 0.5f, 3.0f}, keep[4], one = 1.0f, half = 0.5f;
  memcpy(keep, x, sizeof x);
  kn_scale_by(&ctx, x, &one, 4);
  CHECK(same_bits(x, keep, 4));
  kn_scale_by(&ctx, x, &half, 4);
  for (int i = 0; i < 4; i++) CHECK(x[i] == keep[i] * 0.5f);
}

/* ---------------------------------------------------------- optimizers */

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
    for (int j = 0; j < 24; j++) t->data[i][j] = sinf(seed + 0.7f * (float)j + (float)i);
  }
}

static void new_grads(three_params *t, int step) {
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 24; j++) t->grad[i][j] = cosf(0.31f * (float)(j * (step + 2)) + (float)i) * (float)(step + 1);
}

/* Four steps of the host optimizer and of the same optimizer through the
 * kernels' ops on a CPU context (dpo_optim_init_on): the same bits. */
static void check_optimizer_on_ctx(dpo_optim_kind kind, double beta1, double weight_decay) {
  three_params a, b;
  three_params_init(&a, 0.3f);
  three_params_init(&b, 0.3f);
  dpo_optim_config cfg;
  dpo_optim_config_default(&cfg, kind);
  if (kind == DPO_OPTIM_ADAFACTOR) cfg.adafactor_beta1 = beta1;
  cfg.weight_decay = weight_decay;
  dpo_optimizer host, on;
  dpo_error err;
  CHECK_INT(dpo_optim_init(&host, &cfg, a.p, 3, &err), DPO_OK);
  CHECK_INT(dpo_optim_init_on(&on, &cfg, b.p, 3, &ctx, &err), DPO_OK);
  CHECK(on.ctx == &ctx && host.ctx == NULL);
  for (int s = 0; s < 4; s++) {
    new_grads(&a, s);
    new_grads(&b, s);
    dpo_optim_step(&host, 1e-2);
    dpo_optim_step(&on, 1e-2);
  }
  for (int i = 0; i < 3; i++) CHECK(same_bits(a.data[i], b.data[i], 24));
  /* The state saved from the context's optimizer continues the host one bitwise. */
  const char *path = test_path("on_ctx.safetensors");
  CHECK_INT(dpo_optim_save(&on, path, &err), DPO_OK);
  dpo_optimizer loaded;
  CHECK_INT(dpo_optim_init_on(&loaded, &cfg, b.p, 3, &ctx, &err), DPO_OK);
  CHECK_INT(dpo_optim_load(&loaded, path, &err), DPO_OK);
  CHECK_INT(loaded.step, 4);
  new_grads(&a, 4);
  new_grads(&b, 4);
  dpo_optim_step(&host, 1e-2);
  dpo_optim_step(&loaded, 1e-2);
  for (int i = 0; i < 3; i++) CHECK(same_bits(a.data[i], b.data[i], 24));
  dpo_optim_free(&loaded);
  dpo_optim_free(&host);
  dpo_optim_free(&on);
}

static void test_optimizers_on_ctx(void) {
  check_optimizer_on_ctx(DPO_OPTIM_ADAMW, 0, 1e-2);
  check_optimizer_on_ctx(DPO_OPTIM_ADAMW, 0, 0);
  check_optimizer_on_ctx(DPO_OPTIM_ADAFACTOR, 0, 0);
  check_optimizer_on_ctx(DPO_OPTIM_ADAFACTOR, 0.9, 0.1);
}

/* The op on its own: one AdamW update of a plain array against the host
 * optimizer's first step. */
static void test_adamw_update_op(void) {
  float data[3] = {1.0f, -2.0f, 0.5f}, grad[3] = {0.3f, -4.0f, 1e-3f};
  float p[3], m[3] = {0}, v[3] = {0};
  memcpy(p, data, sizeof p);
  dpo_optim_param param = {.name = "w", .ndim = 1, .shape = {3}, .data = data, .grad = grad};
  dpo_optim_config cfg;
  dpo_optim_config_default(&cfg, DPO_OPTIM_ADAMW);
  dpo_optimizer opt;
  dpo_error err;
  CHECK_INT(dpo_optim_init(&opt, &cfg, &param, 1, &err), DPO_OK);
  dpo_optim_step(&opt, 0.1);
  kn_adamw_update(&ctx, p, NULL, grad, m, v, 3, 1, 0.1, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay);
  CHECK(same_bits(p, data, 3));
  CHECK(same_bits(m, opt.slots[0].exp_avg, 3));
  CHECK(same_bits(v, opt.slots[0].exp_avg_sq, 3));
  dpo_optim_free(&opt);
}

/* One Adafactor update of a factored [2, 3, 4] parameter through the op
 * against the host optimizer. */
static void test_adafactor_update_op(void) {
  three_params a;
  three_params_init(&a, 0.8f);
  new_grads(&a, 0);
  float p[24], row[6] = {0}, col[8] = {0};
  memcpy(p, a.data[2], sizeof p);
  dpo_optim_config cfg;
  dpo_optim_config_default(&cfg, DPO_OPTIM_ADAFACTOR);
  dpo_optimizer opt;
  dpo_error err;
  CHECK_INT(dpo_optim_init(&opt, &cfg, &a.p[2], 1, &err), DPO_OK);
  dpo_optim_step(&opt, 0.05);
  kn_adafactor_update(&ctx, p, NULL, a.grad[2], NULL, NULL, row, col, 2, 3, 4, 1, 0.05, cfg.eps1, cfg.clip_threshold,
                      cfg.decay_rate, 0.0, cfg.weight_decay);
  CHECK(same_bits(p, a.data[2], 24));
  CHECK(same_bits(row, opt.slots[0].exp_avg_sq_row, 6));
  CHECK(same_bits(col, opt.slots[0].exp_avg_sq_col, 8));
  dpo_optim_free(&opt);
}

/* Clipping with the per-tensor ops, the reference of the optimizer's
 * multi-tensor clipping (dpo_optim_clip_grad_norm). */
static int clip_per_tensor(kn_ctx *c, dpo_optim_param *params, int n, double max_norm, float *sum_squares,
                           float *out) {
  for (int i = 0; i < n; i++)
    kn_sum_squares(c, sum_squares + i, params[i].grad, (size_t)dpo_optim_param_numel(&params[i]));
  kn_clip_coefficient(c, out, sum_squares, n, max_norm);
  if (max_norm <= 0) return n;
  for (int i = 0; i < n; i++) kn_scale_by(c, params[i].grad, out + 1, (size_t)dpo_optim_param_numel(&params[i]));
  return n;
}

/* Per-tensor clipping on a context against dpo_clip_grad_norm. */
static void test_clip_grad_norm_on(void) {
  three_params a, b;
  three_params_init(&a, 0.1f);
  three_params_init(&b, 0.1f);
  new_grads(&a, 2);
  new_grads(&b, 2);
  float sq[3], out[2];
  double norm = dpo_clip_grad_norm(a.p, 3, 1.0);
  CHECK_INT(clip_per_tensor(&ctx, b.p, 3, 1.0, sq, out), 3);
  CHECK_NEAR(out[0], norm, norm * 1e-6);
  CHECK(out[1] < 1.0f);
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 24; j++) CHECK_NEAR(b.grad[i][j], a.grad[i][j], 1e-6 * fabs(a.grad[i][j]) + 1e-12);
  /* No clipping: the norm alone, gradients untouched. */
  three_params c;
  three_params_init(&c, 0.1f);
  new_grads(&c, 2);
  float keep[24];
  memcpy(keep, c.grad[1], sizeof keep);
  clip_per_tensor(&ctx, c.p, 3, 0, sq, out);
  CHECK_NEAR(out[0], norm, norm * 1e-6);
  CHECK(out[1] == 1.0f);
  CHECK(same_bits(c.grad[1], keep, 24));
}

/* --------------------------------------------------------- multi-tensor */

/* Tensors of odd sizes, one of a single value and one past several of the
 * CPU reduction's chunks; bf16 copies on every other tensor when asked. */
enum { MT = 5 };
static const size_t mt_numel[MT] = {1, 7, 333, 4099, 70001};

typedef struct {
  float *p[MT], *g[MT], *m[MT], *v[MT];
  kn_bf16 *b[MT];
} mt_set;

static void mt_grads(mt_set *s, int step) {
  for (int i = 0; i < MT; i++)
    for (size_t j = 0; j < mt_numel[i]; j++)
      s->g[i][j] = cosf(0.13f * (float)j * (float)(step + 1) + (float)i) * (float)(i + 1) * 0.1f;
}

static void mt_init(mt_set *s, int with_bf16) {
  memset(s, 0, sizeof *s);
  for (int i = 0; i < MT; i++) {
    size_t n = mt_numel[i];
    s->p[i] = malloc(n * sizeof(float));
    s->g[i] = malloc(n * sizeof(float));
    s->m[i] = calloc(n, sizeof(float));
    s->v[i] = calloc(n, sizeof(float));
    if (with_bf16 && i % 2 == 0) s->b[i] = calloc(n, sizeof(kn_bf16));
    for (size_t j = 0; j < n; j++) s->p[i][j] = sinf(0.37f * (float)i + 0.011f * (float)j);
  }
  mt_grads(s, 0);
}

static void mt_free(mt_set *s) {
  for (int i = 0; i < MT; i++) {
    free(s->p[i]);
    free(s->g[i]);
    free(s->m[i]);
    free(s->v[i]);
    free(s->b[i]);
  }
}

static int mt_same(float *const *a, float *const *b) {
  for (int i = 0; i < MT; i++)
    if (!same_bits(a[i], b[i], mt_numel[i])) return 0;
  return 1;
}

/* The multi ops against the per-tensor ones on the same values: sums of
 * squares, scaling by 1 (nothing touched) and by a clip factor, three AdamW
 * updates (parameters, moments and bf16 copies): the same bits. */
static void check_multi_ops(int with_bf16) {
  mt_set a, b;
  mt_init(&a, with_bf16);
  mt_init(&b, with_bf16);
  kn_param_table *t = NULL;
  dpo_error err;
  CHECK_INT(kn_param_table_create(&ctx, MT, mt_numel, b.p, with_bf16 ? b.b : NULL, b.g, b.m, b.v, &t, &err), DPO_OK);
  if (!t) {
    mt_free(&a);
    mt_free(&b);
    return;
  }
  CHECK_INT(kn_param_table_count(t), MT);
  float sq_a[MT], sq_b[MT];
  for (int i = 0; i < MT; i++) kn_sum_squares(&ctx, sq_a + i, a.g[i], mt_numel[i]);
  kn_multi_sum_squares(&ctx, sq_b, t);
  CHECK(same_bits(sq_a, sq_b, MT));

  float one = 1.0f, factor = 0.37f;
  kn_multi_scale_by(&ctx, t, &one);
  CHECK(mt_same(a.g, b.g));
  float before = b.g[4][5];
  for (int i = 0; i < MT; i++) kn_scale_by(&ctx, a.g[i], &factor, mt_numel[i]);
  kn_multi_scale_by(&ctx, t, &factor);
  CHECK(mt_same(a.g, b.g));
  CHECK(before != 0.0f && b.g[4][5] == before * factor);

  for (int step = 1; step <= 3; step++) {
    if (step > 1) {
      mt_grads(&a, step);
      mt_grads(&b, step);
    }
    for (int i = 0; i < MT; i++)
      kn_adamw_update(&ctx, a.p[i], a.b[i], a.g[i], a.m[i], a.v[i], mt_numel[i], step, 1e-2, 0.9, 0.999, 1e-8, 1e-2);
    kn_multi_adamw_update(&ctx, t, step, 1e-2, 0.9, 0.999, 1e-8, 1e-2);
  }
  CHECK(mt_same(a.p, b.p));
  CHECK(mt_same(a.m, b.m));
  CHECK(mt_same(a.v, b.v));
  for (int i = 0; i < MT; i++) {
    CHECK((a.b[i] != NULL) == (with_bf16 && i % 2 == 0));
    if (a.b[i]) CHECK(memcmp(a.b[i], b.b[i], mt_numel[i] * sizeof(kn_bf16)) == 0);
    if (a.b[i]) CHECK(kn_bf16_to_float(b.b[i][0]) == kn_bf16_to_float(kn_bf16_from_float(b.p[i][0])));
  }
  kn_param_table_free(t);
  mt_free(&a);
  mt_free(&b);
}

static void test_multi_ops(void) {
  check_multi_ops(1);
  check_multi_ops(0);

  /* A table for clipping only (no moments, no bf16): the sums, and AdamW
   * does nothing. */
  mt_set s;
  mt_init(&s, 0);
  kn_param_table *t = NULL;
  dpo_error err;
  CHECK_INT(kn_param_table_create(&ctx, MT, mt_numel, s.p, NULL, s.g, NULL, NULL, &t, &err), DPO_OK);
  if (t) {
    float sq[MT], want;
    kn_multi_sum_squares(&ctx, sq, t);
    kn_sum_squares(&ctx, &want, s.g[3], mt_numel[3]);
    CHECK(sq[3] == want);
    float keep = s.p[2][10];
    kn_multi_adamw_update(&ctx, t, 1, 1e-2, 0.9, 0.999, 1e-8, 1e-2);
    CHECK(s.p[2][10] == keep);
    kn_param_table_free(t);
  }

  /* Refused: no tensors, one moment without the other, a missing gradient. */
  CHECK_INT(kn_param_table_create(&ctx, 0, mt_numel, s.p, NULL, s.g, NULL, NULL, &t, &err), DPO_ERR_USAGE);
  CHECK(t == NULL);
  CHECK_INT(kn_param_table_create(&ctx, MT, mt_numel, s.p, NULL, s.g, s.m, NULL, &t, &err), DPO_ERR_USAGE);
  float *grads[MT];
  memcpy(grads, s.g, sizeof grads);
  grads[2] = NULL;
  CHECK_INT(kn_param_table_create(&ctx, MT, mt_numel, s.p, NULL, grads, NULL, NULL, &t, &err), DPO_ERR_USAGE);
  CHECK(strstr(err.msg, "entry 2") != NULL);
  kn_param_table_free(NULL);
  mt_free(&s);
}

/* dpo_optim_clip_grad_norm (the optimizer's table) against
 * clip_per_tensor (per tensor): the same bits, on a context's
 * optimizer and on a host one, for AdamW's table and Adafactor's. */
static void check_optim_clip(dpo_optim_kind kind, int on_ctx) {
  three_params a, b;
  three_params_init(&a, 0.2f);
  three_params_init(&b, 0.2f);
  new_grads(&a, 3);
  new_grads(&b, 3);
  dpo_optim_config cfg;
  dpo_optim_config_default(&cfg, kind);
  dpo_optimizer opt;
  dpo_error err;
  CHECK_INT(on_ctx ? dpo_optim_init_on(&opt, &cfg, b.p, 3, &ctx, &err) : dpo_optim_init(&opt, &cfg, b.p, 3, &err),
            DPO_OK);
  float sq_a[3], out_a[2], sq_b[3], out_b[2];
  CHECK_INT(clip_per_tensor(&ctx, a.p, 3, 0.5, sq_a, out_a), 3);
  CHECK_INT(dpo_optim_clip_grad_norm(&opt, 0.5, sq_b, out_b), 3);
  CHECK(same_bits(sq_a, sq_b, 3));
  CHECK(same_bits(out_a, out_b, 2));
  CHECK(out_b[1] < 1.0f);
  for (int i = 0; i < 3; i++) CHECK(same_bits(a.grad[i], b.grad[i], 24));
  /* No clipping: the norm alone. */
  CHECK_INT(dpo_optim_clip_grad_norm(&opt, 0, sq_b, out_b), 3);
  clip_per_tensor(&ctx, a.p, 3, 0, sq_a, out_a);
  CHECK(same_bits(out_a, out_b, 2) && out_b[1] == 1.0f);
  for (int i = 0; i < 3; i++) CHECK(same_bits(a.grad[i], b.grad[i], 24));
  dpo_optim_free(&opt);
}

static void test_optim_clip(void) {
  check_optim_clip(DPO_OPTIM_ADAMW, 1);
  check_optim_clip(DPO_OPTIM_ADAMW, 0);
  check_optim_clip(DPO_OPTIM_ADAFACTOR, 1);
  check_optim_clip(DPO_OPTIM_ADAFACTOR, 0);
}

int main(void) {
  dpo_error err;
  if (kn_ctx_init(&ctx, 2, &err) != DPO_OK) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  test_dpo_loss();
  test_sum_squares();
  test_clip_coefficient_and_scale();
  test_adamw_update_op();
  test_adafactor_update_op();
  test_optimizers_on_ctx();
  test_clip_grad_norm_on();
  test_multi_ops();
  test_optim_clip();
  kn_ctx_free(&ctx);
  return test_finish();
}
